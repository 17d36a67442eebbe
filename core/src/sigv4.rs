//! SigV4 signing of Bedrock requests (via `aws-sigv4`) and the path encoding that keeps the
//! signed path and the wire path in agreement.

use crate::error::GatewayError;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
};
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

/// Signs a request and returns the headers to add (`authorization`, `x-amz-date`,
/// `x-amz-content-sha256` and, for temporary credentials, `x-amz-security-token`).
///
/// The canonical path is the wire path percent-encoded once more (aws-sigv4's default
/// double encoding), which is what AWS expects for every service except S3.
pub fn sign_request(
    input: &SignInput<'_>,
    creds: &AwsCredentials,
    now_unix: u64,
) -> Result<Vec<(String, String)>, GatewayError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        GatewayError::internal(format!("Could not sign the Bedrock request ({what}: {e})."))
            .with_code("signing_failed")
    };
    let identity = Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.clone(),
        creds.session_token.clone(),
        None,
        "unigate",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let time = UNIX_EPOCH
        .checked_add(Duration::from_secs(now_unix))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(input.region)
        .name(input.service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| fail("parameters", &e))?
        .into();
    let url = format!("https://{}{}", input.authority, input.path);
    // Passing `host` explicitly makes the signer use exactly the authority Envoy sends.
    let headers = [
        ("host", input.authority),
        ("content-type", input.content_type),
    ];
    let signable = SignableRequest::new(
        input.method,
        url,
        headers.into_iter(),
        SignableBody::Bytes(input.body),
    )
    .map_err(|e| fail("request", &e))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| fail("signature", &e))?
        .into_parts();
    let (headers, _query) = instructions.into_parts();
    Ok(headers
        .into_iter()
        .map(|h| (h.name().to_string(), h.value().to_string()))
        .collect())
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
