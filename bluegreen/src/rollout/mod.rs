//! The rollout engine: promote, rollback, status and plan across regions and waves.
//!
//! Every decision is made from what AWS says now (weights, task sets) plus the journal, never
//! from memory of an earlier process, so each command is safe to run after a crash.

pub mod gate;
pub mod preflight;
pub mod promote;
pub mod region;
pub mod rollback;
pub mod status;

use std::time::Duration;

use aws_config::SdkConfig;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::aws::lock::{Journal, Lock, LockError};
use crate::aws::sts::{self, Identity, IdentityError};
use crate::aws::{self, Clients, Settings};
use crate::config::Plan;
use crate::report::Reporter;

/// How a command ended; `exit_code` is the process exit code (documented in `--help`).
#[derive(Debug, Error)]
pub enum Error {
    /// Refused before changing anything: bad input, or preflight found a reason not to start.
    #[error("{0}")]
    Refused(String),
    /// Another deployment holds the environment's lock.
    #[error(transparent)]
    LockHeld(Box<LockError>),
    /// The deployment failed and every touched region was returned to its previous release.
    #[error("{0}")]
    RolledBack(String),
    /// Interrupted (SIGINT/SIGTERM); touched regions were returned to their previous release.
    #[error("{0}")]
    Interrupted(String),
    /// Anything else, including a rollback that could not finish.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Failed(_) => 1,
            Error::Refused(_) => 2,
            Error::RolledBack(_) => 3,
            Error::LockHeld(_) => 4,
            Error::Interrupted(_) => 130,
        }
    }
}

impl From<LockError> for Error {
    fn from(e: LockError) -> Self {
        match e {
            LockError::Held { .. } => Error::LockHeld(Box::new(e)),
            other => Error::Failed(other.to_string()),
        }
    }
}

/// A release version: an image tag in semver form, `v1.2.0` or `v1.2.0-rc.1`.
pub fn validate_version(v: &str) -> Result<(), Error> {
    let bad = || {
        Error::Refused(format!(
            "{v:?} is not a release version; use a semver image tag such as v1.2.0 or v1.2.0-rc.1"
        ))
    };
    let rest = v.strip_prefix('v').ok_or_else(bad)?;
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    let numeric = |p: &&str| {
        !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && (p.len() == 1 || !p.starts_with('0'))
    };
    if parts.len() != 3 || !parts.iter().all(numeric) {
        return Err(bad());
    }
    if let Some(pre) = pre {
        let ok = pre
            .split('.')
            .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        if !ok {
            return Err(bad());
        }
    }
    // Docker tags are at most 128 characters.
    if v.len() > 128 {
        return Err(bad());
    }
    Ok(())
}

/// Everything a command needs to act on one environment, built once.
pub struct Env {
    pub plan: Plan,
    pub reporter: Reporter,
    pub identity: Identity,
    /// The target account's configuration (after AssumeRole, if the file names a role).
    pub target: SdkConfig,
    /// Configuration that reads the source registry.
    pub source: SdkConfig,
    pub clients: Clients,
    pub lock: Lock,
    pub journal: Journal,
    /// Health probes: every request bounded by 10 s.
    pub http: reqwest::Client,
    /// Registries: no bound on a whole transfer (a large layer may take minutes), only on
    /// connecting and on each read stalling.
    pub registry_http: reqwest::Client,
    pub deployment: String,
}

/// Options every command shares.
#[derive(Debug, Clone, Default)]
pub struct Connect {
    pub settings: Settings,
}

impl Env {
    /// Resolves credentials and checks the caller is in the environment's account, before any
    /// other call. `deployment` names the AssumeRole session.
    pub async fn connect(
        plan: Plan,
        reporter: Reporter,
        settings: &Settings,
        deployment: &str,
    ) -> Result<Self, Error> {
        let base = aws::base_config(settings, &plan.lock.region).await;
        let session = format!("bluegreen-{deployment}");
        let target = match &plan.role_arn {
            // In CI the job already runs as the deploy role (OIDC); that role may not assume itself.
            Some(role) => match sts::whoami(&base).await {
                Ok(me) if sts::is_role(&me, role) => base.clone(),
                _ => aws::assume_role(&base, role, &session).await,
            },
            None => base.clone(),
        };
        let identity = sts::whoami(&target).await.map_err(|e| match e {
            IdentityError::Unknown(_) => Error::Refused(e.to_string()),
            other => Error::Refused(other.to_string()),
        })?;
        sts::expect_account(&identity, &plan.account_id, &plan.env)
            .map_err(|e| Error::Refused(e.to_string()))?;
        let source = match &plan.source.role_arn {
            Some(role) => aws::assume_role(&base, role, &session).await,
            None if plan.source.account_id == plan.account_id => target.clone(),
            None => base.clone(),
        };
        let regions: Vec<&str> = plan.regions.keys().map(String::as_str).collect();
        let clients = Clients::new(&target, regions);
        let ddb = aws_sdk_dynamodb::Client::new(
            &target
                .to_builder()
                .region(aws_config::Region::new(plan.lock.region.clone()))
                .build(),
        );
        let lock = Lock::new(
            ddb.clone(),
            &plan.lock.table,
            &plan.lock.region,
            &plan.env,
            plan.lock.lease,
        );
        let journal = Journal::new(ddb, &plan.lock.table, &plan.lock.region, &plan.env);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| Error::Failed(format!("cannot build the HTTP client: {e}")))?;
        let registry_http = crate::aws::registry::http_client()
            .map_err(|e| Error::Failed(format!("cannot build the registry HTTP client: {e}")))?;
        Ok(Self {
            plan,
            reporter,
            identity,
            target,
            source,
            clients,
            lock,
            journal,
            http,
            registry_http,
            deployment: deployment.to_owned(),
        })
    }
}

/// Renews the lock every third of its lease while a command runs; on losing it, cancels `token`
/// so the command stops changing things at once.
pub fn heartbeat(
    lock: Lock,
    deployment: String,
    token: CancellationToken,
    reporter: Reporter,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = (lock.lease() / 3).max(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(e) = lock.heartbeat(&deployment).await {
                if matches!(e, LockError::NotOwner { .. }) {
                    reporter.warn(None, "lock", format!("lost the lock: {e}"));
                    token.cancel();
                    return;
                }
                // A failed renewal is retried at the next beat; the lease outlives two misses.
                reporter.warn(None, "lock", format!("heartbeat failed, will retry: {e}"));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_versions_are_semver_tags() {
        for ok in [
            "v1.2.0",
            "v0.0.1",
            "v10.20.30",
            "v1.2.0-rc.1",
            "v1.2.0-alpha-2",
        ] {
            assert!(validate_version(ok).is_ok(), "{ok}");
        }
        for bad in [
            "1.2.0",
            "v1.2",
            "v1.2.0.1",
            "v01.2.0",
            "latest",
            "v1.2.0+build",
            "v1.2.0-",
            "v1.2.0-rc..1",
            "",
            "v1.2.x",
        ] {
            let err = validate_version(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}");
            assert!(err.to_string().contains("v1.2.0"), "{err}");
        }
    }
}
