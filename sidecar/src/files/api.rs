//! The Files API's HTTP handlers, in OpenAI's shapes so the official SDKs work unchanged:
//!
//! * `POST /v1/files` (multipart `file` + `purpose`), `GET /v1/files` (`purpose`, `limit`,
//!   `after`, `order`), `GET /v1/files/{id}`, `GET /v1/files/{id}/content`,
//!   `DELETE /v1/files/{id}`, `GET /v1/files/health`;
//! * `POST /v1/internal/file-context` (the filter's call for `file_ids`).
//!
//! Every request needs the shared secret (`x-unigate-token`) and names its owner
//! (`x-unigate-owner`); both are set by the filter, which has checked the client's key. A
//! file of another owner is answered exactly like a missing one (404).

use super::{content_type_for, new_id, unix_now_ns, valid_owner, FileMeta, StoreError, PURPOSES};
use crate::server::{check_token, error, json_response, AppState};
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use unigate_core::error::{ErrorType, GatewayError};
use unigate_core::files::{OWNER_HEADER, SIDECAR_FILE_CONTEXT_PATH};

/// Multipart framing allowed on top of `FILES_MAX_BYTES` before a declared length is refused
/// without reading the body.
const MULTIPART_SLACK: u64 = 1024 * 1024;
/// After a refused upload, at most this much of the rest is read (and dropped) so the client
/// can read the answer; beyond it the connection is closed.
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;
/// How long draining may take.
const DRAIN_TIME: Duration = Duration::from_secs(10);
/// Largest page of `GET /v1/files`.
const MAX_LIST_LIMIT: usize = 10_000;
/// Longest `purpose` value read.
const MAX_FIELD_BYTES: usize = 1024;

/// The files routes (merged into the sidecar's router).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/files", post(upload).get(list))
        .route("/v1/files/health", get(health))
        .route("/v1/files/{id}", get(retrieve).delete(delete))
        .route("/v1/files/{id}/content", get(content))
        .route(
            SIDECAR_FILE_CONTEXT_PATH,
            post(super::context::file_context),
        )
        .layer(DefaultBodyLimit::disable())
}

/// Checks the shared secret and returns the owner the filter named.
// The error is the finished answer; it is returned at once, never stored.
#[allow(clippy::result_large_err)]
pub(super) fn caller(state: &AppState, headers: &HeaderMap) -> Result<String, Response> {
    check_token(state, headers)?;
    let owner = headers
        .get(OWNER_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or_default();
    if !valid_owner(owner) {
        return Err(error(&GatewayError::bad_request(format!(
            "Missing or invalid {OWNER_HEADER}: files requests must come through the unigate filter."
        ))));
    }
    Ok(owner.to_string())
}

/// 404 as OpenAI words it.
fn no_such_file(id: &str) -> GatewayError {
    GatewayError::new(
        404,
        ErrorType::InvalidRequest,
        format!("No such File object: {id}"),
    )
    .with_param("id")
    .with_code("file_not_found")
}

/// A storage failure (or a missing file) as an error answer.
pub(super) fn store_error(id: &str, e: &StoreError) -> Response {
    match e {
        StoreError::NotFound => error(&no_such_file(id)),
        StoreError::Unavailable(m) => {
            // Paths, buckets and backend errors are the operator's, not the client's.
            tracing::warn!(id, error = %m, "file storage failed");
            error(
                &GatewayError::new(
                    503,
                    ErrorType::Api,
                    "File storage is unavailable (the details are in the unigate sidecar's log).",
                )
                .with_code("storage_unavailable"),
            )
        }
    }
}

/// A JSON value as a 200 answer.
fn ok_json(v: &Value) -> Response {
    json_response(StatusCode::OK, serde_json::to_vec(v).unwrap_or_default())
}

/// An upload being written under `FILES_DIR/.uploads`; removed when dropped.
struct Spool {
    path: PathBuf,
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `POST /v1/files`.
async fn upload(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let owner = match caller(&state, &headers) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let max = state.files.settings.max_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max.saturating_add(MULTIPART_SLACK)) {
        drain_body(body).await;
        return error(&file_too_large(max));
    }
    let boundary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| multer::parse_boundary(ct).ok());
    let Some(boundary) = boundary else {
        return error(&GatewayError::bad_request(
            "Expected a multipart/form-data body with the fields `file` and `purpose`.",
        ));
    };
    let mut mp = multer::Multipart::new(body.into_data_stream(), boundary);
    let mut purpose: Option<String> = None;
    let mut file: Option<(Spool, String, Option<String>, u64)> = None;
    loop {
        let mut field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return error(&GatewayError::bad_request(format!(
                    "The multipart body is malformed: {e}"
                )))
            }
        };
        match field.name() {
            Some("purpose") => {
                let mut text = Vec::new();
                loop {
                    match field.chunk().await {
                        Ok(Some(c)) => {
                            text.extend_from_slice(&c);
                            if text.len() > MAX_FIELD_BYTES {
                                return error(&GatewayError::invalid(
                                    "purpose",
                                    "The `purpose` field is too long.",
                                ));
                            }
                        }
                        Ok(None) => break,
                        Err(e) => return error(&malformed(&e)),
                    }
                }
                purpose = Some(String::from_utf8_lossy(&text).trim().to_string());
            }
            Some("file") => {
                if file.is_some() {
                    return error(&GatewayError::invalid(
                        "file",
                        "Only one `file` can be uploaded per request.",
                    ));
                }
                let filename = field
                    .file_name()
                    .map(|n| {
                        // Browsers may send a path; keep the last part.
                        n.rsplit(['/', '\\']).next().unwrap_or(n).trim().to_string()
                    })
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "upload".to_string());
                let declared_type = field.content_type().map(|m| m.essence_str().to_string());
                let dir = state.files.settings.uploads_dir();
                if let Err(e) = tokio::fs::create_dir_all(&dir).await {
                    return store_error(
                        "",
                        &StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())),
                    );
                }
                let name = match crate::serve::random_hex(16) {
                    Ok(n) => n,
                    Err(e) => return error(&GatewayError::internal(e)),
                };
                let spool = Spool {
                    path: dir.join(format!("{name}.part")),
                };
                let f = match tokio::fs::File::create(&spool.path).await {
                    Ok(f) => f,
                    Err(e) => {
                        return store_error(
                            "",
                            &StoreError::Unavailable(format!("cannot write the upload: {e}")),
                        )
                    }
                };
                let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, f);
                let mut total = 0u64;
                loop {
                    match field.chunk().await {
                        Ok(Some(c)) => {
                            total += c.len() as u64;
                            if total > max {
                                drop(out);
                                drop(spool);
                                drain_multipart(field, mp).await;
                                return error(&file_too_large(max));
                            }
                            if let Err(e) = out.write_all(&c).await {
                                return store_error(
                                    "",
                                    &StoreError::Unavailable(format!(
                                        "cannot write the upload: {e}"
                                    )),
                                );
                            }
                        }
                        Ok(None) => break,
                        Err(e) => return error(&malformed(&e)),
                    }
                }
                let flushed = async {
                    out.flush().await?;
                    out.get_ref().sync_all().await
                }
                .await;
                if let Err(e) = flushed {
                    return store_error(
                        "",
                        &StoreError::Unavailable(format!("cannot write the upload: {e}")),
                    );
                }
                file = Some((spool, filename, declared_type, total));
            }
            _ => {
                // Unknown fields are read and ignored.
                loop {
                    match field.chunk().await {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) => return error(&malformed(&e)),
                    }
                }
            }
        }
    }
    let Some((spool, filename, declared_type, bytes)) = file else {
        return error(&GatewayError::invalid(
            "file",
            "Missing the `file` field (multipart/form-data).",
        ));
    };
    let purpose = match purpose {
        Some(p) if PURPOSES.contains(&p.as_str()) => p,
        Some(p) => {
            return error(&GatewayError::invalid(
                "purpose",
                format!(
                    "Invalid purpose `{p}`: expected one of {}.",
                    PURPOSES.join(", ")
                ),
            ))
        }
        None => {
            return error(&GatewayError::invalid(
                "purpose",
                format!(
                    "Missing the `purpose` field (one of {}).",
                    PURPOSES.join(", ")
                ),
            ))
        }
    };
    let id = match new_id() {
        Ok(id) => id,
        Err(e) => return error(&GatewayError::internal(e)),
    };
    let now_ns = unix_now_ns();
    let meta = FileMeta {
        content_type: content_type_for(&filename, declared_type.as_deref()),
        id,
        owner,
        filename,
        purpose,
        bytes,
        created_at: now_ns / 1_000_000_000,
        created_ns: now_ns,
    };
    if let Err(e) = state.files.store.put(&meta, &spool.path).await {
        return store_error(&meta.id, &e);
    }
    drop(spool);
    tracing::info!(id = %meta.id, owner = %meta.owner, bytes = meta.bytes, "file stored");
    ok_json(&meta.object())
}

/// 413 for a file over `FILES_MAX_BYTES`.
fn file_too_large(max: u64) -> GatewayError {
    GatewayError::new(
        413,
        ErrorType::InvalidRequest,
        format!("The file is larger than the limit of {max} bytes (FILES_MAX_BYTES)."),
    )
    .with_param("file")
    .with_code("file_too_large")
}

/// 400 for a broken multipart body.
fn malformed(e: &multer::Error) -> GatewayError {
    GatewayError::bad_request(format!("The multipart body is malformed: {e}"))
}

/// Reads and drops the rest of a refused upload (bounded), so the client sees the answer.
async fn drain_multipart(mut field: multer::Field<'static>, mut mp: multer::Multipart<'static>) {
    let drain = async {
        let mut seen = 0u64;
        loop {
            match field.chunk().await {
                Ok(Some(c)) => {
                    seen += c.len() as u64;
                    if seen > DRAIN_LIMIT {
                        return;
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        while let Ok(Some(mut f)) = mp.next_field().await {
            while let Ok(Some(c)) = f.chunk().await {
                seen += c.len() as u64;
                if seen > DRAIN_LIMIT {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
}

/// Reads and drops a request body (bounded).
async fn drain_body(body: Body) {
    let mut stream = body.into_data_stream();
    let drain = async {
        let mut seen = 0u64;
        while let Some(Ok(c)) = stream.next().await {
            seen += c.len() as u64;
            if seen > DRAIN_LIMIT {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
}

/// `GET /v1/files`.
async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let owner = match caller(&state, &headers) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let limit = match query.get("limit").map(|l| l.trim().parse::<usize>()) {
        None => MAX_LIST_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIST_LIMIT).contains(&n) => n,
        Some(_) => {
            return error(&GatewayError::invalid(
                "limit",
                format!("`limit` must be a whole number between 1 and {MAX_LIST_LIMIT}."),
            ))
        }
    };
    let ascending = match query.get("order").map(String::as_str) {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(o) => {
            return error(&GatewayError::invalid(
                "order",
                format!("Invalid order `{o}`: expected `asc` or `desc`."),
            ))
        }
    };
    let mut files = match state.files.store.list(&owner).await {
        Ok(f) => f,
        Err(e) => return store_error("", &e),
    };
    if let Some(p) = query.get("purpose").filter(|p| !p.is_empty()) {
        files.retain(|f| &f.purpose == p);
    }
    files.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    if !ascending {
        files.reverse();
    }
    if let Some(after) = query.get("after").filter(|a| !a.is_empty()) {
        match files.iter().position(|f| &f.id == after) {
            Some(i) => {
                files.drain(..=i);
            }
            None => {
                return error(&GatewayError::invalid(
                    "after",
                    format!("No such File object: {after} (the `after` cursor)."),
                ))
            }
        }
    }
    let has_more = files.len() > limit;
    files.truncate(limit);
    ok_json(&json!({
        "object": "list",
        "data": files.iter().map(FileMeta::object).collect::<Vec<_>>(),
        "has_more": has_more,
        "first_id": files.first().map(|f| f.id.clone()),
        "last_id": files.last().map(|f| f.id.clone()),
    }))
}

/// `GET /v1/files/{id}`.
async fn retrieve(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let owner = match caller(&state, &headers) {
        Ok(o) => o,
        Err(r) => return r,
    };
    match state.files.store.get(&owner, &id).await {
        Ok(m) => ok_json(&m.object()),
        Err(e) => store_error(&id, &e),
    }
}

/// `DELETE /v1/files/{id}`.
async fn delete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let owner = match caller(&state, &headers) {
        Ok(o) => o,
        Err(r) => return r,
    };
    match state.files.store.delete(&owner, &id).await {
        Ok(()) => {
            tracing::info!(id = %id, owner = %owner, "file deleted");
            ok_json(&json!({"id": id, "object": "file", "deleted": true}))
        }
        Err(e) => store_error(&id, &e),
    }
}

/// `GET /v1/files/{id}/content`: the bytes, streamed.
async fn content(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let owner = match caller(&state, &headers) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (meta, reader) = match state.files.store.open(&owner, &id, None).await {
        Ok(x) => x,
        Err(e) => return store_error(&id, &e),
    };
    let stream = tokio_util::io::ReaderStream::with_capacity(reader, 64 * 1024);
    let mut r = Response::new(Body::from_stream(stream));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&meta.content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.bytes));
    if let Ok(v) = HeaderValue::from_str(&content_disposition(&meta.filename)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// `attachment; filename="…"; filename*=UTF-8''…` (ASCII fallback plus the exact name).
fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let exact: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{exact}")
}

/// `GET /v1/files/health`: whether storage works, and the limits a client needs. Where and how
/// files are stored (directory, bucket, credentials, errors) is for the operator: it goes to
/// the sidecar's log, never to a client.
async fn health(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = caller(&state, &headers) {
        return r;
    }
    let h = state.files.store.health().await;
    let mut body = json!({
        "status": if h.ok { "ok" } else { "unavailable" },
        "max_bytes": state.files.settings.max_bytes,
        "context_max_bytes": state.files.settings.context_max_bytes,
    });
    if h.ok {
        tracing::debug!(details = %h.details, "file storage is healthy");
    } else {
        tracing::warn!(details = %h.details, "file storage health check failed");
    }
    if let (false, Some(o)) = (h.ok, body.as_object_mut()) {
        o.insert(
            "error".into(),
            json!({
                "message": "File storage is not available (the details are in the unigate sidecar's log).",
                "type": "api_error", "param": null, "code": "storage_unavailable",
            }),
        );
    }
    let status = if h.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, serde_json::to_vec(&body).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions() {
        assert_eq!(
            content_disposition("a b.txt"),
            "attachment; filename=\"a b.txt\"; filename*=UTF-8''a%20b.txt"
        );
        assert_eq!(
            content_disposition("é\"x"),
            "attachment; filename=\"__x\"; filename*=UTF-8''%C3%A9%22x"
        );
    }
}
