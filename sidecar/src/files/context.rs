//! `POST /v1/internal/file-context`: the extracted text of each file, in request order, for
//! the filter's `file_ids`. What one request can make the sidecar spend is bounded:
//!
//! * time — the whole answer within `FILE_CONTEXT_TIMEOUT_MS` (then 504); the extraction
//!   stops at that deadline, and as soon as the caller goes away (the filter's call timed out
//!   and its connection closed, so this handler's future is dropped): extractors check a
//!   flag set on drop, a PDF process is killed;
//! * CPU — at most `FILE_CONTEXT_CONCURRENCY` files are read and extracted at once; a file
//!   that finds no free slot within [`QUEUE_WAIT`] gets 503 `extraction_busy`;
//! * memory — at most [`MIN_EXTRACT_INPUT`] (or 16 × `FILE_CONTEXT_MAX_BYTES`) of a file is
//!   read, the text stops at `FILE_CONTEXT_MAX_BYTES`, JSON/XML/PDF nesting at
//!   `FILE_CONTEXT_MAX_DEPTH` (then 422), and a PDF is read in a child process limited to
//!   `FILE_CONTEXT_PDF_MEMORY_BYTES` of address space.

use super::api::{caller, store_error};
use super::extract::budget::Budget;
use super::extract::{self, Extracted, Failure, Kind};
use super::{pdf_worker, FileMeta, StoreError};
use crate::server::{error, json_response, AppState};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use unigate_core::error::{ErrorType, GatewayError};
use unigate_core::files::{FileContext, FileContextResponse};

/// Least input read for extraction (more when `FILE_CONTEXT_MAX_BYTES` is large).
pub const MIN_EXTRACT_INPUT: u64 = 16 * 1024 * 1024;
/// Largest PDF whose text is extracted (it must be read whole).
pub const MAX_PDF_INPUT: u64 = 64 * 1024 * 1024;
/// How long a file waits for a free extraction slot before 503.
pub const QUEUE_WAIT: Duration = Duration::from_secs(2);

/// The extraction slots (`FILE_CONTEXT_CONCURRENCY`).
pub struct Slots {
    permits: Arc<Semaphore>,
    size: usize,
}

impl Slots {
    /// `size` slots.
    pub fn new(size: usize) -> Slots {
        let size = size.clamp(1, Semaphore::MAX_PERMITS);
        Slots {
            permits: Arc::new(Semaphore::new(size)),
            size,
        }
    }

    /// A slot, waiting at most [`QUEUE_WAIT`] and never past `deadline`.
    async fn take(&self, deadline: Instant) -> Option<OwnedSemaphorePermit> {
        let wait = QUEUE_WAIT.min(deadline.saturating_duration_since(Instant::now()));
        tokio::time::timeout(wait, self.permits.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }
}

/// Sets its flag when dropped: the handler's future ended (answered, timed out, or dropped
/// because the caller went away), so the extraction it started may stop.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `POST /v1/internal/file-context`.
pub async fn file_context(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let owner = match caller(&state, &headers) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let bytes = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) => b,
        Err(_) => return error(&GatewayError::bad_request("The request body is too large.")),
    };
    let ids = match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) => match v.get("file_ids").and_then(Value::as_array) {
            Some(list) => list
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<Vec<String>>>(),
            None => None,
        },
        Err(_) => None,
    };
    let Some(ids) = ids else {
        return error(&GatewayError::invalid(
            "file_ids",
            "Expected {\"file_ids\": [\"file-…\", …]}.",
        ));
    };
    let timeout = state.files.settings.context_timeout;
    let deadline = Instant::now() + timeout;
    let work = async {
        let mut files = Vec::with_capacity(ids.len());
        for id in &ids {
            files.push(one_file(&state, &owner, id, deadline).await?);
        }
        Ok::<_, Response>(files)
    };
    match tokio::time::timeout_at(deadline.into(), work).await {
        Ok(Ok(files)) => match serde_json::to_vec(&FileContextResponse { files }) {
            Ok(b) => json_response(StatusCode::OK, b),
            Err(e) => error(&GatewayError::internal(format!("{e}"))),
        },
        Ok(Err(r)) => r,
        Err(_) => too_slow(timeout),
    }
}

/// 504: the answer was not ready within `FILE_CONTEXT_TIMEOUT_MS`.
fn too_slow(timeout: Duration) -> Response {
    error(&GatewayError::gateway_timeout(format!(
        "Extracting the text of the files took longer than {} ms (FILE_CONTEXT_TIMEOUT_MS).",
        timeout.as_millis()
    )))
}

/// One file's context, or the error answer that ends the request.
#[allow(clippy::result_large_err)]
async fn one_file(
    state: &AppState,
    owner: &str,
    id: &str,
    deadline: Instant,
) -> Result<FileContext, Response> {
    let settings = &state.files.settings;
    let missing = || {
        error(
            &GatewayError::new(
                404,
                ErrorType::InvalidRequest,
                format!("No such file: {id}"),
            )
            .with_param("file_ids")
            .with_code("file_not_found"),
        )
    };
    let meta = match state.files.store.get(owner, id).await {
        Ok(m) => m,
        Err(StoreError::NotFound) => return Err(missing()),
        Err(e) => return Err(store_error(id, &e)),
    };
    // The slot covers reading the file too: waiting requests hold no file in memory.
    let Some(slot) = state.files.extractions.take(deadline).await else {
        return Err(busy(state.files.extractions.size));
    };
    let named_pdf = extract::kind(&meta.content_type, &meta.filename, b"") == Kind::Pdf;
    let limit = if named_pdf {
        MAX_PDF_INPUT
    } else {
        (settings.context_max_bytes as u64)
            .saturating_mul(16)
            .max(MIN_EXTRACT_INPUT)
    };
    if named_pdf && meta.bytes > MAX_PDF_INPUT && cfg!(feature = "pdf") {
        return Err(refused(
            &meta,
            Failure::Unsupported(format!(
                "The PDF `{}` is larger than {} MiB, the most read to extract its text.",
                meta.filename,
                MAX_PDF_INPUT >> 20
            )),
            settings.context_timeout,
        ));
    }
    let (meta, reader) = match state.files.store.open(owner, id, Some(limit)).await {
        Ok(x) => x,
        Err(StoreError::NotFound) => return Err(missing()),
        Err(e) => return Err(store_error(id, &e)),
    };
    let max = settings.context_max_bytes;
    let depth = settings.context_max_depth;
    let result = if named_pdf && cfg!(feature = "pdf") {
        // Streamed into the child: the sidecar never holds the PDF.
        pdf_worker::extract(
            reader,
            &meta.filename,
            max,
            depth,
            deadline,
            settings.context_pdf_memory,
        )
        .await
    } else {
        let mut reader = reader;
        let mut data = Vec::with_capacity(usize::try_from(meta.bytes.min(limit)).unwrap_or(0));
        if let Err(e) = reader.read_to_end(&mut data).await {
            return Err(store_error(
                id,
                &StoreError::Unavailable(format!("cannot read the file: {e}")),
            ));
        }
        let input_cut = meta.bytes > data.len() as u64;
        let kind = extract::kind(&meta.content_type, &meta.filename, &data);
        if kind == Kind::Pdf && !input_cut && cfg!(feature = "pdf") {
            pdf_worker::extract(
                &data[..],
                &meta.filename,
                max,
                depth,
                deadline,
                settings.context_pdf_memory,
            )
            .await
        } else {
            in_process(
                kind,
                meta.filename.clone(),
                data,
                input_cut,
                max,
                depth,
                deadline,
                slot,
            )
            .await
        }
    };
    match result {
        Ok(Ok(x)) => Ok(FileContext {
            id: meta.id,
            filename: meta.filename,
            content_type: meta.content_type,
            bytes: meta.bytes,
            text: x.text,
            truncated: x.truncated,
        }),
        Ok(Err(failure)) => Err(refused(&meta, failure, settings.context_timeout)),
        Err(e) => {
            tracing::warn!(id = %meta.id, error = %e, "text extraction failed");
            Err(error(&GatewayError::internal("Text extraction failed.")))
        }
    }
}

/// Extraction on the blocking pool; it stops when the deadline passes or this future is
/// dropped, and holds `slot` until it has really stopped.
#[allow(clippy::too_many_arguments)]
async fn in_process(
    kind: Kind,
    filename: String,
    data: Vec<u8>,
    input_cut: bool,
    max: usize,
    depth: usize,
    deadline: Instant,
    slot: OwnedSemaphorePermit,
) -> Result<Result<Extracted, Failure>, String> {
    let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
    let flag = cancel.0.clone();
    let work = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let started = Instant::now();
        let mut budget = Budget::new(Some(deadline), Some(flag), depth);
        let r = extract::extract(kind, &filename, &data, input_cut, max, &mut budget);
        tracing::debug!(
            ?kind,
            bytes = data.len(),
            steps = budget.steps(),
            ms = started.elapsed().as_millis(),
            "file text extracted"
        );
        r
    });
    let result = work
        .await
        .map_err(|e| format!("the extraction task failed: {e}"));
    drop(cancel);
    result
}

/// The answer to a file whose text is not extracted.
fn refused(meta: &FileMeta, failure: Failure, timeout: Duration) -> Response {
    let (status, code, message) = match failure {
        Failure::Unsupported(m) => (415, "unsupported_file_type", m),
        Failure::TooDeep(m) => (422, "file_too_deep", m),
        Failure::TooComplex(m) => (422, "file_too_complex", m),
        Failure::Timeout | Failure::Cancelled => return too_slow(timeout),
    };
    tracing::info!(id = %meta.id, status, code, "file text not extracted");
    error(
        &GatewayError::new(status, ErrorType::InvalidRequest, message)
            .with_param("file_ids")
            .with_code(code),
    )
}

/// 503 when every extraction slot stayed busy for [`QUEUE_WAIT`].
fn busy(slots: usize) -> Response {
    let mut r = error(
        &GatewayError::new(
            503,
            ErrorType::Api,
            format!(
                "The sidecar is extracting as many files as it may at once ({slots}, FILE_CONTEXT_CONCURRENCY); try again shortly."
            ),
        )
        .with_code("extraction_busy"),
    );
    r.headers_mut()
        .insert("retry-after", HeaderValue::from_static("1"));
    r
}
