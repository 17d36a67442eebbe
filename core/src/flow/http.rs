//! One HTTP request through the gateway: auth, local endpoints, limits, `file_ids`, planning,
//! signing, and the translation of the answer. Each proxy-wasm callback is a method here;
//! each method acts on Envoy only through [`Host`].

use super::{credentials, limits, log_with, metrics, Action, Body, Headers, Host, Level};
use crate::auth::ClientKey;
use crate::config::{CredentialsSource, Gateway};
use crate::credentials::{CredentialsRecord, SidecarFailure, SIDECAR_TOKEN_HEADER};
use crate::detect;
use crate::doors::Door;
use crate::endpoints::{self, Endpoint};
use crate::error::{ErrorType, GatewayError};
use crate::files::{self, FileContext};
use crate::formats::Format;
use crate::ir::Operation;
use crate::ir::Usage;
use crate::json;
use crate::plan::embeddings::{Fanout, Planned};
use crate::plan::{self, Plan, PlanInput, ResponsePlan, CLUSTER_HEADER, DOOR_HEADER};
use crate::response::{self, ClientResponse};
use crate::sigv4::AwsCredentials;
use crate::stream::{StreamDecoder, StreamTranslator};
use crate::upstream_error;
use std::rc::Rc;

/// Client headers that steer the gateway itself; never accepted from outside.
pub const INTERNAL_HEADERS: &[&str] = &[
    CLUSTER_HEADER,
    DOOR_HEADER,
    files::OWNER_HEADER,
    SIDECAR_TOKEN_HEADER,
];

/// Largest upstream response body buffered (to translate it, or to read its usage).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Where the request is in its life; each phase carries what it needs.
#[derive(Debug)]
enum Phase {
    /// Waiting for the request headers.
    Start,
    /// Buffering the request body of a door.
    WaitBody,
    /// Waiting for the sidecar to extract the request's `file_ids`.
    WaitFiles,
    /// Waiting for the sidecar to hand over AWS credentials for this plan.
    WaitCredentials(Box<Planned>),
    /// Making a fan-out's calls (Bedrock embeddings); the filter answers when all are in.
    Fanout(Box<FanoutState>),
    /// Sent upstream; the answer goes through the response plan.
    Forwarded(Box<Forwarded>),
    /// Answered locally (or passed through untouched); nothing more to do.
    Done,
}

/// The response side of a forwarded request.
#[derive(Debug)]
struct Forwarded {
    plan: ResponsePlan,
    mode: Mode,
}

/// How the response body is handled.
#[derive(Debug)]
enum Mode {
    /// Response headers not seen yet.
    Undecided,
    /// Relay the upstream answer unchanged, reading its usage on the way.
    Inspect,
    /// Translate a stream chunk by chunk.
    Stream(Box<StreamTranslator>),
    /// Relay a stream unchanged, reading its usage on the way.
    RelayStream(Box<dyn StreamDecoder>),
    /// Buffer the whole body, then translate it.
    Buffer {
        status: u16,
        error_type: Option<String>,
        /// `response.code_details` when Envoy, not the upstream, produced the reply.
        envoy_details: Option<String>,
    },
}

/// A fan-out in progress.
#[derive(Debug)]
struct FanoutState {
    plan: Box<Fanout>,
    creds: AwsCredentials,
    /// Next call to start.
    next: usize,
    /// Calls in flight: token and call index.
    in_flight: Vec<(u32, usize)>,
    /// Vectors per call, in call order.
    answers: Vec<Option<Vec<Vec<f32>>>>,
    /// Input tokens reported so far.
    tokens: u64,
}

/// What the access log and metrics record about the request.
#[derive(Debug, Default)]
struct Record {
    /// The endpoint, as a metric label (a door's name, or a local endpoint's).
    endpoint: &'static str,
    provider: &'static str,
    model_id: String,
    status: u16,
    usage: Option<Usage>,
    streamed: bool,
    started_ms: u64,
    forwarded_ms: Option<u64>,
    first_byte_ms: Option<u64>,
}

/// The state machine of one request.
#[derive(Debug)]
pub struct HttpFlow {
    /// Envoy's context id (in logs next to the request id).
    context_id: u32,
    gateway: Option<Rc<Gateway>>,
    env_credentials: Option<Rc<AwsCredentials>>,
    phase: Phase,
    door: Door,
    /// Format errors are written in.
    target: Format,
    query: Option<String>,
    target_header: Option<String>,
    session_header: Option<String>,
    /// `anthropic-beta` header values, joined.
    anthropic_beta: Option<String>,
    /// Random id used in response ids.
    request_id: String,
    /// Id in log lines: Envoy's `x-request-id` when present.
    log_id: String,
    /// The model id from the path (Bedrock runtime door).
    path_model: Option<String>,
    client: Option<ClientKey>,
    /// Size of the buffered request body (what a body replacement must cover).
    request_body_size: usize,
    /// Body bytes buffered so far.
    body_seen: usize,
    /// The client's request headers, read once (one host call instead of one per header).
    headers: Vec<(String, Vec<u8>)>,
    record: Record,
}

impl HttpFlow {
    /// A flow for one request.
    pub fn new(
        context_id: u32,
        gateway: Option<Rc<Gateway>>,
        env_credentials: Option<Rc<AwsCredentials>>,
    ) -> HttpFlow {
        HttpFlow {
            context_id,
            gateway,
            env_credentials,
            phase: Phase::Start,
            door: Door::Chat,
            target: Format::OpenaiChat,
            query: None,
            target_header: None,
            session_header: None,
            anthropic_beta: None,
            request_id: String::new(),
            log_id: String::new(),
            path_model: None,
            client: None,
            request_body_size: 0,
            body_seen: 0,
            headers: Vec::new(),
            record: Record {
                provider: "local",
                ..Record::default()
            },
        }
    }

    /// Whether the client's request already has exactly one `name` header with `value`
    /// (never for the gateway's own headers, which the filter changes after reading them).
    fn holds(&self, name: &str, value: &str) -> bool {
        if name.starts_with("x-unigate-") {
            return false;
        }
        let mut found = self.headers.iter().filter(|(k, _)| k == name);
        matches!((found.next(), found.next()), (Some((_, v)), None) if v.as_slice() == value.as_bytes())
    }

    fn request_header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// Sends a complete local reply and ends our work on this request.
    fn reply<H: Host>(&mut self, host: &mut H, resp: &ClientResponse) -> Action {
        self.phase = Phase::Done;
        self.record.status = resp.status;
        let headers: Vec<(&str, &str)> =
            resp.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if let Err(e) = host.send_response(resp.status, &headers, &resp.body) {
            let id = &self.log_id;
            log_with(host, Level::Error, || {
                format!("unigate {id}: local reply failed: {e}")
            });
        }
        Action::Pause
    }

    fn reply_error<H: Host>(&mut self, host: &mut H, err: &GatewayError) -> Action {
        let id = &self.log_id;
        log_with(host, Level::Debug, || {
            format!("unigate {id}: answering {err}")
        });
        let resp = response::error_response(err, self.target);
        self.reply(host, &resp)
    }

    /// `on_http_request_headers`.
    pub fn on_request_headers<H: Host>(&mut self, host: &mut H, end_of_stream: bool) -> Action {
        let Some(gw) = self.gateway.clone() else {
            return self.reply_error(
                host,
                &GatewayError::internal("The unigate filter has no configuration."),
            );
        };
        self.record.started_ms = host.now_ms();
        self.request_id = host.random_hex();
        self.headers = host.headers(Headers::Request).unwrap_or_default();
        self.log_id = self
            .request_header("x-request-id")
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .unwrap_or_else(|| self.request_id.clone());
        for h in INTERNAL_HEADERS {
            if self.headers.iter().any(|(k, _)| k == h) {
                let _ = host.remove_header(Headers::Request, h);
            }
        }
        let method = self.request_header(":method").unwrap_or_default();
        let full_path = self.request_header(":path").unwrap_or_default();
        let (path, query) = endpoints::split_path(&full_path);
        // The access log's `path`: the client's, before the filter rewrites it for an upstream.
        let _ = host.set_property(&["unigate.path"], path.as_bytes());
        self.query = query.map(str::to_string);
        self.target_header = self.request_header("x-target-format");
        self.session_header = self.request_header("x-session-id");
        let betas: Vec<String> = self
            .headers
            .iter()
            .filter(|(k, _)| k == "anthropic-beta")
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect();
        self.anthropic_beta = (!betas.is_empty()).then(|| betas.join(","));
        let endpoint = endpoints::classify(&method, path);
        self.record.endpoint = endpoint.name();
        self.door = match &endpoint {
            Endpoint::Door(door) => *door,
            Endpoint::Bedrock { op, model } => {
                self.path_model = Some(model.clone());
                Door::Bedrock(*op)
            }
            _ => endpoints::door_of_path(path),
        };
        // Errors are written in the door's format (or the requested one where the door lets
        // clients choose and it parses).
        self.target = if self.door.target_selectable() {
            detect::target_format(
                self.query.as_deref(),
                self.target_header.as_deref(),
                self.door.default_target(),
            )
            .unwrap_or(self.door.default_target())
        } else {
            self.door.default_target()
        };
        let marker = match self.door {
            Door::Messages | Door::CountTokens => Some("messages"),
            Door::Bedrock(_) => Some("bedrock"),
            _ => None,
        };
        if let (Some(m), Endpoint::Door(_) | Endpoint::Bedrock { .. }) = (marker, &endpoint) {
            let _ = host.set_header(Headers::Request, DOOR_HEADER, m);
        }
        let id = &self.log_id;
        log_with(host, Level::Debug, || {
            format!("unigate {id}: {method} {path} -> {}", endpoint.name())
        });

        if endpoint.needs_auth() {
            let auth = self.request_header("authorization");
            let api_key = self.request_header("x-api-key");
            match gw.authorize(auth.as_deref(), api_key.as_deref()) {
                Ok(k) => self.client = k.cloned(),
                Err(e) => {
                    host.count("unigate.auth_failures", 1);
                    return self.reply_error(host, &e);
                }
            }
        }
        match endpoint {
            Endpoint::Health => self.reply(host, &endpoints::health(&gw, false)),
            Endpoint::ChatHealth => self.reply(host, &endpoints::health(&gw, true)),
            Endpoint::Models => self.reply(host, &endpoints::models(&gw, self.client.as_ref())),
            Endpoint::Providers => self.reply(host, &endpoints::providers(&gw)),
            Endpoint::Model(id) => match endpoints::model(&gw, &id, self.client.as_ref()) {
                Ok(r) => self.reply(host, &r),
                Err(e) => self.reply_error(host, &e),
            },
            Endpoint::InferenceProfiles => self.reply(host, &endpoints::inference_profiles()),
            Endpoint::Door(_) | Endpoint::Bedrock { .. } => {
                // Bodies are parsed and rewritten here: a compressed one cannot be, and its
                // encoding must not reach an upstream next to a body that no longer has it.
                if let Some(enc) = self
                    .request_header("content-encoding")
                    .filter(|e| !e.trim().eq_ignore_ascii_case("identity"))
                {
                    return self.reply_error(
                        host,
                        &GatewayError::new(
                            415,
                            ErrorType::InvalidRequest,
                            format!("Compressed request bodies (Content-Encoding: {enc}) are not supported; send the body uncompressed."),
                        )
                        .with_code("unsupported_content_encoding"),
                    );
                }
                let declared = self
                    .request_header("content-length")
                    .and_then(|v| v.trim().parse::<u64>().ok());
                if declared.is_some_and(|n| n > gw.config.max_request_bytes) {
                    return self
                        .reply_error(host, &GatewayError::too_large(gw.config.max_request_bytes));
                }
                if end_of_stream {
                    return self.reply_error(
                        host,
                        &GatewayError::bad_request(match self.door {
                            Door::Chat => {
                                "The request body is empty; expected a JSON chat completion request."
                            }
                            _ => "The request body is empty; expected a JSON body.",
                        }),
                    );
                }
                self.phase = Phase::WaitBody;
                // Hold the headers: they are rewritten once the whole body is known.
                Action::Pause
            }
            Endpoint::Files => self.route_files(host, &gw),
            Endpoint::WrongMethod => {
                self.reply_error(host, &GatewayError::method_not_allowed(&method, path))
            }
            Endpoint::Unknown => self.reply_error(
                host,
                &GatewayError::not_found(format!("Unknown endpoint {method} {path}.")),
            ),
        }
    }

    /// Sends `/v1/files…` to the sidecar, with the owner and the shared secret it trusts.
    fn route_files<H: Host>(&mut self, host: &mut H, gw: &Gateway) -> Action {
        let map = Headers::Request;
        let owner = self.owner();
        let mut ok = host.set_header(map, files::OWNER_HEADER, &owner).is_ok();
        match &gw.sidecar_token {
            Some(t) => ok &= host.set_header(map, SIDECAR_TOKEN_HEADER, t).is_ok(),
            None => ok &= host.remove_header(map, SIDECAR_TOKEN_HEADER).is_ok(),
        }
        ok &= host.remove_header(map, "authorization").is_ok();
        ok &= host.remove_header(map, "x-api-key").is_ok();
        ok &= host
            .set_header(map, CLUSTER_HEADER, &gw.config.sidecar_cluster)
            .is_ok();
        if !ok {
            return self.reply_error(
                host,
                &GatewayError::internal("Could not route the files request."),
            );
        }
        if let Err(e) = host.clear_route_cache() {
            let id = &self.log_id;
            log_with(host, Level::Warn, || {
                format!("unigate {id}: clear_route_cache failed: {e}")
            });
        }
        // Uploads stream through to the sidecar: nothing is buffered here.
        self.phase = Phase::Done;
        Action::Continue
    }

    /// `on_http_request_trailers`: a body that ends with trailers (HTTP/2, gRPC-style clients)
    /// never sees `end_of_stream` in the body callback, so it ends here.
    pub fn on_request_trailers<H: Host>(&mut self, host: &mut H) -> Action {
        match self.phase {
            Phase::WaitBody => {
                let size = self.body_seen;
                self.on_request_body(host, size, true)
            }
            Phase::WaitCredentials(_) | Phase::WaitFiles | Phase::Fanout(_) => Action::Pause,
            _ => Action::Continue,
        }
    }

    /// `on_http_request_body`.
    pub fn on_request_body<H: Host>(
        &mut self,
        host: &mut H,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        let gw = match (&self.phase, self.gateway.clone()) {
            (Phase::WaitBody, Some(gw)) => gw,
            (Phase::WaitCredentials(_) | Phase::WaitFiles | Phase::Fanout(_), _) => {
                return Action::Pause
            }
            _ => return Action::Continue,
        };
        if body_size as u64 > gw.config.max_request_bytes {
            return self.reply_error(host, &GatewayError::too_large(gw.config.max_request_bytes));
        }
        self.body_seen = body_size;
        if !end_of_stream {
            return Action::Pause;
        }
        let body = match host.body(Body::Request, body_size) {
            Ok(b) => b,
            Err(e) => return self.reply_error(host, &GatewayError::internal(format!("{e}"))),
        };
        self.request_body_size = body_size;
        match files::requested(&body) {
            Err(e) => self.reply_error(host, &e),
            Ok(ids) if !ids.is_empty() => self.fetch_files(host, &gw, &ids),
            Ok(_) => self.plan_and_forward(host, &gw, body, None),
        }
    }

    /// Asks the sidecar for the extracted text of `ids` (one call for all of them).
    fn fetch_files<H: Host>(&mut self, host: &mut H, gw: &Gateway, ids: &[String]) -> Action {
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
        match host.dispatch(
            &gw.config.sidecar_cluster,
            &refs,
            Some(&body),
            gw.config.file_context_timeout_ms.max(1),
        ) {
            Ok(_) => {
                self.phase = Phase::WaitFiles;
                Action::Pause
            }
            Err(status) => {
                host.count("unigate.errors.sidecar", 1);
                self.reply_error(
                    host,
                    &GatewayError::new(
                        503,
                        ErrorType::Api,
                        format!(
                            "File context is not available: the unigate sidecar cluster `{}` cannot be called ({status}).",
                            gw.config.sidecar_cluster
                        ),
                    )
                    .with_code("sidecar_unavailable"),
                )
            }
        }
    }

    /// The owner id of this request's files (a hash of the key, never the key).
    fn owner(&self) -> String {
        self.client
            .as_ref()
            .map_or_else(|| "anonymous".to_string(), ClientKey::id)
    }

    /// What planning needs to know of this request besides its body.
    fn plan_input<'a>(
        &'a self,
        body: &'a [u8],
        accept: Option<&'a str>,
        files: Option<&'a [FileContext]>,
        now: u64,
    ) -> PlanInput<'a> {
        PlanInput::new(self.door, body)
            .query(self.query.as_deref())
            .target_header(self.target_header.as_deref())
            .request_id(&self.request_id)
            .session_header(self.session_header.as_deref())
            .anthropic_beta(self.anthropic_beta.as_deref())
            .path_model(self.path_model.as_deref())
            .accept(accept)
            .client(self.client.as_ref())
            .files(files)
            .now(now)
    }

    /// Plans the request and sends it on (or starts the credentials callout).
    fn plan_and_forward<H: Host>(
        &mut self,
        host: &mut H,
        gw: &Gateway,
        body: Vec<u8>,
        file_context: Option<&[FileContext]>,
    ) -> Action {
        let now = host.now_unix();
        let accept = self.request_header("accept");
        let input = self.plan_input(&body, accept.as_deref(), file_context, now);
        let planned = match self.door {
            Door::Embeddings | Door::Bedrock(_) => plan::plan_request(gw, &input),
            _ => match plan::parse(&input) {
                Err(e) => Err(e),
                Ok((obj, splices)) => {
                    // The upstream body is written into the memory of the filter's copy of the
                    // client's body, and long texts are read from Envoy's buffer: a VM never
                    // gives memory back, so the copy and the upstream body must not both grow
                    // it (issue 17).
                    let input = self.plan_input(&[], accept.as_deref(), file_context, now);
                    let size = body.len();
                    let buffer = std::cell::Cell::new(Some(body));
                    let source = HostBody::new(&mut *host);
                    let raw = json::Spliced {
                        source: json::Source::Host(&source),
                        size,
                        splices: Some(&splices),
                        buffer: Some(&buffer),
                    };
                    plan::plan_parsed(gw, &input, obj, raw).map(|p| Planned::Forward(Box::new(p)))
                }
            },
        };
        let planned = match planned {
            Ok(p) => p,
            Err(e) => {
                if e.status == 400 {
                    host.count("unigate.errors.translation", 1);
                }
                return self.reply_error(host, &e);
            }
        };
        let plan = match planned {
            Planned::Forward(p) => *p,
            Planned::Fanout(f) => return self.plan_fanout(host, gw, f, now),
        };
        self.target = plan.response.target;
        self.record.provider = plan.upstream.provider.as_str();
        self.record.model_id = plan.model_id.clone();
        host.count(&metrics::input_format(plan.response.input.target_name()), 1);
        if let Some(k) = &self.client {
            if let Err(e) = limits::admit(host, k, now) {
                host.count("unigate.rate_limited", 1);
                return self.reply_error(host, &e);
            }
        }
        let (id, key) = (
            &self.log_id,
            self.client.as_ref().map_or("-", |k| k.label.as_str()),
        );
        log_with(host, Level::Debug, || {
            format!(
                "unigate {id}: key {key} model {} -> {} via {}{}{}",
                plan.response.meta.model,
                plan.model_id,
                plan.response.upstream.as_str(),
                if plan.notes.is_empty() { "" } else { "; " },
                plan.notes.join("; ")
            )
        });
        if plan.upstream.sign_region.is_none() {
            return self.forward(host, plan, None);
        }
        if let Some(c) = self.signing_credentials(host, now) {
            return self.forward(host, plan, Some(&c));
        }
        // No credentials cached yet (first request after start): ask the sidecar directly.
        self.wait_for_credentials(host, gw, Planned::Forward(Box::new(plan)))
    }

    /// Credentials for signing now, if any are at hand (environment, or shared data).
    fn signing_credentials<H: Host>(&self, host: &mut H, now: u64) -> Option<AwsCredentials> {
        if let Some(c) = &self.env_credentials {
            return Some(AwsCredentials::clone(c));
        }
        credentials::current(host, now)
    }

    /// Pauses the request until the sidecar hands over credentials for `planned`.
    fn wait_for_credentials<H: Host>(
        &mut self,
        host: &mut H,
        gw: &Gateway,
        planned: Planned,
    ) -> Action {
        if gw.config.aws_credentials == CredentialsSource::Env {
            return self.reply_error(host, &GatewayError::unconfigured(
                "AWS credentials are not available: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for Envoy (aws_credentials is `env`).",
            ));
        }
        match credentials::dispatch(host, gw) {
            Ok(_) => {
                self.phase = Phase::WaitCredentials(Box::new(planned));
                Action::Pause
            }
            Err(status) => {
                host.count("unigate.errors.sidecar", 1);
                self.reply_error(host, &GatewayError::unconfigured(format!(
                    "AWS credentials are not available: the unigate sidecar cluster `{}` cannot be called ({status}).",
                    gw.config.sidecar_cluster
                )))
            }
        }
    }

    /// Applies a plan to the held request and lets it continue upstream.
    fn forward<H: Host>(
        &mut self,
        host: &mut H,
        plan: Plan,
        creds: Option<&AwsCredentials>,
    ) -> Action {
        match self.apply(host, &plan, creds) {
            Ok(()) => {
                self.phase = Phase::Forwarded(Box::new(Forwarded {
                    plan: plan.response,
                    mode: Mode::Undecided,
                }));
                self.record.forwarded_ms = Some(host.now_ms());
                Action::Continue
            }
            Err(e) => self.reply_error(host, &e),
        }
    }

    fn apply<H: Host>(
        &self,
        host: &mut H,
        plan: &Plan,
        creds: Option<&AwsCredentials>,
    ) -> Result<(), GatewayError> {
        let up = &plan.upstream;
        let signing = match creds {
            Some(c) => up
                .signing_headers(c, host.now_unix())
                .inspect_err(|_| host.count("unigate.errors.signing", 1))?,
            None => Vec::new(),
        };
        let host_err = |e: super::HostError| GatewayError::internal(format!("{e}"));
        // Each host call is a trip out of the VM: the body, and headers that already hold
        // the value they need, are left alone.
        if up.body_changed {
            host.set_body(Body::Request, self.request_body_size, &up.body)
                .map_err(host_err)?;
        }
        let map = Headers::Request;
        let present = |name: &str| self.headers.iter().any(|(k, _)| k == name);
        for name in &up.remove_headers {
            if present(name) {
                host.remove_header(map, name).map_err(host_err)?;
            }
        }
        // Anthropic's client headers (`anthropic-version`, `anthropic-beta`,
        // `anthropic-dangerous-direct-browser-access`, …) belong to the client's API, not to
        // any upstream's.
        for (name, _) in &self.headers {
            if name.starts_with("anthropic-") && !up.remove_headers.contains(&name.as_str()) {
                host.remove_header(map, name).map_err(host_err)?;
            }
        }
        if up.sign_region.is_some() {
            // Client-supplied AWS headers must not reach AWS next to our signature.
            // Bedrock runtime callers keep Bedrock's own modelled headers (guardrails, trace,
            // latency tier): `x-amzn-bedrock-*`, which are not part of the signature.
            let native = matches!(self.door, Door::Bedrock(_));
            for (name, _) in &self.headers {
                let keep = native && name.starts_with("x-amzn-bedrock-");
                if (name.starts_with("x-amz-") || name.starts_with("x-amzn-")) && !keep {
                    host.remove_header(map, name).map_err(host_err)?;
                }
            }
        }
        let set = |host: &mut H, name: &str, value: &str| -> Result<(), GatewayError> {
            if self.holds(name, value) {
                return Ok(());
            }
            host.set_header(map, name, value).map_err(host_err)
        };
        set(host, ":path", &up.path)?;
        set(host, ":authority", &up.authority)?;
        // A length-delimited body upstream, also when the client sent it chunked.
        if up.body_changed || self.request_header("content-length").is_none() {
            // An unchanged body is the client's, which the plan does not copy.
            let len = if up.body_changed {
                up.body.len()
            } else {
                self.request_body_size
            };
            set(host, "content-length", &len.to_string())?;
        }
        for (name, value) in &up.headers {
            set(host, name, value)?;
        }
        for (name, value) in &signing {
            host.set_header(map, name, value).map_err(host_err)?;
        }
        host.set_header(map, CLUSTER_HEADER, &up.cluster)
            .map_err(host_err)?;
        // Envoy (1.33+) does not recompute the route after a wasm header change by itself.
        if let Err(e) = host.clear_route_cache() {
            let id = &self.log_id;
            log_with(host, Level::Warn, || {
                format!("unigate {id}: clear_route_cache failed: {e}")
            });
        }
        // Filter state for access logs and other filters (Envoy prefixes the keys `wasm.`).
        let _ = host.set_property(&["unigate.model"], plan.model_id.as_bytes());
        let _ = host.set_property(&["unigate.provider"], up.provider.as_str().as_bytes());
        if let Some(k) = &self.client {
            let _ = host.set_property(&["unigate.key"], k.label.as_bytes());
        }
        Ok(())
    }

    /// Records the usage of a finished answer (metrics, limits, filter state).
    fn record_usage<H: Host>(&mut self, host: &mut H, usage: Usage) {
        self.record.usage = Some(usage);
        let _ = host.set_property(
            &["unigate.prompt_tokens"],
            usage.prompt_tokens.to_string().as_bytes(),
        );
        let _ = host.set_property(
            &["unigate.completion_tokens"],
            usage.completion_tokens.to_string().as_bytes(),
        );
        let _ = host.set_property(
            &["unigate.total_tokens"],
            usage.total().to_string().as_bytes(),
        );
    }

    /// `on_http_call_response`: a callout answered (the sidecar's file context or credentials,
    /// or one call of a fan-out).
    pub fn on_callout_response<H: Host>(
        &mut self,
        host: &mut H,
        token: u32,
        num_headers: usize,
        body_size: usize,
    ) {
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::WaitFiles => self.on_files_answer(host, num_headers, body_size),
            Phase::WaitCredentials(planned) => {
                self.on_credentials_answer(host, *planned, num_headers, body_size)
            }
            Phase::Fanout(state) => {
                self.on_fanout_answer(host, state, token, num_headers, body_size)
            }
            other => self.phase = other,
        }
    }

    /// Starts a fan-out once credentials are at hand.
    fn plan_fanout<H: Host>(
        &mut self,
        host: &mut H,
        gw: &Gateway,
        f: Box<Fanout>,
        now: u64,
    ) -> Action {
        self.record.provider = "bedrock";
        self.record.model_id = f.model_id.clone();
        if let Some(k) = &self.client {
            if let Err(e) = limits::admit(host, k, now) {
                host.count("unigate.rate_limited", 1);
                return self.reply_error(host, &e);
            }
        }
        match self.signing_credentials(host, now) {
            Some(creds) => self.start_fanout(host, f, creds, now),
            None => self.wait_for_credentials(host, gw, Planned::Fanout(f)),
        }
    }

    fn start_fanout<H: Host>(
        &mut self,
        host: &mut H,
        f: Box<Fanout>,
        creds: AwsCredentials,
        _now: u64,
    ) -> Action {
        let n = f.calls.len();
        let mut state = Box::new(FanoutState {
            plan: f,
            creds,
            next: 0,
            in_flight: Vec::new(),
            answers: vec![None; n],
            tokens: 0,
        });
        self.record.forwarded_ms = Some(host.now_ms());
        // Filter state for the access log, also when a call fails.
        let _ = host.set_property(&["unigate.model"], self.record.model_id.as_bytes());
        let _ = host.set_property(&["unigate.provider"], b"bedrock");
        if let Some(k) = &self.client {
            let _ = host.set_property(&["unigate.key"], k.label.as_bytes());
        }
        while state.next < n && state.in_flight.len() < state.plan.concurrency {
            if let Err(e) = dispatch_call(host, &mut state) {
                return self.reply_error(host, &e);
            }
        }
        self.phase = Phase::Fanout(state);
        Action::Pause
    }

    fn on_fanout_answer<H: Host>(
        &mut self,
        host: &mut H,
        mut state: Box<FanoutState>,
        token: u32,
        num_headers: usize,
        body_size: usize,
    ) {
        let Some(pos) = state.in_flight.iter().position(|(t, _)| *t == token) else {
            self.phase = Phase::Fanout(state);
            return;
        };
        let (_, index) = state.in_flight.swap_remove(pos);
        let (status, body) = host.callout_answer(num_headers, body_size);
        let error_type = host.callout_header("x-amzn-errortype");
        let header_tokens = host
            .callout_header("x-amzn-bedrock-input-token-count")
            .and_then(|v| v.trim().parse::<u64>().ok());
        // Envoy answers a callout itself when Bedrock could not: a timeout (504), a refused
        // connection (503); such answers carry none of Bedrock's headers.
        let from_envoy = error_type.is_none() && host.callout_header("x-amzn-requestid").is_none();
        let batch = state.plan.batches.get(index).copied().unwrap_or(0);
        let parsed = match status {
            None => Err(GatewayError::new(
                502,
                ErrorType::Api,
                "The connection to Bedrock failed during an embeddings call.",
            )
            .with_code("upstream_reset")),
            Some(504) if from_envoy => Err(GatewayError::gateway_timeout(format!(
                "Bedrock did not answer an embeddings call within {} ms.",
                state.plan.timeout_ms
            ))),
            Some(503) if from_envoy => Err(upstream_error::from_envoy(
                503,
                &String::from_utf8_lossy(&body),
                state.plan.timeout_ms / 1000,
            )),
            Some(200) => match state.plan.format {
                Format::TitanEmbed => crate::formats::titan_embed::parse_answer(&body)
                    .map(|(v, t)| (vec![v], header_tokens.unwrap_or(t))),
                _ => crate::formats::cohere_embed::parse_answer(&body, batch)
                    .map(|v| (v, header_tokens.unwrap_or(0))),
            },
            Some(s) => Err(upstream_error::from_bedrock(
                s,
                error_type.as_deref(),
                &body,
            )),
        };
        let (vectors, tokens) = match parsed {
            Ok(p) => p,
            Err(e) => {
                // One failed call fails the request; the calls still in flight are ignored.
                host.count("unigate.errors.upstream", 1);
                self.reply_error(host, &e);
                return;
            }
        };
        state.tokens = state.tokens.saturating_add(tokens);
        if let Some(slot) = state.answers.get_mut(index) {
            *slot = Some(vectors);
        }
        while state.next < state.plan.calls.len() && state.in_flight.len() < state.plan.concurrency
        {
            if let Err(e) = dispatch_call(host, &mut state) {
                self.reply_error(host, &e);
                return;
            }
        }
        if !state.in_flight.is_empty() || state.next < state.plan.calls.len() {
            self.phase = Phase::Fanout(state);
            return;
        }
        let vectors: Vec<Vec<f32>> = state.answers.into_iter().flatten().flatten().collect();
        let body = crate::formats::openai_embeddings::encode_response(
            &vectors,
            &state.plan.model,
            state.tokens,
            state.plan.encoding,
        );
        self.record_usage(
            host,
            Usage {
                prompt_tokens: state.tokens,
                ..Usage::default()
            },
        );
        self.reply(
            host,
            &ClientResponse {
                status: 200,
                headers: vec![("content-type", "application/json".to_string())],
                body,
                usage: None,
            },
        );
    }

    fn on_files_answer<H: Host>(&mut self, host: &mut H, num_headers: usize, body_size: usize) {
        let (status, answer) = host.callout_answer(num_headers, body_size);
        let Some(gw) = self.gateway.clone() else {
            return;
        };
        let contexts = match files::parse_answer(status, &answer) {
            Ok(c) => c,
            Err(e) => {
                if e.status >= 500 {
                    host.count("unigate.errors.sidecar", 1);
                }
                self.reply_error(host, &e);
                return;
            }
        };
        let body = match host.body(Body::Request, self.request_body_size) {
            Ok(b) => b,
            Err(e) => {
                self.reply_error(host, &GatewayError::internal(format!("{e}")));
                return;
            }
        };
        self.phase = Phase::WaitBody;
        if self.plan_and_forward(host, &gw, body, Some(&contexts)) == Action::Continue {
            self.resume(host);
        }
    }

    fn on_credentials_answer<H: Host>(
        &mut self,
        host: &mut H,
        planned: Planned,
        num_headers: usize,
        body_size: usize,
    ) {
        let result = match credentials::read_answer(host, num_headers, body_size) {
            Ok(creds) => {
                let now = host.now_unix();
                credentials::store(host, &CredentialsRecord::new(creds.clone(), now));
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
            Ok(creds) => match planned {
                Planned::Forward(plan) => {
                    if self.forward(host, *plan, Some(&creds)) == Action::Continue {
                        self.resume(host);
                    }
                }
                Planned::Fanout(f) => {
                    let now = host.now_unix();
                    self.start_fanout(host, f, creds, now);
                }
            },
            Err(e) => {
                host.count("unigate.errors.sidecar", 1);
                self.reply_error(host, &e);
            }
        }
    }

    fn resume<H: Host>(&self, host: &mut H) {
        if let Err(e) = host.resume_request() {
            let id = &self.log_id;
            log_with(host, Level::Error, || {
                format!("unigate {id}: resume failed: {e}")
            });
        }
    }

    /// `on_http_response_headers`.
    pub fn on_response_headers<H: Host>(&mut self, host: &mut H, end_of_stream: bool) -> Action {
        let Phase::Forwarded(fwd) = &mut self.phase else {
            return Action::Continue;
        };
        let map = Headers::Response;
        let status = host
            .header(map, ":status")
            .ok()
            .flatten()
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(502);
        self.record.status = status;
        // Envoy's own answers (timeouts, resets, no route) are never 2xx: only other statuses
        // need the trip to the host that tells them apart from the upstream's.
        let details = if (200..300).contains(&status) {
            None
        } else {
            host.property(&["response", "code_details"])
                .ok()
                .flatten()
                .map(|d| String::from_utf8_lossy(&d).into_owned())
        };
        let from_upstream = details.as_deref().is_none_or(|d| d == "via_upstream");
        let ok = from_upstream && (200..300).contains(&status);
        for (name, value) in &fwd.plan.extra_headers {
            let _ = host.set_header(map, name, value);
        }
        if fwd.plan.operation == Operation::Native && from_upstream {
            return self.relay_response_headers(host, status, ok, end_of_stream);
        }
        if ok && fwd.plan.stream && !end_of_stream {
            // Headers go out now; every chunk is translated and passed on as it arrives.
            let translator = match StreamTranslator::new(&fwd.plan) {
                Ok(t) => t,
                Err(e) => return self.reply_error(host, &e),
            };
            let _ = host.set_header(map, "content-type", "text/event-stream");
            let _ = host.set_header(map, "cache-control", "no-cache");
            for name in [
                "content-length",
                "content-encoding",
                "x-amzn-bedrock-content-type",
            ] {
                let _ = host.remove_header(map, name);
            }
            host.count("unigate.streams_total", 1);
            fwd.mode = Mode::Stream(Box::new(translator));
            self.record.streamed = true;
            return Action::Continue;
        }
        if ok && fwd.plan.relay && !fwd.plan.stream {
            fwd.mode = Mode::Inspect;
            return Action::Continue;
        }
        if !ok {
            host.count("unigate.errors.upstream", 1);
        }
        fwd.mode = Mode::Buffer {
            status,
            error_type: if ok {
                None
            } else {
                host.header(map, "x-amzn-errortype").ok().flatten()
            },
            envoy_details: if from_upstream { None } else { details },
        };
        if end_of_stream {
            // No body will follow: answer with a complete local reply instead.
            let resp = finish_buffered(fwd, &[]);
            return self.reply(host, &resp);
        }
        Action::Pause
    }

    /// Response headers of a Bedrock runtime call: answers are relayed as Bedrock sent them,
    /// except failures of the gateway's own credentials (the client's key is not at fault).
    fn relay_response_headers<H: Host>(
        &mut self,
        host: &mut H,
        status: u16,
        ok: bool,
        end_of_stream: bool,
    ) -> Action {
        let Phase::Forwarded(fwd) = &mut self.phase else {
            return Action::Continue;
        };
        let map = Headers::Response;
        if !ok {
            let error_type = host.header(map, "x-amzn-errortype").ok().flatten();
            let name =
                upstream_error::bedrock_error_name(error_type.as_deref(), b"").unwrap_or_default();
            host.count("unigate.errors.upstream", 1);
            if !upstream_error::is_credential_error(&name) {
                return Action::Continue;
            }
            fwd.mode = Mode::Buffer {
                status,
                error_type,
                envoy_details: None,
            };
            if end_of_stream {
                let resp = finish_buffered(fwd, &[]);
                return self.reply(host, &resp);
            }
            return Action::Pause;
        }
        if fwd.plan.stream {
            fwd.mode =
                Mode::RelayStream(crate::formats::upstream(fwd.plan.upstream).stream_decoder());
            self.record.streamed = true;
            host.count("unigate.streams_total", 1);
            return Action::Continue;
        }
        // InvokeModel and CountTokens carry usage in headers; Converse in the body.
        let headers = host.headers(map).unwrap_or_default();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        if let Some(u) = crate::formats::bedrock_runtime::usage_from_headers(&header) {
            self.record_usage(host, u);
            return Action::Continue;
        }
        if let Phase::Forwarded(fwd) = &mut self.phase {
            fwd.mode = Mode::Inspect;
        }
        Action::Continue
    }

    /// `on_http_response_body`.
    pub fn on_response_body<H: Host>(
        &mut self,
        host: &mut H,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        let Phase::Forwarded(fwd) = &mut self.phase else {
            return Action::Continue;
        };
        if self.record.first_byte_ms.is_none() && body_size > 0 {
            self.record.first_byte_ms = Some(host.now_ms());
        }
        match &mut fwd.mode {
            Mode::Stream(translator) => {
                let chunk = match host.body(Body::Response, body_size) {
                    Ok(c) => c,
                    Err(e) => {
                        let id = &self.log_id;
                        log_with(host, Level::Error, || {
                            format!("unigate {id}: cannot read a stream chunk: {e}")
                        });
                        Vec::new()
                    }
                };
                let out = translator.push(&chunk, end_of_stream);
                let finished = translator.finished();
                let usage = translator.usage();
                if let Err(e) = host.set_body(Body::Response, body_size, &out) {
                    let id = &self.log_id;
                    log_with(host, Level::Error, || {
                        format!("unigate {id}: cannot write a stream chunk: {e}")
                    });
                }
                if finished && self.record.usage.is_none() {
                    self.record_usage(host, usage);
                }
                Action::Continue
            }
            Mode::RelayStream(decoder) => {
                let chunk = host.body(Body::Response, body_size).unwrap_or_default();
                let _ = decoder.push(&chunk, end_of_stream);
                if end_of_stream {
                    let usage = decoder.usage();
                    if usage.total() > 0 {
                        self.record_usage(host, usage);
                    }
                }
                Action::Continue
            }
            Mode::Inspect => {
                if body_size > MAX_RESPONSE_BYTES {
                    return self.reply_error(host, &response_too_large());
                }
                if !end_of_stream {
                    return Action::Pause;
                }
                let upstream = fwd.plan.upstream;
                let body = host.body(Body::Response, body_size).unwrap_or_default();
                if let Some(u) = response::usage_of(upstream, &body) {
                    self.record_usage(host, u);
                }
                Action::Continue
            }
            Mode::Buffer { .. } => {
                if body_size > MAX_RESPONSE_BYTES {
                    return self.reply_error(host, &response_too_large());
                }
                if !end_of_stream {
                    return Action::Pause;
                }
                let body = host.body(Body::Response, body_size).unwrap_or_default();
                let resp = finish_buffered(fwd, &body);
                let translated = fwd.plan.operation != Operation::Native;
                if translated
                    && (resp.status >= 500 || resp.status == 400 && self.record.status == 200)
                {
                    host.count("unigate.errors.translation", 1);
                }
                self.record.status = resp.status;
                if let Some(u) = resp.usage {
                    self.record_usage(host, u);
                }
                let map = Headers::Response;
                // The upstream's error type and encoding go; the answer's own headers (an AWS
                // client's error type among them) are set after.
                for name in ["content-encoding", "x-amzn-errortype", "transfer-encoding"] {
                    let _ = host.remove_header(map, name);
                }
                let mut ok = host
                    .set_header(map, ":status", &resp.status.to_string())
                    .is_ok();
                for (name, value) in &resp.headers {
                    ok &= host.set_header(map, name, value).is_ok();
                }
                ok &= host
                    .set_header(map, "content-length", &resp.body.len().to_string())
                    .is_ok();
                ok &= host.set_body(Body::Response, body_size, &resp.body).is_ok();
                if !ok {
                    let id = &self.log_id;
                    log_with(host, Level::Error, || {
                        format!("unigate {id}: could not rewrite the response")
                    });
                }
                self.phase = Phase::Done;
                Action::Continue
            }
            Mode::Undecided => Action::Continue,
        }
    }

    /// `on_log`: metrics, token charges and the per-request debug line.
    pub fn on_log<H: Host>(&mut self, host: &mut H) {
        let r = &self.record;
        let now = host.now_ms();
        let status = if r.status == 0 { 499 } else { r.status };
        let label_model = match &self.gateway {
            Some(gw) if !r.model_id.is_empty() => gw.metric_model(&r.model_id),
            _ => "none",
        };
        let endpoint = if r.endpoint.is_empty() {
            "unknown"
        } else {
            r.endpoint
        };
        host.count(
            &metrics::requests(endpoint, r.provider, status, label_model),
            1,
        );
        if r.provider == "local" {
            return;
        }
        let key = self.client.as_ref().map_or("none", |k| k.label.as_str());
        if let Some(u) = r.usage {
            for (kind, n) in [
                ("input", u.prompt_tokens),
                ("output", u.completion_tokens),
                ("cached", u.cache_read_tokens),
            ] {
                if n > 0 {
                    host.count(&metrics::tokens(r.provider, key, kind, label_model), n);
                }
            }
            if let Some(k) = &self.client {
                let now_unix = host.now_unix();
                limits::charge(host, k, now_unix, u.total());
            }
        }
        if let Some(fwd) = r.forwarded_ms {
            if let (true, Some(first)) = (r.streamed, r.first_byte_ms) {
                host.record(
                    &metrics::duration("ttft_ms", endpoint, r.provider, label_model),
                    first.saturating_sub(fwd),
                );
            }
            host.record(
                &metrics::duration("request_duration_ms", endpoint, r.provider, label_model),
                now.saturating_sub(fwd),
            );
        }
        // One line per request at debug: the JSON access log is the per-request record, and
        // an info line per request costs Envoy a log write each time.
        let (id, ctx) = (&self.log_id, self.context_id);
        log_with(host, Level::Debug, || {
            format!(
                "unigate {id} (#{ctx}): key={key} provider={} model={} status={status} prompt_tokens={} completion_tokens={} ms={}",
                r.provider,
                r.model_id,
                r.usage.map_or(0, |u| u.prompt_tokens),
                r.usage.map_or(0, |u| u.completion_tokens),
                now.saturating_sub(r.started_ms)
            )
        });
    }
}

/// Signs and starts the next call of a fan-out.
fn dispatch_call<H: Host>(host: &mut H, state: &mut FanoutState) -> Result<(), GatewayError> {
    let index = state.next;
    let Some(call) = state.plan.calls.get(index) else {
        return Ok(());
    };
    let signing = call.signing_headers(&state.creds, host.now_unix())?;
    let mut headers: Vec<(&str, &str)> = vec![
        (":method", "POST"),
        (":path", &call.path),
        (":authority", &call.authority),
    ];
    headers.extend(call.headers.iter().map(|(k, v)| (*k, v.as_str())));
    headers.extend(signing.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let token = host
        .dispatch(
            &call.cluster,
            &headers,
            Some(&call.body),
            state.plan.timeout_ms,
        )
        .map_err(|e| {
            GatewayError::new(
                503,
                ErrorType::Api,
                format!("Could not call Bedrock for embeddings: {e}"),
            )
            .with_code("upstream_unreachable")
        })?;
    state.in_flight.push((token, index));
    state.next += 1;
    Ok(())
}

/// The 502 for an upstream answer over [`MAX_RESPONSE_BYTES`].
/// The client's request body as Envoy holds it, read in pieces.
/// Texts are asked for in body order, many of them short: one read serves all that fall in
/// its window (the window's start and bytes).
struct HostBody<'h, H: Host> {
    host: std::cell::RefCell<&'h mut H>,
    window: std::cell::RefCell<(usize, Vec<u8>)>,
}

impl<'h, H: Host> HostBody<'h, H> {
    fn new(host: &'h mut H) -> Self {
        HostBody {
            host: std::cell::RefCell::new(host),
            window: std::cell::RefCell::new((0, Vec::new())),
        }
    }
}

/// Bytes read from the host at a time.
const HOST_READ: usize = 64 * 1024;

impl<H: Host> json::BodySource for HostBody<'_, H> {
    fn copy_range(
        &self,
        start: usize,
        end: usize,
        out: &mut dyn std::io::Write,
    ) -> std::io::Result<()> {
        let mut window = self.window.borrow_mut();
        let mut at = start;
        while at < end {
            let (from, bytes) = &*window;
            let held = at
                .checked_sub(*from)
                .and_then(|off| bytes.get(off..))
                .filter(|rest| !rest.is_empty());
            if let Some(rest) = held {
                let piece = rest.get(..rest.len().min(end - at)).unwrap_or(rest);
                out.write_all(piece)?;
                at += piece.len();
                continue;
            }
            let piece = self
                .host
                .borrow_mut()
                .body_range(Body::Request, at, HOST_READ)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            if piece.is_empty() {
                return Err(std::io::Error::other("the request body ended early"));
            }
            *window = (at, piece);
        }
        Ok(())
    }
}

fn response_too_large() -> GatewayError {
    GatewayError::bad_gateway("The upstream response is too large to translate.")
}

/// The client response for a buffered upstream answer (or Envoy's own reply).
fn finish_buffered(fwd: &Forwarded, body: &[u8]) -> ClientResponse {
    match &fwd.mode {
        Mode::Buffer {
            envoy_details: Some(details),
            status,
            ..
        } => response::error_response(
            &upstream_error::from_envoy(*status, details, fwd.plan.timeout_secs),
            fwd.plan.target,
        ),
        Mode::Buffer {
            status, error_type, ..
        } => response::translate_buffered(&fwd.plan, *status, error_type.as_deref(), body),
        _ => response::error_response(
            &GatewayError::internal("response mode mismatch"),
            fwd.plan.target,
        ),
    }
}
