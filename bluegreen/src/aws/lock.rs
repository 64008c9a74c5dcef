//! The environment's deployment lock, one item (`env#<env>`, `lock`) in the table it shares with
//! the journal (`super::journal`; partition key `pk`, sort key `sk`, both strings;
//! terraform/modules/deploy-lock creates it).
//!
//! Taken with a conditional put that succeeds only if no lock exists, the lease expired, or the
//! same run holds it (a resume). Renewed by heartbeat, released only by its owner; `force_unlock`
//! is the explicit escape hatch. Besides the run holding it (`deployment`), the item names the
//! journal record that run acts on (`subject`): `rollback` takes over a lock whose subject is the
//! deployment it undoes, under a run id of its own, so the run it replaces loses the lock.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use thiserror::Error;

use super::CallError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    /// The run holding the lock.
    pub deployment: String,
    /// The journal record that run acts on: its own id for a promote, the undone deployment's for
    /// a rollback. Items written before this field existed name the run.
    pub subject: String,
    /// Kept by a command that ended (paused, or AWS needing a human): no process renews it.
    pub kept: bool,
    pub owner: String,
    pub version: String,
    pub acquired_ms: u64,
    pub expires_ms: u64,
}

impl Holder {
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_ms <= now_ms
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "deployment {} of {} by {}, {} until {}",
            self.deployment,
            self.version,
            self.owner,
            if self.kept {
                "kept with no process running"
            } else {
                "lease"
            },
            rfc3339(self.expires_ms)
        )
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LockError {
    #[error("{}", held(env, holder))]
    Held { env: String, holder: Holder },
    #[error(
        "deployment {deployment} does not hold the lock of {env} (holder: {}); it was taken over or released",
        holder.as_ref().map_or("none".to_owned(), |h| h.to_string())
    )]
    NotOwner {
        env: String,
        deployment: String,
        holder: Option<Holder>,
    },
    #[error(transparent)]
    Call(#[from] CallError),
}

fn held(env: &str, holder: &Holder) -> String {
    if holder.kept {
        format!(
            "environment {env} is locked by {holder}: that deployment stopped and needs a human: \
             `bluegreen status -e {env}` says what it left, then `bluegreen continue -e {env}` or \
             `bluegreen rollback -e {env}`"
        )
    } else {
        format!(
            "environment {env} is locked by {holder}; wait for it, or if that deployment is dead run \
             `bluegreen unlock -e {env}`"
        )
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// A new deployment id: its UTC start time, then random hex (`20261124T071700Z-3fa9c2`).
pub fn new_deployment_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ms());
    let stamp: String = rfc3339(now_ms())
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    format!("{stamp}-{:06x}", h.finish() & 0xff_ffff)
}

#[derive(Debug, Clone)]
pub struct Lock {
    client: aws_sdk_dynamodb::Client,
    table: String,
    region: String,
    env: String,
    lease: Duration,
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn get_s(item: &HashMap<String, AttributeValue>, k: &str) -> String {
    item.get(k)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

fn get_n(item: &HashMap<String, AttributeValue>, k: &str) -> u64 {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_default()
}

fn holder_of(item: &HashMap<String, AttributeValue>) -> Holder {
    let deployment = get_s(item, "deployment");
    let subject = Some(get_s(item, "subject"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| deployment.clone());
    Holder {
        kept: item.get("kept").and_then(|v| v.as_bool().ok()) == Some(&true),
        deployment,
        subject,
        owner: get_s(item, "owner"),
        version: get_s(item, "version"),
        acquired_ms: get_n(item, "acquired_ms"),
        expires_ms: get_n(item, "expires_ms"),
    }
}

pub(super) fn pk(env: &str) -> String {
    format!("env#{env}")
}

impl Lock {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: &str,
        region: &str,
        env: &str,
        lease: Duration,
    ) -> Self {
        Self {
            client,
            table: table.to_owned(),
            region: region.to_owned(),
            env: env.to_owned(),
            lease,
        }
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Takes the lock for `deployment`, or takes over one whose lease has expired. The same
    /// deployment may take it again (resuming after a crash).
    pub async fn acquire(
        &self,
        deployment: &str,
        owner: &str,
        version: &str,
    ) -> Result<Holder, LockError> {
        self.acquire_for(deployment, deployment, owner, version)
            .await
    }

    /// Takes the lock for run `deployment` acting on the journal record `subject`.
    pub async fn acquire_for(
        &self,
        deployment: &str,
        subject: &str,
        owner: &str,
        version: &str,
    ) -> Result<Holder, LockError> {
        let now = now_ms();
        let expires = now + self.lease.as_millis() as u64;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk(&self.env)))
            .item("sk", s("lock"))
            .item("deployment", s(deployment))
            .item("subject", s(subject))
            .item("owner", s(owner))
            .item("version", s(version))
            .item("acquired_ms", n(now))
            .item("expires_ms", n(expires))
            .condition_expression(
                "attribute_not_exists(pk) OR expires_ms <= :now OR deployment = :me",
            )
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":me", s(deployment))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Holder {
                deployment: deployment.to_owned(),
                subject: subject.to_owned(),
                kept: false,
                owner: owner.to_owned(),
                version: version.to_owned(),
                acquired_ms: now,
                expires_ms: expires,
            }),
            Err(e) => {
                let err = CallError::new("PutItem (acquire lock)", &self.region, &e);
                if err.is("ConditionalCheckFailedException") {
                    match self.holder().await? {
                        Some(holder) => Err(LockError::Held {
                            env: self.env.clone(),
                            holder,
                        }),
                        // Released between our put and our read: the caller may simply retry.
                        None => Err(LockError::Call(err)),
                    }
                } else {
                    Err(err.into())
                }
            }
        }
    }

    /// Extends the lease of `deployment`'s lock; fails if it no longer holds it.
    pub async fn heartbeat(&self, deployment: &str) -> Result<u64, LockError> {
        self.extend(deployment, self.lease, false).await
    }

    /// Keeps `deployment`'s lock for `for_` from now with no process renewing it: a paused
    /// deployment waits for `continue`, an unsettled one for a human. The item says it is kept,
    /// so `status` does not take it for a running deployment.
    pub async fn keep_for(&self, deployment: &str, for_: Duration) -> Result<u64, LockError> {
        self.extend(deployment, for_, true).await
    }

    async fn extend(&self, deployment: &str, for_: Duration, kept: bool) -> Result<u64, LockError> {
        let expires = now_ms() + for_.as_millis() as u64;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk(&self.env)))
            .key("sk", s("lock"))
            .update_expression("SET expires_ms = :e, kept = :k")
            .condition_expression("deployment = :me")
            .expression_attribute_values(":e", n(expires))
            .expression_attribute_values(":k", AttributeValue::Bool(kept))
            .expression_attribute_values(":me", s(deployment))
            .send()
            .await;
        self.owner_only(
            result.map(|_| ()),
            "UpdateItem (lock heartbeat)",
            deployment,
        )
        .await
        .map(|()| expires)
    }

    /// Releases `deployment`'s lock; refused if another deployment holds it.
    pub async fn release(&self, deployment: &str) -> Result<(), LockError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(pk(&self.env)))
            .key("sk", s("lock"))
            .condition_expression("deployment = :me")
            .expression_attribute_values(":me", s(deployment))
            .send()
            .await;
        self.owner_only(result.map(|_| ()), "DeleteItem (release lock)", deployment)
            .await
    }

    async fn owner_only<E>(
        &self,
        result: Result<
            (),
            aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
        >,
        call: &'static str,
        deployment: &str,
    ) -> Result<(), LockError>
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = CallError::new(call, &self.region, &e);
                if err.is("ConditionalCheckFailedException") {
                    Err(LockError::NotOwner {
                        env: self.env.clone(),
                        deployment: deployment.to_owned(),
                        holder: self.holder().await?,
                    })
                } else {
                    Err(err.into())
                }
            }
        }
    }

    /// Who holds the lock now, if anyone (an expired holder is still reported, as expired).
    pub async fn holder(&self) -> Result<Option<Holder>, CallError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk(&self.env)))
            .key("sk", s("lock"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| CallError::new("GetItem (lock)", &self.region, &e))?;
        Ok(out.item().map(holder_of))
    }

    /// Removes the lock whoever holds it; returns who did.
    pub async fn force_unlock(&self) -> Result<Option<Holder>, CallError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(pk(&self.env)))
            .key("sk", s("lock"))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| CallError::new("DeleteItem (force unlock)", &self.region, &e))?;
        Ok(out.attributes().map(holder_of))
    }
}
