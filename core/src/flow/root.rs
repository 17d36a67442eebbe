//! The per-worker root: the plugin configuration, and the credential refresh tick.

use super::{credentials, log_with, metrics, Host, Level};
use crate::config::{CredentialsSource, Gateway};
use crate::credentials::CredentialsRecord;
use crate::sigv4::AwsCredentials;
use std::rc::Rc;

/// Tick while no credentials have been fetched yet.
pub const STARTUP_TICK_MS: u32 = 1000;

/// Per-worker state.
#[derive(Debug, Default)]
pub struct RootFlow {
    gateway: Option<Rc<Gateway>>,
    /// Whether the tick is still at the fast start-up period.
    startup_tick: bool,
    /// Static credentials when `aws_credentials` is `env`.
    env_credentials: Option<Rc<AwsCredentials>>,
}

impl RootFlow {
    /// The configuration, once accepted.
    pub fn gateway(&self) -> Option<Rc<Gateway>> {
        self.gateway.clone()
    }

    /// Static credentials from the VM environment, when configured.
    pub fn env_credentials(&self) -> Option<Rc<AwsCredentials>> {
        self.env_credentials.clone()
    }

    fn needs_sidecar_credentials(&self) -> bool {
        self.gateway.as_ref().is_some_and(|g| {
            g.bedrock.is_some() && g.config.aws_credentials == CredentialsSource::Sidecar
        })
    }

    /// `on_configure`: accepts or rejects the plugin configuration. `env` reads the VM's
    /// environment (keys and secrets never appear in the configuration itself).
    pub fn on_configure<H: Host>(
        &mut self,
        host: &mut H,
        raw: &[u8],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> bool {
        match Gateway::from_json(raw, env) {
            Ok(gw) => {
                log_with(host, Level::Info, || {
                    format!(
                        "unigate {} configured: openai={} bedrock={} keys={}",
                        env!("CARGO_PKG_VERSION"),
                        if gw.openai.is_some() { "on" } else { "off" },
                        gw.bedrock
                            .as_ref()
                            .map_or("off".to_string(), |b| b.region.clone()),
                        gw.keys.len()
                    )
                });
                if gw.bedrock.is_some() && gw.config.aws_credentials == CredentialsSource::Env {
                    self.env_credentials = from_env(env).map(Rc::new);
                    if self.env_credentials.is_none() {
                        host.log(
                            Level::Warn,
                            "unigate: aws_credentials is `env` but AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not in the VM environment",
                        );
                    }
                }
                metrics::define_static(host);
                self.gateway = Some(Rc::new(gw));
                if self.needs_sidecar_credentials() {
                    self.startup_tick = true;
                    let _ = host.set_tick_ms(STARTUP_TICK_MS);
                }
                true
            }
            Err(e) => {
                host.log(
                    Level::Critical,
                    &format!("unigate: rejecting plugin configuration: {e}"),
                );
                false
            }
        }
    }

    /// `on_tick`: refreshes the shared credentials when they are due and this worker wins the
    /// lease.
    pub fn on_tick<H: Host>(&mut self, host: &mut H) {
        if !self.needs_sidecar_credentials() {
            return;
        }
        let Some(gw) = self.gateway.clone() else {
            return;
        };
        let now = host.now_unix();
        let period = gw.config.credentials_refresh_seconds.max(1);
        if let Some(record) = credentials::load(host) {
            if self.startup_tick {
                self.startup_tick = false;
                let _ = host.set_tick_ms(period_ms(period));
            }
            if !record.needs_refresh(now, period) {
                return;
            }
        }
        let lease_ttl = gw.config.sidecar_timeout_ms / 1000 + 2;
        if !credentials::take_lease(host, now, lease_ttl) {
            return;
        }
        if let Err(status) = credentials::dispatch(host, &gw) {
            credentials::release_lease(host);
            log_with(host, Level::Warn, || {
                format!(
                    "unigate: cannot call the sidecar cluster `{}` for AWS credentials: {status}",
                    gw.config.sidecar_cluster
                )
            });
        }
    }

    /// `on_http_call_response` of the root: the sidecar's credentials answer.
    pub fn on_callout_response<H: Host>(
        &mut self,
        host: &mut H,
        num_headers: usize,
        body_size: usize,
    ) {
        credentials::release_lease(host);
        match credentials::read_answer(host, num_headers, body_size) {
            Ok(creds) => {
                let now = host.now_unix();
                credentials::store(host, &CredentialsRecord::new(creds, now));
                host.log(
                    Level::Debug,
                    "unigate: AWS credentials refreshed from the sidecar",
                );
            }
            Err(failure) => {
                // Keep signing with the last good credentials; say why the refresh failed.
                host.count("unigate.errors.credentials_refresh", 1);
                log_with(host, Level::Warn, || {
                    format!("unigate: AWS credential refresh failed: {failure}")
                });
            }
        }
    }
}

fn period_ms(secs: u64) -> u32 {
    u32::try_from(secs.saturating_mul(1000)).unwrap_or(u32::MAX)
}

/// Static credentials from the VM environment (`aws_credentials: env`).
pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Option<AwsCredentials> {
    let get = |k: &str| env(k).filter(|v| !v.is_empty());
    Some(AwsCredentials {
        access_key_id: get("AWS_ACCESS_KEY_ID")?,
        secret_access_key: get("AWS_SECRET_ACCESS_KEY")?,
        session_token: get("AWS_SESSION_TOKEN"),
        expires_at: None,
    })
}
