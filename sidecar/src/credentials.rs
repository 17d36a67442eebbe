//! AWS credentials for the filter: resolved with the AWS SDK's default credential chain,
//! cached, and refreshed before they expire.
//!
//! The chain is [`Chain`]: the AWS SDK's default chain, plus an explicit STS AssumeRole on top
//! of it when `AWS_ROLE_ARN` is set without a web identity token file.
//!
//! At most one resolution runs at a time, in a background task, so concurrent requests never
//! stampede the provider. A request waits for a running resolution only for [`WAIT_LIMIT`]
//! (below the filter's 2 s call timeout); after that, or while a refresh runs behind still
//! valid credentials or a recent error, it gets an immediate answer.

use aws_config::sts::AssumeRoleProvider;
use aws_config::BehaviorVersion;
use aws_credential_types::credential_feature::AwsCredentialFeature;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{watch, OnceCell};
use unigate_core::sigv4::AwsCredentials;

/// Credentials that expire are re-resolved this long before their expiry.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// Credentials without an expiry are re-resolved this often (rotated keys are picked up).
pub const REFRESH_NON_EXPIRING: Duration = Duration::from_secs(15 * 60);
/// Longest one resolution may take.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a request waits for a running resolution (the filter gives up after 2 s).
pub const WAIT_LIMIT: Duration = Duration::from_millis(1500);
/// After a failed resolution, the next one starts no sooner than this.
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(5);
/// Cached credentials are handed out during a refresh (or after a failed one) while they stay
/// valid at least this long.
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

    /// Whether these can still sign for a while (handed out while a refresh runs or failed).
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
    /// When the running resolution started (None: none is running).
    resolving_since: Option<Instant>,
}

impl State {
    /// Whether a resolution is running. One that outlived its timeout by far (its task
    /// died) no longer counts, so a new one can start.
    fn resolving(&self) -> bool {
        self.resolving_since
            .is_some_and(|t| t.elapsed() < RESOLVE_TIMEOUT + Duration::from_secs(5))
    }
}

/// What [`CredentialCache::get`] decided while holding the lock.
enum Step {
    Answer(Result<AwsCredentials, NoCredentials>),
    Wait(watch::Receiver<u64>),
}

struct Inner {
    /// The provider.
    provider: SharedCredentialsProvider,
    state: Mutex<State>,
    /// Bumped after every finished resolution.
    finished: watch::Sender<u64>,
    wait_limit: Duration,
}

/// Default `AWS_ROLE_SESSION_NAME`.
pub const DEFAULT_SESSION_NAME: &str = "unigate";
/// Default `AWS_ROLE_DURATION_SECONDS`.
pub const DEFAULT_ROLE_DURATION: Duration = Duration::from_secs(3600);

/// An explicit AssumeRole on top of the default chain (`AWS_ROLE_ARN` without
/// `AWS_WEB_IDENTITY_TOKEN_FILE`; with a token file the default chain does web identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSettings {
    /// `AWS_ROLE_ARN`.
    pub role_arn: String,
    /// `AWS_EXTERNAL_ID`.
    pub external_id: Option<String>,
    /// `AWS_ROLE_SESSION_NAME` (default `unigate`).
    pub session_name: String,
    /// `AWS_ROLE_DURATION_SECONDS` (default 3600; STS allows 900 to 43200).
    pub duration: Duration,
}

impl RoleSettings {
    /// One line for the CLI: `<arn> (session <name>, <n> s[, external id set])`.
    pub fn describe(&self) -> String {
        let external = if self.external_id.is_some() {
            ", external id set"
        } else {
            ""
        };
        format!(
            "{} (session {}, {} s{external})",
            self.role_arn,
            self.session_name,
            self.duration.as_secs()
        )
    }

    /// Reads the role settings; `None` when no explicit AssumeRole is asked for.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<RoleSettings>, String> {
        let get = |name: &str| {
            env(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let Some(role_arn) = get("AWS_ROLE_ARN") else {
            return Ok(None);
        };
        if get("AWS_WEB_IDENTITY_TOKEN_FILE").is_some() {
            return Ok(None);
        }
        if !role_arn.starts_with("arn:") {
            return Err(format!(
                "AWS_ROLE_ARN `{role_arn}` is not an ARN (arn:aws:iam::<account>:role/<name>)"
            ));
        }
        let session_name =
            get("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| DEFAULT_SESSION_NAME.into());
        let valid_name = (2..=64).contains(&session_name.len())
            && session_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "=,.@-_".contains(c));
        if !valid_name {
            return Err(format!(
                "AWS_ROLE_SESSION_NAME `{session_name}` must be 2 to 64 letters, digits or =,.@-_"
            ));
        }
        let duration = match get("AWS_ROLE_DURATION_SECONDS") {
            None => DEFAULT_ROLE_DURATION,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (900..=43_200).contains(&n) => Duration::from_secs(n),
                _ => {
                    return Err(format!(
                        "AWS_ROLE_DURATION_SECONDS `{v}` must be a number of seconds between 900 and 43200"
                    ))
                }
            },
        };
        Ok(Some(RoleSettings {
            role_arn,
            external_id: get("AWS_EXTERNAL_ID"),
            session_name,
            duration,
        }))
    }
}

/// The sidecar's credential chain: the default chain, or AssumeRole over it. Built on first
/// use (loading the chain may touch the network), shared by every client of the sidecar.
#[derive(Clone)]
pub struct Chain {
    inner: Arc<ChainInner>,
}

struct ChainInner {
    role: Option<RoleSettings>,
    region: Option<String>,
    provider: OnceCell<SharedCredentialsProvider>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("role", &self.inner.role)
            .finish()
    }
}

impl Chain {
    /// The chain for this environment (`AWS_ROLE_ARN` & co, `AWS_REGION`).
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Chain, String> {
        let role = RoleSettings::from_env(env)?;
        let region = env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty());
        Ok(Chain {
            inner: Arc::new(ChainInner {
                role,
                region,
                provider: OnceCell::new(),
            }),
        })
    }

    /// The explicit AssumeRole, if any.
    pub fn role(&self) -> Option<&RoleSettings> {
        self.inner.role.as_ref()
    }

    /// This chain as an SDK provider (for S3 and STS clients).
    pub fn shared(&self) -> SharedCredentialsProvider {
        SharedCredentialsProvider::new(self.clone())
    }

    /// The underlying provider, built once.
    async fn provider(&self) -> Result<&SharedCredentialsProvider, CredentialsError> {
        self.inner
            .provider
            .get_or_try_init(|| async {
                let mut loader = aws_config::defaults(BehaviorVersion::latest());
                if let Some(r) = &self.inner.region {
                    loader = loader.region(aws_config::Region::new(r.clone()));
                }
                let conf = loader.load().await;
                let base = conf.credentials_provider().ok_or_else(|| {
                    CredentialsError::not_loaded(
                        "the AWS SDK configuration has no credentials provider",
                    )
                })?;
                let Some(role) = &self.inner.role else {
                    return Ok(base);
                };
                let mut builder = AssumeRoleProvider::builder(role.role_arn.clone())
                    .session_name(role.session_name.clone())
                    .session_length(role.duration)
                    .configure(&conf);
                if let Some(id) = &role.external_id {
                    builder = builder.external_id(id.clone());
                }
                Ok(SharedCredentialsProvider::new(
                    builder.build_from_provider(base).await,
                ))
            })
            .await
    }
}

impl ProvideCredentials for Chain {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let provider = self.provider().await?;
            let creds = provider.provide_credentials().await;
            match (&self.inner.role, creds) {
                (Some(role), Err(e)) => Err(CredentialsError::provider_error(format!(
                    "assuming role {} failed: {}",
                    role.role_arn,
                    error_chain(&e)
                ))),
                (_, c) => c,
            }
        })
    }
}

/// A cached, single-flight view of an AWS credentials provider.
#[derive(Clone)]
pub struct CredentialCache {
    inner: Arc<Inner>,
}

impl CredentialCache {
    /// A cache over the sidecar's chain (default chain, or AssumeRole over it).
    pub fn over(chain: &Chain) -> CredentialCache {
        CredentialCache::with_provider(chain.shared(), WAIT_LIMIT)
    }

    /// A cache over a given provider, with its own wait limit.
    pub fn with_provider(provider: SharedCredentialsProvider, wait: Duration) -> CredentialCache {
        CredentialCache::new(provider, wait)
    }

    fn new(provider: SharedCredentialsProvider, wait_limit: Duration) -> CredentialCache {
        CredentialCache {
            inner: Arc::new(Inner {
                provider,
                state: Mutex::new(State::default()),
                finished: watch::channel(0).0,
                wait_limit,
            }),
        }
    }

    /// Starts a resolution in the background unless one is running or fresh credentials are
    /// cached (used at start-up so the first request does not wait).
    pub fn prewarm(&self) {
        let _ = self.decide();
    }

    /// Current credentials, or why there are none. Never waits longer than the wait limit.
    pub async fn get(&self) -> Result<AwsCredentials, NoCredentials> {
        let mut rx = match self.decide() {
            Step::Answer(a) => return a,
            Step::Wait(rx) => rx,
        };
        let _ = tokio::time::timeout(self.inner.wait_limit, rx.changed()).await;
        let state = self.inner.lock();
        if let Some(c) = state.cached.as_ref().filter(|c| c.still_valid(unix_now())) {
            return Ok(c.creds.clone());
        }
        // The resolution failed, or is still running after an earlier failure.
        if let Some((_, err)) = &state.last_failure {
            return Err(err.clone());
        }
        Err(NoCredentials {
            message: format!(
                "AWS credentials are still being resolved (no answer from the credential chain within {} ms; an unreachable SSO, STS or instance-metadata endpoint?). Retry shortly.",
                self.inner.wait_limit.as_millis()
            ),
        })
    }

    /// Under the lock: answer from the cache, or start a resolution (at most one), or wait.
    fn decide(&self) -> Step {
        let mut state = self.inner.lock();
        let now = unix_now();
        if let Some(c) = &state.cached {
            if c.fresh(now) {
                return Step::Answer(Ok(c.creds.clone()));
            }
        }
        let backing_off = state
            .last_failure
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < FAILURE_BACKOFF);
        if !state.resolving() && !backing_off {
            state.resolving_since = Some(Instant::now());
            let me = self.clone();
            tokio::spawn(async move { me.resolve_and_store().await });
        }
        // Still valid credentials answer at once; a refresh may run behind them.
        if let Some(c) = state.cached.as_ref().filter(|c| c.still_valid(now)) {
            return Step::Answer(Ok(c.creds.clone()));
        }
        // A recent failure answers at once (no new resolution starts while backing off).
        if backing_off {
            if let Some((_, err)) = &state.last_failure {
                return Step::Answer(Err(err.clone()));
            }
        }
        // Otherwise wait (briefly) for the running resolution.
        Step::Wait(self.inner.finished.subscribe())
    }

    /// One resolution with [`RESOLVE_TIMEOUT`]; stores the outcome and wakes the waiters.
    async fn resolve_and_store(&self) {
        let outcome = tokio::time::timeout(RESOLVE_TIMEOUT, self.resolve()).await;
        {
            let mut state = self.inner.lock();
            state.resolving_since = None;
            match outcome {
                Ok(Ok((creds, sources))) => {
                    let creds = to_wire(&creds);
                    tracing::info!(
                        source = %sources,
                        expires_at = ?creds.expires_at,
                        "resolved AWS credentials"
                    );
                    state.cached = Some(Cached {
                        creds,
                        fetched: Instant::now(),
                    });
                    state.last_failure = None;
                }
                outcome => {
                    let err = match outcome {
                        Ok(Err(e)) => e,
                        _ => NoCredentials {
                            message: format!(
                                "Resolving AWS credentials took longer than {} s (an unreachable SSO, STS or instance-metadata endpoint?). {}",
                                RESOLVE_TIMEOUT.as_secs(),
                                WHAT_TO_SET
                            ),
                        },
                    };
                    if state
                        .cached
                        .as_ref()
                        .is_some_and(|c| c.still_valid(unix_now()))
                    {
                        tracing::warn!(error = %err.message, "AWS credentials refresh failed; still using the cached ones");
                    } else {
                        tracing::warn!(error = %err.message, "no AWS credentials");
                    }
                    state.last_failure = Some((Instant::now(), err));
                }
            }
        }
        self.inner.finished.send_modify(|n| *n += 1);
    }

    /// Asks the provider once; returns the credentials and a description of their source.
    async fn resolve(&self) -> Result<(Credentials, String), NoCredentials> {
        let provider = &self.inner.provider;
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

impl Inner {
    /// The state, even if a panicking thread poisoned the lock (the state stays consistent).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a user can set to give the sidecar credentials.
pub const WHAT_TO_SET: &str = "Give the unigate sidecar AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN for temporary keys), or AWS_PROFILE for a profile in ~/.aws (run `aws sso login` first for SSO), or run it with an IAM role (EKS web identity, ECS task role, EC2 instance profile); AWS_ROLE_ARN assumes a role on top of any of these.";

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
pub fn describe_sources(c: &Credentials) -> String {
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
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
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

    /// A provider that counts its calls, answers after `delay`, and fails when told to.
    #[derive(Debug)]
    struct Counting {
        calls: Arc<AtomicUsize>,
        expiry: Option<SystemTime>,
        fail: bool,
        delay: Duration,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::new(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(self.delay).await;
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

    fn cache_with(
        expiry: Option<SystemTime>,
        fail: bool,
        delay: Duration,
    ) -> (CredentialCache, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let p = Counting {
            calls: calls.clone(),
            expiry,
            fail,
            delay,
        };
        let wait = Duration::from_millis(500);
        (
            CredentialCache::with_provider(SharedCredentialsProvider::new(p), wait),
            calls,
        )
    }

    fn cache(expiry: Option<SystemTime>, fail: bool) -> (CredentialCache, Arc<AtomicUsize>) {
        cache_with(expiry, fail, Duration::from_millis(50))
    }

    fn in_secs(s: u64) -> Option<SystemTime> {
        Some(SystemTime::now() + Duration::from_secs(s))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_one_resolution() {
        let (c, calls) = cache(in_secs(3600), false);
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
        // Fresh credentials come from the cache.
        assert_eq!(c.get().await.unwrap().access_key_id, "AKID0");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn credentials_near_expiry_are_refreshed_in_the_background() {
        // Expiring in 4 minutes: inside the 5-minute window, but still valid.
        let (c, calls) = cache(in_secs(240), false);
        assert_eq!(c.get().await.unwrap().access_key_id, "AKID0");
        // Answered at once from the cache while a refresh starts behind it.
        assert_eq!(c.get().await.unwrap().access_key_id, "AKID0");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(c.get().await.unwrap().access_key_id, "AKID1");
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

    #[tokio::test]
    async fn a_slow_provider_does_not_block_requests() {
        let (c, calls) = cache_with(None, false, Duration::from_secs(2));
        c.prewarm();
        let started = Instant::now();
        let e = c.get().await.unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(1500));
        assert!(e.message.contains("still being resolved"), "{}", e.message);
        // The resolution went on in the background and its result is served when ready.
        tokio::time::sleep(Duration::from_millis(1800)).await;
        assert_eq!(c.get().await.unwrap().access_key_id, "AKID0");
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

    /// Succeeds once, then fails (a refresh that breaks, e.g. STS unreachable).
    #[derive(Debug)]
    struct FailsAfterFirst {
        calls: Arc<AtomicUsize>,
    }

    impl ProvideCredentials for FailsAfterFirst {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::new(async move {
                if self.calls.fetch_add(1, Ordering::SeqCst) > 0 {
                    return Err(CredentialsError::provider_error("STS is unreachable"));
                }
                Ok(Credentials::builder()
                    .access_key_id("ASIAGOOD")
                    .secret_access_key("s")
                    .session_token("t")
                    .expiry(SystemTime::now() + Duration::from_secs(240))
                    .provider_name("test")
                    .build())
            })
        }
    }

    #[tokio::test]
    async fn the_last_good_credentials_are_served_while_a_refresh_fails() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = CredentialCache::with_provider(
            SharedCredentialsProvider::new(FailsAfterFirst {
                calls: calls.clone(),
            }),
            Duration::from_millis(500),
        );
        assert_eq!(c.get().await.unwrap().access_key_id, "ASIAGOOD");
        // Inside the refresh window: a refresh starts and fails; the cached ones are served.
        assert_eq!(c.get().await.unwrap().access_key_id, "ASIAGOOD");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(c.get().await.unwrap().access_key_id, "ASIAGOOD");
    }

    #[test]
    fn role_settings() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(RoleSettings::from_env(&env(&[])).unwrap(), None);
        let r = RoleSettings::from_env(&env(&[("AWS_ROLE_ARN", "arn:aws:iam::1:role/r")]))
            .unwrap()
            .unwrap();
        assert_eq!(r.session_name, "unigate");
        assert_eq!(r.duration, Duration::from_secs(3600));
        assert_eq!(r.external_id, None);
        // With a web identity token file, the default chain assumes the role itself.
        assert_eq!(
            RoleSettings::from_env(&env(&[
                ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
                ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token")
            ]))
            .unwrap(),
            None
        );
        let r = RoleSettings::from_env(&env(&[
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("AWS_EXTERNAL_ID", "x-1"),
            ("AWS_ROLE_SESSION_NAME", "gw@prod"),
            ("AWS_ROLE_DURATION_SECONDS", "900"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            (
                r.external_id.as_deref(),
                r.session_name.as_str(),
                r.duration.as_secs()
            ),
            (Some("x-1"), "gw@prod", 900)
        );
        for bad in [
            &[("AWS_ROLE_ARN", "role/r")][..],
            &[
                ("AWS_ROLE_ARN", "arn:x"),
                ("AWS_ROLE_DURATION_SECONDS", "100"),
            ][..],
            &[
                ("AWS_ROLE_ARN", "arn:x"),
                ("AWS_ROLE_SESSION_NAME", "has space"),
            ][..],
        ] {
            assert!(RoleSettings::from_env(&env(bad)).is_err(), "{bad:?}");
        }
    }
}
