//! The one adapter between the filter and Envoy's proxy-wasm host: [`EnvoyHost`] implements
//! the core's [`Host`] trait over the raw hostcalls.
//!
//! The SDK's hostcall wrappers panic on any status they did not expect (a trap that takes the
//! worker's VM down), so every call the filter makes goes through here instead and comes back
//! as a `Result`. Only `dispatch_http_call` uses the SDK's hostcall, because its dispatcher must
//! learn the callout token to route the answer back to the right context (that call returns
//! errors for the statuses Envoy gives: unknown cluster, internal failure).
#![allow(unsafe_code)]

use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status, StreamType};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ptr::{null, null_mut};
use unigate_core::flow::{self, Body, Headers, Host, Level, MetricKind};
use unigate_core::header_map;

/// A host call that did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError {
    /// Which call.
    pub call: &'static str,
    /// The status the host returned.
    pub status: Status,
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host call {} failed: {:?}", self.call, self.status)
    }
}

/// Result of a host call.
pub type HostResult<T> = Result<T, HostError>;

fn check(call: &'static str, status: Status) -> HostResult<()> {
    match status {
        Status::Ok => Ok(()),
        status => Err(HostError { call, status }),
    }
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: LogLevel, message_data: *const u8, message_size: usize) -> Status;
    fn proxy_get_log_level(return_level: *mut LogLevel) -> Status;
    fn proxy_set_tick_period_milliseconds(period: u32) -> Status;
    fn proxy_get_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> Status;
    fn proxy_set_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> Status;
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
    fn proxy_get_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> Status;
    fn proxy_replace_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> Status;
    fn proxy_remove_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
    ) -> Status;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> Status;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> Status;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> Status;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> Status;
    fn proxy_continue_stream(stream_type: StreamType) -> Status;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> Status;
    fn proxy_call_foreign_function(
        function_name_data: *const u8,
        function_name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        results_data: *mut *mut u8,
        results_size: *mut usize,
    ) -> Status;
    fn proxy_define_metric(
        metric_type: MetricType,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> Status;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> Status;
    fn proxy_record_metric(metric_id: u32, value: u64) -> Status;
}

/// Takes ownership of a host-allocated buffer.
///
/// # Safety
/// `data` must be null or a pointer the host allocated through this module's allocator
/// (proxy_on_memory_allocate) with exactly `size` bytes.
unsafe fn take(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        None
    } else {
        Some(Vec::from_raw_parts(data, size, size))
    }
}

/// Writes a log line at `level`. Failures are ignored: there is nowhere left to report them.
pub fn log(level: LogLevel, message: &str) {
    // SAFETY: pointer and length describe a live &str.
    let _ = unsafe { proxy_log(level, message.as_ptr(), message.len()) };
}

/// The host's current log level (Info if it cannot be read).
pub fn log_level() -> LogLevel {
    let mut level = LogLevel::Info;
    // SAFETY: the host writes one LogLevel through the pointer.
    match unsafe { proxy_get_log_level(&mut level) } {
        Status::Ok => level,
        _ => LogLevel::Info,
    }
}

/// Sets the root context's tick period.
pub fn set_tick_period_ms(ms: u32) -> HostResult<()> {
    // SAFETY: plain value call.
    check("set_tick_period", unsafe {
        proxy_set_tick_period_milliseconds(ms)
    })
}

/// Bodies larger than this are read in pieces of this size.
const BODY_CHUNK: usize = 1 << 20;

/// Reads `max_size` bytes from `start` of a buffer; an absent buffer is empty.
pub fn get_buffer(buffer: BufferType, start: usize, max_size: usize) -> HostResult<Vec<u8>> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: the host fills data/size with a buffer allocated by our allocator.
    let status = unsafe { proxy_get_buffer_bytes(buffer, start, max_size, &mut data, &mut size) };
    match status {
        // SAFETY: see `take`.
        Status::Ok => Ok(unsafe { take(data, size) }.unwrap_or_default()),
        Status::NotFound | Status::Empty => Ok(Vec::new()),
        status => Err(HostError {
            call: "get_buffer",
            status,
        }),
    }
}

/// Replaces `size` bytes at `start` of a buffer with `value` (`(0, len, new)` replaces all).
pub fn set_buffer(buffer: BufferType, start: usize, size: usize, value: &[u8]) -> HostResult<()> {
    // SAFETY: pointer and length describe a live slice.
    check("set_buffer", unsafe {
        proxy_set_buffer_bytes(buffer, start, size, value.as_ptr(), value.len())
    })
}

/// All pairs of a header map.
pub fn get_headers(map: MapType) -> HostResult<Vec<(String, Vec<u8>)>> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: the host fills data/size with a buffer allocated by our allocator.
    let status = unsafe { proxy_get_header_map_pairs(map, &mut data, &mut size) };
    match status {
        Status::Ok => {
            // SAFETY: see `take`.
            let bytes = unsafe { take(data, size) }.unwrap_or_default();
            header_map::deserialize(&bytes).ok_or(HostError {
                call: "get_headers",
                status: Status::ParseFailure,
            })
        }
        Status::NotFound => Ok(Vec::new()),
        status => Err(HostError {
            call: "get_headers",
            status,
        }),
    }
}

/// One header value as bytes (the first, if repeated).
pub fn get_header_bytes(map: MapType, name: &str) -> HostResult<Option<Vec<u8>>> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: pointer/len describe `name`; the host fills data/size.
    let status =
        unsafe { proxy_get_header_map_value(map, name.as_ptr(), name.len(), &mut data, &mut size) };
    match status {
        // SAFETY: see `take`.
        Status::Ok => Ok(unsafe { take(data, size) }),
        Status::NotFound => Ok(None),
        status => Err(HostError {
            call: "get_header",
            status,
        }),
    }
}

/// One header value as text (lossy for invalid UTF-8; never a panic).
pub fn get_header(map: MapType, name: &str) -> HostResult<Option<String>> {
    Ok(get_header_bytes(map, name)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
}

/// The `:status` and body of a finished `dispatch_http_call`; no status when it failed without
/// an answer (`num_headers == 0`: reset, timeout, no healthy upstream).
pub fn call_answer(num_headers: usize, body_size: usize) -> (Option<u16>, Vec<u8>) {
    let status = if num_headers == 0 {
        None
    } else {
        get_header(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|s| s.parse::<u16>().ok())
    };
    let body = get_buffer(BufferType::HttpCallResponseBody, 0, body_size).unwrap_or_default();
    (status, body)
}

/// Sets (replaces) a header.
pub fn set_header(map: MapType, name: &str, value: &str) -> HostResult<()> {
    // SAFETY: pointers and lengths describe live strings.
    check("set_header", unsafe {
        proxy_replace_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    })
}

/// Removes a header (absent is fine).
pub fn remove_header(map: MapType, name: &str) -> HostResult<()> {
    // SAFETY: pointer and length describe a live string.
    match unsafe { proxy_remove_header_map_value(map, name.as_ptr(), name.len()) } {
        Status::Ok | Status::NotFound => Ok(()),
        status => Err(HostError {
            call: "remove_header",
            status,
        }),
    }
}

fn property_path(path: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in path.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(p.as_bytes());
    }
    out
}

/// Reads a host property such as `["response", "code_details"]`.
pub fn get_property(path: &[&str]) -> HostResult<Option<Vec<u8>>> {
    let p = property_path(path);
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: pointer/len describe `p`; the host fills data/size.
    let status = unsafe { proxy_get_property(p.as_ptr(), p.len(), &mut data, &mut size) };
    match status {
        // SAFETY: see `take`.
        Status::Ok => Ok(unsafe { take(data, size) }),
        Status::NotFound | Status::SerializationFailure => Ok(None),
        status => Err(HostError {
            call: "get_property",
            status,
        }),
    }
}

/// Sets a host property (filter state), e.g. `["unigate", "model"]`.
pub fn set_property(path: &[&str], value: &[u8]) -> HostResult<()> {
    let p = property_path(path);
    // SAFETY: pointers and lengths describe live buffers.
    check("set_property", unsafe {
        proxy_set_property(p.as_ptr(), p.len(), value.as_ptr(), value.len())
    })
}

/// Reads shared data (process-wide, shared by every worker VM with our vm_id) and its CAS.
pub fn get_shared_data(key: &str) -> HostResult<(Option<Vec<u8>>, u32)> {
    let mut data = null_mut();
    let mut size = 0;
    let mut cas = 0;
    // SAFETY: pointer/len describe `key`; the host fills data/size/cas.
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match status {
        // SAFETY: see `take`.
        Status::Ok => Ok((unsafe { take(data, size) }, cas)),
        Status::NotFound => Ok((None, 0)),
        status => Err(HostError {
            call: "get_shared_data",
            status,
        }),
    }
}

/// Writes shared data; `cas` 0 writes unconditionally, otherwise a stale CAS fails with
/// `CasMismatch`.
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> HostResult<()> {
    // SAFETY: pointers and lengths describe live buffers.
    check("set_shared_data", unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
}

/// Resumes a request paused in a header or body callback.
pub fn resume_request() -> HostResult<()> {
    // SAFETY: plain value call.
    check("resume_request", unsafe {
        proxy_continue_stream(StreamType::HttpRequest)
    })
}

/// Sends a local reply. Envoy runs it after the current callback returns.
pub fn send_response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> HostResult<()> {
    let pairs: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    let map = header_map::serialize(&pairs);
    let details = b"unigate";
    // SAFETY: pointers and lengths describe live buffers.
    check("send_response", unsafe {
        proxy_send_local_response(
            u32::from(status),
            details.as_ptr(),
            details.len(),
            if body.is_empty() {
                null()
            } else {
                body.as_ptr()
            },
            body.len(),
            map.as_ptr(),
            map.len(),
            -1,
        )
    })
}

/// Calls a host foreign function such as `clear_route_cache`.
pub fn call_foreign(name: &str, args: &[u8]) -> HostResult<Option<Vec<u8>>> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: pointers and lengths describe live buffers; the host fills data/size.
    let status = unsafe {
        proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            args.as_ptr(),
            args.len(),
            &mut data,
            &mut size,
        )
    };
    match status {
        // SAFETY: see `take`.
        Status::Ok => Ok(unsafe { take(data, size) }),
        status => Err(HostError {
            call: "call_foreign_function",
            status,
        }),
    }
}

/// Defines a metric and returns its id.
pub fn define_metric(kind: MetricType, name: &str) -> HostResult<u32> {
    let mut id = 0;
    // SAFETY: pointer/len describe `name`; the host writes the id.
    check("define_metric", unsafe {
        proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id)
    })?;
    Ok(id)
}

/// Adds to a counter or gauge (counters need a positive offset).
pub fn increment_metric(id: u32, offset: i64) -> HostResult<()> {
    // SAFETY: plain value call.
    check("increment_metric", unsafe {
        proxy_increment_metric(id, offset)
    })
}

/// Records a histogram sample or sets a gauge.
pub fn record_metric(id: u32, value: u64) -> HostResult<()> {
    // SAFETY: plain value call.
    check("record_metric", unsafe { proxy_record_metric(id, value) })
}

thread_local! {
    /// Metric ids per name (ids are per worker VM; names are defined on first use).
    static METRIC_IDS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
    /// The host's log level, re-read once per request.
    static LOG_LEVEL: Cell<u32> = const { Cell::new(LogLevel::Info as u32) };
}

/// Re-reads the host's log level (once per request is enough).
pub fn refresh_log_level() {
    LOG_LEVEL.with(|l| l.set(log_level() as u32));
}

/// Random bytes taken from the host 1 KiB at a time: one host call per 64 requests instead of
/// one per request (the bytes are the host's CSPRNG output; session ids are made from them).
fn random_bytes(out: &mut [u8]) {
    const POOL: usize = 1024;
    thread_local! {
        static POOL_BYTES: RefCell<(Vec<u8>, usize)> = const { RefCell::new((Vec::new(), 0)) };
    }
    POOL_BYTES.with(|p| {
        let mut p = p.borrow_mut();
        let (pool, used) = &mut *p;
        if pool.len() != POOL || *used + out.len() > POOL {
            pool.resize(POOL, 0);
            if getrandom::fill(pool).is_err() {
                // WASI random_get should not fail; fall back to the clock rather than a constant.
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                for (b, t) in pool.iter_mut().zip(t.to_le_bytes().iter().cycle()) {
                    *b ^= *t;
                }
            }
            *used = 0;
        }
        let end = *used + out.len();
        if let Some(src) = pool.get(*used..end) {
            out.copy_from_slice(src);
        }
        // Each byte is handed out once.
        if let Some(src) = pool.get_mut(*used..end) {
            src.fill(0);
        }
        *used = end;
    });
}

fn metric_id(kind: MetricType, name: &str) -> Option<u32> {
    METRIC_IDS.with(|ids| {
        if let Some(id) = ids.borrow().get(name) {
            return Some(*id);
        }
        let id = define_metric(kind, name).ok()?;
        ids.borrow_mut().insert(name.to_string(), id);
        Some(id)
    })
}

fn level(l: Level) -> LogLevel {
    match l {
        Level::Debug => LogLevel::Debug,
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
        Level::Error => LogLevel::Error,
        Level::Critical => LogLevel::Critical,
    }
}

fn map_type(map: Headers) -> MapType {
    match map {
        Headers::Request => MapType::HttpRequestHeaders,
        Headers::Response => MapType::HttpResponseHeaders,
    }
}

fn buffer_type(body: Body) -> BufferType {
    match body {
        Body::Request => BufferType::HttpRequestBody,
        Body::Response => BufferType::HttpResponseBody,
    }
}

impl From<HostError> for flow::HostError {
    fn from(e: HostError) -> flow::HostError {
        match e.status {
            Status::CasMismatch => flow::HostError::CasMismatch,
            status => flow::HostError::Failed {
                call: e.call,
                status: format!("{status:?}"),
            },
        }
    }
}

/// The proxy-wasm host as the core sees it.
pub struct EnvoyHost;

impl Host for EnvoyHost {
    fn headers(&mut self, map: Headers) -> flow::HostResult<Vec<(String, Vec<u8>)>> {
        Ok(get_headers(map_type(map))?)
    }

    fn header(&mut self, map: Headers, name: &str) -> flow::HostResult<Option<String>> {
        Ok(get_header(map_type(map), name)?)
    }

    fn set_header(&mut self, map: Headers, name: &str, value: &str) -> flow::HostResult<()> {
        Ok(set_header(map_type(map), name, value)?)
    }

    fn remove_header(&mut self, map: Headers, name: &str) -> flow::HostResult<()> {
        Ok(remove_header(map_type(map), name)?)
    }

    fn body(&mut self, body: Body, size: usize) -> flow::HostResult<Vec<u8>> {
        if size <= BODY_CHUNK {
            return Ok(get_buffer(buffer_type(body), 0, size)?);
        }
        // A large body is read in pieces into one buffer sized for the body that will replace
        // it: the VM never gives memory back, and the encoded body can then reuse this block
        // once it is freed instead of growing the VM by another body (issue 17).
        let mut out = Vec::with_capacity(unigate_core::json::output_capacity(size));
        while out.len() < size {
            let piece = get_buffer(
                buffer_type(body),
                out.len(),
                BODY_CHUNK.min(size - out.len()),
            )?;
            if piece.is_empty() {
                break;
            }
            out.extend_from_slice(&piece);
        }
        Ok(out)
    }

    fn body_range(&mut self, body: Body, start: usize, len: usize) -> flow::HostResult<Vec<u8>> {
        Ok(get_buffer(buffer_type(body), start, len)?)
    }

    fn set_body(&mut self, body: Body, replace: usize, data: &[u8]) -> flow::HostResult<()> {
        Ok(set_buffer(buffer_type(body), 0, replace, data)?)
    }

    fn send_response(
        &mut self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> flow::HostResult<()> {
        Ok(send_response(status, headers, body)?)
    }

    fn resume_request(&mut self) -> flow::HostResult<()> {
        Ok(resume_request()?)
    }

    fn clear_route_cache(&mut self) -> flow::HostResult<()> {
        call_foreign("clear_route_cache", &[])?;
        Ok(())
    }

    fn property(&mut self, path: &[&str]) -> flow::HostResult<Option<Vec<u8>>> {
        Ok(get_property(path)?)
    }

    fn set_property(&mut self, path: &[&str], value: &[u8]) -> flow::HostResult<()> {
        Ok(set_property(path, value)?)
    }

    fn dispatch(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout_ms: u64,
    ) -> flow::HostResult<u32> {
        proxy_wasm::hostcalls::dispatch_http_call(
            cluster,
            headers.to_vec(),
            body,
            Vec::new(),
            std::time::Duration::from_millis(timeout_ms),
        )
        .map_err(|status| flow::HostError::Failed {
            call: "dispatch_http_call",
            status: format!("{status:?}"),
        })
    }

    fn callout_answer(&mut self, num_headers: usize, body_size: usize) -> (Option<u16>, Vec<u8>) {
        call_answer(num_headers, body_size)
    }

    fn callout_header(&mut self, name: &str) -> Option<String> {
        get_header(MapType::HttpCallResponseHeaders, name)
            .ok()
            .flatten()
    }

    fn shared_get(&mut self, key: &str) -> flow::HostResult<(Option<Vec<u8>>, u32)> {
        Ok(get_shared_data(key)?)
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: u32) -> flow::HostResult<()> {
        Ok(set_shared_data(key, value, cas)?)
    }

    fn now_unix(&self) -> u64 {
        // WASI's realtime clock, which Envoy backs with its time source.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    fn random_hex(&mut self) -> String {
        let mut bytes = [0u8; 16];
        random_bytes(&mut bytes);
        let mut out = String::with_capacity(32);
        for b in bytes {
            out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            out.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
        }
        out
    }

    fn define_metric(&mut self, kind: MetricKind, name: &str) {
        let _ = metric_id(
            match kind {
                MetricKind::Counter => MetricType::Counter,
                MetricKind::Histogram => MetricType::Histogram,
            },
            name,
        );
    }

    fn count(&mut self, name: &str, by: u64) {
        // Envoy rejects a zero increment.
        if by == 0 {
            return;
        }
        if let Some(i) = metric_id(MetricType::Counter, name) {
            let _ = increment_metric(i, i64::try_from(by).unwrap_or(i64::MAX));
        }
    }

    fn record(&mut self, name: &str, value: u64) {
        if let Some(i) = metric_id(MetricType::Histogram, name) {
            let _ = record_metric(i, value);
        }
    }

    fn log_enabled(&self, l: Level) -> bool {
        LOG_LEVEL.with(|cur| level(l) as u32 >= cur.get())
    }

    fn log(&mut self, l: Level, message: &str) {
        log(level(l), message);
    }

    fn set_tick_ms(&mut self, ms: u32) -> flow::HostResult<()> {
        Ok(set_tick_period_ms(ms)?)
    }
}
