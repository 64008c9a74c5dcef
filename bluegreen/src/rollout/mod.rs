//! The rollout engine: promote, continue, rollback, status and plan across regions and waves.
//!
//! Every decision is made from what AWS says now (weights, task sets) plus the journal, never
//! from memory of an earlier process, so each command is safe to run after a crash. The
//! decisions themselves are pure functions with tables of tests (`decide`, `status::next_step`).
//!
//! The modules, in the order a promote runs them: `preflight` reads every region; `guard` holds
//! the lock; `tracker` writes the journal; `promote` copies the image and runs the waves;
//! `region` runs one region's phases; `gate` judges each bake; `rollback` puts regions back.
//!
//! # The lock rule
//!
//! One rule for every command: **a command that leaves AWS in a state that needs a human keeps
//! the lock and says so** (`Error::Unsettled`, exit 1, "(lock kept)": a rollback that did not
//! finish, or a journal that missed what AWS now holds); so do a promote paused at `--until`
//! (for `continue`) and a `rollback --region` that leaves regions of the deployment out. A kept
//! lock is marked as such and holds for `guard::KEEP_FOR`. Every other ending releases it.
//! `rollback` takes over a lock held for the deployment it settles unless a live rollback holds
//! it; `continue` takes up one kept by the run it resumes. `guard::Held` takes, renews, keeps
//! and releases the lock; besides it only `promote` clearing a dead run's expired lock and
//! `bluegreen unlock` remove one.
//!
//! # Invariants (from `shared/design/rollout.md`), and the tests that pin them
//!
//! - The production listener's weights always sum to 100 and name exactly the two target
//!   groups: `elb::Weights` refuses anything else before ModifyListener; checked after every
//!   kill and fault in `tests/faults.rs` (`assert_weights_whole`) and continuously in
//!   `tests/traffic.rs`.
//! - Traffic never goes to a target group with fewer healthy targets than the live one had:
//!   `gate::judge`; `tests/e2e.rs` `the_new_release_never_takes_traffic_with_a_smaller_fleet`.
//! - At most one deployment per environment at a time: `tests/e2e.rs`
//!   `a_lock_held_by_another_deployment_exits_4_and_changes_nothing`, `tests/aws_lock.rs`.
//! - A refused command changes nothing, and a bad command line or file calls no AWS API at all:
//!   `tests/bad_input.rs` (request log and state diff per case).
//! - After `promote` exits 0, every region serves the new digest with exactly one task set:
//!   `tests/e2e.rs` `promote_happy_path_serves_the_new_digest_everywhere`.
//! - After `rollback` (or an automatic rollback) exits, every region serves the previous
//!   digest: `tests/e2e.rs` `rollback_after_a_completed_promote_returns_the_previous_version_everywhere`,
//!   `a_failure_in_wave_two_rolls_back_wave_one_too`, and every case of `tests/faults.rs`.
//! - No journal write is dropped: a failed one stops the phase it records, or ends the command
//!   with the lock kept naming what AWS holds: `tests/faults.rs`
//!   `the_final_journal_write_failing_keeps_the_lock_and_continue_records_it`.

pub mod analysis;
pub mod common;
pub mod decide;
pub mod gate;
pub mod guard;
pub mod preflight;
pub mod promote;
pub mod region;
pub mod rollback;
pub mod status;
pub mod tracker;
pub mod watch;

use std::time::Duration;

use aws_config::SdkConfig;
use thiserror::Error;

use crate::aws::credentials::{self, Lifetime};
use crate::aws::journal::Journal;
use crate::aws::lock::{Lock, LockError};
use crate::aws::sts::{self, Identity};
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
    /// AWS is left in a state that needs a human (a rollback that did not finish, a journal
    /// that missed what AWS holds); the lock is kept (see the lock rule above).
    #[error("{0}")]
    Unsettled(String),
    /// Anything else.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Failed(_) | Error::Unsettled(_) => 1,
            Error::Refused(_) => 2,
            Error::RolledBack(_) => 3,
            Error::LockHeld(_) => 4,
            Error::Interrupted(_) => 130,
        }
    }
}

impl Error {
    /// The lock rule: only an unsettled ending keeps the lock.
    pub fn keeps_lock(&self) -> bool {
        matches!(self, Error::Unsettled(_))
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
#[derive(Clone)]
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
    /// Parameter Store in the lock's region: the test route's secret.
    pub ssm: aws_sdk_ssm::Client,
    /// Health probes: every request bounded by 10 s; redirects are not followed.
    pub http: reqwest::Client,
    /// Registries: no bound on a whole transfer (a large layer may take minutes), only on
    /// connecting and on each read stalling.
    pub registry_http: reqwest::Client,
    /// This run's id: it names the AssumeRole session, the lock's holder, the journal record of
    /// a promote, and the task sets the run creates.
    pub deployment: String,
    /// How long the target account's credentials last.
    pub lifetime: Lifetime,
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
        let (target, lifetime) = target_config(&base, plan.role_arn.as_deref(), &session).await?;
        let identity = sts::whoami(&target)
            .await
            .map_err(|e| Error::Refused(e.to_string()))?;
        sts::expect_account(&identity, &plan.account_id, &plan.env)
            .map_err(|e| Error::Refused(e.to_string()))?;
        tracing::debug!(caller = %identity.arn, account = %identity.account, deployment, "connected");
        // With a deploy role, the source role is assumed by it (role chaining, renewed with it):
        // the source role trusts the deploy role, and through GitHub's OIDC the base chain may
        // have no credentials at all.
        let chain_from = if plan.role_arn.is_some() {
            &target
        } else {
            &base
        };
        let source = match &plan.source.role_arn {
            Some(role) => aws::assume_role(chain_from, role, &session).await,
            None if plan.source.account_id == plan.account_id => target.clone(),
            None => chain_from.clone(),
        };
        let regions: Vec<&str> = plan.regions.keys().map(String::as_str).collect();
        let clients = Clients::new(&target, regions);
        let home = target
            .to_builder()
            .region(aws_config::Region::new(plan.lock.region.clone()))
            .build();
        let ddb = aws_sdk_dynamodb::Client::new(&home);
        let ssm = aws_sdk_ssm::Client::new(&home);
        let lock = Lock::new(
            ddb.clone(),
            &plan.lock.table,
            &plan.lock.region,
            &plan.env,
            plan.lock.lease,
        );
        let journal = Journal::new(ddb, &plan.lock.table, &plan.lock.region, &plan.env);
        // Probes judge what the ALB answers, and a redirect is an answer: never followed, so the
        // test header's secret is never sent on to another host.
        let http = reqwest::Client::builder()
            // Probes say who sends them, so ALB access logs can tell them from users.
            .user_agent(concat!("bluegreen/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
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
            ssm,
            http,
            registry_http,
            deployment: deployment.to_owned(),
            lifetime,
        })
    }

    /// Refuses a promote that may outlast the credentials in use (see `aws::credentials`).
    pub fn check_lifetime(&self) -> Result<(), Error> {
        if let Some(warning) = credentials::unknown_end(&self.lifetime, self.plan.worst_case()) {
            self.reporter.warn(None, "credentials", warning);
        }
        credentials::check(
            &self.lifetime,
            self.plan.worst_case(),
            std::time::SystemTime::now(),
        )
        .map_err(|m| Error::Refused(format!("preflight refused; nothing was changed: {m}")))
    }
}

/// The target account's configuration and how long its credentials last. With a `role`: GitHub
/// Actions' OIDC when the job can request a token (refreshes itself); the base credentials when
/// they already are a session of the role (CI after configure-aws-credentials: a role may not
/// assume itself); otherwise the role assumed over the base credentials, checked at once so an
/// AccessDenied names the role, the caller and what to ask for.
async fn target_config(
    base: &SdkConfig,
    role: Option<&str>,
    session: &str,
) -> Result<(SdkConfig, Lifetime), Error> {
    let from_env = credentials::of_environment(|k| std::env::var(k).ok());
    let Some(role) = role else {
        return Ok((base.clone(), from_env));
    };
    if let Some(oidc) = credentials::GithubOidc::from_env(base, role, session) {
        return Ok((
            oidc.config(base),
            Lifetime::Refreshing(credentials::GITHUB_OIDC),
        ));
    }
    let me = sts::whoami(base)
        .await
        .map_err(|e| Error::Refused(e.to_string()))?;
    if sts::is_role(&me, role) {
        return Ok((base.clone(), from_env));
    }
    let target = aws::assume_role(base, role, session).await;
    if let Err(sts::IdentityError::Unknown(e)) = sts::whoami(&target).await {
        return Err(Error::Refused(if e.message.contains("AccessDenied") {
            format!(
                "{} may not assume {role} ({}); ask for the role's trust policy to admit your \
                 principal (for an SSO session, its permission set's role) and for \
                 sts:AssumeRole on {role} in your own permissions",
                me.arn, e.message
            )
        } else {
            format!("assuming {role} as {} failed: {}", me.arn, e.message)
        }));
    }
    Ok((target, credentials::assumed_over(from_env)))
}

impl Env {
    /// The test route's secret (read when a promote needs it: a rollback must not depend on it).
    pub async fn test_route(&self) -> Result<crate::aws::secret::TestRoute, Error> {
        crate::aws::secret::read(&self.ssm, &self.plan.lock.region, &self.plan.test_traffic)
            .await
            .map_err(|e| Error::Refused(format!("preflight refused; nothing was changed: {e}")))
    }

    /// The same environment, acting as run `deployment` (`continue` resumes a run as itself).
    pub fn acting_as(&self, deployment: &str) -> Self {
        Self {
            deployment: deployment.to_owned(),
            ..self.clone()
        }
    }
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
