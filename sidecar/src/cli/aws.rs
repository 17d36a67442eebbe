//! `unigate aws test`: resolves the credential chain the sidecar would use, says which
//! provider answered (never the secrets), asks STS who that is, and explains failures.

use crate::credentials::{describe_sources, error_chain, Chain};
use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `unigate aws`.
#[derive(Debug, clap::Args)]
pub struct AwsArgs {
    #[command(subcommand)]
    command: AwsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AwsCommand {
    /// Resolve AWS credentials and call STS GetCallerIdentity with them.
    ///
    /// Uses the same chain as the sidecar: env keys, AWS_PROFILE (and SSO), web identity,
    /// ECS, instance metadata, and AWS_ROLE_ARN's AssumeRole on top. Prints the provider
    /// that supplied credentials and the identity, or what went wrong in plain words.
    Test,
}

/// Runs an `aws` command.
pub async fn run(args: AwsArgs, env: &dyn Fn(&str) -> Option<String>) -> Result<ExitCode, String> {
    match args.command {
        AwsCommand::Test => Ok(test(env).await),
    }
}

async fn test(env: &dyn Fn(&str) -> Option<String>) -> ExitCode {
    let get = |n: &str| {
        env(n)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let fail = |what: &str, why: String| {
        println!("FAILED: {what}");
        println!("{why}");
        ExitCode::FAILURE
    };

    if let (Some(file), Some(_)) = (get("AWS_WEB_IDENTITY_TOKEN_FILE"), get("AWS_ROLE_ARN")) {
        if !std::path::Path::new(&file).is_file() {
            return fail(
                "web identity",
                format!("AWS_WEB_IDENTITY_TOKEN_FILE points to {file}, which does not exist. On EKS the token is mounted by IRSA/Pod Identity: check the service account annotation (eks.amazonaws.com/role-arn) and that the pod was restarted after it was added; elsewhere, unset the variable."),
            );
        }
    }
    if let Some(profile) = get("AWS_PROFILE") {
        println!("profile: {profile}");
    }
    let chain = match Chain::from_env(env) {
        Ok(c) => c,
        Err(e) => return fail("configuration", e),
    };
    if let Some(role) = chain.role() {
        println!("assume role: {}", role.describe());
    }
    let region = aws_config::default_provider::region::DefaultRegionChain::builder()
        .build()
        .region()
        .await;
    let Some(region) = region else {
        return fail(
            "no region",
            "No AWS region is configured: set AWS_REGION (e.g. us-east-1), or `region` in the AWS_PROFILE's section of ~/.aws/config. STS, Bedrock and S3 all need one.".into(),
        );
    };
    println!("region: {region}");

    let creds = tokio::time::timeout(Duration::from_secs(20), chain.provide_credentials()).await;
    let creds = match creds {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return fail("no credentials", explain(&error_chain(&e), env)),
        Err(_) => {
            return fail(
                "credentials timed out",
                "Resolving credentials took longer than 20 s: an SSO, STS or instance-metadata endpoint does not answer (no network, a proxy or firewall, or not running on AWS: set AWS_EC2_METADATA_DISABLED=true).".into(),
            )
        }
    };
    let key = creds.access_key_id();
    let shown = if key.len() > 8 {
        format!(
            "{}…{}",
            key.get(..4).unwrap_or(""),
            key.get(key.len() - 4..).unwrap_or("")
        )
    } else {
        "…".into()
    };
    println!(
        "credentials: from {} (access key {shown}{}{})",
        describe_sources(&creds),
        if creds.session_token().is_some() {
            ", temporary"
        } else {
            ""
        },
        creds
            .expiry()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| format!(", expires {} UTC", super::http::utc_time(d.as_secs())))
            .unwrap_or_default()
    );

    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(region.clone())
        .credentials_provider(chain.shared())
        .load()
        .await;
    let sts = aws_sdk_sts::Client::new(&conf);
    let answer =
        tokio::time::timeout(Duration::from_secs(20), sts.get_caller_identity().send()).await;
    match answer {
        Ok(Ok(id)) => {
            println!("account: {}", id.account().unwrap_or("?"));
            println!("arn: {}", id.arn().unwrap_or("?"));
            println!("user id: {}", id.user_id().unwrap_or("?"));
            println!("OK: these credentials work");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            let text = match &e {
                aws_sdk_sts::error::SdkError::ServiceError(s) => {
                    use aws_sdk_sts::error::ProvideErrorMetadata;
                    format!(
                        "{}: {}",
                        s.err().code().unwrap_or("error"),
                        s.err().message().unwrap_or("")
                    )
                }
                other => error_chain(other),
            };
            fail("STS GetCallerIdentity", explain(&text, env))
        }
        Err(_) => fail(
            "STS timed out",
            "STS did not answer within 20 s: no network, DNS, or a proxy/firewall blocks it (AWS_ENDPOINT_URL_STS points elsewhere?).".into(),
        ),
    }
}

/// A failure explained in plain words, with the SDK's text at the end.
pub fn explain(text: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let t = text.to_ascii_lowercase();
    let why = if t.contains("assum")
        && (t.contains("accessdenied")
            || t.contains("not authorized")
            || t.contains("access denied"))
    {
        format!(
            "The role {} could not be assumed: the base credentials may not call sts:AssumeRole on it, or its trust policy does not trust them{}.",
            env("AWS_ROLE_ARN").unwrap_or_default(),
            if env("AWS_EXTERNAL_ID").is_some() { ", or AWS_EXTERNAL_ID is not the one it expects" } else { " (or it requires an external id: set AWS_EXTERNAL_ID)" }
        )
    } else if t.contains("expired") {
        "The credentials have expired: renew them (`aws sso login` for SSO profiles, a new AWS_SESSION_TOKEN for temporary keys).".into()
    } else if t.contains("invalidclienttokenid")
        || t.contains("security token included in the request is invalid")
        || t.contains("signaturedoesnotmatch")
        || t.contains("unrecognizedclient")
    {
        "AWS rejected the credentials: the access key does not exist or the secret is wrong (check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or the profile's keys).".into()
    } else if t.contains("profile")
        && (t.contains("not found")
            || t.contains("could not find")
            || t.contains("was not defined")
            || t.contains("no profile"))
    {
        profile_missing(env)
    } else if t.contains("sso") && (t.contains("token") || t.contains("login")) {
        "The SSO session is missing or expired: run `aws sso login` for this profile.".into()
    } else if t.contains("dispatch failure")
        || t.contains("connect")
        || t.contains("dns")
        || t.contains("timed out")
        || t.contains("timeout")
        || t.contains("io error")
    {
        "AWS could not be reached: no network or DNS, a proxy or firewall in the way, or a wrong AWS_ENDPOINT_URL_STS.".into()
    } else if env("AWS_PROFILE").is_some() && !profile_defined(env) {
        profile_missing(env)
    } else if env("AWS_WEB_IDENTITY_TOKEN_FILE").is_some()
        && (t.contains("web identity") || t.contains("webidentity"))
    {
        "The web identity token could not be used: check AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (on EKS, the service account's role annotation).".into()
    } else if t.contains("no providers in chain")
        || t.contains("no credentials")
        || t.contains("not loaded")
    {
        crate::credentials::WHAT_TO_SET.into()
    } else if t.contains("region") {
        "No AWS region is configured: set AWS_REGION (e.g. us-east-1).".into()
    } else {
        "AWS refused the request.".into()
    };
    format!("{why}\n(AWS SDK: {text})")
}

/// The explanation for an `AWS_PROFILE` that names no profile.
fn profile_missing(env: &dyn Fn(&str) -> Option<String>) -> String {
    format!(
        "The profile `{}` (AWS_PROFILE) is not defined in ~/.aws/config or ~/.aws/credentials (or the files AWS_CONFIG_FILE/AWS_SHARED_CREDENTIALS_FILE name): check its name with `aws configure list-profiles`.",
        env("AWS_PROFILE").unwrap_or_default()
    )
}

/// Whether `AWS_PROFILE` has a section in the AWS config or credentials file.
fn profile_defined(env: &dyn Fn(&str) -> Option<String>) -> bool {
    let Some(profile) = env("AWS_PROFILE") else {
        return true;
    };
    let home = env("HOME").unwrap_or_default();
    let config = env("AWS_CONFIG_FILE").unwrap_or_else(|| format!("{home}/.aws/config"));
    let creds =
        env("AWS_SHARED_CREDENTIALS_FILE").unwrap_or_else(|| format!("{home}/.aws/credentials"));
    let wanted = [format!("[profile {profile}]"), format!("[{profile}]")];
    [config, creds].iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|text| {
            text.lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .any(|l| wanted.contains(&l))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanations() {
        let env = |k: &str| (k == "AWS_ROLE_ARN").then(|| "arn:aws:iam::1:role/r".to_string());
        assert!(explain(
            "AccessDenied: User is not authorized to perform: sts:AssumeRole",
            &env
        )
        .contains("could not be assumed"));
        assert!(explain(
            "ExpiredToken: The security token included in the request is expired",
            &env
        )
        .contains("expired"));
        assert!(explain(
            "InvalidClientTokenId: The security token included in the request is invalid.",
            &env
        )
        .contains("rejected"));
        assert!(explain(
            "dispatch failure: io error: error trying to connect: tcp connect error",
            &env
        )
        .contains("could not be reached"));
        assert!(explain("the credentials provider was not properly configured: no providers in chain provided credentials", &env).contains("AWS_ACCESS_KEY_ID"));
        assert!(
            explain("ProfileFile provider: profile `nope` was not defined", &env)
                .contains("not defined")
        );
        let missing = |k: &str| match k {
            "AWS_PROFILE" => Some("nope".to_string()),
            "AWS_CONFIG_FILE" | "AWS_SHARED_CREDENTIALS_FILE" => Some("/nonexistent".to_string()),
            _ => None,
        };
        let chain_text = "no credentials found in chain. WebIdentityToken: $AWS_WEB_IDENTITY_TOKEN_FILE was not set";
        assert!(explain(chain_text, &missing).contains("`nope` (AWS_PROFILE) is not defined"));
        assert!(explain(chain_text, &|_| None).contains("AWS_ACCESS_KEY_ID"));
    }
}
