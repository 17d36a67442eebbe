//! The reasoning round trip: Claude's thinking (text and signature) or redacted thinking, sealed
//! into a Responses reasoning item's `encrypted_content` so a stateless client can send it back
//! next turn, and read back into an IR reasoning part.
//!
//! The sealed form is `ug1:<payload>.<tag>`: `payload` is the base64url JSON
//! `{"thinking": …, "signature": …}` or `{"redacted": …}`, `tag` the base64url first 12 bytes of
//! SHA-256 over a fixed label and the payload. It is not secret (it is the client's own
//! conversation, and Claude checks its signatures itself); the tag only makes sure that
//! anything damaged or made up is dropped here instead of reaching Bedrock. Another provider's
//! `encrypted_content` (OpenAI's) is not ours and is dropped the same way.

use crate::ir::Part;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The version prefix of the gateway's sealed reasoning.
pub const PREFIX: &str = "ug1:";

/// What the tag is computed over besides the payload (so it is ours and versioned).
const LABEL: &[u8] = b"unigate reasoning v1\0";

/// Bytes of SHA-256 kept as the tag.
const TAG_BYTES: usize = 12;

#[derive(Serialize, Deserialize)]
struct Sealed {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    thinking: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    redacted: Option<String>,
}

fn tag(payload: &str) -> String {
    let mut h = Sha256::new();
    h.update(LABEL);
    h.update(payload.as_bytes());
    let digest = h.finalize();
    URL_SAFE_NO_PAD.encode(digest.get(..TAG_BYTES).unwrap_or_default())
}

/// Seals a reasoning part for `encrypted_content`; `None` for parts that carry nothing to
/// replay (thinking without a signature, which Claude would refuse).
pub fn seal(part: &Part) -> Option<String> {
    let sealed = match part {
        Part::Reasoning {
            text,
            signature: Some(sig),
        } => Sealed {
            thinking: Some(text.clone()),
            signature: Some(sig.clone()),
            redacted: None,
        },
        Part::RedactedReasoning { data } => Sealed {
            thinking: None,
            signature: None,
            redacted: Some(data.clone()),
        },
        _ => return None,
    };
    let json = serde_json::to_vec(&sealed).ok()?;
    let payload = URL_SAFE_NO_PAD.encode(json);
    let tag = tag(&payload);
    Some(format!("{PREFIX}{payload}.{tag}"))
}

/// What an `encrypted_content` turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Unsealed {
    /// The gateway's own: the reasoning part to replay.
    Ours(Part),
    /// Not the gateway's (another provider's, e.g. OpenAI's): dropped.
    Foreign,
    /// Looks like the gateway's but does not check out: dropped.
    Damaged,
}

/// Reads an `encrypted_content` back.
pub fn unseal(value: &str) -> Unsealed {
    let Some(rest) = value.strip_prefix(PREFIX) else {
        return Unsealed::Foreign;
    };
    let Some((payload, got)) = rest.rsplit_once('.') else {
        return Unsealed::Damaged;
    };
    if tag(payload) != got {
        return Unsealed::Damaged;
    }
    let Some(sealed) = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice::<Sealed>(&b).ok())
    else {
        return Unsealed::Damaged;
    };
    match sealed {
        Sealed {
            redacted: Some(data),
            ..
        } => Unsealed::Ours(Part::RedactedReasoning { data }),
        Sealed {
            thinking: Some(text),
            signature: Some(sig),
            ..
        } => Unsealed::Ours(Part::Reasoning {
            text,
            signature: Some(sig),
        }),
        _ => Unsealed::Damaged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinking_and_redacted_thinking_round_trip() {
        for part in [
            Part::Reasoning {
                text: "Let me think — ünïcode 😀".into(),
                signature: Some("EqQBCkgIARABGAIiQL".into()),
            },
            Part::RedactedReasoning {
                data: "EmwKAhgBEgy3va".into(),
            },
        ] {
            let sealed = seal(&part).unwrap();
            assert!(sealed.starts_with("ug1:"));
            assert_eq!(unseal(&sealed), Unsealed::Ours(part));
        }
        // Thinking without a signature has nothing Claude would take back.
        assert_eq!(
            seal(&Part::Reasoning {
                text: "x".into(),
                signature: None
            }),
            None
        );
    }

    #[test]
    fn foreign_and_damaged_content_is_recognised() {
        assert_eq!(unseal("gAAAAABoOpenAIsOwn"), Unsealed::Foreign);
        assert_eq!(unseal(""), Unsealed::Foreign);
        let sealed = seal(&Part::RedactedReasoning { data: "abc".into() }).unwrap();
        // One changed character in the payload or the tag.
        let mut bytes = sealed.clone().into_bytes();
        bytes[6] = if bytes[6] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            unseal(&String::from_utf8(bytes).unwrap()),
            Unsealed::Damaged
        );
        assert_eq!(unseal(&format!("{sealed}x")), Unsealed::Damaged);
        assert_eq!(unseal("ug1:no-tag"), Unsealed::Damaged);
        // A valid tag over a payload that is not ours.
        let payload = URL_SAFE_NO_PAD.encode(b"{\"thinking\":\"no signature\"}");
        assert_eq!(
            unseal(&format!("ug1:{payload}.{}", tag(&payload))),
            Unsealed::Damaged
        );
    }
}
