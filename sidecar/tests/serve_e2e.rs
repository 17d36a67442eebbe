//! End to end: `unigate serve` runs Envoy with the filter and the sidecar against fake OpenAI
//! and Bedrock servers on 127.0.0.1. Checks the generated key, health, the model list, an
//! OpenAI chat call, a Bedrock chat call signed with the sidecar's credentials, and a clean
//! stop on SIGTERM. Skipped (with the reason printed) without Envoy or build/unigate.wasm.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A request the fake upstream received.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A fake upstream answering every request with `answer(path)` (status 200, JSON).
fn fake_upstream(answer: fn(&str) -> String) -> (u16, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let log = log.clone();
            std::thread::spawn(move || {
                let _ = handle(conn, answer, &log);
            });
        }
    });
    (port, seen)
}

fn handle(
    conn: TcpStream,
    answer: fn(&str) -> String,
    log: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split(' ').nth(1).unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body).to_string();
    let reply = answer(&path);
    log.lock().unwrap().push(Seen {
        path,
        headers,
        body,
    });
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    )?;
    conn.flush()
}

fn openai_answer(_path: &str) -> String {
    serde_json::json!({
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello from fake openai"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    })
    .to_string()
}

fn bedrock_answer(_path: &str) -> String {
    serde_json::json!({
        "id": "msg_fake", "type": "message", "role": "assistant",
        "model": "claude-3-haiku-20240307",
        "content": [{"type": "text", "text": "hello from fake bedrock"}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 5, "output_tokens": 6}
    })
    .to_string()
}

#[test]
fn serve_runs_the_gateway() {
    let Some((envoy, wasm)) = envoy_and_wasm("serve_runs_the_gateway") else {
        return;
    };
    let (openai_port, openai_seen) = fake_upstream(openai_answer);
    let (bedrock_port, bedrock_seen) = fake_upstream(bedrock_answer);
    let (port, admin, sidecar) = (free_port(), free_port(), free_port());
    let home = temp_dir("serve-e2e");

    let mut cmd = unigate(&home);
    cmd.arg("serve")
        .arg("--envoy-bin")
        .arg(&envoy)
        .arg("--wasm")
        .arg(&wasm)
        .arg("--port")
        .arg(port.to_string())
        .current_dir(&home)
        .env("ENVOY_ADMIN_PORT", admin.to_string())
        .env("UNIGATE_SIDECAR_PORT", sidecar.to_string())
        .env("ENVOY_CONCURRENCY", "1")
        .env("OPENAI_API_KEY", "sk-fake-upstream-key")
        .env(
            "OPENAI_BASE_URL",
            format!("http://127.0.0.1:{openai_port}/v1"),
        )
        .env("AWS_REGION", "us-east-1")
        .env(
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
            format!("http://127.0.0.1:{bedrock_port}"),
        )
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "secret-example")
        .env("AWS_SESSION_TOKEN", "session-example")
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut guard = Guard(child);

    // Forward unigate's (and Envoy's) stderr to ours, and pick out the key and the ready line.
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[serve] {line}");
            let _ = tx.send(line);
        }
    });
    let mut key = None;
    let start = Instant::now();
    loop {
        let left = Duration::from_secs(40).saturating_sub(start.elapsed());
        let line = rx
            .recv_timeout(left)
            .expect("`unigate serve` did not print its ready line");
        if let Some(k) = line.strip_prefix("unigate: no API_KEY set; generated one for this run: ")
        {
            key = Some(k.to_string());
        }
        if line.starts_with("unigate: gateway on ") {
            assert_eq!(
                line,
                format!("unigate: gateway on http://127.0.0.1:{port} (openai: on, bedrock: us-east-1); Envoy admin on 127.0.0.1:{admin}")
            );
            break;
        }
    }
    let key = key.expect("no generated key printed");
    assert!(key.starts_with("ug-") && key.len() == 35, "{key}");
    let bearer = format!("Bearer {key}");
    let auth = [("authorization", bearer.as_str())];

    // The rendered config holds no secrets.
    let yaml = std::fs::read_to_string(home.join(".run/envoy.yaml")).unwrap();
    for secret in [
        key.as_str(),
        "sk-fake-upstream-key",
        "secret-example",
        "session-example",
    ] {
        assert!(!yaml.contains(secret));
    }

    let health = get(port, "/health", &[]).unwrap();
    assert_eq!(health.status, 200, "{health:?}");

    let models = get(port, "/v1/models", &auth).unwrap();
    assert_eq!(models.status, 200, "{models:?}");
    assert_eq!(models.json()["object"], "list");
    assert_eq!(get(port, "/v1/models", &[]).unwrap().status, 401);

    let chat = |model: &str| {
        let body =
            serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
                .to_string();
        request(
            port,
            "POST",
            "/v1/chat/completions",
            &[
                ("authorization", bearer.as_str()),
                ("content-type", "application/json"),
            ],
            &body,
        )
        .unwrap()
    };

    let a = chat("gpt-4o-mini");
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        a.json()["choices"][0]["message"]["content"],
        "hello from fake openai"
    );
    let seen = openai_seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(
        seen.header("authorization"),
        Some("Bearer sk-fake-upstream-key")
    );

    // Bedrock: the filter signs with the credentials the sidecar resolved from the env.
    let b = chat("anthropic.claude-3-haiku-20240307-v1:0");
    assert_eq!(b.status, 200, "{b:?}");
    assert_eq!(
        b.json()["choices"][0]["message"]["content"],
        "hello from fake bedrock"
    );
    let seen = bedrock_seen.lock().unwrap().last().cloned().unwrap();
    assert!(seen.path.starts_with("/model/"), "{seen:?}");
    let sig = seen.header("authorization").unwrap_or_default();
    assert!(
        sig.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
        "{sig}"
    );
    assert!(sig.contains("/us-east-1/bedrock/aws4_request"), "{sig}");
    assert_eq!(seen.header("x-amz-security-token"), Some("session-example"));
    assert!(seen.body.contains("\"messages\""), "{}", seen.body);

    // SIGTERM: Envoy is stopped and unigate exits 0.
    let status = guard.terminate(Duration::from_secs(15)).unwrap();
    assert!(status.success(), "{status}");
    assert!(
        get(admin, "/ready", &[]).is_none(),
        "Envoy still answers after unigate stopped"
    );
}
