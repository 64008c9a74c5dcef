//! The one owner of a command's hold on the environment's lock: it takes the lock, renews it
//! while the command runs, and at the end either releases it or keeps it, by the rule in
//! `super`'s documentation. Nothing else releases or renews the lock.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Env, Error};
use crate::aws::lock::{Lock, LockError};
use crate::report::Reporter;

/// How long a kept lock holds without a process renewing it: a paused deployment waits for
/// `continue`, an unsettled one for a human (`rollback` and `continue` take it over).
pub const KEEP_FOR: Duration = Duration::from_secs(24 * 3600);

/// A held lock with its heartbeat running. Dropping it without `release` or `keep` stops the
/// heartbeat and leaves the lock to expire at the end of its lease.
pub struct Held {
    lock: Lock,
    run: String,
    reporter: Reporter,
    lost: CancellationToken,
    beat: tokio::task::JoinHandle<()>,
}

impl Held {
    /// Takes the lock for run `env.deployment` acting on the journal record `subject`.
    pub async fn acquire(env: &Env, subject: &str, version: &str) -> Result<Self, Error> {
        env.lock
            .acquire_for(&env.deployment, subject, &env.identity.arn, version)
            .await?;
        Ok(Self::start(env))
    }

    /// Like `acquire`, but a lock held for the same `subject` (the deployment this command
    /// settles: a running or dead promote, a rollback that did not finish) is taken over; its
    /// run loses the lock at its next heartbeat and stops.
    pub async fn take_over(env: &Env, subject: &str, version: &str) -> Result<Self, Error> {
        match Self::acquire(env, subject, version).await {
            Err(Error::LockHeld(e)) => match *e {
                LockError::Held { holder, .. } if holder.subject == subject => {
                    env.reporter.warn(
                        None,
                        "lock",
                        format!(
                            "taking the lock over from {} to settle deployment {subject}",
                            holder.deployment
                        ),
                    );
                    env.lock
                        .force_unlock()
                        .await
                        .map_err(|e| Error::Failed(e.to_string()))?;
                    Self::acquire(env, subject, version).await
                }
                other => Err(Error::from(other)),
            },
            other => other,
        }
    }

    fn start(env: &Env) -> Self {
        let lost = CancellationToken::new();
        let beat = heartbeat(
            env.lock.clone(),
            env.deployment.clone(),
            lost.clone(),
            env.reporter.clone(),
        );
        Self {
            lock: env.lock.clone(),
            run: env.deployment.clone(),
            reporter: env.reporter.clone(),
            lost,
            beat,
        }
    }

    /// Cancelled when another process took the lock over.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Ends the command's hold by the rule: `keep` when AWS is left in a state that needs a
    /// human, or paused for `continue`; released otherwise. A failure to do either is said, not
    /// fatal: the lease ends it either way.
    pub async fn finish(self, keep: bool) {
        self.beat.abort();
        if self.lost.is_cancelled() {
            // Another process holds it now; it is not ours to release or keep.
            return;
        }
        let done = if keep {
            self.lock.hold_for(&self.run, KEEP_FOR).await.map(|_| ())
        } else {
            self.lock.release(&self.run).await
        };
        match done {
            Ok(()) if keep => self.reporter.warn(
                None,
                "lock",
                format!(
                    "the lock stays with {} for {}",
                    self.run,
                    humantime::format_duration(KEEP_FOR)
                ),
            ),
            Ok(()) => {}
            Err(e) => self.reporter.warn(
                None,
                "lock",
                format!(
                    "could not {} the lock ({e}); it expires with its lease",
                    if keep { "keep" } else { "release" }
                ),
            ),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.beat.abort();
    }
}

/// Renews the lock every third of its lease; on losing it, cancels `lost` so the command stops
/// changing things at once.
fn heartbeat(
    lock: Lock,
    deployment: String,
    lost: CancellationToken,
    reporter: Reporter,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = (lock.lease() / 3).max(Duration::from_millis(200));
        loop {
            tokio::time::sleep(every).await;
            match lock.heartbeat(&deployment).await {
                Ok(_) => {}
                Err(e @ LockError::NotOwner { .. }) => {
                    reporter.warn(None, "lock", format!("lost the lock: {e}"));
                    lost.cancel();
                    return;
                }
                // Retried at the next beat; the lease outlives two misses.
                Err(e) => reporter.warn(None, "lock", format!("heartbeat failed, will retry: {e}")),
            }
        }
    })
}
