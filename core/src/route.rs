//! Routing by model id: aliases, an ordered pattern table, and the Bedrock API each model
//! family uses.

use crate::error::GatewayError;
use crate::formats::Format;
use crate::ir::Operation;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An upstream provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// OpenAI (or any OpenAI-compatible server at `openai_base_url`).
    Openai,
    /// AWS Bedrock runtime.
    Bedrock,
}

impl Provider {
    /// Lowercase name used in config, metrics and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Openai => "openai",
            Provider::Bedrock => "bedrock",
        }
    }

    /// Parses the request field `provider`.
    pub fn parse(s: &str) -> Option<Provider> {
        match s.to_ascii_lowercase().as_str() {
            "openai" => Some(Provider::Openai),
            "bedrock" | "aws" | "aws_bedrock" | "amazon_bedrock" => Some(Provider::Bedrock),
            _ => None,
        }
    }
}

/// One row of the routing table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// Glob over the (alias-resolved) model id; `*` matches any run of characters.
    pub pattern: String,
    /// Provider for matching models.
    pub provider: Provider,
    /// Force an upstream API (by its wire format) instead of picking one from the model
    /// family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<Format>,
}

/// Model ids of the form `bedrock-agent/<agentId>/<aliasId>` invoke a Bedrock agent.
pub const AGENT_PREFIX: &str = "bedrock-agent/";

/// The agent and alias ids of a `bedrock-agent/<agentId>/<aliasId>` model id.
pub fn agent_ids(model: &str) -> Option<(&str, &str)> {
    let rest = model.strip_prefix(AGENT_PREFIX)?;
    let (agent, alias) = rest.split_once('/')?;
    let valid =
        |s: &str| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_alphanumeric());
    (valid(agent) && valid(alias)).then_some((agent, alias))
}

/// Geography prefixes of Bedrock cross-region inference profiles.
pub const GEO_PREFIXES: &[&str] = &["us", "eu", "apac", "us-gov", "jp", "au", "ca", "global"];

/// Bedrock model-provider prefixes routed by default.
pub const BEDROCK_FAMILIES: &[&str] = &[
    "anthropic",
    "amazon",
    "meta",
    "mistral",
    "cohere",
    "ai21",
    "deepseek",
    "writer",
    "qwen",
    "openai",
    "twelvelabs",
    "moonshot",
    "stability",
];

/// The default routing table (first match wins).
pub fn default_rules() -> Vec<RouteRule> {
    let mut rules = Vec::new();
    let mut add = |pattern: String, provider| {
        rules.push(RouteRule {
            pattern,
            provider,
            api: None,
        })
    };
    for p in [
        "gpt-*",
        "chatgpt-*",
        "o1*",
        "o3*",
        "o4*",
        "ft:gpt-*",
        "text-embedding-*",
    ] {
        add(p.to_string(), Provider::Openai);
    }
    for fam in BEDROCK_FAMILIES {
        add(format!("{fam}.*"), Provider::Bedrock);
    }
    for geo in GEO_PREFIXES {
        for fam in BEDROCK_FAMILIES {
            add(format!("{geo}.{fam}.*"), Provider::Bedrock);
        }
    }
    rules.push(RouteRule {
        pattern: format!("{AGENT_PREFIX}*"),
        provider: Provider::Bedrock,
        api: Some(Format::Agent),
    });
    let mut add = |pattern: String, provider| {
        rules.push(RouteRule {
            pattern,
            provider,
            api: None,
        })
    };
    add("arn:aws:bedrock:*".to_string(), Provider::Bedrock);
    add("arn:aws-us-gov:bedrock:*".to_string(), Provider::Bedrock);
    rules
}

/// Default aliases: short names for current Bedrock model ids.
pub fn default_aliases() -> BTreeMap<String, String> {
    [
        ("claude-3-haiku", "anthropic.claude-3-haiku-20240307-v1:0"),
        (
            "claude-3-5-haiku",
            "anthropic.claude-3-5-haiku-20241022-v1:0",
        ),
        (
            "claude-3-5-sonnet",
            "anthropic.claude-3-5-sonnet-20241022-v2:0",
        ),
        (
            "claude-3-7-sonnet",
            "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
        ),
        (
            "claude-sonnet-4",
            "us.anthropic.claude-sonnet-4-20250514-v1:0",
        ),
        (
            "claude-opus-4-1",
            "us.anthropic.claude-opus-4-1-20250805-v1:0",
        ),
        (
            "claude-sonnet-4-5",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
        (
            "claude-haiku-4-5",
            "us.anthropic.claude-haiku-4-5-20251001-v1:0",
        ),
        (
            "claude-opus-4-5",
            "global.anthropic.claude-opus-4-5-20251101-v1:0",
        ),
        ("nova-micro", "amazon.nova-micro-v1:0"),
        ("nova-lite", "amazon.nova-lite-v1:0"),
        ("nova-pro", "amazon.nova-pro-v1:0"),
        ("nova-premier", "us.amazon.nova-premier-v1:0"),
        ("titan-text-express", "amazon.titan-text-express-v1"),
        ("titan-text-lite", "amazon.titan-text-lite-v1"),
        ("titan-text-premier", "amazon.titan-text-premier-v1:0"),
        ("llama3-3-70b", "us.meta.llama3-3-70b-instruct-v1:0"),
        ("llama3-1-8b", "meta.llama3-1-8b-instruct-v1:0"),
        ("mistral-large", "mistral.mistral-large-2407-v1:0"),
        ("command-r-plus", "cohere.command-r-plus-v1:0"),
        ("command-r", "cohere.command-r-v1:0"),
        ("jamba-1-5-large", "ai21.jamba-1-5-large-v1:0"),
        ("jamba-1-5-mini", "ai21.jamba-1-5-mini-v1:0"),
        ("deepseek-r1", "us.deepseek.r1-v1:0"),
        ("gpt-oss-120b", "openai.gpt-oss-120b-1:0"),
        ("gpt-oss-20b", "openai.gpt-oss-20b-1:0"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect()
}

/// Glob match where `*` matches any (possibly empty) run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let remaining: Vec<&str> = parts.collect();
    let Some((last, middle)) = remaining.split_last() else {
        // No `*` at all: exact match.
        return rest.is_empty();
    };
    for mid in middle {
        match rest.find(mid) {
            Some(pos) => rest = rest.get(pos + mid.len()..).unwrap_or_default(),
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// The model id with any ARN wrapper and geography prefix removed
/// (`us.anthropic.claude-…` → `anthropic.claude-…`).
pub fn base_model_id(model: &str) -> &str {
    let id = if model.starts_with("arn:") {
        model.rsplit('/').next().unwrap_or(model)
    } else {
        model
    };
    match id.split_once('.') {
        Some((geo, rest)) if GEO_PREFIXES.contains(&geo) && rest.contains('.') => rest,
        _ => id,
    }
}

/// Picks the Bedrock API (by its wire format) for a model id from its family.
pub fn bedrock_format_for(model: &str) -> Format {
    if model.contains(":application-inference-profile/") {
        // An application profile hides the family; Converse works for every family.
        return Format::Converse;
    }
    let base = base_model_id(model);
    if base.starts_with("anthropic.") {
        Format::Anthropic
    } else if base.starts_with("amazon.titan-text") || base.starts_with("amazon.titan-tg1") {
        Format::Titan
    } else {
        Format::Converse
    }
}

/// Refuses model ids that are not ids: empty, dot segments (`.`, `..`, `a/../b`) or control
/// characters. They would otherwise reach an upstream path raw (and fail its signature there,
/// blamed on the gateway's credentials).
pub fn check_model_id(model: &str) -> Result<(), GatewayError> {
    let bad = model.is_empty()
        || model.split('/').any(|seg| seg == "." || seg == "..")
        || model.chars().any(char::is_control);
    if bad {
        return Err(GatewayError::invalid(
            "model",
            format!("`{}` is not a valid model id.", model.escape_debug()),
        )
        .with_code("invalid_model_id"));
    }
    Ok(())
}

/// Whether a model id names an embedding model (OpenAI's `text-embedding-*`, Titan and
/// Cohere embeddings on Bedrock, ARNs and geography prefixes allowed).
pub fn is_embedding_model(model: &str) -> bool {
    let base = base_model_id(model);
    base.starts_with("text-embedding-")
        || base.starts_with("amazon.titan-embed")
        || base.starts_with("amazon.nova-embed")
        || base.starts_with("cohere.embed")
}

/// Where an embeddings request goes: OpenAI's `/embeddings`, or Titan / Cohere embeddings on
/// Bedrock. Chat models get a 400 naming the right endpoint.
fn embeddings_route(
    model: &str,
    model_id: String,
    provider: Provider,
) -> Result<Route, GatewayError> {
    let base = base_model_id(&model_id);
    let format = match provider {
        Provider::Openai if is_embedding_model(&model_id) => Some(Format::OpenaiEmbeddings),
        Provider::Bedrock if base.starts_with("amazon.titan-embed-text") => {
            Some(Format::TitanEmbed)
        }
        Provider::Bedrock if base.starts_with("cohere.embed") => Some(Format::CohereEmbed),
        _ => None,
    };
    match format {
        Some(format) => Ok(Route { model_id, format }),
        None if is_embedding_model(&model_id) => Err(GatewayError::invalid(
            "model",
            format!("The embedding model `{model}` is not supported by this gateway; use Titan Text Embeddings, Cohere Embed or an OpenAI embedding model."),
        )
        .with_code("unsupported_for_model")),
        None => Err(GatewayError::invalid(
            "model",
            format!("The model `{model}` is a chat model; send it to POST /v1/chat/completions."),
        )
        .with_code("wrong_endpoint")),
    }
}

/// The result of routing one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The id sent upstream (aliases resolved).
    pub model_id: String,
    /// The upstream API's wire format.
    pub format: Format,
}

/// Routes model ids to providers.
#[derive(Debug, Clone)]
pub struct Router {
    rules: Vec<RouteRule>,
    aliases: BTreeMap<String, String>,
}

impl Router {
    /// A router over the given rules and aliases.
    pub fn new(rules: Vec<RouteRule>, aliases: BTreeMap<String, String>) -> Router {
        Router { rules, aliases }
    }

    /// The alias table.
    pub fn aliases(&self) -> &BTreeMap<String, String> {
        &self.aliases
    }

    /// Resolves a model (and an optional forced provider) to an upstream for `operation`.
    pub fn route(
        &self,
        model: &str,
        forced: Option<Provider>,
        operation: Operation,
    ) -> Result<Route, GatewayError> {
        let model_id = self
            .aliases
            .get(model)
            .cloned()
            .unwrap_or_else(|| model.to_string());
        let rule = self
            .rules
            .iter()
            .find(|r| glob_match(&r.pattern, &model_id) && forced.is_none_or(|p| p == r.provider));
        let (provider, api) = match (rule, forced) {
            (Some(r), _) => (r.provider, r.api),
            (None, Some(p)) => (p, None),
            (None, None) => return Err(GatewayError::model_not_found(model)),
        };
        if operation == Operation::Embeddings {
            return embeddings_route(model, model_id, provider);
        }
        let format = api.unwrap_or(match provider {
            Provider::Openai => Format::OpenaiChat,
            Provider::Bedrock => bedrock_format_for(&model_id),
        });
        if operation == Operation::Chat && is_embedding_model(&model_id) {
            return Err(GatewayError::invalid(
                "model",
                format!(
                    "The model `{model}` is an embedding model; send it to POST /v1/embeddings."
                ),
            )
            .with_code("wrong_endpoint"));
        }
        if format.provider() != provider {
            return Err(GatewayError::internal(format!(
                "Routing rule for `{model}` names API {} for provider {}.",
                format.as_str(),
                provider.as_str()
            )));
        }
        Ok(Route { model_id, format })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router::new(default_rules(), default_aliases())
    }

    impl Router {
        fn route_chat(&self, model: &str, forced: Option<Provider>) -> Result<Route, GatewayError> {
            self.route(model, forced, Operation::Chat)
        }
    }

    #[test]
    fn glob() {
        assert!(glob_match("gpt-*", "gpt-4o"));
        assert!(glob_match("gpt-*", "gpt-"));
        assert!(!glob_match("gpt-*", "xgpt-4o"));
        assert!(glob_match("*sonnet*", "anthropic.claude-3-5-sonnet"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn routing_table() {
        let r = router();
        let cases: &[(&str, Format, &str)] = &[
            ("gpt-4o", Format::OpenaiChat, "gpt-4o"),
            ("o3-mini", Format::OpenaiChat, "o3-mini"),
            ("anthropic.claude-3-haiku-20240307-v1:0", Format::Anthropic, "anthropic.claude-3-haiku-20240307-v1:0"),
            ("us.anthropic.claude-sonnet-4-20250514-v1:0", Format::Anthropic, "us.anthropic.claude-sonnet-4-20250514-v1:0"),
            ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", Format::Anthropic, "global.anthropic.claude-sonnet-4-5-20250929-v1:0"),
            ("claude-3-haiku", Format::Anthropic, "anthropic.claude-3-haiku-20240307-v1:0"),
            ("amazon.titan-text-express-v1", Format::Titan, "amazon.titan-text-express-v1"),
            ("amazon.nova-pro-v1:0", Format::Converse, "amazon.nova-pro-v1:0"),
            ("eu.amazon.nova-lite-v1:0", Format::Converse, "eu.amazon.nova-lite-v1:0"),
            ("meta.llama3-1-70b-instruct-v1:0", Format::Converse, "meta.llama3-1-70b-instruct-v1:0"),
            ("apac.meta.llama3-2-90b-instruct-v1:0", Format::Converse, "apac.meta.llama3-2-90b-instruct-v1:0"),
            ("mistral.mistral-large-2407-v1:0", Format::Converse, "mistral.mistral-large-2407-v1:0"),
            ("cohere.command-r-plus-v1:0", Format::Converse, "cohere.command-r-plus-v1:0"),
            ("ai21.jamba-1-5-large-v1:0", Format::Converse, "ai21.jamba-1-5-large-v1:0"),
            ("openai.gpt-oss-120b-1:0", Format::Converse, "openai.gpt-oss-120b-1:0"),
            (
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0",
                Format::Anthropic,
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0",
            ),
            (
                "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abcdef123456",
                Format::Converse,
                "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abcdef123456",
            ),
        ];
        for (model, api, id) in cases {
            let route = r
                .route(model, None, Operation::Chat)
                .unwrap_or_else(|e| panic!("{model}: {e}"));
            assert_eq!(route.format, *api, "{model}");
            assert_eq!(route.model_id, *id, "{model}");
        }
    }

    #[test]
    fn agents() {
        let route = router()
            .route_chat("bedrock-agent/AGENT12345/ALIAS12345", None)
            .unwrap();
        assert_eq!(route.format, Format::Agent);
        assert_eq!(
            agent_ids("bedrock-agent/A1/TSTALIASID"),
            Some(("A1", "TSTALIASID"))
        );
        assert_eq!(agent_ids("bedrock-agent/A1"), None);
        assert_eq!(agent_ids("bedrock-agent/A 1/x"), None);
    }

    #[test]
    fn embedding_models_never_route_to_chat() {
        for m in [
            "amazon.titan-embed-text-v2:0",
            "cohere.embed-english-v3",
            "text-embedding-3-small",
            "us.cohere.embed-v4:0",
        ] {
            let e = router().route(m, None, Operation::Chat).unwrap_err();
            assert_eq!(
                (e.status, e.code.as_deref()),
                (400, Some("wrong_endpoint")),
                "{m}"
            );
            assert!(e.message.contains("/v1/embeddings"));
        }
        assert!(!is_embedding_model("amazon.nova-pro-v1:0"));
        let r = router();
        let e = |m: &str| r.route(m, None, Operation::Embeddings);
        assert_eq!(
            e("amazon.titan-embed-text-v2:0").unwrap().format,
            Format::TitanEmbed
        );
        assert_eq!(
            e("cohere.embed-multilingual-v3").unwrap().format,
            Format::CohereEmbed
        );
        assert_eq!(
            e("text-embedding-3-small").unwrap().format,
            Format::OpenaiEmbeddings
        );
        let err = e("gpt-4o").unwrap_err();
        assert_eq!(err.code.as_deref(), Some("wrong_endpoint"));
        assert!(err.message.contains("/v1/chat/completions"));
        assert_eq!(e("amazon.nova-pro-v1:0").unwrap_err().status, 400);
        assert_eq!(e("nope").unwrap_err().status, 404);
    }

    #[test]
    fn unknown_model_is_404() {
        let e = router().route_chat("llama-local", None).unwrap_err();
        assert_eq!(e.status, 404);
        assert_eq!(e.code.as_deref(), Some("model_not_found"));
    }

    #[test]
    fn forced_provider() {
        let r = router();
        let route = r
            .route_chat("my-vllm-model", Some(Provider::Openai))
            .unwrap();
        assert_eq!(route.format, Format::OpenaiChat);
        let route = r
            .route_chat("anthropic.claude-x", Some(Provider::Bedrock))
            .unwrap();
        assert_eq!(route.format, Format::Anthropic);
        // A forced provider skips rules of the other provider.
        let route = r.route_chat("gpt-4o", Some(Provider::Bedrock)).unwrap();
        assert_eq!(route.format, Format::Converse);
    }
}
