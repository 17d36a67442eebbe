//! One HTTP request through the gateway: auth, local endpoints, limits, planning, signing,
//! and the translation of the answer.

use crate::credentials;
use crate::host;
use crate::limits;
use crate::metrics;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::rc::Rc;
use std::time::Instant;
use unigate_core::auth::ClientKey;
use unigate_core::config::{CredentialsSource, Gateway};
use unigate_core::credentials::{CredentialsRecord, SidecarFailure, SIDECAR_TOKEN_HEADER};
use unigate_core::detect;
use unigate_core::doors::Door;
use unigate_core::endpoints::{self, Endpoint};
use unigate_core::error::{ErrorType, GatewayError};
use unigate_core::files::{self, FileContext};
use unigate_core::formats::Format;
use unigate_core::ir::Usage;
use unigate_core::plan::{self, Plan, PlanInput, ResponsePlan, CLUSTER_HEADER};
use unigate_core::response::{self, ClientResponse};
use unigate_core::sigv4::AwsCredentials;
use unigate_core::stream::StreamTranslator;
use unigate_core::upstream_error;

/// Where the request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the request headers.
    Start,
    /// Buffering the chat request body.
    WaitBody,
    /// Waiting for the sidecar to extract the request's `file_ids`.
    WaitFiles,
    /// Waiting for the sidecar to hand over AWS credentials.
    WaitCredentials,
    /// Sent upstream; the response goes through the response plan.
    Forwarded,
    /// Answered locally (or passed through untouched); nothing more to do.
    Done,
}

/// How the response body is handled.
#[derive(Debug)]
enum ResponseMode {
    /// Not decided yet.
    Undecided,
    /// Send the upstream answer unchanged, reading its usage on the way.
    Inspect,
    /// Translate a stream chunk by chunk.
    Stream(Box<StreamTranslator>),
    /// Buffer the whole body, then translate it.
    Buffer {
        status: u16,
        error_type: Option<String>,
        /// `response.code_details` when Envoy, not the upstream, produced the reply.
        envoy_details: Option<String>,
    },
}

/// Per-request HTTP context.
pub struct Http {
    /// Envoy's context id (in logs next to the request id).
    context_id: u32,
    gateway: Option<Rc<Gateway>>,
    env_credentials: Option<Rc<AwsCredentials>>,
    phase: Phase,
    /// Format errors are written in (known once the query/header are read).
    target: Format,
    query: Option<String>,
    target_header: Option<String>,
    session_header: Option<String>,
    request_id: String,
    client: Option<ClientKey>,
    /// The front door the request came through.
    door: Door,
    plan: Option<Plan>,
    response_plan: Option<ResponsePlan>,
    mode: ResponseMode,
    /// Size of the buffered request body (what a body replacement must cover).
    request_body_size: usize,
    /// The client's request headers, read once (one host call instead of one per header).
    headers: Vec<(String, Vec<u8>)>,
    /// For metrics: provider, model sent upstream, client-facing status, usage, timings.
    provider: &'static str,
    model_id: String,
    status: u16,
    usage: Option<Usage>,
    started: Instant,
    forwarded_at: Option<Instant>,
    first_byte_at: Option<Instant>,
}

/// Client headers that steer the gateway itself; never accepted from outside.
const INTERNAL_HEADERS: &[&str] = &[CLUSTER_HEADER, files::OWNER_HEADER, SIDECAR_TOKEN_HEADER];

/// Largest upstream response body buffered for translation.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

impl Http {
    /// A context for one request.
    pub fn new(
        id: u32,
        gateway: Option<Rc<Gateway>>,
        env_credentials: Option<Rc<AwsCredentials>>,
    ) -> Http {
        Http {
            context_id: id,
            gateway,
            env_credentials,
            phase: Phase::Start,
            target: Format::OpenaiChat,
            query: None,
            target_header: None,
            session_header: None,
            request_id: String::new(),
            client: None,
            door: Door::Chat,
            plan: None,
            response_plan: None,
            mode: ResponseMode::Undecided,
            request_body_size: 0,
            headers: Vec::new(),
            provider: "local",
            model_id: String::new(),
            status: 0,
            usage: None,
            started: Instant::now(),
            forwarded_at: None,
            first_byte_at: None,
        }
    }

    fn request_header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// Sends a complete local reply and ends our work on this request.
    fn reply(&mut self, resp: &ClientResponse) -> Action {
        self.phase = Phase::Done;
        self.status = resp.status;
        let headers: Vec<(&str, &str)> =
            resp.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if let Err(e) = host::send_response(resp.status, &headers, &resp.body) {
            crate::error!("unigate {}: local reply failed: {e}", self.request_id);
        }
        Action::Pause
    }

    fn reply_error(&mut self, err: &GatewayError) -> Action {
        crate::debug!("unigate {}: answering {}", self.request_id, err);
        let resp = response::error_response(err, self.target);
        self.reply(&resp)
    }

    fn on_headers(&mut self, gw: &Gateway, end_of_stream: bool) -> Action {
        self.request_id = random_id();
        self.headers = host::get_headers(MapType::HttpRequestHeaders).unwrap_or_default();
        #[cfg(feature = "test-trap")]
        if self.request_header("x-unigate-test-trap").is_some() {
            #[allow(clippy::panic)]
            {
                panic!("deliberate trap (test-trap build)");
            }
        }
        for h in INTERNAL_HEADERS {
            if self.headers.iter().any(|(k, _)| k == h) {
                let _ = host::remove_header(MapType::HttpRequestHeaders, h);
            }
        }
        let method = self.request_header(":method").unwrap_or_default();
        let full_path = self.request_header(":path").unwrap_or_default();
        let (path, query) = endpoints::split_path(&full_path);
        self.query = query.map(str::to_string);
        self.target_header = self.request_header("x-target-format");
        self.session_header = self.request_header("x-session-id");
        // Errors are written in the requested format when it parses; OpenAI otherwise.
        self.target = detect::target_format(
            self.query.as_deref(),
            self.target_header.as_deref(),
            Format::OpenaiChat,
        )
        .unwrap_or(Format::OpenaiChat);
        let endpoint = endpoints::classify(&method, path);
        crate::debug!(
            "unigate {}: {} {} -> {}",
            self.request_id,
            method,
            path,
            endpoint.name()
        );

        if endpoint.needs_auth() {
            let auth = self.request_header("authorization");
            let api_key = self.request_header("x-api-key");
            match gw.authorize(auth.as_deref(), api_key.as_deref()) {
                Ok(k) => self.client = k.cloned(),
                Err(e) => {
                    metrics::count("unigate.auth_failures", 1);
                    return self.reply_error(&e);
                }
            }
        }
        match endpoint {
            Endpoint::Health => self.reply(&endpoints::health(gw, false)),
            Endpoint::ChatHealth => self.reply(&endpoints::health(gw, true)),
            Endpoint::Models => self.reply(&endpoints::models(gw, self.client.as_ref())),
            Endpoint::Providers => self.reply(&endpoints::providers(gw)),
            Endpoint::Model(id) => match endpoints::model(gw, &id) {
                Ok(r) => self.reply(&r),
                Err(e) => self.reply_error(&e),
            },
            Endpoint::Door(door) => {
                self.door = door;
                let declared = self
                    .request_header("content-length")
                    .and_then(|v| v.trim().parse::<u64>().ok());
                if declared.is_some_and(|n| n > gw.config.max_request_bytes) {
                    return self.reply_error(&GatewayError::too_large(gw.config.max_request_bytes));
                }
                if end_of_stream {
                    return self.reply_error(&GatewayError::bad_request(
                        "The request body is empty; expected a JSON chat completion request.",
                    ));
                }
                self.phase = Phase::WaitBody;
                // Hold the headers: they are rewritten once the whole body is known.
                Action::Pause
            }
            Endpoint::Files => self.route_files(gw),
            Endpoint::WrongMethod => {
                self.reply_error(&GatewayError::method_not_allowed(&method, path))
            }
            Endpoint::Unknown => self.reply_error(&GatewayError::not_found(format!(
                "Unknown endpoint {method} {path}."
            ))),
        }
    }

    /// Sends `/v1/files…` to the sidecar, with the owner and the shared secret it trusts.
    fn route_files(&mut self, gw: &Gateway) -> Action {
        let map = MapType::HttpRequestHeaders;
        let owner = self.owner();
        let mut ok = host::set_header(map, files::OWNER_HEADER, &owner).is_ok();
        match &gw.sidecar_token {
            Some(t) => ok &= host::set_header(map, SIDECAR_TOKEN_HEADER, t).is_ok(),
            None => ok &= host::remove_header(map, SIDECAR_TOKEN_HEADER).is_ok(),
        }
        ok &= host::remove_header(map, "authorization").is_ok();
        ok &= host::remove_header(map, "x-api-key").is_ok();
        ok &= host::set_header(map, CLUSTER_HEADER, &gw.config.sidecar_cluster).is_ok();
        if !ok {
            return self.reply_error(&GatewayError::internal(
                "Could not route the files request.",
            ));
        }
        if let Err(e) = host::call_foreign("clear_route_cache", &[]) {
            crate::warn!("unigate {}: clear_route_cache failed: {e}", self.request_id);
        }
        // Uploads stream through to the sidecar: nothing is buffered here.
        self.phase = Phase::Done;
        Action::Continue
    }

    fn on_body(&mut self, gw: &Gateway, body_size: usize, end_of_stream: bool) -> Action {
        if body_size as u64 > gw.config.max_request_bytes {
            return self.reply_error(&GatewayError::too_large(gw.config.max_request_bytes));
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = match host::get_buffer(BufferType::HttpRequestBody, 0, body_size) {
            Ok(b) => b,
            Err(e) => return self.reply_error(&GatewayError::internal(format!("{e}"))),
        };
        self.request_body_size = body_size;
        match files::requested(&body) {
            Err(e) => self.reply_error(&e),
            Ok(ids) if !ids.is_empty() => self.fetch_files(gw, &ids),
            Ok(_) => self.plan_and_forward(gw, &body, None),
        }
    }

    /// Asks the sidecar for the extracted text of `ids` (one call for all of them).
    fn fetch_files(&mut self, gw: &Gateway, ids: &[String]) -> Action {
        let owner = self.owner();
        let mut headers = vec![
            (":method", "POST".to_string()),
            (":path", files::SIDECAR_FILE_CONTEXT_PATH.to_string()),
            (":authority", "unigate-sidecar".to_string()),
            ("content-type", "application/json".to_string()),
            (files::OWNER_HEADER, owner),
        ];
        if let Some(t) = &gw.sidecar_token {
            headers.push((SIDECAR_TOKEN_HEADER, t.clone()));
        }
        let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let body = files::sidecar_request(ids);
        match self.dispatch_http_call(
            &gw.config.sidecar_cluster,
            refs,
            Some(&body),
            vec![],
            std::time::Duration::from_millis(gw.config.file_context_timeout_ms.max(1)),
        ) {
            Ok(_) => {
                self.phase = Phase::WaitFiles;
                Action::Pause
            }
            Err(status) => {
                metrics::count("unigate.errors.sidecar", 1);
                self.reply_error(&GatewayError::new(
                    503,
                    ErrorType::Api,
                    format!(
                        "File context is not available: the unigate sidecar cluster `{}` cannot be called ({status:?}).",
                        gw.config.sidecar_cluster
                    ),
                )
                .with_code("sidecar_unavailable"))
            }
        }
    }

    /// The owner id of this request's files (a hash of the key, never the key).
    fn owner(&self) -> String {
        self.client
            .as_ref()
            .map_or_else(|| "anonymous".to_string(), ClientKey::id)
    }

    /// Plans the chat request and sends it on (or starts the credentials callout).
    fn plan_and_forward(
        &mut self,
        gw: &Gateway,
        body: &[u8],
        file_context: Option<&[FileContext]>,
    ) -> Action {
        let now = credentials::now_secs();
        let planned = plan::plan(
            gw,
            &PlanInput::new(self.door, body)
                .query(self.query.as_deref())
                .target_header(self.target_header.as_deref())
                .request_id(&self.request_id)
                .session_header(self.session_header.as_deref())
                .client(self.client.as_ref())
                .files(file_context)
                .now(now),
        );
        let chat_plan = match planned {
            Ok(p) => p,
            Err(e) => {
                if e.status == 400 {
                    metrics::count("unigate.errors.translation", 1);
                }
                return self.reply_error(&e);
            }
        };
        self.target = chat_plan.response.target;
        self.provider = chat_plan.upstream.provider.as_str();
        self.model_id = chat_plan.model_id.clone();
        metrics::count(
            &format!("unigate.format.{}", chat_plan.response.input.target_name()),
            1,
        );
        if let Some(k) = &self.client {
            if let Err(e) = limits::admit(k, now) {
                metrics::count("unigate.rate_limited", 1);
                return self.reply_error(&e);
            }
        }
        crate::debug!(
            "unigate {}: key {} model {} -> {} via {}",
            self.request_id,
            self.client.as_ref().map_or("-", |k| k.label.as_str()),
            chat_plan.response.meta.model,
            chat_plan.model_id,
            chat_plan.response.upstream.as_str()
        );
        if chat_plan.upstream.sign_region.is_none() {
            return self.forward(chat_plan, None);
        }
        if let Some(c) = self.env_credentials.clone() {
            return self.forward(chat_plan, Some(&c));
        }
        if let Some(c) = credentials::current(now) {
            return self.forward(chat_plan, Some(&c));
        }
        if gw.config.aws_credentials == CredentialsSource::Env {
            return self.reply_error(&GatewayError::unconfigured(
                "AWS credentials are not available: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for Envoy (aws_credentials is `env`).",
            ));
        }
        // No credentials cached yet (first request after start): ask the sidecar directly.
        let headers = credentials::request_headers(gw);
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        match self.dispatch_http_call(
            &gw.config.sidecar_cluster,
            refs,
            None,
            vec![],
            credentials::timeout(gw),
        ) {
            Ok(_) => {
                self.plan = Some(chat_plan);
                self.phase = Phase::WaitCredentials;
                Action::Pause
            }
            Err(status) => {
                metrics::count("unigate.errors.sidecar", 1);
                self.reply_error(&GatewayError::unconfigured(format!(
                    "AWS credentials are not available: the unigate sidecar cluster `{}` cannot be called ({status:?}).",
                    gw.config.sidecar_cluster
                )))
            }
        }
    }

    /// Applies a plan to the held request and lets it continue upstream.
    fn forward(&mut self, chat_plan: Plan, creds: Option<&AwsCredentials>) -> Action {
        match self.apply(&chat_plan, creds) {
            Ok(()) => {
                self.response_plan = Some(chat_plan.response);
                self.phase = Phase::Forwarded;
                self.forwarded_at = Some(Instant::now());
                Action::Continue
            }
            Err(e) => self.reply_error(&e),
        }
    }

    fn apply(&self, chat_plan: &Plan, creds: Option<&AwsCredentials>) -> Result<(), GatewayError> {
        let up = &chat_plan.upstream;
        let signing = match creds {
            Some(c) => up
                .signing_headers(c, credentials::now_secs())
                .inspect_err(|_| {
                    metrics::count("unigate.errors.signing", 1);
                })?,
            None => Vec::new(),
        };
        let host_err = |e: host::HostError| GatewayError::internal(format!("{e}"));
        host::set_buffer(
            BufferType::HttpRequestBody,
            0,
            self.request_body_size,
            &up.body,
        )
        .map_err(host_err)?;
        let map = MapType::HttpRequestHeaders;
        for name in &up.remove_headers {
            host::remove_header(map, name).map_err(host_err)?;
        }
        if up.sign_region.is_some() {
            // Client-supplied AWS headers must not reach AWS next to our signature.
            for (name, _) in &self.headers {
                if name.starts_with("x-amz-") || name.starts_with("x-amzn-") {
                    host::remove_header(map, name).map_err(host_err)?;
                }
            }
        }
        host::set_header(map, ":path", &up.path).map_err(host_err)?;
        host::set_header(map, ":authority", &up.authority).map_err(host_err)?;
        // A length-delimited body upstream, also when the client sent it chunked.
        if up.body_changed || self.request_header("content-length").is_none() {
            host::set_header(map, "content-length", &up.body.len().to_string())
                .map_err(host_err)?;
        }
        for (name, value) in &up.headers {
            host::set_header(map, name, value).map_err(host_err)?;
        }
        for (name, value) in &signing {
            host::set_header(map, name, value).map_err(host_err)?;
        }
        host::set_header(map, CLUSTER_HEADER, &up.cluster).map_err(host_err)?;
        // Envoy (1.33+) does not recompute the route after a wasm header change by itself.
        if let Err(e) = host::call_foreign("clear_route_cache", &[]) {
            crate::warn!("unigate {}: clear_route_cache failed: {e}", self.request_id);
        }
        // Filter state for access logs and other filters (Envoy prefixes the keys `wasm.`).
        let _ = host::set_property(&["unigate.model"], self.model_id.as_bytes());
        let _ = host::set_property(&["unigate.provider"], self.provider.as_bytes());
        if let Some(k) = &self.client {
            let _ = host::set_property(&["unigate.key"], k.label.as_bytes());
        }
        Ok(())
    }

    fn finish_buffered(&mut self, body: &[u8]) -> Result<ClientResponse, GatewayError> {
        let Some(rp) = &self.response_plan else {
            return Err(GatewayError::internal("response without a plan"));
        };
        let ResponseMode::Buffer {
            status,
            error_type,
            envoy_details,
        } = &self.mode
        else {
            return Err(GatewayError::internal("response mode mismatch"));
        };
        Ok(match envoy_details {
            Some(details) => response::error_response(
                &upstream_error::from_envoy(*status, details, rp.timeout_secs),
                rp.target,
            ),
            None => response::translate_buffered(rp, *status, error_type.as_deref(), body),
        })
    }

    /// Records the usage of a finished answer (metrics, limits, filter state).
    fn record_usage(&mut self, usage: Usage) {
        self.usage = Some(usage);
        let total = usage.total().to_string();
        let _ = host::set_property(
            &["unigate.prompt_tokens"],
            usage.prompt_tokens.to_string().as_bytes(),
        );
        let _ = host::set_property(
            &["unigate.completion_tokens"],
            usage.completion_tokens.to_string().as_bytes(),
        );
        let _ = host::set_property(&["unigate.total_tokens"], total.as_bytes());
    }
}

impl Http {
    fn on_files_answer(&mut self, num_headers: usize, body_size: usize) {
        let (status, answer) = host::call_answer(num_headers, body_size);
        let Some(gw) = self.gateway.clone() else {
            return;
        };
        let contexts = match files::parse_answer(status, &answer) {
            Ok(c) => c,
            Err(e) => {
                if e.status >= 500 {
                    metrics::count("unigate.errors.sidecar", 1);
                }
                self.reply_error(&e);
                return;
            }
        };
        let body = match host::get_buffer(BufferType::HttpRequestBody, 0, self.request_body_size) {
            Ok(b) => b,
            Err(e) => {
                self.reply_error(&GatewayError::internal(format!("{e}")));
                return;
            }
        };
        self.phase = Phase::WaitBody;
        if self.plan_and_forward(&gw, &body, Some(&contexts)) == Action::Continue {
            if let Err(e) = host::resume_request() {
                crate::error!("unigate {}: resume failed: {e}", self.request_id);
            }
        }
    }
}

/// 32 hex characters of randomness for request, response and session ids.
fn random_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // WASI random_get should not fail; fall back to the clock rather than to a constant.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (b, t) in bytes.iter_mut().zip(t.to_le_bytes()) {
            *b = t;
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn millis(from: Instant, to: Instant) -> u64 {
    u64::try_from(to.saturating_duration_since(from).as_millis()).unwrap_or(u64::MAX)
}

impl Context for Http {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if self.phase == Phase::WaitFiles {
            self.on_files_answer(num_headers, body_size);
            return;
        }
        if self.phase != Phase::WaitCredentials {
            return;
        }
        let Some(chat_plan) = self.plan.take() else {
            return;
        };
        let result = match credentials::read_answer(num_headers, body_size) {
            Ok(creds) => {
                credentials::store(&CredentialsRecord::new(
                    creds.clone(),
                    credentials::now_secs(),
                ));
                Ok(creds)
            }
            Err(SidecarFailure::NoCredentials(m)) => Err(GatewayError::unconfigured(format!(
                "AWS credentials are not available: {m}"
            ))),
            Err(SidecarFailure::Unreachable) => Err(GatewayError::new(
                503,
                ErrorType::Api,
                "AWS credentials are not available: the unigate sidecar did not answer.",
            )
            .with_code("sidecar_unavailable")),
            Err(SidecarFailure::Invalid(m)) => Err(GatewayError::new(
                502,
                ErrorType::Api,
                format!("AWS credentials are not available: {m}"),
            )
            .with_code("sidecar_error")),
        };
        match result {
            Ok(creds) => {
                if self.forward(chat_plan, Some(&creds)) == Action::Continue {
                    if let Err(e) = host::resume_request() {
                        crate::error!("unigate {}: resume failed: {e}", self.request_id);
                    }
                }
            }
            Err(e) => {
                metrics::count("unigate.errors.sidecar", 1);
                self.reply_error(&e);
            }
        }
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        crate::logging::refresh();
        metrics::count("unigate.requests_total", 1);
        let Some(gw) = self.gateway.clone() else {
            return self.reply_error(&GatewayError::internal(
                "The unigate filter has no configuration.",
            ));
        };
        self.on_headers(&gw, end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match (self.phase, self.gateway.clone()) {
            (Phase::WaitBody, Some(gw)) => self.on_body(&gw, body_size, end_of_stream),
            (Phase::WaitCredentials | Phase::WaitFiles, _) => Action::Pause,
            _ => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.phase != Phase::Forwarded {
            return Action::Continue;
        }
        let Some(rp) = &self.response_plan else {
            return Action::Continue;
        };
        let map = MapType::HttpResponseHeaders;
        let status = host::get_header(map, ":status")
            .ok()
            .flatten()
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(502);
        self.status = status;
        let details = host::get_property(&["response", "code_details"])
            .ok()
            .flatten()
            .map(|d| String::from_utf8_lossy(&d).into_owned());
        let from_upstream = details.as_deref().is_none_or(|d| d == "via_upstream");
        let ok = from_upstream && (200..300).contains(&status);
        for (name, value) in &rp.extra_headers {
            let _ = host::set_header(map, name, value);
        }
        if ok && rp.stream && !end_of_stream {
            // Headers go out now; every chunk is translated and passed on as it arrives.
            let translator = match StreamTranslator::new(rp) {
                Ok(t) => t,
                Err(e) => return self.reply_error(&e),
            };
            let _ = host::set_header(map, "content-type", "text/event-stream");
            let _ = host::set_header(map, "cache-control", "no-cache");
            for name in [
                "content-length",
                "content-encoding",
                "x-amzn-bedrock-content-type",
            ] {
                let _ = host::remove_header(map, name);
            }
            metrics::count("unigate.streams_total", 1);
            self.mode = ResponseMode::Stream(Box::new(translator));
            return Action::Continue;
        }
        if ok && rp.relay && !rp.stream {
            self.mode = ResponseMode::Inspect;
            return Action::Continue;
        }
        if !ok {
            metrics::count("unigate.errors.upstream", 1);
        }
        self.mode = ResponseMode::Buffer {
            status,
            error_type: host::get_header(map, "x-amzn-errortype").ok().flatten(),
            envoy_details: if from_upstream { None } else { details },
        };
        if end_of_stream {
            // No body will follow: answer with a complete local reply instead.
            return match self.finish_buffered(&[]) {
                Ok(resp) => self.reply(&resp),
                Err(e) => self.reply_error(&e),
            };
        }
        Action::Pause
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.phase != Phase::Forwarded {
            return Action::Continue;
        }
        if self.first_byte_at.is_none() && body_size > 0 {
            self.first_byte_at = Some(Instant::now());
        }
        match &mut self.mode {
            ResponseMode::Stream(translator) => {
                let chunk = match host::get_buffer(BufferType::HttpResponseBody, 0, body_size) {
                    Ok(c) => c,
                    Err(e) => {
                        crate::error!(
                            "unigate {}: cannot read a stream chunk: {e}",
                            self.request_id
                        );
                        Vec::new()
                    }
                };
                let out = translator.push(&chunk, end_of_stream);
                let finished = translator.finished();
                let usage = translator.usage();
                if let Err(e) = host::set_buffer(BufferType::HttpResponseBody, 0, body_size, &out) {
                    crate::error!(
                        "unigate {}: cannot write a stream chunk: {e}",
                        self.request_id
                    );
                }
                if finished && self.usage.is_none() {
                    self.record_usage(usage);
                }
                Action::Continue
            }
            ResponseMode::Inspect => {
                if !end_of_stream {
                    return Action::Pause;
                }
                let body = host::get_buffer(BufferType::HttpResponseBody, 0, body_size)
                    .unwrap_or_default();
                if let Some(u) = self
                    .response_plan
                    .as_ref()
                    .and_then(|rp| response::usage_of(rp.upstream, &body))
                {
                    self.record_usage(u);
                }
                Action::Continue
            }
            ResponseMode::Buffer { .. } => {
                if body_size > MAX_RESPONSE_BYTES {
                    let err = GatewayError::bad_gateway(
                        "The upstream response is too large to translate.",
                    );
                    return self.reply_error(&err);
                }
                if !end_of_stream {
                    return Action::Pause;
                }
                let body = host::get_buffer(BufferType::HttpResponseBody, 0, body_size)
                    .unwrap_or_default();
                let resp = match self.finish_buffered(&body) {
                    Ok(r) => r,
                    Err(e) => response::error_response(&e, self.target),
                };
                if resp.status >= 500 || resp.status == 400 && self.status == 200 {
                    metrics::count("unigate.errors.translation", 1);
                }
                self.status = resp.status;
                if let Some(u) = resp.usage {
                    self.record_usage(u);
                }
                let map = MapType::HttpResponseHeaders;
                let mut ok = host::set_header(map, ":status", &resp.status.to_string()).is_ok();
                for (name, value) in &resp.headers {
                    ok &= host::set_header(map, name, value).is_ok();
                }
                ok &= host::set_header(map, "content-length", &resp.body.len().to_string()).is_ok();
                for name in ["content-encoding", "x-amzn-errortype", "transfer-encoding"] {
                    let _ = host::remove_header(map, name);
                }
                ok &= host::set_buffer(BufferType::HttpResponseBody, 0, body_size, &resp.body)
                    .is_ok();
                if !ok {
                    crate::error!(
                        "unigate {}: could not rewrite the response",
                        self.request_id
                    );
                }
                self.phase = Phase::Done;
                Action::Continue
            }
            ResponseMode::Undecided => Action::Continue,
        }
    }

    fn on_log(&mut self) {
        if self.provider == "local" {
            return;
        }
        let now = Instant::now();
        let model = metrics::segment(&self.model_id);
        let status = if self.status == 0 { 499 } else { self.status };
        metrics::count(
            &format!("unigate.chat.{}.{model}.{status}", self.provider),
            1,
        );
        if let Some(u) = self.usage {
            metrics::count(&format!("unigate.tokens.{model}.input"), u.prompt_tokens);
            metrics::count(
                &format!("unigate.tokens.{model}.output"),
                u.completion_tokens,
            );
            metrics::count(
                &format!("unigate.tokens.{model}.cached"),
                u.cache_read_tokens,
            );
            if let Some(k) = &self.client {
                limits::charge(k, credentials::now_secs(), u.total());
            }
        }
        if let Some(fwd) = self.forwarded_at {
            match (&self.mode, self.first_byte_at) {
                (ResponseMode::Stream(_), Some(first)) => {
                    metrics::record("unigate.ttft_ms", millis(fwd, first));
                    metrics::record("unigate.stream_duration_ms", millis(fwd, now));
                }
                _ => metrics::record("unigate.upstream_latency_ms", millis(fwd, now)),
            }
        }
        // One line per request at debug: the JSON access log is the per-request record, and
        // an info line per request costs Envoy a log write each time.
        crate::debug!(
            "unigate {} (#{}): key={} provider={} model={} status={} prompt_tokens={} completion_tokens={} ms={}",
            self.request_id,
            self.context_id,
            self.client.as_ref().map_or("-", |k| k.label.as_str()),
            self.provider,
            self.model_id,
            status,
            self.usage.map_or(0, |u| u.prompt_tokens),
            self.usage.map_or(0, |u| u.completion_tokens),
            millis(self.started, now)
        );
    }
}
