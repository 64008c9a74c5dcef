//! The environment's deployment journal: one item (`env#<env>`, `deploy#<id>`) per deployment in
//! the lock's table, the whole record as JSON in `doc`, rewritten at every phase change.
//! Deployment ids start with their UTC start time, so a descending query on the sort key is
//! history, newest first.
//!
//! Phases and outcomes are enums that serialize to the strings records have always held, so
//! existing records still load; a value this version does not know is an error naming it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::CallError;
use super::lock::{get_s, pk, s};

/// What a record is about. Every record so far is a promote; rollbacks update the promote they
/// undo.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    #[default]
    Promote,
}

/// Where a deployment is as a whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Locked and journaled; nothing changed yet.
    #[default]
    #[serde(alias = "started")]
    Starting,
    /// Copying the image into every region's registry.
    Copying,
    /// Regions wave by wave (each region's own phase says where it is).
    Deploying,
    /// Stopped at `--until`, lock held, for `continue`.
    Paused,
    /// Every wave done; the previous task sets are being removed.
    Cleaning,
    Promoted,
    RollingBack,
    RolledBack,
    RollbackFailed,
    Failed,
}

/// How a deployment ended. A record without one is unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Promoted,
    RolledBack,
    /// A rollback that did not finish: AWS needs a human (`bluegreen rollback` again).
    RollbackFailed,
    /// Failed before anything was deployed (e.g. the image copy).
    Failed,
}

/// One region's phase: the promote phases in order (a resume skips what is done), then the
/// rollback phases, which are no promote progress at all (see `progress`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegionPhase {
    /// Nothing done in this region yet.
    #[default]
    #[serde(alias = "")]
    Pending,
    /// The new task definition is registered.
    Registered,
    /// The new task set exists on the idle colour.
    Created,
    /// It runs every task and every target is healthy.
    Ready,
    /// The test listener points at it and answered the new version.
    TestTraffic,
    /// Production weight moved to `RegionRecord::weight`, baking.
    Shifting,
    /// Every step baked at 100%.
    Baked,
    /// The new task set is primary.
    Promoted,
    /// The previous task set is deleted.
    Cleaned,
    RollingBack,
    RolledBack,
    RollbackFailed,
}

impl RegionPhase {
    /// How far a promote got in the region: `None` for the rollback phases, which a promote
    /// never resumes from (`decide` refuses `continue` for a record being rolled back).
    pub fn progress(self) -> Option<u8> {
        use RegionPhase::*;
        let order = [
            Pending,
            Registered,
            Created,
            Ready,
            TestTraffic,
            Shifting,
            Baked,
            Promoted,
            Cleaned,
        ];
        order.iter().position(|p| *p == self).map(|i| i as u8)
    }

    /// The promote has reached `phase` here (or gone past it).
    pub fn reached(self, phase: RegionPhase) -> bool {
        matches!((self.progress(), phase.progress()), (Some(a), Some(b)) if a >= b)
    }

    /// A rollback touched the region.
    pub fn rolling_back(self) -> bool {
        self.progress().is_none()
    }
}

macro_rules! display_as_serde {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let v = serde_json::to_value(self).expect("a unit enum serializes");
                f.write_str(v.as_str().unwrap_or_default())
            }
        }
    )*};
}
display_as_serde!(Kind, Phase, Outcome, RegionPhase);

/// One deployment's journal record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub env: String,
    pub kind: Kind,
    pub version: String,
    pub digest: Option<String>,
    pub caller: String,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    pub phase: Phase,
    pub outcome: Option<Outcome>,
    pub message: Option<String>,
    pub regions: BTreeMap<String, RegionRecord>,
}

impl Record {
    /// Ends the record: phase and outcome as one, with the time and what happened.
    pub fn end(&mut self, phase: Phase, outcome: Outcome, message: Option<String>) {
        self.phase = phase;
        self.outcome = Some(outcome);
        self.ended_ms = Some(super::lock::now_ms());
        self.message = message;
    }
}

/// What a deployment knows about one region: enough to put it back from any state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionRecord {
    pub phase: RegionPhase,
    pub previous_task_definition: Option<String>,
    pub previous_task_set: Option<String>,
    /// The colour that carried production before the deployment: `blue` or `green`.
    pub previous_colour: Option<String>,
    pub new_task_definition: Option<String>,
    pub new_task_set: Option<String>,
    /// Percent of production traffic on the new release last set.
    pub weight: u8,
    /// The traffic analysis's last comparison of the colours and its verdict, once baked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<String>,
    /// The gate's verdict on the last step that finished its bake, journaled with the write that
    /// starts the next step (or records the region baked): what `status --watch` shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
}

impl RegionRecord {
    /// The deployment was the region's first: production pointed at a colour with no release
    /// (a colour is recorded, no task set), so rolling it back takes the region off the air.
    pub fn first_deployment(&self) -> bool {
        self.previous_colour.is_some() && self.previous_task_set.is_none()
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum JournalError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(
        "journal record {id} in {table} cannot be read by this version of bluegreen: {reason}; \
         upgrade bluegreen, or inspect the item (pk env#{env}, sk deploy#{id})"
    )]
    Unreadable {
        env: String,
        table: String,
        id: String,
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub struct Journal {
    client: aws_sdk_dynamodb::Client,
    table: String,
    region: String,
    env: String,
}

/// Pauses between journal writes when one fails after the SDK's own retries: a phase is never
/// acted on further without its record, and a short DynamoDB outage should not end a rollout.
pub const WRITE_BACKOFF: [Duration; 3] = [
    Duration::from_millis(250),
    Duration::from_secs(1),
    Duration::from_secs(3),
];

impl Journal {
    pub fn new(client: aws_sdk_dynamodb::Client, table: &str, region: &str, env: &str) -> Self {
        Self {
            client,
            table: table.to_owned(),
            region: region.to_owned(),
            env: env.to_owned(),
        }
    }

    /// Writes the whole record (one writer: the lock holder), once.
    pub async fn write_once(&self, record: &Record) -> Result<(), CallError> {
        let doc = serde_json::to_string(record).expect("a journal record always serializes");
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk(&self.env)))
            .item("sk", s(format!("deploy#{}", record.id)))
            .item("doc", s(doc))
            .send()
            .await
            .map_err(|e| CallError::new("PutItem (journal)", &self.region, &e))?;
        Ok(())
    }

    /// Writes the whole record, trying again after each pause of `WRITE_BACKOFF`; the last error
    /// if every try failed.
    pub async fn write(&self, record: &Record) -> Result<(), CallError> {
        let mut pauses = WRITE_BACKOFF.iter();
        loop {
            match self.write_once(record).await {
                Ok(()) => return Ok(()),
                Err(e) => match pauses.next() {
                    Some(pause) => {
                        tracing::warn!(id = %record.id, error = %e, "journal write failed; retrying");
                        tokio::time::sleep(*pause).await;
                    }
                    None => return Err(e),
                },
            }
        }
    }

    pub async fn get(&self, id: &str) -> Result<Option<Record>, JournalError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk(&self.env)))
            .key("sk", s(format!("deploy#{id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| CallError::new("GetItem (journal)", &self.region, &e))?;
        out.item().map(|i| self.decode(i)).transpose()
    }

    /// Up to `limit` records, newest first.
    pub async fn history(&self, limit: i32) -> Result<Vec<Record>, JournalError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(pk(&self.env)))
            .expression_attribute_values(":prefix", s("deploy#"))
            .scan_index_forward(false)
            .limit(limit.max(1))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| CallError::new("Query (journal)", &self.region, &e))?;
        out.items().iter().map(|i| self.decode(i)).collect()
    }

    /// A record, or an error naming it and what this version cannot read (an unknown phase,
    /// say): a record is never skipped or guessed at, since rollback decides from it.
    fn decode(&self, item: &HashMap<String, AttributeValue>) -> Result<Record, JournalError> {
        serde_json::from_str(&get_s(item, "doc")).map_err(|e| JournalError::Unreadable {
            env: self.env.clone(),
            table: self.table.clone(),
            id: get_s(item, "sk")
                .strip_prefix("deploy#")
                .unwrap_or_default()
                .to_owned(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_written_before_the_enums_still_load() {
        let old = r#"{"id":"d1","env":"prod","kind":"promote","version":"v1.2.0","digest":null,
            "caller":"arn","started_ms":1,"ended_ms":null,"phase":"started","outcome":null,
            "message":null,"regions":{"us-east-1":{"phase":"","previous_task_definition":null,
            "previous_task_set":null,"previous_colour":"blue","new_task_definition":null,
            "new_task_set":null,"weight":0}}}"#;
        let r: Record = serde_json::from_str(old).unwrap();
        assert_eq!(r.phase, Phase::Starting);
        assert_eq!(r.regions["us-east-1"].phase, RegionPhase::Pending);
        for (text, phase) in [
            ("test-traffic", RegionPhase::TestTraffic),
            ("rollback-failed", RegionPhase::RollbackFailed),
            ("cleaned", RegionPhase::Cleaned),
        ] {
            let p: RegionPhase = serde_json::from_value(serde_json::json!(text)).unwrap();
            assert_eq!(p, phase);
            assert_eq!(p.to_string(), text);
        }
        assert_eq!(Outcome::RolledBack.to_string(), "rolled-back");
    }

    #[test]
    fn an_unknown_phase_is_an_error_that_names_it() {
        let err = serde_json::from_value::<RegionPhase>(serde_json::json!("half-way")).unwrap_err();
        assert!(err.to_string().contains("half-way"), "{err}");
    }

    #[test]
    fn region_phases_are_ordered_for_resuming_and_rollback_is_no_progress() {
        use RegionPhase::*;
        let order = [
            Pending,
            Registered,
            Created,
            Ready,
            TestTraffic,
            Shifting,
            Baked,
            Promoted,
            Cleaned,
        ];
        assert!(
            order
                .windows(2)
                .all(|w| w[1].reached(w[0]) && !w[0].reached(w[1]))
        );
        for back in [RollingBack, RolledBack, RollbackFailed] {
            assert!(back.rolling_back());
            assert!(!back.reached(Pending) && !back.reached(Promoted), "{back}");
            assert!(!Promoted.reached(back), "{back}");
        }
    }
}
