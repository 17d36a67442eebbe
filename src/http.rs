//! The HTTP context: each proxy-wasm callback hands over to the core's
//! [`HttpFlow`](unigate_core::flow::http::HttpFlow), which acts through [`EnvoyHost`].

use crate::host::{self, EnvoyHost};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;
use unigate_core::config::Gateway;
use unigate_core::flow::{self, http::HttpFlow};
use unigate_core::sigv4::AwsCredentials;

/// Per-request HTTP context.
pub struct Http {
    flow: HttpFlow,
}

impl Http {
    /// A context for one request.
    pub fn new(
        id: u32,
        gateway: Option<Rc<Gateway>>,
        env_credentials: Option<Rc<AwsCredentials>>,
    ) -> Http {
        Http {
            flow: HttpFlow::new(id, gateway, env_credentials),
        }
    }
}

fn action(a: flow::Action) -> Action {
    match a {
        flow::Action::Continue => Action::Continue,
        flow::Action::Pause => Action::Pause,
    }
}

impl Context for Http {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        self.flow
            .on_callout_response(&mut EnvoyHost, token, num_headers, body_size);
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        host::refresh_log_level();
        #[cfg(feature = "test-trap")]
        if host::get_header(
            proxy_wasm::types::MapType::HttpRequestHeaders,
            "x-unigate-test-trap",
        )
        .ok()
        .flatten()
        .is_some()
        {
            #[allow(clippy::panic)]
            {
                panic!("deliberate trap (test-trap build)");
            }
        }
        action(self.flow.on_request_headers(&mut EnvoyHost, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(
            self.flow
                .on_request_body(&mut EnvoyHost, body_size, end_of_stream),
        )
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        action(self.flow.on_request_trailers(&mut EnvoyHost))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(self.flow.on_response_headers(&mut EnvoyHost, end_of_stream))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(
            self.flow
                .on_response_body(&mut EnvoyHost, body_size, end_of_stream),
        )
    }

    fn on_log(&mut self) {
        self.flow.on_log(&mut EnvoyHost);
    }
}
