//! JSON bodies: typed access to request fields with errors that name the offending field.

use crate::error::GatewayError;
use serde_json::{Map, Value};
use std::fmt::Display;

/// A JSON object as decoded from a request body.
pub type Object = Map<String, Value>;

/// Parses a request body into a JSON object, or explains why it is not one.
pub fn parse_object(body: &[u8]) -> Result<Object, GatewayError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(GatewayError::bad_request(
            "The request body is empty; expected a JSON object.",
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let detail = if e.is_eof() {
            "unexpected end of input".to_string()
        } else {
            e.to_string()
        };
        GatewayError::bad_request(format!(
            "The request body is not valid JSON ({detail}). Expected a JSON object."
        ))
        .with_code("invalid_json")
    })?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(GatewayError::bad_request(format!(
            "The request body must be a JSON object, not {}.",
            type_name(&other)
        ))
        .with_code("invalid_json")),
    }
}

/// A request-field path rendered only when an error message needs it (building every path
/// eagerly was a measurable share of request decoding).
pub struct Lazy<F>(pub F);

impl<F: Fn() -> String> std::fmt::Display for Lazy<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&(self.0)())
    }
}

/// A JSON type name for error messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong_type<P: Display + ?Sized>(path: &P, expected: &str, got: &Value) -> GatewayError {
    let path = path.to_string();
    GatewayError::invalid(
        &path,
        format!(
            "Invalid type for `{path}`: expected {expected}, got {}.",
            type_name(got)
        ),
    )
}

/// `obj[key]` unless absent or null.
pub fn get<'a>(obj: &'a Object, key: &str) -> Option<&'a Value> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => Some(v),
    }
}

/// An optional string field.
pub fn opt_str<'a, P: Display + ?Sized>(
    obj: &'a Object,
    key: &str,
    path: &P,
) -> Result<Option<&'a str>, GatewayError> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(wrong_type(path, "a string", v)),
    }
}

/// A required, non-empty string field.
pub fn req_str<'a, P: Display + ?Sized>(
    obj: &'a Object,
    key: &str,
    path: &P,
) -> Result<&'a str, GatewayError> {
    match opt_str(obj, key, path)? {
        Some(s) if !s.is_empty() => Ok(s),
        Some(_) => Err(GatewayError::invalid(
            path,
            format!("`{path}` must not be empty."),
        )),
        None => Err(GatewayError::invalid(
            path,
            format!("Missing required parameter: `{path}`."),
        )),
    }
}

/// An optional boolean field.
pub fn opt_bool<P: Display + ?Sized>(
    obj: &Object,
    key: &str,
    path: &P,
) -> Result<Option<bool>, GatewayError> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(wrong_type(path, "a boolean", v)),
    }
}

/// An optional number field within `[min, max]`.
pub fn opt_f64<P: Display + ?Sized>(
    obj: &Object,
    key: &str,
    path: &P,
    min: f64,
    max: f64,
) -> Result<Option<f64>, GatewayError> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if x.is_finite() && x >= min && x <= max {
                Ok(Some(x))
            } else {
                Err(GatewayError::invalid(
                    path,
                    format!("`{path}` must be between {min} and {max}, got {n}."),
                ))
            }
        }
        Some(v) => Err(wrong_type(path, "a number", v)),
    }
}

/// An optional non-negative integer field that fits in `u32`, at least `min`.
pub fn opt_u32<P: Display + ?Sized>(
    obj: &Object,
    key: &str,
    path: &P,
    min: u32,
) -> Result<Option<u32>, GatewayError> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_u64().and_then(|x| u32::try_from(x).ok()) {
            Some(x) if x >= min => Ok(Some(x)),
            _ => Err(GatewayError::invalid(
                path,
                format!("`{path}` must be an integer of at least {min}, got {n}."),
            )),
        },
        Some(v) => Err(wrong_type(path, "an integer", v)),
    }
}

/// An optional array field.
pub fn opt_array<'a, P: Display + ?Sized>(
    obj: &'a Object,
    key: &str,
    path: &P,
) -> Result<Option<&'a Vec<Value>>, GatewayError> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(v) => Err(wrong_type(path, "an array", v)),
    }
}

/// An optional object field.
pub fn opt_object<'a, P: Display + ?Sized>(
    obj: &'a Object,
    key: &str,
    path: &P,
) -> Result<Option<&'a Object>, GatewayError> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(v) => Err(wrong_type(path, "an object", v)),
    }
}

/// An array element that must be an object.
pub fn as_object<'a, P: Display + ?Sized>(
    v: &'a Value,
    path: &P,
) -> Result<&'a Object, GatewayError> {
    match v {
        Value::Object(o) => Ok(o),
        other => Err(wrong_type(path, "an object", other)),
    }
}

/// A field that is a string or an array of strings (OpenAI `stop`).
pub fn string_or_list<P: Display + ?Sized>(
    obj: &Object,
    key: &str,
    path: &P,
) -> Result<Vec<String>, GatewayError> {
    match get(obj, key) {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(wrong_type(&format!("{path}[{i}]"), "a string", other)),
            })
            .collect(),
        Some(v) => Err(wrong_type(path, "a string or an array of strings", v)),
    }
}

/// Parses an upstream answer that must be a JSON object; `upstream` names the API in the error.
pub fn parse_upstream(body: &[u8], upstream: &str) -> Result<Object, GatewayError> {
    parse_object(body).map_err(|_| {
        GatewayError::bad_gateway(format!(
            "The upstream ({upstream}) answered with a body that is not a JSON object."
        ))
    })
}

/// The `usage` field of an answer, skipping every other field without building values.
pub fn usage_field(body: &[u8]) -> Option<Value> {
    #[derive(serde::Deserialize)]
    struct UsageOnly {
        usage: Option<Value>,
    }
    serde_json::from_slice::<UsageOnly>(body).ok()?.usage
}

/// The gateway's own request fields, removed before a body goes upstream.
pub const GATEWAY_FIELDS: &[&str] = &["provider", "target_format", "file_ids"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_object_errors() {
        assert_eq!(parse_object(b"").unwrap_err().status, 400);
        assert!(parse_object(b"{")
            .unwrap_err()
            .message
            .contains("not valid JSON"));
        assert!(parse_object(b"[1]")
            .unwrap_err()
            .message
            .contains("an array"));
        assert!(parse_object(b"\"x\"")
            .unwrap_err()
            .message
            .contains("a string"));
        assert!(parse_object(b"{}").is_ok());
    }

    #[test]
    fn typed_getters_name_the_field() {
        let obj = parse_object(br#"{"t":"hot","n":-1,"m":"","s":5}"#).unwrap();
        let e = opt_f64(&obj, "t", "temperature", 0.0, 2.0).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
        assert!(opt_u32(&obj, "n", "max_tokens", 1).is_err());
        assert!(req_str(&obj, "m", "model")
            .unwrap_err()
            .message
            .contains("empty"));
        assert!(req_str(&obj, "x", "model")
            .unwrap_err()
            .message
            .contains("Missing"));
        assert!(string_or_list(&obj, "s", "stop").is_err());
    }
}
