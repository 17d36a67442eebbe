//! `unigate files`: upload, list, inspect, download and delete files through the gateway's
//! `/v1/files` (the same calls the OpenAI SDK makes).

use super::http::{self, Body, Client, ServerArgs};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::Method;
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Arguments of `unigate files`.
#[derive(Debug, clap::Args)]
pub struct FilesArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: FilesCommand,
}

#[derive(Debug, clap::Subcommand)]
enum FilesCommand {
    /// Upload a file (shows a progress bar on a terminal).
    Upload {
        /// The file.
        path: PathBuf,
        /// assistants, batch, fine-tune, vision, user_data or evals.
        #[arg(long, default_value = "user_data")]
        purpose: String,
        /// Print the gateway's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// List your files (newest first).
    List {
        /// Only files with this purpose.
        #[arg(long)]
        purpose: Option<String>,
        /// At most this many (1 to 10000).
        #[arg(long)]
        limit: Option<u32>,
        /// `asc` (oldest first) or `desc`.
        #[arg(long)]
        order: Option<String>,
        /// Print the gateway's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Show one file's record (JSON).
    Get {
        /// The file id (file-…).
        id: String,
    },
    /// Download a file's content.
    Download {
        /// The file id (file-…).
        id: String,
        /// Where to write it (`-` for stdout) [default: the file's name, in this directory].
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Delete a file.
    Delete {
        /// The file id (file-…).
        id: String,
    },
}

/// Runs a `files` command.
pub async fn run(args: FilesArgs) -> Result<ExitCode, String> {
    let client = Client::new(&args.server)?;
    match args.command {
        FilesCommand::Upload {
            path,
            purpose,
            json,
        } => {
            let progress = std::io::stderr().is_terminal();
            let obj = upload(&client, &path, &purpose, progress).await?;
            if json {
                println!("{}", pretty(&obj));
            } else {
                println!(
                    "{}  {} bytes  {}  {}",
                    str_of(&obj, "id"),
                    obj.get("bytes").and_then(Value::as_u64).unwrap_or(0),
                    str_of(&obj, "purpose"),
                    str_of(&obj, "filename")
                );
            }
        }
        FilesCommand::List {
            purpose,
            limit,
            order,
            json,
        } => {
            let mut query = Vec::new();
            if let Some(p) = purpose {
                query.push(format!("purpose={}", encode(&p)));
            }
            if let Some(l) = limit {
                query.push(format!("limit={l}"));
            }
            if let Some(o) = order {
                query.push(format!("order={}", encode(&o)));
            }
            let path = if query.is_empty() {
                "/v1/files".to_string()
            } else {
                format!("/v1/files?{}", query.join("&"))
            };
            let v = client.json(Method::GET, &path, None).await?;
            if json {
                println!("{}", pretty(&v));
            } else {
                let data = v
                    .get("data")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if data.is_empty() {
                    eprintln!("(no files)");
                }
                for f in &data {
                    println!(
                        "{}  {:>10}  {}  {:<10}  {}",
                        str_of(f, "id"),
                        f.get("bytes").and_then(Value::as_u64).unwrap_or(0),
                        http::utc_time(f.get("created_at").and_then(Value::as_u64).unwrap_or(0)),
                        str_of(f, "purpose"),
                        str_of(f, "filename")
                    );
                }
                if v.get("has_more") == Some(&Value::Bool(true)) {
                    eprintln!("(more files: raise --limit)");
                }
            }
        }
        FilesCommand::Get { id } => {
            let v = client
                .json(Method::GET, &format!("/v1/files/{}", encode(&id)), None)
                .await?;
            println!("{}", pretty(&v));
        }
        FilesCommand::Download { id, output, force } => {
            download(&client, &id, output, force).await?;
        }
        FilesCommand::Delete { id } => {
            let v = client
                .json(Method::DELETE, &format!("/v1/files/{}", encode(&id)), None)
                .await?;
            if v.get("deleted") == Some(&Value::Bool(true)) {
                println!("deleted {id}");
            } else {
                return Err(format!("the gateway did not delete {id}: {v}"));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Uploads a file as `multipart/form-data`, streamed from disk; returns the file object.
pub async fn upload(
    client: &Client,
    path: &Path,
    purpose: &str,
    progress: bool,
) -> Result<Value, String> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let len = file
        .metadata()
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    let filename = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "upload".into());
    let boundary = format!("unigate-{}", crate::serve::random_hex(12)?);
    let header_name: String = filename
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '"' { '\'' } else { c })
        .collect();
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{header_name}\"\r\nContent-Type: {}\r\n\r\n",
        crate::files::content_type_for(&filename, None)
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let total = head.len() as u64 + len + tail.len() as u64;
    let bar = progress.then(|| Arc::new(Progress::new(&filename, len)));
    let counter = bar.clone();
    let content = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024).map(move |chunk| {
        if let (Ok(c), Some(bar)) = (&chunk, &counter) {
            bar.advance(c.len() as u64);
        }
        chunk
    });
    let stream = futures_util::stream::once(async move { Ok(Bytes::from(head)) })
        .chain(content)
        .chain(futures_util::stream::once(
            async move { Ok(Bytes::from(tail)) },
        ))
        .map(|r: Result<Bytes, std::io::Error>| r.map(Frame::data));
    let body: Body = BodyExt::boxed(StreamBody::new(stream));
    let resp = client
        .send(
            Method::POST,
            "/v1/files",
            &[
                (
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                ),
                ("content-length", total.to_string()),
            ],
            body,
        )
        .await;
    if let Some(b) = &bar {
        b.finish();
    }
    let resp = resp?;
    let status = resp.status().as_u16();
    let bytes = http::read_all(resp).await?;
    if status != 200 {
        return Err(http::api_error(status, &bytes));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("unexpected answer: {e}"))
}

/// Downloads a file's content to `output` (written under a temporary name, then renamed).
async fn download(
    client: &Client,
    id: &str,
    output: Option<PathBuf>,
    force: bool,
) -> Result<(), String> {
    let path = format!("/v1/files/{}/content", encode(id));
    let target = match output {
        Some(p) => p,
        None => {
            let meta = client
                .json(Method::GET, &format!("/v1/files/{}", encode(id)), None)
                .await?;
            let name = Path::new(str_of(&meta, "filename"))
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .filter(|n| !n.is_empty() && n != "." && n != "..")
                .unwrap_or_else(|| id.to_string());
            PathBuf::from(name)
        }
    };
    let to_stdout = target.as_os_str() == "-";
    if !to_stdout && target.exists() && !force {
        return Err(format!(
            "{} already exists (use --force to overwrite, or -o to choose another path)",
            target.display()
        ));
    }
    let resp = client.send(Method::GET, &path, &[], http::empty()).await?;
    let status = resp.status().as_u16();
    if status != 200 {
        let bytes = http::read_all(resp).await?;
        return Err(http::api_error(status, &bytes));
    }
    let mut body = resp.into_body();
    let mut written = 0u64;
    if to_stdout {
        let mut out = tokio::io::stdout();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("the download broke: {e}"))?;
            if let Ok(data) = frame.into_data() {
                out.write_all(&data)
                    .await
                    .map_err(|e| format!("cannot write to stdout: {e}"))?;
            }
        }
        out.flush()
            .await
            .map_err(|e| format!("cannot write to stdout: {e}"))?;
        return Ok(());
    }
    let part = target.with_extension(format!(
        "{}part",
        target
            .extension()
            .map(|e| format!("{}.", e.to_string_lossy()))
            .unwrap_or_default()
    ));
    let result = async {
        let mut f = tokio::fs::File::create(&part)
            .await
            .map_err(|e| format!("cannot create {}: {e}", part.display()))?;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("the download broke: {e}"))?;
            if let Ok(data) = frame.into_data() {
                f.write_all(&data)
                    .await
                    .map_err(|e| format!("cannot write {}: {e}", part.display()))?;
                written += data.len() as u64;
            }
        }
        f.flush()
            .await
            .map_err(|e| format!("cannot write {}: {e}", part.display()))?;
        tokio::fs::rename(&part, &target)
            .await
            .map_err(|e| format!("cannot write {}: {e}", target.display()))
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&part).await;
    }
    result?;
    eprintln!("saved {} ({written} bytes)", target.display());
    Ok(())
}

/// A progress bar on stderr, redrawn at most ten times a second.
struct Progress {
    name: String,
    total: u64,
    done: AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl Progress {
    fn new(name: &str, total: u64) -> Progress {
        Progress {
            name: name.to_string(),
            total,
            done: AtomicU64::new(0),
            last: Mutex::new(None),
        }
    }

    fn advance(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < Duration::from_millis(100)) && done < self.total {
            return;
        }
        *last = Some(Instant::now());
        self.draw(done);
    }

    fn draw(&self, done: u64) {
        const WIDTH: u64 = 30;
        let frac = if self.total == 0 {
            1.0
        } else {
            done as f64 / self.total as f64
        };
        let filled = ((frac * WIDTH as f64) as u64).min(WIDTH);
        let bar: String = (0..WIDTH)
            .map(|i| if i < filled { '#' } else { '-' })
            .collect();
        eprint!(
            "\r{} [{bar}] {:>3}% {}/{}",
            self.name,
            (frac * 100.0) as u64,
            human(done),
            human(self.total)
        );
        let _ = std::io::stderr().flush();
    }

    fn finish(&self) {
        self.draw(self.done.load(Ordering::Relaxed));
        eprintln!();
    }
}

/// Bytes in B/KiB/MiB/GiB.
fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    let name = UNITS.get(unit).copied().unwrap_or("B");
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {name}")
    }
}

/// Percent-encodes a path segment or query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A string field of a JSON object ("" when missing).
fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Pretty JSON.
fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(human(5), "5 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(100 * 1024 * 1024), "100.0 MiB");
        assert_eq!(encode("file-A1"), "file-A1");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }
}
