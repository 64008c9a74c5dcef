//! The command line: clap derive. Flags override environment variables, which override the file.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::report::Format;

const EXIT_CODES: &str = "Exit codes:
  0    promoted, rolled back, or nothing to do
  1    error; \"(lock kept)\" means AWS needs a human (a rollback that could not
       finish, a journal that missed what AWS holds): the message names the command
  2    refused by preflight or bad input; nothing was changed
  3    the deployment failed and every touched region was rolled back
  4    the environment's lock is held by another deployment
  130  interrupted (SIGINT/SIGTERM) and rolled back; for status --watch, stopped
       watching (it never changes anything)

`status --watch` exits with the code of the promote it followed: 0, 3, or 1.";

/// Ship one container image to many AWS regions, blue/green, with one shared rollback.
#[derive(Debug, Parser)]
#[command(name = "bluegreen", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Environment to act on: reads <config-dir>/<env>/bluegreen.toml
    #[arg(short, long = "env", global = true, env = "BLUEGREEN_ENV")]
    pub env: Option<String>,
    /// Folder holding one sub-folder per environment
    #[arg(
        long,
        global = true,
        env = "BLUEGREEN_CONFIG_DIR",
        default_value = "environments"
    )]
    pub config_dir: PathBuf,
    /// Results as text, or newline-delimited JSON events and a final JSON result
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "BLUEGREEN_OUTPUT"
    )]
    pub output: Format,
    /// Answer yes to confirmations: `unlock`, and a `rollback` that takes a first release off the air
    #[arg(long, global = true)]
    pub yes: bool,
    /// Diagnostic logs on stderr: -v bluegreen's, -vv also the AWS SDK's (retries, timings)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings, errors and the result
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Attempts per AWS call, first included (standard retry mode; 1 to 10)
    #[arg(
        long,
        global = true,
        env = "BLUEGREEN_AWS_MAX_ATTEMPTS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(crate::config::AWS_MAX_ATTEMPTS)
    )]
    pub aws_max_attempts: u32,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Promote VERSION: copy the image, start it beside the live release, shift traffic in gated
    /// steps wave by wave, roll every touched region back on the first failure
    Promote(Promote),
    /// Put every region back on the previous release, from any state
    Rollback(RollbackArgs),
    /// Per region: live colour, weights, task sets with versions and digests, health; the lock.
    /// --watch: the live view of a deployment, until it ends
    Status(StatusArgs),
    /// Every change `promote VERSION` would make, in order, without making any
    Plan(PlanArgs),
    /// Resume a promote paused with --until (or interrupted) from where the journal says it is
    Continue,
    /// Past deployments, newest first
    History {
        /// How many to show (1 to 200)
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i32).range(crate::config::HISTORY_LIMIT))]
        limit: i32,
    },
    /// Remove the environment's lock, whoever holds it (asks unless --yes)
    Unlock,
    /// Check the environment file and show what it resolves to (regions, waves, strategy, the
    /// worst case a promote may take), without any AWS call: exit 0, or 2 naming file:line: key
    Validate,
    /// Write <config-dir>/<env>/bluegreen.toml from Terraform's `bluegreen` output:
    /// `terraform output -json | bluegreen init -e <env>`. Rewrites only the names Terraform owns
    /// and keeps waves, [strategy], [hooks], probes and comments; shows the diff
    Init(InitArgs),
    /// Shell completions on stdout
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Follow the unfinished deployment (or the next to start) until it ends, with the exit code
    /// its promote has (0 promoted, 3 rolled back, 1 needs a human): per region the weights,
    /// versions, healthy targets and the gate's last verdict, redrawn in place on a terminal, a
    /// line per change otherwise. A paused or abandoned deployment is followed until `continue`
    /// or `rollback` ends it. Ctrl-C stops watching (exit 130); nothing is changed either way
    #[arg(long)]
    pub watch: bool,
    /// How often --watch reads AWS and the journal (1s to 5m)
    #[arg(long, requires = "watch", default_value = "5s", value_parser = watch_interval)]
    pub interval: Duration,
}

fn watch_interval(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(300) {
        return Err(format!(
            "{s} is out of range: 1s to 5m (each look reads every region; the promote polls AWS too)"
        ));
    }
    Ok(d)
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Terraform's JSON from this file (`terraform output -json`, `terraform output -json
    /// bluegreen`, or `terraform show -json` of a state or plan); - or none: standard input
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Overwrite an existing file that differs (the diff is shown either way)
    #[arg(long, conflicts_with = "check")]
    pub force: bool,
    /// Write nothing; exit 1 with the diff when the file differs from Terraform's outputs (CI)
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Preset {
    /// 10% then 100%
    Canary,
    /// 10% steps to 100%
    Linear,
    /// 100% in one step
    AllAtOnce,
}

impl Preset {
    pub fn steps(self) -> Vec<u8> {
        match self {
            Preset::Canary => vec![10, 100],
            Preset::Linear => (1..=10).map(|i| i * 10).collect(),
            Preset::AllAtOnce => vec![100],
        }
    }
}

#[derive(Debug, Args)]
pub struct Strategy {
    /// Traffic steps in percent, each 1 to 100, rising, ending at 100 (e.g. 10,50,100)
    #[arg(long, value_delimiter = ',', env = "BLUEGREEN_STEPS")]
    pub steps: Option<Vec<u8>>,
    /// Step preset; --steps wins over it
    #[arg(long, value_enum, env = "BLUEGREEN_PRESET")]
    pub preset: Option<Preset>,
    /// Bake after each step below 100% (e.g. 5m; 0 to 24h)
    #[arg(long, value_parser = duration, env = "BLUEGREEN_BAKE")]
    pub bake: Option<Duration>,
    /// Bake at 100% while the previous release stays up (e.g. 10m; 0 to 48h)
    #[arg(long, value_parser = duration, env = "BLUEGREEN_FINAL_BAKE")]
    pub final_bake: Option<Duration>,
    /// Gate evaluation interval (e.g. 5s; 50ms to 5m, at most the ready timeout)
    #[arg(long, value_parser = duration, env = "BLUEGREEN_POLL")]
    pub poll: Option<Duration>,
    /// How long the new task set may take to run and be healthy (1s to 2h)
    #[arg(long, value_parser = duration, env = "BLUEGREEN_READY_TIMEOUT")]
    pub ready_timeout: Option<Duration>,
    /// Judge the new release by its ALB metrics against the previous one: `on` or `off` for this
    /// run, over [strategy.analysis] enabled
    #[arg(long, value_enum, env = "BLUEGREEN_ANALYSIS")]
    pub analysis: Option<Switch>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(Debug, Args)]
pub struct Promote {
    /// Image tag to release, semver (v1.2.0)
    pub version: String,
    #[command(flatten)]
    pub strategy: Strategy,
    /// Print the plan and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Stop at ready, test-traffic, or one of the weight steps below 100 (e.g. 10), lock held,
    /// for `continue`
    #[arg(long, env = "BLUEGREEN_UNTIL")]
    pub until: Option<String>,
    /// Promote despite scan findings at or above the file's scan_threshold
    #[arg(long)]
    pub allow_findings: bool,
    /// Start even though configured alarms are already in ALARM (e.g. when releasing the fix)
    #[arg(long)]
    pub ignore_alarms: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Only these regions (repeatable); the others the deployment changed stay as they are,
    /// and the lock stays until they are rolled back too
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Image tag to plan for
    pub version: String,
    /// Plan despite scan findings
    #[arg(long)]
    pub allow_findings: bool,
}

fn duration(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s)
}
