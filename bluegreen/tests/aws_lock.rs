//! The deployment lock and journal, and caller identity, against the local stand-in.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use bluegreen::aws::journal::{Journal, Outcome, Phase, Record, RegionPhase, RegionRecord};
use bluegreen::aws::lock::{self, Holder, Lock, LockError};
use bluegreen::aws::sts::{self, IdentityError};
use serde_json::json;
use support::*;

const TABLE: &str = "bluegreen-prod";
const REGION: &str = "us-east-1";

async fn lock_table(aws: &LocalAws) -> aws_sdk_dynamodb::Client {
    aws.bootstrap(json!({"account": ACCOUNT_B, "regions": [],
                         "lock_table": {"name": TABLE, "region": REGION}}))
        .await;
    aws_sdk_dynamodb::Client::new(&aws.sdk_as(ACCOUNT_B, REGION).await)
}

fn lock_with(ddb: &aws_sdk_dynamodb::Client, lease: Duration) -> Lock {
    Lock::new(ddb.clone(), TABLE, REGION, "prod", lease)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_acquirers_exactly_one_wins() {
    let aws = LocalAws::start();
    let ddb = lock_table(&aws).await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let lock = lock_with(&ddb, Duration::from_secs(60));
        tasks.push(tokio::spawn(async move {
            lock.acquire(&format!("deploy-{i}"), &format!("arn:ci/{i}"), "v1.2.0")
                .await
        }));
    }
    let mut winners = Vec::new();
    let mut held_by = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(h) => winners.push(h.deployment),
            Err(LockError::Held { holder, .. }) => held_by.push(holder.deployment),
            Err(other) => panic!("unexpected: {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    assert_eq!(held_by.len(), 9);
    assert!(held_by.iter().all(|d| *d == winners[0]), "{held_by:?}");
    let holder = lock_with(&ddb, Duration::from_secs(60))
        .holder()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(holder.deployment, winners[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_lease_is_taken_over_and_the_old_owner_loses_it() {
    let aws = LocalAws::start();
    let ddb = lock_table(&aws).await;
    let lock = lock_with(&ddb, Duration::from_secs(1));
    lock.acquire("old", "arn:ci/old", "v1.1.0").await.unwrap();
    let err = lock
        .acquire("new", "arn:ci/new", "v1.2.0")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LockError::Held { .. }), "{msg}");
    assert!(
        msg.contains("locked by deployment old of v1.1.0 by arn:ci/old"),
        "{msg}"
    );
    assert!(msg.contains("bluegreen unlock -e prod"), "{msg}");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let taken = lock.acquire("new", "arn:ci/new", "v1.2.0").await.unwrap();
    assert_eq!(taken.deployment, "new");
    // The old owner finds out at its next heartbeat, and cannot release what it lost.
    assert!(matches!(
        lock.heartbeat("old").await,
        Err(LockError::NotOwner { holder: Some(Holder { ref deployment, .. }), .. }) if deployment == "new"
    ));
    assert!(matches!(
        lock.release("old").await,
        Err(LockError::NotOwner { .. })
    ));
    lock.release("new").await.unwrap();
    assert_eq!(lock.holder().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_by_a_non_owner_is_refused_and_changes_nothing() {
    let aws = LocalAws::start();
    let ddb = lock_table(&aws).await;
    let lock = lock_with(&ddb, Duration::from_secs(60));
    let held = lock.acquire("mine", "arn:ci/me", "v1.2.0").await.unwrap();
    let err = lock.release("yours").await.unwrap_err();
    assert!(
        err.to_string().starts_with(
            "deployment yours does not hold the lock of prod (holder: deployment mine"
        ),
        "{err}"
    );
    assert_eq!(lock.holder().await.unwrap(), Some(held));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_extends_the_lease_and_the_holder_may_resume() {
    let aws = LocalAws::start();
    let ddb = lock_table(&aws).await;
    let lock = lock_with(&ddb, Duration::from_secs(2));
    let first = lock.acquire("d1", "arn:ci/1", "v1.2.0").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let extended = lock.heartbeat("d1").await.unwrap();
    assert!(
        extended > first.expires_ms,
        "{extended} <= {}",
        first.expires_ms
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Past the first lease but within the extended one: still held.
    assert!(matches!(
        lock.acquire("d2", "arn:ci/2", "v1.3.0").await,
        Err(LockError::Held { .. })
    ));
    // The same deployment resuming after a crash takes its own lock again.
    lock.acquire("d1", "arn:ci/1", "v1.2.0").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_unlock_says_who_held_it() {
    let aws = LocalAws::start();
    let ddb = lock_table(&aws).await;
    let lock = lock_with(&ddb, Duration::from_secs(60));
    assert_eq!(lock.force_unlock().await.unwrap(), None);
    lock.acquire("stuck", "arn:ci/dead-runner", "v1.2.0")
        .await
        .unwrap();
    let was = lock.force_unlock().await.unwrap().unwrap();
    assert_eq!(was.deployment, "stuck");
    assert_eq!(was.owner, "arn:ci/dead-runner");
    assert_eq!(lock.holder().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_keeps_one_record_per_deployment_newest_first() {
    let aws = LocalAws::start();
    let ddb = lock_table(&aws).await;
    let journal = Journal::new(ddb.clone(), TABLE, REGION, "prod");
    let other_env = Journal::new(ddb, TABLE, REGION, "preprod");
    let mut ids = Vec::new();
    for (i, version) in ["v1.0.0", "v1.1.0", "v1.2.0"].iter().enumerate() {
        let id = format!("20261124T07000{i}Z-abc{i}");
        let mut regions = BTreeMap::new();
        regions.insert(
            "us-east-1".to_owned(),
            RegionRecord {
                phase: RegionPhase::Created,
                previous_task_definition: Some(format!("arn:td/hello:{i}")),
                previous_colour: Some("blue".into()),
                ..Default::default()
            },
        );
        journal
            .write(&Record {
                id: id.clone(),
                env: "prod".into(),
                kind: Default::default(),
                version: (*version).into(),
                digest: Some(format!("sha256:{i:064}")),
                caller: "arn:ci".into(),
                started_ms: lock::now_ms(),
                ended_ms: None,
                phase: Phase::Starting,
                outcome: None,
                message: None,
                regions,
            })
            .await
            .unwrap();
        ids.push(id);
    }
    // Every phase change rewrites the record.
    let mut last = journal.get(&ids[2]).await.unwrap().unwrap();
    last.phase = Phase::Promoted;
    last.outcome = Some(Outcome::Promoted);
    last.regions.get_mut("us-east-1").unwrap().weight = 100;
    journal.write(&last).await.unwrap();

    let history = journal.history(10).await.unwrap();
    let versions: Vec<_> = history.iter().map(|r| r.version.as_str()).collect();
    assert_eq!(versions, ["v1.2.0", "v1.1.0", "v1.0.0"]);
    assert_eq!(history[0], last);
    assert_eq!(journal.history(1).await.unwrap().len(), 1);
    assert!(other_env.history(10).await.unwrap().is_empty());
    assert_eq!(journal.get("no-such-id").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_in_the_wrong_account_is_refused_and_assume_role_reaches_the_right_one() {
    let aws = LocalAws::start();
    let base = aws.sdk(REGION).await;
    let me = sts::whoami(&base).await.unwrap();
    let err = sts::expect_account(&me, ACCOUNT_B, "prod").unwrap_err();
    assert!(matches!(err, IdentityError::WrongAccount { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("belong to account {}", me.account)),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("deploys to account {ACCOUNT_B}")),
        "{msg}"
    );

    let deployment = lock::new_deployment_id();
    let role = format!("arn:aws:iam::{ACCOUNT_B}:role/bluegreen-deploy-prod");
    let assumed =
        bluegreen::aws::assume_role(&base, &role, &format!("bluegreen-{deployment}")).await;
    let who = sts::whoami(&assumed).await.unwrap();
    sts::expect_account(&who, ACCOUNT_B, "prod").unwrap();
    assert!(
        who.arn.ends_with(&format!("/bluegreen-{deployment}")),
        "the session name carries the deployment id: {}",
        who.arn
    );
}

#[test]
fn deployment_ids_sort_by_start_time_and_are_unique() {
    let a = lock::new_deployment_id();
    std::thread::sleep(Duration::from_millis(1100));
    let b = lock::new_deployment_id();
    assert!(a < b, "{a} !< {b}");
    assert_ne!(lock::new_deployment_id(), lock::new_deployment_id());
    assert_eq!(
        bluegreen::aws::session_name("bluegreen/20261124T071700Z 3f"),
        "bluegreen-20261124T071700Z-3f"
    );
}
