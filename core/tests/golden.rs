#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Golden fixtures: client request → planned upstream request, and upstream answer → client
//! answer, for every input format × upstream API and every upstream API × target format.
//!
//! Each fixture is one JSON file holding the input and the expected output. Run with
//! `UPDATE_GOLDEN=1` to rewrite the expected parts after a deliberate change, then review the
//! diff before committing it.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use unigate_core::config::Gateway;
use unigate_core::doors::Door;
use unigate_core::plan::{plan, PlanInput};
use unigate_core::response::translate_buffered;

const NOW: u64 = 1_700_000_000;
const REQUEST_ID: &str = "0123456789abcdef0123456789abcdef";

fn gateway() -> Gateway {
    gateway_with(&Value::Null)
}

/// The test gateway with a fixture's `"config"` merged over the base configuration.
fn gateway_with(extra: &Value) -> Gateway {
    let env = |k: &str| match k {
        "API_KEY" => Some("test-key".to_string()),
        "OPENAI_API_KEY" => Some("sk-upstream".to_string()),
        _ => None,
    };
    let mut config =
        json!({"aws_region": "us-east-1", "openai_base_url": "https://api.openai.com/v1"});
    if let Some(o) = extra.as_object() {
        for (k, v) in o {
            config[k] = v.clone();
        }
    }
    Gateway::from_json(config.to_string().as_bytes(), &env).unwrap()
}

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

fn update() -> bool {
    std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1")
}

fn load(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn save(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap() + "\n").unwrap();
}

fn body_value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(bytes)))
}

/// The door a fixture's request comes through (`"door"`, default the chat door).
fn door(case: &Value) -> Door {
    match case["door"].as_str() {
        None | Some("chat") => Door::Chat,
        Some("messages") => Door::Messages,
        Some("count_tokens") => Door::CountTokens,
        Some("responses") => Door::Responses,
        Some("embeddings") => Door::Embeddings,
        Some(other) => panic!("unknown door {other}"),
    }
}

/// Runs one request fixture and returns what the plan produced.
fn run_request(gw: &Gateway, case: &Value) -> Value {
    let body = serde_json::to_vec(&case["request"]).unwrap();
    run_request_body(gw, case, &body)
}

/// Runs one request fixture with `body` as its request.
fn run_request_body(gw: &Gateway, case: &Value, body: &[u8]) -> Value {
    let body = body.to_vec();
    let target = case["target_format"]
        .as_str()
        .map(|t| format!("target_format={t}"));
    let planned = plan(
        gw,
        &PlanInput::new(door(case), &body)
            .query(target.as_deref())
            .anthropic_beta(case["anthropic_beta"].as_str())
            .request_id(REQUEST_ID)
            .now(NOW),
    );
    match planned {
        Ok(plan) => {
            let headers: serde_json::Map<String, Value> = plan
                .upstream
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            json!({
                "cluster": plan.upstream.cluster,
                "authority": plan.upstream.authority,
                "path": plan.upstream.path,
                "headers": headers,
                "signed": plan.upstream.sign_region.is_some(),
                "response_api": plan.response.upstream.as_str(),
                "passthrough": plan.response.relay,
                "body": body_value(plan.upstream.sent_body(&body)),
            })
        }
        Err(e) => json!({"error_status": e.status, "error": e.to_value()["error"]}),
    }
}

/// Makes every conversation text of `v` (the members the tree builder may leave in the body)
/// long enough to be left there, with escapes and characters from every plane.
fn lengthen_texts(v: &mut Value, top: bool, section: bool) {
    let tail = " — \"quoted\"\n\ttab é 世界 🌍 \\ end ".repeat(8);
    match v {
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                let text = if top {
                    ["system", "instructions", "input", "inputText", "prompt"].contains(&k.as_str())
                } else {
                    section && ["text", "content", "output"].contains(&k.as_str())
                };
                match x {
                    Value::String(s) if text && !s.starts_with("data:") => s.push_str(&tail),
                    _ => {
                        let inner = if top {
                            ["messages", "input", "system"].contains(&k.as_str())
                        } else {
                            section
                        };
                        lengthen_texts(x, false, inner);
                    }
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| lengthen_texts(x, false, section)),
        _ => {}
    }
}

#[test]
fn texts_left_in_a_large_body_change_nothing_upstream() {
    // Bodies of 1 MiB or more leave their conversation texts in the body and write them into
    // the upstream body from there (issue 17): every fixture, its texts lengthened, plans the
    // same whether its body is small (texts copied) or padded past 1 MiB with whitespace.
    let mut checked = 0;
    for path in fixtures("request") {
        let case = load(&path);
        let gw = match case.get("config") {
            Some(extra) => gateway_with(extra),
            None => gateway(),
        };
        let mut request = case["request"].clone();
        lengthen_texts(&mut request, true, false);
        let small = serde_json::to_vec(&request).unwrap();
        let mut large = small.clone();
        large.resize(1 << 20, b' ');
        let copied = run_request_body(&gw, &case, &small);
        let spliced = run_request_body(&gw, &case, &large);
        assert_eq!(copied, spliced, "{}", path.display());
        checked += 1;
    }
    assert!(checked > 50, "{checked}");
}

#[test]
fn request_fixtures() {
    let gw = gateway();
    let mut failures = Vec::new();
    for path in fixtures("request") {
        let mut case = load(&path);
        let got = match case.get("config") {
            Some(extra) => run_request(&gateway_with(extra), &case),
            None => run_request(&gw, &case),
        };
        if update() {
            case["upstream"] = got;
            save(&path, &case);
        } else if case["upstream"] != got {
            failures.push(format!(
                "{}:\n  expected {}\n  got      {}",
                path.file_name().unwrap().to_string_lossy(),
                case["upstream"],
                got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn response_fixtures() {
    let gw = gateway();
    let mut failures = Vec::new();
    for path in fixtures("response") {
        let mut case = load(&path);
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let req = serde_json::to_vec(&case["request"]).unwrap();
        let query = case["target_format"]
            .as_str()
            .map(|t| format!("target_format={t}"));
        let case_gw = case.get("config").map(gateway_with);
        let plan = plan(
            case_gw.as_ref().unwrap_or(&gw),
            &PlanInput::new(door(&case), &req)
                .query(query.as_deref())
                .request_id(REQUEST_ID)
                .now(NOW),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let status = case["upstream_status"].as_u64().unwrap_or(200) as u16;
        let upstream_body = match &case["upstream_body"] {
            Value::String(s) => s.as_bytes().to_vec(),
            v => serde_json::to_vec(v).unwrap(),
        };
        let error_type = case["upstream_error_type"].as_str();
        let resp = translate_buffered(&plan.response, status, error_type, &upstream_body);
        let got = json!({"status": resp.status, "body": body_value(&resp.body)});
        if update() {
            case["expected"] = got;
            save(&path, &case);
        } else if case["expected"] != got {
            failures.push(format!(
                "{name}:\n  expected {}\n  got      {}",
                case["expected"], got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Embeddings planning: the calls a Bedrock fan-out makes (or the relayed OpenAI request).
#[test]
fn embeddings_fixtures() {
    use unigate_core::plan::embeddings::Planned;
    use unigate_core::plan::plan_request;
    let gw = gateway();
    let mut failures = Vec::new();
    for path in fixtures("embeddings") {
        let mut case = load(&path);
        let body = serde_json::to_vec(&case["request"]).unwrap();
        let planned = plan_request(
            &gw,
            &PlanInput::new(Door::Embeddings, &body)
                .request_id(REQUEST_ID)
                .now(NOW),
        );
        let call = |u: &unigate_core::plan::UpstreamRequest| json!({"cluster": u.cluster, "path": u.path, "signed": u.sign_region.is_some(), "body": body_value(&u.body)});
        let got = match planned {
            Ok(Planned::Forward(p)) => json!({"forward": call(&p.upstream)}),
            Ok(Planned::Fanout(f)) => json!({
                "fanout": f.calls.iter().map(call).collect::<Vec<_>>(),
                "batches": f.batches,
                "concurrency": f.concurrency,
            }),
            Err(e) => json!({"error_status": e.status, "error": e.to_value()["error"]}),
        };
        if update() {
            case["upstream"] = got;
            save(&path, &case);
        } else if case["upstream"] != got {
            failures.push(format!(
                "{}:\n  expected {}\n  got      {}",
                path.file_name().unwrap().to_string_lossy(),
                case["upstream"],
                got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
