//! Renders the Envoy configuration (YAML text) for a [`Settings`].
//!
//! Rendering is a pure function: the same settings always give the same bytes, whatever the
//! working directory or the process environment. The output never contains a secret; secrets
//! reach the filter through Envoy's process environment (`host_env_keys`).

use crate::settings::{is_ip_literal, strip_brackets, Settings};
use serde_json::Value;
use std::collections::BTreeMap;
use unigate_core::config::{BaseUrl, PluginConfig};

/// Variables the filter reads from Envoy's environment (`vm_config.environment_variables`).
pub const HOST_ENV_KEYS: &[&str] = &[
    "API_KEY",
    "UNIGATE_API_KEYS",
    "OPENAI_API_KEY",
    "UNIGATE_SIDECAR_TOKEN",
];

/// The plugin configuration for these settings (everything else at its default).
pub fn plugin_config(s: &Settings) -> PluginConfig {
    PluginConfig {
        openai_base_url: s.openai_base_url.clone(),
        openai_responses: s.openai_responses,
        aws_region: s.aws_region.clone(),
        bedrock_endpoint: s
            .bedrock_endpoint
            .clone()
            .filter(|_| s.aws_region.is_some()),
        bedrock_agent_endpoint: s
            .bedrock_agent_endpoint
            .clone()
            .filter(|_| s.aws_region.is_some()),
        upstream_timeout_seconds: s.upstream_timeout_seconds,
        max_request_bytes: s.max_request_bytes,
        ..PluginConfig::default()
    }
}

/// The plugin configuration as compact JSON holding only the fields that differ from
/// [`PluginConfig::default`] (so `{}` when everything is default), keys sorted.
pub fn plugin_config_json(config: &PluginConfig) -> Result<String, String> {
    let to_value = |c: &PluginConfig| {
        serde_json::to_value(c)
            .map_err(|e| format!("cannot serialize the plugin configuration: {e}"))
    };
    let default = to_value(&PluginConfig::default())?;
    let actual = to_value(config)?;
    let mut out = BTreeMap::new();
    if let Value::Object(fields) = actual {
        for (key, value) in fields {
            if default.get(&key) != Some(&value) {
                out.insert(key, value);
            }
        }
    }
    serde_json::to_string(&out)
        .map_err(|e| format!("cannot serialize the plugin configuration: {e}"))
}

/// A YAML single-quoted string (single quotes doubled).
pub fn single_quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `s` as a YAML scalar: plain when that is unambiguous (host names, IPv4 addresses, paths),
/// otherwise double-quoted (JSON string syntax is valid YAML).
pub fn scalar(s: &str) -> String {
    let safe_chars = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'));
    let starts_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '/' || c == '_');
    const SPECIAL: &[&str] = &[
        "true", "false", "yes", "no", "on", "off", "null", "y", "n", "nan", "inf",
    ];
    let special = SPECIAL.iter().any(|w| s.eq_ignore_ascii_case(w)) || s.parse::<f64>().is_ok();
    if safe_chars && starts_ok && !special {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("\"{}\"", s.escape_default()))
    }
}

/// Renders the complete Envoy configuration.
pub fn render(s: &Settings) -> Result<String, String> {
    let config = plugin_config(s);
    let plugin_json = plugin_config_json(&config)?;
    let wasm = s
        .wasm
        .to_str()
        .ok_or_else(|| format!("the wasm path `{}` is not valid UTF-8", s.wasm.display()))?;
    let buffer_limit = s.buffer_limit_bytes().to_string();

    let mut clusters = String::new();
    clusters.push_str(&upstream_cluster(
        &config.openai_cluster,
        &format!(
            "OpenAI upstream, from OPENAI_BASE_URL={}.",
            s.openai_base_url
        ),
        &s.openai_url,
        &buffer_limit,
        &s.ca_file,
    ));
    match (&s.bedrock_url, &s.aws_region) {
        (Some(url), Some(region)) => {
            let origin = match &s.bedrock_endpoint {
                Some(e) => format!("from AWS_ENDPOINT_URL_BEDROCK_RUNTIME={e}"),
                None => format!("the default endpoint for AWS_REGION={region}"),
            };
            clusters.push_str(&upstream_cluster(
                &config.bedrock_cluster,
                &format!("AWS Bedrock runtime upstream, {origin}."),
                url,
                &buffer_limit,
                &s.ca_file,
            ));
        }
        _ => clusters.push_str(NO_BEDROCK_COMMENT),
    }
    if let (Some(url), Some(region)) = (&s.bedrock_agent_url, &s.aws_region) {
        let origin = match &s.bedrock_agent_endpoint {
            Some(e) => format!("from AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME={e}"),
            None => format!("the default endpoint for AWS_REGION={region}"),
        };
        clusters.push_str(&upstream_cluster(
            &config.bedrock_agent_cluster,
            &format!("AWS Bedrock Agents runtime upstream (models bedrock-agent/<agent>/<alias>), {origin}."),
            url,
            &buffer_limit,
            &s.ca_file,
        ));
    }
    clusters.push_str(
        &SIDECAR_CLUSTER
            .replace("@NAME@", &scalar(&config.sidecar_cluster))
            .replace("@SIDECAR_PORT@", &s.sidecar_port.to_string()),
    );

    let host_env_keys = HOST_ENV_KEYS.join(", ");
    let yaml = TEMPLATE
        .replace("@ADMIN_PORT@", &s.admin_port.to_string())
        .replace("@BIND@", &scalar(&s.bind.to_string()))
        .replace("@PORT@", &s.port.to_string())
        .replace("@BUFFER_LIMIT@", &buffer_limit)
        .replace("@MAX_REQUEST_BYTES@", &s.max_request_bytes.to_string())
        .replace(
            "@IDLE_TIMEOUT@",
            &format!("{}s", s.upstream_timeout_seconds),
        )
        .replace("@PLUGIN_CONFIG@", &single_quoted(&plugin_json))
        .replace("@WASM@", &scalar(wasm))
        .replace("@HOST_ENV_KEYS@", &host_env_keys)
        .replace("@STATS_TAGS@", &stats_tags())
        .replace("@TLS@", &tls_socket(s))
        .replace("@CLUSTERS@", &clusters);
    Ok(yaml)
}

/// `stats_config.stats_tags` from the filter's own table of label regexes.
pub fn stats_tags() -> String {
    unigate_core::flow::metrics::STATS_TAGS
        .iter()
        .map(|(name, regex)| format!("  - {{tag_name: {name}, regex: {}}}", single_quoted(regex)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The listener's TLS transport socket (`GATEWAY_TLS_CERT_FILE`, `GATEWAY_TLS_KEY_FILE`);
/// nothing without them.
fn tls_socket(s: &Settings) -> String {
    let Some((cert, key)) = &s.tls else {
        return String::new();
    };
    let path = |p: &std::path::Path| scalar(&p.to_string_lossy());
    format!(
        "      # TLS on the listener (GATEWAY_TLS_CERT_FILE, GATEWAY_TLS_KEY_FILE): the AWS SDKs send a
      # Bedrock API key (bearer token) only over https.
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            alpn_protocols: [h2, http/1.1]
            tls_certificates:
            - certificate_chain: {{filename: {cert}}}
              private_key: {{filename: {key}}}
",
        cert = path(cert),
        key = path(key)
    )
}

/// A cluster for an OpenAI or Bedrock base URL: STATIC for an IP literal, LOGICAL_DNS for a
/// host name; TLS (SNI, system CAs, SAN check) for `https`.
fn upstream_cluster(
    name: &str,
    comment: &str,
    url: &BaseUrl,
    buffer_limit: &str,
    ca_file: &str,
) -> String {
    let ip = is_ip_literal(&url.host);
    let host = strip_brackets(&url.host);
    let mut out = format!("  # {comment}\n  - name: {}\n", scalar(name));
    if ip {
        out.push_str("    type: STATIC\n");
    } else {
        out.push_str(
            "    # A host name: resolved by Envoy (IPv4 first) and re-resolved as DNS changes.\n    type: LOGICAL_DNS\n    dns_lookup_family: V4_PREFERRED\n",
        );
    }
    out.push_str(&format!(
        "    connect_timeout: 10s\n    per_connection_buffer_limit_bytes: {buffer_limit}\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{address: {{socket_address: {{address: {address}, port_value: {port}}}}}}}\n",
        name = scalar(name),
        address = scalar(host),
        port = url.port,
    ));
    if url.tls() {
        // SNI must be a host name; an IP literal is checked against an IP SAN instead.
        let (sni, san_type) = if ip {
            (String::new(), "IP_ADDRESS")
        } else {
            (format!("        sni: {}\n", scalar(host)), "DNS")
        };
        out.push_str(&format!(
            "    # TLS to the upstream: certificate checked against the system CAs (SSL_CERT_FILE\n    # overrides the bundle) and the host name.\n    transport_socket:\n      name: envoy.transport_sockets.tls\n      typed_config:\n        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n{sni}        common_tls_context:\n          validation_context:\n            trusted_ca: {{filename: {ca}}}\n            match_typed_subject_alt_names: [{{san_type: {san_type}, matcher: {{exact: {host}}}}}]\n",
            ca = scalar(ca_file),
            host = scalar(host),
        ));
    }
    out
}

/// Said in place of the Bedrock cluster when no region is set.
const NO_BEDROCK_COMMENT: &str = "  # No Bedrock cluster: AWS_REGION (or AWS_DEFAULT_REGION) is not set, so requests for Bedrock\n  # models get a 503 from the filter that says what to set.\n";

/// The sidecar cluster (AWS credentials for the filter).
const SIDECAR_CLUSTER: &str =
    "  # The unigate sidecar on loopback, trusted through the x-unigate-token shared secret: the
  # filter asks it for AWS credentials and for the text of `file_ids`, and sends it /v1/files.
  - name: @NAME@
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: @NAME@
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: @SIDECAR_PORT@}}}
";

/// The configuration skeleton; `@NAME@` markers are substituted by [`render`].
const TEMPLATE: &str = r#"# unigate: Envoy configuration rendered by `unigate serve` (print it with
# `unigate serve --print-config`). Every value below comes from the environment of `unigate serve`
# (GATEWAY_PORT, GATEWAY_BIND, OPENAI_BASE_URL, AWS_REGION, AWS_ENDPOINT_URL_BEDROCK_RUNTIME,
# UPSTREAM_TIMEOUT_SECONDS, MAX_REQUEST_BYTES, ENVOY_ADMIN_PORT, UNIGATE_SIDECAR_PORT, UNIGATE_WASM;
# see `unigate serve --help`): prefer re-rendering to editing by hand.
#
# Secrets: none are in this file. The filter reads the client API keys (API_KEY, comma-separated,
# and UNIGATE_API_KEYS, the JSON entries `unigate serve` reads from API_KEYS_FILE),
# the OpenAI key (OPENAI_API_KEY) and the secret it shares with the sidecar (UNIGATE_SIDECAR_TOKEN)
# from Envoy's own process environment, listed in vm_config.environment_variables.host_env_keys
# below; `unigate serve` sets them when it starts Envoy. AWS credentials never pass through Envoy's
# configuration or environment: the filter fetches them from the unigate sidecar (cluster
# unigate_sidecar), which resolves the AWS default credential chain (AWS_ACCESS_KEY_ID/
# AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, AWS_PROFILE and SSO, web identity, ECS, EC2 instance
# role) and refreshes them before they expire.

admin:
  # Envoy's admin interface (stats, /ready, config dump): loopback only, it can stop Envoy.
  address: {socket_address: {address: 127.0.0.1, port_value: @ADMIN_PORT@}}

# The filter's metrics carry their labels as name segments (Wasm metrics have no labels);
# these tags turn them back into labels, so /stats/prometheus shows e.g.
# unigate_tokens_total{provider="bedrock",key="team-a",type="input",model="..."}.
stats_config:
  stats_tags:
@STATS_TAGS@

static_resources:
  listeners:
  - name: unigate
    address: {socket_address: {address: @BIND@, port_value: @PORT@}}
    # Buffer limits: the filter buffers a whole request body before translating it and answers an
    # OpenAI-style 413 above max_request_bytes (MAX_REQUEST_BYTES=@MAX_REQUEST_BYTES@). Envoy's own
    # limits (here and on the upstream clusters) are 1 MiB higher, so the filter's 413 comes first
    # instead of Envoy's bare one. Streamed responses are not buffered.
    per_connection_buffer_limit_bytes: @BUFFER_LIMIT@
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: unigate
          # The listener is the edge: Envoy drops client-sent x-envoy-* headers and replaces a
          # client's x-request-id with its own, so neither reaches the access log or upstreams
          # as if Envoy had set it (the client's own id is logged as client_request_id).
          use_remote_address: true
          # The filter's own 400 replies must not close HTTP/1.1 keep-alive connections.
          stream_error_on_invalid_http_message: true
          # A client may take at most 10 s to send its headers and 300 s for a whole request
          # (bounds slow-loris clients; uploads to /v1/files included).
          request_headers_timeout: 10s
          request_timeout: 300s
          # Replies Envoy generates itself where the filter never sees them (an upstream reset
          # after the filter held the response headers, for example) still get the error shape
          # of the client's API: the filter marks Messages API requests and Bedrock runtime
          # calls with x-unigate-door (the header stays on the request, as a route removal would
          # hide it from these filters too; it is not signed and names only the API);
          # everything else gets OpenAI's. The filter's own replies carry no response flag and
          # are left alone.
          local_reply_config:
            mappers:
            - filter:
                and_filter:
                  filters:
                  - response_flag_filter: {flags: [UF, UR, UC, URX, UH, UT, UO, UPE, NR, DC, UMSDR, OM, DF, SI]}
                  - header_filter: {header: {name: x-unigate-door, string_match: {exact: messages}}}
              body_format_override:
                content_type: application/json
                json_format:
                  type: error
                  error:
                    type: api_error
                    message: "%LOCAL_REPLY_BODY%"
                    code: "%RESPONSE_CODE_DETAILS%"
            - filter:
                and_filter:
                  filters:
                  - response_flag_filter: {flags: [UF, UR, UC, URX, UH, UT, UO, UPE, NR, DC, UMSDR, OM, DF, SI]}
                  - header_filter: {header: {name: x-unigate-door, string_match: {exact: bedrock}}}
              headers_to_add:
              - header: {key: x-amzn-errortype, value: ServiceUnavailableException}
                append_action: OVERWRITE_IF_EXISTS_OR_ADD
              body_format_override:
                content_type: application/json
                json_format:
                  message: "%LOCAL_REPLY_BODY%"
            - filter:
                response_flag_filter:
                  flags: [UF, UR, UC, URX, UH, UT, UO, UPE, NR, DC, UMSDR, OM, DF, SI]
              body_format_override:
                content_type: application/json
                json_format:
                  error:
                    message: "%LOCAL_REPLY_BODY%"
                    type: api_error
                    param: null
                    code: "%RESPONSE_CODE_DETAILS%"
          # One JSON line per request on stdout, with what the filter put in filter state.
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format:
                json_format:
                  time: "%START_TIME%"
                  request_id: "%REQ(X-REQUEST-ID)%"
                  client_request_id: "%REQ(X-CLIENT-REQUEST-ID)%"
                  method: "%REQ(:METHOD)%"
                  path: "%FILTER_STATE(wasm.unigate.path:PLAIN)%"
                  status: "%RESPONSE_CODE%"
                  duration_ms: "%DURATION%"
                  upstream_cluster: "%UPSTREAM_CLUSTER%"
                  key: "%FILTER_STATE(wasm.unigate.key:PLAIN)%"
                  provider: "%FILTER_STATE(wasm.unigate.provider:PLAIN)%"
                  model: "%FILTER_STATE(wasm.unigate.model:PLAIN)%"
                  prompt_tokens: "%FILTER_STATE(wasm.unigate.prompt_tokens:PLAIN)%"
                  completion_tokens: "%FILTER_STATE(wasm.unigate.completion_tokens:PLAIN)%"
                  total_tokens: "%FILTER_STATE(wasm.unigate.total_tokens:PLAIN)%"
          route_config:
            virtual_hosts:
            - name: unigate
              domains: ["*"]
              routes:
              # The filter answers local endpoints (/health, /v1/models, errors) itself and, for a
              # request it proxies, names the upstream cluster in x-unigate-cluster.
              #
              # Timeouts: `timeout: 0s` turns off Envoy's 15 s limit on the whole response, which
              # would cut long streamed completions; `idle_timeout` (UPSTREAM_TIMEOUT_SECONDS) bounds
              # how long an upstream may stay silent, after which the filter answers 504.
              #
              # No host_rewrite_literal / auto_host_rewrite here, on purpose: the filter sets
              # :authority to the upstream host itself and signs it (AWS SigV4 for Bedrock); a rewrite
              # after the filter would break the signature (SignatureDoesNotMatch).
              - match: {prefix: "/", headers: [{name: x-unigate-cluster, present_match: true}]}
                route: {cluster_header: x-unigate-cluster, timeout: 0s, idle_timeout: @IDLE_TIMEOUT@}
                request_headers_to_remove: [x-unigate-cluster]
              - match: {prefix: "/"}
                direct_response: {status: 404, body: {inline_string: '{"error":{"message":"not found","type":"invalid_request_error","param":null,"code":"not_found"}}'}}
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: unigate
                root_id: unigate
                # Lets the filter hold the request headers until it has read the whole body, then
                # rewrite path, headers and body (needs Envoy >= 1.35).
                allow_on_headers_stop_iteration: true
                # A crashed filter VM is recreated for new requests instead of failing them forever.
                failure_policy: FAIL_RELOAD
                # The plugin configuration: JSON, every field optional; only fields that differ from
                # the defaults are written. All fields are documented in core/src/config.rs
                # (PluginConfig). Model routing is changed here:
                #   "routes": [{"pattern": "gpt-*", "provider": "openai"},
                #              {"pattern": "anthropic.*", "provider": "bedrock", "api": "bedrock_converse"}]
                #       replaces the default routing table (first match wins, `*` matches any run of
                #       characters; "api" is optional: openai_chat, bedrock_anthropic, bedrock_titan,
                #       bedrock_converse, bedrock_agent);
                #   "aliases": {"fast": "amazon.nova-micro-v1:0"}
                #       short model names, merged over the default aliases ("" removes one);
                #   "models": [{"id": "my-model", "owned_by": "me"}], "replace_default_models": true
                #       entries listed by /v1/models.
                # Others: default_max_tokens, allow_unauthenticated, credentials_refresh_seconds, ...
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: @PLUGIN_CONFIG@
                vm_config:
                  vm_id: unigate
                  runtime: envoy.wasm.runtime.v8
                  code: {local: {filename: @WASM@}}
                  # Secrets come from Envoy's process environment, never from this file.
                  environment_variables:
                    host_env_keys: [@HOST_ENV_KEYS@]
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
@TLS@
  clusters:
@CLUSTERS@"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Overrides;
    use std::collections::HashMap;
    use std::path::Path;

    fn settings(vars: &[(&str, &str)]) -> Settings {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_env(
            &|k| map.get(k).cloned(),
            Path::new("/w"),
            &Overrides::default(),
        )
        .unwrap()
    }

    fn yaml(vars: &[(&str, &str)]) -> String {
        render(&settings(vars)).unwrap()
    }

    /// The text of one cluster block (from its comment line to the next cluster or the end).
    fn cluster<'a>(yaml: &'a str, name: &str) -> Option<&'a str> {
        let start = yaml.find(&format!("  - name: {name}\n"))?;
        let rest = &yaml[start..];
        let end = rest[1..].find("\n  - name: ").map_or(rest.len(), |i| i + 1);
        Some(&rest[..end])
    }

    /// envoy/envoy.yaml is exactly what `unigate serve --print-config` renders for the
    /// documented example (AWS_REGION=us-east-1, GATEWAY_BIND=0.0.0.0,
    /// UNIGATE_WASM=/etc/unigate/unigate.wasm), so the example can never drift from the code.
    #[test]
    fn committed_example_matches_the_renderer() {
        let y = yaml(&[
            ("AWS_REGION", "us-east-1"),
            ("GATEWAY_BIND", "0.0.0.0"),
            ("UNIGATE_WASM", "/etc/unigate/unigate.wasm"),
        ]);
        let committed = include_str!("../../envoy/envoy.yaml");
        assert!(
            y == committed,
            "envoy/envoy.yaml is stale: regenerate it with\n  AWS_REGION=us-east-1 GATEWAY_BIND=0.0.0.0 UNIGATE_WASM=/etc/unigate/unigate.wasm unigate serve --print-config > envoy/envoy.yaml"
        );
    }

    #[test]
    fn local_http_upstreams_are_static_without_tls() {
        let y = yaml(&[
            ("OPENAI_BASE_URL", "http://127.0.0.1:18001/v1"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "http://127.0.0.1:18002"),
        ]);
        let openai = cluster(&y, "openai").unwrap();
        assert!(openai.contains("type: STATIC"), "{openai}");
        assert!(
            openai.contains("{address: 127.0.0.1, port_value: 18001}"),
            "{openai}"
        );
        assert!(!openai.contains("transport_socket"), "{openai}");
        let bedrock = cluster(&y, "bedrock").unwrap();
        assert!(bedrock.contains("type: STATIC"));
        assert!(bedrock.contains("port_value: 18002"));
        assert!(!bedrock.contains("transport_socket"));
        assert!(
            y.contains(
                r#"value: '{"aws_region":"us-east-1","bedrock_endpoint":"http://127.0.0.1:18002","openai_base_url":"http://127.0.0.1:18001/v1"}'"#
            ),
            "{y}"
        );
    }

    #[test]
    fn https_host_names_get_dns_and_tls() {
        let y = yaml(&[
            ("AWS_REGION", "us-east-1"),
            ("SSL_CERT_FILE", "/etc/my ca.pem"),
        ]);
        let openai = cluster(&y, "openai").unwrap();
        assert!(openai.contains("type: LOGICAL_DNS"));
        assert!(openai.contains("dns_lookup_family: V4_PREFERRED"));
        assert!(openai.contains("{address: api.openai.com, port_value: 443}"));
        assert!(openai.contains("sni: api.openai.com\n"));
        assert!(openai.contains("{san_type: DNS, matcher: {exact: api.openai.com}}"));
        assert!(
            openai.contains(r#"trusted_ca: {filename: "/etc/my ca.pem"}"#),
            "{openai}"
        );
        let bedrock = cluster(&y, "bedrock").unwrap();
        assert!(bedrock.contains("type: LOGICAL_DNS"));
        assert!(bedrock.contains("sni: bedrock-runtime.us-east-1.amazonaws.com\n"));
        assert!(bedrock.contains("port_value: 443"));
        // Only the region differs from the defaults.
        assert!(y.contains(r#"value: '{"aws_region":"us-east-1"}'"#), "{y}");
        assert!(!y.contains("host_rewrite:") && !y.contains("auto_host_rewrite:"));
    }

    #[test]
    fn https_ip_literal_uses_ip_san_and_no_sni() {
        let y = yaml(&[("OPENAI_BASE_URL", "https://10.0.0.5:8443/v1")]);
        let openai = cluster(&y, "openai").unwrap();
        assert!(openai.contains("type: STATIC"));
        assert!(openai.contains("transport_socket"));
        assert!(!openai.contains("sni:"));
        assert!(openai.contains("{san_type: IP_ADDRESS, matcher: {exact: 10.0.0.5}}"));
    }

    #[test]
    fn ipv6_literals_are_quoted_without_brackets() {
        let y = yaml(&[
            ("OPENAI_BASE_URL", "http://[::1]:18001/v1"),
            ("GATEWAY_BIND", "::"),
        ]);
        assert!(y.contains(r#"{address: "::1", port_value: 18001}"#), "{y}");
        assert!(y.contains(r#"address: {socket_address: {address: "::", port_value: 8080}}"#));
    }

    #[test]
    fn tls_on_the_listener() {
        let y = yaml(&[
            ("GATEWAY_TLS_CERT_FILE", "/etc/unigate/tls/cert.pem"),
            ("GATEWAY_TLS_KEY_FILE", "/etc/unigate/tls/key.pem"),
        ]);
        assert!(y.contains("DownstreamTlsContext"), "{y}");
        assert!(y.contains("certificate_chain: {filename: /etc/unigate/tls/cert.pem}"));
        assert!(y.contains("private_key: {filename: /etc/unigate/tls/key.pem}"));
        let plain = yaml(&[]);
        assert!(!plain.contains("transport_socket:\n        name: envoy.transport_sockets.tls"));
        let only_cert = Settings::from_env(
            &|k: &str| (k == "GATEWAY_TLS_CERT_FILE").then(|| "/c.pem".to_string()),
            Path::new("/"),
            &Overrides::default(),
        );
        assert!(only_cert.unwrap_err().contains("GATEWAY_TLS_KEY_FILE"));
    }

    #[test]
    fn no_region_means_no_bedrock() {
        let y = yaml(&[("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "http://127.0.0.1:18002")]);
        assert!(cluster(&y, "bedrock").is_none());
        assert!(y.contains("No Bedrock cluster"));
        assert!(!y.contains("aws_region"));
        assert!(!y.contains("bedrock_endpoint"));
        assert!(!y.contains("18002"));
        // Everything at its default: the plugin configuration is empty.
        assert!(y.contains("value: '{}'\n"), "{y}");
        assert!(cluster(&y, "unigate_sidecar")
            .unwrap()
            .contains("port_value: 8081"));
    }

    #[test]
    fn values_from_the_environment() {
        let y = yaml(&[
            ("GATEWAY_PORT", "9000"),
            ("GATEWAY_BIND", "0.0.0.0"),
            ("ENVOY_ADMIN_PORT", "9902"),
            ("UNIGATE_SIDECAR_PORT", "9003"),
            ("UPSTREAM_TIMEOUT_SECONDS", "45"),
            ("MAX_REQUEST_BYTES", "1000"),
            ("OPENAI_RESPONSES", "false"),
            ("UNIGATE_WASM", "/etc/unigate/unigate.wasm"),
        ]);
        assert!(y.contains("address: {socket_address: {address: 0.0.0.0, port_value: 9000}}"));
        assert!(y.contains("address: {socket_address: {address: 127.0.0.1, port_value: 9902}}"));
        assert!(y.contains("idle_timeout: 45s}"));
        assert!(y.contains("timeout: 0s"));
        // 1000 + 1 MiB, on the listener and both upstream clusters.
        assert_eq!(
            y.matches("per_connection_buffer_limit_bytes: 1049576\n")
                .count(),
            2
        );
        assert!(
            y.contains(r#"value: '{"max_request_bytes":1000,"openai_responses":false,"upstream_timeout_seconds":45}'"#),
            "{y}"
        );
        assert!(y.contains("code: {local: {filename: /etc/unigate/unigate.wasm}}"));
        assert!(cluster(&y, "unigate_sidecar")
            .unwrap()
            .contains("port_value: 9003"));
        assert!(y.contains(
            "host_env_keys: [API_KEY, UNIGATE_API_KEYS, OPENAI_API_KEY, UNIGATE_SIDECAR_TOKEN]"
        ));
        // No `@MARKER@` is left unsubstituted.
        for (i, _) in y.match_indices('@') {
            let rest = &y[i + 1..];
            let name_len = rest
                .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
                .unwrap_or(rest.len());
            assert!(
                !(name_len > 0 && rest[name_len..].starts_with('@')),
                "marker left at {}",
                &y[i..]
            );
        }
    }

    #[test]
    fn secrets_never_appear() {
        let secrets = [
            ("API_KEY", "client-secret-one,client-secret-two"),
            ("OPENAI_API_KEY", "sk-secret-openai"),
            ("UNIGATE_SIDECAR_TOKEN", "sidecar-secret-token"),
            ("AWS_ACCESS_KEY_ID", "AKIDSECRETEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret-access-key"),
            ("AWS_SESSION_TOKEN", "aws-session-token-secret"),
        ];
        let mut vars = secrets.to_vec();
        vars.push(("AWS_REGION", "us-east-1"));
        let y = yaml(&vars);
        for (name, value) in secrets {
            for part in value.split(',') {
                assert!(!y.contains(part), "{name} leaked into the config");
            }
        }
        assert!(settings(&vars).openai_key_set);
    }

    #[test]
    fn quoting() {
        assert_eq!(single_quoted(r#"{"a":"it's"}"#), r#"'{"a":"it''s"}'"#);
        assert_eq!(scalar("api.openai.com"), "api.openai.com");
        assert_eq!(scalar("127.0.0.1"), "127.0.0.1");
        assert_eq!(scalar("/abs/path/unigate.wasm"), "/abs/path/unigate.wasm");
        assert_eq!(scalar("::1"), "\"::1\"");
        assert_eq!(scalar("1.5"), "\"1.5\"");
        assert_eq!(scalar("on"), "\"on\"");
        assert_eq!(scalar("/a b/c'd\"e"), r#""/a b/c'd\"e""#);
        assert_eq!(scalar(""), "\"\"");
        // A quote in a configured value stays inside the single-quoted plugin JSON.
        let mut s = settings(&[("OPENAI_BASE_URL", "http://127.0.0.1:1/it's")]);
        s.wasm = "/tmp/we ird/'x'.wasm".into();
        let y = render(&s).unwrap();
        assert!(
            y.contains(r#"value: '{"openai_base_url":"http://127.0.0.1:1/it''s"}'"#),
            "{y}"
        );
        assert!(y.contains(r#"filename: "/tmp/we ird/'x'.wasm""#), "{y}");
    }

    #[test]
    fn plugin_json_keeps_only_changed_fields() {
        assert_eq!(plugin_config_json(&PluginConfig::default()).unwrap(), "{}");
        let c = PluginConfig {
            default_max_tokens: 1,
            ..PluginConfig::default()
        };
        assert_eq!(
            plugin_config_json(&c).unwrap(),
            r#"{"default_max_tokens":1}"#
        );
        // What is emitted parses back to the same configuration.
        let s = settings(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "http://127.0.0.1:9"),
            ("MAX_REQUEST_BYTES", "77"),
        ]);
        let c = plugin_config(&s);
        let back: PluginConfig = serde_json::from_str(&plugin_config_json(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn rendering_is_deterministic_and_independent_of_cwd() {
        let vars = [
            ("AWS_REGION", "us-east-1"),
            ("UNIGATE_WASM", "/etc/unigate/unigate.wasm"),
            ("GATEWAY_BIND", "0.0.0.0"),
        ];
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let a = Settings::from_env(
            &|k| map.get(k).cloned(),
            Path::new("/a"),
            &Overrides::default(),
        )
        .unwrap();
        let b = Settings::from_env(
            &|k| map.get(k).cloned(),
            Path::new("/b/c"),
            &Overrides::default(),
        )
        .unwrap();
        let ya = render(&a).unwrap();
        assert_eq!(ya, render(&b).unwrap());
        assert_eq!(ya, render(&a).unwrap());
        assert!(ya.ends_with("port_value: 8081}}}\n"));
    }
}
