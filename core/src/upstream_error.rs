//! Upstream and Envoy-generated failures mapped to OpenAI error objects.

use crate::error::{ErrorType, GatewayError};
use serde_json::Value;

/// The longest upstream error message passed on to clients.
const MAX_MESSAGE: usize = 2000;

fn clip(s: &str) -> String {
    if s.len() <= MAX_MESSAGE {
        return s.to_string();
    }
    let mut end = MAX_MESSAGE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", s.get(..end).unwrap_or_default())
}

/// The first sentence of a message. AWS signature errors go on to echo the canonical request,
/// which contains the session token: that part must never reach a client.
fn first_sentence(message: &str) -> String {
    let cut = message
        .find("\n")
        .into_iter()
        .chain(message.find(". "))
        .chain(message.find("The Canonical String"))
        .min()
        .unwrap_or(message.len());
    let head = message.get(..cut).unwrap_or(message).trim_end_matches('.');
    format!("{head}.")
}

/// Removes any line or fragment carrying AWS credentials from a relayed upstream message.
pub fn redact_aws_secrets(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    let markers = [
        "x-amz-security-token",
        "canonical string",
        "aws4-hmac-sha256",
        "credential=",
    ];
    match markers.iter().filter_map(|m| lower.find(m)).min() {
        Some(i) => format!(
            "{} [details redacted by the gateway]",
            message.get(..i).unwrap_or_default().trim_end()
        ),
        None => message.to_string(),
    }
}

/// The message in an error body: `message`, `Message`, `error.message`, or the raw text.
fn body_message(body: &[u8]) -> Option<String> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        for m in [
            v.get("message"),
            v.get("Message"),
            v.get("error").and_then(|e| e.get("message")),
            v.get("error").filter(|e| e.is_string()),
        ]
        .into_iter()
        .flatten()
        {
            if let Some(s) = m.as_str() {
                return Some(clip(s));
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    (!text.is_empty()).then(|| clip(text))
}

/// The Bedrock error name from `x-amzn-errortype` (`Name:http://…` → `Name`) or the body's
/// `__type`.
pub fn bedrock_error_name(header: Option<&str>, body: &[u8]) -> Option<String> {
    let from_header = header
        .map(|h| h.split(':').next().unwrap_or(h))
        .map(|h| h.rsplit('#').next().unwrap_or(h).trim().to_string())
        .filter(|h| !h.is_empty());
    from_header.or_else(|| {
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("__type").and_then(Value::as_str).map(str::to_string))
            .map(|t| t.rsplit('#').next().unwrap_or(&t).to_string())
    })
}

/// AWS error names that mean the caller's credentials or signature were refused (for the
/// gateway's upstream calls: the gateway's own credentials).
pub fn is_credential_error(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "unrecognizedclientexception"
            | "invalidsignatureexception"
            | "expiredtokenexception"
            | "incompletesignatureexception"
            | "missingauthenticationtokenexception"
            | "signaturedoesnotmatch"
    )
}

/// Maps a Bedrock error response (HTTP status, `x-amzn-errortype`, body) to the client error.
pub fn from_bedrock(status: u16, error_type: Option<&str>, body: &[u8]) -> GatewayError {
    let name = bedrock_error_name(error_type, body).unwrap_or_default();
    let message = body_message(body)
        .unwrap_or_else(|| format!("Bedrock answered HTTP {status} with no message."));
    let lower = name.to_ascii_lowercase();
    let (st, kind, code): (u16, ErrorType, &str) = match lower.as_str() {
        "validationexception" => {
            let m = message.to_ascii_lowercase();
            if m.contains("too long")
                || m.contains("too many tokens")
                || m.contains("context") && m.contains("exceed")
            {
                (400, ErrorType::InvalidRequest, "context_length_exceeded")
            } else {
                (400, ErrorType::InvalidRequest, "invalid_request")
            }
        }
        "servicequotaexceededexception" => (429, ErrorType::InsufficientQuota, "quota_exceeded"),
        "accessdeniedexception" => (403, ErrorType::Permission, "access_denied"),
        "resourcenotfoundexception" => (404, ErrorType::InvalidRequest, "model_not_found"),
        "modeltimeoutexception" => (504, ErrorType::Timeout, "model_timeout"),
        "throttlingexception" => (429, ErrorType::RateLimit, "rate_limit_exceeded"),
        "modelnotreadyexception" => (503, ErrorType::Api, "model_not_ready"),
        "modelerrorexception" | "modelstreamerrorexception" => (502, ErrorType::Api, "model_error"),
        "internalserverexception" => (500, ErrorType::Api, "internal_error"),
        "serviceunavailableexception" => (503, ErrorType::Api, "service_unavailable"),
        "unrecognizedclientexception"
        | "invalidsignatureexception"
        | "expiredtokenexception"
        | "incompletesignatureexception"
        | "missingauthenticationtokenexception"
        | "signaturedoesnotmatch" => (502, ErrorType::Api, "upstream_auth_failed"),
        _ => match status {
            400 => (400, ErrorType::InvalidRequest, "invalid_request"),
            401 | 403 => (502, ErrorType::Api, "upstream_auth_failed"),
            404 => (404, ErrorType::InvalidRequest, "not_found"),
            408 => (504, ErrorType::Timeout, "model_timeout"),
            429 => (429, ErrorType::RateLimit, "rate_limit_exceeded"),
            s if s >= 500 => (502, ErrorType::Api, "upstream_error"),
            s => (
                if s >= 400 { s } else { 502 },
                ErrorType::Api,
                "upstream_error",
            ),
        },
    };
    let message = if code == "upstream_auth_failed" {
        format!(
            "The gateway's AWS credentials were rejected by Bedrock ({name}): {}",
            first_sentence(&message)
        )
    } else {
        redact_aws_secrets(&message)
    };
    let mut err = GatewayError::new(st, kind, message).with_code(code);
    if st == 429 || code == "model_not_ready" {
        err = err.with_retry_after(1);
    }
    err
}

/// Maps an OpenAI(-compatible) upstream error response to the client error. OpenAI error
/// objects keep their type and code; an upstream 401/403 means the *gateway's* key was
/// refused, which is a 502 for the client.
pub fn from_openai(status: u16, body: &[u8]) -> GatewayError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let err_obj = parsed.as_ref().and_then(|v| v.get("error"));
    let message = body_message(body)
        .unwrap_or_else(|| format!("The OpenAI upstream answered HTTP {status} with no message."));
    let upstream_code = err_obj.and_then(|e| e.get("code")).and_then(|c| match c {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    let param = err_obj
        .and_then(|e| e.get("param"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let (st, kind, default_code) = match status {
        401 | 403 => (502, ErrorType::Api, "upstream_auth_failed"),
        400 | 404 | 409 | 413 | 422 => (status, ErrorType::InvalidRequest, "invalid_request"),
        429 => (429, ErrorType::RateLimit, "rate_limit_exceeded"),
        408 | 504 => (504, ErrorType::Timeout, "upstream_timeout"),
        500 | 502 | 503 => (status, ErrorType::Api, "upstream_error"),
        s if s >= 500 => (502, ErrorType::Api, "upstream_error"),
        s => (
            if s >= 400 { s } else { 502 },
            ErrorType::Api,
            "upstream_error",
        ),
    };
    // OpenAI's own error type is kept (a 429 `insufficient_quota` is not a rate limit),
    // except where the status was remapped (the gateway's key refused upstream).
    let upstream_type = err_obj
        .and_then(|e| e.get("type"))
        .and_then(Value::as_str)
        .and_then(ErrorType::parse);
    let kind = match upstream_type {
        Some(t) if default_code != "upstream_auth_failed" => t,
        _ => kind,
    };
    let (message, code) = if st == 502 && default_code == "upstream_auth_failed" {
        (
            format!("The gateway's OpenAI API key was rejected upstream: {message}"),
            default_code.to_string(),
        )
    } else {
        (
            message,
            upstream_code.unwrap_or_else(|| default_code.to_string()),
        )
    };
    let mut err = GatewayError::new(st, kind, message).with_code(code);
    if let Some(p) = param {
        err = err.with_param(p);
    }
    if st == 429 {
        err = err.with_retry_after(1);
    }
    err
}

/// Maps a reply Envoy generated itself (no upstream response; `response.code_details` is not
/// `via_upstream`) to the client error.
pub fn from_envoy(status: u16, code_details: &str, timeout_secs: u64) -> GatewayError {
    let d = code_details.to_ascii_lowercase();
    if d.contains("timeout") || status == 504 || status == 408 {
        GatewayError::gateway_timeout(format!(
            "The upstream did not answer within the gateway timeout ({timeout_secs} s)."
        ))
    } else if d.contains("payload_too_large") || status == 413 {
        GatewayError::new(
            413,
            ErrorType::InvalidRequest,
            "Request body is larger than the proxy's buffer limit.",
        )
        .with_code("request_too_large")
    } else if d.contains("no_healthy_upstream")
        || d.contains("connection_failure")
        || d.contains("connect")
    {
        GatewayError::new(
            502,
            ErrorType::Api,
            format!("Could not connect to the upstream ({code_details})."),
        )
        .with_code("upstream_unreachable")
    } else if d.contains("reset") || d.contains("upstream") {
        GatewayError::new(
            502,
            ErrorType::Api,
            format!(
                "The upstream connection failed before a response was received ({code_details})."
            ),
        )
        .with_code("upstream_reset")
    } else if d.contains("route_not_found") || d.contains("cluster_not_found") {
        GatewayError::new(
            500,
            ErrorType::Api,
            format!(
                "The gateway's Envoy configuration has no route for this request ({code_details})."
            ),
        )
        .with_code("gateway_misconfigured")
    } else {
        GatewayError::new(
            if status >= 400 { status } else { 502 },
            ErrorType::Api,
            format!("The proxy answered HTTP {status} ({code_details})."),
        )
        .with_code("proxy_error")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bedrock_table() {
        let cases: &[(u16, &str, u16, &str)] = &[
            (
                400,
                "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/",
                400,
                "invalid_request",
            ),
            (429, "ThrottlingException", 429, "rate_limit_exceeded"),
            (403, "AccessDeniedException", 403, "access_denied"),
            (
                403,
                "UnrecognizedClientException",
                502,
                "upstream_auth_failed",
            ),
            (
                403,
                "InvalidSignatureException",
                502,
                "upstream_auth_failed",
            ),
            (404, "ResourceNotFoundException", 404, "model_not_found"),
            (408, "ModelTimeoutException", 504, "model_timeout"),
            (424, "ModelErrorException", 502, "model_error"),
            (500, "InternalServerException", 500, "internal_error"),
            (
                503,
                "ServiceUnavailableException",
                503,
                "service_unavailable",
            ),
            (400, "ServiceQuotaExceededException", 429, "quota_exceeded"),
            (429, "ModelNotReadyException", 503, "model_not_ready"),
        ];
        for (status, name, want_status, want_code) in cases {
            let e = from_bedrock(*status, Some(name), br#"{"message":"m"}"#);
            assert_eq!(e.status, *want_status, "{name}");
            assert_eq!(e.code.as_deref(), Some(*want_code), "{name}");
        }
        let e = from_bedrock(
            429,
            Some("ThrottlingException"),
            br#"{"message":"slow down"}"#,
        );
        assert_eq!(e.message, "slow down");
        assert_eq!(e.retry_after, Some(1));
    }

    #[test]
    fn signature_errors_never_echo_credentials() {
        let body = br#"{"message":"The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.

The Canonical String for this request should have been
'POST
/model/x/invoke

host:bedrock-runtime.us-east-1.amazonaws.com
x-amz-security-token:IQoJsecretTOKEN
'"}"#;
        let e = from_bedrock(403, Some("InvalidSignatureException"), body);
        assert!(!e.message.contains("IQoJ"), "{}", e.message);
        assert!(!e.message.contains("Canonical"), "{}", e.message);
        assert!(e
            .message
            .contains("does not match the signature you provided."));
        let e = from_bedrock(
            400,
            Some("ValidationException"),
            br#"{"message":"bad x-amz-security-token:abc"}"#,
        );
        assert!(!e.message.contains("abc"));
    }

    #[test]
    fn bedrock_without_header_or_json() {
        let e = from_bedrock(502, None, b"<html>bad gateway</html>");
        assert_eq!(e.status, 502);
        assert!(e.message.contains("bad gateway"));
        let e = from_bedrock(
            400,
            None,
            br#"{"__type":"com.amazon#ValidationException","Message":"x"}"#,
        );
        assert_eq!(e.code.as_deref(), Some("invalid_request"));
        assert_eq!(e.message, "x");
    }

    #[test]
    fn openai_errors() {
        let body = br#"{"error":{"message":"bad key","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        let e = from_openai(401, body);
        assert_eq!(e.status, 502);
        assert_eq!(e.code.as_deref(), Some("upstream_auth_failed"));
        let e = from_openai(
            404,
            br#"{"error":{"message":"no model","code":"model_not_found","param":"model"}}"#,
        );
        assert_eq!(
            (e.status, e.code.as_deref(), e.param.as_deref()),
            (404, Some("model_not_found"), Some("model"))
        );
        assert_eq!(from_openai(429, b"{}").status, 429);
        assert_eq!(from_openai(429, b"{}").kind, ErrorType::RateLimit);
        // OpenAI's own type survives: quota exhaustion is not a rate limit.
        let e = from_openai(
            429,
            br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#,
        );
        assert_eq!(
            (e.status, e.kind, e.code.as_deref()),
            (
                429,
                ErrorType::InsufficientQuota,
                Some("insufficient_quota")
            )
        );
        assert_eq!(e.to_value()["error"]["type"], "insufficient_quota");
    }

    #[test]
    fn envoy_local_replies() {
        assert_eq!(
            from_envoy(504, "upstream_response_timeout", 600).status,
            504
        );
        assert_eq!(
            from_envoy(
                503,
                "upstream_reset_before_response_started{connection_failure}",
                600
            )
            .status,
            502
        );
        assert_eq!(
            from_envoy(503, "no_healthy_upstream", 600).code.as_deref(),
            Some("upstream_unreachable")
        );
        assert_eq!(
            from_envoy(413, "request_payload_too_large", 600).status,
            413
        );
    }
}
