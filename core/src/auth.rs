//! Client API keys: how they are configured, kept (SHA-256 digests only) and checked
//! (constant time), and what each key may do (models, request and token rates).

use crate::route::glob_match;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One configured key with its optional name, model patterns and limits (the shape of
/// `API_KEYS_FILE` entries). Its `Debug` output never shows the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// The secret key.
    pub key: String,
    /// A name for logs and metrics (otherwise a short hash is used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Glob patterns of models this key may use (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    /// Tokens (prompt + completion) per minute, charged when responses end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry")
            .field("key", &REDACTED)
            .field("name", &self.name)
            .field("models", &self.models)
            .field("rpm", &self.rpm)
            .field("tpm", &self.tpm)
            .finish()
    }
}

/// What `Debug` output shows instead of a secret.
pub const REDACTED: &str = "[redacted]";

/// A key in the plugin configuration: a bare string or a full entry. Its `Debug` output never
/// shows the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KeySpec {
    /// Just the key.
    Plain(String),
    /// Key with name, models and limits.
    Full(KeyEntry),
}

impl std::fmt::Debug for KeySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySpec::Plain(_) => f.debug_tuple("Plain").field(&REDACTED).finish(),
            KeySpec::Full(e) => f.debug_tuple("Full").field(e).finish(),
        }
    }
}

impl KeySpec {
    /// The entry form.
    pub fn into_entry(self) -> KeyEntry {
        match self {
            KeySpec::Plain(key) => KeyEntry {
                key,
                name: None,
                models: Vec::new(),
                rpm: None,
                tpm: None,
            },
            KeySpec::Full(e) => e,
        }
    }
}

/// A key as the filter keeps it: never the key itself.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientKey {
    /// SHA-256 of the key.
    pub digest: [u8; 32],
    /// What logs and metrics call this key: its name, or `key-` plus a short hash.
    pub label: String,
    /// Allowed model patterns (empty: all).
    pub models: Vec<String>,
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Tokens per minute.
    pub tpm: Option<u64>,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("label", &self.label)
            .finish()
    }
}

impl ClientKey {
    /// Builds the kept form of an entry.
    pub fn from_entry(e: &KeyEntry) -> ClientKey {
        let label = match &e.name {
            Some(n) if !n.is_empty() => n.clone(),
            _ => format!("key-{}", key_label(&e.key)),
        };
        ClientKey {
            digest: digest(&e.key),
            label,
            models: e.models.clone(),
            rpm: e.rpm.filter(|r| *r > 0),
            tpm: e.tpm.filter(|t| *t > 0),
        }
    }

    /// Whether this key may use a model (by the name the client sent or the resolved id).
    pub fn model_allowed(&self, requested: &str, resolved: &str) -> bool {
        self.models.is_empty()
            || self
                .models
                .iter()
                .any(|p| glob_match(p, requested) || glob_match(p, resolved))
    }

    /// Short hex id used in shared-data keys (not reversible to the key).
    pub fn id(&self) -> String {
        self.digest
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Finds the key matching `presented`, comparing against every configured key so the time
/// taken does not reveal which key matched or how much of it.
pub fn find_key<'a>(keys: &'a [ClientKey], presented: &str) -> Option<&'a ClientKey> {
    let d = digest(presented);
    let mut found = None;
    for k in keys {
        if digests_equal(&k.digest, &d) {
            found = Some(k);
        }
    }
    found
}

/// Parses a JSON array of key entries (the `API_KEYS_FILE` format).
pub fn parse_key_entries(json: &str) -> Result<Vec<KeyEntry>, String> {
    let specs: Vec<KeySpec> =
        serde_json::from_str(json).map_err(|e| format!("invalid API keys JSON: {e}"))?;
    let entries: Vec<KeyEntry> = specs.into_iter().map(KeySpec::into_entry).collect();
    if let Some(i) = entries.iter().position(|e| e.key.trim().is_empty()) {
        return Err(format!("API key entry {i} has an empty `key`"));
    }
    Ok(entries)
}

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

/// Headers that carry credentials (the client's or the gateway's): removed before anything
/// is forwarded upstream and never printed.
pub const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "x-api-key",
    "proxy-authorization",
    "x-amz-security-token",
    "cookie",
];

/// Whether a header name (lower case) carries credentials.
pub fn is_credential_header(name: &str) -> bool {
    CREDENTIAL_HEADERS.contains(&name)
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
    fn entries_and_models() {
        let entries = parse_key_entries(
            r#"["plain", {"key": "k2", "name": "team-a", "models": ["gpt-*", "claude-3-haiku"], "rpm": 5}]"#,
        )
        .unwrap();
        let keys: Vec<ClientKey> = entries.iter().map(ClientKey::from_entry).collect();
        assert!(keys[0].label.starts_with("key-") && keys[0].label.len() == 12);
        let k = find_key(&keys, "k2").unwrap();
        assert_eq!(k.label, "team-a");
        assert_eq!(k.rpm, Some(5));
        assert!(k.model_allowed("gpt-4o", "gpt-4o"));
        assert!(k.model_allowed("claude-3-haiku", "anthropic.claude-3-haiku-20240307-v1:0"));
        assert!(!k.model_allowed("amazon.nova-pro-v1:0", "amazon.nova-pro-v1:0"));
        assert!(find_key(&keys, "nope").is_none());
        assert!(parse_key_entries(r#"[{"key": ""}]"#).is_err());
        assert!(parse_key_entries(r#"[{"key": "x", "extra": 1}]"#).is_err());
        assert!(!format!("{k:?}").contains("k2"));
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
