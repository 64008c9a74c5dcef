//! The local AWS stand-in (tools/localaws) for tests: one call starts it, drop stops it.
//!
//! Every test gets its own stand-in (moto + registries + tasks + ALBs), so tests cannot see each
//! other's state. If it cannot start, the test fails with the reason and the stand-in's log.

#![allow(dead_code)] // each test binary uses its own part of the harness

pub mod proxy;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig, retry::RetryConfig, timeout::TimeoutConfig};
use aws_sdk_sts::config::Credentials;
use serde_json::{Value, json};

pub const ACCOUNT_A: &str = "111111111111";
pub const ACCOUNT_B: &str = "222222222222";

/// The test route every bootstrapped world has: the test listener answers 404 unless this header
/// carries the secret, which lives in the lock region's Parameter Store (as Terraform makes it).
pub const TEST_HEADER: &str = "X-Bluegreen-Test";
pub const TEST_SECRET: &str = "localawsTestSecret0123456789abcdef";
pub const TEST_PARAMETER: &str = "/bluegreen/hello-prod/test-header";

/// The bootstrap spec's `test_traffic` for `TEST_HEADER`/`TEST_SECRET`/`TEST_PARAMETER`.
pub fn test_traffic_spec() -> Value {
    json!({"header": TEST_HEADER, "parameter": TEST_PARAMETER, "value": TEST_SECRET})
}

pub struct LocalAws {
    child: Child,
    pub endpoint: String,
    pub dir: PathBuf,
    pub http: reqwest::Client,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bluegreen/ sits in the workspace")
        .to_path_buf()
}

/// The built hello service, which seeded "good" images run.
pub fn service_binary() -> PathBuf {
    let root = workspace_root();
    let bin = root.join("target/debug/service");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "service", "--bin", "service"])
            .current_dir(&root)
            .status()
            .expect("run cargo build for the service");
        assert!(status.success(), "building the service binary failed");
    }
    bin
}

/// The argv of a "bad" release: /health answers 500 (or, with `crash`, the task exits at start).
pub fn bad_release_argv() -> Vec<String> {
    let root = workspace_root();
    vec![
        root.join(".venv/bin/python").display().to_string(),
        root.join("tools/localaws/badapp.py").display().to_string(),
    ]
}

impl LocalAws {
    pub fn start() -> Self {
        let root = workspace_root();
        let python = root.join(".venv/bin/python");
        assert!(
            python.exists(),
            "the stand-in's Python tools are not installed ({} is missing): run `make test`, \
             which installs them into .venv",
            python.display()
        );
        let dir = std::env::temp_dir().join(format!(
            "localaws-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).expect("create the stand-in's state dir");
        let ready = dir.join("ready.json");
        let log = std::fs::File::create(dir.join("localaws.log")).expect("create log");
        let child = Command::new(&python)
            .args(["-m", "localaws", "serve", "--exit-with-parent"])
            // ALB metrics in 1-second periods published 1 s after they end (AWS: 60 s, and a
            // minute or more): the analysis's test window; [strategy.analysis] below matches.
            .args(["--metric-period", "1", "--metric-delay", "1"])
            .arg("--state-dir")
            .arg(&dir)
            .arg("--ready-file")
            .arg(&ready)
            .env("PYTHONPATH", root.join("tools"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
        let mut me = LocalAws {
            child,
            endpoint: String::new(),
            dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .no_proxy()
                .build()
                .unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                let info: Value = serde_json::from_str(&text).expect("ready file is JSON");
                me.endpoint = info["endpoint"].as_str().unwrap().to_owned();
                return me;
            }
            if let Ok(Some(status)) = me.child.try_wait() {
                panic!(
                    "the stand-in exited with {status} before it was ready; its log:\n{}",
                    me.log()
                );
            }
            if Instant::now() > deadline {
                panic!("the stand-in was not ready in 60s; its log:\n{}", me.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("localaws.log")).unwrap_or_default()
    }

    /// SDK configuration for moto's default account (123456789012): dummy static credentials,
    /// the stand-in as endpoint, no retries (a retried 500 would create duplicates in moto).
    pub async fn sdk(&self, region: &str) -> SdkConfig {
        self.sdk_with(
            region,
            Credentials::new("testing", "testing", None, None, "localaws"),
        )
        .await
    }

    async fn sdk_with(&self, region: &str, creds: Credentials) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .endpoint_url(&self.endpoint)
            .credentials_provider(creds)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_timeout(Duration::from_secs(60))
                    .build(),
            )
            .load()
            .await
    }

    /// SDK configuration acting in `account`, reached by AssumeRole as bluegreen reaches it.
    pub async fn sdk_as(&self, account: &str, region: &str) -> SdkConfig {
        let base = self.sdk(region).await;
        let out = aws_sdk_sts::Client::new(&base)
            .assume_role()
            .role_arn(format!("arn:aws:iam::{account}:role/bluegreen-test"))
            .role_session_name("bluegreen-test")
            .send()
            .await
            .expect("AssumeRole on the stand-in");
        let c = out.credentials().expect("AssumeRole returns credentials");
        self.sdk_with(
            region,
            Credentials::new(
                c.access_key_id(),
                c.secret_access_key(),
                Some(c.session_token().to_owned()),
                None,
                "localaws-assumed",
            ),
        )
        .await
    }

    async fn control(&self, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/_localaws/{path}", self.endpoint);
        let req = match body {
            Some(b) => self.http.post(&url).json(&b),
            None => self.http.get(&url),
        };
        let res = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = res.status();
        let value: Value = res.json().await.expect("control API answers JSON");
        assert!(
            status.is_success(),
            "{url} answered {status}: {}\nstand-in log:\n{}",
            value["error"],
            self.log()
        );
        value
    }

    /// Any other control route, e.g. `scan-findings`.
    pub async fn control_post(&self, path: &str, body: Value) -> Value {
        self.control(path, Some(body)).await
    }

    pub async fn status(&self) -> Value {
        self.control("status", None).await
    }

    /// Makes matching AWS calls fail as AWS fails them (stand-in extension 7, `faults.py`):
    /// `{"action", "region"?, "error": "throttle"|"internal"|"unavailable", "times"?, "skip"?}`.
    pub async fn fault(&self, spec: Value) -> Value {
        self.control("faults", Some(spec)).await
    }

    /// The stand-in's AWS request log from entry `since`: (next index, entries with service,
    /// action, region, status, and `injected` for the failures it made up).
    pub async fn requests(&self, since: usize) -> (usize, Vec<Value>) {
        let v = self.control(&format!("requests?since={since}"), None).await;
        (
            v["next"].as_u64().unwrap() as usize,
            v["requests"].as_array().cloned().unwrap_or_default(),
        )
    }

    /// The AWS calls since `since` that change something, as `Action@region`.
    pub async fn mutations_since(&self, since: usize) -> Vec<String> {
        self.calls_since(since, |e| is_mutating(e["action"].as_str().unwrap_or("")))
            .await
    }

    /// The AWS calls since `since` that `keep` keeps, as `Action@region`.
    pub async fn calls_since(&self, since: usize, keep: impl Fn(&Value) -> bool) -> Vec<String> {
        let (_, log) = self.requests(since).await;
        log.iter()
            .filter(|e| keep(e))
            .map(|e| {
                format!(
                    "{}@{}",
                    e["action"].as_str().unwrap(),
                    e["region"].as_str().unwrap()
                )
            })
            .collect()
    }

    /// Pushes a fresh image to `account`/`region`'s registry and maps it to `argv`.
    pub async fn seed(&self, spec: Value) -> Value {
        self.control("seed", Some(spec)).await
    }

    /// A small good image running the hello service.
    pub async fn seed_service(&self, account: &str, region: &str, repo: &str, tag: &str) -> Value {
        let argv = vec![service_binary().display().to_string()];
        self.seed(
            json!({"account": account, "region": region, "repository": repo,
                         "tag": tag, "argv": argv}),
        )
        .await
    }

    pub async fn bootstrap(&self, spec: Value) -> Value {
        self.control("bootstrap", Some(spec)).await
    }

    /// The tasks the stand-in runs now.
    pub async fn tasks(&self) -> Vec<Value> {
        self.status().await["tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for LocalAws {
    fn drop(&mut self) {
        // SIGTERM lets the launcher stop its registries and tasks by their own ids.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The listener on `port` of the (only) load balancer `elb` sees: each Prod region has one.
pub async fn listener_on(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    port: i32,
) -> aws_sdk_elasticloadbalancingv2::types::Listener {
    let lbs = elb.describe_load_balancers().send().await.unwrap();
    let lb = lbs.load_balancers()[0].load_balancer_arn().unwrap();
    elb.describe_listeners()
        .load_balancer_arn(lb)
        .send()
        .await
        .unwrap()
        .listeners()
        .iter()
        .find(|l| l.port() == Some(port))
        .unwrap_or_else(|| panic!("no listener on port {port}"))
        .clone()
}

/// A listener's forward weights, in target group order (empty when it does not forward).
pub fn forward_weights(l: &aws_sdk_elasticloadbalancingv2::types::Listener) -> Vec<i32> {
    l.default_actions()
        .first()
        .and_then(|a| a.forward_config())
        .map(|f| {
            f.target_groups()
                .iter()
                .map(|t| t.weight().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default()
}

/// Each listener's forward weights in region `r` of a `Prod::state()`, in target group order.
pub fn listener_weights(state: &Value, r: &str) -> Vec<Vec<i64>> {
    state["regions"][r]["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            w.as_str()
                .unwrap()
                .split(|c: char| !c.is_ascii_digit())
                .filter(|n| !n.is_empty())
                .map(|n| n.parse().unwrap())
                .collect()
        })
        .collect()
}

/// Sends `sig` (e.g. "KILL", "INT") to a child process.
pub fn signal(child: &Child, sig: &str) {
    assert!(
        Command::new("kill")
            .args([format!("-{sig}"), child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
}

/// Whether an AWS API action changes state (by AWS's naming: every mutating action of ECS,
/// ELBv2, ECR, DynamoDB, CloudWatch and STS starts with one of these verbs; AssumeRole does not
/// count, it changes nothing an operator sees).
pub fn is_mutating(action: &str) -> bool {
    const VERBS: [&str; 16] = [
        "Create",
        "Modify",
        "Put",
        "Update",
        "Delete",
        "Register",
        "Deregister",
        "Set",
        "Tag",
        "Untag",
        "Start",
        "Stop",
        "Run",
        "Initiate",
        "Complete",
        "Upload",
    ];
    VERBS.iter().any(|v| action.starts_with(v))
        || matches!(
            action,
            "BatchDeleteImage" | "BatchWriteItem" | "TransactWriteItems"
        )
}

/// A region spec for bootstrap with the names every test uses.
pub fn region_spec(region: &str, listener_port: u16, desired: u32) -> Value {
    json!({
        "region": region,
        "cluster": format!("hello-{region}"),
        "service": "hello",
        "load_balancer": format!("hello-{region}"),
        "listener_port": listener_port,
        "test_listener_port": listener_port + 1,
        "blue_target_group": format!("hello-{region}-blue"),
        "green_target_group": format!("hello-{region}-green"),
        "alarms": [format!("hello-{region}-5xx")],
        "desired_count": desired,
        "container_port": 8080,
    })
}

/// Polls `check` every 50 ms until it returns Some, or panics after `limit` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A prod environment on the stand-in: account B, three regions in two waves, images promoted
/// from account A's registry, v1.1.0 live everywhere, and bluegreen's environment file for it.
pub struct Prod {
    pub aws: LocalAws,
    /// The regions of the environment file, in wave order.
    pub regions: Vec<String>,
    pub config_dir: PathBuf,
    pub dns: std::collections::BTreeMap<String, String>,
    pub digests: std::collections::BTreeMap<String, String>,
}

/// `[strategy.analysis]` for the stand-in's 1-second metric periods, with no bake extension.
pub const ANALYSIS_QUIET: &str =
    "\n[strategy.analysis]\nperiod = \"1s\"\nsettle = \"1s\"\nmax_extension = \"0s\"\n";

pub const PROD_REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-2"];

impl Prod {
    /// `strategy` is the `[strategy]` table's body; `hooks` the `[hooks]` table's, if any.
    pub async fn start(strategy: &str, hooks: &str) -> Self {
        Self::start_in(
            &PROD_REGIONS,
            "[[\"us-east-1\"], [\"eu-west-1\", \"ap-southeast-2\"]]",
            strategy,
            hooks,
        )
        .await
    }

    /// Like `start`, with `regions` in `waves` (TOML, e.g. `[["us-east-1", "eu-west-1"]]`).
    pub async fn start_in(regions: &[&str], waves: &str, strategy: &str, hooks: &str) -> Self {
        Self::start_with(regions, waves, strategy, hooks, &[]).await
    }

    /// Like `start_in`; the regions in `empty` are as a fresh `terraform apply` leaves them: the
    /// service has no task set, and production points at blue, which has no targets.
    pub async fn start_with(
        regions: &[&str],
        waves: &str,
        strategy: &str,
        hooks: &str,
        empty: &[&str],
    ) -> Self {
        let aws = LocalAws::start();
        let mut digests = std::collections::BTreeMap::new();
        let argv = vec![service_binary().display().to_string()];
        let mut live_image = String::new();
        for (tag, argv) in [
            ("v1.1.0", argv.clone()),
            ("v1.2.0", argv.clone()),
            ("v1.2.1", bad_release_argv()),
        ] {
            let seeded = aws
                .seed(
                    json!({"account": ACCOUNT_A, "region": "us-east-1", "repository": "hello",
                             "tag": tag, "argv": argv, "layers": 2, "layer_size": 4096}),
                )
                .await;
            if tag == "v1.1.0" {
                live_image = seeded["image"].as_str().unwrap().to_owned();
            }
            digests.insert(
                tag.to_owned(),
                seeded["digest"].as_str().unwrap().to_owned(),
            );
        }
        let specs: Vec<Value> = regions
            .iter()
            .map(|r| {
                let mut spec = region_spec(r, 18000, 2);
                spec["empty"] = json!(empty.contains(r));
                spec
            })
            .collect();
        let out = aws
            .bootstrap(json!({
                "account": ACCOUNT_B, "image": live_image, "app_version": "v1.1.0",
                "repository": "hello",
                "lock_table": {"name": "bluegreen-prod", "region": "us-east-1"},
                "test_traffic": test_traffic_spec(),
                "regions": specs,
            }))
            .await;
        let dns = regions
            .iter()
            .map(|r| {
                (
                    r.to_string(),
                    out["regions"][r]["dns_name"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let config_dir = aws.dir.join("environments");
        std::fs::create_dir_all(config_dir.join("prod")).unwrap();
        let mut file = format!(
            "account_id = \"{ACCOUNT_B}\"\n\
             role_arn = \"arn:aws:iam::{ACCOUNT_B}:role/bluegreen-deploy-prod\"\n\
             waves = {waves}\n\n\
             [source]\naccount_id = \"{ACCOUNT_A}\"\nregion = \"us-east-1\"\nrepository = \"hello\"\n\
             role_arn = \"arn:aws:iam::{ACCOUNT_A}:role/bluegreen-ecr-read-prod\"\n\n\
             [target]\nrepository = \"hello\"\n\n\
             [test_traffic]\nheader = \"{TEST_HEADER}\"\nparameter = \"{TEST_PARAMETER}\"\n\n"
        );
        for r in regions {
            file += &format!(
                "[regions.{r}]\ncluster = \"hello-{r}\"\nservice = \"hello\"\nload_balancer = \"hello-{r}\"\n\
                 listener_port = 18000\ntest_listener_port = 18001\n\
                 blue_target_group = \"hello-{r}-blue\"\ngreen_target_group = \"hello-{r}-green\"\n\
                 alarms = [\"hello-{r}-5xx\"]\ntask_family = \"hello\"\n\n"
            );
        }
        // Unless a test sets its own, the analysis reads the stand-in's 1-second metrics and,
        // with no background traffic in most tests, ends each bake inconclusive at once.
        let analysis = if strategy.contains("[strategy.analysis]") {
            ""
        } else {
            ANALYSIS_QUIET
        };
        file += &format!(
            "[strategy]\n{strategy}\n{analysis}\n[lock]\ntable = \"bluegreen-prod\"\nregion = \"us-east-1\"\nlease = \"3s\"\n"
        );
        if !hooks.is_empty() {
            file += &format!("\n[hooks]\n{hooks}\n");
        }
        std::fs::write(config_dir.join("prod/bluegreen.toml"), file).unwrap();
        let prod = Prod {
            aws,
            regions: regions.iter().map(|r| r.to_string()).collect(),
            config_dir,
            dns,
            digests,
        };
        prod.settle(empty).await;
        prod
    }

    /// Waits until every region's live task set is steady, all its targets healthy, and its ALB
    /// answers, so a test starts from what an operator would see, not a half-started bootstrap.
    /// (`empty`: regions with no release, which have nothing to settle.)
    pub async fn settle(&self, empty: &[&str]) {
        for r in self.regions.iter().filter(|r| !empty.contains(&r.as_str())) {
            let cfg = self.aws.sdk_as(ACCOUNT_B, r).await;
            let elb = aws_sdk_elasticloadbalancingv2::Client::new(&cfg);
            let ecs = aws_sdk_ecs::Client::new(&cfg);
            eventually(
                &format!("{r} to be steady and healthy"),
                Duration::from_secs(30),
                || async {
                    let sets = ecs
                        .describe_task_sets()
                        .cluster(format!("hello-{r}"))
                        .service("hello")
                        .send()
                        .await
                        .ok()?;
                    let steady = !sets.task_sets().is_empty()
                        && sets.task_sets().iter().all(|t| {
                            t.stability_status()
                                == Some(&aws_sdk_ecs::types::StabilityStatus::SteadyState)
                        });
                    let tgs = elb.describe_target_groups().send().await.ok()?;
                    let mut healthy = 0;
                    for tg in tgs.target_groups() {
                        let h = elb
                            .describe_target_health()
                            .target_group_arn(tg.target_group_arn()?)
                            .send()
                            .await
                            .ok()?;
                        for d in h.target_health_descriptions() {
                            if d.target_health()?.state()?.as_str() != "healthy" {
                                return None;
                            }
                            healthy += 1;
                        }
                    }
                    (steady && healthy > 0).then_some(())
                },
            )
            .await;
            let url = format!("http://{}:18000/health", self.dns[r]);
            eventually(
                &format!("{r}'s ALB to answer at {url}"),
                Duration::from_secs(30),
                || async {
                    let res = self.aws.http.get(&url).send().await.ok()?;
                    (res.status() == 200).then_some(())
                },
            )
            .await;
        }
    }

    /// `bluegreen <args> -e prod` with the stand-in as AWS; never reaches beyond loopback.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.command_raw(args);
        cmd.args(["-e", "prod", "--config-dir"])
            .arg(&self.config_dir);
        cmd
    }

    /// `bluegreen <args>` exactly, with the same environment as `command`.
    pub fn command_raw(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bluegreen"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_ENDPOINT_URL", &self.aws.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("BLUEGREEN_AWS_MAX_ATTEMPTS", "1");
        cmd
    }

    /// Runs to completion; returns (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.command(args).output().expect("run bluegreen");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts `bluegreen <args>` and returns once a line of its stderr contains `marker`, with a
    /// thread collecting the whole of stderr. Panics, with what it printed, if the line never comes.
    pub fn spawn_until(
        &self,
        args: &[&str],
        marker: &str,
        extra_env: &[(&str, &str)],
    ) -> (Child, std::thread::JoinHandle<String>) {
        use std::io::{BufRead, BufReader};
        let mut child = self
            .command(args)
            .envs(extra_env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let marker_owned = marker.to_owned();
        let reader = std::thread::spawn(move || {
            let mut all = String::new();
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                all.push_str(&line);
                all.push('\n');
                if line.contains(&marker_owned)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(());
                }
            }
            all
        });
        if rx.recv_timeout(Duration::from_secs(90)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{args:?} never printed {marker:?}; it printed:\n{}",
                reader.join().unwrap()
            );
        }
        (child, reader)
    }

    /// The HTTP status of GET `/health` on the region's test listener, with the test header's
    /// `value` when given.
    pub async fn test_listener_status(&self, region: &str, value: Option<&str>) -> (u16, Value) {
        let mut req = self
            .aws
            .http
            .get(format!("http://{}:18001/health", self.dns[region]));
        if let Some(v) = value {
            req = req.header(TEST_HEADER, v);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// The versions the region's ALB answers over `n` requests.
    pub async fn versions(
        &self,
        region: &str,
        n: usize,
    ) -> std::collections::BTreeMap<String, usize> {
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..n {
            let res = self
                .aws
                .http
                .get(format!("http://{}:18000/health", self.dns[region]))
                .send()
                .await
                .unwrap();
            let v: Value = res.json().await.unwrap();
            *seen
                .entry(v["version"].as_str().unwrap_or("?").to_owned())
                .or_insert(0) += 1;
        }
        seen
    }

    /// rollout.md's invariants for a settled environment: every region answers only `version`
    /// and runs exactly one task set, and each of its listeners forwards to exactly the two
    /// target groups with weights summing to 100, one of them carrying all of it.
    pub async fn assert_everywhere(&self, version: &str) {
        for r in &self.regions {
            let seen = self.versions(r, 20).await;
            assert_eq!(
                seen.keys().collect::<Vec<_>>(),
                vec![version],
                "{r} answered {seen:?}"
            );
            let state = self.state().await;
            let sets = state["regions"][r]["task_sets"].as_array().unwrap();
            assert_eq!(sets.len(), 1, "{r}: {sets:?}");
            for w in listener_weights(&state, r) {
                assert!(
                    w == [100, 0] || w == [0, 100],
                    "{r}: a listener forwards with weights {w:?}, not all to one of the two groups"
                );
            }
        }
    }

    /// Sets region `r`'s 5xx alarm (`hello-<r>-5xx`) to ALARM (`firing`) or OK, with `reason`, as
    /// CloudWatch would when its metric crosses the threshold.
    pub async fn set_alarm(&self, r: &str, firing: bool, reason: &str) {
        use aws_sdk_cloudwatch::types::StateValue;
        aws_sdk_cloudwatch::Client::new(&self.aws.sdk_as(ACCOUNT_B, r).await)
            .set_alarm_state()
            .alarm_name(format!("hello-{r}-5xx"))
            .state_value(if firing {
                StateValue::Alarm
            } else {
                StateValue::Ok
            })
            .state_reason(reason)
            .send()
            .await
            .unwrap();
    }

    /// Prod's deployment lock (table bluegreen-prod in us-east-1, account B), with `lease` for
    /// what this handle acquires.
    pub async fn lock(&self, lease: Duration) -> bluegreen::aws::lock::Lock {
        let ddb = aws_sdk_dynamodb::Client::new(&self.aws.sdk_as(ACCOUNT_B, "us-east-1").await);
        bluegreen::aws::lock::Lock::new(ddb, "bluegreen-prod", "us-east-1", "prod", lease)
    }

    /// The newest promote in the journal (outcome, regions) and who holds the lock.
    pub async fn journal_latest(&self) -> Value {
        let ddb = aws_sdk_dynamodb::Client::new(&self.aws.sdk_as(ACCOUNT_B, "us-east-1").await);
        let journal =
            bluegreen::aws::journal::Journal::new(ddb, "bluegreen-prod", "us-east-1", "prod");
        let lock = self.lock(Duration::from_secs(3)).await;
        let history = journal.history(5).await.unwrap();
        let promote = history.first();
        json!({
            "outcome": promote.and_then(|r| r.outcome),
            "regions": promote.map(|r| serde_json::to_value(&r.regions).unwrap()),
            "lock": lock.holder().await.unwrap().map(|h| h.deployment),
        })
    }

    /// Everything a command could change, for before/after comparisons: weights, task sets,
    /// task definitions, lock, journal size, ECR images in the target account.
    pub async fn state(&self) -> Value {
        let mut regions = serde_json::Map::new();
        for r in &self.regions {
            let cfg = self.aws.sdk_as(ACCOUNT_B, r).await;
            let elb = aws_sdk_elasticloadbalancingv2::Client::new(&cfg);
            let ecs = aws_sdk_ecs::Client::new(&cfg);
            let ecr = aws_sdk_ecr::Client::new(&cfg);
            let lbs = elb.describe_load_balancers().send().await.unwrap();
            let lb = lbs.load_balancers()[0]
                .load_balancer_arn()
                .unwrap()
                .to_owned();
            let listeners = elb
                .describe_listeners()
                .load_balancer_arn(&lb)
                .send()
                .await
                .unwrap();
            // Every forward of the ALB: listeners' default actions and their rules' actions
            // (the test route is a rule; its listener answers a fixed 404 otherwise).
            let forward = |a: &aws_sdk_elasticloadbalancingv2::types::Action| {
                a.forward_config().map(|f| {
                    format!(
                        "{:?}",
                        f.target_groups()
                            .iter()
                            .map(|t| t.weight())
                            .collect::<Vec<_>>()
                    )
                })
            };
            let mut weights: Vec<String> = Vec::new();
            let mut fixed: Vec<String> = Vec::new();
            for l in listeners.listeners() {
                let rules = elb
                    .describe_rules()
                    .listener_arn(l.listener_arn().unwrap())
                    .send()
                    .await
                    .unwrap();
                for rule in rules.rules() {
                    for a in rule.actions() {
                        match (forward(a), a.fixed_response_config()) {
                            (Some(w), _) => weights.push(w),
                            (None, Some(f)) => fixed.push(format!(
                                "{} {}",
                                l.port().unwrap_or_default(),
                                f.status_code().unwrap_or_default()
                            )),
                            (None, None) => {}
                        }
                    }
                }
            }
            let sets = ecs
                .describe_task_sets()
                .cluster(format!("hello-{r}"))
                .service("hello")
                .send()
                .await
                .unwrap();
            let task_sets: Vec<String> = sets
                .task_sets()
                .iter()
                .map(|t| {
                    format!(
                        "{} {} {:?}",
                        t.id().unwrap(),
                        t.status().unwrap(),
                        t.scale().map(|s| s.value())
                    )
                })
                .collect();
            let images = ecr
                .describe_images()
                .repository_name("hello")
                .send()
                .await
                .map(|o| o.image_details().len())
                .unwrap_or(0);
            let task_definitions = ecs
                .list_task_definitions()
                .send()
                .await
                .unwrap()
                .task_definition_arns()
                .to_vec();
            regions.insert(
                r.into(),
                json!({"weights": weights, "fixed_responses": fixed, "task_sets": task_sets,
                       "images": images, "task_definitions": task_definitions}),
            );
        }
        let ddb = aws_sdk_dynamodb::Client::new(&self.aws.sdk_as(ACCOUNT_B, "us-east-1").await);
        let items = ddb
            .scan()
            .table_name("bluegreen-prod")
            .send()
            .await
            .unwrap()
            .count();
        json!({"regions": regions, "lock_and_journal_items": items})
    }
}
