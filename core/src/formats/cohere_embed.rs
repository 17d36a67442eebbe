//! Cohere Embed on Bedrock (InvokeModel): up to 96 texts per call (larger lists are split and
//! the answers merged in order), an `input_type` (default `search_document`), and two answer
//! shapes (`embeddings_floats`, `embeddings_by_type`).

use crate::error::GatewayError;
use crate::ir::EmbeddingsRequest;
use crate::route::base_model_id;
use serde_json::{json, Value};

/// Most texts Cohere takes in one call.
pub const MAX_TEXTS: usize = 96;

/// `input_type` when the client names none (documents, as for indexing).
pub const DEFAULT_INPUT_TYPE: &str = "search_document";

/// Values Cohere takes for `input_type`.
pub const INPUT_TYPES: &[&str] = &[
    "search_document",
    "search_query",
    "classification",
    "clustering",
];

/// Vector sizes Cohere Embed v4 produces.
pub const V4_DIMENSIONS: &[u32] = &[256, 512, 1024, 1536];

/// Whether a model id is Cohere Embed v4 (`output_dimension`, `truncate` LEFT/RIGHT).
pub fn is_v4(model_id: &str) -> bool {
    base_model_id(model_id).starts_with("cohere.embed-v4")
}

/// Checks the options against the model.
pub fn check(req: &EmbeddingsRequest, model_id: &str) -> Result<(), GatewayError> {
    if let Some(t) = &req.input_type {
        if !INPUT_TYPES.contains(&t.as_str()) {
            return Err(GatewayError::invalid(
                "input_type",
                format!(
                    "Invalid `input_type` `{t}`; expected one of {}.",
                    INPUT_TYPES.join(", ")
                ),
            ));
        }
    }
    let truncates: &[&str] = if is_v4(model_id) {
        &["NONE", "LEFT", "RIGHT"]
    } else {
        &["NONE", "START", "END"]
    };
    if let Some(t) = &req.truncate {
        if !truncates.contains(&t.as_str()) {
            return Err(GatewayError::invalid(
                "truncate",
                format!(
                    "Invalid `truncate` `{t}` for this model; expected one of {}.",
                    truncates.join(", ")
                ),
            ));
        }
    }
    match (req.dimensions, is_v4(model_id)) {
        (Some(d), true) if !V4_DIMENSIONS.contains(&d) => Err(GatewayError::invalid(
            "dimensions",
            format!("Cohere Embed v4 produces 256, 512, 1024 or 1536 dimensions, not {d}."),
        )),
        (Some(d), false) if d != 1024 => Err(GatewayError::invalid(
            "dimensions",
            format!("Cohere Embed v3 produces 1024 dimensions only, not {d}."),
        )),
        _ => Ok(()),
    }
}

/// The InvokeModel body for one batch of texts.
pub fn request_body(texts: &[String], req: &EmbeddingsRequest, model_id: &str) -> Vec<u8> {
    let mut body = json!({
        "texts": texts,
        "input_type": req.input_type.as_deref().unwrap_or(DEFAULT_INPUT_TYPE),
        "embedding_types": ["float"],
    });
    if let Some(o) = body.as_object_mut() {
        if let Some(t) = &req.truncate {
            o.insert("truncate".into(), json!(t));
        }
        if let (Some(d), true) = (req.dimensions, is_v4(model_id)) {
            o.insert("output_dimension".into(), json!(d));
        }
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The vectors of one answer, in order: `{"embeddings": [[…]]}` (`embeddings_floats`) or
/// `{"embeddings": {"float": [[…]]}}` (`embeddings_by_type`).
pub fn parse_answer(body: &[u8], expected: usize) -> Result<Vec<Vec<f32>>, GatewayError> {
    let bad = || {
        GatewayError::bad_gateway(
            "Bedrock answered a Cohere embeddings call with a body that is not the expected JSON.",
        )
    };
    let v: Value = serde_json::from_slice(body).map_err(|_| bad())?;
    let list = match v.get("embeddings") {
        Some(Value::Array(a)) => a,
        Some(Value::Object(o)) => match o.get("float") {
            Some(Value::Array(a)) => a,
            _ => return Err(bad()),
        },
        _ => return Err(bad()),
    };
    let vectors: Vec<Vec<f32>> = list
        .iter()
        .map(|row| serde_json::from_value::<Vec<f32>>(row.clone()).map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    if vectors.len() != expected {
        return Err(GatewayError::bad_gateway(format!(
            "Bedrock answered a Cohere embeddings call with {} vectors for {expected} texts.",
            vectors.len()
        )));
    }
    Ok(vectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_and_both_answer_shapes() {
        let req = EmbeddingsRequest::default();
        let b: Value = serde_json::from_slice(&request_body(
            &["a".into(), "b".into()],
            &req,
            "cohere.embed-english-v3",
        ))
        .unwrap();
        assert_eq!(b["input_type"], "search_document");
        assert_eq!(b["texts"], json!(["a", "b"]));
        assert_eq!(
            parse_answer(
                br#"{"response_type":"embeddings_floats","embeddings":[[1],[2]]}"#,
                2
            )
            .unwrap(),
            vec![vec![1.0], vec![2.0]]
        );
        assert_eq!(
            parse_answer(
                br#"{"response_type":"embeddings_by_type","embeddings":{"float":[[3]]}}"#,
                1
            )
            .unwrap(),
            vec![vec![3.0]]
        );
        assert!(parse_answer(br#"{"embeddings":[[1]]}"#, 2).is_err());
        assert!(check(
            &EmbeddingsRequest {
                dimensions: Some(512),
                ..req.clone()
            },
            "cohere.embed-english-v3"
        )
        .is_err());
        assert!(check(
            &EmbeddingsRequest {
                dimensions: Some(512),
                ..req
            },
            "us.cohere.embed-v4:0"
        )
        .is_ok());
    }
}
