#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Keeps docs/configuration.md true: every plugin-configuration field is documented with its
//! real default, and nothing documented is missing from the code.

use std::collections::BTreeMap;
use unigate_core::config::PluginConfig;

fn documented_fields() -> BTreeMap<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let section = doc.split("## Plugin configuration (JSON)").nth(1).unwrap();
    let section = section.split("\n## ").next().unwrap();
    let table = section.split("\n### ").next().unwrap();
    let mut fields = BTreeMap::new();
    for line in table.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_string();
        fields.insert(name, cells[2].to_string());
    }
    fields
}

#[test]
fn every_field_is_documented_with_its_default() {
    let defaults = serde_json::to_value(PluginConfig::default()).unwrap();
    let defaults = defaults.as_object().unwrap();
    let documented = documented_fields();
    let code: Vec<&String> = defaults.keys().collect();
    let docs: Vec<&String> = documented.keys().collect();
    assert_eq!(code, docs, "fields in code vs docs/configuration.md");
    for (name, value) in defaults {
        let doc_default = &documented[name];
        // Scalars are written as JSON in backticks; structured defaults are described in words.
        if value.is_string() || value.is_number() || value.is_boolean() || value.is_null() {
            assert!(
                doc_default.starts_with(&format!("`{value}`")),
                "default of `{name}`: {doc_default}"
            );
        }
    }
}

/// The stats-tags snippet in docs/operations.md is the table the filter's names are made for,
/// in the same order (the order matters to Envoy).
#[test]
fn the_documented_stats_tags_are_the_filters() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operations.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let block = doc.split("stats_config:\n  stats_tags:\n").nth(1).unwrap();
    let block = block.split("```").next().unwrap();
    let want: String = unigate_core::flow::metrics::STATS_TAGS
        .iter()
        .map(|(name, regex)| format!("  - {{tag_name: {name}, regex: '{regex}'}}\n"))
        .collect();
    assert_eq!(block, want);
}
