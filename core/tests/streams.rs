#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Stream translation against fixture streams (event-stream frames checked with botocore's
//! decoder; see fixtures/streams/generate.py): the whole stream at once, split at every byte
//! offset, and byte by byte, for every upstream API × target format. The client-facing output
//! must be identical however the upstream bytes were split, and must carry the right text,
//! tool calls (valid JSON arguments), finish reason and usage.

use serde_json::{json, Value};
use std::path::Path;
use unigate_core::formats::Format;
use unigate_core::ir::ResponseMeta;
use unigate_core::plan::ResponsePlan;
use unigate_core::stream::sse::SseDecoder;
use unigate_core::stream::StreamTranslator;

fn fixture(name: &str) -> (Vec<u8>, Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/streams");
    let bytes = std::fs::read(dir.join(name)).unwrap();
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("{name}.expected.json"))).unwrap(),
    )
    .unwrap();
    (bytes, expected)
}

fn api_of(expected: &Value) -> Format {
    // Fixtures name the upstream API; the routing table's names (old and new) parse.
    serde_json::from_value(expected["api"].clone()).unwrap()
}

fn plan(api: Format, target: Format) -> ResponsePlan {
    ResponsePlan {
        operation: unigate_core::ir::Operation::Chat,
        upstream: api,
        input: Format::OpenaiChat,
        target,
        stream: true,
        include_usage: true,
        structured: false,
        relay: unigate_core::plan::relays(api, target, false),
        meta: ResponseMeta {
            id: "chatcmpl-test".into(),
            created: 1_700_000_000,
            model: "client-model".into(),
            legacy_functions: false,
            echo: Default::default(),
        },
        timeout_secs: 600,
        extra_headers: Vec::new(),
    }
}

fn run(plan: &ResponsePlan, pieces: &[&[u8]]) -> Vec<u8> {
    let mut t = StreamTranslator::new(plan).unwrap();
    let mut out = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        out.extend(t.push(p, i + 1 == pieces.len()));
    }
    assert!(t.finished(), "stream not finished");
    assert_eq!(t.buffered(), 0);
    out
}

fn events(out: &[u8]) -> Vec<(Option<String>, String)> {
    let mut d = SseDecoder::new();
    let mut ev = d.push(out).unwrap();
    ev.extend(d.finish());
    ev.into_iter().map(|e| (e.event, e.data)).collect()
}

/// What a client reconstructs from the output.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    text: String,
    reasoning: String,
    tools: Vec<(String, String, String)>,
    finish: Option<String>,
    usage: Option<(u64, u64, u64)>,
    error: Option<Value>,
    id: Option<String>,
}

fn read_openai(out: &[u8]) -> Seen {
    let ev = events(out);
    let mut s = Seen::default();
    assert_eq!(ev.last().unwrap().1, "[DONE]", "must end with [DONE]");
    assert_eq!(ev.iter().filter(|e| e.1 == "[DONE]").count(), 1);
    for (i, (_, data)) in ev.iter().enumerate() {
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        if let Some(e) = v.get("error") {
            s.error = Some(e.clone());
            continue;
        }
        assert_eq!(v["object"], "chat.completion.chunk");
        let id = v["id"].as_str().unwrap().to_string();
        assert_eq!(
            s.id.get_or_insert(id.clone()),
            &id,
            "every chunk has the same id"
        );
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            assert!(v["choices"].as_array().unwrap().is_empty());
            s.usage = Some((
                u["prompt_tokens"].as_u64().unwrap(),
                u["completion_tokens"].as_u64().unwrap(),
                u["prompt_tokens_details"]["cached_tokens"]
                    .as_u64()
                    .unwrap(),
            ));
        }
        for c in v["choices"].as_array().unwrap() {
            assert_eq!(c["index"], 0, "choices[].index is always 0");
            let d = &c["delta"];
            if i == 0 {
                assert_eq!(d["role"], "assistant", "first chunk carries the role");
            }
            if let Some(t) = d["content"].as_str() {
                s.text.push_str(t);
            }
            if let Some(t) = d["reasoning_content"].as_str() {
                s.reasoning.push_str(t);
            }
            for tc in d["tool_calls"].as_array().into_iter().flatten() {
                let idx = tc["index"].as_u64().unwrap() as usize;
                if let Some(id) = tc["id"].as_str() {
                    assert_eq!(idx, s.tools.len(), "tool indexes are dense");
                    s.tools.push((
                        id.into(),
                        tc["function"]["name"].as_str().unwrap().into(),
                        String::new(),
                    ));
                }
                s.tools[idx]
                    .2
                    .push_str(tc["function"]["arguments"].as_str().unwrap_or_default());
            }
            if let Some(f) = c["finish_reason"].as_str() {
                assert!(s.finish.is_none(), "one finish chunk");
                s.finish = Some(f.into());
            }
        }
    }
    s
}

fn read_anthropic(out: &[u8]) -> Seen {
    let ev = events(out);
    let mut s = Seen::default();
    let names: Vec<&str> = ev.iter().map(|e| e.0.as_deref().unwrap()).collect();
    if names.last() != Some(&"error") {
        assert_eq!(names.first(), Some(&"message_start"));
        assert_eq!(names.last(), Some(&"message_stop"));
    }
    let mut open: Option<u64> = None;
    // Dense block indexes: the SDKs index the final `content` array with them.
    let mut next_index = 0;
    let mut input_tokens = 0;
    let mut cached = 0;
    for (name, data) in &ev {
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(
            v["type"].as_str(),
            name.as_deref(),
            "event name matches type"
        );
        match name.as_deref().unwrap() {
            "message_start" => {
                let u = &v["message"]["usage"];
                assert!(
                    u["output_tokens"].as_u64().is_some(),
                    "message_start carries usage"
                );
                input_tokens = u["input_tokens"].as_u64().unwrap();
                cached = u["cache_read_input_tokens"].as_u64().unwrap_or(0);
            }
            "content_block_start" => {
                assert!(open.is_none(), "blocks do not overlap");
                assert_eq!(v["index"].as_u64(), Some(next_index), "dense block indexes");
                next_index += 1;
                open = Some(v["index"].as_u64().unwrap());
                let cb = &v["content_block"];
                if cb["type"] == "tool_use" {
                    s.tools.push((
                        cb["id"].as_str().unwrap().into(),
                        cb["name"].as_str().unwrap().into(),
                        String::new(),
                    ));
                }
            }
            "content_block_delta" => {
                assert_eq!(open, v["index"].as_u64());
                let d = &v["delta"];
                match d["type"].as_str().unwrap() {
                    "text_delta" => s.text.push_str(d["text"].as_str().unwrap()),
                    "thinking_delta" => s.reasoning.push_str(d["thinking"].as_str().unwrap()),
                    "input_json_delta" => s
                        .tools
                        .last_mut()
                        .unwrap()
                        .2
                        .push_str(d["partial_json"].as_str().unwrap()),
                    "signature_delta" => {}
                    other => panic!("{other}"),
                }
            }
            "content_block_stop" => {
                assert_eq!(open, v["index"].as_u64());
                open = None;
            }
            "message_delta" => {
                s.finish = v["delta"]["stop_reason"].as_str().map(str::to_string);
                let out_tokens = v["usage"]["output_tokens"].as_u64().unwrap();
                let in_tokens = v["usage"]["input_tokens"].as_u64().unwrap_or(input_tokens);
                let c = v["usage"]["cache_read_input_tokens"]
                    .as_u64()
                    .unwrap_or(cached);
                let cw = v["usage"]["cache_creation_input_tokens"]
                    .as_u64()
                    .unwrap_or(0);
                s.usage = Some((in_tokens.max(input_tokens) + c + cw, out_tokens, c));
            }
            "message_stop" => {}
            "error" => s.error = Some(v["error"].clone()),
            other => panic!("unexpected event {other}"),
        }
    }
    s
}

fn read_titan(out: &[u8]) -> Seen {
    let mut s = Seen::default();
    for (_, data) in events(out) {
        let v: Value = serde_json::from_str(&data).unwrap();
        if v.get("error").is_some() {
            s.error = Some(v["error"].clone());
            continue;
        }
        s.text.push_str(v["outputText"].as_str().unwrap());
        if let Some(r) = v["completionReason"].as_str() {
            s.finish = Some(r.into());
            s.usage = Some((
                v["inputTextTokenCount"].as_u64().unwrap(),
                v["totalOutputTextTokenCount"].as_u64().unwrap(),
                0,
            ));
        }
    }
    s
}

fn check_split_invariance(name: &str, target: Format) -> Vec<u8> {
    let (bytes, expected) = fixture(name);
    let p = plan(api_of(&expected), target);
    let whole = run(&p, &[&bytes]);
    for split in 0..=bytes.len() {
        let got = run(&p, &[&bytes[..split], &bytes[split..]]);
        assert_eq!(
            got, whole,
            "{name} {target:?}: output differs when split at {split}"
        );
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(run(&p, &singles), whole, "{name} {target:?}: byte by byte");
    let odd: Vec<&[u8]> = bytes.chunks(7).collect();
    assert_eq!(run(&p, &odd), whole, "{name} {target:?}: 7-byte pieces");
    whole
}

fn expected_tools(expected: &Value) -> Vec<(String, String, Value)> {
    expected["tools"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    (
                        t["id"].as_str().unwrap().into(),
                        t["name"].as_str().unwrap().into(),
                        t["arguments"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn assert_tools(seen: &Seen, expected: &Value) {
    let want = expected_tools(expected);
    assert_eq!(seen.tools.len(), want.len(), "tool count");
    for ((id, name, args), (wid, wname, wargs)) in seen.tools.iter().zip(want) {
        assert_eq!((id, name), (&wid, &wname));
        let parsed: Value = serde_json::from_str(args)
            .unwrap_or_else(|e| panic!("tool args not JSON: {args}: {e}"));
        assert_eq!(parsed, wargs);
    }
}

const COMPLETE: &[&str] = &[
    "claude_invoke_stream.bin",
    "converse_stream.bin",
    "converse_guardrail_stream.bin",
    "titan_stream.bin",
    "openai_stream.sse",
];

#[test]
fn openai_target_every_split() {
    for name in COMPLETE {
        let (_, expected) = fixture(name);
        let out = check_split_invariance(name, Format::OpenaiChat);
        let s = read_openai(&out);
        assert_eq!(s.text, expected["text"].as_str().unwrap(), "{name}");
        assert_eq!(
            s.reasoning,
            expected["reasoning"].as_str().unwrap_or_default(),
            "{name}"
        );
        assert_tools(&s, &expected);
        assert_eq!(
            s.finish.as_deref(),
            expected["finish_reason"].as_str(),
            "{name}"
        );
        let (p, c, cached) = s.usage.unwrap();
        assert_eq!(
            p,
            expected["prompt_tokens"].as_u64().unwrap(),
            "{name} prompt"
        );
        assert_eq!(
            c,
            expected["completion_tokens"].as_u64().unwrap(),
            "{name} completion"
        );
        assert_eq!(
            cached,
            expected["cached_tokens"].as_u64().unwrap(),
            "{name} cached"
        );
        assert!(s.error.is_none());
    }
}

#[test]
fn anthropic_target_every_split() {
    for name in COMPLETE {
        let (_, expected) = fixture(name);
        let out = check_split_invariance(name, Format::Anthropic);
        let s = read_anthropic(&out);
        assert_eq!(s.text, expected["text"].as_str().unwrap(), "{name}");
        assert_tools(&s, &expected);
        let want_stop = match expected["finish_reason"].as_str().unwrap() {
            "tool_calls" => "tool_use",
            "content_filter" => "refusal",
            "length" => "max_tokens",
            _ => "end_turn",
        };
        assert_eq!(s.finish.as_deref(), Some(want_stop), "{name}");
        let (_, c, _) = s.usage.unwrap();
        assert_eq!(c, expected["completion_tokens"].as_u64().unwrap(), "{name}");
    }
}

#[test]
fn titan_target_every_split() {
    for name in COMPLETE {
        let (_, expected) = fixture(name);
        let out = check_split_invariance(name, Format::Titan);
        let s = read_titan(&out);
        assert_eq!(s.text, expected["text"].as_str().unwrap(), "{name}");
        assert!(
            s.finish.is_some(),
            "{name}: final chunk has a completion reason"
        );
        let (p, c, _) = s.usage.unwrap();
        assert_eq!(c, expected["completion_tokens"].as_u64().unwrap(), "{name}");
        assert_eq!(p, expected["prompt_tokens"].as_u64().unwrap(), "{name}");
    }
}

#[test]
fn exception_frame_becomes_one_in_band_error() {
    let name = "claude_exception_stream.bin";
    let (bytes, expected) = fixture(name);
    for target in [Format::OpenaiChat, Format::Anthropic, Format::Titan] {
        let out = check_split_invariance(name, target);
        let s = match target {
            Format::OpenaiChat => read_openai(&out),
            Format::Anthropic => read_anthropic(&out),
            Format::Titan => read_titan(&out),
            other => panic!("{other:?} is not a client format"),
        };
        assert_eq!(s.text, "Partial");
        let err = s
            .error
            .unwrap_or_else(|| panic!("{target:?}: no error event"));
        assert_eq!(err["code"], expected["error_code"]);
        assert!(err["message"]
            .as_str()
            .unwrap()
            .contains("Too many requests"));
        if target == Format::OpenaiChat {
            assert_eq!(err["type"], "rate_limit_error");
        }
    }
    // Data after the error is ignored.
    let p = plan(Format::Anthropic, Format::OpenaiChat);
    let mut t = StreamTranslator::new(&p).unwrap();
    let first = t.push(&bytes, false);
    assert!(t.finished());
    assert!(t.push(b"garbage after the end", true).is_empty());
    assert!(!first.is_empty());
}

#[test]
fn truncated_streams_never_end_silently() {
    for name in COMPLETE {
        let (bytes, expected) = fixture(name);
        let api = api_of(&expected);
        // Cut in the middle (inside a frame or event) and right after the first third.
        for cut in [bytes.len() / 2, bytes.len() / 3] {
            let out = run(&plan(api, Format::OpenaiChat), &[&bytes[..cut]]);
            let s = read_openai(&out);
            assert!(
                s.error.is_some(),
                "{name} cut at {cut}: a truncated stream must end with an error event"
            );
            assert_eq!(s.error.unwrap()["code"], "upstream_stream_truncated");
        }
    }
}

#[test]
fn same_format_passthrough_keeps_provider_events() {
    // Claude → Claude: the Anthropic events come out as they went in (minus metrics).
    let (bytes, _) = fixture("claude_invoke_stream.bin");
    let mut p = plan(Format::Anthropic, Format::Anthropic);
    p.relay = true;
    let out = run(&p, &[&bytes]);
    let ev = events(&out);
    let start: Value = serde_json::from_str(&ev[0].1).unwrap();
    assert_eq!(start["message"]["id"], "msg_bdrk_01HkP3");
    assert_eq!(start["message"]["model"], "claude-3-5-haiku-20241022");
    assert!(!String::from_utf8_lossy(&out).contains("invocationMetrics"));
    assert!(!ev.iter().any(|e| e.0.as_deref() == Some("ping")));
    // OpenAI → OpenAI: bytes pass through; the usage chunk only when the client asked.
    let (bytes, _) = fixture("openai_stream.sse");
    let mut p = plan(Format::OpenaiChat, Format::OpenaiChat);
    let with_usage = run(&p, &[&bytes]);
    assert_eq!(
        with_usage,
        String::from_utf8_lossy(&bytes)
            .replace(": keep-alive comment\r\n\r\n", "")
            .into_bytes()
    );
    p.include_usage = false;
    let without = read_openai(&run(&p, &[&bytes]));
    assert!(without.usage.is_none());
}

#[test]
fn structured_output_tool_becomes_text() {
    use unigate_core::formats::bedrock::STRUCTURED_OUTPUT_TOOL;
    use unigate_core::stream::eventstream::event_frame;
    let frames: Vec<u8> = [
        json!({"messageStart": {"role": "assistant"}}),
        json!({"contentBlockStart": {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t1", "name": STRUCTURED_OUTPUT_TOOL}}}}),
        json!({"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{\"answer\":"}}}}),
        json!({"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"toolUse": {"input": "42}"}}}}),
        json!({"contentBlockStop": {"contentBlockIndex": 0}}),
        json!({"messageStop": {"stopReason": "tool_use"}}),
        json!({"metadata": {"usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7}}}),
    ]
    .iter()
    .flat_map(|e| {
        let (k, v) = e.as_object().unwrap().iter().next().unwrap();
        event_frame(k, v.to_string().as_bytes())
    })
    .collect();
    let mut p = plan(Format::Converse, Format::OpenaiChat);
    p.structured = true;
    let s = read_openai(&run(&p, &[&frames]));
    assert_eq!(s.text, "{\"answer\":42}");
    assert!(s.tools.is_empty());
    assert_eq!(s.finish.as_deref(), Some("stop"));
}

/// What a Responses client (openai-python's stream helper, Codex) reconstructs, checked
/// against the grammar on the way: names match types, `sequence_number`s count up from 0,
/// lifecycle events share one string id, items are announced at dense output indexes and
/// finished one at a time, deltas add up to the done events, and the terminal event repeats the
/// finished items and carries integer usage.
fn read_responses(out: &[u8]) -> (Seen, Value) {
    let ev = events(out);
    let mut s = Seen::default();
    let mut items: Vec<Value> = Vec::new();
    let mut open: Option<(u64, String)> = None;
    let mut text = String::new();
    let mut args = String::new();
    let mut terminal = Value::Null;
    assert!(!ev.iter().any(|e| e.1 == "[DONE]"), "no [DONE]");
    for (n, (name, data)) in ev.iter().enumerate() {
        let v: Value = serde_json::from_str(data).unwrap();
        let kind = v["type"].as_str().unwrap();
        assert_eq!(Some(kind), name.as_deref(), "event name matches type");
        assert_eq!(v["sequence_number"], n as u64, "sequence numbers count up");
        assert!(terminal.is_null(), "nothing after the terminal event");
        assert!(
            v.get("error").is_none(),
            "no top-level error key (the SDK raises)"
        );
        if n == 0 {
            assert_eq!(kind, "response.created", "first event");
        }
        if let Some(r) = v.get("response") {
            let id = r["id"]
                .as_str()
                .expect("response.id is a string")
                .to_string();
            assert_eq!(s.id.get_or_insert(id.clone()), &id, "one response id");
            assert_eq!(r["object"], "response");
        }
        let index = v["output_index"].as_u64();
        if kind.ends_with(".delta")
            || kind.ends_with(".done") && kind != "response.output_item.done"
        {
            let (oi, id) = open.clone().expect("a part event belongs to an open item");
            assert_eq!(
                (index, v["item_id"].as_str()),
                (Some(oi), Some(id.as_str()))
            );
        }
        match kind {
            "response.created" | "response.in_progress" => {
                assert_eq!(v["response"]["status"], "in_progress");
            }
            "response.output_item.added" => {
                assert!(open.is_none(), "one item at a time");
                assert_eq!(index, Some(items.len() as u64), "dense output indexes");
                let id = v["item"]["id"].as_str().unwrap().to_string();
                open = Some((index.unwrap(), id));
                text.clear();
                args.clear();
            }
            "response.content_part.added" | "response.reasoning_summary_part.added" => {}
            "response.output_text.delta" => {
                assert_eq!(v["logprobs"], json!([]));
                text.push_str(v["delta"].as_str().unwrap());
            }
            "response.output_text.done" => assert_eq!(v["text"], text.as_str()),
            "response.reasoning_summary_text.delta" => {
                text.push_str(v["delta"].as_str().unwrap());
            }
            "response.reasoning_summary_text.done" => assert_eq!(v["text"], text.as_str()),
            "response.function_call_arguments.delta" | "response.custom_tool_call_input.delta" => {
                args.push_str(v["delta"].as_str().unwrap());
            }
            "response.function_call_arguments.done" => {
                assert_eq!(v["arguments"], args.as_str());
                assert!(v["name"].is_string());
            }
            "response.custom_tool_call_input.done" => assert_eq!(v["input"], args.as_str()),
            "response.content_part.done" | "response.reasoning_summary_part.done" => {}
            "response.output_item.done" => {
                let (oi, id) = open.take().expect("done follows added");
                assert_eq!(index, Some(oi));
                let item = v["item"].clone();
                assert_eq!(item["id"], id.as_str());
                match item["type"].as_str().unwrap() {
                    "message" => {
                        let t = item["content"][0]["text"].as_str().unwrap();
                        assert_eq!(t, text, "message item = its deltas");
                        s.text.push_str(t);
                    }
                    "reasoning" => {
                        let t = item["summary"][0]["text"].as_str().unwrap_or_default();
                        s.reasoning.push_str(t);
                    }
                    "function_call" => {
                        assert_eq!(item["arguments"], args.as_str());
                        s.tools.push((
                            item["call_id"].as_str().unwrap().into(),
                            item["name"].as_str().unwrap().into(),
                            args.clone(),
                        ));
                    }
                    "custom_tool_call" => s.tools.push((
                        item["call_id"].as_str().unwrap().into(),
                        item["name"].as_str().unwrap().into(),
                        json!({"input": item["input"]}).to_string(),
                    )),
                    other => panic!("unexpected item {other}"),
                }
                items.push(item);
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                let r = &v["response"];
                let status = kind.trim_start_matches("response.");
                assert_eq!(r["status"], status);
                if status != "failed" {
                    assert!(open.is_none(), "every item finished");
                    assert_eq!(
                        r["output"],
                        json!(items),
                        "terminal output = the done items"
                    );
                }
                let u = &r["usage"];
                // Codex fails a turn whose completed usage is not integers; a failure may
                // have none (OpenAI sends null).
                if status != "failed" || !u.is_null() {
                    let (i, o, t) = (
                        u["input_tokens"].as_u64().expect("integer input_tokens"),
                        u["output_tokens"].as_u64().expect("integer output_tokens"),
                        u["total_tokens"].as_u64().expect("integer total_tokens"),
                    );
                    assert_eq!(i + o, t);
                    let cached = u["input_tokens_details"]["cached_tokens"].as_u64();
                    s.usage = Some((i, o, cached.expect("integer cached_tokens")));
                }
                s.finish = Some(match (status, r["incomplete_details"]["reason"].as_str()) {
                    ("incomplete", Some("content_filter")) => "content_filter".into(),
                    ("incomplete", _) => "length".into(),
                    ("failed", _) => "failed".into(),
                    _ if s.tools.is_empty() => "stop".into(),
                    _ => "tool_calls".into(),
                });
                if status == "failed" {
                    s.error = Some(r["error"].clone());
                }
                terminal = v.clone();
            }
            other => panic!("unexpected event {other}"),
        }
    }
    assert!(!terminal.is_null(), "the stream ends with a terminal event");
    (s, terminal)
}

fn responses_plan(api: Format) -> ResponsePlan {
    let mut p = plan(api, Format::Responses);
    p.meta.id = "resp_test".into();
    p
}

#[test]
fn responses_target_every_split() {
    let mut all = COMPLETE.to_vec();
    // OpenAI's own stream, relayed.
    all.push("openai_responses_stream.sse");
    for name in all {
        let (bytes, expected) = fixture(name);
        let api = api_of(&expected);
        let p = responses_plan(api);
        let whole = run(&p, &[&bytes]);
        for split in 0..=bytes.len() {
            let got = run(&p, &[&bytes[..split], &bytes[split..]]);
            assert_eq!(got, whole, "{name}: output differs when split at {split}");
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(run(&p, &singles), whole, "{name}: byte by byte");
        let (s, _) = read_responses(&whole);
        assert_eq!(s.text, expected["text"].as_str().unwrap(), "{name}");
        assert_eq!(
            s.reasoning,
            expected["reasoning"].as_str().unwrap_or_default(),
            "{name}"
        );
        assert_tools(&s, &expected);
        assert_eq!(
            s.finish.as_deref(),
            expected["finish_reason"].as_str(),
            "{name}"
        );
        let (i, o, cached) = s.usage.unwrap();
        assert_eq!(i, expected["prompt_tokens"].as_u64().unwrap(), "{name}");
        assert_eq!(o, expected["completion_tokens"].as_u64().unwrap(), "{name}");
        assert_eq!(
            cached,
            expected["cached_tokens"].as_u64().unwrap(),
            "{name}"
        );
        if api == Format::Responses {
            assert_eq!(whole, bytes, "{name}: relayed byte for byte");
        } else {
            assert_eq!(s.id.as_deref(), Some("resp_test"));
        }
    }
}

#[test]
fn responses_target_failures_end_with_response_failed() {
    // Bedrock throttling mid-stream: the code Codex waits on.
    let (bytes, _) = fixture("claude_exception_stream.bin");
    let p = responses_plan(Format::Anthropic);
    let (s, terminal) = read_responses(&check_split_invariance_plan(&p, &bytes));
    assert_eq!(s.finish.as_deref(), Some("failed"));
    assert_eq!(s.error.unwrap()["code"], "rate_limit_exceeded");
    // The partial message was announced but is not reported as done.
    assert_eq!(terminal["response"]["output"], json!([]));
    // Truncated upstreams never end silently.
    for name in COMPLETE {
        let (bytes, expected) = fixture(name);
        let p = responses_plan(api_of(&expected));
        let out = run(&p, &[&bytes[..bytes.len() / 2]]);
        let (s, _) = read_responses(&out);
        assert_eq!(
            s.error.unwrap()["code"],
            "upstream_stream_truncated",
            "{name}"
        );
    }
    // OpenAI's own failure reaches a relayed client as OpenAI sent it, and nothing after it.
    let (bytes, expected) = fixture("openai_responses_failed_stream.sse");
    let p = responses_plan(Format::Responses);
    assert!(p.relay);
    let out = check_split_invariance_plan(&p, &bytes);
    assert_eq!(out, bytes);
    let (s, _) = read_responses(&out);
    assert_eq!(s.error.unwrap()["code"], expected["error_code"]);
    // Translated for a Chat Completions client, the same failure is an in-band error.
    let s = read_openai(&run(
        &plan(Format::Responses, Format::OpenaiChat),
        &[&bytes],
    ));
    assert_eq!(s.error.unwrap()["code"], "context_length_exceeded");
}

#[test]
fn openai_responses_streams_translate_for_other_clients() {
    // Only the Responses door reaches OpenAI's /responses today; the decoder still speaks IR.
    let name = "openai_responses_stream.sse";
    let (bytes, expected) = fixture(name);
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    for target in [Format::OpenaiChat, Format::Anthropic] {
        let p = plan(Format::Responses, target);
        let whole = run(&p, &[&bytes]);
        assert_eq!(run(&p, &singles), whole, "{target:?}: byte by byte");
        let s = match target {
            Format::OpenaiChat => read_openai(&whole),
            _ => read_anthropic(&whole),
        };
        assert_eq!(s.text, expected["text"].as_str().unwrap());
        assert_tools(&s, &expected);
        assert!(s.error.is_none());
    }
    let s = read_openai(&run(
        &plan(Format::Responses, Format::OpenaiChat),
        &[&bytes],
    ));
    assert_eq!(s.reasoning, "Weather first.");
    assert_eq!(s.usage, Some((512, 44, 256)));
    assert_eq!(s.finish.as_deref(), Some("tool_calls"));
}

fn check_split_invariance_plan(p: &ResponsePlan, bytes: &[u8]) -> Vec<u8> {
    let whole = run(p, &[bytes]);
    for split in 0..=bytes.len() {
        assert_eq!(
            run(p, &[&bytes[..split], &bytes[split..]]),
            whole,
            "split at {split}"
        );
    }
    whole
}

#[test]
fn responses_target_maps_client_tool_shapes_back() {
    use unigate_core::ir::{ClientEcho, ToolAlias};
    // Codex's custom apply_patch and a namespaced function, answered by Claude.
    let (bytes, _) = fixture("claude_invoke_stream.bin");
    let mut p = responses_plan(Format::Anthropic);
    p.meta.echo = ClientEcho {
        tools: vec![
            ToolAlias {
                flat: "get_weather".into(),
                namespace: None,
                name: "get_weather".into(),
                custom: true,
            },
            ToolAlias {
                flat: "get_time".into(),
                namespace: Some("clock".into()),
                name: "now".into(),
                custom: false,
            },
        ],
        replayable_reasoning: true,
        ..ClientEcho::default()
    };
    let out = run(&p, &[&bytes]);
    let (_, terminal) = read_responses(&out);
    let output = terminal["response"]["output"].as_array().unwrap();
    assert_eq!(output[0]["type"], "reasoning");
    assert!(output[0]["encrypted_content"]
        .as_str()
        .unwrap()
        .starts_with("ug1:"));
    // {"city": "Porto"} has no string `input`: passed on as the JSON text it is.
    assert_eq!(output[2]["type"], "custom_tool_call");
    assert_eq!(output[2]["input"], "{\"city\": \"Porto\"}");
    assert_eq!(output[3]["type"], "function_call");
    assert_eq!(
        (&output[3]["namespace"], &output[3]["name"]),
        (&json!("clock"), &json!("now"))
    );
}

/// The Responses streams the Python SDK check (tests/test_responses_shapes.py) parses, kept in
/// core/tests/fixtures/responses/ (`UPDATE_GOLDEN=1` rewrites them): the encoder's output for
/// each kind of upstream answer, with Codex's tool shapes and sealed reasoning.
#[test]
fn responses_stream_goldens_are_current() {
    use unigate_core::ir::ToolAlias;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/responses");
    let cases = [
        ("claude_invoke_stream.bin", "claude_tools.sse", true),
        ("converse_stream.bin", "converse_tools.sse", false),
        (
            "converse_guardrail_stream.bin",
            "converse_content_filter.sse",
            false,
        ),
        ("claude_exception_stream.bin", "claude_throttled.sse", false),
        ("openai_stream.sse", "openai_chat_translated.sse", false),
    ];
    let mut stale = Vec::new();
    for (input, golden, codex_tools) in cases {
        let (bytes, expected) = fixture(input);
        let mut p = responses_plan(api_of(&expected));
        p.meta.model = "us.anthropic.claude-sonnet-4-20250514-v1:0".into();
        p.meta.echo.replayable_reasoning = true;
        if codex_tools {
            // As if Codex had declared get_weather in a namespace and get_time as custom.
            p.meta.echo.tools = vec![
                ToolAlias {
                    flat: "get_weather".into(),
                    namespace: Some("weather".into()),
                    name: "get_weather".into(),
                    custom: false,
                },
                ToolAlias {
                    flat: "get_time".into(),
                    namespace: None,
                    name: "get_time".into(),
                    custom: true,
                },
            ];
        }
        let out = run(&p, &[&bytes]);
        read_responses(&out);
        let path = dir.join(golden);
        if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &out).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(out.as_slice()) {
            stale.push(golden);
        }
    }
    assert!(
        stale.is_empty(),
        "{stale:?} differ: run with UPDATE_GOLDEN=1 and review the diff"
    );
}
