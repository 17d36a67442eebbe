//! The credential hand-off between sidecar and filter: the sidecar's answer, and the record
//! the filter keeps in Envoy shared data so every worker VM signs with one copy.

use crate::sigv4::AwsCredentials;
use serde::{Deserialize, Serialize};

/// Path of the sidecar's internal credentials endpoint.
pub const SIDECAR_CREDENTIALS_PATH: &str = "/v1/internal/aws-credentials";

/// Header carrying the shared secret on internal sidecar calls.
pub const SIDECAR_TOKEN_HEADER: &str = "x-unigate-token";

/// Credentials as stored in shared data, with the time they were fetched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialsRecord {
    /// Format version, so a new filter build can read an old record during a rollout.
    pub v: u32,
    /// The credentials.
    pub creds: AwsCredentials,
    /// Unix seconds when they were fetched from the sidecar.
    pub fetched_at: u64,
}

/// Current record version.
pub const RECORD_VERSION: u32 = 1;

impl CredentialsRecord {
    /// A record for freshly fetched credentials.
    pub fn new(creds: AwsCredentials, now: u64) -> CredentialsRecord {
        CredentialsRecord {
            v: RECORD_VERSION,
            creds,
            fetched_at: now,
        }
    }

    /// Serialized form for shared data.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a stored record (`None` for an unknown version or garbage).
    pub fn decode(bytes: &[u8]) -> Option<CredentialsRecord> {
        serde_json::from_slice::<CredentialsRecord>(bytes)
            .ok()
            .filter(|r| r.v == RECORD_VERSION)
    }

    /// Whether it is time to ask the sidecar again: the record is older than `period` or the
    /// credentials expire within five minutes.
    pub fn needs_refresh(&self, now: u64, period: u64) -> bool {
        now >= self.fetched_at.saturating_add(period) || self.creds.expired(now, 300)
    }

    /// Whether the credentials can still sign (not expired, with a small margin).
    pub fn usable(&self, now: u64) -> bool {
        !self.creds.expired(now, 5)
    }
}

/// Why the sidecar gave no credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SidecarFailure {
    /// The call failed or timed out (no answer).
    Unreachable,
    /// The sidecar has no credentials (its message explains what to set).
    NoCredentials(String),
    /// Anything else (bad token, garbage body, unexpected status).
    Invalid(String),
}

impl std::fmt::Display for SidecarFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SidecarFailure::Unreachable => write!(f, "the unigate sidecar did not answer"),
            SidecarFailure::NoCredentials(m) => write!(f, "no AWS credentials: {m}"),
            SidecarFailure::Invalid(m) => write!(f, "unusable sidecar answer: {m}"),
        }
    }
}

fn has_error_object(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.get("message")).cloned())
        .is_some()
}

/// Refuses credentials that are already expired (or expire within five seconds): signing with
/// them only earns an `ExpiredTokenException` from AWS.
pub fn check_fresh(creds: AwsCredentials, now: u64) -> Result<AwsCredentials, SidecarFailure> {
    if creds.expired(now, 5) {
        return Err(SidecarFailure::NoCredentials(format!(
            "the sidecar handed out AWS credentials that expire at {} (now {now})",
            creds.expires_at.unwrap_or(0)
        )));
    }
    Ok(creds)
}

/// Interprets the sidecar's answer to a credentials request.
pub fn parse_sidecar_answer(
    status: Option<u16>,
    body: &[u8],
) -> Result<AwsCredentials, SidecarFailure> {
    let Some(status) = status else {
        return Err(SidecarFailure::Unreachable);
    };
    let message = || {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| {
                v.get("error")
                    .and_then(|e| e.get("message"))
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| format!("HTTP {status}"))
    };
    match status {
        200 => {
            let creds: AwsCredentials = serde_json::from_slice(body)
                .map_err(|e| SidecarFailure::Invalid(format!("bad credentials JSON: {e}")))?;
            if creds.access_key_id.is_empty() || creds.secret_access_key.is_empty() {
                return Err(SidecarFailure::Invalid("empty access key".into()));
            }
            Ok(creds)
        }
        // The sidecar's own "no credentials" answer is a JSON error object; a 503 without one
        // comes from Envoy (sidecar down, connection refused), not from the sidecar.
        404 | 503 if has_error_object(body) => Err(SidecarFailure::NoCredentials(message())),
        503 => Err(SidecarFailure::Unreachable),
        502 | 504 => Err(SidecarFailure::Unreachable),
        _ => Err(SidecarFailure::Invalid(message())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(exp: Option<u64>) -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKID".into(),
            secret_access_key: "s".into(),
            session_token: None,
            expires_at: exp,
        }
    }

    #[test]
    fn record_round_trip_and_refresh() {
        let r = CredentialsRecord::new(creds(Some(10_000)), 1000);
        let back = CredentialsRecord::decode(&r.encode()).unwrap();
        assert_eq!(back, r);
        assert!(!r.needs_refresh(1010, 30));
        assert!(r.needs_refresh(1030, 30));
        assert!(r.needs_refresh(9_800, 100_000));
        assert!(r.usable(9_000) && !r.usable(9_996));
        assert!(CredentialsRecord::decode(b"{\"v\":9}").is_none());
        assert!(CredentialsRecord::decode(b"garbage").is_none());
    }

    #[test]
    fn expired_credentials_are_refused() {
        assert!(check_fresh(creds(Some(100)), 50).is_ok());
        assert!(check_fresh(creds(Some(100)), 99).is_err());
        assert!(check_fresh(creds(None), u64::MAX / 2).is_ok());
    }

    #[test]
    fn sidecar_answers() {
        let ok = parse_sidecar_answer(
            Some(200),
            br#"{"access_key_id":"A","secret_access_key":"S","session_token":"T","expires_at":5}"#,
        )
        .unwrap();
        assert_eq!(ok.session_token.as_deref(), Some("T"));
        assert_eq!(
            parse_sidecar_answer(None, b""),
            Err(SidecarFailure::Unreachable)
        );
        match parse_sidecar_answer(Some(503), br#"{"error":{"message":"set AWS_PROFILE"}}"#) {
            Err(SidecarFailure::NoCredentials(m)) => assert_eq!(m, "set AWS_PROFILE"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_sidecar_answer(Some(200), b"{}"),
            Err(SidecarFailure::Invalid(_))
        ));
        assert!(matches!(
            parse_sidecar_answer(Some(401), b""),
            Err(SidecarFailure::Invalid(_))
        ));
    }
}
