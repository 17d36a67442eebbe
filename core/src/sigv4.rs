//! SigV4 signing of Bedrock requests (via `aws-sigv4`) and the path encoding that keeps the
//! signed path and the wire path in agreement.

use crate::error::GatewayError;
use aws_sigv4::sign::v4;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// AWS credentials as the sidecar hands them to the filter.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AwsCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
    /// Unix seconds after which the credentials are no longer valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets, even in debug output.
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl AwsCredentials {
    /// Whether the credentials are expired (or expire within `margin_secs`) at `now_secs`.
    pub fn expired(&self, now_secs: u64, margin_secs: u64) -> bool {
        match self.expires_at {
            Some(exp) => now_secs.saturating_add(margin_secs) >= exp,
            None => false,
        }
    }
}

/// Percent-encodes one path segment, keeping only RFC 3986 unreserved characters
/// (`:` in model ids becomes `%3A`, `/` in ARNs becomes `%2F`).
pub fn encode_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len() + 8);
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0x0f));
        }
    }
    out
}

fn hex_digit(n: u8) -> char {
    char::from(if n < 10 { b'0' + n } else { b'A' + n - 10 })
}

/// What to sign: the exact request Envoy will send upstream.
#[derive(Debug, Clone, Copy)]
pub struct SignInput<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// `host` (authority) as sent upstream, with a port when it is not the default.
    pub authority: &'a str,
    /// Path as sent on the wire (already percent-encoded once).
    pub path: &'a str,
    /// `content-type` header value.
    pub content_type: &'a str,
    /// The exact body bytes.
    pub body: &'a [u8],
    /// AWS region of the endpoint.
    pub region: &'a str,
    /// Signing name (`bedrock` for bedrock-runtime).
    pub service: &'a str,
}

/// `YYYYMMDD` and `YYYYMMDDTHHMMSSZ` for Unix seconds (UTC).
pub fn amz_dates(now_unix: u64) -> (String, String) {
    let days = i64::try_from(now_unix / 86_400).unwrap_or(0);
    let secs = now_unix % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm), valid for the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let date = format!("{year:04}{month:02}{day:02}");
    let time = format!(
        "{date}T{:02}{:02}{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    );
    (date, time)
}

/// The SHA-256 of `data`, in lowercase hex (SigV4's payload hash).
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(data);
    let mut out = String::with_capacity(64);
    for b in d {
        out.push(hex_digit(b >> 4).to_ascii_lowercase());
        out.push(hex_digit(b & 0x0f).to_ascii_lowercase());
    }
    out
}

/// The canonical URI: the wire path percent-encoded once more (`%` → `%25`), which is what
/// AWS expects for every service except S3.
fn canonical_uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 16);
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0x0f));
        }
    }
    out
}

/// Trims and collapses inner whitespace of a header value (SigV4 canonical form).
fn canonical_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Secret digest, day, region, service, and the key derived from them.
type CachedKey = ([u8; 32], String, String, String, Vec<u8>);

thread_local! {
    /// The last derived signing key: it depends only on the secret, the day, the region and
    /// the service, so one HMAC chain a day is enough (SHA-256 runs in software in Wasm).
    static KEY_CACHE: std::cell::RefCell<Option<CachedKey>> =
        const { std::cell::RefCell::new(None) };
}

fn signing_key(secret: &str, date: &str, now_unix: u64, region: &str, service: &str) -> Vec<u8> {
    let secret_digest = crate::auth::digest(secret);
    let cached = KEY_CACHE.with(|c| {
        c.borrow().as_ref().and_then(|(d, day, r, svc, key)| {
            (d == &secret_digest && day == date && r == region && svc == service)
                .then(|| key.clone())
        })
    });
    if let Some(k) = cached {
        return k;
    }
    let time = UNIX_EPOCH
        .checked_add(Duration::from_secs(now_unix))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let key = v4::generate_signing_key(secret, time, region, service)
        .as_ref()
        .to_vec();
    KEY_CACHE.with(|c| {
        *c.borrow_mut() = Some((
            secret_digest,
            date.to_string(),
            region.to_string(),
            service.to_string(),
            key.clone(),
        ))
    });
    key
}

/// Signs a request and returns the headers to add (`authorization`, `x-amz-date`,
/// `x-amz-content-sha256` and, for temporary credentials, `x-amz-security-token`).
///
/// The signed headers are exactly those Envoy will not change afterwards: `content-type`,
/// `host`, `x-amz-content-sha256`, `x-amz-date` and `x-amz-security-token`. The key
/// derivation and the final HMAC are aws-sigv4's; the canonical request is built here because
/// the header set is fixed, which lets the derived key be cached.
pub fn sign_request(
    input: &SignInput<'_>,
    creds: &AwsCredentials,
    now_unix: u64,
) -> Result<Vec<(String, String)>, GatewayError> {
    sign_hashed(input, &sha256_hex(input.body), creds, now_unix)
}

/// [`sign_request`] for a body known by its SHA-256 (hex) only: `input.body` is not read.
pub fn sign_hashed(
    input: &SignInput<'_>,
    payload_hash: &str,
    creds: &AwsCredentials,
    now_unix: u64,
) -> Result<Vec<(String, String)>, GatewayError> {
    if creds.access_key_id.is_empty() || creds.secret_access_key.is_empty() {
        return Err(GatewayError::internal(
            "Could not sign the Bedrock request: the AWS credentials are empty.",
        )
        .with_code("signing_failed"));
    }
    let (date, amz_date) = amz_dates(now_unix);
    let token = creds.session_token.as_deref().filter(|t| !t.is_empty());
    let mut canonical = String::with_capacity(512);
    canonical.push_str(input.method);
    canonical.push('\n');
    canonical.push_str(&canonical_uri(input.path));
    canonical.push_str("\n\n");
    canonical.push_str("content-type:");
    canonical.push_str(&canonical_value(input.content_type));
    canonical.push_str("\nhost:");
    canonical.push_str(&canonical_value(input.authority));
    canonical.push_str("\nx-amz-content-sha256:");
    canonical.push_str(payload_hash);
    canonical.push_str("\nx-amz-date:");
    canonical.push_str(&amz_date);
    canonical.push('\n');
    let signed_headers = if let Some(t) = token {
        canonical.push_str("x-amz-security-token:");
        canonical.push_str(&canonical_value(t));
        canonical.push('\n');
        "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token"
    } else {
        "content-type;host;x-amz-content-sha256;x-amz-date"
    };
    canonical.push('\n');
    canonical.push_str(signed_headers);
    canonical.push('\n');
    canonical.push_str(payload_hash);

    let scope = format!("{date}/{}/{}/aws4_request", input.region, input.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let key = signing_key(
        &creds.secret_access_key,
        &date,
        now_unix,
        input.region,
        input.service,
    );
    let signature = v4::calculate_signature(&key, string_to_sign.as_bytes());
    let mut headers = vec![
        ("x-amz-date".to_string(), amz_date),
        ("x-amz-content-sha256".to_string(), payload_hash.to_string()),
        (
            "authorization".to_string(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                creds.access_key_id
            ),
        ),
    ];
    if let Some(t) = token {
        headers.push(("x-amz-security-token".to_string(), t.to_string()));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_model_ids_and_arns() {
        assert_eq!(
            encode_path_segment("us.anthropic.claude-3-5-haiku-20241022-v1:0"),
            "us.anthropic.claude-3-5-haiku-20241022-v1%3A0"
        );
        assert_eq!(
            encode_path_segment("arn:aws:bedrock:us-east-1:123:inference-profile/us.x"),
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Ainference-profile%2Fus.x"
        );
        assert_eq!(
            encode_path_segment("amazon.titan-text-express-v1"),
            "amazon.titan-text-express-v1"
        );
    }

    /// The worked example from docs (verified there against botocore's SigV4Auth).
    #[test]
    fn matches_botocore_vector() {
        let creds = AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: Some("IQoJb3JpZ2luX2VjEXAMPLETOKEN".into()),
            expires_at: None,
        };
        let body = br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":64,"messages":[{"role":"user","content":"Hi"}]}"#;
        let path = format!(
            "/model/{}/invoke",
            encode_path_segment("us.anthropic.claude-3-5-haiku-20241022-v1:0")
        );
        // 2025-01-01T12:00:00Z
        let headers = sign_request(
            &SignInput {
                method: "POST",
                authority: "bedrock-runtime.us-east-1.amazonaws.com",
                path: &path,
                content_type: "application/json",
                body,
                region: "us-east-1",
                service: "bedrock",
            },
            &creds,
            1_735_732_800,
        )
        .unwrap();
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get("x-amz-date"), "20250101T120000Z");
        assert_eq!(get("x-amz-security-token"), "IQoJb3JpZ2luX2VjEXAMPLETOKEN");
        assert_eq!(
            get("x-amz-content-sha256"),
            "bfe9595c6d3fa2509aa43ae91038e137bdd65ac5d9fe6b5a6f3d86a876b1ce96"
        );
        assert_eq!(
            get("authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250101/us-east-1/bedrock/aws4_request, \
             SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, \
             Signature=84ed5a3019f213e913132aa7bb09c34a83a53b116124f1f2e4c98366cdca5ba3"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(
            amz_dates(1_735_732_800),
            ("20250101".into(), "20250101T120000Z".into())
        );
        assert_eq!(amz_dates(0), ("19700101".into(), "19700101T000000Z".into()));
        assert_eq!(
            amz_dates(951_782_400),
            ("20000229".into(), "20000229T000000Z".into())
        );
        assert_eq!(amz_dates(1_798_761_599).1, "20261231T235959Z");
    }

    #[test]
    fn cached_key_gives_the_same_signature() {
        let creds = AwsCredentials {
            access_key_id: "AKID".into(),
            secret_access_key: "s1".into(),
            session_token: None,
            expires_at: None,
        };
        let input = SignInput {
            method: "POST",
            authority: "h",
            path: "/model/a%3Ab/invoke",
            content_type: "application/json",
            body: b"{}",
            region: "us-east-1",
            service: "bedrock",
        };
        let a = sign_request(&input, &creds, 1_700_000_000).unwrap();
        let b = sign_request(&input, &creds, 1_700_000_000).unwrap();
        assert_eq!(a, b);
        let other = AwsCredentials {
            secret_access_key: "s2".into(),
            ..creds
        };
        assert_ne!(sign_request(&input, &other, 1_700_000_000).unwrap(), a);
        assert!(!a.iter().any(|(k, _)| k == "x-amz-security-token"));
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = AwsCredentials {
            access_key_id: "AKID".into(),
            secret_access_key: "topsecret".into(),
            session_token: Some("tok".into()),
            expires_at: Some(5),
        };
        let s = format!("{c:?}");
        assert!(!s.contains("topsecret") && !s.contains("tok\""));
        assert!(c.expired(10, 0) && !c.expired(1, 0) && c.expired(1, 10));
    }
}
