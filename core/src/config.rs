//! The filter's JSON plugin configuration and its compiled, validated form.
//!
//! Every field has a default, so `{}` is a valid configuration. Secrets are read from the
//! environment Envoy passes to the VM (`vm_config.environment_variables.host_env_keys`) so
//! they never appear in a config file; literal values are accepted for users who inject
//! config through a secret store.

use crate::catalog::{default_models, Catalog, ModelEntry};
use crate::error::GatewayError;
use crate::route::{default_aliases, default_rules, RouteRule, Router};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where the filter gets AWS credentials for signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CredentialsSource {
    /// From the unigate sidecar, refreshed before expiry (default).
    #[default]
    Sidecar,
    /// From `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN` in the VM
    /// environment (static; no refresh).
    Env,
}

/// The plugin configuration as written in `envoy.yaml` (JSON in a `StringValue`). Its
/// `Debug` output never shows keys.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginConfig {
    /// Client API keys: strings or `{"key","name","models","rpm","tpm"}` entries (prefer the
    /// environment variables below for the secrets).
    pub api_keys: Vec<crate::auth::KeySpec>,
    /// Environment variable holding comma-separated client API keys.
    pub api_keys_env: String,
    /// Environment variable holding a JSON array of key entries (`unigate serve` fills it
    /// from `API_KEYS_FILE`).
    pub api_keys_json_env: String,
    /// Accept requests without a key (only for meshes that authenticate before Envoy).
    pub allow_unauthenticated: bool,
    /// Largest accepted request body; larger ones get 413.
    pub max_request_bytes: u64,
    /// Longest an upstream may stay silent (enforced by the Envoy route; reported in errors).
    pub upstream_timeout_seconds: u64,
    /// `max_tokens` sent to Claude when the client sets none.
    pub default_max_tokens: u32,
    /// OpenAI base URL (`scheme://host[:port]/prefix`).
    pub openai_base_url: String,
    /// Envoy cluster that reaches `openai_base_url`.
    pub openai_cluster: String,
    /// Whether `openai_base_url` serves `/responses`: `/v1/responses` requests for OpenAI
    /// models are relayed there as sent; when false they are translated to
    /// `/chat/completions` (for OpenAI-compatible servers without a Responses API).
    pub openai_responses: bool,
    /// Literal OpenAI API key (prefer `openai_api_key_env`).
    pub openai_api_key: Option<String>,
    /// Environment variable holding the OpenAI API key.
    pub openai_api_key_env: String,
    /// AWS region for Bedrock; unset means Bedrock is not configured.
    pub aws_region: Option<String>,
    /// Bedrock runtime endpoint; default `https://bedrock-runtime.{region}.amazonaws.com`.
    pub bedrock_endpoint: Option<String>,
    /// Envoy cluster that reaches the Bedrock endpoint.
    pub bedrock_cluster: String,
    /// Bedrock Agents runtime endpoint; default
    /// `https://bedrock-agent-runtime.{region}.amazonaws.com`.
    pub bedrock_agent_endpoint: Option<String>,
    /// Envoy cluster that reaches the Bedrock Agents endpoint.
    pub bedrock_agent_cluster: String,
    /// Where AWS credentials come from.
    pub aws_credentials: CredentialsSource,
    /// Envoy cluster of the unigate sidecar.
    pub sidecar_cluster: String,
    /// Environment variable holding the shared secret for the sidecar's internal API.
    pub sidecar_token_env: String,
    /// Timeout of calls to the sidecar.
    pub sidecar_timeout_ms: u64,
    /// Timeout of the sidecar call that extracts `file_ids` (extraction can take longer).
    pub file_context_timeout_ms: u64,
    /// How often the filter checks whether credentials need a refresh.
    pub credentials_refresh_seconds: u64,
    /// Routing table; replaces the default table when given.
    pub routes: Option<Vec<RouteRule>>,
    /// Model aliases, merged over the defaults (an empty target removes a default alias).
    pub aliases: BTreeMap<String, String>,
    /// Extra catalog entries for `/v1/models`.
    pub models: Vec<ModelEntry>,
    /// Serve only `models` (and aliases) instead of extending the default catalog.
    pub replace_default_models: bool,
    /// Most texts in one `/v1/embeddings` request for a Bedrock model (Titan embeds one text per
    /// call, Cohere 96).
    pub max_embedding_inputs: usize,
    /// Bedrock embeddings calls one request keeps in flight at most.
    pub embedding_concurrency: usize,
    /// Timeout of each Bedrock embeddings call.
    pub embedding_timeout_ms: u64,
    /// Anthropic beta flags passed to Claude on Bedrock, per model (first match wins);
    /// replaces the built-in table when given.
    pub anthropic_betas: Option<Vec<crate::formats::anthropic::betas::BetaRule>>,
}

impl std::fmt::Debug for PluginConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The configuration as JSON with the literal secrets replaced.
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            if o.get("openai_api_key").is_some_and(|k| !k.is_null()) {
                o.insert("openai_api_key".into(), crate::auth::REDACTED.into());
            }
            if let Some(keys) = o.get_mut("api_keys").and_then(|k| k.as_array_mut()) {
                for k in keys.iter_mut() {
                    match k {
                        serde_json::Value::Object(e) => {
                            e.insert("key".into(), crate::auth::REDACTED.into());
                        }
                        other => *other = crate::auth::REDACTED.into(),
                    }
                }
            }
        }
        write!(f, "PluginConfig {v}")
    }
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            api_keys: Vec::new(),
            api_keys_env: "API_KEY".into(),
            api_keys_json_env: "UNIGATE_API_KEYS".into(),
            allow_unauthenticated: false,
            max_request_bytes: 32 * 1024 * 1024,
            upstream_timeout_seconds: 600,
            default_max_tokens: 4096,
            openai_base_url: "https://api.openai.com/v1".into(),
            openai_cluster: "openai".into(),
            openai_responses: true,
            openai_api_key: None,
            openai_api_key_env: "OPENAI_API_KEY".into(),
            aws_region: None,
            bedrock_endpoint: None,
            bedrock_cluster: "bedrock".into(),
            bedrock_agent_endpoint: None,
            bedrock_agent_cluster: "bedrock_agent".into(),
            aws_credentials: CredentialsSource::Sidecar,
            sidecar_cluster: "unigate_sidecar".into(),
            sidecar_token_env: "UNIGATE_SIDECAR_TOKEN".into(),
            sidecar_timeout_ms: 2000,
            file_context_timeout_ms: 10000,
            credentials_refresh_seconds: 30,
            routes: None,
            aliases: BTreeMap::new(),
            models: Vec::new(),
            replace_default_models: false,
            max_embedding_inputs: 256,
            embedding_concurrency: 8,
            embedding_timeout_ms: 30_000,
            anthropic_betas: None,
        }
    }
}

/// A parsed `scheme://authority/prefix` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]`, as sent in `:authority` (default ports dropped).
    pub authority: String,
    /// Host without port.
    pub host: String,
    /// Port (explicit or the scheme default).
    pub port: u16,
    /// Path prefix without a trailing slash (`/v1`, or empty).
    pub path: String,
}

impl BaseUrl {
    /// Parses `http(s)://host[:port][/prefix]`.
    pub fn parse(url: &str) -> Result<BaseUrl, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("`{url}` is not an absolute URL"))?;
        let default_port = match scheme {
            "http" => 80,
            "https" => 443,
            other => return Err(format!("unsupported scheme `{other}` in `{url}`")),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (
                rest.get(..i).unwrap_or_default(),
                rest.get(i..).unwrap_or_default(),
            ),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("`{url}` has no usable host"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                let port: u16 = p.parse().map_err(|_| format!("bad port in `{url}`"))?;
                (h.to_string(), port)
            }
            _ => (authority.to_string(), default_port),
        };
        let authority = if port == default_port {
            host.clone()
        } else {
            format!("{host}:{port}")
        };
        Ok(BaseUrl {
            scheme: scheme.to_string(),
            authority,
            host,
            port,
            path: path.trim_end_matches('/').to_string(),
        })
    }

    /// Whether the URL uses TLS.
    pub fn tls(&self) -> bool {
        self.scheme == "https"
    }
}

/// The OpenAI upstream, when configured.
#[derive(Clone, PartialEq, Eq)]
pub struct OpenaiUpstream {
    /// Envoy cluster.
    pub cluster: String,
    /// Base URL.
    pub url: BaseUrl,
    /// API key sent upstream (`Authorization: Bearer`).
    pub api_key: String,
}

impl std::fmt::Debug for OpenaiUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenaiUpstream")
            .field("cluster", &self.cluster)
            .field("url", &self.url)
            .field("api_key", &crate::auth::REDACTED)
            .finish()
    }
}

/// The Bedrock upstream, when configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BedrockUpstream {
    /// Envoy cluster.
    pub cluster: String,
    /// Region used in the signature scope.
    pub region: String,
    /// Endpoint URL.
    pub url: BaseUrl,
}

/// Default Bedrock Agents runtime endpoint for a region.
pub fn default_bedrock_agent_endpoint(region: &str) -> String {
    format!("https://bedrock-agent-runtime.{region}.amazonaws.com")
}

/// Default Bedrock runtime endpoint for a region.
pub fn default_bedrock_endpoint(region: &str) -> String {
    format!("https://bedrock-runtime.{region}.amazonaws.com")
}

/// The validated configuration the filter runs with. Its `Debug` output never shows secrets.
#[derive(Clone)]
pub struct Gateway {
    /// The configuration as given.
    pub config: PluginConfig,
    /// The accepted client keys (digests, names, limits).
    pub keys: Vec<crate::auth::ClientKey>,
    /// OpenAI upstream (None: requests for OpenAI models get 503).
    pub openai: Option<OpenaiUpstream>,
    /// Parsed OpenAI base URL, even without a key (for error messages).
    pub openai_url: BaseUrl,
    /// Bedrock upstream (None: requests for Bedrock models get 503).
    pub bedrock: Option<BedrockUpstream>,
    /// Bedrock Agents upstream (same region and credentials as Bedrock).
    pub bedrock_agent: Option<BedrockUpstream>,
    /// Model router.
    pub router: Router,
    /// `/v1/models` catalog.
    pub catalog: Catalog,
    /// Secret shared with the sidecar (`x-unigate-token`).
    pub sidecar_token: Option<String>,
    /// Anthropic beta flags Bedrock accepts, per model.
    pub beta_rules: Vec<crate::formats::anthropic::betas::BetaRule>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.config)
            .field("keys", &self.keys)
            .field("openai", &self.openai)
            .field("openai_url", &self.openai_url)
            .field("bedrock", &self.bedrock)
            .field("bedrock_agent", &self.bedrock_agent)
            .field("router", &self.router)
            .field("catalog_models", &self.catalog.len())
            .field(
                "sidecar_token",
                &self.sidecar_token.as_ref().map(|_| crate::auth::REDACTED),
            )
            .finish()
    }
}

impl Gateway {
    /// The model id as a metric label: ids the catalogue or the alias table knows, `other`
    /// for the rest (a client can send any model name; labels must stay a bounded set).
    pub fn metric_model<'a>(&self, model_id: &'a str) -> &'a str {
        let known = self.catalog.get(model_id).is_some()
            || self.router.aliases().values().any(|v| v == model_id)
            || self
                .catalog
                .get(crate::route::base_model_id(model_id))
                .is_some();
        if known {
            model_id
        } else {
            "other"
        }
    }

    /// Validates a configuration; `env` reads the VM environment.
    pub fn compile(
        config: PluginConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Gateway, String> {
        let nonempty =
            |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());

        let mut entries: Vec<crate::auth::KeyEntry> = config
            .api_keys
            .iter()
            .cloned()
            .map(crate::auth::KeySpec::into_entry)
            .collect();
        if let Some(list) = nonempty(env(&config.api_keys_env)) {
            entries.extend(
                list.split(',')
                    .map(|k| crate::auth::KeySpec::Plain(k.trim().to_string()).into_entry()),
            );
        }
        if let Some(json) = nonempty(env(&config.api_keys_json_env)) {
            entries.extend(
                crate::auth::parse_key_entries(&json)
                    .map_err(|e| format!("{}: {e}", config.api_keys_json_env))?,
            );
        }
        entries.retain(|e| !e.key.trim().is_empty());
        let keys = entries
            .iter()
            .map(crate::auth::ClientKey::from_entry)
            .collect();

        if config.max_request_bytes == 0 {
            return Err("max_request_bytes must be greater than 0".into());
        }
        if config.default_max_tokens == 0 {
            return Err("default_max_tokens must be greater than 0".into());
        }
        let openai_url =
            BaseUrl::parse(&config.openai_base_url).map_err(|e| format!("openai_base_url: {e}"))?;
        let openai_key = config
            .openai_api_key
            .clone()
            .filter(|k| !k.is_empty())
            .or_else(|| nonempty(env(&config.openai_api_key_env)));
        let openai = openai_key.map(|api_key| OpenaiUpstream {
            cluster: config.openai_cluster.clone(),
            url: openai_url.clone(),
            api_key,
        });

        let bedrock = match config.aws_region.as_deref().map(str::trim) {
            Some(region) if !region.is_empty() => {
                let endpoint = config
                    .bedrock_endpoint
                    .clone()
                    .filter(|e| !e.is_empty())
                    .unwrap_or_else(|| default_bedrock_endpoint(region));
                let url =
                    BaseUrl::parse(&endpoint).map_err(|e| format!("bedrock_endpoint: {e}"))?;
                Some(BedrockUpstream {
                    cluster: config.bedrock_cluster.clone(),
                    region: region.to_string(),
                    url,
                })
            }
            _ => None,
        };

        let bedrock_agent = match &bedrock {
            Some(b) => {
                let endpoint = config
                    .bedrock_agent_endpoint
                    .clone()
                    .filter(|e| !e.is_empty())
                    .unwrap_or_else(|| default_bedrock_agent_endpoint(&b.region));
                let url = BaseUrl::parse(&endpoint)
                    .map_err(|e| format!("bedrock_agent_endpoint: {e}"))?;
                Some(BedrockUpstream {
                    cluster: config.bedrock_agent_cluster.clone(),
                    region: b.region.clone(),
                    url,
                })
            }
            None => None,
        };
        let rules = config.routes.clone().unwrap_or_else(default_rules);
        for r in &rules {
            if r.pattern.is_empty() {
                return Err("routes: a rule has an empty pattern".into());
            }
        }
        let mut aliases = default_aliases();
        for (alias, target) in &config.aliases {
            if target.is_empty() {
                aliases.remove(alias);
            } else {
                aliases.insert(alias.clone(), target.clone());
            }
        }
        let mut models = if config.replace_default_models {
            Vec::new()
        } else {
            default_models()
        };
        models.extend(config.models.iter().cloned());
        let catalog = Catalog::new(models, &aliases);
        let router = Router::new(rules, aliases);
        let sidecar_token = nonempty(env(&config.sidecar_token_env));
        let beta_rules = config
            .anthropic_betas
            .clone()
            .unwrap_or_else(crate::formats::anthropic::betas::default_rules);

        Ok(Gateway {
            config,
            keys,
            openai,
            openai_url,
            bedrock,
            bedrock_agent,
            router,
            catalog,
            sidecar_token,
            beta_rules,
        })
    }

    /// Parses the JSON plugin configuration and compiles it.
    pub fn from_json(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Gateway, String> {
        let trimmed: &[u8] = if json.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            json
        };
        let config: PluginConfig = serde_json::from_slice(trimmed)
            .map_err(|e| format!("invalid plugin configuration: {e}"))?;
        Gateway::compile(config, env)
    }

    /// Whether a client key is accepted (constant time over all configured keys).
    pub fn key_allowed(&self, presented: &str) -> bool {
        crate::auth::find_key(&self.keys, presented).is_some()
    }

    /// Checks a request's credentials (`authorization` / `x-api-key` header values) and
    /// returns the matching key (`None` when unauthenticated access is allowed).
    pub fn authorize(
        &self,
        authorization: Option<&str>,
        x_api_key: Option<&str>,
    ) -> Result<Option<&crate::auth::ClientKey>, GatewayError> {
        let presented = crate::auth::presented_key(authorization, x_api_key);
        if self.config.allow_unauthenticated {
            return Ok(presented.and_then(|k| crate::auth::find_key(&self.keys, k)));
        }
        if self.keys.is_empty() {
            return Err(GatewayError::unauthorized(format!(
                "This gateway has no client API keys configured; set {} on the gateway.",
                self.config.api_keys_env
            )));
        }
        match presented {
            None => Err(GatewayError::unauthorized(
                "Missing API key: send `Authorization: Bearer <key>`.",
            )),
            Some(k) => crate::auth::find_key(&self.keys, k)
                .map(Some)
                .ok_or_else(|| GatewayError::unauthorized("Incorrect API key provided.")),
        }
    }

    /// The OpenAI upstream or the 503 that explains how to configure it.
    pub fn require_openai(&self) -> Result<&OpenaiUpstream, GatewayError> {
        self.openai.as_ref().ok_or_else(|| {
            GatewayError::unconfigured(format!(
                "OpenAI is not configured on this gateway: set {} (and optionally OPENAI_BASE_URL).",
                self.config.openai_api_key_env
            ))
        })
    }

    /// The Bedrock Agents upstream or the 503 that explains how to configure it.
    pub fn require_bedrock_agent(&self) -> Result<&BedrockUpstream, GatewayError> {
        self.require_bedrock()?;
        self.bedrock_agent.as_ref().ok_or_else(|| {
            GatewayError::unconfigured("Bedrock Agents are not configured on this gateway.")
        })
    }

    /// The Bedrock upstream or the 503 that explains how to configure it.
    pub fn require_bedrock(&self) -> Result<&BedrockUpstream, GatewayError> {
        self.bedrock.as_ref().ok_or_else(|| {
            GatewayError::unconfigured(
                "AWS Bedrock is not configured on this gateway: set AWS_REGION (or AWS_DEFAULT_REGION) and AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or a role).",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn empty_config_is_valid() {
        let g = Gateway::from_json(b"", &no_env).unwrap();
        assert!(g.openai.is_none());
        assert!(g.bedrock.is_none());
        assert!(g.keys.is_empty());
        assert_eq!(g.config.max_request_bytes, 33_554_432);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e = Gateway::from_json(br#"{"api_kyes":["x"]}"#, &no_env).unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn env_supplies_secrets() {
        let env = |k: &str| match k {
            "API_KEY" => Some("k1, k2".to_string()),
            "OPENAI_API_KEY" => Some("sk-test".to_string()),
            _ => None,
        };
        let g = Gateway::from_json(br#"{"aws_region":"eu-west-1"}"#, &env).unwrap();
        assert!(g.key_allowed("k1") && g.key_allowed("k2") && !g.key_allowed("k3"));
        assert_eq!(g.openai.as_ref().unwrap().api_key, "sk-test");
        let b = g.bedrock.unwrap();
        assert_eq!(b.url.authority, "bedrock-runtime.eu-west-1.amazonaws.com");
        assert!(b.url.tls());
    }

    #[test]
    fn base_urls() {
        let u = BaseUrl::parse("http://127.0.0.1:8001/v1/").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1:8001", 8001, "/v1")
        );
        let u = BaseUrl::parse("https://api.openai.com:443/v1").unwrap();
        assert_eq!(u.authority, "api.openai.com");
        assert_eq!(BaseUrl::parse("https://x.y").unwrap().path, "");
        assert!(BaseUrl::parse("ftp://x").is_err());
        assert!(BaseUrl::parse("api.openai.com").is_err());
        assert!(BaseUrl::parse("http://h:notaport").is_err());
    }

    #[test]
    fn aliases_merge_and_remove() {
        let g = Gateway::from_json(
            br#"{"aliases":{"fast":"amazon.nova-micro-v1:0","claude-3-haiku":""}}"#,
            &no_env,
        )
        .unwrap();
        assert_eq!(
            g.router.aliases().get("fast").unwrap(),
            "amazon.nova-micro-v1:0"
        );
        assert!(!g.router.aliases().contains_key("claude-3-haiku"));
        assert!(g.catalog.get("fast").is_some());
    }
}
