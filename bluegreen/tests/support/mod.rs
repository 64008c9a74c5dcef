//! The local AWS stand-in (tools/localaws) for tests: one call starts it, drop stops it.
//!
//! Every test gets its own stand-in (moto + registries + tasks + ALBs), so tests cannot see each
//! other's state. If it cannot start, the test fails with the reason and the stand-in's log.

#![allow(dead_code)] // each test binary uses its own part of the harness

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig, retry::RetryConfig, timeout::TimeoutConfig};
use aws_sdk_sts::config::Credentials;
use serde_json::{Value, json};

pub const ACCOUNT_A: &str = "111111111111";
pub const ACCOUNT_B: &str = "222222222222";

pub struct LocalAws {
    child: Child,
    pub endpoint: String,
    dir: PathBuf,
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
