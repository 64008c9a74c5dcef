//! The fault matrix: the CLI killed at every phase, AWS errors injected into every mutating
//! call, AWS unreachable mid-promote, and a registry serving the wrong bytes. After each, the
//! invariants of rollout.md hold.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// Three weight steps and one-second bakes: every phase lasts long enough to be killed in.
const STRATEGY: &str = "steps = [10, 50, 100]\nbake = \"1s\"\nfinal_bake = \"1s\"\npoll = \"100ms\"\nready_timeout = \"30s\"\nscan_threshold = \"CRITICAL\"";

/// Every production and test listener forwards to exactly two target groups, weights summing
/// to 100: true at every instant, including right after a crash.
async fn assert_weights_whole(prod: &Prod, when: &str) {
    let state = prod.state().await;
    for r in PROD_REGIONS {
        for w in listener_weights(&state, r) {
            assert!(
                w.len() == 2 && w.iter().sum::<i64>() == 100,
                "{when}: {r} has a listener forwarding {w:?}"
            );
        }
    }
}

/// `promote v1.2.0` with three attempts per AWS call: (exit code, stderr).
fn promote_retrying(prod: &Prod) -> (Option<i32>, String) {
    let out = prod
        .command(&["promote", "v1.2.0"])
        .env("BLUEGREEN_AWS_MAX_ATTEMPTS", "3")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `promote v1.2.0` until it runs, waiting out the dead run's lease (exit 4) first.
fn promote_when_unlocked(prod: &Prod) -> (i32, String, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, out, err) = prod.run(&["promote", "v1.2.0"]);
        if code == 4 && err.contains("is locked by deployment") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        return (code, out, err);
    }
}

/// Kills `promote v1.2.0` with SIGKILL once it prints `marker`, then: `rollback` restores
/// v1.1.0 everywhere; killed again at the same point, `promote` again finishes v1.2.0.
async fn killed_at(marker: &str) {
    let prod = Prod::start(STRATEGY, "").await;

    let (mut child, _) = prod.spawn_until(&["promote", "v1.2.0"], marker, &[]);
    signal(&child, "KILL");
    child.wait().unwrap();
    assert_weights_whole(&prod, &format!("killed at {marker:?}")).await;
    let (code, out, err) = prod.run(&["rollback"]);
    assert_eq!(
        code, 0,
        "rollback after a kill at {marker:?}:\n{out}\n{err}"
    );
    prod.assert_everywhere("v1.1.0").await;
    assert_eq!(prod.journal_latest().await["lock"], Value::Null, "{err}");

    let (mut child, _) = prod.spawn_until(&["promote", "v1.2.0"], marker, &[]);
    signal(&child, "KILL");
    child.wait().unwrap();
    assert_weights_whole(&prod, &format!("killed again at {marker:?}")).await;
    let (code, out, err) = promote_when_unlocked(&prod);
    assert_eq!(
        code, 0,
        "promote again after a kill at {marker:?}:\n{out}\n{err}"
    );
    prod.assert_everywhere("v1.2.0").await;
    let j = prod.journal_latest().await;
    assert_eq!(j["outcome"], "promoted", "{err}");
    assert_eq!(j["lock"], Value::Null, "{err}");
}

macro_rules! kill_matrix {
    ($($name:ident: $marker:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            killed_at($marker).await;
        }
    )*};
}

kill_matrix! {
    sigkill_during_copy: "copy: hello@";
    sigkill_after_the_task_set_is_created: "[us-east-1] task-set: created";
    sigkill_while_waiting_for_ready: "[us-east-1] ready: task set";
    sigkill_on_test_traffic: "[us-east-1] test-traffic:";
    sigkill_at_the_10_percent_step: "[us-east-1] bake: 10%";
    sigkill_at_the_50_percent_step: "[us-east-1] bake: 50%";
    sigkill_in_the_final_bake: "[us-east-1] final-bake: 100%";
    sigkill_mid_shift_in_wave_two: "[eu-west-1] bake: 50%";
    sigkill_during_cleanup: "[us-east-1] cleanup:";
}

/// SIGKILL while a weight change is in flight: AWS has the ModifyListener of the 10% step (the
/// stand-in holds it 1.5 s, then applies it) but the CLI dies before it hears back or journals
/// the step. What follows decides from what AWS says, not from the journal's last step: first
/// `rollback` restores v1.1.0; then, killed the same way again, `promote` finishes v1.2.0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_a_weight_change_is_in_flight() {
    let prod = Prod::start(STRATEGY, "").await;
    for then in ["rollback", "promote"] {
        // The first weight step is held (the test route moves with ModifyRule, never held here).
        prod.aws
            .fault(serde_json::json!({"action": "ModifyListener", "region": "us-east-1", "delay_ms": 1500, "skip": 0, "times": 1}))
            .await;
        let (since, _) = prod.aws.requests(0).await;
        let (mut child, _) =
            prod.spawn_until(&["promote", "v1.2.0"], "[us-east-1] test-traffic:", &[]);
        tokio::time::sleep(Duration::from_millis(500)).await;
        signal(&child, "KILL");
        let killed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        child.wait().unwrap();
        let held = eventually(
            "the held weight step to land",
            Duration::from_secs(10),
            || async {
                let (_, log) = prod.aws.requests(since).await;
                log.into_iter().find(|e| {
                    e["action"] == "ModifyListener"
                        && e["delayed_ms"] == 1500.0
                        && e["done"].is_f64()
                })
            },
        )
        .await;
        assert!(
            held["t"].as_f64().unwrap() < killed
                && killed < held["done"].as_f64().unwrap()
                && held["status"] == 200,
            "the kill did not land while the step was in flight: {held} (killed at {killed})"
        );
        // AWS applied the step the CLI never heard back about.
        let elb = aws_sdk_elasticloadbalancingv2::Client::new(
            &prod.aws.sdk_as(ACCOUNT_B, "us-east-1").await,
        );
        let mut weights = forward_weights(&listener_on(&elb, 18000).await);
        weights.sort_unstable();
        assert_eq!(weights, [10, 90], "the held step did not land");
        assert_weights_whole(&prod, &format!("after a kill mid-step, before {then}")).await;
        if then == "rollback" {
            let (code, out, err) = prod.run(&["rollback"]);
            assert_eq!(code, 0, "{out}{err}");
            prod.assert_everywhere("v1.1.0").await;
        } else {
            let (code, out, err) = promote_when_unlocked(&prod);
            assert_eq!(code, 0, "{out}{err}");
            prod.assert_everywhere("v1.2.0").await;
        }
        assert_eq!(prod.journal_latest().await["lock"], Value::Null);
    }
}

/// AWS fails `action` in `region` twice with throttling and, with three attempts allowed, the
/// promote goes through; then it fails it three times with 500s and the deployment is rolled
/// back everywhere, named by call and region.
async fn injected(action: &str, region: &str, skip: u32) {
    let prod = Prod::start(STRATEGY, "").await;

    // Throttled twice, third attempt lands.
    prod.aws
        .fault(serde_json::json!({"action": action, "region": region, "error": "throttle", "times": 2, "skip": skip}))
        .await;
    let (since, _) = prod.aws.requests(0).await;
    let (code, err) = promote_retrying(&prod);
    assert_eq!(code, Some(0), "{action} throttled twice:\n{err}");
    let (_, log) = prod.aws.requests(since).await;
    let tries: Vec<&Value> = log
        .iter()
        .filter(|e| e["action"] == action && e["region"] == region)
        .collect();
    let first = tries
        .iter()
        .position(|e| e["injected"] == "throttle")
        .unwrap_or_else(|| panic!("{action}: never throttled: {tries:?}"));
    assert!(
        tries.len() >= first + 3
            && tries[first + 1]["injected"] == "throttle"
            && tries[first + 2]["status"] == 200,
        "{action}: not retried to success: {tries:?}"
    );
    // Backoff: the retries are spaced, not fired back to back.
    let gap = tries[first + 2]["t"].as_f64().unwrap() - tries[first]["t"].as_f64().unwrap();
    assert!(gap > 0.05, "{action}: retried within {gap:.3}s: no backoff");
    prod.assert_everywhere("v1.2.0").await;
    let (code, out, err) = prod.run(&["rollback"]);
    assert_eq!(code, 0, "{out}{err}");
    prod.assert_everywhere("v1.1.0").await;

    // 500s until the retries give up.
    prod.aws
        .fault(serde_json::json!({"action": action, "region": region, "error": "internal", "times": 3, "skip": skip}))
        .await;
    let (code, err) = promote_retrying(&prod);
    assert_eq!(
        code,
        Some(3),
        "{action} failing: exit 3, failed and rolled back:\n{err}"
    );
    assert!(
        err.contains(&format!("error: {region}: {action}"))
            && err.contains(&format!("in {region} failed: InternalFailure")),
        "the error names the call and region:\n{err}"
    );
    assert_weights_whole(&prod, &format!("after {action} gave up")).await;
    prod.assert_everywhere("v1.1.0").await;
    let j = prod.journal_latest().await;
    assert_eq!(j["outcome"], "rolled-back", "{err}");
    assert_eq!(j["lock"], Value::Null, "{err}");
}

macro_rules! fault_matrix {
    ($($name:ident: $action:expr, $region:expr, $skip:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            injected($action, $region, $skip).await;
        }
    )*};
}

fault_matrix! {
    register_task_definition_failing_in_wave_two: "RegisterTaskDefinition", "eu-west-1", 0;
    create_task_set_failing_in_wave_two: "CreateTaskSet", "eu-west-1", 0;
    test_route_change_failing_in_wave_two: "ModifyRule", "eu-west-1", 0;
    weight_step_failing_in_wave_two: "ModifyListener", "eu-west-1", 1;
    update_service_primary_task_set_failing_in_wave_two: "UpdateServicePrimaryTaskSet", "ap-southeast-2", 0;
}

/// Attempts of one journal write before it gives up, with `promote_retrying`'s three attempts
/// per call: the first try and one per pause of `WRITE_BACKOFF`.
const JOURNAL_ATTEMPTS: usize = 3 * (1 + bluegreen::aws::journal::WRITE_BACKOFF.len());

/// The PutItem calls one clean `promote v1.2.0` makes (the lock, then every journal write),
/// counted from the request log; the promote is then rolled back so the next starts the same.
async fn put_items_of_a_promote(prod: &Prod) -> usize {
    let (since, _) = prod.aws.requests(0).await;
    let (code, err) = promote_retrying(prod);
    assert_eq!(code, Some(0), "{err}");
    let (_, log) = prod.aws.requests(since).await;
    let n = log.iter().filter(|e| e["action"] == "PutItem").count();
    let (code, out, err) = prod.run(&["rollback"]);
    assert_eq!(code, 0, "{out}{err}");
    n
}

/// A journal write mid-shift fails once (every SDK attempt of it): it is written again after a
/// pause, and the promote finishes; no phase is acted on before its record is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_write_failing_once_mid_shift_is_retried_and_the_promote_finishes() {
    let prod = Prod::start(STRATEGY, "").await;
    // The first PutItem is the lock; the sixth a journal write in wave one.
    prod.aws
        .fault(serde_json::json!({"action": "PutItem", "region": "us-east-1", "error": "internal", "times": 3, "skip": 5}))
        .await;
    let (since, _) = prod.aws.requests(0).await;
    let (code, err) = promote_retrying(&prod);
    assert_eq!(code, Some(0), "{err}");
    let (_, log) = prod.aws.requests(since).await;
    let failed = log
        .iter()
        .filter(|e| e["action"] == "PutItem" && e["injected"] == "internal")
        .count();
    assert_eq!(failed, 3, "the injected failures were not all met");
    prod.assert_everywhere("v1.2.0").await;
    let j = prod.journal_latest().await;
    assert_eq!(j["outcome"], "promoted", "{err}");
    assert_eq!(j["lock"], Value::Null, "{err}");
}

/// A journal write mid-shift fails for good: the region stops (nothing proceeds on a journal
/// that does not say where it is), every touched region is rolled back, and the rollback is
/// journaled once DynamoDB answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_write_failing_for_good_mid_shift_rolls_back() {
    let prod = Prod::start(STRATEGY, "").await;
    prod.aws
        .fault(serde_json::json!({"action": "PutItem", "region": "us-east-1", "error": "internal", "times": JOURNAL_ATTEMPTS, "skip": 5}))
        .await;
    let (code, err) = promote_retrying(&prod);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("the journal could not record")
            && err.contains("PutItem (journal) in us-east-1 failed: InternalFailure"),
        "{err}"
    );
    assert_weights_whole(&prod, "after the journal failed").await;
    prod.assert_everywhere("v1.1.0").await;
    let j = prod.journal_latest().await;
    assert_eq!(j["outcome"], "rolled-back", "{err}");
    assert_eq!(j["lock"], Value::Null, "{err}");
}

/// Regression (issue 13): the final `promoted` journal write used to be dropped, leaving a good
/// release recorded as unfinished, and promoting it again rolled it back first. Now the promote
/// says what AWS holds and what the journal missed, exits 1 and keeps the lock; `continue`
/// records it without touching AWS; and a later `promote` of the same version sees from AWS that
/// it finished and records it too, rather than rolling it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_final_journal_write_failing_keeps_the_lock_and_continue_records_it() {
    let prod = Prod::start(STRATEGY, "").await;
    let puts = put_items_of_a_promote(&prod).await;
    for then in ["continue", "promote"] {
        prod.aws
            .fault(serde_json::json!({"action": "PutItem", "region": "us-east-1", "error": "internal", "times": JOURNAL_ATTEMPTS, "skip": puts - 1}))
            .await;
        let (code, err) = promote_retrying(&prod);
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains(
                "v1.2.0 serves 100% as primary in every region, but the journal could not record"
            ) && err.contains("PutItem (journal) in us-east-1 failed: InternalFailure")
                && err.contains("run `bluegreen continue -e prod` to record it (lock kept)"),
            "{err}"
        );
        prod.assert_everywhere("v1.2.0").await;
        let j = prod.journal_latest().await;
        assert_eq!(j["outcome"], Value::Null, "{j}");
        assert_ne!(j["lock"], Value::Null, "the lock was released: {j}");

        let (since, _) = prod.aws.requests(0).await;
        let (code, out, err) = if then == "continue" {
            prod.run(&["continue"])
        } else {
            // The lock is kept for a human; this one decided the run is dead.
            let (code, out, err) = prod.run(&["unlock", "--yes"]);
            assert_eq!(code, 0, "{out}{err}");
            prod.run(&["promote", "v1.2.0"])
        };
        assert_eq!(code, 0, "{then}: {out}{err}");
        assert!(err.contains("recording it as promoted"), "{then}: {err}");
        let changed: Vec<String> = prod
            .aws
            .mutations_since(since)
            .await
            .into_iter()
            .filter(|m| !m.starts_with("PutItem@") && !m.starts_with("DeleteItem@"))
            .collect();
        assert!(changed.is_empty(), "{then} changed AWS: {changed:?}");
        prod.assert_everywhere("v1.2.0").await;
        let j = prod.journal_latest().await;
        assert_eq!(j["outcome"], "promoted", "{then}: {j}");
        assert_eq!(j["lock"], Value::Null, "{then}: {j}");
        let (code, out, err) = prod.run(&["rollback"]);
        assert_eq!(code, 0, "{out}{err}");
    }
}

/// `bluegreen rollback` itself cannot finish (production refuses to move back in us-east-1): it
/// exits 1 keeping the lock, like a promote whose rollback failed; the next `rollback` takes it
/// over and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_command_that_cannot_finish_keeps_the_lock() {
    let prod = Prod::start(STRATEGY, "").await;
    let (code, err) = promote_retrying(&prod);
    assert_eq!(code, Some(0), "{err}");
    prod.aws
        .fault(serde_json::json!({"action": "ModifyListener", "region": "us-east-1", "error": "internal", "times": 1}))
        .await;
    let (code, out, err) = prod.run(&["rollback"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("rollback did not finish in us-east-1")
            && err.contains("ModifyListener in us-east-1 failed")
            && err.contains("(lock kept)"),
        "{err}"
    );
    let j = prod.journal_latest().await;
    assert_eq!(j["outcome"], "rollback-failed", "{j}");
    assert_ne!(j["lock"], Value::Null, "the lock was released: {j}");
    // Another promote is refused while the environment needs a human.
    let (code, _, err) = prod.run(&["promote", "v1.2.0"]);
    assert_eq!(code, 4, "{err}");
    let (code, out, err) = prod.run(&["rollback"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("taking the lock over"), "{err}");
    prod.assert_everywhere("v1.1.0").await;
    let j = prod.journal_latest().await;
    assert_eq!(j["outcome"], "rolled-back", "{j}");
    assert_eq!(j["lock"], Value::Null, "{j}");
}

/// Regression (issue 13): a journal that names a region the environment file no longer has
/// panicked on the rollback path. Now `rollback` refuses naming the region and both ways on,
/// changing nothing; `--region` rolls back the others and keeps the lock for the missing one;
/// with the region restored, `rollback` finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_region_missing_from_the_file_is_named_not_a_panic() {
    let prod = Prod::start(STRATEGY, "").await;
    let (code, err) = promote_retrying(&prod);
    assert_eq!(code, Some(0), "{err}");
    let path = prod.config_dir.join("prod/bluegreen.toml");
    let original = std::fs::read_to_string(&path).unwrap();
    let start = original.find("[regions.ap-southeast-2]").unwrap();
    let end = start + original[start..].find("\n\n").unwrap() + 2;
    let without =
        format!("{}{}", &original[..start], &original[end..]).replace(", \"ap-southeast-2\"]", "]");
    std::fs::write(&path, &without).unwrap();

    let before = prod.state().await;
    let (since, _) = prod.aws.requests(0).await;
    let (code, out, err) = prod.run(&["rollback"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("changed ap-southeast-2, which the environment file for prod no longer has")
            && err.contains("restore its [regions.ap-southeast-2] table")
            && err.contains("`bluegreen rollback -e prod --region eu-west-1 --region us-east-1`"),
        "{err}"
    );
    assert!(prod.aws.mutations_since(since).await.is_empty());
    assert_eq!(before, prod.state().await);

    let (code, out, err) =
        prod.run(&["rollback", "--region", "us-east-1", "--region", "eu-west-1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("ap-southeast-2: not rolled back (left out with --region)"),
        "{out}"
    );
    assert_eq!(
        prod.versions("us-east-1", 10)
            .await
            .keys()
            .collect::<Vec<_>>(),
        ["v1.1.0"]
    );
    assert_eq!(
        prod.versions("ap-southeast-2", 10)
            .await
            .keys()
            .collect::<Vec<_>>(),
        ["v1.2.0"]
    );
    assert_ne!(prod.journal_latest().await["lock"], Value::Null);

    std::fs::write(&path, &original).unwrap();
    let (code, out, err) = prod.run(&["rollback"]);
    assert_eq!(code, 0, "{out}{err}");
    prod.assert_everywhere("v1.1.0").await;
    let j = prod.journal_latest().await;
    assert_eq!(j["outcome"], "rolled-back", "{j}");
    assert_eq!(j["lock"], Value::Null, "{j}");
}

/// Removing the previous task set fails after every wave is done: the release stays live, the
/// promote says so and exits 1 (not 0: promote promises one task set per region), and promoting
/// the same version again removes the leftover.
async fn cleanup_failing(action: &str) {
    let prod = Prod::start(STRATEGY, "").await;
    prod.aws
        .fault(serde_json::json!({"action": action, "region": "ap-southeast-2", "error": "internal", "times": 3}))
        .await;
    let (code, err) = promote_retrying(&prod);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("{action} in ap-southeast-2 failed"))
            && err.contains("v1.2.0 serves 100% everywhere")
            && err.contains("run `bluegreen promote v1.2.0 -e prod` again"),
        "{err}"
    );
    for r in PROD_REGIONS {
        assert_eq!(
            prod.versions(r, 10).await.keys().collect::<Vec<_>>(),
            vec!["v1.2.0"]
        );
    }
    assert_weights_whole(&prod, "after cleanup failed").await;
    let (code, out, err) = prod.run(&["promote", "v1.2.0"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("[ap-southeast-2] cleanup: removed task set"),
        "{err}"
    );
    prod.assert_everywhere("v1.2.0").await;
    assert_eq!(prod.journal_latest().await["lock"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_the_previous_task_set_down_failing_in_cleanup() {
    cleanup_failing("UpdateTaskSet").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_previous_task_set_failing_in_cleanup() {
    cleanup_failing("DeleteTaskSet").await;
}

/// The rollback itself cannot finish: us-east-1's production listener refuses to move back (a
/// 500, twice: the promote's fast flip and the region's own rollback). The promote says which
/// call failed where and what to run, keeps the lock (the deployment is not over) and exits 1,
/// with the weights whole; `bluegreen rollback` then finishes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_that_cannot_finish_keeps_the_lock_and_rollback_finishes_it() {
    let prod = Prod::start(STRATEGY, "").await;
    let (mut child, reader) = prod.spawn_until(
        &["promote", "v1.2.0", "--bake", "60s"],
        "[us-east-1] bake: 10%",
        &[],
    );
    prod.aws
        .fault(serde_json::json!({"action": "ModifyListener", "region": "us-east-1", "error": "internal", "times": 2}))
        .await;
    prod.set_alarm("us-east-1", true, "5xx rate 9%").await;
    let status = child.wait().unwrap();
    let err = reader.join().unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("hello-us-east-1-5xx")
            && err.contains("the rollback did not finish in us-east-1")
            && err.contains("ModifyListener in us-east-1 failed: InternalFailure")
            && err.contains("; run `bluegreen rollback -e prod` (lock kept)"),
        "{err}"
    );
    assert_weights_whole(&prod, "after the rollback failed").await;
    let j = prod.journal_latest().await;
    assert_eq!(j["outcome"], "rollback-failed", "{err}");
    assert_ne!(j["lock"], Value::Null, "the lock was released: {j}");
    let (code, out, err) = prod.run(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("next: `bluegreen rollback -e prod`: the rollback of deployment"),
        "{out}"
    );

    let (code, out, err) = prod.run(&["rollback"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("taking the lock over"), "{err}");
    prod.assert_everywhere("v1.1.0").await;
    let j = prod.journal_latest().await;
    assert_eq!(j["outcome"], "rolled-back", "{j}");
    assert_eq!(j["lock"], Value::Null, "{j}");
}

/// The rollback puts production back but cannot remove the failed release's task set: the
/// promote exits 1 saying production is safe and what is left, and `rollback` removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_whose_cleanup_fails_says_production_is_back() {
    let prod = Prod::start(STRATEGY, "").await;
    prod.aws
        .fault(serde_json::json!({"action": "DeleteTaskSet", "region": "us-east-1", "error": "internal", "times": 1}))
        .await;
    let (code, out, err) = prod.run(&["promote", "v1.2.1"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("the rollback did not finish in us-east-1: production is back on blue (100%), but DeleteTaskSet in us-east-1 failed")
            && err.contains("run `bluegreen rollback -e prod`"),
        "{err}"
    );
    assert_eq!(
        prod.versions("us-east-1", 20)
            .await
            .keys()
            .collect::<Vec<_>>(),
        ["v1.1.0"],
        "{err}"
    );
    assert_weights_whole(&prod, "after the rollback's cleanup failed").await;
    let (code, out, err) = prod.run(&["rollback"]);
    assert_eq!(code, 0, "{out}{err}");
    prod.assert_everywhere("v1.1.0").await;
    assert_eq!(prod.journal_latest().await["lock"], Value::Null);
}

/// AWS stops answering at the 10% step (the stand-in's port closed and every connection cut,
/// state kept, as when AWS's endpoint is unreachable from the runner): the promote fails with a
/// clear error that says what to run, and once AWS answers again `rollback` restores v1.1.0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_unreachable_mid_promote_then_rollback_restores() {
    let prod = Prod::start(STRATEGY, "").await;
    let upstream = prod.aws.endpoint.trim_start_matches("http://").to_owned();
    let proxy = support::proxy::Proxy::start(&upstream);
    let url = proxy.url();
    let (mut child, reader) = prod.spawn_until(
        &["promote", "v1.2.0"],
        "[us-east-1] bake: 10%",
        &[("AWS_ENDPOINT_URL", url.as_str())],
    );
    proxy.stop();
    let status = child.wait().unwrap();
    let err = reader.join().unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("cannot reach the AWS endpoint"), "{err}");
    assert!(
        err.contains("bluegreen rollback -e prod"),
        "says what to run:\n{err}"
    );
    eprintln!("----- what the operator saw -----\n{err}");
    proxy.resume();
    let out = prod
        .command(&["rollback"])
        .env("AWS_ENDPOINT_URL", &url)
        .output()
        .unwrap();
    let rb = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{rb}");
    prod.assert_everywhere("v1.1.0").await;
    assert_eq!(prod.journal_latest().await["lock"], Value::Null);
}

/// The source registry serves a layer whose bytes do not match its digest: the promote fails in
/// the copy, naming the source and the blob, and nothing is registered anywhere: no image in any
/// target ECR, no task definition, no task set, no weight changed; the lock is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_layer_in_the_source_fails_the_copy_and_registers_nothing() {
    use bluegreen::aws::registry::{self, Registry};
    let prod = Prod::start(STRATEGY, "").await;
    let cfg = prod.aws.sdk_as(ACCOUNT_A, "us-east-1").await;
    let source = Registry::from_ecr(
        &aws_sdk_ecr::Client::new(&cfg),
        "us-east-1",
        prod.aws.http.clone(),
    )
    .await
    .unwrap();
    let image = registry::resolve(&source, "hello", "v1.2.0").await.unwrap();
    let doc: Value = serde_json::from_slice(&image.top.bytes).unwrap();
    let layer = doc["layers"][0]["digest"].as_str().unwrap().to_owned();
    let hex = layer.trim_start_matches("sha256:");
    let path = prod.aws.dir.join(format!(
        "registries/{ACCOUNT_A}-us-east-1/data/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    std::fs::write(&path, vec![0u8; len]).unwrap();

    let before = prod.state().await;
    let (since, _) = prod.aws.requests(0).await;
    let (code, out, err) = prod.run(&["promote", "v1.2.0"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!("{} served blob hello@{layer}", source.host()))
            && err.contains("refusing to copy a corrupted or substituted image")
            && err.contains("nothing was deployed"),
        "{err}"
    );
    let after = prod.state().await;
    assert_eq!(
        before["regions"], after["regions"],
        "a failed copy changed a region"
    );
    let registered: Vec<String> = prod
        .aws
        .mutations_since(since)
        .await
        .into_iter()
        .filter(|m| {
            !m.starts_with("PutItem@")
                && !m.starts_with("UpdateItem@")
                && !m.starts_with("DeleteItem@")
        })
        .collect();
    assert!(registered.is_empty(), "{registered:?}");
    assert_eq!(prod.journal_latest().await["lock"], Value::Null);
    prod.assert_everywhere("v1.1.0").await;
}

/// The lock's heartbeat fails once (three attempts of UpdateItem, all 500s): the deployment says
/// so, renews at the next beat (the lease outlives two misses) and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_lock_heartbeat_is_renewed_at_the_next_beat() {
    let prod = Prod::start(STRATEGY, "").await;
    prod.aws
        .fault(serde_json::json!({"action": "UpdateItem", "region": "us-east-1", "error": "internal", "times": 3}))
        .await;
    let (code, err) = promote_retrying(&prod);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("heartbeat failed, will retry") && err.contains("in us-east-1 failed"),
        "{err}"
    );
    prod.assert_everywhere("v1.2.0").await;
    assert_eq!(prod.journal_latest().await["lock"], Value::Null);
}

/// Taking the lock fails (DynamoDB 500s until the retries give up): exit 1 naming the call and
/// region, and nothing else was called that changes anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taking_the_lock_failing_changes_nothing() {
    let prod = Prod::start(STRATEGY, "").await;
    prod.aws
        .fault(serde_json::json!({"action": "PutItem", "region": "us-east-1", "error": "internal", "times": 3}))
        .await;
    let before = prod.state().await;
    let (since, _) = prod.aws.requests(0).await;
    let (code, err) = promote_retrying(&prod);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("PutItem (acquire lock) in us-east-1 failed: InternalFailure"),
        "{err}"
    );
    let (_, log) = prod.aws.requests(since).await;
    let reached: Vec<&Value> = log
        .iter()
        .filter(|e| is_mutating(e["action"].as_str().unwrap()) && e.get("injected").is_none())
        .collect();
    assert!(reached.is_empty(), "{reached:?}");
    assert_eq!(before, prod.state().await);
}

/// The journal cannot be written during an incident's `rollback` (DynamoDB refuses every
/// PutItem after the lock's): production still goes back everywhere first, the command says the
/// journal missed it and keeps the lock (exit 1), and the next `rollback` records it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_goes_through_when_the_journal_cannot_be_written() {
    let prod = Prod::start(STRATEGY, "").await;
    let (code, err) = promote_retrying(&prod);
    assert_eq!(code, Some(0), "{err}");
    // `prod.run` makes one attempt per call: the rollback's record mark, its three regions and
    // its end, each tried 1 + WRITE_BACKOFF times.
    let writes = 5 * (1 + bluegreen::aws::journal::WRITE_BACKOFF.len());
    prod.aws
        .fault(serde_json::json!({"action": "PutItem", "region": "us-east-1", "error": "internal", "times": writes, "skip": 1}))
        .await;
    let (code, out, err) = prod.run(&["rollback"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("but the journal could not record it")
            && err.contains("PutItem (journal) in us-east-1 failed: InternalFailure")
            && err.contains("(lock kept)"),
        "{err}"
    );
    prod.assert_everywhere("v1.1.0").await;
    assert_weights_whole(&prod, "after a rollback the journal missed").await;
    assert_ne!(prod.journal_latest().await["lock"], Value::Null);

    let (code, out, err) = prod.run(&["rollback"]);
    assert_eq!(code, 0, "{out}{err}");
    prod.assert_everywhere("v1.1.0").await;
    let j = prod.journal_latest().await;
    assert_eq!(j["outcome"], "rolled-back", "{j}");
    assert_eq!(j["lock"], Value::Null, "{j}");
}
