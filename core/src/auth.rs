//! Client API-key checks: keys are kept as SHA-256 digests and compared in constant time.

use sha2::{Digest, Sha256};

/// SHA-256 of a key.
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Compares two digests without an early exit.
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    diff == 0
}

/// Whether `presented` matches any configured key. Every configured key is compared, so the
/// time taken does not depend on which key (if any) matched or on how much of it matched.
pub fn key_matches(digests: &[[u8; 32]], presented: &str) -> bool {
    let d = digest(presented);
    let mut found = false;
    for k in digests {
        found |= digests_equal(k, &d);
    }
    found
}

/// The key from `Authorization: Bearer <key>`, or from `x-api-key` as Anthropic clients send.
pub fn presented_key<'a>(
    authorization: Option<&'a str>,
    x_api_key: Option<&'a str>,
) -> Option<&'a str> {
    if let Some(h) = authorization {
        let h = h.trim();
        if let Some((scheme, key)) = h.split_once(' ') {
            if scheme.eq_ignore_ascii_case("bearer") && !key.trim().is_empty() {
                return Some(key.trim());
            }
        }
    }
    x_api_key.map(str::trim).filter(|k| !k.is_empty())
}

/// A short, non-reversible label for a key, safe to log.
pub fn key_label(key: &str) -> String {
    let d = digest(key);
    d.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let keys = vec![digest("alpha"), digest("beta")];
        assert!(key_matches(&keys, "beta"));
        assert!(!key_matches(&keys, "gamma"));
        assert!(!key_matches(&[], "alpha"));
    }

    #[test]
    fn header_parsing() {
        assert_eq!(presented_key(Some("Bearer abc"), None), Some("abc"));
        assert_eq!(presented_key(Some("bearer  abc "), None), Some("abc"));
        assert_eq!(presented_key(Some("Basic abc"), None), None);
        assert_eq!(presented_key(Some("Bearer "), Some("k")), Some("k"));
        assert_eq!(presented_key(None, None), None);
        assert_eq!(key_label("abc").len(), 8);
    }
}
