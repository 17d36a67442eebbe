//! `unigate models`: the models the gateway routes.

use super::http::{Client, ServerArgs};
use hyper::Method;
use serde_json::Value;
use std::process::ExitCode;

/// Arguments of `unigate models`.
#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Print the gateway's JSON answer as it is.
    #[arg(long)]
    json: bool,
}

/// Prints one model id per line (with its owner), or the JSON.
pub async fn run(args: ModelsArgs) -> Result<ExitCode, String> {
    let client = Client::new(&args.server)?;
    let v = client.json(Method::GET, "/v1/models", None).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let width = data
        .iter()
        .filter_map(|m| m.get("id").and_then(Value::as_str))
        .map(str::len)
        .max()
        .unwrap_or(0);
    for m in &data {
        let id = m.get("id").and_then(Value::as_str).unwrap_or("?");
        let owner = m.get("owned_by").and_then(Value::as_str).unwrap_or("");
        println!("{id:width$}  {owner}");
    }
    Ok(ExitCode::SUCCESS)
}
