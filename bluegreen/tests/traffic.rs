//! Nothing lost under load: continuous traffic against every region's ALB address during a full
//! promote and then a rollback. Zero failed requests, and the version mix the clients see follows
//! the weight steps (each answer is attributed to the weight in force when it was served).

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const STRATEGY: &str = "steps = [10, 50, 100]\nbake = \"4s\"\nfinal_bake = \"1s\"\npoll = \"200ms\"\nready_timeout = \"30s\"";

/// (sent, received, green weight): the reading reflects some moment between sent and received.
type Timeline = Arc<Mutex<Vec<(Instant, Instant, i32)>>>;

/// (region, request start, end, the version that answered or the failure).
type Answers = Arc<Mutex<Vec<(&'static str, Instant, Instant, Result<String, String>)>>>;

/// Green's production weight in `region`, sampled every 25 ms until `stop`.
fn watch_weights(
    prod: &Prod,
    region: &str,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Timeline, tokio::task::JoinHandle<()>) {
    let timeline: Timeline = Arc::new(Mutex::new(Vec::new()));
    let t = timeline.clone();
    let region = region.to_owned();
    let cfg = futures_block(prod.aws.sdk_as(ACCOUNT_B, &region));
    let handle = tokio::spawn(async move {
        let elb = aws_sdk_elasticloadbalancingv2::Client::new(&cfg);
        let prod_listener = listener_on(&elb, 18000)
            .await
            .listener_arn()
            .unwrap()
            .to_owned();
        let tgs = elb.describe_target_groups().send().await.unwrap();
        let green = tgs
            .target_groups()
            .iter()
            .find(|g| g.target_group_name().unwrap().ends_with("-green"))
            .unwrap()
            .target_group_arn()
            .unwrap()
            .to_owned();
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let sent = Instant::now();
            if let Ok(out) = elb
                .describe_listeners()
                .listener_arns(&prod_listener)
                .send()
                .await
            {
                let w = out.listeners()[0].default_actions()[0]
                    .forward_config()
                    .map(|f| {
                        f.target_groups()
                            .iter()
                            .find(|g| g.target_group_arn() == Some(green.as_str()))
                            .and_then(|g| g.weight())
                            .unwrap_or(0)
                    })
                    .unwrap_or(0);
                t.lock().unwrap().push((sent, Instant::now(), w));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });
    (timeline, handle)
}

fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

/// The weight in force for a request: a reading completed before it started and one begun after
/// it ended must agree (answers that may straddle a change are not attributed).
fn weight_at(timeline: &[(Instant, Instant, i32)], start: Instant, end: Instant) -> Option<i32> {
    let before = timeline.iter().rev().find(|(_, recv, _)| *recv <= start)?.2;
    let after = timeline.iter().find(|(sent, _, _)| *sent >= end)?.2;
    (before == after).then_some(before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn continuous_traffic_during_promote_and_rollback_loses_nothing_and_follows_the_weights() {
    let prod = Arc::new(Prod::start(STRATEGY, "").await);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut watchers = BTreeMap::new();
    for r in PROD_REGIONS {
        watchers.insert(r, watch_weights(&prod, r, stop.clone()));
    }
    // 4 clients per region, each a loop of requests on a keep-alive connection pool.
    let answers: Answers = Arc::new(Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for r in PROD_REGIONS {
        for _ in 0..4 {
            let (stop, answers, http) = (stop.clone(), answers.clone(), prod.aws.http.clone());
            let url = format!("http://{}:18000/health", prod.dns[r]);
            clients.push(tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let start = Instant::now();
                    let got = match http.get(&url).timeout(Duration::from_secs(10)).send().await {
                        Ok(res) if res.status() == 200 => res
                            .json::<Value>()
                            .await
                            .map(|v| v["version"].as_str().unwrap_or("?").to_owned())
                            .map_err(|e| e.to_string()),
                        Ok(res) => Err(format!("HTTP {}", res.status())),
                        Err(e) => Err(e.to_string()),
                    };
                    answers
                        .lock()
                        .unwrap()
                        .push((r, start, Instant::now(), got));
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let p = prod.clone();
    let (code, _, err) = tokio::task::spawn_blocking(move || p.run(&["promote", "v1.2.0"]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let p = prod.clone();
    let (code, _, err) = tokio::task::spawn_blocking(move || p.run(&["rollback"]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let mut timelines = BTreeMap::new();
    for (r, (timeline, handle)) in watchers {
        handle.await.unwrap();
        timelines.insert(r, timeline.lock().unwrap().clone());
    }

    let answers = answers.lock().unwrap();
    let failed: Vec<_> = answers
        .iter()
        .filter(|a| a.3.is_err())
        .map(|a| format!("{} {:?}", a.0, a.3))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        answers.len(),
        &failed[..failed.len().min(5)]
    );

    // Per region and weight: the share of answers from the new release.
    let mut mix: BTreeMap<(&str, i32), (usize, usize)> = BTreeMap::new();
    for (r, start, end, got) in answers.iter() {
        if let Some(w) = weight_at(&timelines[r], *start, *end) {
            let e = mix.entry((r, w)).or_default();
            e.0 += 1;
            if got.as_deref() == Ok("v1.2.0") {
                e.1 += 1;
            }
        }
    }
    let mut report = Vec::new();
    for ((r, w), (n, new)) in &mix {
        let share = *new as f64 / *n as f64;
        report.push(format!(
            "{r} at {w}%: {new}/{n} = {:.1}% v1.2.0",
            share * 100.0
        ));
        match w {
            0 => assert_eq!(*new, 0, "{r}: v1.2.0 answered while green had 0%"),
            100 => assert_eq!(new, n, "{r}: the old release answered at 100% green"),
            10 if *n >= 100 => assert!((0.03..=0.20).contains(&share), "{r} at 10%: {share}"),
            50 if *n >= 100 => assert!((0.38..=0.62).contains(&share), "{r} at 50%: {share}"),
            _ => {}
        }
    }
    for r in PROD_REGIONS {
        for w in [10, 50] {
            assert!(
                mix.get(&(r, w)).is_some_and(|(n, _)| *n >= 100),
                "{r}: too few answers at {w}%: {report:?}"
            );
        }
    }
    eprintln!(
        "{} requests, 0 failed\n{}",
        answers.len(),
        report.join("\n")
    );
}
