//! The model catalog served at `/v1/models`.

use crate::route::base_model_id;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// One model in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Model id as clients send it.
    pub id: String,
    /// Organisation that owns the model (`openai`, `anthropic`, `amazon`, …).
    #[serde(default)]
    pub owned_by: Option<String>,
    /// Unix seconds (OpenAI's `created`).
    #[serde(default)]
    pub created: Option<u64>,
}

/// Default catalog: current chat model ids (release dates as `created`).
pub fn default_models() -> Vec<ModelEntry> {
    let rows: &[(&str, u64)] = &[
        ("gpt-4o", 1_715_367_049),
        ("gpt-4o-mini", 1_721_172_741),
        ("gpt-4.1", 1_744_316_542),
        ("gpt-4.1-mini", 1_744_318_173),
        ("gpt-4.1-nano", 1_744_321_707),
        ("gpt-5", 1_754_425_777),
        ("gpt-5-mini", 1_754_425_867),
        ("gpt-5-nano", 1_754_426_384),
        ("o3", 1_744_225_308),
        ("o3-mini", 1_737_146_383),
        ("o4-mini", 1_744_225_351),
        ("anthropic.claude-3-haiku-20240307-v1:0", 1_709_769_600),
        ("anthropic.claude-3-5-haiku-20241022-v1:0", 1_729_555_200),
        ("anthropic.claude-3-5-sonnet-20241022-v2:0", 1_729_555_200),
        (
            "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
            1_739_923_200,
        ),
        ("us.anthropic.claude-sonnet-4-20250514-v1:0", 1_747_180_800),
        ("us.anthropic.claude-opus-4-1-20250805-v1:0", 1_754_352_000),
        (
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            1_759_104_000,
        ),
        ("us.anthropic.claude-haiku-4-5-20251001-v1:0", 1_759_276_800),
        (
            "global.anthropic.claude-opus-4-5-20251101-v1:0",
            1_761_955_200,
        ),
        ("amazon.nova-micro-v1:0", 1_733_184_000),
        ("amazon.nova-lite-v1:0", 1_733_184_000),
        ("amazon.nova-pro-v1:0", 1_733_184_000),
        ("us.amazon.nova-premier-v1:0", 1_745_366_400),
        ("amazon.titan-text-express-v1", 1_700_000_000),
        ("amazon.titan-text-lite-v1", 1_700_000_000),
        ("amazon.titan-text-premier-v1:0", 1_715_126_400),
        ("us.meta.llama3-3-70b-instruct-v1:0", 1_734_048_000),
        ("meta.llama3-1-8b-instruct-v1:0", 1_721_692_800),
        ("meta.llama3-1-70b-instruct-v1:0", 1_721_692_800),
        ("mistral.mistral-large-2407-v1:0", 1_721_865_600),
        ("mistral.mixtral-8x7b-instruct-v0:1", 1_709_251_200),
        ("cohere.command-r-plus-v1:0", 1_714_003_200),
        ("cohere.command-r-v1:0", 1_714_003_200),
        ("ai21.jamba-1-5-large-v1:0", 1_724_716_800),
        ("ai21.jamba-1-5-mini-v1:0", 1_724_716_800),
        ("us.deepseek.r1-v1:0", 1_741_046_400),
        ("openai.gpt-oss-120b-1:0", 1_754_352_000),
        ("openai.gpt-oss-20b-1:0", 1_754_352_000),
        ("qwen.qwen3-32b-v1:0", 1_758_153_600),
        // Embedding models (POST /v1/embeddings).
        ("text-embedding-3-small", 1_705_948_997),
        ("text-embedding-3-large", 1_705_953_180),
        ("text-embedding-ada-002", 1_671_217_299),
        ("amazon.titan-embed-text-v2:0", 1_714_089_600),
        ("amazon.titan-embed-text-v1", 1_695_772_800),
        ("cohere.embed-english-v3", 1_700_000_000),
        ("cohere.embed-multilingual-v3", 1_700_000_000),
        ("cohere.embed-v4:0", 1_745_366_400),
    ];
    rows.iter()
        .map(|(id, created)| ModelEntry {
            id: (*id).to_string(),
            owned_by: None,
            created: Some(*created),
        })
        .collect()
}

/// Owner of a model id, from its family prefix.
pub fn owner_of(id: &str) -> String {
    let base = base_model_id(id);
    match base.split_once('.') {
        Some((family, _)) if !id.starts_with("gpt-") => family.to_string(),
        _ => "openai".to_string(),
    }
}

/// The catalog as served: entries with owners filled in, plus one entry per alias.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    entries: Vec<ModelEntry>,
}

impl Catalog {
    /// Builds the catalog from explicit entries and aliases (alias entries inherit the
    /// target's owner and date).
    pub fn new(models: Vec<ModelEntry>, aliases: &BTreeMap<String, String>) -> Catalog {
        let mut entries: Vec<ModelEntry> = Vec::with_capacity(models.len() + aliases.len());
        for m in models {
            if entries.iter().any(|e| e.id == m.id) {
                continue;
            }
            let owned_by = m.owned_by.clone().or_else(|| Some(owner_of(&m.id)));
            entries.push(ModelEntry { owned_by, ..m });
        }
        for (alias, target) in aliases {
            if entries.iter().any(|e| &e.id == alias) {
                continue;
            }
            let created = entries
                .iter()
                .find(|e| &e.id == target)
                .and_then(|e| e.created);
            entries.push(ModelEntry {
                id: alias.clone(),
                owned_by: Some(owner_of(target)),
                created,
            });
        }
        Catalog { entries }
    }

    /// Looks a model up by id.
    pub fn get(&self, id: &str) -> Option<&ModelEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// The OpenAI `Model` object for an entry.
    pub fn model_value(entry: &ModelEntry) -> Value {
        json!({
            "id": entry.id,
            "object": "model",
            "created": entry.created.unwrap_or(0),
            "owned_by": entry.owned_by.clone().unwrap_or_else(|| owner_of(&entry.id)),
        })
    }

    /// The OpenAI list envelope of all entries.
    pub fn list_value(&self) -> Value {
        let data: Vec<Value> = self.entries.iter().map(Catalog::model_value).collect();
        json!({"object": "list", "data": data})
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the catalog is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::default_aliases;

    #[test]
    fn catalog_has_models_and_aliases() {
        let c = Catalog::new(default_models(), &default_aliases());
        let haiku = c.get("claude-3-haiku").unwrap();
        assert_eq!(haiku.owned_by.as_deref(), Some("anthropic"));
        assert_eq!(haiku.created, Some(1_709_769_600));
        assert_eq!(c.get("gpt-4o").unwrap().owned_by.as_deref(), Some("openai"));
        assert_eq!(
            c.get("us.meta.llama3-3-70b-instruct-v1:0")
                .unwrap()
                .owned_by
                .as_deref(),
            Some("meta")
        );
        let list = c.list_value();
        assert_eq!(list["object"], "list");
        assert_eq!(list["data"].as_array().unwrap().len(), c.len());
    }
}
