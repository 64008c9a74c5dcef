//! Environment files (`<config-dir>/<env>/bluegreen.toml`) and their overrides, resolved into a
//! validated [`Plan`] before any AWS call. Every error names the file, the line and the key, and
//! says what is allowed.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

/// The environment file's name inside `<config-dir>/<env>/`.
pub const FILE_NAME: &str = "bluegreen.toml";

/// Everything promote and rollback need to know about one environment, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub env: String,
    pub file: PathBuf,
    pub account_id: String,
    pub role_arn: Option<String>,
    pub source: Source,
    /// The target repository, in every region of `account_id`.
    pub repository: String,
    /// Ordered waves of region names; regions of a wave run in parallel.
    pub waves: Vec<Vec<String>>,
    pub regions: BTreeMap<String, RegionPlan>,
    pub strategy: Strategy,
    pub lock: LockPlan,
    pub hooks: Hooks,
    pub test_traffic: TestTraffic,
}

/// How test traffic reaches the new colour before production does: the test listener forwards
/// only requests that carry `header` with a secret value, kept in SSM Parameter Store
/// (`parameter`, read from the lock's region). Every other request to the test port gets the
/// listener's fixed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestTraffic {
    pub header: String,
    pub parameter: String,
}

/// Where images are promoted from (for prod, preprod's registry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub account_id: String,
    pub region: String,
    pub repository: String,
    pub role_arn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionPlan {
    pub region: String,
    pub cluster: String,
    pub service: String,
    pub load_balancer: String,
    pub listener_port: u16,
    pub test_listener_port: u16,
    pub blue_target_group: String,
    pub green_target_group: String,
    pub alarms: Vec<String>,
    pub probe_path: String,
    /// The container whose image is replaced; `None` means the task definition has only one.
    pub container: Option<String>,
    /// The task definition family a region's first release is registered from (a region with
    /// no live release has no task set to copy one from).
    pub task_family: Option<String>,
    /// `[test_traffic].header`: the header the test listener's rule matches.
    pub test_header: String,
    /// Whether the gate sends HTTP probes to the load balancer (`probe = "none"`: the runner
    /// cannot reach an internal ALB; the gate then judges through AWS APIs only).
    pub probe: Probe,
}

impl RegionPlan {
    /// The region's resolved settings on one line (`[defaults]` filled in), for `validate` and
    /// `plan`.
    pub fn describe(&self) -> String {
        let probe = match self.probe {
            Probe::Http => format!("probe http {}", self.probe_path),
            Probe::None => "probe none".to_owned(),
        };
        let alarms = if self.alarms.is_empty() {
            "no alarms".to_owned()
        } else {
            format!("alarms {}", self.alarms.join(", "))
        };
        let mut line = format!(
            "cluster {}, service {}, load balancer {} (listener {}, test {}), target groups {} / {}, \
             {alarms}, {probe}",
            self.cluster,
            self.service,
            self.load_balancer,
            self.listener_port,
            self.test_listener_port,
            self.blue_target_group,
            self.green_target_group,
        );
        if let Some(c) = &self.container {
            line += &format!(", container {c}");
        }
        if let Some(f) = &self.task_family {
            line += &format!(", task family {f}");
        }
        line
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Probe {
    #[default]
    Http,
    None,
}

impl Probe {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::None => "none",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Strategy {
    /// Percent of production traffic on the new release after each step; rises to 100.
    pub steps: Vec<u8>,
    pub bake: Duration,
    pub final_bake: Duration,
    pub poll: Duration,
    /// How long the new task set may take to run and turn healthy.
    pub ready_timeout: Duration,
    /// Refuse images with ECR scan findings at or above this severity.
    pub scan_threshold: Option<Severity>,
    /// How long preflight waits for ECR to finish scanning a fresh push.
    pub scan_wait: Duration,
    /// `[strategy.analysis]`: the new colour judged against the previous one by ALB metrics.
    pub analysis: Analysis,
}

/// `[strategy.analysis]`: how the traffic analysis (`rollout::analysis`) judges the new colour
/// against the previous one during every bake. Every key has a default that works unconfigured.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub enabled: bool,
    /// Requests each colour needs in the window before the analysis judges at all.
    pub min_requests: u64,
    /// 1 − the chance, shared by every step's end, of failing a release whose error rate is the
    /// previous one's (0.5..0.9999).
    pub confidence: f64,
    /// Percentage points the new error rate must exceed the previous one by (practical
    /// significance: a difference smaller than this never fails a release).
    pub error_increase_pct: f64,
    /// The new p99 latency fails above the previous p99 times this ...
    pub latency_ratio: f64,
    /// ... and above it by more than this.
    pub latency_increase: Duration,
    /// GetMetricData period: ALB metrics have 60-second resolution, so a multiple of 60 s on AWS.
    pub period: Duration,
    /// The newest metrics are incomplete for one to three minutes: the window ends this long ago.
    pub settle: Duration,
    /// How much longer a bake may run to collect `min_requests`.
    pub max_extension: Duration,
    /// What an analysis still without enough requests at the end of its extension does.
    pub on_inconclusive: OnInconclusive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInconclusive {
    /// Go on with the gate's other checks (health, tasks, alarms, probe) as the judgment.
    Proceed,
    /// Treat it as a failed gate: roll back.
    Rollback,
}

impl OnInconclusive {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Proceed => "proceed",
            Self::Rollback => "rollback",
        }
    }
}

impl Default for Analysis {
    fn default() -> Self {
        Self {
            enabled: true,
            min_requests: 100,
            confidence: 0.99,
            error_increase_pct: 0.5,
            latency_ratio: 1.5,
            latency_increase: Duration::from_millis(50),
            period: secs(60),
            settle: secs(180),
            max_extension: secs(300),
            on_inconclusive: OnInconclusive::Proceed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "INFORMATIONAL" => Self::Informational,
            "LOW" => Self::Low,
            "MEDIUM" => Self::Medium,
            "HIGH" => Self::High,
            "CRITICAL" => Self::Critical,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Informational => "INFORMATIONAL",
            Self::Low => "LOW",
            Self::Medium => "MEDIUM",
            Self::High => "HIGH",
            Self::Critical => "CRITICAL",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockPlan {
    pub table: String,
    pub region: String,
    /// A lock not renewed for this long may be taken over.
    pub lease: Duration,
}

/// Commands run around a rollout (they replace CodeDeploy's Lambda hooks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    pub pre_traffic: Option<Vec<String>>,
    pub post_shift: Option<Vec<String>>,
    pub on_rollback: Option<Vec<String>>,
}

/// How long the test listener may take to answer the new version before the pre-traffic
/// check fails (a listener change takes a moment to reach every ALB node).
pub const TEST_TRAFFIC_WINDOW: Duration = Duration::from_secs(30);

/// Time a rollout's worst case allows, besides the waves, for the image copy and the final
/// cleanup or a rollback.
pub const OUTSIDE_WAVES: Duration = Duration::from_secs(600);

impl Plan {
    /// The longest a promote of this plan may run: the wait for ECR's scan (with a threshold);
    /// per wave, the new task set's ready timeout, the test-traffic window, and every bake with
    /// one more gate poll each; plus `OUTSIDE_WAVES`. Hooks run as long as they run and are not
    /// counted.
    pub fn worst_case(&self) -> Duration {
        let st = &self.strategy;
        // A bake may run on until the analysis has enough requests.
        let extension = if st.analysis.enabled {
            st.analysis.max_extension
        } else {
            Duration::ZERO
        };
        let bakes: Duration = st
            .steps
            .iter()
            .map(|&s| if s == 100 { st.final_bake } else { st.bake } + st.poll + extension)
            .sum();
        let wave = st.ready_timeout + TEST_TRAFFIC_WINDOW + bakes;
        let scan = if st.scan_threshold.is_some() {
            st.scan_wait
        } else {
            Duration::ZERO
        };
        scan + wave * self.waves.len() as u32 + OUTSIDE_WAVES
    }
}

/// Flag and environment-variable layers over the file (file < env < flags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub steps: Option<Vec<u8>>,
    pub bake: Option<Duration>,
    pub final_bake: Option<Duration>,
    pub poll: Option<Duration>,
    pub ready_timeout: Option<Duration>,
    /// `--analysis on|off`.
    pub analysis: Option<bool>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "unknown environment {env:?}: {path} does not exist; environments in {dir}: {known}",
        path = path.display(), dir = dir.display()
    )]
    UnknownEnv {
        env: String,
        path: PathBuf,
        dir: PathBuf,
        known: String,
    },
    #[error("{path}: cannot read it: {reason}; check the path and its permissions", path = path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("{file}:{line}: {key}: {message}", file = file.display())]
    Invalid {
        file: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    #[error("{flag}: {message}")]
    Override { flag: &'static str, message: String },
}

// ---- the file as written ----------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    account_id: Spanned<String>,
    role_arn: Option<Spanned<String>>,
    source: Spanned<RawSource>,
    target: RawTarget,
    waves: Spanned<Vec<Vec<Spanned<String>>>>,
    regions: Spanned<BTreeMap<Spanned<String>, Spanned<RawRegion>>>,
    /// Keys every `[regions.<name>]` table inherits unless it sets its own.
    #[serde(default)]
    defaults: RawRegion,
    strategy: RawStrategy,
    lock: RawLock,
    #[serde(default)]
    hooks: RawHooks,
    test_traffic: Spanned<RawTestTraffic>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTestTraffic {
    header: Spanned<String>,
    parameter: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    account_id: Spanned<String>,
    region: Spanned<String>,
    repository: Spanned<String>,
    role_arn: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    repository: Spanned<String>,
}

/// A region's keys as written: in `[regions.<name>]`, or once for every region in `[defaults]`
/// (a region's own value wins). Every key is optional here; `resolve` says what is missing.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRegion {
    cluster: Option<Spanned<String>>,
    service: Option<Spanned<String>>,
    load_balancer: Option<Spanned<String>>,
    listener_port: Option<Spanned<i64>>,
    test_listener_port: Option<Spanned<i64>>,
    blue_target_group: Option<Spanned<String>>,
    green_target_group: Option<Spanned<String>>,
    alarms: Option<Vec<Spanned<String>>>,
    probe_path: Option<Spanned<String>>,
    container: Option<Spanned<String>>,
    task_family: Option<Spanned<String>>,
    probe: Option<Spanned<String>>,
}

/// A region's keys with `[defaults]` filled in, each still pointing where it was written.
struct Resolved {
    cluster: Spanned<String>,
    service: Spanned<String>,
    load_balancer: Spanned<String>,
    listener_port: Spanned<i64>,
    test_listener_port: Spanned<i64>,
    blue_target_group: Spanned<String>,
    green_target_group: Spanned<String>,
    alarms: Vec<Spanned<String>>,
    probe_path: Option<Spanned<String>>,
    container: Option<Spanned<String>>,
    task_family: Option<Spanned<String>>,
    probe: Option<Spanned<String>>,
}

/// `region`'s own keys over `defaults`; a required key in neither is named with where to put it.
fn resolve(
    src: &Source_,
    name: &str,
    table: &Spanned<RawRegion>,
    defaults: &RawRegion,
) -> Result<Resolved, ConfigError> {
    let r = table.get_ref();
    let either = |own: &Option<Spanned<String>>, inherited: &Option<Spanned<String>>| {
        own.as_ref().or(inherited.as_ref()).cloned()
    };
    let missing = |key: &str| {
        src.err_key(
            table.span(),
            format!("regions.{name}"),
            format!(
                "missing key `{key}`; set it in [regions.{name}], or once for every region in \
                 [defaults]"
            ),
        )
    };
    let need = |own: &Option<Spanned<String>>, inherited: &Option<Spanned<String>>, key: &str| {
        either(own, inherited).ok_or_else(|| missing(key))
    };
    let number = |own: &Option<Spanned<i64>>, inherited: &Option<Spanned<i64>>, key: &str| {
        own.as_ref()
            .or(inherited.as_ref())
            .cloned()
            .ok_or_else(|| missing(key))
    };
    let d = defaults;
    Ok(Resolved {
        cluster: need(&r.cluster, &d.cluster, "cluster")?,
        service: need(&r.service, &d.service, "service")?,
        load_balancer: need(&r.load_balancer, &d.load_balancer, "load_balancer")?,
        listener_port: number(&r.listener_port, &d.listener_port, "listener_port")?,
        test_listener_port: number(
            &r.test_listener_port,
            &d.test_listener_port,
            "test_listener_port",
        )?,
        blue_target_group: need(
            &r.blue_target_group,
            &d.blue_target_group,
            "blue_target_group",
        )?,
        green_target_group: need(
            &r.green_target_group,
            &d.green_target_group,
            "green_target_group",
        )?,
        alarms: r
            .alarms
            .as_ref()
            .or(d.alarms.as_ref())
            .cloned()
            .unwrap_or_default(),
        probe_path: either(&r.probe_path, &d.probe_path),
        container: either(&r.container, &d.container),
        task_family: either(&r.task_family, &d.task_family),
        probe: either(&r.probe, &d.probe),
    })
}

/// An error in a value `[defaults]` gave `region` says so: the fix may be in either table.
fn inherited_by(e: ConfigError, region: &str) -> ConfigError {
    match e {
        ConfigError::Invalid {
            file,
            line,
            key,
            message,
        } if key.starts_with("defaults.") => ConfigError::Invalid {
            file,
            line,
            key,
            message: format!(
                "{message} (inherited by [regions.{region}]: fix it in [defaults], or set the key in \
                 [regions.{region}])"
            ),
        },
        other => other,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStrategy {
    steps: Spanned<Vec<i64>>,
    bake: Spanned<String>,
    final_bake: Spanned<String>,
    poll: Spanned<String>,
    ready_timeout: Spanned<String>,
    scan_threshold: Option<Spanned<String>>,
    scan_wait: Option<Spanned<String>>,
    analysis: Option<RawAnalysis>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnalysis {
    enabled: Option<bool>,
    min_requests: Option<Spanned<i64>>,
    confidence: Option<Spanned<f64>>,
    error_increase_pct: Option<Spanned<f64>>,
    latency_ratio: Option<Spanned<f64>>,
    latency_increase: Option<Spanned<String>>,
    period: Option<Spanned<String>>,
    settle: Option<Spanned<String>>,
    max_extension: Option<Spanned<String>>,
    on_inconclusive: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLock {
    table: Spanned<String>,
    region: Spanned<String>,
    lease: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHooks {
    pre_traffic: Option<Spanned<Vec<String>>>,
    post_shift: Option<Spanned<Vec<String>>>,
    on_rollback: Option<Spanned<Vec<String>>>,
}

/// Commercial, GovCloud and China regions where ECS, ELBv2 and ECR exist.
pub const REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-south-1",
    "ap-south-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-south-1",
    "eu-south-2",
    "eu-north-1",
    "il-central-1",
    "me-south-1",
    "me-central-1",
    "mx-central-1",
    "sa-east-1",
    "us-gov-east-1",
    "us-gov-west-1",
    "cn-north-1",
    "cn-northwest-1",
];

/// The file for `env` inside `config_dir`.
pub fn env_file(config_dir: &Path, env: &str) -> PathBuf {
    config_dir.join(env).join(FILE_NAME)
}

/// Loads `<config_dir>/<env>/bluegreen.toml` and applies `overrides`.
pub fn load(config_dir: &Path, env: &str, overrides: &Overrides) -> Result<Plan, ConfigError> {
    let valid_name = !env.is_empty()
        && env
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let path = env_file(config_dir, env);
    if !valid_name || !path.is_file() {
        if let Err(e) = std::fs::read_dir(config_dir) {
            return Err(ConfigError::Unreadable {
                path: config_dir.to_path_buf(),
                reason: e.to_string(),
            });
        }
        return Err(ConfigError::UnknownEnv {
            env: env.to_owned(),
            path,
            dir: config_dir.to_path_buf(),
            known: known_envs(config_dir),
        });
    }
    let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Unreadable {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let mut plan = parse(&path, env, &text)?;
    apply(&mut plan.strategy, overrides)?;
    Ok(plan)
}

/// The environments that have a file in `config_dir`, for error messages.
pub fn known_envs(config_dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(config_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(FILE_NAME).is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Where an error points: the file, and the text to find the line and key from.
struct Source_<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Source_<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|b| *b == b'\n')
            .count()
            + 1
    }

    /// The dotted key at `offset`: the table header above it plus the key on its line.
    fn key(&self, offset: usize) -> String {
        let offset = offset.min(self.text.len());
        let line_start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[offset..]
            .find('\n')
            .map_or(self.text.len(), |i| offset + i);
        let line = self.text[line_start..line_end].trim();
        let table = self.text[..line_start]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
        if line.starts_with('[') {
            return line
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned();
        }
        let mut key = line.split('=').next().unwrap_or_default().trim().to_owned();
        if key.is_empty() || line.find('=').is_none() {
            // A continuation line of a multi-line value: use the key that opened it.
            key = self.text[..line_start]
                .lines()
                .rev()
                .find_map(|l| {
                    let l = l.trim();
                    (!l.starts_with('[') && l.contains('='))
                        .then(|| l.split('=').next().unwrap().trim().to_owned())
                })
                .unwrap_or_default();
        }
        match table {
            Some(t) if !key.is_empty() => format!("{t}.{key}"),
            Some(t) => t,
            None => key,
        }
    }

    /// Whether `offset` is on a `[table]` header line.
    fn at_header(&self, offset: usize) -> bool {
        let offset = offset.min(self.text.len());
        let line_start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
        self.text[line_start..].trim_start().starts_with('[')
    }

    fn err(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line: self.line(span.start),
            key: self.key(span.start),
            message: message.into(),
        }
    }

    fn err_key(&self, span: Range<usize>, key: String, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line: self.line(span.start),
            key,
            message: message.into(),
        }
    }
}

/// Parses and validates an environment file's text.
pub fn parse(file: &Path, env: &str, text: &str) -> Result<Plan, ConfigError> {
    let src = Source_ { file, text };
    let raw: RawFile = toml::from_str(text).map_err(|e| syntax_error(&src, &e))?;
    let account_id = account(&src, &raw.account_id)?;
    let role_arn = raw
        .role_arn
        .as_ref()
        .map(|r| role(&src, r, &account_id))
        .transpose()?;
    let test_traffic = test_traffic(&src, raw.test_traffic.get_ref())?;
    let (mut regions, waves) = regions_and_waves(&src, &raw)?;
    for r in regions.values_mut() {
        r.test_header.clone_from(&test_traffic.header);
    }
    Ok(Plan {
        env: env.to_owned(),
        file: file.to_path_buf(),
        account_id,
        role_arn,
        source: source(&src, raw.source.get_ref())?,
        repository: repository(&src, &raw.target.repository)?,
        waves,
        regions,
        strategy: strategy(&src, &raw.strategy)?,
        lock: LockPlan {
            table: table_name(&src, &raw.lock.table)?,
            region: region(&src, &raw.lock.region)?,
            lease: match &raw.lock.lease {
                Some(l) => ranged(&src, l, &LEASE)?,
                None => Duration::from_secs(120),
            },
        },
        hooks: Hooks {
            pre_traffic: hook(&src, &raw.hooks.pre_traffic)?,
            post_shift: hook(&src, &raw.hooks.post_shift)?,
            on_rollback: hook(&src, &raw.hooks.on_rollback)?,
        },
        test_traffic,
    })
}

fn test_traffic(src: &Source_, t: &RawTestTraffic) -> Result<TestTraffic, ConfigError> {
    // An ALB http-header condition names a header of at most 40 token characters.
    let header = t.header.get_ref();
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if header.is_empty() || header.len() > 40 || !header.bytes().all(token) {
        return Err(src.err(
            t.header.span(),
            format!(
                "{header:?} is not an HTTP header name an ALB rule can match; use 1-40 letters, \
                 digits or - (e.g. \"X-Bluegreen-Test\")"
            ),
        ));
    }
    // SSM parameter names: a path of letters, digits and _ . - /, at most 1011 characters with
    // its hierarchy, and not under the reserved aws/ssm prefixes.
    let p = t.parameter.get_ref();
    let lower = p.trim_start_matches('/').to_ascii_lowercase();
    let ok = (1..=1011).contains(&p.len())
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-/".contains(&b))
        && !lower.starts_with("aws")
        && !lower.starts_with("ssm")
        && !p.ends_with('/')
        && !p.contains("//");
    if !ok {
        return Err(src.err(
            t.parameter.span(),
            format!(
                "{p:?} is not an SSM parameter name; use a path of letters, digits, _ . - and /, \
                 e.g. \"/bluegreen/hello-prod/test-header\" (terraform/ creates it)"
            ),
        ));
    }
    Ok(TestTraffic {
        header: header.clone(),
        parameter: p.clone(),
    })
}

/// A TOML or shape error, as `file:line: key: message` with what to do.
fn syntax_error(src: &Source_, e: &toml::de::Error) -> ConfigError {
    let span = e.span().unwrap_or(0..0);
    let message = e.message().trim().to_owned();
    let key = match message
        .strip_prefix("missing field `")
        .and_then(|m| m.split('`').next())
    {
        // Reported on the table that lacks the key, or at the top for a top-level key.
        Some(field) if src.at_header(span.start) => format!("{}.{field}", src.key(span.start)),
        Some(field) => field.to_owned(),
        None => src.key(span.start),
    };
    let hint = if message.starts_with("unknown field") {
        "; remove it or fix its spelling"
    } else if message.starts_with("missing field") {
        "; add it (environments/prod/bluegreen.toml shows every key)"
    } else {
        ""
    };
    let message = message
        .replace("expected i64", "expected a whole number")
        .replace("missing field", "missing key")
        .replace("unknown field", "unknown key");
    src.err_key(span, key, format!("{message}{hint}"))
}

fn source(src: &Source_, s: &RawSource) -> Result<Source, ConfigError> {
    let account_id = account(src, &s.account_id)?;
    Ok(Source {
        role_arn: s
            .role_arn
            .as_ref()
            .map(|r| role(src, r, &account_id))
            .transpose()?,
        account_id,
        region: region(src, &s.region)?,
        repository: repository(src, &s.repository)?,
    })
}

type Waves = Vec<Vec<String>>;

/// Regions: every table is a real region, every region is in exactly one wave.
fn regions_and_waves(
    src: &Source_,
    raw: &RawFile,
) -> Result<(BTreeMap<String, RegionPlan>, Waves), ConfigError> {
    let mut regions = BTreeMap::new();
    for (name, r) in raw.regions.get_ref() {
        let region_name = region(src, name)?;
        let resolved = resolve(src, &region_name, r, &raw.defaults)?;
        let plan = region_plan(src, region_name.clone(), &resolved)
            .map_err(|e| inherited_by(e, &region_name))?;
        regions.insert(region_name, plan);
    }
    if regions.is_empty() {
        return Err(src.err(
            raw.regions.span(),
            "no regions; add a [regions.<name>] table for each region to deploy to",
        ));
    }
    if raw.waves.get_ref().is_empty() {
        return Err(src.err(
            raw.waves.span(),
            "no waves; list the regions in ordered groups, e.g. [[\"us-east-1\"], [\"eu-west-1\"]]",
        ));
    }
    let mut seen = BTreeSet::new();
    let mut waves = Vec::new();
    for wave in raw.waves.get_ref() {
        if wave.is_empty() {
            return Err(src.err(
                raw.waves.span(),
                "an empty wave; every wave names at least one region",
            ));
        }
        let mut names = Vec::new();
        for r in wave {
            let name = region(src, r)?;
            if !regions.contains_key(&name) {
                return Err(src.err(
                    r.span(),
                    format!("{name} is in a wave but has no [regions.{name}] table; add one"),
                ));
            }
            if !seen.insert(name.clone()) {
                return Err(src.err(
                    r.span(),
                    format!("{name} appears in the waves more than once; each region appears once"),
                ));
            }
            names.push(name);
        }
        waves.push(names);
    }
    if let Some((name, r)) = raw
        .regions
        .get_ref()
        .iter()
        .find(|(name, _)| !seen.contains(name.get_ref()))
    {
        return Err(src.err(
            r.span(),
            format!(
                "region {} is in no wave; add it to `waves` or remove its table",
                name.get_ref()
            ),
        ));
    }
    Ok((regions, waves))
}

fn hook(
    src: &Source_,
    h: &Option<Spanned<Vec<String>>>,
) -> Result<Option<Vec<String>>, ConfigError> {
    match h {
        Some(cmd) if cmd.get_ref().is_empty() || cmd.get_ref()[0].trim().is_empty() => Err(src
            .err(
                cmd.span(),
                "an empty command; give the program and its arguments, e.g. [\"./smoke-test.sh\"]",
            )),
        Some(cmd) => Ok(Some(cmd.get_ref().clone())),
        None => Ok(None),
    }
}

fn region_plan(
    src: &Source_,
    region_name: String,
    r: &Resolved,
) -> Result<RegionPlan, ConfigError> {
    let listener_port = port(src, &r.listener_port)?;
    let test_listener_port = port(src, &r.test_listener_port)?;
    if listener_port == test_listener_port {
        return Err(src.err(
            r.test_listener_port.span(),
            format!(
                "{test_listener_port} is also the production listener port; the test listener needs its own"
            ),
        ));
    }
    let blue = target_group(src, &r.blue_target_group)?;
    let green = target_group(src, &r.green_target_group)?;
    if blue == green {
        return Err(src.err(
            r.green_target_group.span(),
            format!("{green} is also the blue target group; blue and green must differ"),
        ));
    }
    let probe_path = match &r.probe_path {
        Some(p) if !p.get_ref().starts_with('/') => {
            return Err(src.err(
                p.span(),
                format!("{:?} must start with /, e.g. /health", p.get_ref()),
            ));
        }
        Some(p) => p.get_ref().clone(),
        None => "/health".to_owned(),
    };
    Ok(RegionPlan {
        region: region_name,
        cluster: name(src, &r.cluster, 255, "a cluster")?,
        service: name(src, &r.service, 255, "a service")?,
        load_balancer: name(src, &r.load_balancer, 32, "a load balancer")?,
        listener_port,
        test_listener_port,
        blue_target_group: blue,
        green_target_group: green,
        alarms: r
            .alarms
            .iter()
            .map(|a| {
                if a.get_ref().trim().is_empty() || a.get_ref().len() > 255 {
                    Err(src.err(a.span(), "an alarm name is 1 to 255 characters"))
                } else {
                    Ok(a.get_ref().clone())
                }
            })
            .collect::<Result<_, _>>()?,
        probe_path,
        container: r.container.as_ref().map(|c| c.get_ref().clone()),
        task_family: r
            .task_family
            .as_ref()
            .map(|f| task_family(src, f))
            .transpose()?,
        test_header: String::new(),
        probe: match &r.probe {
            None => Probe::Http,
            Some(p) => match p.get_ref().as_str() {
                "http" => Probe::Http,
                "none" => Probe::None,
                other => {
                    return Err(src.err(
                        p.span(),
                        format!(
                            "{other:?} is not a probe; use \"http\" (the default) or \"none\" \
                             (the runner cannot reach the load balancer)"
                        ),
                    ));
                }
            },
        },
    })
}

fn account(src: &Source_, v: &Spanned<String>) -> Result<String, ConfigError> {
    let s = v.get_ref();
    if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.clone())
    } else {
        Err(src.err(
            v.span(),
            format!(
                "{s:?} is not an AWS account id; it is 12 digits, quoted, e.g. \"123456789012\""
            ),
        ))
    }
}

fn role(src: &Source_, v: &Spanned<String>, account: &str) -> Result<String, ConfigError> {
    let s = v.get_ref();
    let ok = ["arn:aws:iam::", "arn:aws-cn:iam::", "arn:aws-us-gov:iam::"]
        .iter()
        .any(|p| {
            s.strip_prefix(p)
                .is_some_and(|rest| rest.starts_with(&format!("{account}:role/")))
        });
    if ok {
        Ok(s.clone())
    } else {
        Err(src.err(
            v.span(),
            format!("{s:?} is not a role in account {account}; expected arn:aws:iam::{account}:role/<name>"),
        ))
    }
}

fn region(src: &Source_, v: &Spanned<String>) -> Result<String, ConfigError> {
    let s = v.get_ref();
    if REGIONS.contains(&s.as_str()) {
        Ok(s.clone())
    } else {
        let close: Vec<&str> = REGIONS
            .iter()
            .copied()
            .filter(|r| r.split('-').next() == s.split('-').next())
            .collect();
        let hint = if close.is_empty() {
            "e.g. us-east-1, eu-west-1".to_owned()
        } else {
            close.join(", ")
        };
        Err(src.err(
            v.span(),
            format!("{s:?} is not an AWS region; known regions include {hint}"),
        ))
    }
}

fn repository(src: &Source_, v: &Spanned<String>) -> Result<String, ConfigError> {
    let s = v.get_ref();
    let ok = (2..=256).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b))
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(s.clone())
    } else {
        Err(src.err(
            v.span(),
            format!(
                "{s:?} is not an ECR repository name; use 2-256 lowercase letters, digits, . _ - /"
            ),
        ))
    }
}

fn target_group(src: &Source_, v: &Spanned<String>) -> Result<String, ConfigError> {
    let s = v.get_ref();
    let ok = (1..=32).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.clone())
    } else {
        Err(src.err(
            v.span(),
            format!("{s:?} is not a target group name; use 1-32 letters, digits and inner hyphens"),
        ))
    }
}

fn name(src: &Source_, v: &Spanned<String>, max: usize, what: &str) -> Result<String, ConfigError> {
    let s = v.get_ref();
    if !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(s.clone())
    } else {
        Err(src.err(
            v.span(),
            format!("{s:?} is not {what} name; use 1-{max} letters, digits, - and _"),
        ))
    }
}

fn task_family(src: &Source_, v: &Spanned<String>) -> Result<String, ConfigError> {
    let s = v.get_ref();
    if (1..=255).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(s.clone())
    } else {
        Err(src.err(
            v.span(),
            format!(
                "{s:?} is not a task definition family; use 1-255 letters, digits, _ and - \
                 (the family terraform/ registers, e.g. \"hello-prod\")"
            ),
        ))
    }
}

fn table_name(src: &Source_, v: &Spanned<String>) -> Result<String, ConfigError> {
    let s = v.get_ref();
    if (3..=255).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        Ok(s.clone())
    } else {
        Err(src.err(
            v.span(),
            format!("{s:?} is not a DynamoDB table name; use 3-255 letters, digits, _ . -"),
        ))
    }
}

fn port(src: &Source_, v: &Spanned<i64>) -> Result<u16, ConfigError> {
    u16::try_from(*v.get_ref())
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            src.err(
                v.span(),
                format!("{} is not a port; use 1 to 65535", v.get_ref()),
            )
        })
}

fn strategy(src: &Source_, st: &RawStrategy) -> Result<Strategy, ConfigError> {
    let strategy = Strategy {
        steps: steps(src, st.steps.span(), st.steps.get_ref())?,
        bake: ranged(src, &st.bake, &BAKE)?,
        final_bake: ranged(src, &st.final_bake, &FINAL_BAKE)?,
        poll: ranged(src, &st.poll, &POLL)?,
        ready_timeout: ranged(src, &st.ready_timeout, &READY_TIMEOUT)?,
        scan_wait: match &st.scan_wait {
            Some(w) => ranged(src, w, &SCAN_WAIT)?,
            None => DEFAULT_SCAN_WAIT,
        },
        scan_threshold: match &st.scan_threshold {
            None => None,
            Some(s) if s.get_ref().eq_ignore_ascii_case("none") => None,
            Some(s) => Some(Severity::parse(s.get_ref()).ok_or_else(|| {
                src.err(
                    s.span(),
                    format!(
                        "{:?} is not a severity; use CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL or none",
                        s.get_ref()
                    ),
                )
            })?),
        },
        analysis: match &st.analysis {
            Some(a) => analysis(src, a)?,
            None => Analysis::default(),
        },
    };
    poll_fits(&strategy).map_err(|m| src.err(st.poll.span(), m))?;
    Ok(strategy)
}

/// The valid range of a duration setting, the same for the file, its variable and its flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub min: Duration,
    pub max: Duration,
}

impl Limits {
    const fn new(min: Duration, max: Duration) -> Self {
        Self { min, max }
    }

    /// `d` if within the range, else a message saying the range.
    pub fn check(&self, d: Duration) -> Result<Duration, String> {
        if (self.min..=self.max).contains(&d) {
            return Ok(d);
        }
        let what = if d.is_zero() {
            "must be greater than 0".to_owned()
        } else {
            format!("{} is out of range", humantime::format_duration(d))
        };
        Err(format!(
            "{what}: use {} to {}",
            show(self.min),
            show(self.max)
        ))
    }
}

fn show(d: Duration) -> String {
    if d.is_zero() {
        "0".into()
    } else {
        humantime::format_duration(d).to_string()
    }
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Bake after each step below 100%: none up to a day.
pub const BAKE: Limits = Limits::new(Duration::ZERO, secs(24 * 3600));
/// Bake at 100% with the previous release still up: none up to two days (CodeDeploy keeps the
/// old fleet up to 48 h).
pub const FINAL_BAKE: Limits = Limits::new(Duration::ZERO, secs(48 * 3600));
/// Gate interval: 50 ms (tests, demo) to 5 minutes; never longer than `ready_timeout`.
pub const POLL: Limits = Limits::new(Duration::from_millis(50), secs(300));
/// How long a new task set may take to run and turn healthy: 1 s to 2 hours.
pub const READY_TIMEOUT: Limits = Limits::new(secs(1), secs(2 * 3600));
/// How long preflight waits for ECR's scan of a fresh push: none up to an hour.
pub const SCAN_WAIT: Limits = Limits::new(Duration::ZERO, secs(3600));
/// ECR's basic scan of a fresh push usually completes within minutes.
pub const DEFAULT_SCAN_WAIT: Duration = secs(300);
/// The lock's lease: 1 s to 1 hour (a heartbeat renews it every third).
pub const LEASE: Limits = Limits::new(secs(1), secs(3600));
/// `--aws-max-attempts`: 1 (no retries) to 10.
pub const AWS_MAX_ATTEMPTS: std::ops::RangeInclusive<i64> = 1..=10;
/// `history --limit`: 1 to 200 records (one DynamoDB page).
pub const HISTORY_LIMIT: std::ops::RangeInclusive<i64> = 1..=200;

/// `[strategy.analysis] period`: whole seconds, 1 s (the stand-in's short periods) to an hour.
pub const ANALYSIS_PERIOD: Limits = Limits::new(secs(1), secs(3600));
/// `settle`: none to 15 minutes.
pub const ANALYSIS_SETTLE: Limits = Limits::new(Duration::ZERO, secs(900));
/// `max_extension`: none to 6 hours.
pub const ANALYSIS_EXTENSION: Limits = Limits::new(Duration::ZERO, secs(6 * 3600));
/// `latency_increase`: none to a minute.
pub const ANALYSIS_LATENCY: Limits = Limits::new(Duration::ZERO, secs(60));

/// The periods CloudWatch takes: 1, 5, 10, 20 or 30 s (high resolution) or a multiple of 60 s.
fn period_is_valid(p: Duration) -> bool {
    let s = p.as_secs();
    p.subsec_nanos() == 0 && ([1, 5, 10, 20, 30].contains(&s) || (s > 0 && s.is_multiple_of(60)))
}

fn analysis(src: &Source_, a: &RawAnalysis) -> Result<Analysis, ConfigError> {
    let d = Analysis::default();
    let number = |v: &Option<Spanned<f64>>, lo: f64, hi: f64, default: f64, what: &str| match v {
        Some(x) if !(lo..=hi).contains(x.get_ref()) => Err(src.err(
            x.span(),
            format!("{} is out of range: {what} is {lo} to {hi}", x.get_ref()),
        )),
        Some(x) => Ok(*x.get_ref()),
        None => Ok(default),
    };
    let during = |v: &Option<Spanned<String>>, limits: &Limits, default: Duration| match v {
        Some(x) => ranged(src, x, limits),
        None => Ok(default),
    };
    let period = during(&a.period, &ANALYSIS_PERIOD, d.period)?;
    if let Some(p) = &a.period
        && !period_is_valid(period)
    {
        return Err(src.err(
            p.span(),
            format!(
                "{} is not a GetMetricData period: use 1s, 5s, 10s, 20s, 30s or a multiple of 60s \
                 (ALB metrics have 60-second resolution on AWS: use 60s or more there)",
                show(period)
            ),
        ));
    }
    Ok(Analysis {
        enabled: a.enabled.unwrap_or(d.enabled),
        min_requests: match &a.min_requests {
            Some(n) if !(1..=1_000_000).contains(n.get_ref()) => {
                return Err(src.err(
                    n.span(),
                    format!("{} is out of range: use 1 to 1000000 requests", n.get_ref()),
                ));
            }
            Some(n) => *n.get_ref() as u64,
            None => d.min_requests,
        },
        confidence: number(&a.confidence, 0.5, 0.9999, d.confidence, "a confidence")?,
        error_increase_pct: number(
            &a.error_increase_pct,
            0.0,
            100.0,
            d.error_increase_pct,
            "a difference in percentage points",
        )?,
        latency_ratio: number(&a.latency_ratio, 1.0, 100.0, d.latency_ratio, "a ratio")?,
        latency_increase: during(&a.latency_increase, &ANALYSIS_LATENCY, d.latency_increase)?,
        period,
        settle: during(&a.settle, &ANALYSIS_SETTLE, d.settle)?,
        max_extension: during(&a.max_extension, &ANALYSIS_EXTENSION, d.max_extension)?,
        on_inconclusive: match &a.on_inconclusive {
            None => d.on_inconclusive,
            Some(v) => match v.get_ref().as_str() {
                "proceed" => OnInconclusive::Proceed,
                "rollback" => OnInconclusive::Rollback,
                other => {
                    return Err(src.err(
                        v.span(),
                        format!("{other:?} is not a policy; use \"proceed\" or \"rollback\""),
                    ));
                }
            },
        },
    })
}

/// A gate interval longer than the readiness deadline would never poll before giving up.
fn poll_fits(st: &Strategy) -> Result<(), String> {
    if st.poll > st.ready_timeout {
        return Err(format!(
            "poll {} is longer than ready_timeout {}; the gate would never run before the deadline",
            show(st.poll),
            show(st.ready_timeout)
        ));
    }
    Ok(())
}

fn ranged(src: &Source_, v: &Spanned<String>, limits: &Limits) -> Result<Duration, ConfigError> {
    let d = duration(src, v)?;
    limits.check(d).map_err(|m| src.err(v.span(), m))
}

fn duration(src: &Source_, v: &Spanned<String>) -> Result<Duration, ConfigError> {
    parse_duration(v.get_ref()).map_err(|m| src.err(v.span(), m))
}

/// `30s`, `5m`, `1h30m`, `250ms`, or `0`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s.trim())
        .map_err(|_| format!("{s:?} is not a duration; write it like 30s, 5m, 1h30m or 250ms"))
}

fn steps(src: &Source_, span: Range<usize>, raw: &[i64]) -> Result<Vec<u8>, ConfigError> {
    validate_steps(raw).map_err(|m| src.err(span, m))
}

/// Weight steps: each 1..=100, strictly rising, ending at 100.
pub fn validate_steps(raw: &[i64]) -> Result<Vec<u8>, String> {
    if raw.is_empty() {
        return Err(
            "no steps; give the percentages of traffic to shift, rising to 100, e.g. [10, 50, 100]"
                .into(),
        );
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, &s) in raw.iter().enumerate() {
        if !(1..=100).contains(&s) {
            return Err(format!("step {s} is not a percentage from 1 to 100"));
        }
        if i > 0 && s <= raw[i - 1] {
            return Err(format!(
                "steps must rise: {s} comes after {}; e.g. [10, 50, 100]",
                raw[i - 1]
            ));
        }
        out.push(s as u8);
    }
    if out.last() != Some(&100) {
        return Err(format!(
            "the last step is {}, but steps must end at 100 so the new release takes all traffic",
            out.last().unwrap()
        ));
    }
    Ok(out)
}

fn apply(strategy: &mut Strategy, o: &Overrides) -> Result<(), ConfigError> {
    let bad = |flag: &'static str| move |message: String| ConfigError::Override { flag, message };
    if let Some(steps) = &o.steps {
        let raw: Vec<i64> = steps.iter().map(|s| i64::from(*s)).collect();
        strategy.steps = validate_steps(&raw).map_err(bad("--steps"))?;
    }
    if let Some(b) = o.bake {
        strategy.bake = BAKE.check(b).map_err(bad("--bake"))?;
    }
    if let Some(b) = o.final_bake {
        strategy.final_bake = FINAL_BAKE.check(b).map_err(bad("--final-bake"))?;
    }
    if let Some(p) = o.poll {
        strategy.poll = POLL.check(p).map_err(bad("--poll"))?;
    }
    if let Some(t) = o.ready_timeout {
        strategy.ready_timeout = READY_TIMEOUT.check(t).map_err(bad("--ready-timeout"))?;
    }
    if let Some(on) = o.analysis {
        strategy.analysis.enabled = on;
    }
    let flag = if o.poll.is_some() {
        "--poll"
    } else {
        "--ready-timeout"
    };
    poll_fits(strategy).map_err(bad(flag))
}

/// Where `promote --until` stops (lock held, state journaled) for `continue` to resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    Ready,
    TestTraffic,
    /// A weight step of the strategy below 100%.
    Weight(u8),
}

impl Until {
    /// `ready`, `test-traffic`, or one of `steps` below 100 (`10` or `10%`); anything else is
    /// refused naming the places it can stop at: a stop that is not a step would never happen.
    pub fn resolve(s: &str, steps: &[u8]) -> Result<Self, ConfigError> {
        let stops: Vec<String> = ["ready".to_owned(), "test-traffic".to_owned()]
            .into_iter()
            .chain(steps.iter().filter(|w| **w < 100).map(u8::to_string))
            .collect();
        let found = match s {
            "ready" => Some(Self::Ready),
            "test-traffic" => Some(Self::TestTraffic),
            w => w
                .strip_suffix('%')
                .unwrap_or(w)
                .parse::<u8>()
                .ok()
                .filter(|w| *w < 100 && steps.contains(w))
                .map(Self::Weight),
        };
        found.ok_or_else(|| ConfigError::Override {
            flag: "--until",
            message: format!(
                "{s:?} is not a phase this promote stops at; use one of: {} (the steps are {})",
                stops.join(", "),
                steps
                    .iter()
                    .map(|w| format!("{w}%"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }
}
