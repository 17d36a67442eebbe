//! AWS credentials for the filter: resolved with the AWS SDK's default credential chain,
//! cached, and refreshed before they expire.
//!
//! One lock guards the cache and the resolution, so concurrent requests wait for a single
//! call to the provider instead of stampeding it.

use aws_config::BehaviorVersion;
use aws_credential_types::credential_feature::AwsCredentialFeature;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Mutex, OnceCell};
use unigate_core::sigv4::AwsCredentials;

/// Credentials that expire are re-resolved this long before their expiry.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// Credentials without an expiry are re-resolved this often (rotated keys are picked up).
pub const REFRESH_NON_EXPIRING: Duration = Duration::from_secs(15 * 60);
/// Longest one resolution may take.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed resolution, callers get the same error for this long without a new attempt.
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(5);
/// Cached credentials are still handed out when a refresh fails, if they stay valid this long.
pub const STALE_MARGIN: Duration = Duration::from_secs(30);

/// Why no credentials could be given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoCredentials {
    /// What went wrong and what to set, safe to show to a client (no secrets).
    pub message: String,
}

/// Credentials in the cache.
#[derive(Clone)]
struct Cached {
    creds: AwsCredentials,
    fetched: Instant,
}

impl Cached {
    /// Whether these can be handed out without asking the provider again.
    fn fresh(&self, now_unix: u64) -> bool {
        match self.creds.expires_at {
            Some(exp) => now_unix.saturating_add(REFRESH_BEFORE_EXPIRY.as_secs()) < exp,
            None => self.fetched.elapsed() < REFRESH_NON_EXPIRING,
        }
    }

    /// Whether these can still sign for a while (used when a refresh failed).
    fn still_valid(&self, now_unix: u64) -> bool {
        match self.creds.expires_at {
            Some(exp) => now_unix.saturating_add(STALE_MARGIN.as_secs()) < exp,
            None => true,
        }
    }
}

#[derive(Default)]
struct State {
    cached: Option<Cached>,
    last_failure: Option<(Instant, NoCredentials)>,
}

/// A cached, single-flight view of an AWS credentials provider.
pub struct CredentialCache {
    /// The provider; built from the default chain on first use unless given.
    provider: OnceCell<SharedCredentialsProvider>,
    state: Mutex<State>,
}

impl CredentialCache {
    /// A cache over the AWS default credential chain (env, profile/SSO, web identity, ECS,
    /// IMDS); the chain is built on first use.
    pub fn default_chain() -> CredentialCache {
        CredentialCache {
            provider: OnceCell::new(),
            state: Mutex::new(State::default()),
        }
    }

    /// A cache over a given provider.
    #[cfg(test)]
    pub fn with_provider(provider: SharedCredentialsProvider) -> CredentialCache {
        CredentialCache {
            provider: OnceCell::new_with(Some(provider)),
            state: Mutex::new(State::default()),
        }
    }

    /// Current credentials: from the cache while fresh, otherwise resolved again (at most one
    /// resolution at a time; other callers wait for it and share its result).
    pub async fn get(&self) -> Result<AwsCredentials, NoCredentials> {
        let mut state = self.state.lock().await;
        let now = unix_now();
        if let Some(c) = &state.cached {
            if c.fresh(now) {
                return Ok(c.creds.clone());
            }
        }
        if let Some((at, err)) = &state.last_failure {
            if at.elapsed() < FAILURE_BACKOFF {
                return match &state.cached {
                    Some(c) if c.still_valid(now) => Ok(c.creds.clone()),
                    _ => Err(err.clone()),
                };
            }
        }
        match tokio::time::timeout(RESOLVE_TIMEOUT, self.resolve()).await {
            Ok(Ok((creds, sources))) => {
                let creds = to_wire(&creds);
                tracing::info!(
                    source = %sources,
                    expires_at = ?creds.expires_at,
                    "resolved AWS credentials"
                );
                state.cached = Some(Cached {
                    creds: creds.clone(),
                    fetched: Instant::now(),
                });
                state.last_failure = None;
                Ok(creds)
            }
            outcome => {
                let err = match outcome {
                    Ok(Err(e)) => e,
                    _ => NoCredentials {
                        message: format!(
                            "Resolving AWS credentials took longer than {} s (an unreachable SSO, STS or metadata endpoint?). {}",
                            RESOLVE_TIMEOUT.as_secs(),
                            WHAT_TO_SET
                        ),
                    },
                };
                state.last_failure = Some((Instant::now(), err.clone()));
                match &state.cached {
                    Some(c) if c.still_valid(now) => {
                        tracing::warn!(error = %err.message, "AWS credentials refresh failed; still using the cached ones");
                        Ok(c.creds.clone())
                    }
                    _ => {
                        tracing::warn!(error = %err.message, "no AWS credentials");
                        Err(err)
                    }
                }
            }
        }
    }

    /// Asks the provider once; returns the credentials and a description of their source.
    async fn resolve(&self) -> Result<(Credentials, String), NoCredentials> {
        let provider = self
            .provider
            .get_or_try_init(|| async {
                aws_config::defaults(BehaviorVersion::latest())
                    .load()
                    .await
                    .credentials_provider()
                    .ok_or_else(|| NoCredentials {
                        message: format!(
                            "The AWS SDK configuration has no credentials provider. {WHAT_TO_SET}"
                        ),
                    })
            })
            .await?;
        match provider.provide_credentials().await {
            Ok(creds) => {
                let sources = describe_sources(&creds);
                Ok((creds, sources))
            }
            Err(e) => Err(NoCredentials {
                message: format!(
                    "No AWS credentials found. {WHAT_TO_SET} (AWS SDK: {})",
                    error_chain(&e)
                ),
            }),
        }
    }
}

/// What a user can set to give the sidecar credentials.
pub const WHAT_TO_SET: &str = "Give the unigate sidecar AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN for temporary keys), or AWS_PROFILE for a profile in ~/.aws (run `aws sso login` first for SSO), or run it with an IAM role (EKS web identity, ECS task role, EC2 instance profile).";

/// The wire form served to the filter.
fn to_wire(c: &Credentials) -> AwsCredentials {
    AwsCredentials {
        access_key_id: c.access_key_id().to_string(),
        secret_access_key: c.secret_access_key().to_string(),
        session_token: c.session_token().map(str::to_string),
        expires_at: c
            .expiry()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs()),
    }
}

/// A readable name for where credentials came from (the SDK records it as features).
fn describe_sources(c: &Credentials) -> String {
    let names: Vec<String> = c
        .get_property::<Vec<AwsCredentialFeature>>()
        .map(|features| features.iter().map(feature_name).collect())
        .unwrap_or_default();
    if names.is_empty() {
        "unknown provider".to_string()
    } else {
        names.join(" + ")
    }
}

/// One source, named as a user configures it.
fn feature_name(f: &AwsCredentialFeature) -> String {
    match f {
        AwsCredentialFeature::CredentialsEnvVars => "environment variables".into(),
        AwsCredentialFeature::CredentialsEnvVarsStsWebIdToken => {
            "web identity token (environment)".into()
        }
        AwsCredentialFeature::CredentialsProfile => "profile file".into(),
        AwsCredentialFeature::CredentialsProfileSso | AwsCredentialFeature::CredentialsSso => {
            "SSO".into()
        }
        AwsCredentialFeature::CredentialsProfileSourceProfile => "source profile".into(),
        AwsCredentialFeature::CredentialsStsAssumeRole => "STS assume role".into(),
        AwsCredentialFeature::CredentialsStsAssumeRoleWebId => "STS web identity".into(),
        AwsCredentialFeature::CredentialsProcess
        | AwsCredentialFeature::CredentialsProfileProcess => "credential process".into(),
        AwsCredentialFeature::CredentialsHttp => "container endpoint (ECS/EKS)".into(),
        AwsCredentialFeature::CredentialsImds => "EC2 instance metadata".into(),
        other => format!("{other:?}"),
    }
}

/// An error and its sources, joined (the SDK's top-level message alone is often vague).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    // The SDK lists every provider it tried on its own line; keep the message on one line.
    parts
        .join(": ")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::{error::CredentialsError, future};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A provider that counts its calls, answers slowly, and fails when told to.
    #[derive(Debug)]
    struct Counting {
        calls: Arc<AtomicUsize>,
        expiry: Option<SystemTime>,
        fail: bool,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::new(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                if self.fail {
                    return Err(CredentialsError::not_loaded("nothing configured here"));
                }
                let mut b = Credentials::builder()
                    .access_key_id(format!("AKID{n}"))
                    .secret_access_key("secret")
                    .session_token("token")
                    .provider_name("test");
                if let Some(e) = self.expiry {
                    b = b.expiry(e);
                }
                Ok(b.build())
            })
        }
    }

    fn cache(expiry: Option<SystemTime>, fail: bool) -> (CredentialCache, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let p = Counting {
            calls: calls.clone(),
            expiry,
            fail,
        };
        (
            CredentialCache::with_provider(SharedCredentialsProvider::new(p)),
            calls,
        )
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_resolution() {
        let (c, calls) = cache(Some(SystemTime::now() + Duration::from_secs(3600)), false);
        let c = Arc::new(c);
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.get().await })
            })
            .collect();
        for t in tasks {
            let creds = t.await.unwrap().unwrap();
            assert_eq!(creds.access_key_id, "AKID0");
            assert_eq!(creds.session_token.as_deref(), Some("token"));
            assert!(creds.expires_at.unwrap() > unix_now() + 3500);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn credentials_near_expiry_are_refreshed() {
        // Expiring in 4 minutes: inside the 5-minute window, so every call re-resolves.
        let (c, calls) = cache(Some(SystemTime::now() + Duration::from_secs(240)), false);
        assert_eq!(c.get().await.unwrap().access_key_id, "AKID0");
        assert_eq!(c.get().await.unwrap().access_key_id, "AKID1");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn non_expiring_credentials_are_cached() {
        let (c, calls) = cache(None, false);
        let a = c.get().await.unwrap();
        let b = c.get().await.unwrap();
        assert_eq!(a, b);
        assert_eq!(a.expires_at, None);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn failures_explain_and_back_off() {
        let (c, calls) = cache(None, true);
        let e = c.get().await.unwrap_err();
        assert!(e.message.contains("AWS_ACCESS_KEY_ID"), "{}", e.message);
        assert!(e.message.contains("AWS_PROFILE"), "{}", e.message);
        assert!(
            e.message.contains("nothing configured here"),
            "{}",
            e.message
        );
        assert_eq!(c.get().await.unwrap_err(), e);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn wire_form_and_sources() {
        let mut creds = Credentials::builder()
            .access_key_id("AKID")
            .secret_access_key("s")
            .expiry(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
            .provider_name("x")
            .build();
        creds
            .get_property_mut_or_default::<Vec<AwsCredentialFeature>>()
            .push(AwsCredentialFeature::CredentialsEnvVars);
        let w = to_wire(&creds);
        assert_eq!(w.expires_at, Some(1_700_000_000));
        assert_eq!(w.session_token, None);
        assert_eq!(describe_sources(&creds), "environment variables");
    }
}
