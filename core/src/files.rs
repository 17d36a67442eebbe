//! `file_ids` in chat requests: the contract with the sidecar's file-context endpoint, and how
//! extracted file text is put in front of the last user message.
//!
//! Layout of the injected context (documented in docs/api.md):
//!
//! ```text
//! The user attached these files:
//!
//! --- file: report.csv (text/csv, 1234 bytes) ---
//! <extracted text>
//! --- end of file: report.csv ---
//!
//! <the user's own message>
//! ```

use crate::error::{ErrorType, GatewayError};
use crate::json::{self, Object};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Path of the sidecar's internal file-context endpoint.
pub const SIDECAR_FILE_CONTEXT_PATH: &str = "/v1/internal/file-context";

/// Header naming the owner (a hash of the client key) on requests to the sidecar.
pub const OWNER_HEADER: &str = "x-unigate-owner";

/// Most file ids accepted in one request.
pub const MAX_FILE_IDS: usize = 20;

/// One file's extracted text as the sidecar returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileContext {
    /// File id.
    pub id: String,
    /// Original file name.
    pub filename: String,
    /// Detected content type.
    pub content_type: String,
    /// Size of the stored file in bytes.
    pub bytes: u64,
    /// Extracted text (possibly cut at the size cap).
    pub text: String,
    /// Whether `text` was cut.
    #[serde(default)]
    pub truncated: bool,
}

/// The sidecar's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileContextResponse {
    /// The files, in the order requested.
    pub files: Vec<FileContext>,
}

/// The request body for the sidecar.
pub fn sidecar_request(ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "file_ids": ids })).unwrap_or_default()
}

/// The `file_ids` of a chat request body (empty when absent). Only `file_ids` is read (the
/// rest is skipped without building values); a body that does not parse gets the full
/// parser's error.
pub fn requested(body: &[u8]) -> Result<Vec<String>, GatewayError> {
    // Most bodies attach no files: a body where the key is neither spelled out nor could be
    // hidden in escapes (`"file\u005fids"`) has none, and is not parsed twice.
    if memchr::memmem::find(body, b"file_ids").is_none()
        && memchr::memmem::find(body, b"\\u").is_none()
    {
        return Ok(Vec::new());
    }
    #[derive(Deserialize)]
    struct FileIdsOnly {
        file_ids: Option<Value>,
    }
    match serde_json::from_slice::<FileIdsOnly>(body) {
        Ok(FileIdsOnly { file_ids: None })
        | Ok(FileIdsOnly {
            file_ids: Some(Value::Null),
        }) => Ok(Vec::new()),
        Ok(FileIdsOnly { file_ids: Some(v) }) => {
            let mut obj = Object::new();
            obj.insert("file_ids".into(), v);
            requested_in(&obj)
        }
        Err(_) => requested_in(&json::parse_object(body)?),
    }
}

/// The `file_ids` of a parsed chat request.
pub fn requested_in(obj: &Object) -> Result<Vec<String>, GatewayError> {
    let ids = json::string_or_list(obj, "file_ids", "file_ids")?;
    if ids.len() > MAX_FILE_IDS {
        return Err(GatewayError::invalid(
            "file_ids",
            format!("At most {MAX_FILE_IDS} files can be attached to one request."),
        ));
    }
    if let Some(i) = ids.iter().position(|id| id.trim().is_empty()) {
        return Err(GatewayError::invalid(
            format!("file_ids[{i}]"),
            "File ids must not be empty.",
        ));
    }
    let mut unique: Vec<String> = Vec::with_capacity(ids.len());
    for id in ids {
        if !unique.contains(&id) {
            unique.push(id);
        }
    }
    Ok(unique)
}

/// Interprets the sidecar's answer (`None` status: no answer at all).
pub fn parse_answer(status: Option<u16>, body: &[u8]) -> Result<Vec<FileContext>, GatewayError> {
    let Some(status) = status else {
        return Err(GatewayError::new(
            503,
            ErrorType::Api,
            "File context is not available: the unigate sidecar did not answer.",
        )
        .with_code("sidecar_unavailable"));
    };
    if status == 200 {
        return serde_json::from_slice::<FileContextResponse>(body)
            .map(|r| r.files)
            .map_err(|e| {
                GatewayError::bad_gateway(format!("The sidecar's file context is malformed: {e}"))
                    .with_code("sidecar_error")
            });
    }
    let upstream: Option<Value> = serde_json::from_slice(body).ok();
    let message = upstream
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Err(match status {
        404 => GatewayError::new(
            404,
            ErrorType::InvalidRequest,
            message.unwrap_or_else(|| "A file in `file_ids` does not exist.".into()),
        )
        .with_param("file_ids")
        .with_code("file_not_found"),
        400 | 413 | 415 | 422 => GatewayError::new(
            status,
            ErrorType::InvalidRequest,
            message.unwrap_or_else(|| "A file in `file_ids` cannot be used as context.".into()),
        )
        .with_param("file_ids")
        .with_code("file_not_usable"),
        504 => {
            GatewayError::gateway_timeout("The unigate sidecar took too long to extract the files.")
        }
        _ => GatewayError::new(
            503,
            ErrorType::Api,
            format!(
                "File context is not available: {}",
                message.unwrap_or_else(|| format!("the sidecar answered HTTP {status}"))
            ),
        )
        .with_code("sidecar_unavailable"),
    })
}

/// The context block put in front of the user's message.
pub fn render(files: &[FileContext]) -> String {
    let mut out = String::from("The user attached these files:\n\n");
    for f in files {
        out.push_str(&format!(
            "--- file: {} ({}, {} bytes) ---\n",
            f.filename, f.content_type, f.bytes
        ));
        out.push_str(&f.text);
        if !f.text.ends_with('\n') {
            out.push('\n');
        }
        if f.truncated {
            out.push_str("[... truncated ...]\n");
        }
        out.push_str(&format!("--- end of file: {} ---\n\n", f.filename));
    }
    out
}

/// Prepends `context` to the last user message of an OpenAI or Claude body (`messages`), or to
/// Titan's `inputText`, and removes `file_ids`.
pub fn inject(obj: &mut Object, context: &str) -> Result<(), GatewayError> {
    obj.remove("file_ids");
    if let Some(Value::String(input)) = obj.get_mut("inputText") {
        *input = format!("{context}{input}");
        return Ok(());
    }
    let messages = match obj.get_mut("messages") {
        Some(Value::Array(m)) => m,
        _ => {
            return Err(GatewayError::invalid(
                "messages",
                "`file_ids` needs a user message to attach the files to.",
            ))
        }
    };
    let last_user = messages
        .iter_mut()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .ok_or_else(|| {
            GatewayError::invalid(
                "messages",
                "`file_ids` needs a user message to attach the files to.",
            )
        })?;
    let Some(msg) = last_user.as_object_mut() else {
        return Err(GatewayError::invalid(
            "messages",
            "A message must be an object.",
        ));
    };
    match msg.get_mut("content") {
        Some(Value::String(s)) => *s = format!("{context}{s}"),
        Some(Value::Array(parts)) => parts.insert(0, json!({"type": "text", "text": context})),
        _ => {
            msg.insert("content".into(), json!(context));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> FileContext {
        FileContext {
            id: "file-1".into(),
            filename: "data.csv".into(),
            content_type: "text/csv".into(),
            bytes: 12,
            text: "a,b\n1,2".into(),
            truncated: false,
        }
    }

    #[test]
    fn requested_ids() {
        assert_eq!(
            requested(br#"{"messages":[]}"#).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            requested(br#"{"file_ids":["a","b","a"]}"#).unwrap(),
            vec!["a", "b"]
        );
        assert_eq!(requested(br#"{"file_ids":"a"}"#).unwrap(), vec!["a"]);
        assert!(requested(br#"{"file_ids":[""]}"#).is_err());
        assert!(requested(br#"{"file_ids":[1]}"#).is_err());
        // The key written with escapes is still found.
        assert_eq!(requested(br#"{"file\u005fids":["a"]}"#).unwrap(), vec!["a"]);
    }

    #[test]
    fn injection_into_each_format() {
        let ctx = render(&[file()]);
        assert!(ctx.contains(
            "--- file: data.csv (text/csv, 12 bytes) ---\na,b\n1,2\n--- end of file: data.csv ---"
        ));
        let mut o = json::parse_object(br#"{"file_ids":["x"],"messages":[{"role":"user","content":"Q1"},{"role":"assistant","content":"A"},{"role":"user","content":"Sum?"}]}"#).unwrap();
        inject(&mut o, &ctx).unwrap();
        assert!(o.get("file_ids").is_none());
        let last = o["messages"][2]["content"].as_str().unwrap();
        assert!(last.starts_with("The user attached these files:") && last.ends_with("Sum?"));
        assert_eq!(o["messages"][0]["content"], "Q1");
        let mut o = json::parse_object(
            br#"{"messages":[{"role":"user","content":[{"type":"text","text":"Sum?"}]}]}"#,
        )
        .unwrap();
        inject(&mut o, "CTX").unwrap();
        assert_eq!(o["messages"][0]["content"][0]["text"], "CTX");
        let mut o = json::parse_object(br#"{"inputText":"User: hi\nBot:"}"#).unwrap();
        inject(&mut o, "CTX\n").unwrap();
        assert_eq!(o["inputText"], "CTX\nUser: hi\nBot:");
        let mut o =
            json::parse_object(br#"{"messages":[{"role":"system","content":"s"}]}"#).unwrap();
        assert!(inject(&mut o, "CTX").is_err());
    }

    #[test]
    fn sidecar_answers() {
        let body = serde_json::to_vec(&FileContextResponse {
            files: vec![file()],
        })
        .unwrap();
        assert_eq!(parse_answer(Some(200), &body).unwrap().len(), 1);
        let e = parse_answer(
            Some(404),
            br#"{"error":{"message":"No such file: file-9"}}"#,
        )
        .unwrap_err();
        assert_eq!((e.status, e.code.as_deref()), (404, Some("file_not_found")));
        assert_eq!(parse_answer(None, b"").unwrap_err().status, 503);
        assert_eq!(parse_answer(Some(504), b"").unwrap_err().status, 504);
        assert_eq!(parse_answer(Some(500), b"x").unwrap_err().status, 503);
        assert_eq!(parse_answer(Some(200), b"{}").unwrap_err().status, 502);
    }
}
