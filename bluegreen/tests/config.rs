//! Environment files: the shipped ones load; malformed ones are refused with file:line:key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bluegreen::config::{self, ConfigError, Overrides};

#[path = "config/init.rs"]
mod init;

fn envs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("environments")
}

fn prod_text() -> String {
    std::fs::read_to_string(envs().join("prod/bluegreen.toml")).unwrap()
}

/// Parses `text` as prod's file and returns (line, key, message) of the error.
fn refuse(text: &str) -> (usize, String, String) {
    match config::parse(Path::new("prod/bluegreen.toml"), "prod", text) {
        Ok(_) => panic!("accepted a malformed file"),
        Err(ConfigError::Invalid {
            file,
            line,
            key,
            message,
        }) => {
            assert_eq!(file, Path::new("prod/bluegreen.toml"));
            (line, key, message)
        }
        Err(other) => panic!("expected a file:line:key error, got {other}"),
    }
}

/// The 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the file"));
    text[..at].matches('\n').count() + 1
}

#[test]
fn shipped_prod_file_loads_into_a_plan() {
    let plan = config::load(&envs(), "prod", &Overrides::default()).unwrap();
    assert_eq!(plan.env, "prod");
    assert_eq!(plan.account_id, "222222222222");
    assert_eq!(
        plan.role_arn.as_deref(),
        Some("arn:aws:iam::222222222222:role/bluegreen-deploy-prod")
    );
    assert_eq!(plan.source.account_id, "111111111111");
    assert_eq!(plan.source.region, "us-east-1");
    assert_eq!(
        plan.waves,
        vec![
            vec!["us-east-1".to_owned()],
            vec!["eu-west-1".to_owned(), "ap-southeast-2".to_owned()]
        ]
    );
    assert_eq!(plan.regions.len(), 3);
    let eu = &plan.regions["eu-west-1"];
    assert_eq!(eu.listener_port, 80);
    assert_eq!(eu.test_listener_port, 8080);
    assert_eq!(eu.green_target_group, "hello-prod-green");
    assert_eq!(eu.probe_path, "/health");
    assert_eq!(plan.strategy.steps, vec![10, 50, 100]);
    assert_eq!(plan.strategy.bake, Duration::from_secs(300));
    assert_eq!(plan.strategy.poll, Duration::from_secs(5));
    // The shipped service is FROM scratch, which ECR's basic scanning cannot scan.
    assert_eq!(plan.strategy.scan_threshold, None);
    assert_eq!(plan.lock.table, "bluegreen-prod");
    assert_eq!(plan.lock.lease, Duration::from_secs(120));
}

#[test]
fn shipped_preprod_file_loads_with_one_region() {
    let plan = config::load(&envs(), "preprod", &Overrides::default()).unwrap();
    assert_eq!(plan.waves, vec![vec!["us-east-1".to_owned()]]);
    assert_eq!(plan.source.account_id, plan.account_id);
}

#[test]
fn overrides_replace_the_strategy_and_are_validated() {
    let o = Overrides {
        steps: Some(vec![25, 100]),
        bake: Some(Duration::ZERO),
        poll: Some(Duration::from_millis(100)),
        ..Default::default()
    };
    let plan = config::load(&envs(), "prod", &o).unwrap();
    assert_eq!(plan.strategy.steps, vec![25, 100]);
    assert_eq!(plan.strategy.bake, Duration::ZERO);
    assert_eq!(plan.strategy.poll, Duration::from_millis(100));

    let bad = Overrides {
        steps: Some(vec![50, 20, 100]),
        ..Default::default()
    };
    let err = config::load(&envs(), "prod", &bad).unwrap_err();
    assert!(
        err.to_string().starts_with("--steps: steps must rise"),
        "{err}"
    );
}

#[test]
fn an_unknown_environment_names_the_file_and_the_known_ones() {
    let err = config::load(&envs(), "staging", &Overrides::default()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("unknown environment \"staging\""), "{msg}");
    assert!(msg.contains("staging/bluegreen.toml"), "{msg}");
    assert!(msg.contains("preprod, prod"), "{msg}");
    // A name that would escape the config dir is unknown, not a path.
    let err = config::load(&envs(), "../environments/prod", &Overrides::default()).unwrap_err();
    assert!(matches!(err, ConfigError::UnknownEnv { .. }), "{err}");
}

#[test]
fn an_unreadable_config_dir_is_named() {
    let err = config::load(Path::new("/no/such/dir"), "prod", &Overrides::default()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("/no/such/dir: cannot read it"), "{msg}");
}

/// Each case: a change to the shipped prod file, the line and key the error must name, and a
/// phrase of what it must say.
#[test]
fn malformed_files_are_refused_with_file_line_and_key() {
    let base = prod_text();
    let waves_line = line_of(&base, "waves =");
    let cases: Vec<(&str, String, usize, &str, &str)> = vec![
        (
            "unknown key",
            base.replacen(
                "load_balancer = \"hello-prod\"",
                "load_balancer = \"hello-prod\"\nloadbalancer = \"x\"",
                1,
            ),
            line_of(&base, "load_balancer = \"hello-prod\"") + 1,
            "defaults.loadbalancer",
            "unknown key",
        ),
        (
            "missing key in a region",
            base.replacen("service = \"hello\"\n", "", 1),
            // One line up: the removed `service` line was above it.
            line_of(&base, "[regions.ap-southeast-2]") - 1,
            "regions.ap-southeast-2",
            "missing key `service`; set it in [regions.ap-southeast-2], or once for every region in [defaults]",
        ),
        (
            "missing top-level key",
            base.replace("account_id = \"222222222222\"\n", ""),
            1,
            "account_id",
            "missing key `account_id`",
        ),
        (
            "bad duration",
            base.replace("bake = \"5m\"", "bake = \"five minutes\""),
            line_of(&base, "bake = \"5m\""),
            "strategy.bake",
            "is not a duration; write it like 30s",
        ),
        (
            "steps that fall",
            base.replace("[10, 50, 100]", "[10, 5, 100]"),
            line_of(&base, "steps ="),
            "strategy.steps",
            "steps must rise",
        ),
        (
            "steps that stop short of 100",
            base.replace("[10, 50, 100]", "[10, 50]"),
            line_of(&base, "steps ="),
            "strategy.steps",
            "must end at 100",
        ),
        (
            "a step over 100",
            base.replace("[10, 50, 100]", "[10, 150]"),
            line_of(&base, "steps ="),
            "strategy.steps",
            "not a percentage",
        ),
        (
            "not a region",
            base.replace("[regions.eu-west-1]", "[regions.eu-west-9]")
                .replace("\"eu-west-1\", \"ap", "\"eu-west-9\", \"ap"),
            line_of(&base, "[regions.eu-west-1]"),
            "regions.eu-west-9",
            "is not an AWS region",
        ),
        (
            "a region twice in the waves",
            base.replace(
                "[\"eu-west-1\", \"ap-southeast-2\"]",
                "[\"eu-west-1\", \"us-east-1\"]",
            ),
            waves_line,
            "waves",
            "more than once",
        ),
        (
            "a region in no wave",
            base.replace(", \"ap-southeast-2\"]", "]"),
            line_of(&base, "[regions.ap-southeast-2]"),
            "regions.ap-southeast-2",
            "is in no wave",
        ),
        (
            "a wave region without a table",
            base.replace(
                "\"ap-southeast-2\"]]",
                "\"ap-southeast-2\", \"eu-north-1\"]]",
            ),
            waves_line,
            "waves",
            "has no [regions.eu-north-1] table",
        ),
        (
            "a port as a string",
            base.replacen("listener_port = 80", "listener_port = \"80\"", 1),
            line_of(&base, "listener_port = 80"),
            "defaults.listener_port",
            "expected a whole number",
        ),
        (
            "a port out of range",
            base.replacen("test_listener_port = 8080", "test_listener_port = 70000", 1),
            line_of(&base, "test_listener_port = 8080"),
            "defaults.test_listener_port",
            "use 1 to 65535",
        ),
        (
            "the same port twice",
            base.replacen("test_listener_port = 8080", "test_listener_port = 80", 1),
            line_of(&base, "test_listener_port = 8080"),
            "defaults.test_listener_port",
            "needs its own",
        ),
        (
            "a test header an ALB rule cannot match",
            base.replacen("header = \"X-Bluegreen-Test\"", "header = \"X Bluegreen: Test\"", 1),
            line_of(&base, "header = \"X-Bluegreen-Test\""),
            "test_traffic.header",
            "is not an HTTP header name an ALB rule can match",
        ),
        (
            "a test secret parameter under the reserved aws prefix",
            base.replacen(
                "parameter = \"/bluegreen/hello-prod/test-header\"",
                "parameter = \"/aws/test-header\"",
                1,
            ),
            line_of(&base, "parameter = \"/bluegreen/hello-prod/test-header\""),
            "test_traffic.parameter",
            "is not an SSM parameter name",
        ),
        (
            "no test route",
            base.replacen(
                "[test_traffic]\nheader = \"X-Bluegreen-Test\"\nparameter = \"/bluegreen/hello-prod/test-header\"\n",
                "",
                1,
            ),
            1,
            "test_traffic",
            "missing key",
        ),
        (
            "a task family with a colon",
            base.replacen("task_family = \"hello-prod\"", "task_family = \"hello-prod:3\"", 1),
            line_of(&base, "task_family = \"hello-prod\""),
            "defaults.task_family",
            "is not a task definition family",
        ),
        (
            "blue and green the same",
            base.replacen("\"hello-prod-green\"", "\"hello-prod-blue\"", 1),
            line_of(&base, "green_target_group"),
            "defaults.green_target_group",
            "must differ",
        ),
        (
            "a short account id",
            base.replacen("\"222222222222\"", "\"2222\"", 1),
            line_of(&base, "account_id = \"222222222222\""),
            "account_id",
            "12 digits",
        ),
        (
            "a role in another account",
            base.replace("iam::222222222222:role", "iam::333333333333:role"),
            line_of(&base, "role_arn = \"arn:aws:iam::222222222222"),
            "role_arn",
            "is not a role in account 222222222222",
        ),
        (
            "a bad severity",
            base.replace("scan_threshold = \"none\"", "scan_threshold = \"SEVERE\""),
            line_of(&base, "scan_threshold"),
            "strategy.scan_threshold",
            "is not a severity",
        ),
        (
            "a probe path without a slash",
            base.replacen("probe_path = \"/health\"", "probe_path = \"health\"", 1),
            line_of(&base, "probe_path"),
            "defaults.probe_path",
            "must start with /",
        ),
        (
            "an unclosed table header",
            base.replace("[strategy]", "[strategy"),
            line_of(&base, "[strategy]"),
            "strategy",
            "unclosed table",
        ),
        (
            "a missing table",
            base[..base.find("[lock]").unwrap()].to_owned(),
            1,
            "lock",
            "missing key `lock`",
        ),
        (
            "an uppercase repository",
            base.replace(
                "[target]\nrepository = \"hello\"",
                "[target]\nrepository = \"Hello\"",
            ),
            line_of(&base, "[target]") + 1,
            "target.repository",
            "is not an ECR repository name",
        ),
        (
            "a zero poll interval",
            base.replace("poll = \"5s\"", "poll = \"0\""),
            line_of(&base, "poll = \"5s\""),
            "strategy.poll",
            "greater than 0",
        ),
    ];
    assert!(cases.len() >= 12);
    for (name, text, line, key, phrase) in cases {
        let (got_line, got_key, message) = refuse(&text);
        assert_eq!(
            (got_line, got_key.as_str()),
            (line, key),
            "{name}: wrong place; message: {message}"
        );
        assert!(
            message.contains(phrase),
            "{name}: message {message:?} lacks {phrase:?}"
        );
    }
}

#[test]
fn until_stops_only_where_the_promote_stops() {
    use bluegreen::config::Until;
    let steps = [10, 50, 100];
    for (given, want) in [
        ("ready", Until::Ready),
        ("test-traffic", Until::TestTraffic),
        ("10", Until::Weight(10)),
        ("50%", Until::Weight(50)),
    ] {
        assert_eq!(Until::resolve(given, &steps).unwrap(), want, "{given}");
    }
    for bad in ["30", "100", "0", "banana", "-10", "50%%"] {
        let err = Until::resolve(bad, &steps).unwrap_err().to_string();
        assert!(
            err.starts_with("--until: ") && err.contains("use one of: ready, test-traffic, 10, 50"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn the_worst_case_of_the_shipped_prod_strategy_counts_every_wave() {
    let plan = config::load(&envs(), "prod", &Overrides::default()).unwrap();
    // Per wave: ready 10m + test traffic 30s + bakes 5m, 5m, 10m with a 5s poll each = 30m 45s,
    // and each bake may run 5m longer for the traffic analysis to get enough requests = 45m 45s;
    // two waves, plus 10m for the copy and the cleanup.
    assert_eq!(
        plan.worst_case(),
        Duration::from_secs(2 * (1845 + 900) + 600)
    );
    let off = config::load(
        &envs(),
        "prod",
        &Overrides {
            analysis: Some(false),
            ..Overrides::default()
        },
    )
    .unwrap();
    assert_eq!(off.worst_case(), Duration::from_secs(2 * 1845 + 600));
}

#[test]
fn analysis_settings_have_defaults_and_ranges() {
    let plan = config::load(&envs(), "preprod", &Overrides::default()).unwrap();
    assert!(
        !plan.strategy.analysis.enabled,
        "preprod ships with the analysis off"
    );
    let prod = config::load(&envs(), "prod", &Overrides::default()).unwrap();
    assert_eq!(prod.strategy.analysis, config::Analysis::default());
    let base = prod_text();
    for (from, to, message) in [
        (
            "min_requests = 100",
            "min_requests = 0",
            "0 is out of range: use 1 to 1000000 requests",
        ),
        (
            "confidence = 0.99",
            "confidence = 1.5",
            "1.5 is out of range: a confidence is 0.5 to 0.9999",
        ),
        (
            "period = \"60s\"",
            "period = \"1500ms\"",
            "1s 500ms is not a GetMetricData period: use 1s, 5s, 10s, 20s, 30s or a multiple of 60s",
        ),
        (
            "period = \"60s\"",
            "period = \"90s\"",
            "1m 30s is not a GetMetricData period",
        ),
        (
            "settle = \"3m\"",
            "settle = \"1h\"",
            "1h is out of range: use 0 to 15m",
        ),
        (
            "on_inconclusive = \"proceed\"",
            "on_inconclusive = \"maybe\"",
            "\"maybe\" is not a policy; use \"proceed\" or \"rollback\"",
        ),
        (
            "enabled = true",
            "enabled = true\nwindow = 3",
            "unknown key `window`",
        ),
        (
            "probe_path = \"/health\"",
            "probe_path = \"/health\"\nprobe = \"tcp\"",
            "\"tcp\" is not a probe; use \"http\"",
        ),
    ] {
        assert!(base.contains(from), "{from}");
        let text = base.replacen(from, to, 1);
        let (line, _key, msg) = refuse(&text);
        assert!(msg.contains(message), "{to}: {msg}");
        let last = to.lines().last().unwrap();
        assert_eq!(line, line_of(&text, last), "{to}: {msg}");
    }
}

#[test]
fn defaults_are_written_once_and_a_region_says_only_what_differs() {
    let base = prod_text();
    assert_eq!(
        base.matches("cluster = ").count(),
        1,
        "the shipped prod file repeats no region key"
    );
    // eu-west-1 overrides one key; the others inherit everything.
    let text = base.replacen(
        "[regions.eu-west-1]\n",
        "[regions.eu-west-1]\nlistener_port = 443\nalarms = []\n",
        1,
    );
    let plan = config::parse(Path::new("prod/bluegreen.toml"), "prod", &text).unwrap();
    assert_eq!(plan.regions["eu-west-1"].listener_port, 443);
    assert!(plan.regions["eu-west-1"].alarms.is_empty());
    assert_eq!(plan.regions["us-east-1"].listener_port, 80);
    assert_eq!(plan.regions["us-east-1"].alarms.len(), 4);
    for r in ["us-east-1", "eu-west-1", "ap-southeast-2"] {
        assert_eq!(plan.regions[r].cluster, "hello-prod", "{r}");
        assert_eq!(plan.regions[r].task_family.as_deref(), Some("hello-prod"));
    }
    assert!(
        plan.regions["eu-west-1"]
            .describe()
            .contains("load balancer hello-prod (listener 443, test 8080)"),
        "{}",
        plan.regions["eu-west-1"].describe()
    );

    // A bad value in [defaults] is named where it was written, with the region it reached.
    let bad = base.replacen("listener_port = 80", "listener_port = 0", 1);
    let (line, key, msg) = refuse(&bad);
    assert_eq!(
        (line, key.as_str()),
        (
            line_of(&base, "listener_port = 80"),
            "defaults.listener_port"
        )
    );
    assert!(
        msg.contains("0 is not a port")
            && msg.contains("(inherited by [regions.ap-southeast-2]: fix it in [defaults], or set the key in [regions.ap-southeast-2])"),
        "{msg}"
    );
    // A region's own bad value is named in its table, without any inheritance.
    let own = base.replacen(
        "[regions.eu-west-1]\n",
        "[regions.eu-west-1]\ntest_listener_port = 80\n",
        1,
    );
    let (line, key, msg) = refuse(&own);
    assert_eq!(
        (line, key.as_str()),
        (
            line_of(&own, "test_listener_port = 80\n"),
            "regions.eu-west-1.test_listener_port"
        )
    );
    assert!(
        msg.contains("is also the production listener port") && !msg.contains("inherited"),
        "{msg}"
    );
}
