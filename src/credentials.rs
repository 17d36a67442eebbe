//! AWS credentials in the filter: one copy in shared data for all worker VMs, fetched from
//! the sidecar by whichever worker holds the refresh lease.

use crate::host;
use proxy_wasm::types::Status;
use std::time::Duration;
use unigate_core::config::Gateway;
use unigate_core::credentials::{
    parse_sidecar_answer, CredentialsRecord, SidecarFailure, SIDECAR_CREDENTIALS_PATH,
    SIDECAR_TOKEN_HEADER,
};
use unigate_core::sigv4::AwsCredentials;

const RECORD_KEY: &str = "unigate.aws_credentials.v1";
const LEASE_KEY: &str = "unigate.aws_credentials.lease.v1";

/// Seconds since the Unix epoch (WASI realtime clock, which Envoy backs with its time source).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

thread_local! {
    /// The last record decoded from shared data and its CAS: the JSON is only parsed again
    /// when another worker (or a refresh) wrote a new one.
    static DECODED: std::cell::RefCell<Option<(u32, CredentialsRecord)>> =
        const { std::cell::RefCell::new(None) };
}

/// The shared record, if any worker stored one.
pub fn load() -> Option<CredentialsRecord> {
    let (bytes, cas) = match host::get_shared_data(RECORD_KEY) {
        Ok((Some(bytes), cas)) => (bytes, cas),
        _ => return None,
    };
    let cached = DECODED.with(|d| {
        d.borrow()
            .as_ref()
            .filter(|(c, _)| *c == cas && cas != 0)
            .map(|(_, r)| r.clone())
    });
    if cached.is_some() {
        return cached;
    }
    let record = CredentialsRecord::decode(&bytes)?;
    DECODED.with(|d| *d.borrow_mut() = Some((cas, record.clone())));
    Some(record)
}

/// Stores fresh credentials for every worker.
pub fn store(record: &CredentialsRecord) {
    if let Err(e) = host::set_shared_data(RECORD_KEY, &record.encode(), 0) {
        crate::error!("unigate: could not store AWS credentials in shared data: {e}");
    }
}

/// Credentials usable for signing now, if shared data has them.
pub fn current(now: u64) -> Option<AwsCredentials> {
    load().filter(|r| r.usable(now)).map(|r| r.creds)
}

/// Static credentials from the VM environment (`aws_credentials: env`).
pub fn from_env() -> Option<AwsCredentials> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Some(AwsCredentials {
        access_key_id: get("AWS_ACCESS_KEY_ID")?,
        secret_access_key: get("AWS_SECRET_ACCESS_KEY")?,
        session_token: get("AWS_SESSION_TOKEN"),
        expires_at: None,
    })
}

/// Tries to become the worker that refreshes now. The lease expires on its own, so a worker
/// that dies mid-refresh does not block the others for long.
pub fn take_lease(now: u64, ttl: u64) -> bool {
    let (value, cas) = match host::get_shared_data(LEASE_KEY) {
        Ok(v) => v,
        Err(_) => return false,
    };
    let held_until = value
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    if held_until > now {
        return false;
    }
    let until = now.saturating_add(ttl).to_string();
    match host::set_shared_data(LEASE_KEY, until.as_bytes(), cas) {
        Ok(()) => true,
        Err(e) if e.status == Status::CasMismatch => false,
        Err(_) => false,
    }
}

/// Gives the lease back after a refresh finished.
pub fn release_lease() {
    let _ = host::set_shared_data(LEASE_KEY, b"0", 0);
}

/// Headers of the credentials request to the sidecar.
pub fn request_headers(gw: &Gateway) -> Vec<(String, String)> {
    let mut h = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), SIDECAR_CREDENTIALS_PATH.to_string()),
        (":authority".to_string(), "unigate-sidecar".to_string()),
    ];
    if let Some(t) = &gw.sidecar_token {
        h.push((SIDECAR_TOKEN_HEADER.to_string(), t.clone()));
    }
    h
}

/// Timeout of a sidecar call.
pub fn timeout(gw: &Gateway) -> Duration {
    Duration::from_millis(gw.config.sidecar_timeout_ms.max(1))
}

/// Reads a finished sidecar credentials call.
pub fn read_answer(num_headers: usize, body_size: usize) -> Result<AwsCredentials, SidecarFailure> {
    let (status, body) = host::call_answer(num_headers, body_size);
    parse_sidecar_answer(status, &body)
        .and_then(|c| unigate_core::credentials::check_fresh(c, now_secs()))
}
