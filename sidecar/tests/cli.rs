//! The local CLI commands through the real binary: `config init|show|check`, `aws test`
//! (with no credentials, and against moto's STS when moto_server is installed), and `--help`
//! on every command. The commands that talk to a gateway (`chat`, `models`, `files`) are run
//! against a whole `unigate serve` stack in tests/test_system_files.py.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn run(home: &Path, args: &[&str], env: &[(&str, &str)]) -> (Output, String) {
    let mut cmd = unigate(home);
    cmd.args(args).current_dir(home).env("RUST_LOG", "error");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn every_command_has_help() {
    let home = temp_dir("cli-help");
    for args in [
        vec![],
        vec!["serve"],
        vec!["sidecar"],
        vec!["chat"],
        vec!["models"],
        vec!["files"],
        vec!["files", "upload"],
        vec!["files", "list"],
        vec!["files", "get"],
        vec!["files", "download"],
        vec!["files", "delete"],
        vec!["config"],
        vec!["config", "show"],
        vec!["config", "check"],
        vec!["config", "init"],
        vec!["aws"],
        vec!["aws", "test"],
    ] {
        let mut a = args.clone();
        a.push("--help");
        let (out, text) = run(&home, &a, &[("API_KEY", "do-not-print-me")]);
        assert!(out.status.success(), "{args:?}: {text}");
        assert!(text.contains("Usage: unigate"), "{args:?}: {text}");
        assert!(!text.contains("do-not-print-me"), "{args:?} shows the key");
    }
}

#[test]
fn config_init_writes_a_commented_env_and_refuses_to_overwrite() {
    let home = temp_dir("cli-init");
    let (out, text) = run(&home, &["config", "init"], &[]);
    assert!(out.status.success(), "{text}");
    let env = std::fs::read_to_string(home.join(".env")).unwrap();
    for name in [
        "API_KEY",
        "OPENAI_API_KEY",
        "AWS_REGION",
        "S3_FILES_BUCKET",
        "S3_FILES_PREFIX",
        "AWS_ENDPOINT_URL_S3",
        "FILES_DIR",
        "FILES_MAX_BYTES",
        "FILE_CONTEXT_MAX_BYTES",
        "AWS_ROLE_ARN",
        "AWS_EXTERNAL_ID",
        "AWS_ROLE_SESSION_NAME",
        "AWS_ROLE_DURATION_SECONDS",
        "UNIGATE_URL",
    ] {
        assert!(env.contains(&format!("\n#{name}=")), "{name} missing");
    }
    // Every line is a comment or blank: sourcing it changes nothing.
    assert!(env.lines().all(|l| l.is_empty() || l.starts_with('#')));
    std::fs::write(home.join(".env"), "mine").unwrap();
    let (out, text) = run(&home, &["config", "init"], &[]);
    assert!(!out.status.success());
    assert!(text.contains("--force"), "{text}");
    assert_eq!(std::fs::read_to_string(home.join(".env")).unwrap(), "mine");
    let (out, _) = run(
        &home,
        &["config", "init", "--force", "-o", "other.env"],
        &[],
    );
    assert!(out.status.success());
    assert!(home.join("other.env").is_file());
    let (out, _) = run(&home, &["config", "init", "--force"], &[]);
    assert!(out.status.success());
    assert_ne!(std::fs::read_to_string(home.join(".env")).unwrap(), "mine");
}

#[test]
fn config_show_masks_secrets() {
    let home = temp_dir("cli-show");
    let secrets = [
        ("API_KEY", "client-key-secret-1,client-key-secret-2"),
        ("OPENAI_API_KEY", "sk-openai-secret-value"),
        ("UNIGATE_SIDECAR_TOKEN", "sidecar-secret-token"),
        ("AWS_ACCESS_KEY_ID", "AKIDSECRETEXAMPLE1"),
        ("AWS_SECRET_ACCESS_KEY", "aws-secret-access-key-value"),
        ("AWS_SESSION_TOKEN", "aws-session-token-value"),
        ("AWS_EXTERNAL_ID", "external-id-secret"),
    ];
    let mut env = secrets.to_vec();
    env.extend([
        ("AWS_REGION", "eu-west-1"),
        ("S3_FILES_BUCKET", "my-files"),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/gw"),
    ]);
    let (out, text) = run(&home, &["config", "show"], &env);
    assert!(out.status.success(), "{text}");
    for (name, value) in secrets {
        for part in value.split(',') {
            assert!(!text.contains(part), "{name} leaked: {text}");
        }
        assert!(text.contains(&format!("{name}=<set,")), "{name}: {text}");
    }
    assert!(text.contains("AWS_REGION=eu-west-1"), "{text}");
    assert!(text.contains("GATEWAY_PORT=8080 (default)"), "{text}");
    assert!(text.contains("openai: on"), "{text}");
    assert!(text.contains("bedrock: on (region eu-west-1)"), "{text}");
    assert!(text.contains("files: s3://my-files/"), "{text}");
    assert!(
        text.contains("AssumeRole arn:aws:iam::123456789012:role/gw"),
        "{text}"
    );
    assert!(text.contains("configuration: OK"), "{text}");

    let (out, text) = run(&home, &["config", "show"], &[("FILES_MAX_BYTES", "lots")]);
    assert!(!out.status.success());
    assert!(text.contains("error: FILES_MAX_BYTES `lots`"), "{text}");
}

#[test]
fn config_check_explains_problems() {
    let home = temp_dir("cli-check");
    let example = repo().join("envoy/envoy.yaml");
    let (out, text) = run(&home, &["config", "check", example.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("looks right"), "{text}");

    let broken = std::fs::read_to_string(&example)
        .unwrap()
        .replace(
            "allow_on_headers_stop_iteration: true",
            "allow_on_headers_stop_iteration: false",
        )
        .replace(
            "route: {cluster_header: x-unigate-cluster,",
            "route: {cluster_header: x-unigate-cluster, host_rewrite_literal: example.com,",
        )
        .replace("- name: openai\n", "- name: openai-renamed\n");
    let path = home.join("broken.yaml");
    std::fs::write(&path, broken).unwrap();
    let (out, text) = run(&home, &["config", "check", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("error: allow_on_headers_stop_iteration is not true"),
        "{text}"
    );
    assert!(text.contains("host_rewrite_literal"), "{text}");
    assert!(text.contains("cluster `openai`"), "{text}");
    assert!(text.contains("3 problem(s) found"), "{text}");

    let (out, text) = run(&home, &["config", "check", "/nonexistent.yaml"], &[]);
    assert!(!out.status.success());
    assert!(text.contains("cannot read /nonexistent.yaml"), "{text}");
}

#[test]
fn aws_test_explains_missing_credentials_and_region() {
    let home = temp_dir("cli-aws");
    let (out, text) = run(&home, &["aws", "test"], &[("AWS_REGION", "us-east-1")]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAILED: no credentials"), "{text}");
    assert!(text.contains("AWS_ACCESS_KEY_ID"), "{text}");

    let (out, text) = run(&home, &["aws", "test"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains("No AWS region"), "{text}");

    let (_, text) = run(
        &home,
        &["aws", "test"],
        &[("AWS_REGION", "us-east-1"), ("AWS_PROFILE", "nope")],
    );
    assert!(text.contains("profile `nope`"), "{text}");

    let (_, text) = run(
        &home,
        &["aws", "test"],
        &[
            ("AWS_REGION", "us-east-1"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/token"),
        ],
    );
    assert!(
        text.contains("/nonexistent/token, which does not exist"),
        "{text}"
    );

    // Credentials, but STS unreachable.
    let closed = free_port();
    let (out, text) = run(
        &home,
        &["aws", "test"],
        &[
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE0001"),
            ("AWS_SECRET_ACCESS_KEY", "secret-value-example"),
            (
                "AWS_ENDPOINT_URL_STS",
                &format!("http://127.0.0.1:{closed}"),
            ),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains("credentials: from environment variables"),
        "{text}"
    );
    assert!(text.contains("AWS could not be reached"), "{text}");
    assert!(!text.contains("secret-value-example"), "{text}");
}

#[test]
fn aws_test_against_moto_sts_with_and_without_assume_role() {
    let repo = repo();
    let Some(bin) = [
        repo.join(".venv/bin/moto_server"),
        PathBuf::from("/tmp/venvprobe/bin/moto_server"),
    ]
    .into_iter()
    .find(|p| p.is_file()) else {
        eprintln!(
            "SKIPPED aws_test_against_moto_sts: moto_server not found (run scripts/setup.sh)"
        );
        return;
    };
    let port = free_port();
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _moto = Guard(child);
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "moto_server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let home = temp_dir("cli-aws-moto");
    let sts = format!("http://127.0.0.1:{port}");
    let base = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDMOTOEXAMPLE01"),
        ("AWS_SECRET_ACCESS_KEY", "moto-secret-example"),
        ("AWS_ENDPOINT_URL_STS", sts.as_str()),
    ];
    let (out, text) = run(&home, &["aws", "test"], &base);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("credentials: from environment variables"),
        "{text}"
    );
    assert!(text.contains("account: 123456789012"), "{text}");
    assert!(text.contains("OK: these credentials work"), "{text}");
    assert!(!text.contains("moto-secret-example"));

    let mut env = base.to_vec();
    env.extend([
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/gateway"),
        ("AWS_EXTERNAL_ID", "ext-1"),
        ("AWS_ROLE_SESSION_NAME", "unigate-test"),
        ("AWS_ROLE_DURATION_SECONDS", "900"),
    ]);
    let (out, text) = run(&home, &["aws", "test"], &env);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("assume role: arn:aws:iam::123456789012:role/gateway (session unigate-test, 900 s, external id set)"), "{text}");
    assert!(text.contains("STS assume role"), "{text}");
    assert!(text.contains("assumed-role/gateway/unigate-test"), "{text}");

    // The sidecar serves the assumed role's (expiring) credentials to the filter.
    let sport = free_port();
    let mut cmd = unigate(&home);
    cmd.args(["sidecar", "--port", &sport.to_string()])
        .current_dir(&home)
        .env("UNIGATE_SIDECAR_TOKEN", "tok-role")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null());
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let mut sidecar = Guard(cmd.spawn().unwrap());
    wait_for_200(
        sport,
        "/health",
        Duration::from_secs(20),
        &mut sidecar.0,
        "sidecar",
    );
    let a = get(
        sport,
        "/v1/internal/aws-credentials",
        &[("x-unigate-token", "tok-role")],
    )
    .unwrap();
    assert_eq!(a.status, 200, "{a:?}");
    let v = a.json();
    assert!(
        v["access_key_id"].as_str().unwrap().starts_with("ASIA"),
        "{v}"
    );
    assert!(
        v["session_token"].is_string() && v["expires_at"].is_u64(),
        "{v}"
    );
    drop(sidecar);

    let mut bad = env.clone();
    bad.push(("AWS_ROLE_DURATION_SECONDS", "5"));
    let (out, text) = run(&home, &["aws", "test"], &bad);
    assert!(!out.status.success());
    assert!(text.contains("AWS_ROLE_DURATION_SECONDS"), "{text}");
}
