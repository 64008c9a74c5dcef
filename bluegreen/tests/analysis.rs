//! The traffic analysis against the stand-in's ALB metrics (extension 15), under real load: a
//! release failing 5% of requests and one 300 ms slower are rolled back by it although target
//! health, alarms and the probe see nothing wrong; a good release passes every look; too little
//! traffic is inconclusive and the policy decides; `--analysis off` changes nothing else; with
//! `probe = "none"` no probe is sent and the analysis still judges.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use support::*;

/// One region, one step at 20% and then 100%, with the stand-in's 1-second metrics.
const STRATEGY: &str = "steps = [20, 100]\nbake = \"8s\"\nfinal_bake = \"2s\"\npoll = \"250ms\"\n\
    ready_timeout = \"30s\"\n\n[strategy.analysis]\nperiod = \"1s\"\nsettle = \"1s\"\n\
    min_requests = 30\nmax_extension = \"0s\"";

const REGION: &str = "us-east-1";

async fn one_region(strategy: &str) -> Prod {
    Prod::start_in(&[REGION], "[[\"us-east-1\"]]", strategy, "").await
}

/// Seeds `tag` in the source registry as a bad release of kind `mode` (tools/localaws/badapp.py).
async fn seed_bad(prod: &Prod, tag: &str, mode: &str) {
    prod.aws
        .seed(
            json!({"account": ACCOUNT_A, "region": "us-east-1", "repository": "hello",
                     "tag": tag, "argv": bad_release_argv(), "env": {"BAD_MODE": mode},
                     "layers": 2, "layer_size": 4096}),
        )
        .await;
}

/// Users: `workers` clients each sending GET / to production back to back until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    handles: Vec<tokio::task::JoinHandle<BTreeMap<u16, u64>>>,
}

impl Load {
    fn start(prod: &Prod, workers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let url = format!("http://{}:18000/", prod.dns[REGION]);
        let handles = (0..workers)
            .map(|_| {
                let (stop, url, http) = (stop.clone(), url.clone(), prod.aws.http.clone());
                tokio::spawn(async move {
                    let mut seen = BTreeMap::new();
                    while !stop.load(Ordering::SeqCst) {
                        let status = match http.get(&url).send().await {
                            Ok(r) => {
                                let s = r.status().as_u16();
                                let _ = r.bytes().await;
                                s
                            }
                            Err(_) => 0,
                        };
                        *seen.entry(status).or_insert(0) += 1;
                    }
                    seen
                })
            })
            .collect();
        Self { stop, handles }
    }

    /// Stops the users; answers by HTTP status (0: no answer).
    async fn stop(self) -> BTreeMap<u16, u64> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = BTreeMap::new();
        for h in self.handles {
            for (k, v) in h.await.unwrap() {
                *all.entry(k).or_insert(0) += v;
            }
        }
        all
    }
}

/// `bluegreen <args> -e prod` off the async workers (the load keeps running meanwhile).
async fn run(prod: &Prod, args: &[&str]) -> (i32, String, String) {
    run_with(prod, args, &[]).await
}

async fn run_with(prod: &Prod, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = prod.command(args);
    cmd.envs(env.iter().copied());
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run bluegreen"))
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The analysis events of a `--output json` run.
fn analysis_events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["phase"] == "analysis" && v["analysis"].is_object())
        .map(|v| v["analysis"].clone())
        .collect()
}

fn set_in_file(prod: &Prod, from: &str, to: &str) {
    let path = prod.config_dir.join("prod/bluegreen.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} not in the file:\n{text}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_failing_five_percent_of_requests_is_rolled_back_by_the_analysis() {
    let prod = one_region(STRATEGY).await;
    seed_bad(&prod, "v1.3.0", "errors").await;
    let load = Load::start(&prod, 6);
    let (code, out, err) = run(&prod, &["promote", "v1.3.0"]).await;
    let answers = load.stop().await;
    assert_eq!(code, 3, "stdout:\n{out}\nstderr:\n{err}");
    // The reason names the metric, with both colours' numbers side by side and the threshold.
    assert!(
        err.contains("traffic analysis failed at 20% on green"),
        "{err}"
    );
    // About 5% (the release fails each request with probability 0.05).
    let rate: f64 = err
        .split("error rate ")
        .nth(1)
        .and_then(|r| r.split('%').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no error rate in {err}"));
    assert!((1.0..=12.0).contains(&rate), "{rate}: {err}");
    assert!(err.contains("against 0.00%"), "{err}");
    assert!(err.contains("more than 0.5 allowed"), "{err}");
    assert!(err.contains("green ") && err.contains("| blue "), "{err}");
    // Nothing else saw it: health, alarms and the probe passed every poll.
    assert!(!err.contains("gate failed"), "{err}");
    prod.assert_everywhere("v1.1.0").await;
    // Users saw the release's errors only while it had its 20%.
    let errors = answers.get(&500).copied().unwrap_or(0);
    let total: u64 = answers.values().sum();
    assert!(
        errors > 0 && (errors as f64) < total as f64 * 0.02,
        "{answers:?}"
    );
    let j = prod.journal_latest().await;
    assert_eq!(j["outcome"], "rolled-back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_release_under_load_passes_every_look_and_history_keeps_the_comparison() {
    let strategy = "steps = [20, 40, 60, 80, 100]\nbake = \"5s\"\nfinal_bake = \"4s\"\n\
        poll = \"250ms\"\nready_timeout = \"30s\"\n\n[strategy.analysis]\nperiod = \"1s\"\n\
        settle = \"1s\"\nmin_requests = 30\nmax_extension = \"10s\"";
    let prod = one_region(strategy).await;
    let load = Load::start(&prod, 6);
    let summary = prod.aws.dir.join("step-summary.md");
    let (code, out, err) = run_with(
        &prod,
        &["promote", "v1.2.0", "--output", "json"],
        &[("GITHUB_STEP_SUMMARY", summary.to_str().unwrap())],
    )
    .await;
    let answers = load.stop().await;
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    // The step summary charts the rollout: share and both error rates per window.
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.contains("```mermaid\nxychart-beta"), "{md}");
    assert!(
        md.contains("title \"us-east-1: traffic on the new colour\"")
            && md.contains("title \"us-east-1: error rate, new then previous\""),
        "{md}"
    );
    assert!(md.contains("line [20, 20,"), "{md}");
    assert_eq!(
        answers.keys().collect::<Vec<_>>(),
        vec![&200],
        "{answers:?}"
    );
    let looks = analysis_events(&out);
    let verdicts: Vec<&str> = looks.iter().filter_map(|a| a["verdict"].as_str()).collect();
    assert!(
        !verdicts.contains(&"fail"),
        "a good release failed: {looks:?}"
    );
    let passed = verdicts.iter().filter(|v| **v == "pass").count();
    assert!(
        passed >= 20,
        "{passed} passing windows, want 20 or more: {verdicts:?}"
    );
    // Each event carries both colours' numbers.
    let last = looks.last().unwrap();
    assert_eq!(last["new_colour"], "green");
    assert!(last["new"]["requests"].as_u64().unwrap() >= 30, "{last}");
    assert!(last["previous"]["p99"].as_f64().is_some(), "{last}");
    // `history` keeps the final comparison.
    let (code, out, _) = run(&prod, &["history", "--output", "json"]).await;
    assert_eq!(code, 0);
    let history: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let kept = history["deployments"][0]["regions"][REGION]["analysis"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        kept.starts_with("green ") && kept.ends_with(": pass"),
        "{history}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_little_traffic_is_inconclusive_and_on_inconclusive_decides() {
    let strategy = "steps = [50, 100]\nbake = \"1s\"\nfinal_bake = \"1s\"\npoll = \"250ms\"\n\
        ready_timeout = \"30s\"\n\n[strategy.analysis]\nperiod = \"1s\"\nsettle = \"1s\"\n\
        min_requests = 1000\nmax_extension = \"2s\"\non_inconclusive = \"proceed\"";
    let prod = one_region(strategy).await;
    // No users: the gate's own probes are all the traffic there is.
    let (code, out, err) = run(&prod, &["promote", "v1.2.0"]).await;
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("not enough traffic to judge yet"), "{err}");
    assert!(err.contains("bake extended"), "{err}");
    assert!(
        err.contains("inconclusive at 50%") && err.contains("on_inconclusive = \"proceed\""),
        "{err}"
    );
    let (_, out, _) = run(&prod, &["history", "--output", "json"]).await;
    let history: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let kept = history["deployments"][0]["regions"][REGION]["analysis"].to_string();
    assert!(kept.contains("inconclusive"), "{history}");

    // The same with the other policy: a rollback that names it.
    set_in_file(
        &prod,
        "on_inconclusive = \"proceed\"",
        "on_inconclusive = \"rollback\"",
    );
    let (code, out, err) = run(&prod, &["promote", "v1.1.0"]).await;
    assert_eq!(code, 3, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("traffic analysis inconclusive at 50%")
            && err.contains("on_inconclusive = \"rollback\""),
        "{err}"
    );
    prod.assert_everywhere("v1.2.0").await;
}

/// ECS and ELBv2 calls that change something, in order, from the request log entry `since`.
async fn rollout_mutations(prod: &Prod, since: usize) -> Vec<String> {
    prod.aws
        .calls_since(since, |e| {
            matches!(e["service"].as_str(), Some("ecs" | "elasticloadbalancing"))
                && is_mutating(e["action"].as_str().unwrap_or(""))
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysis_off_changes_nothing_else() {
    let prod = one_region(STRATEGY).await;
    seed_bad(&prod, "v1.3.0", "errors").await;
    let load = Load::start(&prod, 4);
    // With the analysis on, a good release: the calls a promote makes.
    let (since, _) = prod.aws.requests(0).await;
    let (code, _, err) = run(&prod, &["promote", "v1.2.0"]).await;
    assert_eq!(code, 0, "{err}");
    let (after_on, _) = prod.aws.requests(0).await;
    let with = rollout_mutations(&prod, since).await;
    let reads = prod
        .aws
        .calls_since(since, |e| e["action"] == "GetMetricData")
        .await;
    assert!(!reads.is_empty(), "the analysis read no metrics");
    // Off for one run: the 5% release goes through, as it did before the analysis existed.
    let (code, _, err) = run(&prod, &["promote", "v1.3.0", "--analysis", "off"]).await;
    load.stop().await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("traffic analysis off"), "{err}");
    let without = rollout_mutations(&prod, after_on).await;
    assert_eq!(
        with, without,
        "the same calls with and without the analysis"
    );
    let reads = prod
        .aws
        .calls_since(after_on, |e| e["action"] == "GetMetricData")
        .await;
    assert!(
        reads.is_empty(),
        "analysis off still read metrics: {reads:?}"
    );
    prod.assert_everywhere("v1.3.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_probe_none_no_probe_is_sent_and_a_slow_release_is_still_rolled_back() {
    let prod = one_region(STRATEGY).await;
    seed_bad(&prod, "v1.3.1", "slow").await;
    set_in_file(
        &prod,
        "[regions.us-east-1]\n",
        "[regions.us-east-1]\nprobe = \"none\"\n",
    );
    let load = Load::start(&prod, 6);
    let (code, out, err) = run(&prod, &["promote", "v1.3.1"]).await;
    load.stop().await;
    assert_eq!(code, 3, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("traffic analysis failed at 20% on green"),
        "{err}"
    );
    // Every answer is 300 ms slower: the median shows it at the first looks.
    assert!(
        err.contains("p50 latency") || err.contains("p99 latency"),
        "{err}"
    );
    assert!(err.contains("not probed (probe = \"none\")"), "{err}");
    prod.assert_everywhere("v1.1.0").await;
    // The ALB's listeners saw users and the test suite, never bluegreen.
    let status = prod.aws.status().await;
    let agents = &status["dataplane"]["agents"];
    assert!(
        agents.as_object().is_some_and(|a| !a.is_empty()),
        "{agents}"
    );
    for (listener, by_agent) in agents.as_object().unwrap() {
        assert!(
            by_agent.get("bluegreen").is_none(),
            "bluegreen probed {listener}: {by_agent}"
        );
    }
}
