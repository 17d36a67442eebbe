//! `unigate config`: show the effective configuration (secrets masked), check an Envoy
//! configuration for what the filter relies on, write a commented `.env`.

use crate::credentials::RoleSettings;
use crate::files::FilesSettings;
use crate::settings::{Overrides, Settings};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use unigate_core::config::{CredentialsSource, Gateway, PluginConfig};

/// Arguments of `unigate config`.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration from the environment (secrets masked) and check it.
    Show,
    /// Check an Envoy configuration (YAML or JSON) that loads the unigate filter.
    ///
    /// Finds the unigate Wasm filter, validates its plugin configuration, and checks what the
    /// filter relies on: allow_on_headers_stop_iteration, a route with
    /// `cluster_header: x-unigate-cluster` and no host or path rewrite, the clusters named in
    /// the plugin configuration, and failure_policy. Exits 1 when something is wrong.
    Check {
        /// The Envoy configuration file.
        envoy_yaml: PathBuf,
    },
    /// Write a commented .env listing every supported variable.
    Init {
        /// Where to write it.
        #[arg(long, short, default_value = ".env")]
        output: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

/// One supported environment variable.
struct Var {
    name: &'static str,
    default: &'static str,
    help: &'static str,
    secret: bool,
}

const fn var(name: &'static str, default: &'static str, help: &'static str) -> Var {
    Var {
        name,
        default,
        help,
        secret: false,
    }
}

const fn secret(name: &'static str, help: &'static str) -> Var {
    Var {
        name,
        default: "",
        help,
        secret: true,
    }
}

/// Every variable, by section.
const SECTIONS: &[(&str, &[Var])] = &[
    (
        "Gateway",
        &[
            var("GATEWAY_PORT", "8080", "Envoy listener port"),
            var("GATEWAY_BIND", "127.0.0.1", "listener address (0.0.0.0 in containers)"),
            secret("API_KEY", "client keys, comma-separated (one is generated and printed when neither this nor API_KEYS_FILE is set)"),
            var("API_KEYS_FILE", "", "JSON array of {\"key\",\"name\",\"models\",\"rpm\",\"tpm\"} entries"),
            var("UPSTREAM_TIMEOUT_SECONDS", "600", "longest an upstream may stay silent (then 504)"),
            var("MAX_REQUEST_BYTES", "33554432", "largest chat request body (then 413)"),
        ],
    ),
    (
        "OpenAI",
        &[
            secret("OPENAI_API_KEY", "key sent to OpenAI (unset: OpenAI models answer 503)"),
            var("OPENAI_BASE_URL", "https://api.openai.com/v1", "any OpenAI-compatible server"),
            var("OPENAI_RESPONSES", "true", "false when OPENAI_BASE_URL has no /responses (then translated to chat completions)"),
        ],
    ),
    (
        "AWS Bedrock and credentials",
        &[
            var("AWS_REGION", "", "Bedrock region (unset: Bedrock models answer 503)"),
            var("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "", "Bedrock endpoint [default: https://bedrock-runtime.REGION.amazonaws.com]"),
            var("AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME", "", "Bedrock Agents endpoint"),
            var("AWS_PROFILE", "", "a profile in ~/.aws (run `aws sso login` first for SSO)"),
            secret("AWS_ACCESS_KEY_ID", "static keys (prefer a profile or a role)"),
            secret("AWS_SECRET_ACCESS_KEY", "static keys"),
            secret("AWS_SESSION_TOKEN", "for temporary keys"),
            var("AWS_ROLE_ARN", "", "a role to assume on top of the credentials above (with AWS_WEB_IDENTITY_TOKEN_FILE: web identity)"),
            var("AWS_WEB_IDENTITY_TOKEN_FILE", "", "web identity token (EKS IRSA sets it)"),
            secret("AWS_EXTERNAL_ID", "external id the role's trust policy asks for"),
            var("AWS_ROLE_SESSION_NAME", "unigate", "session name of the assumed role"),
            var("AWS_ROLE_DURATION_SECONDS", "3600", "lifetime of assumed-role credentials (900 to 43200)"),
        ],
    ),
    (
        "Files API",
        &[
            var("S3_FILES_BUCKET", "", "store files in this S3 bucket (unset: on local disk in FILES_DIR)"),
            var("S3_FILES_PREFIX", "", "key prefix in the bucket"),
            var("AWS_ENDPOINT_URL_S3", "", "an S3-compatible endpoint (path-style addressing is used)"),
            var("FILES_DIR", "data/files", "local file storage (with S3: where uploads are spooled)"),
            var("FILES_MAX_BYTES", "536870912", "largest upload (then 413)"),
            var("FILE_CONTEXT_MAX_BYTES", "200000", "cap of one file's text put into a chat"),
            var("FILE_CONTEXT_TIMEOUT_MS", "9500", "time for extracting the files of one chat request (then 504)"),
            var("FILE_CONTEXT_MAX_DEPTH", "128", "deepest JSON/XML/PDF nesting extracted (then 422)"),
            var("FILE_CONTEXT_CONCURRENCY", "", "files extracted at once [default: half the CPUs] (then 503 after 2 s)"),
            var("FILE_CONTEXT_PDF_MEMORY_BYTES", "536870912", "address-space limit of a PDF extraction process"),
        ],
    ),
    (
        "Processes",
        &[
            var("ENVOY_ADMIN_PORT", "9901", "Envoy admin port (127.0.0.1 only)"),
            var("UNIGATE_SIDECAR_PORT", "8081", "sidecar port (127.0.0.1 only)"),
            secret("UNIGATE_SIDECAR_TOKEN", "secret shared by filter and sidecar (generated by `serve` when unset; required by `sidecar`)"),
            var("ENVOY_BIN", "envoy", "the Envoy binary (>= 1.35)"),
            var("UNIGATE_WASM", "build/unigate.wasm", "the filter module"),
            var("ENVOY_CONCURRENCY", "", "Envoy worker threads [default: one per core]"),
            var("ENVOY_LOG_LEVEL", "warn", "Envoy log level"),
            var("UNIGATE_RUN_DIR", ".run", "where envoy.yaml is written"),
            var("SSL_CERT_FILE", crate::settings::DEFAULT_CA_FILE, "CA bundle for upstream TLS"),
            var("RUST_LOG", "info", "log filter of unigate itself"),
        ],
    ),
    (
        "Command-line client",
        &[var("UNIGATE_URL", "http://127.0.0.1:8080", "gateway used by chat, models and files")],
    ),
];

/// Runs a `config` command.
pub fn run(args: ConfigArgs, env: &dyn Fn(&str) -> Option<String>) -> Result<ExitCode, String> {
    match args.command {
        ConfigCommand::Show => Ok(show(env)),
        ConfigCommand::Check { envoy_yaml } => {
            let text = std::fs::read_to_string(&envoy_yaml)
                .map_err(|e| format!("cannot read {}: {e}", envoy_yaml.display()))?;
            let report = check(&text);
            for line in &report.notes {
                println!("ok: {line}");
            }
            for w in &report.warnings {
                println!("warning: {w}");
            }
            for e in &report.errors {
                println!("error: {e}");
            }
            if report.errors.is_empty() {
                println!(
                    "{}: the unigate filter configuration looks right",
                    envoy_yaml.display()
                );
                Ok(ExitCode::SUCCESS)
            } else {
                println!(
                    "{}: {} problem(s) found",
                    envoy_yaml.display(),
                    report.errors.len()
                );
                Ok(ExitCode::FAILURE)
            }
        }
        ConfigCommand::Init { output, force } => {
            if output.exists() && !force {
                return Err(format!(
                    "{} already exists; use --force to overwrite it",
                    output.display()
                ));
            }
            std::fs::write(&output, env_template())
                .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
            eprintln!(
                "wrote {} (every line is commented out: uncomment what you need, then `set -a; . {}; set +a`)",
                output.display(),
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The `.env` written by `config init`.
pub fn env_template() -> String {
    let mut out = String::from(
        "# unigate configuration (written by `unigate config init`).\n\
         # Every supported variable, commented out at its default. Load it into the environment\n\
         # with `set -a; . ./.env; set +a` (or docker compose `env_file:`), then `unigate serve`.\n\
         # Keep this file private once it holds keys.\n",
    );
    for (section, vars) in SECTIONS {
        out.push_str(&format!("\n# --- {section} ---\n"));
        for v in *vars {
            out.push_str(&format!("# {}\n#{}={}\n", v.help, v.name, v.default));
        }
    }
    out
}

/// Prints every variable's effective value (secrets masked) and whether the whole parses.
fn show(env: &dyn Fn(&str) -> Option<String>) -> ExitCode {
    let get = |n: &str| env(n).filter(|v| !v.trim().is_empty());
    for (section, vars) in SECTIONS {
        println!("# {section}");
        for v in *vars {
            let value = match get(v.name) {
                Some(val) if v.secret => {
                    format!("<set, {} characters, hidden>", val.chars().count())
                }
                Some(val) => val,
                None if v.default.is_empty() => "(unset)".to_string(),
                None => format!("{} (default)", v.default),
            };
            println!("{}={value}", v.name);
        }
        println!();
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let mut errors = Vec::new();
    match Settings::from_env(env, &cwd, &Overrides::default()) {
        Ok(s) => {
            println!(
                "openai: {}",
                if s.openai_key_set {
                    format!("on ({})", s.openai_base_url)
                } else {
                    "off (OPENAI_API_KEY is not set)".into()
                }
            );
            println!(
                "bedrock: {}",
                s.aws_region
                    .as_deref()
                    .map(|r| format!("on (region {r})"))
                    .unwrap_or_else(|| "off (AWS_REGION is not set)".into())
            );
        }
        Err(e) => errors.push(e),
    }
    match FilesSettings::from_env(env, &cwd) {
        Ok(f) => {
            println!("files: {}", f.describe());
            println!("file context: {}", f.describe_context());
        }
        Err(e) => errors.push(e),
    }
    match RoleSettings::from_env(env) {
        Ok(Some(r)) => println!(
            "credentials: AWS default chain, then AssumeRole {}",
            r.describe()
        ),
        Ok(None) => println!("credentials: AWS default chain"),
        Err(e) => errors.push(e),
    }
    if errors.is_empty() {
        println!("configuration: OK");
        ExitCode::SUCCESS
    } else {
        for e in &errors {
            println!("error: {e}");
        }
        ExitCode::FAILURE
    }
}

/// What `config check` found.
#[derive(Debug, Default)]
pub struct Report {
    /// Things that were checked and are fine.
    pub notes: Vec<String>,
    /// Things that may be fine but deserve a look.
    pub warnings: Vec<String>,
    /// Problems: the filter will not work as intended.
    pub errors: Vec<String>,
}

const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const ROUTE_HEADER: &str = "x-unigate-cluster";

/// Checks an Envoy configuration (YAML or JSON text).
pub fn check(text: &str) -> Report {
    let mut r = Report::default();
    let root = match parse_yaml(text) {
        Ok(v) => v,
        Err(e) => {
            r.errors.push(format!("the file is not valid YAML: {e}"));
            return r;
        }
    };
    // Every HTTP connection manager: an object with `http_filters`.
    let mut hcms = Vec::new();
    collect(&root, &mut |v| {
        if v.get("http_filters").is_some_and(Value::is_array) {
            hcms.push(v.clone());
        }
    });
    let mut wasm = Vec::new();
    for hcm in &hcms {
        for f in hcm["http_filters"].as_array().into_iter().flatten() {
            if f.pointer("/typed_config/@type").and_then(Value::as_str) == Some(WASM_TYPE) {
                wasm.push((hcm.clone(), f.clone()));
            }
        }
    }
    let is_unigate = |f: &Value| {
        let c = f.pointer("/typed_config/config").unwrap_or(&Value::Null);
        c["name"] == "unigate"
            || c["root_id"] == "unigate"
            || c.pointer("/vm_config/vm_id") == Some(&Value::from("unigate"))
            || c.pointer("/vm_config/code/local/filename")
                .and_then(Value::as_str)
                .is_some_and(|p| p.ends_with("unigate.wasm"))
    };
    let chosen = match wasm.iter().filter(|(_, f)| is_unigate(f)).count() {
        0 if wasm.len() == 1 => {
            r.warnings.push("the only Wasm filter is not named unigate (name, root_id, vm_id or a unigate.wasm file); checking it anyway".into());
            wasm.first()
        }
        0 => {
            r.errors.push(if wasm.is_empty() {
                "no Wasm HTTP filter (envoy.extensions.filters.http.wasm.v3.Wasm) is configured: Envoy would not load unigate at all".into()
            } else {
                "none of the Wasm filters is unigate's (name, root_id or vm_id `unigate`, or a file ending in unigate.wasm)".into()
            });
            return r;
        }
        1 => wasm.iter().find(|(_, f)| is_unigate(f)),
        n => {
            r.warnings.push(format!(
                "{n} unigate Wasm filters are configured; checking the first"
            ));
            wasm.iter().find(|(_, f)| is_unigate(f))
        }
    };
    let Some((hcm, filter)) = chosen else {
        return r;
    };
    let config = filter
        .pointer("/typed_config/config")
        .unwrap_or(&Value::Null);

    // The plugin configuration.
    let plugin = match plugin_json(config) {
        Ok(json) => json,
        Err(e) => {
            r.errors.push(e);
            return r;
        }
    };
    let parsed: PluginConfig = match serde_json::from_str(&plugin) {
        Ok(p) => p,
        Err(e) => {
            r.errors.push(format!(
                "the plugin configuration (config.configuration.value) is not valid: {e}. Envoy would refuse to load the filter"
            ));
            return r;
        }
    };
    match Gateway::compile(parsed.clone(), &|_| None) {
        Ok(_) => r.notes.push("the plugin configuration is valid".into()),
        Err(e) => r.errors.push(format!(
            "the plugin configuration is rejected by the filter: {e}. Envoy would refuse to load the filter"
        )),
    }

    // Envoy settings the filter relies on.
    if config["allow_on_headers_stop_iteration"] == Value::Bool(true) {
        r.notes
            .push("allow_on_headers_stop_iteration is true".into());
    } else {
        r.errors.push("allow_on_headers_stop_iteration is not true: the filter holds the request headers while it reads the body and then rewrites them; without it (Envoy >= 1.35) Envoy sends the headers upstream before the filter has decided where the request goes".into());
    }
    match config.get("failure_policy").and_then(Value::as_str) {
        Some(p) => r.notes.push(format!("failure_policy is {p}")),
        None if config.get("fail_open").is_some() => r.warnings.push(
            "fail_open is deprecated; set failure_policy (FAIL_RELOAD recreates a crashed filter)".into(),
        ),
        None => r.errors.push("failure_policy is not set: Envoy's default (FAIL_CLOSED) keeps failing every request after the filter's VM crashed once; set failure_policy: FAIL_RELOAD so a crashed VM is recreated".into()),
    }

    // The route that follows the filter's choice of cluster.
    if hcm.get("rds").is_some() && hcm.get("route_config").is_none() {
        r.warnings.push("routes come from RDS: cannot check that a route uses `cluster_header: x-unigate-cluster` without host or path rewrites; make sure one does".into());
    } else {
        let mut routes = Vec::new();
        collect(&hcm["route_config"], &mut |v| {
            if v.pointer("/route/cluster_header").is_some() {
                routes.push(v.clone());
            }
        });
        let ours: Vec<&Value> = routes
            .iter()
            .filter(|rt| {
                rt.pointer("/route/cluster_header")
                    .and_then(Value::as_str)
                    .is_some_and(|h| h.eq_ignore_ascii_case(ROUTE_HEADER))
            })
            .collect();
        if ours.is_empty() {
            r.errors.push(format!("no route has `cluster_header: {ROUTE_HEADER}`: the filter names the upstream cluster (OpenAI, Bedrock or the sidecar) in that header, and only such a route sends the request there"));
        } else {
            r.notes
                .push(format!("a route uses cluster_header: {ROUTE_HEADER}"));
        }
        for rt in ours {
            let route = &rt["route"];
            for key in [
                "host_rewrite_literal",
                "auto_host_rewrite",
                "host_rewrite_header",
                "host_rewrite_path_regex",
            ] {
                if route.get(key).is_some() {
                    r.errors.push(format!("the {ROUTE_HEADER} route sets `{key}`: the filter sets the upstream Host itself and signs it for Bedrock (SigV4); a rewrite after the filter breaks the signature (SignatureDoesNotMatch) and sends OpenAI requests to the wrong host"));
                }
            }
            for key in ["prefix_rewrite", "regex_rewrite", "path_rewrite_policy"] {
                if route.get(key).is_some() {
                    r.errors.push(format!("the {ROUTE_HEADER} route sets `{key}`: the filter writes the upstream path itself (and signs it for Bedrock); rewriting it afterwards breaks requests"));
                }
            }
            if route.get("timeout").and_then(Value::as_str) != Some("0s") {
                r.warnings.push(format!("the {ROUTE_HEADER} route has no `timeout: 0s`: Envoy's default 15 s limit on a whole response cuts long streamed answers"));
            }
        }
    }

    // Clusters named in the plugin configuration.
    let mut clusters = Vec::new();
    collect(&root, &mut |v| {
        if let Some(list) = v.get("clusters").and_then(Value::as_array) {
            for c in list {
                if let Some(n) = c.get("name").and_then(Value::as_str) {
                    clusters.push(n.to_string());
                }
            }
        }
    });
    let cds = root.pointer("/dynamic_resources/cds_config").is_some();
    let mut needed = vec![
        (
            parsed.openai_cluster.clone(),
            "OpenAI requests (openai_cluster)",
        ),
        (
            parsed.sidecar_cluster.clone(),
            "the sidecar: files and AWS credentials (sidecar_cluster)",
        ),
    ];
    if parsed.aws_region.is_some() {
        needed.push((
            parsed.bedrock_cluster.clone(),
            "Bedrock requests (bedrock_cluster)",
        ));
        needed.push((
            parsed.bedrock_agent_cluster.clone(),
            "Bedrock Agents requests (bedrock_agent_cluster)",
        ));
    }
    for (name, what) in needed {
        if clusters.contains(&name) {
            r.notes.push(format!("cluster `{name}` exists"));
        } else if cds {
            r.warnings.push(format!(
                "cluster `{name}` for {what} is not defined statically; it must come from CDS"
            ));
        } else if name == parsed.bedrock_agent_cluster {
            r.warnings.push(format!("cluster `{name}` for {what} is missing: Bedrock Agents models (bedrock-agent/…) will fail; other models work"));
        } else if name == parsed.sidecar_cluster && parsed.aws_credentials == CredentialsSource::Env
        {
            r.warnings.push(format!("cluster `{name}` for {what} is missing: credentials come from the environment, but the Files API and file_ids need the sidecar"));
        } else {
            r.errors.push(format!("cluster `{name}` for {what} is not defined: Envoy answers those requests with 503 (no cluster)"));
        }
    }
    r
}

/// The plugin configuration JSON of a Wasm filter's `config`.
fn plugin_json(config: &Value) -> Result<String, String> {
    let Some(c) = config.get("configuration") else {
        return Ok("{}".into());
    };
    let t = c.get("@type").and_then(Value::as_str).unwrap_or("");
    if t != "type.googleapis.com/google.protobuf.StringValue" {
        return Err(format!(
            "config.configuration has @type `{t}`: the filter reads its JSON from a google.protobuf.StringValue (`\"@type\": type.googleapis.com/google.protobuf.StringValue` with `value: '<json>'`)"
        ));
    }
    Ok(c.get("value")
        .and_then(Value::as_str)
        .filter(|v| !v.trim().is_empty())
        .unwrap_or("{}")
        .to_string())
}

/// Calls `f` on every value in a tree.
fn collect(v: &Value, f: &mut dyn FnMut(&Value)) {
    f(v);
    match v {
        Value::Array(a) => a.iter().for_each(|x| collect(x, f)),
        Value::Object(o) => o.values().for_each(|x| collect(x, f)),
        _ => {}
    }
}

/// YAML (or JSON) text as a JSON value (the first document).
pub fn parse_yaml(text: &str) -> Result<Value, String> {
    let docs = yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
    Ok(docs.first().map(yaml_to_json).unwrap_or(Value::Null))
}

fn yaml_to_json(y: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match y {
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(s.clone()), Value::Number),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        Yaml::Real(r) => r.clone(),
                        _ => String::new(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Yaml::Null | Yaml::BadValue | Yaml::Alias(_) => Value::Null,
    }
}

/// Whether a path is the repository's example (used by tests).
#[cfg(test)]
fn example() -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../envoy/envoy.yaml");
    std::fs::read_to_string(p).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rendered_example_passes() {
        let r = check(&example());
        assert!(r.errors.is_empty(), "{r:?}");
        assert!(r
            .notes
            .iter()
            .any(|n| n.contains("plugin configuration is valid")));
    }

    #[test]
    fn problems_are_explained() {
        let y = example()
            .replace("allow_on_headers_stop_iteration: true", "allow_on_headers_stop_iteration: false")
            .replace("failure_policy: FAIL_RELOAD", "")
            .replace("route: {cluster_header: x-unigate-cluster,", "route: {cluster_header: x-unigate-cluster, auto_host_rewrite: true, prefix_rewrite: /x,")
            .replace("- name: unigate_sidecar", "- name: other_sidecar");
        let r = check(&y);
        let all = r.errors.join("\n");
        assert!(all.contains("allow_on_headers_stop_iteration"), "{all}");
        assert!(all.contains("failure_policy"), "{all}");
        assert!(
            all.contains("auto_host_rewrite") && all.contains("SignatureDoesNotMatch"),
            "{all}"
        );
        assert!(all.contains("prefix_rewrite"), "{all}");
        assert!(all.contains("cluster `unigate_sidecar`"), "{all}");
        assert_eq!(r.errors.len(), 5, "{all}");
        let bad = example().replace(
            r#"value: '{"aws_region":"us-east-1"}'"#,
            r#"value: '{"nope":1}'"#,
        );
        let r = check(&bad);
        assert!(r.errors.iter().any(|e| e.contains("nope")), "{r:?}");
        assert!(!check("a: [").errors.is_empty());
        assert!(check("static_resources: {}")
            .errors
            .iter()
            .any(|e| e.contains("no Wasm")));
    }

    #[test]
    fn env_template_lists_every_variable() {
        let t = env_template();
        for (_, vars) in SECTIONS {
            for v in *vars {
                assert!(t.contains(&format!("\n#{}=", v.name)), "{}", v.name);
            }
        }
        for name in [
            "S3_FILES_BUCKET",
            "AWS_ROLE_ARN",
            "UNIGATE_URL",
            "FILE_CONTEXT_MAX_BYTES",
        ] {
            assert!(t.contains(name));
        }
    }
}
