//! Benchmark-only (`--features bench-floor`, build/unigate-floor.wasm): the least any Wasm
//! filter in unigate's place must do for a chat request (hold the request until its body is
//! complete, read it and write it back, pick the cluster, hold and read the answer) and
//! nothing else. `make bench` runs it as a row, so the cost of the Wasm machinery itself is
//! measured next to the filter's.

use crate::host;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

/// The floor's HTTP context.
#[derive(Default)]
pub struct Floor;

impl Context for Floor {}

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        let map = MapType::HttpRequestHeaders;
        let path = host::get_header(map, ":path").ok().flatten();
        if path.as_deref() == Some("/health") {
            let _ = host::send_response(200, &[("content-type", "application/json")], b"{}");
            return Action::Pause;
        }
        let _ = host::remove_header(map, "authorization");
        let _ = host::set_header(map, "x-unigate-cluster", "openai");
        let _ = host::call_foreign("clear_route_cache", &[]);
        if end_of_stream {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let body = host::get_buffer(BufferType::HttpRequestBody, 0, size).unwrap_or_default();
        let _ = host::set_buffer(BufferType::HttpRequestBody, 0, size, &body);
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let _ = host::get_buffer(BufferType::HttpResponseBody, 0, size);
        Action::Continue
    }
}
