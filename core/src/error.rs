//! Gateway errors and their OpenAI-shaped JSON rendering.
//!
//! Every error a client sees is `{"error":{"message","type","param","code"}}` with a status
//! that the official OpenAI SDKs map to the right exception class.

use serde_json::{json, Value};
use std::fmt;

/// The OpenAI `error.type` values the gateway uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// The request is malformed or names something that does not exist.
    InvalidRequest,
    /// Missing or wrong client API key.
    Authentication,
    /// The key is valid but not allowed to do this.
    Permission,
    /// Too many requests or tokens.
    RateLimit,
    /// The provider's account quota is exhausted.
    InsufficientQuota,
    /// Something failed on the gateway or upstream side.
    Api,
    /// The upstream did not answer in time.
    Timeout,
}

impl ErrorType {
    /// The wire string for `error.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidRequest => "invalid_request_error",
            ErrorType::Authentication => "authentication_error",
            ErrorType::Permission => "permission_error",
            ErrorType::RateLimit => "rate_limit_error",
            ErrorType::InsufficientQuota => "insufficient_quota",
            ErrorType::Api => "api_error",
            ErrorType::Timeout => "timeout_error",
        }
    }
}

impl ErrorType {
    /// Parses an OpenAI `error.type` the gateway knows.
    pub fn parse(s: &str) -> Option<ErrorType> {
        Some(match s {
            "invalid_request_error" => ErrorType::InvalidRequest,
            "authentication_error" => ErrorType::Authentication,
            "permission_error" => ErrorType::Permission,
            "rate_limit_error" => ErrorType::RateLimit,
            "insufficient_quota" => ErrorType::InsufficientQuota,
            "api_error" | "server_error" => ErrorType::Api,
            "timeout_error" => ErrorType::Timeout,
            _ => return None,
        })
    }
}

/// An error answered to the client: HTTP status plus the OpenAI error object fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    /// HTTP status code.
    pub status: u16,
    /// `error.type`.
    pub kind: ErrorType,
    /// `error.code` (machine-readable reason), if any.
    pub code: Option<String>,
    /// `error.message` (human-readable).
    pub message: String,
    /// `error.param`: the offending request field, if one applies.
    pub param: Option<String>,
    /// Seconds a client should wait before retrying (sent as `retry-after`).
    pub retry_after: Option<u64>,
}

impl GatewayError {
    /// A new error with no code or param.
    pub fn new(status: u16, kind: ErrorType, message: impl Into<String>) -> Self {
        GatewayError {
            status,
            kind,
            code: None,
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    /// Sets `error.code`.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Sets `error.param`.
    pub fn with_param(mut self, param: impl std::fmt::Display) -> Self {
        self.param = Some(param.to_string());
        self
    }

    /// Sets the `retry-after` hint.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// 400 `invalid_request_error` about one request field.
    pub fn invalid(param: impl std::fmt::Display, message: impl Into<String>) -> Self {
        GatewayError::new(400, ErrorType::InvalidRequest, message)
            .with_param(param)
            .with_code("invalid_request")
    }

    /// 400 `invalid_request_error` about the body as a whole.
    pub fn bad_request(message: impl Into<String>) -> Self {
        GatewayError::new(400, ErrorType::InvalidRequest, message).with_code("invalid_request")
    }

    /// 401 for a missing or wrong client key.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        GatewayError::new(401, ErrorType::Authentication, message).with_code("invalid_api_key")
    }

    /// 404 for an unknown model id.
    pub fn model_not_found(model: &str) -> Self {
        GatewayError::new(
            404,
            ErrorType::InvalidRequest,
            format!("The model `{model}` does not exist or is not routed by this gateway."),
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    /// 403 for a model the client key may not use.
    pub fn model_not_allowed(model: &str) -> Self {
        GatewayError::new(
            403,
            ErrorType::Permission,
            format!("This API key is not allowed to use the model `{model}`."),
        )
        .with_param("model")
        .with_code("model_not_allowed")
    }

    /// 404 for a path the gateway does not serve.
    pub fn not_found(message: impl Into<String>) -> Self {
        GatewayError::new(404, ErrorType::InvalidRequest, message).with_code("not_found")
    }

    /// 405 for a known path with the wrong method.
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        GatewayError::new(
            405,
            ErrorType::InvalidRequest,
            format!("Method {method} is not allowed on {path}."),
        )
        .with_code("method_not_allowed")
    }

    /// 413 for a body over the configured cap.
    pub fn too_large(limit: u64) -> Self {
        GatewayError::new(
            413,
            ErrorType::InvalidRequest,
            format!("Request body is larger than the gateway limit of {limit} bytes."),
        )
        .with_code("request_too_large")
    }

    /// 503 for a provider that has no configuration.
    pub fn unconfigured(message: impl Into<String>) -> Self {
        GatewayError::new(503, ErrorType::Api, message).with_code("provider_not_configured")
    }

    /// 500 for a gateway-internal failure.
    pub fn internal(message: impl Into<String>) -> Self {
        GatewayError::new(500, ErrorType::Api, message).with_code("internal_error")
    }

    /// 502 for an upstream that answered something unusable.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        GatewayError::new(502, ErrorType::Api, message).with_code("upstream_error")
    }

    /// 504 for an upstream that stayed silent too long.
    pub fn gateway_timeout(message: impl Into<String>) -> Self {
        GatewayError::new(504, ErrorType::Timeout, message).with_code("upstream_timeout")
    }

    /// The `{"error":{...}}` object as a JSON value.
    pub fn to_value(&self) -> Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind.as_str(),
                "param": self.param,
                "code": self.code,
            }
        })
    }

    /// The OpenAI error body, serialized.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing a Value built from strings cannot fail; fall back to a fixed body anyway.
        serde_json::to_vec(&self.to_value()).unwrap_or_else(|_| {
            br#"{"error":{"message":"internal error","type":"api_error","param":null,"code":null}}"#
                .to_vec()
        })
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status,
            self.kind.as_str(),
            self.message
        )
    }
}

impl std::error::Error for GatewayError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_openai_error_object() {
        let e = GatewayError::invalid("messages", "`messages` must not be empty");
        let v: Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "messages");
        assert_eq!(v["error"]["message"], "`messages` must not be empty");
        assert_eq!(e.status, 400);
    }

    #[test]
    fn null_param_and_code_are_present() {
        let e = GatewayError::new(500, ErrorType::Api, "x");
        let v = e.to_value();
        assert!(v["error"].get("param").unwrap().is_null());
        assert!(v["error"].get("code").unwrap().is_null());
    }
}
