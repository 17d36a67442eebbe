//! Runs the real `unigate sidecar` and checks the credentials endpoint's contract.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use std::process::Stdio;
use std::time::Duration;

const TOKEN: &str = "test-sidecar-token-0123456789";

/// Starts `unigate sidecar` on a free port with extra environment variables.
fn start_sidecar(name: &str, vars: &[(&str, &str)]) -> (Guard, u16) {
    let home = temp_dir(name);
    let port = free_port();
    let mut cmd = unigate(&home);
    cmd.arg("sidecar")
        .arg("--port")
        .arg(port.to_string())
        .env("UNIGATE_SIDECAR_TOKEN", TOKEN)
        .env("AWS_REGION", "us-east-1")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut guard = Guard(cmd.spawn().unwrap());
    wait_for_200(port, "/health", Duration::from_secs(20), &mut guard.0, name);
    (guard, port)
}

fn creds(port: u16, token: Option<&str>) -> Answer {
    let headers: Vec<(&str, &str)> = token.map(|t| ("x-unigate-token", t)).into_iter().collect();
    get(port, "/v1/internal/aws-credentials", &headers).unwrap()
}

fn assert_openai_error(a: &Answer, status: u16) -> String {
    assert_eq!(a.status, status, "{a:?}");
    let v = a.json();
    let e = &v["error"];
    for field in ["message", "type", "param", "code"] {
        assert!(e.get(field).is_some(), "missing error.{field}: {}", a.body);
    }
    e["message"].as_str().unwrap().to_string()
}

#[test]
fn serves_env_credentials_to_the_token_holder_only() {
    let (mut guard, port) = start_sidecar(
        "sidecar-env",
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            (
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            ),
            ("AWS_SESSION_TOKEN", "session-token-example"),
        ],
    );

    let health = get(port, "/health", &[]).unwrap();
    assert_eq!(health.json(), serde_json::json!({"status": "ok"}));

    let m = assert_openai_error(&creds(port, None), 401);
    assert!(m.contains("x-unigate-token"), "{m}");
    assert_openai_error(&creds(port, Some("wrong")), 401);
    assert_openai_error(&creds(port, Some(&TOKEN[..TOKEN.len() - 1])), 401);
    assert!(!creds(port, Some("wrong")).body.contains("AKIDEXAMPLE"));

    let ok = creds(port, Some(TOKEN));
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(ok
        .head
        .to_ascii_lowercase()
        .contains("cache-control: no-store"));
    let v = ok.json();
    assert_eq!(v["access_key_id"], "AKIDEXAMPLE");
    assert_eq!(
        v["secret_access_key"],
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    );
    assert_eq!(v["session_token"], "session-token-example");
    // Static env credentials have no expiry.
    assert!(v.get("expires_at").is_none(), "{v}");
    // The filter's own parser accepts the answer.
    let parsed =
        unigate_core::credentials::parse_sidecar_answer(Some(ok.status), ok.body.as_bytes())
            .unwrap();
    assert_eq!(parsed.access_key_id, "AKIDEXAMPLE");

    let nf = get(port, "/nope", &[]).unwrap();
    assert_openai_error(&nf, 404);

    // SIGTERM stops it cleanly.
    let status = guard.terminate(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn explains_missing_credentials() {
    let (_guard, port) = start_sidecar("sidecar-none", &[]);
    let a = creds(port, Some(TOKEN));
    let m = assert_openai_error(&a, 503);
    assert!(m.contains("AWS_ACCESS_KEY_ID"), "{m}");
    assert!(m.contains("AWS_PROFILE"), "{m}");
    assert_eq!(a.json()["error"]["code"], "aws_credentials_unavailable");
    // The filter reads this as "no credentials" with the message.
    match unigate_core::credentials::parse_sidecar_answer(Some(a.status), a.body.as_bytes()) {
        Err(unigate_core::credentials::SidecarFailure::NoCredentials(msg)) => assert_eq!(msg, m),
        other => panic!("{other:?}"),
    }
}

#[test]
fn refuses_to_start_without_a_token() {
    let home = temp_dir("sidecar-notoken");
    let out = unigate(&home)
        .arg("sidecar")
        .arg("--port")
        .arg(free_port().to_string())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("UNIGATE_SIDECAR_TOKEN"), "{err}");
}
