//! JSON bodies: typed access to request fields with errors that name the offending field.

use crate::error::GatewayError;
use serde_json::{Map, Value};
use std::fmt::Display;

pub mod splice;
mod tree;

pub use splice::{BodySource, Source, Spliced, Splices};

/// A JSON object as decoded from a request body.
pub type Object = Map<String, Value>;

/// JSON values a request body of `len` bytes may hold: a value tree costs a few dozen bytes
/// per value whatever its text, so bodies of many tiny values (`[0,0,0,…]`) would cost far
/// more memory than their size. Real requests (text, images as base64, tool schemas) stay
/// well below one value per 12 bytes, except embeddings requests sent as token ids
/// (tiktoken-based clients such as LangChain's `OpenAIEmbeddings`): about 6 bytes per value, up
/// to OpenAI's 300 000 tokens per request. So any body may hold [`TOKEN_IDS`] values (a tree
/// of at most ~20 MiB), larger ones one per 12 bytes.
pub fn value_limit(len: usize) -> u64 {
    u64::try_from(len / 12)
        .unwrap_or(u64::MAX)
        .max(TOKEN_IDS)
        .saturating_add(20_000)
}

/// OpenAI's limit on the tokens of one embeddings request, plus one array per input (2 048).
const TOKEN_IDS: u64 = 302_048;

/// Parses a request body into a JSON object, or explains why it is not one. The tree is built
/// with bounds on its number of values ([`value_limit`]) and on its bytes ([`tree_limit`]),
/// and duplicate top-level keys are refused (which one would an upstream read?).
pub fn parse_object(body: &[u8]) -> Result<Object, GatewayError> {
    parse(body, None).map(|(obj, _)| obj)
}

/// [`parse_object`] for a body whose long texts stay in it (see [`splice`]): markers stand
/// for them in the tree, recorded in the returned [`Splices`] made for request `id`.
pub fn parse_object_spliced(body: &[u8], id: &str) -> Result<(Object, Splices), GatewayError> {
    parse(body, Some(Splices::new(id))).map(|(obj, s)| (obj, s.unwrap_or_default()))
}

fn parse(body: &[u8], splices: Option<Splices>) -> Result<(Object, Option<Splices>), GatewayError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(GatewayError::bad_request(
            "The request body is empty; expected a JSON object.",
        ));
    }
    if body.len() >= SCAN_FROM_BYTES && too_many_values(body, value_limit(body.len())) {
        return Err(too_complex(body.len()));
    }
    match tree::object(
        body,
        value_limit(body.len()),
        tree_limit(body.len()),
        splices,
    ) {
        Ok((_, 0, _)) | Err(tree::Stop::Budget) => Err(too_complex(body.len())),
        Ok((map, _, splices)) => Ok((map, splices)),
        Err(tree::Stop::Duplicate(key)) => Err(duplicate_key(&key)),
        Err(tree::Stop::Fallback) => Err(not_an_object(body)),
    }
}

/// Bytes the value tree of a body of `len` bytes may take: the body's size, and at least
/// 16 MiB (and what [`TOKEN_IDS`] numbers take). In bodies of 1 MiB or more the conversation's
/// texts stay in the body (see [`splice`]), so the tree is mostly its objects: a B-tree node of
/// a few hundred bytes each. Only bodies of many tiny objects reach this; conversations that
/// large are images and documents, whose trees are small.
pub fn tree_limit(len: usize) -> usize {
    let ids = usize::try_from(TOKEN_IDS + 20_000)
        .unwrap_or(usize::MAX)
        .saturating_mul(2 * tree::VALUE_BYTES);
    len.max(ids).max(16 << 20)
}

/// Why `body` (which the tree builder did not take) is not a JSON object: serde_json's own
/// account of the syntax error, or the type it holds instead.
fn not_an_object(body: &[u8]) -> GatewayError {
    let detail = match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        Err(e) if e.is_eof() => "unexpected end of input".to_string(),
        Err(e) => e.to_string(),
        Ok(_) => {
            let kind = match body.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'[') => "an array",
                Some(b'"') => "a string",
                Some(b't' | b'f') => "a boolean",
                Some(b'n') => "null",
                Some(b'{') => "an object the gateway cannot read",
                _ => "a number",
            };
            return GatewayError::bad_request(format!(
                "The request body must be a JSON object, not {kind}."
            ))
            .with_code("invalid_json");
        }
    };
    GatewayError::bad_request(format!(
        "The request body is not valid JSON ({detail}). Expected a JSON object."
    ))
    .with_code("invalid_json")
}

/// The buffer an upstream body is written into for a client body of `len` bytes: the body's
/// size and a little more, so that it seldom grows (a growing buffer holds its old and new
/// blocks for a moment).
pub fn output_capacity(len: usize) -> usize {
    len.saturating_add(len / 32).saturating_add(4096)
}

fn duplicate_key(key: &str) -> GatewayError {
    GatewayError::invalid(
        key,
        format!("The key `{key}` appears more than once in the request body."),
    )
    .with_code("duplicate_key")
}

fn too_complex(len: usize) -> GatewayError {
    GatewayError::bad_request(format!(
        "The request body holds too many JSON values (at most {} for a body of {len} bytes).",
        value_limit(len)
    ))
    .with_code("body_too_complex")
}

/// Bodies below this size cannot hold [`value_limit`] values (a value takes at least two
/// bytes with its separator), so they are not scanned.
const SCAN_FROM_BYTES: usize = 32 * 1024;

/// Whether `body` holds at least `limit` JSON values, found without allocating: the bounded
/// tree builder stops at the limit too, but by then it has built (and, growing its vectors,
/// copied) up to `limit` values of 32 bytes each, several times the body's size in the
/// filter's memory, which a VM never gives back (issue 17). Counts as the builder does: the
/// root, each array element and each object member's value; exact for valid JSON, a best
/// effort for the rest (which the parser refuses anyway). Nesting deeper than serde_json's
/// recursion limit ends the scan: the parser refuses that body at that depth.
fn too_many_values(body: &[u8], limit: u64) -> bool {
    let mut count: u64 = 1;
    let mut arrays: u128 = 0; // bit d: the container open at depth d is an array
    let mut depth: u32 = 0;
    let mut after_open_bracket = false;
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        if after_open_bracket && !b.is_ascii_whitespace() {
            after_open_bracket = false;
            if b != b']' {
                count += 1;
            }
        }
        match b {
            b'"' => {
                // To the quote that ends the string (a backslash escapes the next byte).
                i += 1;
                loop {
                    let Some(j) = body
                        .get(i..)
                        .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
                    else {
                        return count >= limit;
                    };
                    i += j;
                    if body.get(i) == Some(&b'"') {
                        break;
                    }
                    i += 2;
                }
            }
            b'[' | b'{' => {
                if depth >= 127 {
                    return count >= limit;
                }
                depth += 1;
                if b == b'[' {
                    arrays |= 1 << depth;
                    after_open_bracket = true;
                } else {
                    arrays &= !(1 << depth);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b':' => count += 1,
            b',' if arrays & (1 << depth) != 0 => count += 1,
            _ => {}
        }
        if count >= limit {
            return true;
        }
        i += 1;
    }
    false
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
    fn duplicate_top_level_keys_are_refused() {
        let e =
            parse_object(br#"{"model":"gpt-4o","messages":[],"model":"gpt-4o-mini"}"#).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("model")));
        assert_eq!(e.code.as_deref(), Some("duplicate_key"));
        // Nested duplicates are the upstream's business (JSON allows them; last wins).
        assert!(parse_object(br#"{"a":{"b":1,"b":2}}"#).is_ok());
    }

    #[test]
    fn bodies_of_many_tiny_values_are_refused_before_they_cost_memory() {
        let n = 1_000_000;
        let mut body = b"{\"model\":\"m\",\"x\":[".to_vec();
        for i in 0..n {
            if i > 0 {
                body.push(b',');
            }
            body.push(b'0');
        }
        body.extend_from_slice(b"]}");
        assert!(value_limit(body.len()) < n);
        let e = parse_object(&body).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("body_too_complex"));
        // The same number of values with realistic text is fine.
        let text = format!(
            "{{\"t\":[{}]}}",
            vec!["\"a sentence of some words\""; 50_000].join(",")
        );
        assert!(parse_object(text.as_bytes()).is_ok());
        // Deep nesting stays a plain invalid-JSON 400 (serde's recursion limit).
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(
            parse_object(deep.as_bytes()).unwrap_err().code.as_deref(),
            Some("invalid_json")
        );
    }

    /// Values as the bounded builder counts them: the root, array elements, member values.
    fn tree_count(v: &Value) -> u64 {
        1 + match v {
            Value::Array(a) => a.iter().map(tree_count).sum(),
            Value::Object(o) => o.values().map(tree_count).sum(),
            _ => 0,
        }
    }

    #[test]
    fn the_value_scan_counts_what_the_builder_would_build() {
        let bodies: [&[u8]; 9] = [
            br#"{"model":"m","messages":[{"role":"user","content":"a, b: [c] {d}"}]}"#,
            br#"{"a":[],"b":[ ],"c":[[]],"d":[[],[1, 2 ,3],{}],"e":{"f":{"g":[null,true]}}}"#,
            br#"{"s":"quote \" comma , colon : bracket [ brace {","t":["\\",",",":"]}"#,
            br#"{"k\"ey":1,"u":"\u0022,[","n":-1.5e3}"#,
            b"{\n \"a\" : [ 1 ,\n 2 ] ,\t\"b\" : { \"c\" : [ ] } }",
            br#"[1,[2,[3,[4]]],{"x":[5,6]}]"#,
            br#"{"x":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}"#,
            br#"{"a":{"b":{"c":{"d":{}}}},"e":""}"#,
            br#"{}"#,
        ];
        for body in bodies {
            let v: Value = serde_json::from_slice(body).unwrap();
            let n = tree_count(&v);
            let shown = String::from_utf8_lossy(body);
            assert!(too_many_values(body, n), "{shown}: {n} values not found");
            assert!(
                !too_many_values(body, n + 1),
                "{shown}: more than {n} values found"
            );
        }
        // An unterminated string or absurd nesting ends the scan (the parser refuses those).
        assert!(!too_many_values(br#"{"a":"never ends, [1,2,3"#, 3));
        let deep = format!("{}{}", "[".repeat(1_000), "0,".repeat(1_000));
        assert!(!too_many_values(deep.as_bytes(), 200));
    }

    #[test]
    fn a_body_of_tiny_values_is_refused_by_the_scan_before_any_tree_is_built() {
        let mut body = b"{\"model\":\"m\",\"x\":[0".to_vec();
        body.extend(b",0".repeat(1_000_000));
        body.extend_from_slice(b"]}");
        assert!(body.len() >= SCAN_FROM_BYTES);
        assert!(too_many_values(&body, value_limit(body.len())));
        let e = parse_object(&body).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("body_too_complex"));
        // A large body of few values is not.
        let text = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#,
            "w, [x]: ".repeat(500_000)
        );
        assert!(!too_many_values(text.as_bytes(), value_limit(text.len())));
        assert!(parse_object(text.as_bytes()).is_ok());
    }

    #[test]
    fn an_embeddings_request_of_300_000_token_ids_is_not_too_complex() {
        // 300 inputs of 1 000 token ids (5-digit ids, as cl100k/o200k mostly are): ~2 MB.
        let input: Vec<String> = (0..300)
            .map(|i| {
                let ids: Vec<String> = (0..1_000)
                    .map(|j| (10_000 + (i * 7 + j * 13) % 90_000).to_string())
                    .collect();
                format!("[{}]", ids.join(","))
            })
            .collect();
        let body = format!(
            r#"{{"model":"text-embedding-3-small","input":[{}]}}"#,
            input.join(",")
        );
        assert!(
            body.len() < 12 * 300_000,
            "denser than one value per 12 bytes"
        );
        let obj = parse_object(body.as_bytes()).unwrap();
        assert_eq!(obj["input"].as_array().map(Vec::len), Some(300));
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
