//! An in-memory [`Host`] for native tests of the flows: it holds the request and response as
//! Envoy would, records every call the filter makes, and lets a test steer time, randomness,
//! shared data and failures.

use super::{Body, Headers, Host, HostError, HostResult, Level, MetricKind};
use std::collections::BTreeMap;

/// A callout the filter started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    /// Target cluster.
    pub cluster: String,
    /// Request headers.
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Option<Vec<u8>>,
    /// Timeout in milliseconds.
    pub timeout_ms: u64,
}

/// A local reply the filter sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl LocalReply {
    /// The body as JSON (panics in tests when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The in-memory host.
#[derive(Debug, Default)]
pub struct MockHost {
    /// Request headers as they would go upstream (lower-case names, in order).
    pub request_headers: Vec<(String, String)>,
    /// The buffered request body.
    pub request_body: Vec<u8>,
    /// Response headers as they would go to the client.
    pub response_headers: Vec<(String, String)>,
    /// The current response body chunk (after the filter's rewrite).
    pub response_body: Vec<u8>,
    /// The local reply, if the filter answered itself.
    pub reply: Option<LocalReply>,
    /// Callouts started, in order.
    pub dispatches: Vec<Dispatch>,
    /// The answer the next `callout_answer` returns.
    pub callout: (Option<u16>, Vec<u8>),
    /// Headers of that answer.
    pub callout_headers: Vec<(String, String)>,
    /// Shared data: value and CAS.
    pub shared: BTreeMap<String, (Vec<u8>, u32)>,
    /// Filter state set by the filter.
    pub properties: BTreeMap<String, Vec<u8>>,
    /// Properties the host reports (`response.code_details`, …).
    pub host_properties: BTreeMap<String, Vec<u8>>,
    /// Counter values.
    pub counters: BTreeMap<String, u64>,
    /// Histogram samples.
    pub histograms: BTreeMap<String, Vec<u64>>,
    /// Defined metrics.
    pub defined: Vec<String>,
    /// Log lines written.
    pub logs: Vec<(Level, String)>,
    /// Whether debug lines are enabled.
    pub debug: bool,
    /// Wall-clock seconds.
    pub now_unix: u64,
    /// Milliseconds.
    pub now_ms: u64,
    /// Number of ids handed out so far (ids are deterministic).
    pub ids: u64,
    /// Times the route cache was cleared.
    pub route_cache_clears: u32,
    /// Times the request was resumed.
    pub resumes: u32,
    /// The tick period set last.
    pub tick_ms: Option<u32>,
    /// Make `dispatch` fail.
    pub fail_dispatch: bool,
}

impl MockHost {
    /// A host holding a request with `headers` and `body`.
    pub fn request(headers: &[(&str, &str)], body: &[u8]) -> MockHost {
        MockHost {
            request_headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            request_body: body.to_vec(),
            now_unix: 1_700_000_000,
            now_ms: 1_000,
            ..MockHost::default()
        }
    }

    /// A request header as the upstream would see it.
    pub fn request_header(&self, name: &str) -> Option<&str> {
        find(&self.request_headers, name)
    }

    /// A response header as the client would see it.
    pub fn response_header(&self, name: &str) -> Option<&str> {
        find(&self.response_headers, name)
    }

    /// A counter's value (0 when never counted).
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// Sets the upstream's response headers.
    pub fn respond(&mut self, headers: &[(&str, &str)]) {
        self.response_headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }
}

fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn set(headers: &mut Vec<(String, String)>, name: &str, value: &str) {
    headers.retain(|(k, _)| k != name);
    headers.push((name.to_string(), value.to_string()));
}

impl Host for MockHost {
    fn headers(&mut self, map: Headers) -> HostResult<Vec<(String, Vec<u8>)>> {
        let h = match map {
            Headers::Request => &self.request_headers,
            Headers::Response => &self.response_headers,
        };
        Ok(h.iter()
            .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
            .collect())
    }

    fn header(&mut self, map: Headers, name: &str) -> HostResult<Option<String>> {
        let h = match map {
            Headers::Request => &self.request_headers,
            Headers::Response => &self.response_headers,
        };
        Ok(find(h, name).map(str::to_string))
    }

    fn set_header(&mut self, map: Headers, name: &str, value: &str) -> HostResult<()> {
        match map {
            Headers::Request => set(&mut self.request_headers, name, value),
            Headers::Response => set(&mut self.response_headers, name, value),
        }
        Ok(())
    }

    fn remove_header(&mut self, map: Headers, name: &str) -> HostResult<()> {
        match map {
            Headers::Request => self.request_headers.retain(|(k, _)| k != name),
            Headers::Response => self.response_headers.retain(|(k, _)| k != name),
        }
        Ok(())
    }

    fn body(&mut self, body: Body, size: usize) -> HostResult<Vec<u8>> {
        let b = match body {
            Body::Request => &self.request_body,
            Body::Response => &self.response_body,
        };
        Ok(b.get(..size.min(b.len())).unwrap_or_default().to_vec())
    }

    fn body_range(&mut self, body: Body, start: usize, len: usize) -> HostResult<Vec<u8>> {
        let b = match body {
            Body::Request => &self.request_body,
            Body::Response => &self.response_body,
        };
        let end = start.saturating_add(len).min(b.len());
        Ok(b.get(start..end).unwrap_or_default().to_vec())
    }

    fn set_body(&mut self, body: Body, replace: usize, data: &[u8]) -> HostResult<()> {
        let b = match body {
            Body::Request => &mut self.request_body,
            Body::Response => &mut self.response_body,
        };
        let cut = replace.min(b.len());
        b.splice(..cut, data.iter().copied());
        Ok(())
    }

    fn send_response(
        &mut self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HostResult<()> {
        self.reply = Some(LocalReply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        });
        Ok(())
    }

    fn resume_request(&mut self) -> HostResult<()> {
        self.resumes += 1;
        Ok(())
    }

    fn clear_route_cache(&mut self) -> HostResult<()> {
        self.route_cache_clears += 1;
        Ok(())
    }

    fn property(&mut self, path: &[&str]) -> HostResult<Option<Vec<u8>>> {
        Ok(self.host_properties.get(&path.join(".")).cloned())
    }

    fn set_property(&mut self, path: &[&str], value: &[u8]) -> HostResult<()> {
        self.properties.insert(path.join("."), value.to_vec());
        Ok(())
    }

    fn dispatch(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout_ms: u64,
    ) -> HostResult<u32> {
        if self.fail_dispatch {
            return Err(HostError::Failed {
                call: "dispatch_http_call",
                status: "BadArgument".into(),
            });
        }
        self.dispatches.push(Dispatch {
            cluster: cluster.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.map(<[u8]>::to_vec),
            timeout_ms,
        });
        Ok(u32::try_from(self.dispatches.len()).unwrap_or(u32::MAX))
    }

    fn callout_answer(&mut self, _num_headers: usize, _body_size: usize) -> (Option<u16>, Vec<u8>) {
        self.callout.clone()
    }

    fn callout_header(&mut self, name: &str) -> Option<String> {
        find(&self.callout_headers, name).map(str::to_string)
    }

    fn shared_get(&mut self, key: &str) -> HostResult<(Option<Vec<u8>>, u32)> {
        Ok(match self.shared.get(key) {
            Some((v, cas)) => (Some(v.clone()), *cas),
            None => (None, 0),
        })
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: u32) -> HostResult<()> {
        let current = self.shared.get(key).map_or(0, |(_, c)| *c);
        if cas != 0 && cas != current {
            return Err(HostError::CasMismatch);
        }
        self.shared.insert(
            key.to_string(),
            (value.to_vec(), current.wrapping_add(1).max(1)),
        );
        Ok(())
    }

    fn now_unix(&self) -> u64 {
        self.now_unix
    }

    fn now_ms(&self) -> u64 {
        self.now_ms
    }

    fn random_hex(&mut self) -> String {
        self.ids += 1;
        format!("{:032x}", self.ids)
    }

    fn define_metric(&mut self, _kind: MetricKind, name: &str) {
        self.defined.push(name.to_string());
    }

    fn count(&mut self, name: &str, by: u64) {
        *self.counters.entry(name.to_string()).or_default() += by;
    }

    fn record(&mut self, name: &str, value: u64) {
        self.histograms
            .entry(name.to_string())
            .or_default()
            .push(value);
    }

    fn log_enabled(&self, level: Level) -> bool {
        self.debug || level >= Level::Info
    }

    fn log(&mut self, level: Level, message: &str) {
        self.logs.push((level, message.to_string()));
    }

    fn set_tick_ms(&mut self, ms: u32) -> HostResult<()> {
        self.tick_ms = Some(ms);
        Ok(())
    }
}
