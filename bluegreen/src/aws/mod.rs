//! Everything that talks to AWS: one SDK configuration from the standard credential chain, the
//! target account reached by AssumeRole, and per-region clients built once and shared.

pub mod alarms;
pub mod credentials;
pub mod ecs;
pub mod elb;
pub mod journal;
pub mod lock;
pub mod metrics;
pub mod registry;
pub mod scan;
pub mod secret;

pub mod sts;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sts::error::{DisplayErrorContext, ProvideErrorMetadata};
use thiserror::Error;

/// Retries and timeouts, set explicitly rather than left to SDK defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Attempts per call, first included (standard retry mode: exponential backoff with jitter,
    /// retrying throttling, 5xx and transient network errors).
    pub max_attempts: u32,
    pub connect_timeout: Duration,
    /// Per attempt.
    pub attempt_timeout: Duration,
    /// All attempts of one call.
    pub operation_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            connect_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(20),
            operation_timeout: Duration::from_secs(60),
        }
    }
}

/// A failed AWS call, named by its operation and region, with the service's error code.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{call} in {region} failed: {message}")]
pub struct CallError {
    pub call: &'static str,
    pub region: String,
    pub code: Option<String>,
    pub message: String,
}

impl CallError {
    pub fn new<E>(call: &'static str, region: &str, err: &E) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let code = err.code().map(str::to_owned);
        let message = match (err.code(), err.message()) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.to_owned(),
            _ => transport_message(err),
        };
        Self {
            call,
            region: region.to_owned(),
            code,
            message,
        }
    }

    pub fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

/// An error without a service answer (connection refused, timeout, DNS): its causes in one
/// line, without the SDK's debug dump, saying plainly when AWS could not be reached.
fn transport_message(err: &(dyn std::error::Error + 'static)) -> String {
    let chain = error_chain(err);
    if chain.contains("loading credentials") || chain.contains("no credentials found") {
        let profile = std::env::var("AWS_PROFILE")
            .map(|p| format!(" with profile {p:?} (AWS_PROFILE)"))
            .unwrap_or_default();
        format!("no usable AWS credentials{profile} ({chain})")
    } else if chain.starts_with("dispatch failure") {
        format!("cannot reach the AWS endpoint ({chain}); check the network and AWS_ENDPOINT_URL")
    } else if chain.is_empty() {
        DisplayErrorContext(err).to_string()
    } else {
        chain
    }
}

/// An error and its causes on one line, `a: b: c`, leaving out a cause its parent already says.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = e.source();
    }
    parts.join(": ")
}

/// Loads the base configuration from the standard chain (environment, profile, SSO, process,
/// web identity for GitHub OIDC); `AWS_ENDPOINT_URL` is honoured by the chain.
pub async fn base_config(settings: &Settings, home_region: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(home_region.to_owned()))
        .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts.max(1)))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(settings.connect_timeout)
                .operation_attempt_timeout(settings.attempt_timeout)
                .operation_timeout(settings.operation_timeout)
                .build(),
        )
        .load()
        .await
}

/// `base` acting as `role_arn`. The provider renews the credentials before they expire, so a
/// long bake never runs on stale credentials. `session` ends up in CloudTrail.
pub async fn assume_role(base: &SdkConfig, role_arn: &str, session: &str) -> SdkConfig {
    let provider = AssumeRoleProvider::builder(role_arn)
        .session_name(session_name(session))
        .configure(base)
        .build()
        .await;
    base.to_builder()
        .credentials_provider(aws_sdk_sts::config::SharedCredentialsProvider::new(
            provider,
        ))
        .build()
}

/// A RoleSessionName: at most 64 of `[A-Za-z0-9+=,.@_-]`.
pub fn session_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@_-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect()
}

/// The clients of one region, built once.
#[derive(Debug, Clone)]
pub struct RegionClients {
    pub region: String,
    pub ecs: aws_sdk_ecs::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub ecr: aws_sdk_ecr::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
}

impl RegionClients {
    pub fn new(config: &SdkConfig, region: &str) -> Self {
        let config = config
            .to_builder()
            .region(Region::new(region.to_owned()))
            .build();
        Self {
            region: region.to_owned(),
            ecs: aws_sdk_ecs::Client::new(&config),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&config),
            ecr: aws_sdk_ecr::Client::new(&config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
        }
    }
}

/// Every region's clients for one account.
#[derive(Debug, Clone)]
pub struct Clients {
    by_region: BTreeMap<String, RegionClients>,
}

impl Clients {
    pub fn new<'a>(config: &SdkConfig, regions: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            by_region: regions
                .into_iter()
                .map(|r| (r.to_owned(), RegionClients::new(config, r)))
                .collect(),
        }
    }

    /// The clients of `region`; regions come from the validated plan, so a miss is a bug.
    pub fn region(&self, region: &str) -> &RegionClients {
        self.by_region
            .get(region)
            .unwrap_or_else(|| panic!("no clients were built for {region}"))
    }
}
