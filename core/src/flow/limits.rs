//! Per-key request and token limits, counted in shared data so every worker VM sees the same
//! numbers (compare-and-swap on one record per key).

use super::{log_with, Host, HostError, Level};
use crate::auth::ClientKey;
use crate::error::{ErrorType, GatewayError};
use crate::ratelimit::{self, Decision, Window};

/// Attempts before giving up on a contended record (then the request is let through).
const CAS_ATTEMPTS: usize = 8;

fn load<H: Host + ?Sized>(host: &mut H, key: &str) -> Result<(Option<Window>, u32), HostError> {
    let (value, cas) = host.shared_get(key)?;
    Ok((value.and_then(|v| Window::decode(&v)), cas))
}

/// Admits one request for `key` at `now`, or explains the 429.
pub fn admit<H: Host + ?Sized>(
    host: &mut H,
    key: &ClientKey,
    now: u64,
) -> Result<(), GatewayError> {
    if key.rpm.is_none() && key.tpm.is_none() {
        return Ok(());
    }
    let sk = ratelimit::shared_key(&key.id());
    for _ in 0..CAS_ATTEMPTS {
        let Ok((stored, cas)) = load(host, &sk) else {
            return Ok(());
        };
        match ratelimit::admit(stored, now, key.rpm, key.tpm) {
            Decision::Deny { retry_after, limit } => {
                let what = if limit == "tokens" {
                    format!("{} tokens", key.tpm.unwrap_or(0))
                } else {
                    format!("{} requests", key.rpm.unwrap_or(0))
                };
                return Err(GatewayError::new(
                    429,
                    ErrorType::RateLimit,
                    format!(
                        "Rate limit reached for key `{}`: {what} per minute. Retry after {retry_after} s.",
                        key.label
                    ),
                )
                .with_code("rate_limit_exceeded")
                .with_retry_after(retry_after));
            }
            Decision::Allow(w) => match host.shared_set(&sk, &w.encode(), cas) {
                Ok(()) => return Ok(()),
                Err(HostError::CasMismatch) => continue,
                Err(_) => return Ok(()),
            },
        }
    }
    log_with(host, Level::Warn, || {
        format!(
            "unigate: rate-limit record for {} contended; request let through",
            key.label
        )
    });
    Ok(())
}

/// Charges the tokens of a finished answer to `key`.
pub fn charge<H: Host + ?Sized>(host: &mut H, key: &ClientKey, now: u64, tokens: u64) {
    if key.tpm.is_none() || tokens == 0 {
        return;
    }
    let sk = ratelimit::shared_key(&key.id());
    for _ in 0..CAS_ATTEMPTS {
        let Ok((stored, cas)) = load(host, &sk) else {
            return;
        };
        let w = ratelimit::charge(stored, now, tokens);
        match host.shared_set(&sk, &w.encode(), cas) {
            Err(HostError::CasMismatch) => continue,
            _ => return,
        }
    }
}
