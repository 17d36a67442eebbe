//! The sidecar's HTTP server (loopback only): `/health`, the filter's credentials endpoint, and
//! the Files API ([`crate::files::api`]).

use crate::credentials::CredentialCache;
use crate::files::Files;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tokio::net::TcpListener;
use unigate_core::credentials::{SIDECAR_CREDENTIALS_PATH, SIDECAR_TOKEN_HEADER};
use unigate_core::error::{ErrorType, GatewayError};

/// What the handlers share.
pub struct AppState {
    /// The secret the filter must send in `x-unigate-token`.
    pub token: String,
    /// The credentials cache.
    pub credentials: CredentialCache,
    /// File storage.
    pub files: Files,
}

/// The sidecar's routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route(SIDECAR_CREDENTIALS_PATH, get(aws_credentials))
        .merge(crate::files::api::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Binds the sidecar's listener on 127.0.0.1 (never another address).
pub async fn bind(port: u16) -> Result<TcpListener, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpListener::bind(addr).await.map_err(|e| {
        format!("cannot listen on {addr} for the sidecar: {e} (set UNIGATE_SIDECAR_PORT to a free port)")
    })
}

/// Serves until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| format!("the sidecar server failed: {e}"))
}

/// `GET /health`.
async fn health() -> Response {
    json_response(StatusCode::OK, br#"{"status":"ok"}"#.to_vec())
}

/// Checks `x-unigate-token` (constant time); the error answer when it is missing or wrong.
// The error is the finished answer; it is returned at once, never stored.
#[allow(clippy::result_large_err)]
pub fn check_token(state: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    match headers.get(SIDECAR_TOKEN_HEADER).map(HeaderValue::as_bytes) {
        None => Err(error(&GatewayError::unauthorized(format!(
            "Missing {SIDECAR_TOKEN_HEADER}: this endpoint is only for the unigate filter."
        )))),
        Some(p) if !constant_time_eq(p, state.token.as_bytes()) => {
            tracing::warn!("sidecar request with a wrong {SIDECAR_TOKEN_HEADER}");
            Err(error(&GatewayError::unauthorized(format!(
                "Incorrect {SIDECAR_TOKEN_HEADER}."
            ))))
        }
        Some(_) => Ok(()),
    }
}

/// `GET /v1/internal/aws-credentials`: the AWS credentials, for callers with the token.
async fn aws_credentials(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = check_token(&state, &headers) {
        return r;
    }
    match state.credentials.get().await {
        Ok(creds) => match serde_json::to_vec(&creds) {
            Ok(body) => {
                let mut r = json_response(StatusCode::OK, body);
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                r
            }
            Err(e) => error(&GatewayError::internal(format!(
                "cannot serialize credentials: {e}"
            ))),
        },
        Err(e) => error(
            &GatewayError::new(503, ErrorType::Api, e.message)
                .with_code("aws_credentials_unavailable"),
        ),
    }
}

/// Any other path.
async fn not_found() -> Response {
    error(&GatewayError::not_found("not found"))
}

/// A known path with another method.
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    error(&GatewayError::method_not_allowed(
        method.as_str(),
        uri.path(),
    ))
}

/// An OpenAI-style error response.
pub fn error(e: &GatewayError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, e.to_json())
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
