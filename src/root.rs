//! The root context: configuration, and the credential refresh tick.

use crate::credentials;
use crate::host;
use crate::http::Http;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};
use std::rc::Rc;
use unigate_core::config::{CredentialsSource, Gateway};
use unigate_core::credentials::CredentialsRecord;
use unigate_core::sigv4::AwsCredentials;

/// Tick while no credentials have been fetched yet.
const STARTUP_TICK_MS: u32 = 1000;

/// Per-worker root context.
#[derive(Default)]
pub struct Root {
    gateway: Option<Rc<Gateway>>,
    /// Whether the tick is still at the fast start-up period.
    startup_tick: bool,
    /// Static credentials when `aws_credentials` is `env`.
    env_credentials: Option<Rc<AwsCredentials>>,
}

impl Root {
    fn needs_sidecar_credentials(&self) -> bool {
        self.gateway.as_ref().is_some_and(|g| {
            g.bedrock.is_some() && g.config.aws_credentials == CredentialsSource::Sidecar
        })
    }

    fn refresh_credentials(&mut self) {
        let Some(gw) = self.gateway.clone() else {
            return;
        };
        let now = credentials::now_secs();
        let period = gw.config.credentials_refresh_seconds.max(1);
        if let Some(record) = credentials::load() {
            if self.startup_tick {
                self.startup_tick = false;
                let _ = host::set_tick_period_ms(period_ms(period));
            }
            if !record.needs_refresh(now, period) {
                return;
            }
        }
        let lease_ttl = gw.config.sidecar_timeout_ms / 1000 + 2;
        if !credentials::take_lease(now, lease_ttl) {
            return;
        }
        let headers = credentials::request_headers(&gw);
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Err(status) = self.dispatch_http_call(
            &gw.config.sidecar_cluster,
            refs,
            None,
            vec![],
            credentials::timeout(&gw),
        ) {
            credentials::release_lease();
            crate::warn!(
                "unigate: cannot call the sidecar cluster `{}` for AWS credentials: {status:?}",
                gw.config.sidecar_cluster
            );
        }
    }
}

fn period_ms(secs: u64) -> u32 {
    u32::try_from(secs.saturating_mul(1000)).unwrap_or(u32::MAX)
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        credentials::release_lease();
        match credentials::read_answer(num_headers, body_size) {
            Ok(creds) => {
                credentials::store(&CredentialsRecord::new(creds, credentials::now_secs()));
                crate::debug!("unigate: AWS credentials refreshed from the sidecar");
            }
            Err(failure) => {
                // Keep signing with the last good credentials; say why the refresh failed.
                crate::metrics::count("unigate.errors.credentials_refresh", 1);
                crate::warn!("unigate: AWS credential refresh failed: {failure}");
            }
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        crate::logging::refresh();
        let raw =
            host::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX).unwrap_or_default();
        let env = |k: &str| std::env::var(k).ok();
        match Gateway::from_json(&raw, &env) {
            Ok(gw) => {
                crate::info!(
                    "unigate {} configured: openai={} bedrock={} keys={}",
                    env!("CARGO_PKG_VERSION"),
                    if gw.openai.is_some() { "on" } else { "off" },
                    gw.bedrock
                        .as_ref()
                        .map_or("off".to_string(), |b| b.region.clone()),
                    gw.keys.len()
                );
                if gw.bedrock.is_some() && gw.config.aws_credentials == CredentialsSource::Env {
                    self.env_credentials = credentials::from_env().map(Rc::new);
                    if self.env_credentials.is_none() {
                        crate::warn!(
                            "unigate: aws_credentials is `env` but AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not in the VM environment"
                        );
                    }
                }
                crate::metrics::define_static();
                self.gateway = Some(Rc::new(gw));
                if self.needs_sidecar_credentials() {
                    self.startup_tick = true;
                    let _ = host::set_tick_period_ms(STARTUP_TICK_MS);
                }
                true
            }
            Err(e) => {
                crate::log_at!(
                    proxy_wasm::types::LogLevel::Critical,
                    "unigate: rejecting plugin configuration: {e}"
                );
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if self.needs_sidecar_credentials() {
            self.refresh_credentials();
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(
            context_id,
            self.gateway.clone(),
            self.env_credentials.clone(),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
