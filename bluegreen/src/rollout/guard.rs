//! The one owner of a command's hold on the environment's lock: it takes the lock, renews it
//! while the command runs, and at the end either releases it or keeps it, by the rule in
//! `super`'s documentation. Besides it, only `promote` clearing a dead run's expired lock and
//! `bluegreen unlock` remove a lock.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Env, Error};
use crate::aws::lock::{self, Holder, Lock, LockError};
use crate::report::Reporter;

/// How long a kept lock holds without a process renewing it: a paused deployment waits for
/// `continue`, an unsettled one for a human (`rollback` and `continue` take it over).
pub const KEEP_FOR: Duration = Duration::from_secs(24 * 3600);

/// A held lock with its heartbeat running. Dropping it without `finish` stops the heartbeat and
/// leaves the lock to expire at the end of its lease.
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
    /// settles) is taken over when no live process of another command holds it: the promote
    /// itself (`rollback` stops a running promote by design; its run loses the lock at its next
    /// heartbeat and stops), a kept lock, or an expired one. A live rollback is not taken over.
    pub async fn take_over(env: &Env, subject: &str, version: &str) -> Result<Self, Error> {
        match Self::acquire(env, subject, version).await {
            Err(Error::LockHeld(e)) => match *e {
                LockError::Held { holder, .. } if may_take_over(&holder, subject) => {
                    env.reporter.warn(
                        None,
                        "lock",
                        format!(
                            "taking the lock over from {} to settle deployment {subject}",
                            holder.deployment
                        ),
                    );
                    // Conditional on that holder: a lock that changed hands meanwhile stays.
                    env.lock.release(&holder.deployment).await?;
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
    /// human, or paused for `continue`; released otherwise. A lost lock is left alone. A failure
    /// to keep is returned (the lock then ends with its lease); a failure to release is said.
    /// `out`, after ending the hold by `finish(keep)`; a lock that could not be kept is said in
    /// the error.
    pub async fn settle<T>(self, out: Result<T, Error>, keep: bool) -> Result<T, Error> {
        let Err(e) = self.finish(keep).await else {
            return out;
        };
        let ends = format!("the lock could not be kept ({e}), so it ends with its lease");
        match out {
            Err(Error::Unsettled(m)) => Err(Error::Unsettled(format!("{m}; {ends}"))),
            Err(other) => Err(other),
            Ok(_) => Err(Error::Failed(format!(
                "{ends}: run `bluegreen continue` or `bluegreen rollback` before then"
            ))),
        }
    }

    /// Ends the hold without keeping it.
    pub async fn release(self) {
        let kept = self.finish(false).await;
        debug_assert!(kept.is_ok(), "releasing never fails to keep");
    }

    async fn finish(self, keep: bool) -> Result<(), String> {
        self.beat.abort();
        if self.lost.is_cancelled() {
            // Another process holds it now; it is not ours to release or keep.
            return Ok(());
        }
        if keep {
            self.lock
                .keep_for(&self.run, KEEP_FOR)
                .await
                .map_err(|e| e.to_string())?;
            self.reporter.event(
                None,
                "lock",
                format!(
                    "the lock stays with {} for {}",
                    self.run,
                    humantime::format_duration(KEEP_FOR)
                ),
            );
        } else if let Err(e) = self.lock.release(&self.run).await {
            self.reporter.warn(
                None,
                "lock",
                format!("could not release the lock ({e}); it expires with its lease"),
            );
        }
        Ok(())
    }
}

/// The takeover rule of `Held::take_over`.
fn may_take_over(holder: &Holder, subject: &str) -> bool {
    holder.subject == subject
        && (holder.deployment == subject || holder.kept || holder.expired(lock::now_ms()))
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
