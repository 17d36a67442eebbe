//! OpenAI Embeddings (`POST /v1/embeddings`): the request decoder, the answer encoder (float
//! arrays or base64 of little-endian float32, as OpenAI writes them), and the relay to an
//! OpenAI upstream's `/embeddings`.

use super::{EncodeContext, Encoded, Format, RelayContext, ResponseContext, UpstreamCodec};
use crate::error::GatewayError;
use crate::ir::{ChatRequest, ChatResponse, EmbeddingEncoding, EmbeddingsRequest, Usage};
use crate::json::{get, opt_str, opt_u32, req_str, type_name, Object};
use crate::stream::{NullDecoder, StreamDecoder};
use base64::Engine;
use serde_json::{json, Value};

/// Decodes an embeddings request. `bedrock` refuses what Bedrock models cannot take (token
/// arrays: the gateway has no tokenizer to turn them back into text).
pub fn decode_request(obj: &Object, bedrock: bool) -> Result<EmbeddingsRequest, GatewayError> {
    let model = req_str(obj, "model", "model")?.to_string();
    let inputs = match get(obj, "input") {
        None => {
            return Err(GatewayError::invalid(
                "input",
                "Missing required parameter: `input`.",
            ))
        }
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    Value::Number(_) | Value::Array(_) if bedrock => {
                        return Err(GatewayError::invalid(
                            format!("input[{i}]"),
                            "Token arrays are not supported for Bedrock embedding models; send the text.",
                        ))
                    }
                    Value::Number(_) | Value::Array(_) => {
                        // Token ids for OpenAI: relayed as sent; the count is what matters here.
                        out.push(String::new());
                    }
                    other => {
                        return Err(GatewayError::invalid(
                            format!("input[{i}]"),
                            format!(
                                "Invalid type for `input[{i}]`: expected a string, got {}.",
                                type_name(other)
                            ),
                        ))
                    }
                }
            }
            out
        }
        Some(other) => {
            return Err(GatewayError::invalid(
                "input",
                format!(
                    "Invalid type for `input`: expected a string or an array of strings, got {}.",
                    type_name(other)
                ),
            ))
        }
    };
    if inputs.is_empty() {
        return Err(GatewayError::invalid(
            "input",
            "`input` must contain at least one text.",
        ));
    }
    if bedrock {
        if let Some(i) = inputs.iter().position(|t| t.is_empty()) {
            return Err(GatewayError::invalid(
                format!("input[{i}]"),
                "Empty texts cannot be embedded.",
            ));
        }
    }
    let encoding = match opt_str(obj, "encoding_format", "encoding_format")? {
        None | Some("float") => EmbeddingEncoding::Float,
        Some("base64") => EmbeddingEncoding::Base64,
        Some(other) => {
            return Err(GatewayError::invalid(
                "encoding_format",
                format!("Invalid `encoding_format` `{other}`; expected float or base64."),
            ))
        }
    };
    Ok(EmbeddingsRequest {
        model,
        inputs,
        encoding,
        dimensions: opt_u32(obj, "dimensions", "dimensions", 1)?,
        user: opt_str(obj, "user", "user")?.map(str::to_string),
        input_type: opt_str(obj, "input_type", "input_type")?.map(str::to_string),
        truncate: opt_str(obj, "truncate", "truncate")?.map(str::to_string),
    })
}

/// One vector as OpenAI writes it.
fn vector_value(v: &[f32], encoding: EmbeddingEncoding) -> Value {
    match encoding {
        EmbeddingEncoding::Float => json!(v),
        EmbeddingEncoding::Base64 => {
            let mut bytes = Vec::with_capacity(v.len() * 4);
            for x in v {
                bytes.extend_from_slice(&x.to_le_bytes());
            }
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

/// The OpenAI embeddings answer for `vectors` (in input order).
pub fn encode_response(
    vectors: &[Vec<f32>],
    model: &str,
    prompt_tokens: u64,
    encoding: EmbeddingEncoding,
) -> Vec<u8> {
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"object": "embedding", "index": i, "embedding": vector_value(v, encoding)}))
        .collect();
    serde_json::to_vec(&json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }))
    .unwrap_or_default()
}

/// OpenAI embeddings as an upstream: requests are relayed (model resolved), usage read from
/// the answer.
pub struct OpenaiEmbeddings;

impl UpstreamCodec for OpenaiEmbeddings {
    fn format(&self) -> Format {
        Format::OpenaiEmbeddings
    }

    fn encode_request(
        &self,
        _req: &ChatRequest,
        _ctx: &EncodeContext<'_>,
    ) -> Result<Encoded, GatewayError> {
        Err(GatewayError::internal("Embeddings requests are relayed."))
    }

    fn decode_response(
        &self,
        _body: &[u8],
        _ctx: ResponseContext,
    ) -> Result<ChatResponse, GatewayError> {
        Err(GatewayError::internal("Embeddings answers are relayed."))
    }

    fn usage_of(&self, body: &[u8]) -> Option<Usage> {
        let u = crate::json::usage_field(body)?;
        Some(Usage {
            prompt_tokens: u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
            ..Usage::default()
        })
    }

    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(NullDecoder)
    }

    fn relay(&self, mut obj: Object, ctx: &RelayContext<'_>) -> Result<Encoded, GatewayError> {
        obj.insert("model".into(), json!(ctx.model_id));
        Ok(Encoded::body(super::to_body(obj, ctx.raw)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse_object;

    #[test]
    fn base64_is_little_endian_float32() {
        let body = encode_response(&[vec![1.0, -2.5]], "m", 3, EmbeddingEncoding::Base64);
        let v: Value = serde_json::from_slice(&body).unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            raw,
            [1.0f32.to_le_bytes(), (-2.5f32).to_le_bytes()].concat()
        );
        assert_eq!(v["usage"]["total_tokens"], 3);
    }

    #[test]
    fn token_arrays_only_for_openai() {
        let obj = parse_object(br#"{"model":"m","input":[[1,2],[3]]}"#).unwrap();
        assert_eq!(
            decode_request(&obj, true).unwrap_err().param.as_deref(),
            Some("input[0]")
        );
        assert_eq!(decode_request(&obj, false).unwrap().inputs.len(), 2);
        let obj = parse_object(br#"{"model":"m","input":[]}"#).unwrap();
        assert!(decode_request(&obj, false).is_err());
    }
}
