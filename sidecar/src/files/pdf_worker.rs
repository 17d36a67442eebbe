//! PDF text in a child process: `unigate extract-pdf` (hidden) reads the PDF on stdin and
//! writes its text to stdout.
//!
//! `pdf-extract` cannot be interrupted from inside, allocates as a file tells it to, and can
//! recurse or panic on malformed files. In a child process the sidecar can stop it for real:
//! the child is killed when the request's deadline passes or its caller goes away (the future
//! holding it is dropped), its address space is limited (`FILE_CONTEXT_PDF_MEMORY_BYTES`), and
//! a crash costs one process. A thread could only be abandoned, still burning a core and its
//! memory until the parser finished on its own.
//!
//! Protocol: the child exits 0 with `0` (complete) or `1` (cut at the cap) and the text on
//! stdout, or exits [`REFUSED`] with `<kind>\t<message>` on stderr; anything else (a signal,
//! another code) means the file could not be read.

use super::extract::budget::Budget;
use super::extract::{Extracted, Failure};
use std::io::{Read, Write};
use std::process::{ExitCode, Stdio};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The hidden subcommand.
pub const SUBCOMMAND: &str = "extract-pdf";
/// Exit code of a refused file (the reason on stderr).
const REFUSED: u8 = 3;
/// Most of the child's stderr read.
const MAX_STDERR: u64 = 4096;

/// Arguments of `unigate extract-pdf`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Most bytes of text written.
    #[arg(long)]
    max_bytes: usize,
    /// Deepest nesting accepted.
    #[arg(long)]
    max_depth: usize,
    /// Milliseconds before the extraction stops.
    #[arg(long)]
    timeout_ms: u64,
    /// The file's name (for messages).
    #[arg(long)]
    name: String,
}

/// The child: extracts the PDF on stdin.
pub fn child(args: &WorkerArgs) -> ExitCode {
    // Panics are answers here (caught below), not crashes worth a backtrace on stderr.
    std::panic::set_hook(Box::new(|_| {}));
    let mut data = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut data) {
        return refuse("unsupported", &format!("cannot read the PDF: {e}"));
    }
    let deadline = Instant::now() + std::time::Duration::from_millis(args.timeout_ms);
    let mut budget = Budget::new(Some(deadline), None, args.max_depth);
    let result = super::extract::extract(
        super::extract::Kind::Pdf,
        &args.name,
        &data,
        false,
        args.max_bytes,
        &mut budget,
    );
    match result {
        Ok(e) => {
            let mut out = std::io::stdout().lock();
            let flag: &[u8] = if e.truncated { b"1" } else { b"0" };
            match out
                .write_all(flag)
                .and_then(|()| out.write_all(e.text.as_bytes()))
                .and_then(|()| out.flush())
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            }
        }
        Err(Failure::Unsupported(m)) => refuse("unsupported", &m),
        Err(Failure::TooDeep(m)) => refuse("too_deep", &m),
        Err(Failure::TooComplex(m)) => refuse("too_complex", &m),
        Err(Failure::Timeout | Failure::Cancelled) => refuse("timeout", ""),
    }
}

/// Writes the refusal for the parent.
fn refuse(kind: &str, message: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "{kind}\t{message}");
    ExitCode::from(REFUSED)
}

/// The parent: the text of the PDF read from `input`, extracted by a child process that is
/// killed at `deadline` or when this future is dropped. The outer error is the sidecar's own
/// failure (the child could not be started).
pub async fn extract(
    mut input: impl AsyncRead + Unpin,
    filename: &str,
    max: usize,
    max_depth: usize,
    deadline: Instant,
    memory: u64,
) -> Result<Result<Extracted, Failure>, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the unigate binary: {e}"))?;
    let timeout_ms = deadline
        .saturating_duration_since(Instant::now())
        .as_millis();
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg(SUBCOMMAND)
        .arg(format!("--max-bytes={max}"))
        .arg(format!("--max-depth={max_depth}"))
        .arg(format!("--timeout-ms={timeout_ms}"))
        // An argument cannot hold NUL; the name is only for messages.
        .arg(format!("--name={}", filename.replace('\0', "_")))
        // Nothing of the sidecar's environment (credentials) is needed.
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    limit(&mut cmd, memory, timeout_ms);
    let mut worker =
        Worker(Some(cmd.spawn().map_err(|e| {
            format!("cannot start the PDF extraction process: {e}")
        })?));
    let Some(child) = worker.0.as_mut() else {
        return Err("the PDF extraction process is gone".into());
    };
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err("the PDF extraction process has no pipes".into());
    };
    let run = async {
        let feed = async {
            // A child that stopped reading (it failed, or was killed) ends the copy.
            let _ = tokio::io::copy(&mut input, &mut stdin).await;
            drop(stdin);
        };
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut stdout = stdout.take(max as u64 + 1);
        let mut stderr = stderr.take(MAX_STDERR);
        let read_out = stdout.read_to_end(&mut out);
        let read_err = stderr.read_to_end(&mut err);
        let (_, _, _) = tokio::join!(feed, read_out, read_err);
        let status = child.wait().await;
        (status, out, err)
    };
    let Ok((status, out, err)) = tokio::time::timeout_at(deadline.into(), run).await else {
        // `worker` is dropped on return: the child is killed.
        return Ok(Err(Failure::Timeout));
    };
    let status = status.map_err(|e| format!("the PDF extraction process was lost: {e}"))?;
    Ok(answer(filename, status, &out, &err, memory))
}

/// The child process: killed and reaped when dropped, which happens when the extraction
/// ends, its deadline passes, or the request's future is dropped because its caller left.
struct Worker(Option<tokio::process::Child>);

impl Drop for Worker {
    fn drop(&mut self) {
        let Some(mut child) = self.0.take() else {
            return;
        };
        let _ = child.start_kill();
        // Reaped in the background (else a zombie waits for the next child to be spawned);
        // without a runtime, `kill_on_drop` still kills it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = child.wait().await;
            });
        }
    }
}

/// What the child's exit means.
fn answer(
    filename: &str,
    status: std::process::ExitStatus,
    out: &[u8],
    err: &[u8],
    memory: u64,
) -> Result<Extracted, Failure> {
    use std::os::unix::process::ExitStatusExt;
    let err = String::from_utf8_lossy(err);
    if status.success() {
        let (flag, text) = out.split_first().unwrap_or((&b'0', &[]));
        return match std::str::from_utf8(text) {
            Ok(t) => Ok(Extracted {
                text: t.to_string(),
                truncated: *flag == b'1',
            }),
            Err(_) => Err(unreadable(filename)),
        };
    }
    if status.code() == Some(i32::from(REFUSED)) {
        let line = err.lines().next().unwrap_or_default();
        let (kind, message) = line.split_once('\t').unwrap_or(("", ""));
        return Err(match kind {
            "too_deep" => Failure::TooDeep(message.to_string()),
            "too_complex" => Failure::TooComplex(message.to_string()),
            "timeout" => Failure::Timeout,
            "unsupported" if !message.is_empty() => Failure::Unsupported(message.to_string()),
            _ => unreadable(filename),
        });
    }
    if status.signal() == Some(libc::SIGXCPU) {
        return Err(Failure::Timeout);
    }
    if err.contains("memory allocation of") {
        return Err(Failure::TooComplex(format!(
            "The PDF `{filename}` needs more than {} MiB to extract its text (FILE_CONTEXT_PDF_MEMORY_BYTES), so it is not used.",
            memory >> 20
        )));
    }
    if err.contains("overflowed its stack") {
        return Err(Failure::TooComplex(format!(
            "The PDF `{filename}` is nested too deeply to extract its text."
        )));
    }
    tracing::debug!(?status, stderr = %err, "PDF extraction process failed");
    Err(unreadable(filename))
}

/// 415 for a PDF the parser could not get through.
fn unreadable(filename: &str) -> Failure {
    Failure::Unsupported(format!("The PDF `{filename}` could not be read."))
}

/// The child's limits: `memory` bytes of address space, CPU seconds a little past the
/// deadline, and death with the sidecar.
fn limit(cmd: &mut tokio::process::Command, memory: u64, timeout_ms: u128) {
    let cpu = u64::try_from(timeout_ms / 1000)
        .unwrap_or(u64::MAX)
        .saturating_add(2);
    // SAFETY: setrlimit and prctl are async-signal-safe system calls on values computed
    // before the fork; the closure touches no memory of the parent and does not allocate.
    unsafe {
        cmd.pre_exec(move || {
            let address = libc::rlimit {
                rlim_cur: memory,
                rlim_max: memory,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &address) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Soft limit: SIGXCPU; hard limit a second later: SIGKILL.
            let seconds = libc::rlimit {
                rlim_cur: cpu,
                rlim_max: cpu.saturating_add(1),
            };
            if libc::setrlimit(libc::RLIMIT_CPU, &seconds) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            #[cfg(target_os = "linux")]
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn exit(code: i32) -> std::process::ExitStatus {
        std::process::ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn what_the_child_said() {
        let ok = answer("a.pdf", exit(0), b"1Hello", b"", 1 << 20).unwrap();
        assert_eq!((ok.text.as_str(), ok.truncated), ("Hello", true));
        let ok = answer("a.pdf", exit(0), b"", b"", 1 << 20).unwrap();
        assert_eq!((ok.text.as_str(), ok.truncated), ("", false));
        let deep = answer("a.pdf", exit(3), b"", b"too_deep\tnests deeper\n", 1 << 20);
        assert_eq!(deep, Err(Failure::TooDeep("nests deeper".into())));
        let late = answer("a.pdf", exit(3), b"", b"timeout\t\n", 1 << 20);
        assert_eq!(late, Err(Failure::Timeout));
        let cpu = std::process::ExitStatus::from_raw(libc::SIGXCPU);
        assert_eq!(
            answer("a.pdf", cpu, b"", b"", 1 << 20),
            Err(Failure::Timeout)
        );
        let oom = std::process::ExitStatus::from_raw(libc::SIGABRT);
        let e = answer(
            "a.pdf",
            oom,
            b"",
            b"memory allocation of 480 bytes failed\n",
            96 << 20,
        );
        assert!(matches!(e, Err(Failure::TooComplex(m)) if m.contains("96 MiB")));
        let crash = std::process::ExitStatus::from_raw(libc::SIGSEGV);
        let e = answer("a.pdf", crash, b"", b"", 1 << 20);
        assert_eq!(
            e,
            Err(Failure::Unsupported(
                "The PDF `a.pdf` could not be read.".into()
            ))
        );
        // A refusal without a message, or an unknown kind, reads as unreadable.
        let e = answer("a.pdf", exit(3), b"", b"what\tever", 1 << 20);
        assert!(matches!(e, Err(Failure::Unsupported(_))));
    }
}
