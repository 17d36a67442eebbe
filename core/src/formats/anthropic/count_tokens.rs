//! Token counting: Anthropic's `count_tokens` answered by Bedrock's CountTokens API, whose
//! input is the InvokeModel body base64-encoded inside `{"input": {"invokeModel": {…}}}`.

use crate::error::GatewayError;
use base64::Engine;
use serde_json::{json, Value};

/// The CountTokens request body around an InvokeModel body.
pub fn request_body(invoke_body: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(invoke_body);
    serde_json::to_vec(&json!({"input": {"invokeModel": {"body": b64}}})).unwrap_or_default()
}

/// Bedrock's `{"inputTokens": N}`.
pub fn parse_answer(body: &[u8]) -> Result<u64, GatewayError> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("inputTokens").and_then(Value::as_u64))
        .ok_or_else(|| {
            GatewayError::bad_gateway("Bedrock CountTokens answered without `inputTokens`.")
        })
}

/// Anthropic's `{"input_tokens": N}`.
pub fn answer(tokens: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({ "input_tokens": tokens })).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_and_unwraps() {
        let v: Value = serde_json::from_slice(&request_body(b"{\"a\":1}")).unwrap();
        let inner = base64::engine::general_purpose::STANDARD
            .decode(v["input"]["invokeModel"]["body"].as_str().unwrap())
            .unwrap();
        assert_eq!(inner, b"{\"a\":1}");
        assert_eq!(parse_answer(br#"{"inputTokens": 42}"#).unwrap(), 42);
        assert_eq!(parse_answer(b"{}").unwrap_err().status, 502);
        assert_eq!(answer(7), br#"{"input_tokens":7}"#);
    }
}
