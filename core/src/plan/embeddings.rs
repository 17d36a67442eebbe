//! Planning `POST /v1/embeddings`: OpenAI models get the request relayed; Bedrock models
//! (Titan: one text per call; Cohere: up to 96 per call) get a fan-out of InvokeModel calls the
//! filter makes itself, a bounded number at a time, answered in input order.

use super::{upstream, Plan, PlanInput, ResponsePlan, UpstreamRequest};
use crate::config::Gateway;
use crate::error::GatewayError;
use crate::formats::{self, cohere_embed, titan_embed, Format, Provider, RelayContext};
use crate::ir::{EmbeddingEncoding, EmbeddingsRequest, Operation, ResponseMeta};
use crate::json::{self, GATEWAY_FIELDS};

/// InvokeModel calls to make for one embeddings request, and how to put the answers together.
#[derive(Debug, Clone, PartialEq)]
pub struct Fanout {
    /// The calls, unsigned (signed when dispatched), in input order.
    pub calls: Vec<UpstreamRequest>,
    /// How many texts each call embeds.
    pub batches: Vec<usize>,
    /// Titan or Cohere embeddings.
    pub format: Format,
    /// The model as the client named it (echoed in the answer).
    pub model: String,
    /// The model id sent upstream.
    pub model_id: String,
    /// How the client wants the vectors written.
    pub encoding: EmbeddingEncoding,
    /// Calls in flight at most.
    pub concurrency: usize,
    /// Timeout of each call.
    pub timeout_ms: u64,
}

/// A planned request: sent on upstream, or answered by the filter from its own calls.
#[derive(Debug, Clone, PartialEq)]
pub enum Planned {
    /// Forward the (rewritten) request upstream.
    Forward(Box<Plan>),
    /// Make these calls, then answer.
    Fanout(Box<Fanout>),
}

/// Plans an embeddings request.
pub fn plan(gw: &Gateway, input: &PlanInput<'_>) -> Result<Planned, GatewayError> {
    let mut obj = json::parse_object(input.body)?;
    let (model, route) = super::route(gw, input.door, &obj, input.client)?;
    let bedrock = route.format.provider() == Provider::Bedrock;
    let req = formats::openai_embeddings::decode_request(&obj, bedrock)?;
    let max = gw.config.max_embedding_inputs;
    if bedrock && req.inputs.len() > max {
        return Err(GatewayError::invalid(
            "input",
            format!(
                "At most {max} texts per request for Bedrock embedding models; got {}.",
                req.inputs.len()
            ),
        ));
    }
    match route.format {
        Format::OpenaiEmbeddings => {
            for f in GATEWAY_FIELDS {
                obj.remove(*f);
            }
            let encoded = formats::upstream(Format::OpenaiEmbeddings).relay(
                obj,
                &RelayContext {
                    model_id: &route.model_id,
                    stream: false,
                    default_max_tokens: gw.config.default_max_tokens,
                    header_betas: &[],
                    beta_rules: &[],
                    raw: crate::json::Spliced::plain(input.body),
                },
            )?;
            let body_changed = encoded.body.as_slice() != input.body;
            let upstream = upstream::openai_embeddings(gw, encoded.body, body_changed)?;
            Ok(Planned::Forward(Box::new(Plan {
                response: ResponsePlan {
                    operation: Operation::Embeddings,
                    upstream: Format::OpenaiEmbeddings,
                    input: Format::OpenaiEmbeddings,
                    target: Format::OpenaiEmbeddings,
                    stream: false,
                    include_usage: false,
                    structured: false,
                    relay: true,
                    meta: ResponseMeta {
                        id: input.request_id.to_string(),
                        created: input.now_unix,
                        model,
                        legacy_functions: false,
                        echo: Default::default(),
                    },
                    timeout_secs: gw.config.upstream_timeout_seconds,
                    extra_headers: Vec::new(),
                },
                upstream,
                model_id: route.model_id,
                notes: Vec::new(),
            })))
        }
        Format::TitanEmbed => {
            titan_embed::check(&req, &route.model_id)?;
            let calls = req
                .inputs
                .iter()
                .map(|t| {
                    upstream::bedrock_invoke(
                        gw,
                        &route.model_id,
                        titan_embed::request_body(t, &req, &route.model_id),
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(fanout(
                gw,
                calls,
                vec![1; req.inputs.len()],
                Format::TitanEmbed,
                model,
                route.model_id,
                &req,
            ))
        }
        Format::CohereEmbed => {
            cohere_embed::check(&req, &route.model_id)?;
            let mut calls = Vec::new();
            let mut batches = Vec::new();
            for chunk in req.inputs.chunks(cohere_embed::MAX_TEXTS) {
                calls.push(upstream::bedrock_invoke(
                    gw,
                    &route.model_id,
                    cohere_embed::request_body(chunk, &req, &route.model_id),
                )?);
                batches.push(chunk.len());
            }
            Ok(fanout(
                gw,
                calls,
                batches,
                Format::CohereEmbed,
                model,
                route.model_id,
                &req,
            ))
        }
        other => Err(GatewayError::internal(format!(
            "Embeddings routed to the {} format.",
            other.as_str()
        ))),
    }
}

fn fanout(
    gw: &Gateway,
    calls: Vec<UpstreamRequest>,
    batches: Vec<usize>,
    format: Format,
    model: String,
    model_id: String,
    req: &EmbeddingsRequest,
) -> Planned {
    Planned::Fanout(Box::new(Fanout {
        calls,
        batches,
        format,
        model,
        model_id,
        encoding: req.encoding,
        concurrency: gw.config.embedding_concurrency.max(1),
        timeout_ms: gw.config.embedding_timeout_ms.max(1),
    }))
}
