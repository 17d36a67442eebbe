//! Renders configurations with `unigate serve --print-config` and checks that Envoy accepts
//! them (`envoy --mode validate`, which also loads the filter and runs its `on_configure`).
//! Skipped, with the reason printed, when Envoy or build/unigate.wasm is not available.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

/// `unigate serve --print-config` with exactly these variables (plus a clean HOME).
fn print_config(vars: &[(&str, &str)]) -> String {
    let home = temp_dir("print-config");
    let mut cmd = unigate(&home);
    cmd.args(["serve", "--print-config"]).current_dir(&home);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `envoy --mode validate` on a configuration.
fn validate(envoy: &Path, name: &str, yaml: &str) {
    let dir = temp_dir(name);
    let file = dir.join("envoy.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(envoy)
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(&file)
        .env("API_KEY", "k")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "Envoy rejected the `{name}` configuration:\n{}\n{}\n--- config ---\n{yaml}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn envoy_accepts_rendered_configs() {
    let Some((envoy, wasm)) = envoy_and_wasm("envoy_accepts_rendered_configs") else {
        return;
    };
    let wasm = wasm.to_str().unwrap();

    // The repository example (envoy/envoy.yaml): real endpoints over TLS. It names
    // /etc/unigate/unigate.wasm, which Envoy must be able to load, so validate the same
    // rendering with the local filter and check that only the file name differs.
    let example = print_config(&[
        ("AWS_REGION", "us-east-1"),
        ("UNIGATE_WASM", "/etc/unigate/unigate.wasm"),
        ("GATEWAY_BIND", "0.0.0.0"),
    ]);
    let local = print_config(&[
        ("AWS_REGION", "us-east-1"),
        ("UNIGATE_WASM", wasm),
        ("GATEWAY_BIND", "0.0.0.0"),
    ]);
    assert_eq!(
        example.replace("/etc/unigate/unigate.wasm", wasm),
        local,
        "only the wasm path may differ"
    );
    validate(&envoy, "example", &local);

    // Local plain-HTTP fakes (STATIC clusters, no TLS), non-default limits.
    validate(
        &envoy,
        "local-fakes",
        &print_config(&[
            ("OPENAI_BASE_URL", "http://127.0.0.1:18001/v1"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "http://127.0.0.1:18002"),
            ("UPSTREAM_TIMEOUT_SECONDS", "30"),
            ("MAX_REQUEST_BYTES", "1048576"),
            ("UNIGATE_WASM", wasm),
        ]),
    );

    // No region: no Bedrock cluster; a host name over plain HTTP (LOGICAL_DNS without TLS).
    validate(
        &envoy,
        "no-bedrock",
        &print_config(&[
            ("OPENAI_BASE_URL", "http://localhost:18001/v1"),
            ("UNIGATE_WASM", wasm),
            ("GATEWAY_PORT", "18080"),
            ("ENVOY_ADMIN_PORT", "18081"),
            ("UNIGATE_SIDECAR_PORT", "18082"),
        ]),
    );

    // An https IP literal (IP SAN, no SNI) and a hostname Bedrock endpoint override.
    validate(
        &envoy,
        "tls-ip",
        &print_config(&[
            ("OPENAI_BASE_URL", "https://10.1.2.3:8443/v1"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            (
                "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
                "https://vpce-123.bedrock-runtime.eu-west-1.vpce.amazonaws.com",
            ),
            ("UNIGATE_WASM", wasm),
        ]),
    );
}

#[test]
fn print_config_needs_no_wasm_and_is_stable() {
    let vars = [
        ("AWS_REGION", "us-east-1"),
        ("UNIGATE_WASM", "/etc/unigate/unigate.wasm"),
        ("GATEWAY_BIND", "0.0.0.0"),
    ];
    let a = print_config(&vars);
    assert_eq!(a, print_config(&vars));
    assert!(a.contains("filename: /etc/unigate/unigate.wasm"));
    assert!(a.contains(r#"value: '{"aws_region":"us-east-1"}'"#));
}

#[test]
fn bad_settings_fail_clearly() {
    let home = temp_dir("bad-settings");
    let out = unigate(&home)
        .args(["serve", "--print-config"])
        .env("GATEWAY_PORT", "eighty")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("GATEWAY_PORT `eighty` is not a port number"),
        "{err}"
    );
    assert!(out.stdout.is_empty());

    // serve (not --print-config) needs the filter and says how to build it.
    let out = unigate(&home)
        .args(["serve", "--wasm", "missing/unigate.wasm"])
        .current_dir(&home)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("make wasm"), "{err}");
}
