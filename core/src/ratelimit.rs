//! Per-key request and token limits over fixed one-minute windows.
//!
//! The window lives in Envoy shared data (one record per key, so all worker VMs count
//! together); this module only decides, the glue reads and writes with compare-and-swap.

/// Counters of one key for one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Window {
    /// Unix minute (seconds / 60) the counters belong to.
    pub minute: u64,
    /// Requests admitted.
    pub requests: u64,
    /// Tokens charged.
    pub tokens: u64,
}

impl Window {
    /// Serialized form: `v1 <minute> <requests> <tokens>`.
    pub fn encode(&self) -> Vec<u8> {
        format!("v1 {} {} {}", self.minute, self.requests, self.tokens).into_bytes()
    }

    /// Parses the serialized form (`None` for garbage).
    pub fn decode(bytes: &[u8]) -> Option<Window> {
        let s = std::str::from_utf8(bytes).ok()?;
        let mut it = s.split(' ');
        if it.next()? != "v1" {
            return None;
        }
        Some(Window {
            minute: it.next()?.parse().ok()?,
            requests: it.next()?.parse().ok()?,
            tokens: it.next()?.parse().ok()?,
        })
    }

    /// This window if it is the current minute's, else a fresh one.
    fn current(stored: Option<Window>, now: u64) -> Window {
        let minute = now / 60;
        match stored {
            Some(w) if w.minute == minute => w,
            _ => Window {
                minute,
                ..Window::default()
            },
        }
    }
}

/// The outcome of a limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted; store this window.
    Allow(Window),
    /// Refused; retry after this many seconds.
    Deny {
        /// Seconds until the window resets.
        retry_after: u64,
        /// Which limit: `requests` or `tokens`.
        limit: &'static str,
    },
}

/// Decides whether one more request fits the key's limits at `now` (Unix seconds).
pub fn admit(stored: Option<Window>, now: u64, rpm: Option<u32>, tpm: Option<u64>) -> Decision {
    let w = Window::current(stored, now);
    let retry_after = 60 - now % 60;
    if rpm.is_some_and(|r| w.requests >= u64::from(r)) {
        return Decision::Deny {
            retry_after,
            limit: "requests",
        };
    }
    if tpm.is_some_and(|t| w.tokens >= t) {
        return Decision::Deny {
            retry_after,
            limit: "tokens",
        };
    }
    Decision::Allow(Window {
        requests: w.requests.saturating_add(1),
        ..w
    })
}

/// Charges the tokens of a finished response.
pub fn charge(stored: Option<Window>, now: u64, tokens: u64) -> Window {
    let w = Window::current(stored, now);
    Window {
        tokens: w.tokens.saturating_add(tokens),
        ..w
    }
}

/// Shared-data key of a client key's window.
pub fn shared_key(key_id: &str) -> String {
    format!("unigate.ratelimit.v1.{key_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_per_minute() {
        let mut stored = None;
        for _ in 0..3 {
            match admit(stored, 120, Some(3), None) {
                Decision::Allow(w) => stored = Some(w),
                d => panic!("{d:?}"),
            }
        }
        assert_eq!(
            admit(stored, 150, Some(3), None),
            Decision::Deny {
                retry_after: 30,
                limit: "requests"
            }
        );
        // The next minute starts fresh.
        assert!(matches!(admit(stored, 180, Some(3), None), Decision::Allow(w) if w.requests == 1));
    }

    #[test]
    fn tokens_are_charged_after_the_fact() {
        let w = charge(None, 60, 900);
        assert!(matches!(
            admit(Some(w), 61, None, Some(1000)),
            Decision::Allow(_)
        ));
        let w = charge(Some(w), 62, 200);
        assert_eq!(w.tokens, 1100);
        assert!(matches!(
            admit(Some(w), 63, None, Some(1000)),
            Decision::Deny {
                limit: "tokens",
                ..
            }
        ));
        assert_eq!(Window::decode(&w.encode()), Some(w));
        assert_eq!(Window::decode(b"garbage"), None);
    }
}
