//! What people read: `--help`, `plan` and `status`, as snapshots (tests/snapshots/). Ids, digests,
//! times and loopback addresses are filtered so the snapshots hold only what must not drift.

mod support;

use support::*;

const FAST: &str = "steps = [50, 100]\nbake = \"300ms\"\nfinal_bake = \"300ms\"\npoll = \"100ms\"\nready_timeout = \"30s\"\nscan_threshold = \"CRITICAL\"";

fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"\d{8}T\d{6}Z-[0-9a-f]{6}", "[DEPLOYMENT]"),
        (r"sha256:[0-9a-f]{12,64}", "sha256:[DIGEST]"),
        (r"ecs-svc/\d+", "ecs-svc/[ID]"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[TIME]"),
        (r"127\.0\.0\.1:\d+", "[REGISTRY]"),
        (r"127\.\d+\.\d+\.\d+", "[ALB]"),
        // Live counts move with health-check timing; the e2e tests assert them, the snapshot pins layout.
        (
            r"\d+ healthy, \d+ unhealthy, \d+ initial, \d+ draining",
            "[HEALTH]",
        ),
        (r"\d+/\d+ running(, steady)?", "[RUNNING]"),
    ]
}

fn help(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bluegreen"))
        .args(args)
        .env_clear()
        .env("COLUMNS", "100")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_lists_commands_and_exit_codes() {
    insta::assert_snapshot!("help", help(&["--help"]));
}

#[test]
fn promote_help_lists_strategy_overrides() {
    insta::assert_snapshot!("promote_help", help(&["promote", "--help"]));
}

#[test]
fn completions_are_generated_for_bash() {
    let script = help(&["completions", "bash"]);
    assert!(script.contains("_bluegreen()"), "{script}");
    assert!(script.contains("promote"), "{script}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_and_status_read_as_snapshotted() {
    let prod = Prod::start(FAST, "").await;
    let (code, plan, err) = prod.run(&["plan", "v1.2.0"]);
    assert_eq!(code, 0, "{err}");
    let (code, status, err) = prod.run(&["status"]);
    assert_eq!(code, 0, "{err}");
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!("plan", plan);
        insta::assert_snapshot!("status", status);
    });
}

/// `validate` reads the shipped environment files with no AWS at all (no endpoint, no
/// credentials): what CI and the release workflow use to size a session before signing in.
#[test]
fn validate_reads_the_shipped_files_without_aws() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bluegreen"))
            .args(args)
            .arg("--config-dir")
            .arg(root.join("environments"))
            .env_clear()
            .env("AWS_EC2_METADATA_DISABLED", "true")
            // Nothing listens here: any AWS call would fail the command.
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (code, out, err) = run(&["validate", "-e", "prod"]);
    assert_eq!(code, 0, "{out}{err}");
    let out = out.replace(&root.display().to_string(), "[ROOT]");
    insta::assert_snapshot!("validate", out);
    let (code, out, err) = run(&["validate", "-e", "prod", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let result: serde_json::Value = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["type"] == "result")
        .expect("a result line");
    assert!(
        result["worst_case_seconds"].as_u64().unwrap() > 3600,
        "{result}"
    );
    let (code, _, err) = run(&["validate", "-e", "nowhere"]);
    assert_eq!(code, 2, "{err}");
}
