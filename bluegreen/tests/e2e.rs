//! `bluegreen` itself, run as a process against the stand-in: three regions in two waves, two
//! accounts, real tasks and real traffic.

mod support;

use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const FAST: &str = "steps = [50, 100]\nbake = \"300ms\"\nfinal_bake = \"300ms\"\npoll = \"100ms\"\nready_timeout = \"30s\"\nscan_threshold = \"CRITICAL\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_happy_path_serves_the_new_digest_everywhere() {
    let prod = Prod::start(FAST, "").await;
    let started = Instant::now();
    let (code, out, err) = prod.run(&["promote", "v1.2.0"]);
    let took = started.elapsed();
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("v1.2.0"), "{out}");
    assert!(out.contains("promoted"), "{out}");
    prod.assert_everywhere("v1.2.0").await;
    // The new task sets run the promoted digest, copied into account B's registries.
    let (_, status, _) = prod.run(&["status"]);
    let digest = &prod.digests["v1.2.0"];
    assert_eq!(status.matches(&digest[..19]).count(), 3, "{status}");
    let j = prod.journal_latest().await;
    assert_eq!(j["outcome"], "promoted");
    assert_eq!(j["lock"], Value::Null, "lock released");
    // Plain progress lines on stderr say what happens, region by region.
    assert!(
        err.contains("[us-east-1] final-bake: 100% of traffic on green"),
        "{err}"
    );
    eprintln!("3-region promote (bake 300ms, poll 100ms) took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_release_is_rolled_back_in_wave_one_and_wave_two_is_untouched() {
    let prod = Prod::start(FAST, "").await;
    let before = prod.state().await;
    let (code, out, err) = prod.run(&["promote", "v1.2.1"]);
    assert_eq!(code, 3, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("us-east-1"), "{err}");
    assert!(err.contains("back on its previous release"), "{err}");
    // Detected from the failing health checks, not by waiting out the 30s deadline.
    assert!(
        err.contains("green targets keep failing health checks"),
        "{err}"
    );
    assert!(err.contains("Target.ResponseCodeMismatch"), "{err}");
    prod.assert_everywhere("v1.1.0").await;
    let after = prod.state().await;
    for r in ["eu-west-1", "ap-southeast-2"] {
        assert_eq!(
            before["regions"][r]["task_sets"], after["regions"][r]["task_sets"],
            "wave 2 region {r} was touched"
        );
        assert_eq!(
            before["regions"][r]["weights"],
            after["regions"][r]["weights"]
        );
    }
    let j = prod.journal_latest().await;
    assert_eq!(j["outcome"], "rolled-back");
    assert_eq!(j["lock"], Value::Null);
    assert_eq!(j["regions"]["eu-west-1"]["phase"], "pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_in_wave_two_rolls_back_wave_one_too() {
    // The pre-traffic hook fails only in eu-west-1, after us-east-1 completed its final bake.
    let hooks = "pre_traffic = [\"sh\", \"-c\", \"test \\\"$BLUEGREEN_REGION\\\" != eu-west-1\"]";
    let prod = Prod::start(FAST, hooks).await;
    let (code, out, err) = prod.run(&["promote", "v1.2.0"]);
    assert_eq!(code, 3, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("pre_traffic hook"), "{err}");
    let j = prod.journal_latest().await;
    assert_eq!(j["outcome"], "rolled-back");
    assert_eq!(j["regions"]["us-east-1"]["phase"], "rolled-back", "{j}");
    prod.assert_everywhere("v1.1.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_after_a_completed_promote_returns_the_previous_version_everywhere() {
    let prod = Prod::start(FAST, "").await;
    let (code, _, err) = prod.run(&["promote", "v1.2.0"]);
    assert_eq!(code, 0, "{err}");
    prod.assert_everywhere("v1.2.0").await;
    let (code, out, err) = prod.run(&["rollback"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("rolled back deployment"), "{out}");
    prod.assert_everywhere("v1.1.0").await;
    // A second rollback has nothing left to do.
    let (code, out, _) = prod.run(&["rollback"]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing to roll back"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_to_do_when_the_version_is_already_live() {
    let prod = Prod::start(FAST, "").await;
    let before = prod.state().await;
    let (code, out, err) = prod.run(&["promote", "v1.1.0"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("nothing to do"), "{out}");
    assert_eq!(before, prod.state().await);
}

/// Starts `promote v1.2.0` with a long bake and returns once us-east-1 is baking at 50%.
fn promote_until_mid_shift(prod: &Prod) -> (Child, std::thread::JoinHandle<String>) {
    prod.spawn_until(
        &["promote", "v1.2.0", "--bake", "60s"],
        "[us-east-1] bake: 50%",
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_mid_shift_rollback_restores_blue_everywhere() {
    let prod = Prod::start(FAST, "").await;
    let (mut child, _) = promote_until_mid_shift(&prod);
    assert!(
        prod.versions("us-east-1", 40).await.contains_key("v1.2.0"),
        "not mid-shift"
    );
    signal(&child, "KILL");
    child.wait().unwrap();
    let (code, out, err) = prod.run(&["rollback"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("taking the lock over"), "{err}");
    prod.assert_everywhere("v1.1.0").await;
    let j = prod.journal_latest().await;
    assert_eq!(j["outcome"], "rolled-back");
    assert_eq!(j["lock"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_mid_shift_promote_again_explains_restarts_clean_and_promotes() {
    let prod = Prod::start(FAST, "").await;
    let (mut child, _) = promote_until_mid_shift(&prod);
    signal(&child, "KILL");
    child.wait().unwrap();
    // While the dead run's lease lasts, the lock says so.
    let (code, _, err) = prod.run(&["promote", "v1.2.0"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("is locked by deployment"), "{err}");
    std::thread::sleep(Duration::from_secs(3));
    let (code, out, err) = prod.run(&["promote", "v1.2.0"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("stopped at phase"), "{err}");
    assert!(
        err.contains("rolling it back before starting clean"),
        "{err}"
    );
    prod.assert_everywhere("v1.2.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_mid_shift_puts_traffic_back_on_blue_before_exiting_130() {
    let prod = Prod::start(FAST, "").await;
    let (mut child, reader) = promote_until_mid_shift(&prod);
    signal(&child, "INT");
    let status = child.wait().unwrap();
    let err = reader.join().unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    // Checked right after exit: the rollback happened before it.
    prod.assert_everywhere("v1.1.0").await;
    assert_eq!(prod.journal_latest().await["lock"], Value::Null);
}

/// The decision to roll back reaches every touched region at once: with each ModifyListener held
/// 300 ms by the stand-in (a distant region's round trip), the three production flips overlap in
/// time instead of queueing one behind another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_flips_every_region_at_once() {
    let prod = Prod::start(FAST, "").await;
    let mut production = std::collections::BTreeMap::new();
    for r in PROD_REGIONS {
        let elb = aws_sdk_elasticloadbalancingv2::Client::new(&prod.aws.sdk_as(ACCOUNT_B, r).await);
        let arn = listener_on(&elb, 18000)
            .await
            .listener_arn()
            .unwrap()
            .to_owned();
        production.insert(arn, (r, elb));
    }
    let (mut child, reader) = prod.spawn_until(
        // Long enough for the signal to land in wave two's bake, short enough for wave one's.
        &["promote", "v1.2.0", "--bake", "10s"],
        "[ap-southeast-2] bake: 50%",
        &[],
    );
    // Wave two baking at 50% in both regions, so no weight step is under way at the signal.
    for (r, elb) in production.values().filter(|(r, _)| *r != "us-east-1") {
        eventually(
            &format!("{r} baking at 50%"),
            Duration::from_secs(30),
            || async move {
                (forward_weights(&listener_on(elb, 18000).await) == [50, 50]).then_some(())
            },
        )
        .await;
    }
    prod.aws
        .fault(serde_json::json!({"action": "ModifyListener", "delay_ms": 300, "times": -1}))
        .await;
    let (since, _) = prod.aws.requests(0).await;
    signal(&child, "INT");
    let status = child.wait().unwrap();
    let err = reader.join().unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    prod.assert_everywhere("v1.1.0").await;

    let (_, log) = prod.aws.requests(since).await;
    let mut flips = std::collections::BTreeMap::new();
    for e in &log {
        let Some((r, _)) = e["listener"].as_str().and_then(|l| production.get(l)) else {
            continue;
        };
        if e["action"] == "ModifyListener" && e["delayed_ms"] == 300.0 {
            // The first change of each production listener after the signal is the flip.
            flips
                .entry(*r)
                .or_insert((e["t"].as_f64().unwrap(), e["done"].as_f64().unwrap()));
        }
    }
    assert_eq!(
        flips.len(),
        3,
        "one production flip per region: {flips:?}\n{err}"
    );
    let last_sent = flips.values().map(|f| f.0).fold(f64::MIN, f64::max);
    let first_answered = flips.values().map(|f| f.1).fold(f64::MAX, f64::min);
    assert!(
        last_sent < first_answered,
        "the flips queued instead of overlapping: {flips:?}"
    );
}

/// `cmd` run under a pseudo-terminal 120 columns wide (util-linux `script`): (exit code, all
/// it wrote to the terminal, escape sequences included).
fn run_in_terminal(cmd: &std::process::Command) -> (i32, String) {
    let out = in_terminal(cmd, "")
        .output()
        .expect("run script(1), from util-linux");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `script` running `cmd` (behind `prefix`, e.g. `timeout 120`) on a pseudo-terminal of 120
/// columns and 40 rows, with `cmd`'s environment and no input.
fn in_terminal(cmd: &std::process::Command, prefix: &str) -> std::process::Command {
    let quote = |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', "'\\''"));
    let line = std::iter::once(quote(cmd.get_program()))
        .chain(cmd.get_args().map(quote))
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = std::process::Command::new("script");
    script
        .args(["--quiet", "--return", "--command"])
        .arg(format!("stty cols 120 rows 40; exec {prefix} {line}"))
        .arg("/dev/null")
        .env_clear()
        .env("TERM", "xterm-256color")
        .stdin(std::process::Stdio::null());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            script.env(k, v);
        }
    }
    script
}

/// On a terminal, progress is one live line per region (spinner, region, phase and message),
/// redrawn in place; events that concern the whole run print above them; the result follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_each_region_has_a_live_line_and_the_result_follows() {
    let prod = Prod::start(FAST, "").await;
    let (code, screen) = run_in_terminal(&prod.command(&["promote", "v1.2.0"]));
    assert_eq!(code, 0, "{screen}");
    prod.assert_everywhere("v1.2.0").await;
    // Redrawn in place: the bars move the cursor up and clear lines.
    assert!(
        screen.contains("\x1b[") && screen.contains("\x1b[2K"),
        "no live redraw on a terminal:\n{screen:?}"
    );
    // Plain mode's timestamped lines are for logs, not terminals.
    assert!(
        !screen.contains("Z [us-east-1] "),
        "plain lines on a terminal:\n{screen}"
    );
    assert!(
        screen.contains("wave: wave 2/2: eu-west-1, ap-southeast-2"),
        "{screen}"
    );
    let result = screen
        .find("in prod: promoted [promoted, ")
        .unwrap_or_else(|| panic!("no result line:\n{screen}"));
    for r in PROD_REGIONS {
        // Each region's line, in its last frame above the result, says where it ended.
        let line = screen
            .rfind(&format!("{r:>15} cleanup: deleted the previous task set"))
            .unwrap_or_else(|| panic!("no final live line for {r}:\n{screen}"));
        assert!(line < result, "the result is not below the bars:\n{screen}");
        assert!(
            screen.contains(&format!("{r:>15} bake: 50% of traffic on green")),
            "{r}'s line never showed the bake:\n{screen}"
        );
    }
}

/// A process the test started, killed when the test ends however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// rollout.md: traffic never goes to a target group with fewer healthy targets than the live one
/// had. us-east-1's live colour serves from a third healthy target (registered by hand, as after
/// an operator scaled out); the new task set runs two, so it never counts as ready, production
/// never moves to it, and the promote fails with exit 3, saying what it waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_release_never_takes_traffic_with_a_smaller_fleet() {
    let prod = Prod::start(FAST, "").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _extra = Killed(
        std::process::Command::new(service_binary())
            .env_clear()
            .env("PORT", port.to_string())
            .env("BIND_ADDR", "127.0.0.1")
            .env("APP_VERSION", "v1.1.0")
            .env("AWS_REGION", "us-east-1")
            .env("RUST_LOG", "off")
            .spawn()
            .unwrap(),
    );
    let elb =
        aws_sdk_elasticloadbalancingv2::Client::new(&prod.aws.sdk_as(ACCOUNT_B, "us-east-1").await);
    let blue = elb
        .describe_target_groups()
        .names("hello-us-east-1-blue")
        .send()
        .await
        .unwrap()
        .target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_owned();
    elb.register_targets()
        .target_group_arn(&blue)
        .targets(
            aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
                .id("127.0.0.1")
                .port(i32::from(port))
                .build(),
        )
        .send()
        .await
        .unwrap();
    eventually(
        "three healthy targets on blue",
        Duration::from_secs(20),
        || async {
            let out = elb
                .describe_target_health()
                .target_group_arn(&blue)
                .send()
                .await
                .ok()?;
            let healthy = out
                .target_health_descriptions()
                .iter()
                .filter(|d| {
                    d.target_health()
                        .and_then(|h| h.state())
                        .map(|s| s.as_str())
                        == Some("healthy")
                })
                .count();
            (healthy == 3).then_some(())
        },
    )
    .await;
    let production = listener_on(&elb, 18000)
        .await
        .listener_arn()
        .unwrap()
        .to_owned();

    let (since, _) = prod.aws.requests(0).await;
    let (code, out, err) = prod.run(&["promote", "v1.2.0", "--ready-timeout", "3s"]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains("need all healthy and at least 3") && err.contains("us-east-1"),
        "{err}"
    );
    // The only change of the production listener is the rollback's, to where it already was.
    let (_, log) = prod.aws.requests(since).await;
    let changes: Vec<&Value> = log
        .iter()
        .filter(|e| e["action"] == "ModifyListener" && e["listener"] == production.as_str())
        .collect();
    assert!(changes.len() <= 1, "production moved: {changes:?}\n{err}");
    assert_eq!(
        listener_weights(&prod.state().await, "us-east-1")[0],
        [100, 0],
        "{err}"
    );
    // Wave two untouched.
    let touched: Vec<String> = prod
        .aws
        .mutations_since(since)
        .await
        .into_iter()
        .filter(|m| !m.ends_with("@us-east-1") && !m.starts_with("PutItem@"))
        .collect();
    assert!(touched.is_empty(), "wave two was touched: {touched:?}");
    prod.assert_everywhere("v1.1.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_by_another_deployment_exits_4_and_changes_nothing() {
    let prod = Prod::start(FAST, "").await;
    prod.lock(Duration::from_secs(600))
        .await
        .acquire(
            "someone-else",
            "arn:aws:sts::222222222222:assumed-role/ci/other",
            "v1.1.9",
        )
        .await
        .unwrap();
    let before = prod.state().await;
    let (code, _, err) = prod.run(&["promote", "v1.2.0"]);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("locked by deployment someone-else of v1.1.9"),
        "{err}"
    );
    assert_eq!(before, prod.state().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_refusals_exit_2_and_change_nothing() {
    let prod = Prod::start(FAST, "").await;
    let before = prod.state().await;
    for (args, says) in [
        (vec!["promote", "1.2.0"], "is not a release version"),
        (vec!["promote", "v9.9.9"], "hello:v9.9.9 does not exist"),
        (
            vec!["promote", "v1.2.0", "--steps", "50,20,100"],
            "--steps: steps must rise",
        ),
    ] {
        let (code, _, err) = prod.run(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // An alarm already in ALARM refuses, unless the operator says the release is the fix.
    prod.set_alarm("eu-west-1", true, "5xx rate 7%").await;
    let (code, _, err) = prod.run(&["promote", "v1.2.0"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("hello-eu-west-1-5xx in eu-west-1 (5xx rate 7%)"),
        "{err}"
    );
    assert!(err.contains("--ignore-alarms"), "{err}");
    // CRITICAL scan findings refuse.
    prod.aws
        .control_post(
            "scan-findings",
            serde_json::json!({"account": ACCOUNT_A, "region": "us-east-1", "repository": "hello",
                               "digest": prod.digests["v1.2.0"], "counts": {"CRITICAL": 1}}),
        )
        .await;
    let (code, _, err) = prod.run(&["promote", "v1.2.0", "--ignore-alarms"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("1 CRITICAL"), "{err}");
    assert_eq!(
        before,
        prod.state().await,
        "a refused command changed something"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn until_test_traffic_pauses_with_the_lock_held_and_continue_finishes() {
    let prod = Prod::start(FAST, "").await;
    let (code, out, err) = prod.run(&["promote", "v1.2.0", "--until", "test-traffic"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("paused"), "{out}");
    // Production untouched, the test route on the new release, the lock kept.
    assert_eq!(
        prod.versions("us-east-1", 20)
            .await
            .keys()
            .collect::<Vec<_>>(),
        vec!["v1.1.0"]
    );
    let (status, body) = prod
        .test_listener_status("us-east-1", Some(TEST_SECRET))
        .await;
    assert_eq!((status, &body["version"]), (200, &Value::from("v1.2.0")));
    // Without the secret header nobody reaches the new release: the test port answers 404.
    for value in [None, Some("not-the-secret")] {
        for _ in 0..10 {
            let (status, body) = prod.test_listener_status("us-east-1", value).await;
            assert_eq!(status, 404, "{value:?}: {body}");
        }
    }
    // The secret never appears in what bluegreen prints.
    assert!(!out.contains(TEST_SECRET) && !err.contains(TEST_SECRET));
    assert!(prod.journal_latest().await["lock"].is_string());
    // Another promote meanwhile is refused by the lock.
    let (code, _, _) = prod.run(&["promote", "v1.2.0"]);
    assert_eq!(code, 4);
    // `status` says how to go on.
    let (code, out, err) = prod.run(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("next: `bluegreen continue -e prod` finishes deployment"),
        "{out}"
    );
    let (code, out, err) = prod.run(&["continue"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("promoted"), "{out}");
    prod.assert_everywhere("v1.2.0").await;
    assert_eq!(prod.journal_latest().await["lock"], Value::Null);
}

/// A region as a fresh `terraform apply` leaves it (a service with no task set, production on a
/// colour with no targets) gets its first release from `promote`: the new task set goes on the
/// colour production does not point at, passes readiness and the test route, and production
/// moves to it in one step; `rollback` of it takes the region off the air only with `--yes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_release_into_an_empty_region_and_its_rollback_with_yes() {
    let hooks = "pre_traffic = [\"sh\", \"-c\", \"curl -fsS -H \\\"$BLUEGREEN_TEST_HEADER: $BLUEGREEN_TEST_HEADER_VALUE\\\" \\\"$BLUEGREEN_URL\\\" | grep -q v1.2.0\"]";
    let prod = Prod::start_with(
        &["us-east-1", "eu-west-1"],
        "[[\"us-east-1\"], [\"eu-west-1\"]]",
        FAST,
        hooks,
        &["eu-west-1"],
    )
    .await;
    let (status, _) = prod.test_listener_status("eu-west-1", None).await;
    assert_eq!(status, 404);
    let off_air = prod
        .aws
        .http
        .get(format!("http://{}:18000/health", prod.dns["eu-west-1"]))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(off_air, 503, "a region with no release answers 503");

    let (code, out, err) = prod.run(&["plan", "v1.2.0"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("eu-west-1: register a new revision of hello:1"),
        "{out}"
    );
    assert!(out.contains("no live release: first deployment"), "{out}");
    assert!(
        out.contains("eu-west-1: production 100% on green in one step (first deployment)"),
        "{out}"
    );
    let (code, out, err) = prod.run(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("eu-west-1: live blue"), "{out}");
    assert!(
        out.contains("no release: production points at blue"),
        "{out}"
    );

    let (code, out, err) = prod.run(&["promote", "v1.2.0"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("[eu-west-1] preflight: no live release in eu-west-1: first deployment"),
        "{err}"
    );
    assert!(err.contains("[eu-west-1] shift: first deployment"), "{err}");
    assert!(
        !err.contains("[eu-west-1] bake: 50%"),
        "no split step: {err}"
    );
    assert!(!out.contains(TEST_SECRET) && !err.contains(TEST_SECRET));
    prod.assert_everywhere("v1.2.0").await;
    let state = prod.state().await;
    assert_eq!(
        listener_weights(&state, "eu-west-1")[0],
        vec![0, 100],
        "green serves"
    );

    // Rolling back a first release takes the region off the air: refused without --yes, and
    // nothing changes.
    let before = prod.state().await;
    let (code, out, err) = prod.run(&["rollback"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("first release in eu-west-1"), "{err}");
    assert!(err.contains("--yes"), "{err}");
    assert!(err.contains("--region us-east-1"), "{err}");
    assert_eq!(before, prod.state().await);

    let (code, out, err) = prod.run(&["rollback", "--yes"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("eu-west-1: taken off the air"), "{out}");
    let state = prod.state().await;
    assert_eq!(
        state["regions"]["eu-west-1"]["task_sets"]
            .as_array()
            .unwrap()
            .len(),
        0,
        "{state}"
    );
    assert_eq!(listener_weights(&state, "eu-west-1")[0], vec![100, 0]);
    let versions = prod.versions("us-east-1", 10).await;
    assert_eq!(versions.keys().collect::<Vec<_>>(), vec!["v1.1.0"]);
}

/// Production's target group with targets but no task set of the service is not a region without
/// a release: something else serves it, and promote refuses rather than moving it in one step.
/// A hook that echoes the test secret has it redacted from the error bluegreen prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_colour_served_from_outside_is_no_first_deployment_and_hooks_never_leak_the_secret()
{
    let hooks = "pre_traffic = [\"sh\", \"-c\", \"echo \\\"sent $BLUEGREEN_TEST_HEADER: $BLUEGREEN_TEST_HEADER_VALUE\\\" >&2; exit 1\"]";
    let prod = Prod::start_with(
        &["us-east-1"],
        "[[\"us-east-1\"]]",
        FAST,
        hooks,
        &["us-east-1"],
    )
    .await;
    let elb =
        aws_sdk_elasticloadbalancingv2::Client::new(&prod.aws.sdk_as(ACCOUNT_B, "us-east-1").await);
    let blue = elb
        .describe_target_groups()
        .names("hello-us-east-1-blue")
        .send()
        .await
        .unwrap()
        .target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_owned();
    let target = aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
        .id("127.9.9.9")
        .port(8080)
        .build();
    elb.register_targets()
        .target_group_arn(&blue)
        .targets(target.clone())
        .send()
        .await
        .unwrap();
    let before = prod.state().await;
    let (code, out, err) = prod.run(&["promote", "v1.2.0"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("registered target(s)"), "{err}");
    assert!(err.contains("no first deployment"), "{err}");
    assert_eq!(before, prod.state().await);

    elb.deregister_targets()
        .target_group_arn(&blue)
        .targets(target)
        .send()
        .await
        .unwrap();
    eventually(
        "the stray target to be gone",
        Duration::from_secs(10),
        || async {
            let h = elb
                .describe_target_health()
                .target_group_arn(&blue)
                .send()
                .await
                .ok()?;
            h.target_health_descriptions().is_empty().then_some(())
        },
    )
    .await;
    let (code, out, err) = prod.run(&["promote", "v1.2.0"]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains("pre_traffic hook"), "{err}");
    assert!(err.contains("sent X-Bluegreen-Test: <redacted>"), "{err}");
    assert!(!out.contains(TEST_SECRET) && !err.contains(TEST_SECRET));
}

/// A first release that fails its gate goes back to where it was: off the air, no task set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_first_release_is_rolled_back_to_no_release() {
    let prod = Prod::start_with(
        &["us-east-1"],
        "[[\"us-east-1\"]]",
        FAST,
        "",
        &["us-east-1"],
    )
    .await;
    let (code, out, err) = prod.run(&["promote", "v1.2.1"]);
    assert_eq!(code, 3, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("green targets keep failing health checks"),
        "{err}"
    );
    let state = prod.state().await;
    assert_eq!(
        state["regions"]["us-east-1"]["task_sets"]
            .as_array()
            .unwrap()
            .len(),
        0,
        "{state}"
    );
    assert_eq!(listener_weights(&state, "us-east-1")[0], vec![100, 0]);
    let j = prod.journal_latest().await;
    assert_eq!(j["outcome"], "rolled-back");
    assert_eq!(j["lock"], Value::Null);
    // The next promote is a first deployment again.
    let (code, out, err) = prod.run(&["promote", "v1.2.0"]);
    assert_eq!(code, 0, "{out}{err}");
    prod.assert_everywhere("v1.2.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_is_one_event_per_line_and_a_final_result() {
    let prod = Prod::start(FAST, "").await;
    let (code, out, err) = prod.run(&["promote", "v1.2.0", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert!(lines.len() > 10);
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l["type"] == "event")
    );
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "result");
    assert_eq!(last["outcome"], "promoted");
    assert_eq!(last["regions"]["eu-west-1"]["weight"], 100);
    let (code, out, _) = prod.run(&["promote", "v1.2.1", "--output", "json"]);
    assert_eq!(code, 3);
    let last: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(
        (last["type"].as_str(), last["exit_code"].as_u64()),
        (Some("error"), Some(3))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_github_actions_results_go_to_the_step_summary_and_failures_are_annotated() {
    let prod = Prod::start(FAST, "").await;
    let summary = prod.aws.dir.join("summary.md");
    let out = prod
        .command(&["promote", "v1.2.0"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.contains("### bluegreen: v1.2.0 promoted in prod"),
        "{md}"
    );
    assert!(md.contains("| eu-west-1 | green | 100% |"), "{md}");
    let out = prod
        .command(&["promote", "v1.2.1"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("::error title=bluegreen (exit 3)::"), "{err}");
    assert!(
        std::fs::read_to_string(&summary)
            .unwrap()
            .contains("bluegreen failed (exit 3)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlock_asks_for_yes_and_history_lists_newest_first() {
    let prod = Prod::start(FAST, "").await;
    let (code, _, err) = prod.run(&["promote", "v1.2.0"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = prod.run(&["promote", "v1.2.1"]);
    assert_eq!(code, 3);
    let (code, out, _) = prod.run(&["history"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].contains("v1.2.1") && lines[0].contains("rolled-back"),
        "{out}"
    );
    assert!(
        lines[1].contains("v1.2.0") && lines[1].contains("promoted"),
        "{out}"
    );

    let lock = prod.lock(Duration::from_secs(600)).await;
    lock.acquire("dead-runner", "arn:ci/dead", "v1.3.0")
        .await
        .unwrap();
    let (code, _, err) = prod.run(&["unlock"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("pass --yes"), "{err}");
    assert!(lock.holder().await.unwrap().is_some());
    let (code, out, _) = prod.run(&["unlock", "--yes"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("unlocked (was held by deployment dead-runner of v1.3.0"),
        "{out}"
    );
    assert_eq!(lock.holder().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_names_every_endpoint_when_run_as_the_deploy_role() {
    // As in GitHub Actions: the job's credentials are a session of the deploy role itself. (The
    // stand-in does not enforce trust policies, so that bluegreen skips re-assuming the role is
    // pinned by the unit test `sts::tests::a_session_of_the_role_is_recognised`.)
    let prod = Prod::start(FAST, "").await;
    let base = prod.aws.sdk("us-east-1").await;
    let creds = aws_sdk_sts::Client::new(&base)
        .assume_role()
        .role_arn(format!(
            "arn:aws:iam::{ACCOUNT_B}:role/bluegreen-deploy-prod"
        ))
        .role_session_name("GitHubActions")
        .send()
        .await
        .unwrap();
    let c = creds.credentials().unwrap();
    let out = prod
        .command(&["status", "--output", "json"])
        .env("AWS_ACCESS_KEY_ID", c.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", c.secret_access_key())
        .env("AWS_SESSION_TOKEN", c.session_token())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(status["regions"].is_array(), "{status}");
    assert!(
        status["regions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["error"].is_null()),
        "{status}"
    );
    let endpoints: Vec<&str> = status["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["endpoint"].as_str().unwrap())
        .collect();
    assert_eq!(endpoints.len(), 3);
    assert!(
        endpoints
            .iter()
            .all(|e| e.starts_with("http://") && e.ends_with(":18000/health")),
        "{endpoints:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_after_an_automatic_rollback_undoes_the_release_still_in_effect() {
    // v1.2.0 promoted, then v1.2.1 failed and was rolled back by promote itself: the release in
    // effect is v1.2.0, so `rollback` takes prod to the one before it.
    let prod = Prod::start(FAST, "").await;
    assert_eq!(prod.run(&["promote", "v1.2.0"]).0, 0);
    assert_eq!(prod.run(&["promote", "v1.2.1"]).0, 3);
    prod.assert_everywhere("v1.2.0").await;
    let (code, out, err) = prod.run(&["rollback"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("of v1.2.0"), "{out}");
    prod.assert_everywhere("v1.1.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_shift_and_on_rollback_hooks_run_with_the_deployment_in_their_environment() {
    let log = std::env::temp_dir().join(format!("bluegreen-hooks-{}", std::process::id()));
    let log = log.display().to_string();
    let hooks = format!(
        "post_shift = [\"sh\", \"-c\", \"echo post_shift $BLUEGREEN_REGION $BLUEGREEN_VERSION >> {log}\"]\n\
         on_rollback = [\"sh\", \"-c\", \"echo on_rollback $BLUEGREEN_REGION $BLUEGREEN_VERSION >> {log}\"]"
    );
    let prod = Prod::start(FAST, &hooks).await;
    assert_eq!(prod.run(&["promote", "v1.2.0"]).0, 0);
    let (code, _, err) = prod.run(&["promote", "v1.2.1"]);
    assert_eq!(code, 3, "{err}");
    let mut lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    let _ = std::fs::remove_file(&log);
    lines.sort();
    assert_eq!(
        lines,
        vec![
            "on_rollback us-east-1 v1.2.1",
            "post_shift ap-southeast-2 v1.2.0",
            "post_shift eu-west-1 v1.2.0",
            "post_shift us-east-1 v1.2.0",
        ]
    );
}

/// Regression (issue 13): `-v` did nothing (no tracing subscriber). Now `-v` shows bluegreen's
/// own diagnostics and `-vv` the AWS SDK's too, on stderr only: `--output json` stays one JSON
/// document per line on stdout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_diagnostics_go_to_stderr_and_never_into_json() {
    let prod = Prod::start(FAST, "").await;
    let run = |args: &[&str]| {
        let out = prod.command(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        for line in stdout.lines() {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("{args:?}: not JSON on stdout ({e}): {line}"));
        }
        err
    };
    let quiet = run(&["status", "--output", "json"]);
    assert!(!quiet.contains("DEBUG"), "diagnostics without -v:\n{quiet}");
    let v = run(&["status", "--output", "json", "-v"]);
    assert!(
        v.contains("DEBUG") && v.contains("bluegreen::rollout") && v.contains("connected"),
        "-v shows no bluegreen diagnostics:\n{v}"
    );
    assert!(
        !v.contains("aws_smithy_runtime"),
        "-v shows the SDK's:\n{v}"
    );
    let vv = run(&["status", "--output", "json", "-vv"]);
    assert!(
        vv.contains("aws_smithy_runtime") && vv.contains("connected"),
        "-vv shows no SDK diagnostics:\n{}",
        &vv[..vv.len().min(3000)]
    );
}

/// `status --watch` started before a promote, on a terminal: it follows the promote, redraws its
/// lines in place (weights, versions, healthy targets, phase, the gate's verdict), and ends with
/// it: exit 0 and the result. The 50% step bakes 3 s, so a look lands in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_on_a_terminal_follows_a_promote_to_its_end() {
    let prod = Prod::start(&FAST.replace("\nbake = \"300ms\"", "\nbake = \"3s\""), "").await;
    let watch = prod.command(&["status", "--watch", "--interval", "1s"]);
    let (mut watcher, screen, reader) = spawn_in_terminal(&watch);
    // Its first look finds no deployment running: it waits for the next.
    eventually("the watch's first frame", Duration::from_secs(60), || {
        let screen = screen.clone();
        async move {
            let shown = screen.lock().unwrap().contains("no deployment running");
            shown.then_some(())
        }
    })
    .await;
    let (code, out, err) = prod.run(&["promote", "v1.2.0"]);
    assert_eq!(code, 0, "{out}{err}");
    let status = watcher.wait().unwrap();
    reader.join().unwrap();
    let screen = screen.lock().unwrap().clone();
    assert_eq!(
        status.code(),
        Some(0),
        "the watch ends with the promote's exit code:\n{screen}"
    );
    assert!(
        screen.contains(" prod: no deployment running; watching for the next"),
        "{screen}"
    );
    // Redrawn in place: back up over the last frame, each line cleared as it is drawn.
    assert!(
        screen.contains(&format!(
            "\x1b[{}A\r\x1b[2K          prod: ",
            1 + PROD_REGIONS.len()
        )),
        "no redraw in place:\n{screen:?}"
    );
    assert!(
        !screen.contains("Z [us-east-1] "),
        "log lines on a terminal:\n{screen}"
    );
    let last = screen
        .rfind("prod: promote v1.2.0 (")
        .map(|i| &screen[i..])
        .unwrap_or_else(|| panic!("the deployment never showed:\n{screen}"));
    assert!(last.contains(") promoted; lock "), "{last}");
    for r in PROD_REGIONS {
        let line = last
            .lines()
            .find(|l| l.contains(&format!("{r}: ")))
            .unwrap_or_else(|| panic!("no line for {r} in the last frame:\n{last}"));
        // The new colour (green) serves everything with its healthy targets; the gate passed
        // the final step.
        assert!(
            line.contains("blue 0% ")
                && line.contains("green 100% v1.2.0 ")
                && line.contains(" healthy")
                && line.contains("| cleaned | gate: 100% passed"),
            "{r}: {line}"
        );
    }
    // A step was seen on its way.
    assert!(screen.contains("green 50% v1.2.0"), "{screen}");
    let id = screen[screen.rfind("prod: promote v1.2.0 (").unwrap() + 22..]
        .split(')')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        screen.contains(&format!("deployment {id} of v1.2.0 promoted in prod")),
        "the result names the deployment it followed:
{screen}"
    );
}

/// `status --watch` with its output in a log: a line per change, with the time and what it is
/// about; a bad release rolled back ends it with exit 3 and the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_in_a_log_prints_each_change_and_ends_with_the_rollback() {
    let prod = Prod::start(FAST, "").await;
    let (mut child, lines) = spawn_watch(&prod, &[]);
    let first = lines
        .recv_timeout(Duration::from_secs(60))
        .expect("the watch's first line");
    assert!(
        first.contains("Z [prod] no deployment running; watching for the next"),
        "{first}"
    );
    let (code, out, err) = prod.run(&["promote", "v1.2.1"]);
    assert_eq!(code, 3, "{out}{err}");
    let status = child.wait().unwrap();
    let mut printed = vec![first];
    printed.extend(lines.iter());
    let printed = printed.join("\n");
    assert_eq!(
        status.code(),
        Some(3),
        "the promote's exit code:\n{printed}"
    );
    assert!(
        !printed.contains('\x1b'),
        "no terminal codes in a log:\n{printed:?}"
    );
    assert!(printed.contains("[prod] promote v1.2.1 ("), "{printed}");
    assert!(
        printed.contains(") rolled-back: "),
        "the outcome with its reason:\n{printed}"
    );
    assert!(
        printed.contains("[us-east-1] ") && printed.contains("| rolled-back"),
        "{printed}"
    );
    // One line per change: a key's line never repeats itself.
    let mut last: std::collections::BTreeMap<String, String> = Default::default();
    for line in printed.lines().filter(|l| l.contains("Z [")) {
        let (key, text) = line.split_once("] ").unwrap();
        let key = key.split_once('[').unwrap().1.to_owned();
        assert_ne!(
            last.get(&key).map(String::as_str),
            Some(text),
            "printed twice:\n{printed}"
        );
        last.insert(key, text.to_owned());
    }
    assert!(
        last["eu-west-1"].starts_with("blue 100% v1.1.0 "),
        "wave two was never touched: {}",
        last["eu-west-1"]
    );
}

/// Ctrl-C stops watching, with exit 130, and the watch changed nothing in AWS. In JSON, each
/// look that changed something is a `watch` object, and the stop an `error` object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_stops_on_ctrl_c_and_changes_nothing() {
    let prod = Prod::start(FAST, "").await;
    let (since, _) = prod.aws.requests(0).await;
    let (child, lines) = spawn_watch(&prod, &["--output", "json"]);
    let first = lines
        .recv_timeout(Duration::from_secs(60))
        .expect("the watch's first line");
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        (first["type"].as_str(), first["deployment"].is_null()),
        (Some("watch"), true),
        "{first}"
    );
    assert_eq!(
        first["status"]["regions"].as_array().map(Vec::len),
        Some(PROD_REGIONS.len()),
        "{first}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signal(&child, "INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let rest: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(&l).unwrap())
        .collect();
    let stop = rest.last().unwrap_or_else(|| panic!("no stop line"));
    assert_eq!(
        (stop["type"].as_str(), stop["exit_code"].as_i64()),
        (Some("error"), Some(130)),
        "{stop}"
    );
    assert!(
        stop["message"]
            .as_str()
            .unwrap()
            .contains("stopped watching; nothing was changed"),
        "{stop}"
    );
    assert_eq!(prod.aws.mutations_since(since).await, Vec::<String>::new());
    let reads = prod.aws.calls_since(since, |_| true).await;
    assert!(
        reads.iter().any(|c| c.contains("DescribeTargetHealth")),
        "it looked: {reads:?}"
    );
}

/// A promote paused at a step journals that step's verdict at the pause; `status --watch` follows
/// the paused deployment, showing it, until `continue` finishes it (exit 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_follows_a_paused_promote_until_continue_finishes_it() {
    let prod = Prod::start(FAST, "").await;
    let (code, out, err) = prod.run(&["promote", "v1.2.0", "--until", "50"]);
    assert_eq!(code, 0, "{out}{err}");
    let j = prod.journal_latest().await;
    let gate = j["regions"]["us-east-1"]["gate"]
        .as_str()
        .unwrap_or_default();
    assert!(
        gate.starts_with("50% passed: "),
        "the paused step's verdict: {j}"
    );
    let (mut child, lines) = spawn_watch(&prod, &[]);
    let first = lines
        .recv_timeout(Duration::from_secs(60))
        .expect("the watch's first line");
    assert!(
        first.contains("[prod] promote v1.2.0 (") && first.contains(") paused; lock held by "),
        "{first}"
    );
    let us = lines
        .recv_timeout(Duration::from_secs(10))
        .expect("a region's line");
    let us = if us.contains("[us-east-1]") {
        us
    } else {
        lines.iter().find(|l| l.contains("[us-east-1]")).unwrap()
    };
    assert!(
        us.contains("green 50% v1.2.0") && us.contains("| shifting 50% | gate: 50% passed: "),
        "{us}"
    );
    let (code, out, err) = prod.run(&["continue"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        child.wait().unwrap().code(),
        Some(0),
        "the watch ends with the deployment"
    );
    let rest: Vec<String> = lines.iter().collect();
    assert!(
        rest.iter().any(|l| l.contains(") promoted; lock ")),
        "{rest:?}"
    );
}

/// `cmd` on a pseudo-terminal of 120 columns (as `run_in_terminal`), running: what it prints
/// collects in the string. `timeout` ends it after 2 minutes, should it never end by itself.
fn spawn_in_terminal(
    cmd: &std::process::Command,
) -> (
    Child,
    std::sync::Arc<std::sync::Mutex<String>>,
    std::thread::JoinHandle<()>,
) {
    use std::io::Read;
    let mut script = in_terminal(cmd, "timeout 120");
    script.stdout(std::process::Stdio::piped());
    let mut child = script.spawn().expect("run script(1), from util-linux");
    let mut stdout = child.stdout.take().unwrap();
    let screen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let collected = screen.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            collected
                .lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    (child, screen, reader)
}

/// `status --watch --interval 1s ARGS` with stdout piped; its lines arrive on the receiver.
fn spawn_watch(prod: &Prod, args: &[&str]) -> (Child, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = prod
        .command(&[&["status", "--watch", "--interval", "1s"], args].concat())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}
