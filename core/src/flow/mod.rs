//! The filter's logic, host-free: one state machine per request ([`http::HttpFlow`]) and one
//! per worker ([`root::RootFlow`]), driven by the proxy-wasm callbacks and acting on Envoy only
//! through the [`Host`] trait. The filter crate implements [`Host`] over the real hostcalls;
//! [`mock::MockHost`] implements it in memory, so everything here is tested natively.

pub mod credentials;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod mock;
pub mod root;

use std::fmt;

/// What the host should do with the current stream after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Let the request or response go on.
    Continue,
    /// Hold it (buffering, waiting for a callout, or answered locally).
    Pause,
}

/// A header map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Headers {
    /// The client's request headers (as they will go upstream).
    Request,
    /// The upstream's response headers (as they will go to the client).
    Response,
}

/// A body buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Body {
    /// The buffered request body.
    Request,
    /// The current response body chunk (or the whole buffered body).
    Response,
}

/// Log levels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Per-request detail.
    Debug,
    /// Configuration and life-cycle events.
    Info,
    /// Something an operator should look at.
    Warn,
    /// Something failed.
    Error,
    /// The filter cannot work.
    Critical,
}

/// Kinds of metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A counter.
    Counter,
    /// A histogram.
    Histogram,
}

/// A host call that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// A shared-data write lost a compare-and-swap race.
    CasMismatch,
    /// Any other failure: which call and the host's status.
    Failed {
        /// The call.
        call: &'static str,
        /// The host's status, as text.
        status: String,
    },
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::CasMismatch => f.write_str("shared data CAS mismatch"),
            HostError::Failed { call, status } => write!(f, "host call {call} failed: {status}"),
        }
    }
}

/// Result of a host call.
pub type HostResult<T> = Result<T, HostError>;

/// Everything the filter asks of Envoy. One implementation calls the proxy-wasm host; the
/// mock records calls for tests.
pub trait Host {
    /// All pairs of a header map, in one call.
    fn headers(&mut self, map: Headers) -> HostResult<Vec<(String, Vec<u8>)>>;
    /// One header (the first if repeated), as text.
    fn header(&mut self, map: Headers, name: &str) -> HostResult<Option<String>>;
    /// Sets (replaces) a header.
    fn set_header(&mut self, map: Headers, name: &str, value: &str) -> HostResult<()>;
    /// Removes a header.
    fn remove_header(&mut self, map: Headers, name: &str) -> HostResult<()>;
    /// The first `size` bytes of a body buffer.
    fn body(&mut self, body: Body, size: usize) -> HostResult<Vec<u8>>;
    /// Up to `len` bytes of a body buffer from `start`.
    fn body_range(&mut self, body: Body, start: usize, len: usize) -> HostResult<Vec<u8>>;
    /// Replaces the first `replace` bytes of a body buffer with `data`.
    fn set_body(&mut self, body: Body, replace: usize, data: &[u8]) -> HostResult<()>;
    /// Answers the client locally (the upstream is never called).
    fn send_response(
        &mut self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HostResult<()>;
    /// Resumes a request paused in an earlier callback.
    fn resume_request(&mut self) -> HostResult<()>;
    /// Makes Envoy pick the route again after a header change.
    fn clear_route_cache(&mut self) -> HostResult<()>;
    /// A property (`response.code_details`, …).
    fn property(&mut self, path: &[&str]) -> HostResult<Option<Vec<u8>>>;
    /// Sets filter state (Envoy prefixes the key with `wasm.`).
    fn set_property(&mut self, path: &[&str], value: &[u8]) -> HostResult<()>;
    /// Starts an HTTP callout to `cluster`; its answer arrives in the context's callout
    /// callback with the returned token.
    fn dispatch(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout_ms: u64,
    ) -> HostResult<u32>;
    /// The status and body of a finished callout (status `None` when it never answered).
    fn callout_answer(&mut self, num_headers: usize, body_size: usize) -> (Option<u16>, Vec<u8>);
    /// A header of the finished callout's answer.
    fn callout_header(&mut self, name: &str) -> Option<String>;
    /// A shared-data value and its CAS (`None` when absent).
    fn shared_get(&mut self, key: &str) -> HostResult<(Option<Vec<u8>>, u32)>;
    /// Writes shared data; `cas` 0 writes unconditionally.
    fn shared_set(&mut self, key: &str, value: &[u8], cas: u32) -> HostResult<()>;
    /// Wall-clock Unix seconds.
    fn now_unix(&self) -> u64;
    /// Milliseconds from a fixed point, for durations.
    fn now_ms(&self) -> u64;
    /// 32 hex characters of randomness.
    fn random_hex(&mut self) -> String;
    /// Defines a metric up front (dashboards see it at zero).
    fn define_metric(&mut self, kind: MetricKind, name: &str);
    /// Adds to a counter.
    fn count(&mut self, name: &str, by: u64);
    /// Records a histogram sample.
    fn record(&mut self, name: &str, value: u64);
    /// Whether a log line at `level` would be written.
    fn log_enabled(&self, level: Level) -> bool;
    /// Writes a log line.
    fn log(&mut self, level: Level, message: &str);
    /// Sets the worker's tick period.
    fn set_tick_ms(&mut self, ms: u32) -> HostResult<()>;
}

/// Logs a line built only when the level is enabled.
pub fn log_with<H: Host + ?Sized>(host: &mut H, level: Level, line: impl FnOnce() -> String) {
    if host.log_enabled(level) {
        let l = line();
        host.log(level, &l);
    }
}
