//! bluegreen against the stand-in where it is as strict as AWS (tools/localaws/README.md,
//! extensions 6 and 8–13): multi-platform scan findings, CreateTaskSet idempotency tokens,
//! request-rate limits, credentials that end, and a caller a role does not admit.

mod support;

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use support::*;

const FAST: &str = "steps = [50, 100]\nbake = \"300ms\"\nfinal_bake = \"300ms\"\npoll = \"100ms\"\nready_timeout = \"30s\"\nscan_threshold = \"CRITICAL\"";

/// Pushes a two-platform release `tag` to the source registry; returns each platform's digest
/// by platform name.
async fn seed_two_platforms(prod: &Prod, tag: &str) -> Value {
    let platforms = ["linux/amd64", "linux/arm64"];
    let seeded = prod
        .aws
        .seed(
            json!({"account": ACCOUNT_A, "region": "us-east-1", "repository": "hello",
                     "tag": tag, "argv": [service_binary()], "platforms": platforms}),
        )
        .await;
    // The seed answers the platform manifests in the order asked for.
    platforms
        .iter()
        .zip(seeded["platform_digests"].as_array().unwrap())
        .map(|(p, d)| (p.to_string(), d.clone()))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn set_scan(prod: &Prod, digest: &str, scan: Value) -> impl std::future::Future<Output = Value> {
    let mut body = json!({"account": ACCOUNT_A, "region": "us-east-1", "repository": "hello",
                          "digest": digest});
    for (k, v) in scan.as_object().unwrap() {
        body[k] = v.clone();
    }
    let aws = &prod.aws;
    async move { aws.control_post("scan-findings", body).await }
}

/// ECR scans each platform manifest of a multi-platform release, never the index: the gate
/// reads every platform, waits (saying so) while a fresh push is still being scanned, and
/// refuses findings on one platform, or a platform ECR cannot scan, naming it; nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_platform_release_is_gated_on_every_platform() {
    let prod = Prod::start(&format!("{FAST}\nscan_wait = \"20s\""), "").await;

    // A fresh push: arm64 is still being scanned for 3 s; the promote waits for it, then goes.
    prod.aws
        .control_post("settings", json!({"scan_delay": 3}))
        .await;
    seed_two_platforms(&prod, "v1.4.0").await;
    prod.aws
        .control_post("settings", json!({"scan_delay": 0.5}))
        .await;
    let (code, out, err) = prod.run(&["promote", "v1.4.0"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("scan: ECR is scanning"), "{err}");
    prod.assert_everywhere("v1.4.0").await;

    // Findings on one platform only.
    let platforms = seed_two_platforms(&prod, "v1.5.0").await;
    let arm = platforms["linux/arm64"].as_str().unwrap();
    set_scan(&prod, arm, json!({"counts": {"CRITICAL": 1, "LOW": 2}})).await;
    let before = prod.state().await;
    let (since, _) = prod.aws.requests(0).await;
    let (code, _, err) = prod.run(&["promote", "v1.5.0"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("linux/arm64 ({arm}): 1 CRITICAL"))
            && err.contains("--allow-findings"),
        "{err}"
    );
    assert!(prod.aws.mutations_since(since).await.is_empty());
    assert_eq!(before, prod.state().await);

    // A platform ECR cannot scan: refused at any threshold but none, unless --allow-findings.
    let platforms = seed_two_platforms(&prod, "v1.6.0").await;
    let amd = platforms["linux/amd64"].as_str().unwrap();
    set_scan(
        &prod,
        amd,
        json!({"status": "UNSUPPORTED_IMAGE", "description": "UnsupportedImageError: The operating system and/or package manager are not supported."}),
    )
    .await;
    let (code, _, err) = prod.run(&["promote", "v1.6.0"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is not scanned")
            && err.contains(&format!("linux/amd64 ({amd}): UNSUPPORTED_IMAGE"))
            && err.contains("--allow-findings")
            && err.contains("scan_threshold = \"none\""),
        "{err}"
    );
    let (code, out, err) = prod.run(&["plan", "v1.6.0", "--allow-findings"]);
    assert_eq!(code, 0, "{out}{err}");

    // An image with no operating system basic scanning supports (a static binary FROM scratch,
    // like the hello service): ECR's scan fails, and so does the gate, naming why.
    prod.aws
        .seed(
            json!({"account": ACCOUNT_A, "region": "us-east-1", "repository": "hello",
                     "tag": "v1.7.0", "argv": [service_binary()], "scannable": false}),
        )
        .await;
    let (code, _, err) = prod.run(&["promote", "v1.7.0"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is not scanned") && err.contains("FAILED, UnsupportedImageError"),
        "{err}"
    );
}

/// A scan that does not finish within `scan_wait` refuses with what to do, changing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_still_in_progress_after_scan_wait_is_refused() {
    let prod = Prod::start(&format!("{FAST}\nscan_wait = \"1s\""), "").await;
    prod.aws
        .control_post("settings", json!({"scan_delay": 600}))
        .await;
    seed_two_platforms(&prod, "v1.4.0").await;
    let before = prod.state().await;
    let (since, _) = prod.aws.requests(0).await;
    let (code, _, err) = prod.run(&["promote", "v1.4.0"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is still being scanned by ECR (linux/amd64, linux/arm64) after 1s")
            && err.contains("raise scan_wait"),
        "{err}"
    );
    assert!(prod.aws.mutations_since(since).await.is_empty());
    assert_eq!(before, prod.state().await);
}

/// Regression (issue 14): a rollback that recreates a region's previous task set used the
/// deployment id as CreateTaskSet's client token, the token that region's new task set was
/// created with; ECS refuses a token reused with other parameters. Here wave one is promoted,
/// its previous task set disappears, and a failure in wave two rolls wave one back, recreating
/// it: every region ends on v1.1.0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_wave_rollback_recreates_a_previous_task_set_with_its_own_token() {
    let strategy = "steps = [50, 100]\nbake = \"2s\"\nfinal_bake = \"2s\"\npoll = \"100ms\"\nready_timeout = \"30s\"\nscan_threshold = \"CRITICAL\"";
    let prod = Prod::start(strategy, "").await;
    let (mut child, reader) = prod.spawn_until(
        &["promote", "v1.2.0", "--bake", "30s"],
        "[eu-west-1] bake: 50%",
        &[],
    );
    // us-east-1's previous release (blue) goes away behind bluegreen's back.
    let ecs = aws_sdk_ecs::Client::new(&prod.aws.sdk_as(ACCOUNT_B, "us-east-1").await);
    let sets = ecs
        .describe_task_sets()
        .cluster("hello-us-east-1")
        .service("hello")
        .send()
        .await
        .unwrap();
    let old = sets
        .task_sets()
        .iter()
        .find(|t| t.status() != Some("PRIMARY"))
        .expect("the previous task set")
        .task_set_arn()
        .unwrap()
        .to_owned();
    ecs.delete_task_set()
        .cluster("hello-us-east-1")
        .service("hello")
        .task_set(&old)
        .force(true)
        .send()
        .await
        .unwrap();
    prod.set_alarm("eu-west-1", true, "5xx rate 7%").await;
    let status = child.wait().unwrap();
    let err = reader.join().unwrap();
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(
        err.contains("[us-east-1] rollback: recreated previous release"),
        "{err}"
    );
    prod.set_alarm("eu-west-1", false, "ok").await;
    prod.assert_everywhere("v1.1.0").await;
    assert_eq!(prod.journal_latest().await["outcome"], "rolled-back");
}

/// Eight regions in one wave, gate polls every second, AWS's request-rate limits on
/// (extension 11): the promote finishes, and any throttled call was retried with backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_regions_in_one_wave_stay_within_aws_rate_limits() {
    let regions = [
        "us-east-1",
        "us-east-2",
        "us-west-2",
        "eu-west-1",
        "eu-central-1",
        "ap-southeast-2",
        "ap-northeast-1",
        "sa-east-1",
    ];
    let waves = format!(
        "[[{}]]",
        regions
            .iter()
            .map(|r| format!("\"{r}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let strategy = "steps = [50, 100]\nbake = \"3s\"\nfinal_bake = \"3s\"\npoll = \"1s\"\nready_timeout = \"60s\"\nscan_threshold = \"CRITICAL\"";
    let prod = Prod::start_in(&regions, &waves, strategy, "").await;
    prod.aws
        .control_post("throttling", json!({"enabled": true, "reset": true}))
        .await;
    let (since, _) = prod.aws.requests(0).await;
    let out = prod
        .command(&["promote", "v1.2.0"])
        .env("BLUEGREEN_AWS_MAX_ATTEMPTS", "5")
        .output()
        .unwrap();
    let (_, log) = prod.aws.requests(since).await;
    prod.aws
        .control_post("throttling", json!({"enabled": false}))
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let throttled: Vec<&Value> = log.iter().filter(|e| e["throttled"] == true).collect();
    eprintln!(
        "{} AWS calls, {} throttled (each retried with backoff)",
        log.len(),
        throttled.len()
    );
    for t in &throttled {
        let (action, region) = (&t["action"], &t["region"]);
        let t0 = t["t"].as_f64().unwrap();
        assert!(
            log.iter().any(|e| e["action"] == *action
                && e["region"] == *region
                && e["status"] == 200
                && e["t"].as_f64().unwrap() > t0 + 0.01),
            "throttled {action} in {region} was not retried to success"
        );
    }
    prod.assert_everywhere("v1.2.0").await;
}

/// A promote on credentials that end before its worst case (a fixed session with
/// `AWS_CREDENTIAL_EXPIRATION`, as configure-aws-credentials' output can export it) is refused
/// up front with the numbers, changing nothing; one that refreshes runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_that_end_before_the_rollout_could_are_refused_up_front() {
    let prod = Prod::start(FAST, "").await;
    let ends = SystemTime::now() + Duration::from_secs(90);
    let before = prod.state().await;
    let (since, _) = prod.aws.requests(0).await;
    let out = prod
        .command(&["promote", "v1.2.0"])
        .env("AWS_SESSION_TOKEN", "a-session")
        .env(
            "AWS_CREDENTIAL_EXPIRATION",
            humantime::format_rfc3339_seconds(ends).to_string(),
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("a fixed session ending at")
            && err.contains("this rollout may take up to")
            && err.contains("role-duration-seconds"),
        "{err}"
    );
    assert!(prod.aws.mutations_since(since).await.is_empty());
    assert_eq!(before, prod.state().await);
}

/// The deploy role's trust policy does not admit the caller: the error names the role, the
/// caller and what to ask for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assume_role_denied_names_the_role_the_caller_and_what_to_ask_for() {
    let prod = Prod::start(FAST, "").await;
    prod.aws
        .fault(json!({"action": "AssumeRole", "error": "denied", "times": 100}))
        .await;
    let (code, _, err) = prod.run(&["status"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("may not assume arn:aws:iam::222222222222:role/bluegreen-deploy-prod")
            && err.contains("123456789012")
            && err.contains("AccessDenied")
            && err.contains("trust policy to admit"),
        "{err}"
    );
}
