//! unigate proxy-wasm filter: the thin glue between Envoy and `unigate-core`.
//!
//! [`root`] owns the configuration and keeps AWS credentials fresh in shared data;
//! [`http`] runs one request through auth, planning, signing and response translation.
//! Every host call goes through [`host`], which returns errors instead of trapping.

mod credentials;
mod host;
mod http;
mod limits;
mod logging;
mod metrics;
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
