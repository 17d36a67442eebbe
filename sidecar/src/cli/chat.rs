//! `unigate chat`: a REPL against a running gateway. Reads lines from stdin (a terminal or a
//! pipe), streams each answer as it arrives, keeps the conversation for the session.

use super::http::{self, Client, ServerArgs};
use hyper::Method;
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use tokio::io::AsyncBufReadExt;

/// Arguments of `unigate chat`.
#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Model id or alias.
    #[arg(long, env = "UNIGATE_MODEL", default_value = "gpt-4o-mini")]
    model: String,
    /// Sampling temperature.
    #[arg(long)]
    temperature: Option<f64>,
    /// Most tokens per answer.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// A system message for the whole session.
    #[arg(long)]
    system: Option<String>,
    /// Wait for whole answers instead of streaming them.
    #[arg(long)]
    no_stream: bool,
}

/// What the REPL keeps between turns.
struct Session {
    messages: Vec<Value>,
    pending_files: Vec<String>,
}

impl Session {
    fn new(system: Option<&str>) -> Session {
        let messages = system
            .map(|s| vec![json!({"role": "system", "content": s})])
            .unwrap_or_default();
        Session {
            messages,
            pending_files: Vec::new(),
        }
    }
}

/// Runs the REPL until `/exit` or the end of input.
pub async fn run(args: ChatArgs) -> Result<ExitCode, String> {
    let client = Client::new(&args.server)?;
    let interactive = std::io::stdin().is_terminal();
    let mut session = Session::new(args.system.as_deref());
    if interactive {
        eprintln!(
            "unigate chat: {} via {} (/file <path>, /reset, /exit)",
            args.model,
            client.base()
        );
    }
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut failed = false;
    loop {
        if interactive {
            eprint!("you> ");
            let _ = std::io::stderr().flush();
        }
        let line = match lines.next_line().await {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => return Err(format!("cannot read stdin: {e}")),
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line {
            "/exit" | "/quit" => break,
            "/reset" => {
                session = Session::new(args.system.as_deref());
                eprintln!("(conversation reset)");
                continue;
            }
            "/help" => {
                eprintln!("/file <path>  upload a file and attach it to the next message\n/reset        forget the conversation\n/exit         quit");
                continue;
            }
            _ => {}
        }
        if let Some(path) = line.strip_prefix("/file") {
            let path = path.trim();
            if path.is_empty() {
                eprintln!("usage: /file <path>");
                continue;
            }
            match super::files::upload(&client, Path::new(path), "user_data", false).await {
                Ok(obj) => {
                    let id = obj
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    eprintln!(
                        "(attached {id}: {}, {} bytes; it goes with your next message)",
                        obj.get("filename").and_then(Value::as_str).unwrap_or(path),
                        obj.get("bytes").and_then(Value::as_u64).unwrap_or(0)
                    );
                    session.pending_files.push(id);
                }
                Err(e) => {
                    eprintln!("unigate: error: {e}");
                    failed = true;
                }
            }
            continue;
        }
        if line.starts_with('/') {
            eprintln!("unknown command `{line}` (/file <path>, /reset, /exit)");
            continue;
        }
        session
            .messages
            .push(json!({"role": "user", "content": line}));
        match turn(&client, &args, &session).await {
            Ok(answer) => {
                session
                    .messages
                    .push(json!({"role": "assistant", "content": answer}));
                session.pending_files.clear();
            }
            Err(e) => {
                // The failed message is forgotten, so it can be sent again.
                session.messages.pop();
                eprintln!("unigate: error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The request body for the next turn.
fn request_body(args: &ChatArgs, session: &Session) -> Value {
    let mut body = json!({
        "model": args.model,
        "messages": session.messages,
        "stream": !args.no_stream,
    });
    if let Some(o) = body.as_object_mut() {
        if let Some(t) = args.temperature {
            o.insert("temperature".into(), json!(t));
        }
        if let Some(m) = args.max_tokens {
            o.insert("max_tokens".into(), json!(m));
        }
        if !session.pending_files.is_empty() {
            o.insert("file_ids".into(), json!(session.pending_files));
        }
    }
    body
}

/// Sends one turn and prints the answer as it arrives; returns the whole answer.
async fn turn(client: &Client, args: &ChatArgs, session: &Session) -> Result<String, String> {
    let body = request_body(args, session);
    if args.no_stream {
        let v = client
            .json(Method::POST, "/v1/chat/completions", Some(&body))
            .await?;
        let text = v
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        println!("{text}");
        return Ok(text);
    }
    let resp = client
        .send(
            Method::POST,
            "/v1/chat/completions",
            &[
                ("content-type", "application/json".to_string()),
                ("accept", "text/event-stream".to_string()),
            ],
            http::full(serde_json::to_vec(&body).unwrap_or_default()),
        )
        .await?;
    let status = resp.status().as_u16();
    if status != 200 {
        let bytes = http::read_all(resp).await?;
        return Err(http::api_error(status, &bytes));
    }
    let mut body = resp.into_body();
    let mut sse = SseLines::default();
    let mut answer = String::new();
    let mut out = std::io::stdout();
    let mut done = false;
    while !done {
        let frame = match http_body_util::BodyExt::frame(&mut body).await {
            Some(Ok(f)) => f,
            Some(Err(e)) => return Err(format!("the stream broke: {e}")),
            None => break,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        for event in sse.push(&data) {
            if event.trim() == "[DONE]" {
                done = true;
                break;
            }
            let Ok(v) = serde_json::from_str::<Value>(&event) else {
                continue;
            };
            if let Some(err) = v.get("error") {
                let msg = err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error");
                let _ = writeln!(out);
                return Err(format!("the answer stopped with an error: {msg}"));
            }
            if let Some(piece) = v
                .pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
            {
                answer.push_str(piece);
                let _ = write!(out, "{piece}");
                let _ = out.flush();
            }
        }
    }
    let _ = writeln!(out);
    let _ = out.flush();
    Ok(answer)
}

/// Splits an SSE byte stream into the data of its events, as bytes arrive.
#[derive(Default)]
pub struct SseLines {
    buf: Vec<u8>,
    data: Vec<String>,
}

impl SseLines {
    /// Feeds bytes; returns the data of every event completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    events.push(self.data.join("\n"));
                    self.data.clear();
                }
            } else if let Some(d) = line.strip_prefix("data:") {
                self.data.push(d.strip_prefix(' ').unwrap_or(d).to_string());
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_split_anywhere() {
        let stream = b"data: {\"a\":1}\n\n: comment\n\ndata: x\r\ndata: y\r\n\r\ndata: [DONE]\n\n";
        for cut in 0..stream.len() {
            let mut s = SseLines::default();
            let mut events = s.push(&stream[..cut]);
            events.extend(s.push(&stream[cut..]));
            assert_eq!(events, vec!["{\"a\":1}", "x\ny", "[DONE]"], "cut at {cut}");
        }
    }
}
