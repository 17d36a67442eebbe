//! Amazon Titan Text Embeddings on Bedrock (InvokeModel): one `inputText` per call, so a list
//! of texts is one call per text (the filter makes them, a bounded number at a time).

use crate::error::GatewayError;
use crate::ir::EmbeddingsRequest;
use crate::route::base_model_id;
use serde::Deserialize;
use serde_json::json;

/// Vector sizes Titan v2 produces.
pub const V2_DIMENSIONS: &[u32] = &[256, 512, 1024];

/// Whether a model id is Titan Text Embeddings v1 (no `dimensions`, no `normalize`).
pub fn is_v1(model_id: &str) -> bool {
    base_model_id(model_id).starts_with("amazon.titan-embed-text-v1")
}

/// Checks what only some Titan versions take.
pub fn check(req: &EmbeddingsRequest, model_id: &str) -> Result<(), GatewayError> {
    if let Some(d) = req.dimensions {
        if is_v1(model_id) {
            return Err(GatewayError::invalid(
                "dimensions",
                "Titan Text Embeddings v1 has one vector size (1536): `dimensions` is not supported.",
            ));
        }
        if !V2_DIMENSIONS.contains(&d) {
            return Err(GatewayError::invalid(
                "dimensions",
                format!("Titan Text Embeddings v2 produces 256, 512 or 1024 dimensions, not {d}."),
            ));
        }
    }
    Ok(())
}

/// The InvokeModel body for one text. v2 vectors are normalized (unit length), as OpenAI's are.
pub fn request_body(text: &str, req: &EmbeddingsRequest, model_id: &str) -> Vec<u8> {
    let body = if is_v1(model_id) {
        json!({ "inputText": text })
    } else {
        let mut b = json!({ "inputText": text, "normalize": true });
        if let (Some(d), Some(o)) = (req.dimensions, b.as_object_mut()) {
            o.insert("dimensions".into(), json!(d));
        }
        b
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    embedding: Option<Vec<f32>>,
    embeddings_by_type: Option<ByType>,
    input_text_token_count: Option<u64>,
}

#[derive(Deserialize)]
struct ByType {
    float: Option<Vec<f32>>,
}

/// The vector and token count of one answer.
pub fn parse_answer(body: &[u8]) -> Result<(Vec<f32>, u64), GatewayError> {
    let a: Answer = serde_json::from_slice(body).map_err(|_| {
        GatewayError::bad_gateway(
            "Bedrock answered a Titan embeddings call with a body that is not the expected JSON.",
        )
    })?;
    let v = a
        .embedding
        .or_else(|| a.embeddings_by_type.and_then(|t| t.float))
        .ok_or_else(|| {
            GatewayError::bad_gateway(
                "Bedrock answered a Titan embeddings call without `embedding`.",
            )
        })?;
    Ok((v, a.input_text_token_count.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_and_answers() {
        let req = EmbeddingsRequest {
            dimensions: Some(256),
            ..EmbeddingsRequest::default()
        };
        let b: serde_json::Value =
            serde_json::from_slice(&request_body("hi", &req, "amazon.titan-embed-text-v2:0"))
                .unwrap();
        assert_eq!(
            b,
            json!({"inputText": "hi", "normalize": true, "dimensions": 256})
        );
        let b: serde_json::Value =
            serde_json::from_slice(&request_body("hi", &req, "amazon.titan-embed-text-v1"))
                .unwrap();
        assert_eq!(b, json!({"inputText": "hi"}));
        assert!(check(&req, "amazon.titan-embed-text-v1").is_err());
        assert!(check(
            &EmbeddingsRequest {
                dimensions: Some(300),
                ..EmbeddingsRequest::default()
            },
            "amazon.titan-embed-text-v2:0"
        )
        .is_err());
        assert_eq!(
            parse_answer(br#"{"embedding":[0.5,1],"inputTextTokenCount":3}"#).unwrap(),
            (vec![0.5, 1.0], 3)
        );
        assert_eq!(
            parse_answer(br#"{"embeddingsByType":{"float":[2]},"inputTextTokenCount":1}"#).unwrap(),
            (vec![2.0], 1)
        );
        assert_eq!(parse_answer(b"{}").unwrap_err().status, 502);
    }
}
