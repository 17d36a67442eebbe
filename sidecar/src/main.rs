//! `unigate`: runs the gateway (Envoy + the unigate filter + this sidecar) or only the sidecar,
//! and talks to a running gateway from the command line.
//!
//! ```text
//! unigate serve [--port N] [--bind IP] [--wasm FILE] [--envoy-bin FILE] [--run-dir DIR] [--print-config]
//! unigate sidecar [--port N]
//! unigate chat [--model M] [--system TEXT] [--temperature T] [--max-tokens N]
//! unigate models
//! unigate files upload|list|get|download|delete
//! unigate config show|check <envoy.yaml>|init
//! unigate aws test
//! ```

mod cli;
mod credentials;
mod envoy_config;
mod files;
mod serve;
mod server;
mod settings;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// unigate: an OpenAI-compatible chat-completions gateway for OpenAI and AWS Bedrock, built on
/// Envoy and a proxy-wasm filter.
#[derive(Debug, Parser)]
#[command(name = "unigate", version)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Run the gateway: the sidecar, then Envoy with the filter, until SIGINT/SIGTERM.
    ///
    /// Configured by the environment: API_KEY (client keys, comma-separated; one is generated
    /// and printed if unset), OPENAI_API_KEY, OPENAI_BASE_URL, AWS_REGION / AWS_DEFAULT_REGION,
    /// AWS_ENDPOINT_URL_BEDROCK_RUNTIME, AWS credentials (default chain: env keys, AWS_PROFILE,
    /// SSO, web identity, ECS, IMDS; AWS_ROLE_ARN assumes a role on top), GATEWAY_PORT,
    /// GATEWAY_BIND, UPSTREAM_TIMEOUT_SECONDS, MAX_REQUEST_BYTES, ENVOY_ADMIN_PORT,
    /// UNIGATE_SIDECAR_PORT, ENVOY_BIN, UNIGATE_WASM, ENVOY_CONCURRENCY, ENVOY_LOG_LEVEL,
    /// UNIGATE_RUN_DIR, SSL_CERT_FILE, and for the Files API S3_FILES_BUCKET, S3_FILES_PREFIX,
    /// AWS_ENDPOINT_URL_S3, FILES_DIR, FILES_MAX_BYTES, FILE_CONTEXT_MAX_BYTES. The flags below
    /// override their variables. `unigate config init` writes them all to a commented .env.
    Serve {
        /// Gateway port [env: GATEWAY_PORT] [default: 8080].
        #[arg(long)]
        port: Option<u16>,
        /// Gateway listen address [env: GATEWAY_BIND] [default: 127.0.0.1].
        #[arg(long)]
        bind: Option<String>,
        /// The filter's .wasm [env: UNIGATE_WASM] [default: build/unigate.wasm].
        #[arg(long)]
        wasm: Option<PathBuf>,
        /// The Envoy binary [env: ENVOY_BIN] [default: envoy on PATH].
        #[arg(long)]
        envoy_bin: Option<String>,
        /// Where the rendered envoy.yaml is written [env: UNIGATE_RUN_DIR] [default: .run].
        #[arg(long)]
        run_dir: Option<PathBuf>,
        /// Print the Envoy configuration for the current environment and exit.
        #[arg(long)]
        print_config: bool,
    },
    /// Run only the sidecar (e.g. in a Kubernetes pod next to an Envoy with the filter).
    ///
    /// Serves AWS credentials and the Files API to the filter. Listens on 127.0.0.1 only.
    /// Needs UNIGATE_SIDECAR_TOKEN, the secret the filter sends in x-unigate-token (give Envoy
    /// the same value). AWS credentials come from the default chain (plus AWS_ROLE_ARN); files
    /// go to S3_FILES_BUCKET or FILES_DIR.
    Sidecar {
        /// Port on 127.0.0.1 [env: UNIGATE_SIDECAR_PORT] [default: 8081].
        #[arg(long)]
        port: Option<u16>,
    },
    /// Chat with a running gateway (a REPL; reads stdin, so it can be scripted).
    ///
    /// Type a message and press Enter; the answer streams as it arrives. Commands:
    /// `/file <path>` uploads a file (purpose user_data) and attaches it to the next message,
    /// `/reset` forgets the conversation, `/exit` (or end of input) quits.
    Chat(cli::chat::ChatArgs),
    /// List the models the gateway routes.
    Models(cli::models::ModelsArgs),
    /// Upload, list, inspect, download and delete files (the gateway's /v1/files).
    Files(cli::files::FilesArgs),
    /// Show, check or create configuration.
    Config(cli::config::ConfigArgs),
    /// Check AWS credentials and access.
    Aws(cli::aws::AwsArgs),
    /// Internal: the sidecar's PDF text extraction, in a process it can kill.
    #[command(name = files::pdf_worker::SUBCOMMAND, hide = true)]
    ExtractPdf(files::pdf_worker::WorkerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Commands::ExtractPdf(args) = &cli.command {
        // Before the async runtime and logging: a small, single-threaded process.
        return files::pdf_worker::child(args);
    }
    init_logging();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("unigate: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; `RUST_LOG` filters (default `info`, with the AWS SDK's per-provider
/// warnings muted: the sidecar logs one summary of each failed resolution itself).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,aws_config=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

/// Reads the process environment (the only place that does).
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    match cli.command {
        Commands::Serve {
            port,
            bind,
            wasm,
            envoy_bin,
            run_dir,
            print_config,
        } => {
            let cwd = std::env::current_dir()
                .map_err(|e| format!("cannot read the working directory: {e}"))?;
            let overrides = settings::Overrides {
                port,
                bind,
                wasm,
                envoy_bin,
                run_dir,
            };
            let settings = settings::Settings::from_env(&process_env, &cwd, &overrides)?;
            if print_config {
                print!("{}", envoy_config::render(&settings)?);
                return Ok(ExitCode::SUCCESS);
            }
            runtime.block_on(serve::serve(settings, &process_env))
        }
        Commands::Sidecar { port } => runtime.block_on(sidecar(port)),
        Commands::Chat(args) => runtime.block_on(cli::chat::run(args)),
        Commands::Models(args) => runtime.block_on(cli::models::run(args)),
        Commands::Files(args) => runtime.block_on(cli::files::run(args)),
        Commands::Config(args) => cli::config::run(args, &process_env),
        Commands::Aws(args) => runtime.block_on(cli::aws::run(args, &process_env)),
        Commands::ExtractPdf(args) => Ok(files::pdf_worker::child(&args)),
    }
}

/// `unigate sidecar`: the credentials and files server alone, until SIGINT/SIGTERM.
async fn sidecar(port: Option<u16>) -> Result<ExitCode, String> {
    let port = match port {
        Some(p) => p,
        None => match process_env("UNIGATE_SIDECAR_PORT").filter(|v| !v.trim().is_empty()) {
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("UNIGATE_SIDECAR_PORT `{v}` is not a port number"))?,
            None => settings::DEFAULT_SIDECAR_PORT,
        },
    };
    let token = process_env(serve::SIDECAR_TOKEN_VAR)
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            format!(
                "{} is not set: set it to a random secret here and in Envoy's environment (the filter sends it to the sidecar)",
                serve::SIDECAR_TOKEN_VAR
            )
        })?;
    let listener = server::bind(port).await?;
    let state = Arc::new(serve::sidecar_state(token, &process_env).await?);
    serve::prewarm(&state);
    match listener.local_addr() {
        Ok(addr) => tracing::info!("unigate sidecar listening on {addr}"),
        Err(_) => tracing::info!("unigate sidecar listening on 127.0.0.1:{port}"),
    }
    server::run(listener, state, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGINT or SIGTERM (never, if the handlers cannot be installed).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            tracing::warn!("cannot install signal handlers");
            std::future::pending::<()>().await
        }
    }
}
