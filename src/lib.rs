//! unigate proxy-wasm filter: the thin glue between Envoy and `unigate-core`.
//!
//! The logic lives in the core's [`flow`](unigate_core::flow) state machines; [`root`] and
//! [`http`] hand each proxy-wasm callback to them, and [`host`] is the one adapter that
//! calls Envoy (it returns errors instead of trapping).

#[cfg(feature = "bench-floor")]
mod floor;
mod host;
mod http;
mod root;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    // A panic aborts the VM (a trap); make its cause visible in Envoy's log first.
    std::panic::set_hook(Box::new(|info| {
        host::log(LogLevel::Critical, &format!("unigate panicked: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::Root::default())
    });
}}
