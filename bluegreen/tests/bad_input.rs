//! The bad-input matrix: every case is refused with a message naming what is wrong, with the
//! documented exit code, and changes nothing: the stand-in's state is the same before and after
//! and its request log shows no mutating AWS call.

mod support;

use std::process::Command;
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2 as elbv2;
use serde_json::{Value, json};
use support::*;

const FAST: &str = "steps = [50, 100]\nbake = \"300ms\"\nfinal_bake = \"300ms\"\npoll = \"100ms\"\nready_timeout = \"30s\"\nscan_threshold = \"CRITICAL\"";

/// Runs `cmd`, asserts its exit code and that stderr says every one of `says`, and that
/// nothing changed.
async fn refused(prod: &Prod, case: &str, cmd: Command, code: i32, says: &[&str]) {
    refused_after(prod, case, cmd, code, says).await;
}

/// Like `refused`, and the command made no AWS call at all: a mistake on the command line or in
/// the environment file is found before the first one.
async fn refused_offline(prod: &Prod, case: &str, cmd: Command, code: i32, says: &[&str]) {
    let calls = refused_after(prod, case, cmd, code, says).await;
    let calls: Vec<String> = calls
        .iter()
        .map(|c| c["action"].as_str().unwrap_or("?").to_owned())
        .collect();
    assert!(
        calls.is_empty(),
        "{case}: called AWS before refusing: {calls:?}"
    );
}

/// `refused`'s checks; returns the AWS calls the command made (before this function's own
/// reads of the stand-in's state).
async fn refused_after(
    prod: &Prod,
    case: &str,
    mut cmd: Command,
    code: i32,
    says: &[&str],
) -> Vec<Value> {
    let before = prod.state().await;
    let (since, _) = prod.aws.requests(0).await;
    let out = cmd.output().expect("run bluegreen");
    let (_, calls) = prod.aws.requests(since).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{case}: exit code\nstderr:\n{err}"
    );
    for s in says {
        assert!(err.contains(s), "{case}: stderr does not say {s:?}:\n{err}");
    }
    let mutations = prod.aws.mutations_since(since).await;
    assert!(
        mutations.is_empty(),
        "{case}: refused, yet called {mutations:?}\n{err}"
    );
    assert_eq!(
        before,
        prod.state().await,
        "{case}: refused, yet changed state"
    );
    calls
}

/// The environment file with `from` replaced by `to` (which must be there), for one case.
struct Edited<'a> {
    prod: &'a Prod,
    original: String,
}

impl<'a> Edited<'a> {
    fn new(prod: &'a Prod, from: &str, to: &str) -> Self {
        let path = prod.config_dir.join("prod/bluegreen.toml");
        let original = std::fs::read_to_string(&path).unwrap();
        assert!(original.contains(from), "{from:?} not in the file");
        std::fs::write(&path, original.replacen(from, to, 1)).unwrap();
        Self { prod, original }
    }
}

impl Drop for Edited<'_> {
    fn drop(&mut self) {
        std::fs::write(
            self.prod.config_dir.join("prod/bluegreen.toml"),
            &self.original,
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_command_lines_and_versions_are_refused_with_exit_2() {
    let prod = Prod::start(FAST, "").await;
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "version without v",
            &["promote", "1.2.0"],
            &["\"1.2.0\" is not a release version", "such as v1.2.0"],
        ),
        (
            "two-part version",
            &["promote", "v1.2"],
            &["\"v1.2\" is not a release version"],
        ),
        (
            "shell characters",
            &["promote", "v1.2.0;rm -rf /"],
            &["is not a release version"],
        ),
        (
            "floating tag",
            &["promote", "latest"],
            &["\"latest\" is not a release version"],
        ),
        (
            "leading zero",
            &["promote", "v01.2.0"],
            &["\"v01.2.0\" is not a release version"],
        ),
        (
            "empty pre-release",
            &["promote", "v1.2.0-"],
            &["\"v1.2.0-\" is not a release version"],
        ),
        (
            "missing tag",
            &["promote", "v9.9.9"],
            &["hello:v9.9.9 does not exist", "push it first"],
        ),
        (
            "steps that fall",
            &["promote", "v1.2.0", "--steps", "50,20,100"],
            &["--steps", "steps must rise"],
        ),
        (
            "steps not ending at 100",
            &["promote", "v1.2.0", "--steps", "10,50"],
            &["--steps", "100"],
        ),
        (
            "bake not a duration",
            &["promote", "v1.2.0", "--bake", "forever"],
            &["--bake", "forever"],
        ),
        (
            "until not a phase",
            &["promote", "v1.2.0", "--until", "banana"],
            &["\"banana\" is not a phase"],
        ),
        (
            "continue with nothing paused",
            &["continue"],
            &["prod has no paused or unfinished promote to continue"],
        ),
    ];
    for (case, args, says) in cases {
        // These two need AWS to know: the tag's absence, the journal's state.
        if matches!(*case, "missing tag" | "continue with nothing paused") {
            refused(&prod, case, prod.command(args), 2, says).await;
        } else {
            refused_offline(&prod, case, prod.command(args), 2, says).await;
        }
    }
    // Every numeric flag, its variable and `--until` have a documented range, checked before
    // any AWS call (FAST's steps are 50, 100; its ready_timeout 30s).
    // (case, arguments, environment variables, what stderr says)
    type Case<'a> = (
        &'a str,
        &'a [&'a str],
        &'a [(&'a str, &'a str)],
        &'a [&'a str],
    );
    let ranges: &[Case] = &[
        (
            "until not a step",
            &["promote", "v1.2.0", "--until", "30"],
            &[],
            &[
                "--until",
                "\"30\" is not a phase this promote stops at",
                "ready, test-traffic, 50",
                "50%, 100%",
            ],
        ),
        (
            "until the last step",
            &["promote", "v1.2.0", "--until", "100"],
            &[],
            &[
                "--until",
                "\"100\" is not a phase",
                "ready, test-traffic, 50",
            ],
        ),
        (
            "until not a step of BLUEGREEN_STEPS",
            &["promote", "v1.2.0", "--until", "50"],
            &[("BLUEGREEN_STEPS", "10,100")],
            &["--until", "\"50\"", "ready, test-traffic, 10"],
        ),
        (
            "BLUEGREEN_UNTIL not a step",
            &["promote", "v1.2.0"],
            &[("BLUEGREEN_UNTIL", "75%")],
            &["--until", "\"75%\""],
        ),
        (
            "poll too short",
            &["promote", "v1.2.0", "--poll", "10ms"],
            &[],
            &["--poll", "out of range: use 50ms to 5m"],
        ),
        (
            "poll longer than the ready timeout",
            &["promote", "v1.2.0", "--poll", "1m"],
            &[],
            &["--poll", "longer than ready_timeout 30s"],
        ),
        (
            "BLUEGREEN_BAKE too long",
            &["promote", "v1.2.0"],
            &[("BLUEGREEN_BAKE", "25h")],
            &["--bake", "out of range: use 0 to 1day"],
        ),
        (
            "final bake too long",
            &["promote", "v1.2.0", "--final-bake", "3days"],
            &[],
            &["--final-bake", "out of range: use 0 to 2days"],
        ),
        (
            "ready timeout zero",
            &["promote", "v1.2.0", "--ready-timeout", "0"],
            &[],
            &["--ready-timeout", "must be greater than 0: use 1s to 2h"],
        ),
        (
            "step over 100",
            &["promote", "v1.2.0", "--steps", "50,300"],
            &[],
            &["--steps", "300"],
        ),
        (
            "no attempts",
            &["status", "--aws-max-attempts", "0"],
            &[],
            &["--aws-max-attempts", "0 is not in 1..=10"],
        ),
        (
            "BLUEGREEN_AWS_MAX_ATTEMPTS too many",
            &["status"],
            &[("BLUEGREEN_AWS_MAX_ATTEMPTS", "50")],
            &["--aws-max-attempts", "50 is not in 1..=10"],
        ),
        (
            "watch interval too short",
            &["status", "--watch", "--interval", "500ms"],
            &[],
            &["--interval", "500ms is out of range: 1s to 5m"],
        ),
        (
            "interval without --watch",
            &["status", "--interval", "10s"],
            &[],
            &["--interval", "--watch"],
        ),
        (
            "history limit zero",
            &["history", "--limit", "0"],
            &[],
            &["--limit", "0 is not in 1..=200"],
        ),
        (
            "rollback of a region not in the file",
            &["rollback", "--region", "sa-east-1"],
            &[],
            &["--region sa-east-1: not a region of prod", "us-east-1"],
        ),
        (
            "plan of a floating tag",
            &["plan", "latest"],
            &[],
            &["\"latest\" is not a release version"],
        ),
    ];
    for (case, args, vars, says) in ranges {
        let mut cmd = prod.command(args);
        cmd.envs(vars.iter().copied());
        refused_offline(&prod, case, cmd, 2, says).await;
    }
    // Not tied to `-e prod`.
    refused(
        &prod,
        "unknown subcommand",
        prod.command_raw(&["promtoe", "v1.2.0", "-e", "prod"]),
        2,
        &["promtoe"],
    )
    .await;
    let mut unknown_env = prod.command_raw(&["promote", "v1.2.0", "-e", "staging", "--config-dir"]);
    unknown_env.arg(&prod.config_dir);
    refused(
        &prod,
        "unknown environment",
        unknown_env,
        2,
        &["staging", "prod"],
    )
    .await;
    let missing_dir = prod.command_raw(&[
        "promote",
        "v1.2.0",
        "-e",
        "prod",
        "--config-dir",
        "/nonexistent/environments",
    ]);
    refused(
        &prod,
        "config dir missing",
        missing_dir,
        2,
        &["/nonexistent/environments"],
    )
    .await;
    let file = prod.aws.dir.join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let mut not_a_dir = prod.command_raw(&["promote", "v1.2.0", "-e", "prod", "--config-dir"]);
    not_a_dir.arg(&file);
    refused(
        &prod,
        "config dir is a file",
        not_a_dir,
        2,
        &[file.to_str().unwrap()],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_environment_files_are_refused_naming_file_line_and_key() {
    let prod = Prod::start(FAST, "").await;
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "TOML syntax",
            "waves = [",
            "waves = [[",
            &["prod/bluegreen.toml:"],
        ),
        (
            "section missing",
            "[source]",
            "[sauce]",
            &["prod/bluegreen.toml:", "source"],
        ),
        (
            "misspelt key",
            "listener_port = 18000",
            "listner_port = 18000",
            &["prod/bluegreen.toml:", "listner_port"],
        ),
        (
            "unknown region",
            "[regions.ap-southeast-2]",
            "[regions.mars-east-1]",
            &["prod/bluegreen.toml:", "mars-east-1"],
        ),
        (
            "account id not 12 digits",
            "account_id = \"222222222222\"",
            "account_id = \"2222\"",
            &["prod/bluegreen.toml:1", "account_id"],
        ),
        (
            "falling steps in the file",
            "steps = [50, 100]",
            "steps = [50, 20]",
            &["prod/bluegreen.toml:", "steps"],
        ),
        (
            "poll out of range in the file",
            "poll = \"100ms\"",
            "poll = \"1ms\"",
            &[
                "prod/bluegreen.toml:",
                "strategy.poll",
                "out of range: use 50ms to 5m",
            ],
        ),
        (
            "lease out of range in the file",
            "lease = \"3s\"",
            "lease = \"2h\"",
            &[
                "prod/bluegreen.toml:",
                "lock.lease",
                "out of range: use 1s to 1h",
            ],
        ),
        (
            "bake out of range in the file",
            "bake = \"300ms\"",
            "bake = \"30days\"",
            &["prod/bluegreen.toml:", "strategy.bake", "out of range"],
        ),
    ];
    for (case, from, to, says) in cases {
        let _edit = Edited::new(&prod, from, to);
        refused_offline(&prod, case, prod.command(&["promote", "v1.2.0"]), 2, says).await;
    }
    // Names that are valid in the file but not in the account.
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "missing listener",
            "listener_port = 18000",
            "listener_port = 19999",
            &["19999", "us-east-1"],
        ),
        (
            "missing target group",
            "blue_target_group = \"hello-us-east-1-blue\"",
            "blue_target_group = \"hello-us-east-1-bleu\"",
            &["hello-us-east-1-bleu", "us-east-1"],
        ),
        (
            "missing service",
            "service = \"hello\"",
            "service = \"helo\"",
            &["helo", "us-east-1"],
        ),
        (
            "missing cluster",
            "cluster = \"hello-us-east-1\"",
            "cluster = \"hello-us-east-9\"",
            &["hello-us-east-9"],
        ),
        (
            "missing load balancer",
            "load_balancer = \"hello-us-east-1\"",
            "load_balancer = \"hello-us-east-one\"",
            &["hello-us-east-one"],
        ),
        (
            "missing alarm",
            "alarms = [\"hello-eu-west-1-5xx\"]",
            "alarms = [\"hello-eu-west-1-5xx-typo\"]",
            &["hello-eu-west-1-5xx-typo"],
        ),
    ];
    for (case, from, to, says) in cases {
        let _edit = Edited::new(&prod, from, to);
        refused(&prod, case, prod.command(&["promote", "v1.2.0"]), 2, says).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_in_a_state_bluegreen_did_not_leave_are_refused() {
    let prod = Prod::start(FAST, "").await;
    let elb = elbv2::Client::new(&prod.aws.sdk_as(ACCOUNT_B, "eu-west-1").await);
    let listener = listener_on(&elb, 18000).await;
    let arn = listener.listener_arn().unwrap().to_owned();
    let original = listener.default_actions().to_vec();
    let groups: Vec<String> = original[0]
        .forward_config()
        .unwrap()
        .target_groups()
        .iter()
        .map(|t| t.target_group_arn().unwrap().to_owned())
        .collect();
    let weighted = |a: i32, b: i32| {
        elbv2::types::Action::builder()
            .r#type(elbv2::types::ActionTypeEnum::Forward)
            .forward_config(
                elbv2::types::ForwardActionConfig::builder()
                    .target_groups(
                        elbv2::types::TargetGroupTuple::builder()
                            .target_group_arn(&groups[0])
                            .weight(a)
                            .build(),
                    )
                    .target_groups(
                        elbv2::types::TargetGroupTuple::builder()
                            .target_group_arn(&groups[1])
                            .weight(b)
                            .build(),
                    )
                    .build(),
            )
            .build()
    };
    let plain = elbv2::types::Action::builder()
        .r#type(elbv2::types::ActionTypeEnum::Forward)
        .target_group_arn(&groups[0])
        .build();
    let cases: Vec<(&str, elbv2::types::Action, &[&str])> = vec![
        (
            "both colours carry traffic",
            weighted(50, 50),
            &[
                "both colours carry production traffic in eu-west-1",
                "bluegreen rollback -e prod",
            ],
        ),
        (
            "weights not summing to 100",
            weighted(30, 30),
            &[
                "weights blue 30 / green 30",
                "in eu-west-1",
                "do not sum to 100",
            ],
        ),
        ("listener not weighted", plain, &["eu-west-1", "weighted"]),
    ];
    for (case, action, says) in cases {
        elb.modify_listener()
            .listener_arn(&arn)
            .default_actions(action)
            .send()
            .await
            .unwrap();
        refused(&prod, case, prod.command(&["promote", "v1.2.0"]), 2, says).await;
        elb.modify_listener()
            .listener_arn(&arn)
            .set_default_actions(Some(original.clone()))
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_and_credentials_refuse_before_anything_changes() {
    let prod = Prod::start(FAST, "").await;

    // An alarm already firing.
    prod.set_alarm("ap-southeast-2", true, "5xx rate 9%").await;
    refused(
        &prod,
        "alarm in ALARM",
        prod.command(&["promote", "v1.2.0"]),
        2,
        &[
            "hello-ap-southeast-2-5xx in ap-southeast-2 (5xx rate 9%)",
            "--ignore-alarms",
        ],
    )
    .await;
    prod.set_alarm("ap-southeast-2", false, "5xx rate 0%").await;

    // CRITICAL scan findings.
    let findings = |counts| {
        json!({"account": ACCOUNT_A, "region": "us-east-1", "repository": "hello",
               "digest": prod.digests["v1.2.0"], "counts": counts})
    };
    prod.aws
        .control_post("scan-findings", findings(json!({"CRITICAL": 3})))
        .await;
    refused(
        &prod,
        "critical findings",
        prod.command(&["promote", "v1.2.0"]),
        2,
        &["3 CRITICAL", "--allow-findings"],
    )
    .await;
    // A release ECR could not scan: its findings are unknown, so it is refused at any
    // threshold but none (stand-in extension 6).
    let mut unscanned = findings(json!({}));
    unscanned["status"] = json!("FAILED");
    unscanned["description"] = json!("The scan failed.");
    prod.aws.control_post("scan-findings", unscanned).await;
    refused(
        &prod,
        "unscanned image",
        prod.command(&["promote", "v1.2.0"]),
        2,
        &[
            "is not scanned",
            "FAILED, The scan failed.",
            "--allow-findings",
        ],
    )
    .await;
    prod.aws
        .control_post("scan-findings", findings(json!({})))
        .await;

    // Credentials that end before the rollout could: a fixed session whose end is known.
    let mut short = prod.command(&["promote", "v1.2.0"]);
    short.env("AWS_SESSION_TOKEN", "a-session").env(
        "AWS_CREDENTIAL_EXPIRATION",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(60))
            .to_string(),
    );
    refused(
        &prod,
        "credentials too short",
        short,
        2,
        &["a fixed session ending at", "role-duration-seconds"],
    )
    .await;

    // The tag exists in a prod region with another digest.
    prod.aws
        .seed(
            json!({"account": ACCOUNT_A, "region": "us-east-1", "repository": "hello",
                     "tag": "v1.3.0", "argv": [service_binary()], "layers": 1}),
        )
        .await;
    prod.aws
        .seed(
            json!({"account": ACCOUNT_B, "region": "eu-west-1", "repository": "hello",
                     "tag": "v1.3.0", "argv": [service_binary()], "layers": 2}),
        )
        .await;
    refused(
        &prod,
        "tag on another digest in prod",
        prod.command(&["promote", "v1.3.0"]),
        2,
        &[
            "hello:v1.3.0 already exists",
            "eu-west-1",
            "tags are immutable",
        ],
    )
    .await;

    // The lock held by another deployment: 4.
    let lock = prod.lock(Duration::from_secs(600)).await;
    lock.acquire(
        "other-run",
        "arn:aws:sts::222222222222:assumed-role/ci/x",
        "v1.1.9",
    )
    .await
    .unwrap();
    refused(
        &prod,
        "lock held",
        prod.command(&["promote", "v1.2.0"]),
        4,
        &["locked by deployment other-run of v1.1.9"],
    )
    .await;
    lock.force_unlock().await.unwrap();

    // No credentials at all.
    let mut none = prod.command(&["promote", "v1.2.0"]);
    none.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    refused(
        &prod,
        "no credentials",
        none,
        2,
        &["no usable AWS credentials", "check the credentials"],
    )
    .await;
    // Credentials that have expired: AWS answers ExpiredToken (stand-in extension 7 plays it).
    prod.aws
        .fault(json!({"action": "*", "access_key": "AKIDEXPIREDEXAMPLE", "error": "expired", "times": 1000}))
        .await;
    let mut expired = prod.command(&["promote", "v1.2.0"]);
    expired.env("AWS_ACCESS_KEY_ID", "AKIDEXPIREDEXAMPLE");
    refused(
        &prod,
        "expired credentials",
        expired,
        2,
        &["GetCallerIdentity", "ExpiredToken", "have not expired"],
    )
    .await;
    // A profile that does not exist, and nothing else to go on.
    let mut profile = prod.command(&["promote", "v1.2.0"]);
    profile
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_PROFILE", "nonesuch");
    refused(
        &prod,
        "unknown profile",
        profile,
        2,
        &["no usable AWS credentials with profile \"nonesuch\""],
    )
    .await;
    // Credentials for the wrong account: the file names no role, so the caller must already be
    // in account 222222222222; moto's default caller is 123456789012.
    let _edit = Edited::new(
        &prod,
        "role_arn = \"arn:aws:iam::222222222222:role/bluegreen-deploy-prod\"\n",
        "",
    );
    refused(
        &prod,
        "wrong account",
        prod.command(&["promote", "v1.2.0"]),
        2,
        &["123456789012", "222222222222"],
    )
    .await;
}
