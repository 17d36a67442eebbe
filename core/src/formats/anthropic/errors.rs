//! Anthropic's error envelope and its one table of error types, used both ways: for errors the
//! gateway answers Anthropic clients with, and for `error` events Claude streams.

use crate::error::{ErrorType, GatewayError};
use serde_json::{json, Value};

/// Codes of upstream failures Anthropic clients see as `529 overloaded_error` (Bedrock's
/// ServiceUnavailableException and ModelNotReadyException, before a stream or as its exception
/// frame, and Claude's own `overloaded_error`).
const OVERLOADED_CODES: &[&str] = &[
    "service_unavailable",
    "model_not_ready",
    "overloaded_error",
    "serviceunavailableexception",
    "modelnotreadyexception",
];

/// Codes of model failures Anthropic clients see as `500 api_error` (Bedrock's
/// ModelErrorException / ModelStreamErrorException; OpenAI clients get 502).
const MODEL_ERROR_CODES: &[&str] = &[
    "model_error",
    "modelerrorexception",
    "modelstreamerrorexception",
];

/// The HTTP status an Anthropic client gets for `err`.
pub fn status(err: &GatewayError) -> u16 {
    let code = err.code.as_deref().unwrap_or_default().to_ascii_lowercase();
    if OVERLOADED_CODES.contains(&code.as_str()) {
        529
    } else if MODEL_ERROR_CODES.contains(&code.as_str()) {
        500
    } else {
        err.status
    }
}

/// Anthropic's `error.type` for `err`.
pub fn error_type(err: &GatewayError) -> &'static str {
    match status(err) {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        s if (400..500).contains(&s) => "invalid_request_error",
        _ => "api_error",
    }
}

/// The status and gateway error type of an Anthropic `error.type` (Claude's stream `error`
/// events and error bodies).
pub fn from_error_type(error_type: &str) -> (u16, ErrorType) {
    match error_type {
        "invalid_request_error" => (400, ErrorType::InvalidRequest),
        "authentication_error" => (401, ErrorType::Authentication),
        "permission_error" => (403, ErrorType::Permission),
        "not_found_error" => (404, ErrorType::InvalidRequest),
        "request_too_large" => (413, ErrorType::InvalidRequest),
        "rate_limit_error" => (429, ErrorType::RateLimit),
        "timeout_error" => (504, ErrorType::Timeout),
        "overloaded_error" => (503, ErrorType::Api),
        _ => (502, ErrorType::Api),
    }
}

/// The error object (`{"type": …, "message": …}` plus the gateway's `code` and `param`).
pub fn error_object(err: &GatewayError) -> Value {
    json!({
        "type": error_type(err),
        "message": err.message,
        "code": err.code,
        "param": err.param,
    })
}

/// The complete error body: `{"type": "error", "error": {…}}`.
pub fn error_body(err: &GatewayError) -> Vec<u8> {
    serde_json::to_vec(&json!({"type": "error", "error": error_object(err)}))
        .unwrap_or_else(|_| err.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_types() {
        let cases = [
            (GatewayError::bad_request("x"), 400, "invalid_request_error"),
            (GatewayError::unauthorized("x"), 401, "authentication_error"),
            (
                GatewayError::model_not_allowed("m"),
                403,
                "permission_error",
            ),
            (GatewayError::model_not_found("m"), 404, "not_found_error"),
            (GatewayError::too_large(1), 413, "request_too_large"),
            (
                GatewayError::new(429, ErrorType::RateLimit, "x"),
                429,
                "rate_limit_error",
            ),
            (GatewayError::internal("x"), 500, "api_error"),
            (GatewayError::bad_gateway("x"), 502, "api_error"),
            (GatewayError::gateway_timeout("x"), 504, "timeout_error"),
            (
                GatewayError::new(503, ErrorType::Api, "x").with_code("service_unavailable"),
                529,
                "overloaded_error",
            ),
            (GatewayError::unconfigured("x"), 503, "api_error"),
            (
                GatewayError::new(502, ErrorType::Api, "x").with_code("model_error"),
                500,
                "api_error",
            ),
            (
                GatewayError::new(503, ErrorType::Api, "x")
                    .with_code("serviceUnavailableException"),
                529,
                "overloaded_error",
            ),
        ];
        for (err, st, ty) in cases {
            assert_eq!((status(&err), error_type(&err)), (st, ty), "{err}");
        }
        let v: Value =
            serde_json::from_slice(&error_body(&GatewayError::bad_request("no"))).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["message"], "no");
    }
}
