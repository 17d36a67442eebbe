//! AWS credentials in the filter: one copy in shared data for all worker VMs, fetched from the
//! sidecar by whichever worker holds the refresh lease.

use super::{log_with, Host, HostError, Level};
use crate::config::Gateway;
use crate::credentials::{
    check_fresh, parse_sidecar_answer, CredentialsRecord, SidecarFailure, SIDECAR_CREDENTIALS_PATH,
    SIDECAR_TOKEN_HEADER,
};
use crate::sigv4::AwsCredentials;
use std::cell::RefCell;

/// Shared-data key of the credentials record.
pub const RECORD_KEY: &str = "unigate.aws_credentials.v1";
/// Shared-data key of the refresh lease.
pub const LEASE_KEY: &str = "unigate.aws_credentials.lease.v1";

thread_local! {
    /// The last record decoded from shared data and its CAS: the JSON is only parsed again
    /// when another worker (or a refresh) wrote a new one.
    static DECODED: RefCell<Option<(u32, CredentialsRecord)>> = const { RefCell::new(None) };
}

/// The shared record, if any worker stored one.
pub fn load<H: Host + ?Sized>(host: &mut H) -> Option<CredentialsRecord> {
    let (bytes, cas) = match host.shared_get(RECORD_KEY) {
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
pub fn store<H: Host + ?Sized>(host: &mut H, record: &CredentialsRecord) {
    if let Err(e) = host.shared_set(RECORD_KEY, &record.encode(), 0) {
        log_with(host, Level::Error, || {
            format!("unigate: could not store AWS credentials in shared data: {e}")
        });
    }
}

/// Credentials usable for signing now, if shared data has them.
pub fn current<H: Host + ?Sized>(host: &mut H, now: u64) -> Option<AwsCredentials> {
    load(host).filter(|r| r.usable(now)).map(|r| r.creds)
}

/// Tries to become the worker that refreshes now. The lease expires on its own, so a worker
/// that dies mid-refresh does not block the others for long.
pub fn take_lease<H: Host + ?Sized>(host: &mut H, now: u64, ttl: u64) -> bool {
    let Ok((value, cas)) = host.shared_get(LEASE_KEY) else {
        return false;
    };
    let held_until = value
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    if held_until > now {
        return false;
    }
    let until = now.saturating_add(ttl).to_string();
    host.shared_set(LEASE_KEY, until.as_bytes(), cas).is_ok()
}

/// Gives the lease back after a refresh finished.
pub fn release_lease<H: Host + ?Sized>(host: &mut H) {
    let _ = host.shared_set(LEASE_KEY, b"0", 0);
}

/// Headers of the credentials request to the sidecar.
pub fn request_headers(gw: &Gateway) -> Vec<(&'static str, String)> {
    let mut h = vec![
        (":method", "GET".to_string()),
        (":path", SIDECAR_CREDENTIALS_PATH.to_string()),
        (":authority", "unigate-sidecar".to_string()),
    ];
    if let Some(t) = &gw.sidecar_token {
        h.push((SIDECAR_TOKEN_HEADER, t.clone()));
    }
    h
}

/// Asks the sidecar for credentials (the answer arrives as a callout response).
pub fn dispatch<H: Host + ?Sized>(host: &mut H, gw: &Gateway) -> Result<u32, HostError> {
    let headers = request_headers(gw);
    let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    host.dispatch(
        &gw.config.sidecar_cluster,
        &refs,
        None,
        gw.config.sidecar_timeout_ms.max(1),
    )
}

/// Reads a finished sidecar credentials call.
pub fn read_answer<H: Host + ?Sized>(
    host: &mut H,
    num_headers: usize,
    body_size: usize,
) -> Result<AwsCredentials, SidecarFailure> {
    let (status, body) = host.callout_answer(num_headers, body_size);
    parse_sidecar_answer(status, &body).and_then(|c| check_fresh(c, host.now_unix()))
}
