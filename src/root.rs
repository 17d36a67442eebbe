//! The root context: each proxy-wasm callback hands over to the core's
//! [`RootFlow`](unigate_core::flow::root::RootFlow) (configuration, credential refresh tick).

use crate::host::{self, EnvoyHost};
use crate::http::Http;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};
use unigate_core::flow::root::RootFlow;

/// Per-worker root context.
#[derive(Default)]
pub struct Root {
    flow: RootFlow,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        self.flow
            .on_callout_response(&mut EnvoyHost, num_headers, body_size);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        host::refresh_log_level();
        let raw =
            host::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX).unwrap_or_default();
        let env = |k: &str| std::env::var(k).ok();
        self.flow.on_configure(&mut EnvoyHost, &raw, &env)
    }

    fn on_tick(&mut self) {
        self.flow.on_tick(&mut EnvoyHost);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        #[cfg(feature = "bench-floor")]
        {
            let _ = context_id;
            return Some(Box::new(crate::floor::Floor));
        }
        #[cfg_attr(feature = "bench-floor", allow(unreachable_code))]
        Some(Box::new(Http::new(
            context_id,
            self.flow.gateway(),
            self.flow.env_credentials(),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
