//! A small HTTP/1.1 client for the gateway (hyper, which the AWS SDK already builds, with
//! rustls and the system's CA roots for `https://` gateways).

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// A request body.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// Where the gateway is and which key to use (shared by the client commands).
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Gateway URL (with or without /v1).
    #[arg(long, env = "UNIGATE_URL", default_value = "http://127.0.0.1:8080")]
    pub server_url: String,
    /// Client API key (the first one when API_KEY lists several).
    #[arg(long, env = "API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// A client bound to one gateway and key.
pub struct Client {
    base: String,
    key: Option<String>,
    http: HyperClient<HttpsConnector<HttpConnector>, Body>,
}

impl Client {
    /// A client for `args`.
    pub fn new(args: &ServerArgs) -> Result<Client, String> {
        let mut base = args.server_url.trim().trim_end_matches('/').to_string();
        if let Some(b) = base.strip_suffix("/v1") {
            base = b.to_string();
        }
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!(
                "--server-url `{}` must start with http:// or https://",
                args.server_url
            ));
        }
        let key = args
            .api_key
            .as_deref()
            .and_then(|k| k.split(',').map(str::trim).find(|k| !k.is_empty()))
            .map(str::to_string);
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        connector.enforce_http(false);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| format!("cannot load the system's CA certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let http = HyperClient::builder(TokioExecutor::new()).build(https);
        Ok(Client { base, key, http })
    }

    /// The gateway's base URL (without `/v1`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request; `path` starts with `/v1/`.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Body,
    ) -> Result<Response<Incoming>, String> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(k) = &self.key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let req = req
            .body(body)
            .map_err(|e| format!("cannot build the request: {e}"))?;
        self.http.request(req).await.map_err(|e| {
            format!(
                "cannot reach the gateway at {}: {}. Is it running? (set --server-url or UNIGATE_URL)",
                self.base,
                crate::credentials::error_chain(&e)
            )
        })
    }

    /// A JSON request; the parsed answer, or the gateway's error message.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let (headers, body) = match body {
            Some(v) => (
                vec![("content-type", "application/json".to_string())],
                full(serde_json::to_vec(v).unwrap_or_default()),
            ),
            None => (Vec::new(), empty()),
        };
        let resp = self.send(method, path, &headers, body).await?;
        let status = resp.status().as_u16();
        let bytes = read_all(resp).await?;
        if !(200..300).contains(&status) {
            return Err(api_error(status, &bytes));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| format!("the gateway answered something that is not JSON: {e}"))
    }
}

/// A body of these bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// The whole answer body.
pub async fn read_all(resp: Response<Incoming>) -> Result<Bytes, String> {
    resp.into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| format!("the connection to the gateway broke: {e}"))
}

/// An error answer in words: the OpenAI error message when there is one.
pub fn api_error(status: u16, body: &[u8]) -> String {
    let v: Option<Value> = serde_json::from_slice(body).ok();
    let err = v.as_ref().and_then(|v| v.get("error"));
    let message = err
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            String::from_utf8_lossy(body)
                .trim()
                .chars()
                .take(500)
                .collect()
        });
    let code = err
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str)
        .map(|c| format!(" [{c}]"))
        .unwrap_or_default();
    let hint = match status {
        401 => " (check --api-key / API_KEY)",
        _ => "",
    };
    format!("the gateway answered HTTP {status}{code}: {message}{hint}")
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for Unix seconds.
pub fn utc_time(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or_default();
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_errors() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00");
        assert_eq!(utc_time(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(utc_time(951_782_400), "2000-02-29 00:00:00");
        let e = api_error(
            401,
            br#"{"error":{"message":"Incorrect API key.","code":"invalid_api_key"}}"#,
        );
        assert_eq!(
            e,
            "the gateway answered HTTP 401 [invalid_api_key]: Incorrect API key. (check --api-key / API_KEY)"
        );
        assert_eq!(api_error(502, b"bad"), "the gateway answered HTTP 502: bad");
    }

    #[test]
    fn urls() {
        let c = Client::new(&ServerArgs {
            server_url: "http://127.0.0.1:8080/v1/".into(),
            api_key: Some(" , k1,k2".into()),
        })
        .unwrap();
        assert_eq!(c.base(), "http://127.0.0.1:8080");
        assert_eq!(c.key.as_deref(), Some("k1"));
        assert!(Client::new(&ServerArgs {
            server_url: "ftp://x".into(),
            api_key: None
        })
        .is_err());
    }
}
