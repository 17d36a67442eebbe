//! Settings of `unigate serve`, parsed from the environment (and command-line overrides).
//!
//! Parsing takes an environment *lookup function* instead of reading the process environment,
//! so tests can describe any environment without mutating the real one. Secrets (client API
//! keys, the OpenAI key, the sidecar token) are deliberately not part of [`Settings`]: nothing
//! rendered from it can leak them.

use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use unigate_core::config::{
    default_bedrock_agent_endpoint, default_bedrock_endpoint, BaseUrl, PluginConfig,
};

/// Default Envoy listener port (`GATEWAY_PORT`).
pub const DEFAULT_PORT: u16 = 8080;
/// Default Envoy listener address (`GATEWAY_BIND`).
pub const DEFAULT_BIND: &str = "127.0.0.1";
/// Default Envoy admin port (`ENVOY_ADMIN_PORT`, always on 127.0.0.1).
pub const DEFAULT_ADMIN_PORT: u16 = 9901;
/// Default sidecar port (`UNIGATE_SIDECAR_PORT`, always on 127.0.0.1).
pub const DEFAULT_SIDECAR_PORT: u16 = 8081;
/// Default path of the filter (`UNIGATE_WASM`), relative to the working directory.
pub const DEFAULT_WASM: &str = "build/unigate.wasm";
/// Default directory for the rendered `envoy.yaml` (`UNIGATE_RUN_DIR`).
pub const DEFAULT_RUN_DIR: &str = ".run";
/// Default Envoy log level (`ENVOY_LOG_LEVEL`).
pub const DEFAULT_LOG_LEVEL: &str = "warn";
/// Default CA bundle for upstream TLS (`SSL_CERT_FILE` overrides it).
pub const DEFAULT_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Headroom added to `max_request_bytes` for Envoy's own buffer limits, so the filter's 413
/// (with an OpenAI-style body) fires before Envoy's bare one.
pub const BUFFER_HEADROOM: u64 = 1024 * 1024;

/// Values given on the command line; each replaces the matching environment variable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--port` (`GATEWAY_PORT`).
    pub port: Option<u16>,
    /// `--bind` (`GATEWAY_BIND`).
    pub bind: Option<String>,
    /// `--wasm` (`UNIGATE_WASM`).
    pub wasm: Option<PathBuf>,
    /// `--envoy-bin` (`ENVOY_BIN`).
    pub envoy_bin: Option<String>,
    /// `--run-dir` (`UNIGATE_RUN_DIR`).
    pub run_dir: Option<PathBuf>,
}

/// Everything `serve` needs to render the Envoy configuration and start the processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Address of the Envoy listener.
    pub bind: IpAddr,
    /// Port of the Envoy listener.
    pub port: u16,
    /// Port of Envoy's admin interface (bound to 127.0.0.1).
    pub admin_port: u16,
    /// Port of the sidecar (bound to 127.0.0.1).
    pub sidecar_port: u16,
    /// OpenAI base URL as given.
    pub openai_base_url: String,
    /// The OpenAI base URL, parsed.
    pub openai_url: BaseUrl,
    /// Whether `OPENAI_API_KEY` is set (the key itself is never kept here).
    pub openai_key_set: bool,
    /// Whether `OPENAI_BASE_URL` serves `/responses` (`OPENAI_RESPONSES`, default true).
    pub openai_responses: bool,
    /// AWS region; `None` means Bedrock is not configured.
    pub aws_region: Option<String>,
    /// `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` as given.
    pub bedrock_endpoint: Option<String>,
    /// The Bedrock endpoint in use (given or the region default), parsed; `None` without a region.
    pub bedrock_url: Option<BaseUrl>,
    /// `AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME` as given.
    pub bedrock_agent_endpoint: Option<String>,
    /// The Bedrock Agents endpoint in use, parsed; `None` without a region.
    pub bedrock_agent_url: Option<BaseUrl>,
    /// `API_KEYS_FILE`: JSON key entries with names, model patterns and limits.
    pub api_keys_file: Option<PathBuf>,
    /// Longest an upstream may stay silent (route `idle_timeout`).
    pub upstream_timeout_seconds: u64,
    /// Largest request body the filter accepts.
    pub max_request_bytes: u64,
    /// Envoy binary (a path or a name looked up on `PATH`).
    pub envoy_bin: String,
    /// Absolute path of the filter's `.wasm`.
    pub wasm: PathBuf,
    /// Envoy `--concurrency`, if set.
    pub concurrency: Option<u32>,
    /// Envoy `--log-level`.
    pub log_level: String,
    /// Directory for the rendered `envoy.yaml`.
    pub run_dir: PathBuf,
    /// CA bundle used to verify upstream TLS certificates.
    pub ca_file: String,
    /// TLS on the gateway's listener: certificate chain and private key files (PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Settings {
    /// Parses the settings. `env` looks up an environment variable (empty values count as
    /// unset), `cwd` resolves relative paths, `overrides` are the command-line values.
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
        cwd: &Path,
        overrides: &Overrides,
    ) -> Result<Settings, String> {
        let get = |name: &str| {
            env(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let port = match overrides.port {
            Some(p) => check_port("--port", p)?,
            None => port_var(&get, "GATEWAY_PORT", DEFAULT_PORT)?,
        };
        let bind_text = overrides
            .bind
            .clone()
            .or_else(|| get("GATEWAY_BIND"))
            .unwrap_or_else(|| DEFAULT_BIND.to_string());
        let bind: IpAddr = bind_text.trim().parse().map_err(|_| {
            format!("GATEWAY_BIND/--bind `{bind_text}` is not an IP address (use e.g. 127.0.0.1 or 0.0.0.0)")
        })?;
        let admin_port = port_var(&get, "ENVOY_ADMIN_PORT", DEFAULT_ADMIN_PORT)?;
        let sidecar_port = port_var(&get, "UNIGATE_SIDECAR_PORT", DEFAULT_SIDECAR_PORT)?;
        if port == admin_port || port == sidecar_port || admin_port == sidecar_port {
            return Err(format!(
                "the gateway port ({port}), ENVOY_ADMIN_PORT ({admin_port}) and UNIGATE_SIDECAR_PORT ({sidecar_port}) must all differ"
            ));
        }

        let openai_base_url =
            get("OPENAI_BASE_URL").unwrap_or_else(|| PluginConfig::default().openai_base_url);
        let openai_url =
            BaseUrl::parse(&openai_base_url).map_err(|e| format!("OPENAI_BASE_URL: {e}"))?;
        let openai_key_set = get("OPENAI_API_KEY").is_some();
        let openai_responses = match get("OPENAI_RESPONSES").map(|v| v.to_ascii_lowercase()) {
            None => PluginConfig::default().openai_responses,
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes") => true,
            Some(v) if matches!(v.as_str(), "false" | "0" | "no") => false,
            Some(v) => return Err(format!("OPENAI_RESPONSES `{v}` is not true or false")),
        };

        let aws_region = get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION"));
        if let Some(r) = &aws_region {
            let valid = r
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid {
                return Err(format!(
                    "AWS_REGION `{r}` is not a region name (e.g. us-east-1)"
                ));
            }
        }
        let bedrock_endpoint = get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME");
        let bedrock_url = match &aws_region {
            Some(region) => {
                let url = bedrock_endpoint
                    .clone()
                    .unwrap_or_else(|| default_bedrock_endpoint(region));
                Some(
                    BaseUrl::parse(&url)
                        .map_err(|e| format!("AWS_ENDPOINT_URL_BEDROCK_RUNTIME: {e}"))?,
                )
            }
            None => None,
        };

        let bedrock_agent_endpoint = get("AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME");
        let bedrock_agent_url = match &aws_region {
            Some(region) => {
                let url = bedrock_agent_endpoint
                    .clone()
                    .unwrap_or_else(|| default_bedrock_agent_endpoint(region));
                Some(
                    BaseUrl::parse(&url)
                        .map_err(|e| format!("AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME: {e}"))?,
                )
            }
            None => None,
        };
        let api_keys_file = get("API_KEYS_FILE").map(|f| absolute(cwd, Path::new(&f)));

        let upstream_timeout_seconds = number_var(
            &get,
            "UPSTREAM_TIMEOUT_SECONDS",
            PluginConfig::default().upstream_timeout_seconds,
        )?;
        if upstream_timeout_seconds == 0 {
            return Err("UPSTREAM_TIMEOUT_SECONDS must be greater than 0".into());
        }
        let max_request_bytes = number_var(
            &get,
            "MAX_REQUEST_BYTES",
            PluginConfig::default().max_request_bytes,
        )?;
        // Envoy's per_connection_buffer_limit_bytes is a 32-bit value.
        let max_allowed = u64::from(u32::MAX) - BUFFER_HEADROOM;
        if max_request_bytes == 0 || max_request_bytes > max_allowed {
            return Err(format!(
                "MAX_REQUEST_BYTES must be between 1 and {max_allowed}, got {max_request_bytes}"
            ));
        }

        let envoy_bin = overrides
            .envoy_bin
            .clone()
            .or_else(|| get("ENVOY_BIN"))
            .unwrap_or_else(|| "envoy".to_string());
        let wasm = overrides
            .wasm
            .clone()
            .or_else(|| get("UNIGATE_WASM").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_WASM));
        let wasm = absolute(cwd, &wasm);
        if wasm.to_str().is_none() {
            return Err(format!(
                "UNIGATE_WASM `{}` is not valid UTF-8",
                wasm.display()
            ));
        }
        let concurrency = match get("ENVOY_CONCURRENCY") {
            Some(v) => match v.parse::<u32>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(format!("ENVOY_CONCURRENCY `{v}` is not a positive number")),
            },
            None => None,
        };
        let log_level = get("ENVOY_LOG_LEVEL").unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_string());
        const LEVELS: &[&str] = &[
            "trace", "debug", "info", "warn", "warning", "error", "critical", "off",
        ];
        if !LEVELS.contains(&log_level.as_str()) {
            return Err(format!(
                "ENVOY_LOG_LEVEL `{log_level}` is not one of {}",
                LEVELS.join(", ")
            ));
        }
        let run_dir = overrides
            .run_dir
            .clone()
            .or_else(|| get("UNIGATE_RUN_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_RUN_DIR));
        let run_dir = absolute(cwd, &run_dir);
        let ca_file = get("SSL_CERT_FILE").unwrap_or_else(|| DEFAULT_CA_FILE.to_string());
        let tls = match (get("GATEWAY_TLS_CERT_FILE"), get("GATEWAY_TLS_KEY_FILE")) {
            (Some(cert), Some(key)) => {
                let (cert, key) = (
                    absolute(cwd, Path::new(&cert)),
                    absolute(cwd, Path::new(&key)),
                );
                if cert.to_str().is_none() || key.to_str().is_none() {
                    return Err(
                        "GATEWAY_TLS_CERT_FILE and GATEWAY_TLS_KEY_FILE must be valid UTF-8 paths"
                            .into(),
                    );
                }
                Some((cert, key))
            }
            (None, None) => None,
            _ => {
                return Err(
                    "set both GATEWAY_TLS_CERT_FILE and GATEWAY_TLS_KEY_FILE (or neither)".into(),
                )
            }
        };

        Ok(Settings {
            bind,
            port,
            admin_port,
            sidecar_port,
            openai_base_url,
            openai_url,
            openai_key_set,
            openai_responses,
            aws_region,
            bedrock_endpoint,
            bedrock_url,
            bedrock_agent_endpoint,
            bedrock_agent_url,
            api_keys_file,
            upstream_timeout_seconds,
            max_request_bytes,
            envoy_bin,
            wasm,
            concurrency,
            log_level,
            run_dir,
            ca_file,
            tls,
        })
    }

    /// Envoy's `per_connection_buffer_limit_bytes` for the listener and the upstream clusters.
    pub fn buffer_limit_bytes(&self) -> u64 {
        self.max_request_bytes.saturating_add(BUFFER_HEADROOM)
    }
}

/// Reads a port variable (1..=65535).
fn port_var(get: &dyn Fn(&str) -> Option<String>, name: &str, default: u16) -> Result<u16, String> {
    match get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<u16>() {
            Ok(p) => check_port(name, p),
            Err(_) => Err(format!("{name} `{v}` is not a port number")),
        },
    }
}

/// Rejects port 0 (Envoy and the printed URL need a real port).
fn check_port(name: &str, port: u16) -> Result<u16, String> {
    if port == 0 {
        Err(format!("{name} must be a port between 1 and 65535"))
    } else {
        Ok(port)
    }
}

/// Reads a non-negative integer variable.
fn number_var(
    get: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: u64,
) -> Result<u64, String> {
    match get(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| format!("{name} `{v}` is not a whole number")),
    }
}

/// `path` made absolute against `cwd` (without touching the filesystem), `.` components dropped.
fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    joined
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// Whether a host (as in a URL, IPv6 in brackets) is an IP literal.
pub fn is_ip_literal(host: &str) -> bool {
    strip_brackets(host).parse::<IpAddr>().is_ok()
}

/// A URL host without IPv6 brackets (`[::1]` → `::1`).
pub fn strip_brackets(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Result<Settings, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_env(
            &|k| map.get(k).cloned(),
            Path::new("/srv/app"),
            &Overrides::default(),
        )
    }

    #[test]
    fn defaults() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.bind.to_string(), "127.0.0.1");
        assert_eq!((s.port, s.admin_port, s.sidecar_port), (8080, 9901, 8081));
        assert_eq!(s.openai_base_url, "https://api.openai.com/v1");
        assert!(!s.openai_key_set);
        assert!(s.openai_responses);
        assert_eq!(s.aws_region, None);
        assert_eq!(s.bedrock_url, None);
        assert_eq!(s.upstream_timeout_seconds, 600);
        assert_eq!(s.max_request_bytes, 33_554_432);
        assert_eq!(s.buffer_limit_bytes(), 34_603_008);
        assert_eq!(s.wasm, PathBuf::from("/srv/app/build/unigate.wasm"));
        assert_eq!(s.run_dir, PathBuf::from("/srv/app/.run"));
        assert_eq!(s.envoy_bin, "envoy");
        assert_eq!(s.log_level, "warn");
        assert_eq!(s.concurrency, None);
        assert_eq!(s.ca_file, DEFAULT_CA_FILE);
    }

    #[test]
    fn region_and_endpoints() {
        let s = parse(&[("AWS_DEFAULT_REGION", "eu-west-1")]).unwrap();
        assert_eq!(s.aws_region.as_deref(), Some("eu-west-1"));
        let b = s.bedrock_url.unwrap();
        assert_eq!(b.host, "bedrock-runtime.eu-west-1.amazonaws.com");
        assert!(b.tls());
        let s = parse(&[
            ("AWS_REGION", "us-east-1"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "http://127.0.0.1:18002"),
        ])
        .unwrap();
        assert_eq!(s.aws_region.as_deref(), Some("us-east-1"));
        assert_eq!(s.bedrock_url.unwrap().port, 18002);
        // An endpoint without a region does not configure Bedrock.
        let s = parse(&[("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "http://127.0.0.1:1")]).unwrap();
        assert_eq!(s.bedrock_url, None);
        // Empty values count as unset.
        let s = parse(&[("AWS_REGION", " "), ("GATEWAY_PORT", "")]).unwrap();
        assert_eq!((s.aws_region, s.port), (None, 8080));
    }

    #[test]
    fn openai_responses_switch() {
        for (v, want) in [
            ("false", false),
            ("0", false),
            ("NO", false),
            ("true", true),
            ("1", true),
        ] {
            assert_eq!(
                parse(&[("OPENAI_RESPONSES", v)]).unwrap().openai_responses,
                want,
                "{v}"
            );
        }
    }

    #[test]
    fn overrides_win() {
        let env = |k: &str| match k {
            "GATEWAY_PORT" => Some("9000".to_string()),
            "UNIGATE_WASM" => Some("/env/x.wasm".to_string()),
            _ => None,
        };
        let o = Overrides {
            port: Some(7000),
            bind: Some("0.0.0.0".into()),
            wasm: Some(PathBuf::from("./out/f.wasm")),
            envoy_bin: Some("/opt/envoy".into()),
            run_dir: Some(PathBuf::from("/tmp/run")),
        };
        let s = Settings::from_env(&env, Path::new("/w"), &o).unwrap();
        assert_eq!(s.port, 7000);
        assert_eq!(s.bind.to_string(), "0.0.0.0");
        assert_eq!(s.wasm, PathBuf::from("/w/out/f.wasm"));
        assert_eq!(s.envoy_bin, "/opt/envoy");
        assert_eq!(s.run_dir, PathBuf::from("/tmp/run"));
        // Absolute paths are used as given.
        let s = Settings::from_env(&env, Path::new("/w"), &Overrides::default()).unwrap();
        assert_eq!(s.wasm, PathBuf::from("/env/x.wasm"));
    }

    #[test]
    fn bad_values_are_explained() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("GATEWAY_PORT", "http")], "GATEWAY_PORT"),
            (&[("GATEWAY_PORT", "0")], "GATEWAY_PORT"),
            (&[("GATEWAY_BIND", "localhost")], "not an IP address"),
            (&[("ENVOY_ADMIN_PORT", "8080")], "must all differ"),
            (&[("OPENAI_BASE_URL", "api.openai.com")], "OPENAI_BASE_URL"),
            (&[("AWS_REGION", "US East")], "AWS_REGION"),
            (&[("OPENAI_RESPONSES", "maybe")], "OPENAI_RESPONSES"),
            (
                &[
                    ("AWS_REGION", "us-east-1"),
                    ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "ftp://x"),
                ],
                "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
            ),
            (
                &[("UPSTREAM_TIMEOUT_SECONDS", "0")],
                "UPSTREAM_TIMEOUT_SECONDS",
            ),
            (&[("MAX_REQUEST_BYTES", "-1")], "MAX_REQUEST_BYTES"),
            (&[("MAX_REQUEST_BYTES", "4294967295")], "MAX_REQUEST_BYTES"),
            (&[("ENVOY_CONCURRENCY", "0")], "ENVOY_CONCURRENCY"),
            (&[("ENVOY_LOG_LEVEL", "loud")], "ENVOY_LOG_LEVEL"),
        ];
        for (vars, needle) in cases {
            let e = parse(vars).unwrap_err();
            assert!(e.contains(needle), "{vars:?}: {e}");
        }
    }

    #[test]
    fn ip_literals() {
        assert!(is_ip_literal("127.0.0.1"));
        assert!(is_ip_literal("[::1]"));
        assert!(!is_ip_literal("api.openai.com"));
        assert!(!is_ip_literal("localhost"));
        assert_eq!(strip_brackets("[::1]"), "::1");
        assert_eq!(strip_brackets("h"), "h");
    }
}
