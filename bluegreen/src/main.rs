//! bluegreen: parse → run → exit code. All work is in the library; this file wires signals,
//! output and exit codes.

#![warn(clippy::too_many_lines, clippy::too_many_arguments)]

use std::io::IsTerminal;
use std::process::ExitCode;

use bluegreen::aws::Settings;
use bluegreen::aws::lock::new_deployment_id;
use bluegreen::cli::{Cli, Command};
use bluegreen::config::{self, Overrides};
use bluegreen::report::{Format, Reporter};
use bluegreen::rollout::{self, Env, Error, promote, rollback, status};
use clap::{CommandFactory, Parser};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = &cli.command {
        clap_complete::generate(
            *shell,
            &mut Cli::command(),
            "bluegreen",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    init_tracing(cli.global.verbose);
    let reporter = Reporter::new(
        cli.global.output,
        cli.global.quiet,
        std::io::stderr().is_terminal(),
    );
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(run(cli, reporter.clone()));
    if let Some(charts) = reporter.analysis_charts() {
        reporter.summary(&charts);
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.exit_code();
            reporter.failure(code, &e.to_string());
            reporter.summary(&format!(
                "### bluegreen failed (exit {code})\n\n```\n{e}\n```"
            ));
            ExitCode::from(code)
        }
    }
}

/// Cancelled on the first SIGINT or SIGTERM.
fn interrupt_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        t.cancel();
    });
    token
}

/// `-v`: bluegreen's own diagnostics; `-vv`: the AWS SDK's too. Always on stderr, so they never
/// mix into `--output json` on stdout. `RUST_LOG` overrides the level when set.
fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn,aws=off,aws_smithy_runtime=off,aws_config=off",
        1 => "bluegreen=debug,warn",
        _ => "bluegreen=trace,aws_config=debug,aws_smithy_runtime=debug,aws_sdk=debug,info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true)
        .init();
}

/// A command as given, checked against the environment file: everything the command line and
/// the file can get wrong is found here, before the first AWS call.
enum Resolved {
    Promote(promote::Options, bool),
    Plan(String, bool),
    Continue,
    Rollback(Vec<String>),
    /// With `--watch`: how often to look.
    Status(Option<std::time::Duration>),
    History(i32),
    Unlock,
    Validate,
}

fn resolve(command: Command, plan: &config::Plan) -> Result<Resolved, Error> {
    let refused = |e: config::ConfigError| Error::Refused(e.to_string());
    Ok(match command {
        Command::Promote(p) => {
            rollout::validate_version(&p.version)?;
            let until = p
                .until
                .as_deref()
                .map(|u| config::Until::resolve(u, &plan.strategy.steps))
                .transpose()
                .map_err(refused)?;
            let opts = promote::Options {
                version: p.version,
                until,
                allow_findings: p.allow_findings,
                ignore_alarms: p.ignore_alarms,
            };
            Resolved::Promote(opts, p.dry_run)
        }
        Command::Plan(p) => {
            rollout::validate_version(&p.version)?;
            Resolved::Plan(p.version, p.allow_findings)
        }
        Command::Continue => Resolved::Continue,
        Command::Rollback(r) => {
            if let Some(bad) = r.regions.iter().find(|x| !plan.regions.contains_key(*x)) {
                return Err(Error::Refused(format!(
                    "--region {bad}: not a region of {} ({}); its regions: {}",
                    plan.env,
                    plan.file.display(),
                    plan.regions.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
            Resolved::Rollback(r.regions)
        }
        Command::Status(a) => Resolved::Status(a.watch.then_some(a.interval)),
        Command::History { limit } => Resolved::History(limit),
        Command::Unlock => Resolved::Unlock,
        Command::Validate => Resolved::Validate,
        Command::Init(_) => unreachable!("answered before the file is read"),
        Command::Completions { .. } => unreachable!("handled before the runtime starts"),
    })
}

fn overrides(command: &Command) -> Overrides {
    let Command::Promote(p) = command else {
        return Overrides::default();
    };
    let s = &p.strategy;
    Overrides {
        steps: s.steps.clone().or_else(|| s.preset.map(|p| p.steps())),
        bake: s.bake,
        final_bake: s.final_bake,
        poll: s.poll,
        ready_timeout: s.ready_timeout,
        analysis: s.analysis.map(|a| a == bluegreen::cli::Switch::On),
    }
}

async fn run(cli: Cli, reporter: Reporter) -> Result<(), Error> {
    let g = &cli.global;
    let env_name = g.env.clone().ok_or_else(|| {
        Error::Refused(format!(
            "no environment given: pass -e <env> or set BLUEGREEN_ENV; environments in {}: {}",
            g.config_dir.display(),
            config::known_envs(&g.config_dir)
        ))
    })?;
    if let Command::Init(a) = &cli.command {
        let input = terraform_json(a.from.as_deref())?;
        let done = bluegreen::init::command(&g.config_dir, &env_name, &input, a.force, a.check)?;
        reporter.result(&done);
        return Ok(());
    }
    let plan = config::load(&g.config_dir, &env_name, &overrides(&cli.command))
        .map_err(|e| Error::Refused(e.to_string()))?;
    let command = resolve(cli.command, &plan)?;
    if let Resolved::Validate = command {
        reporter.result(&status::Validated::of(&plan));
        return Ok(());
    }
    let settings = Settings {
        max_attempts: g.aws_max_attempts,
        ..Settings::default()
    };
    let (yes, json) = (g.yes, g.output == Format::Json);
    let env = Env::connect(plan, reporter.clone(), &settings, &new_deployment_id()).await?;
    match command {
        Resolved::Promote(opts, true) => {
            let report = status::plan(&env, &opts.version, opts.allow_findings).await?;
            reporter.result(&report);
        }
        Resolved::Promote(opts, false) => {
            env.check_lifetime()?;
            let result = promote::promote(&env, &opts, interrupt_token()).await?;
            reporter.summary(&summary_table(&result));
            reporter.result(&result);
        }
        Resolved::Continue => {
            env.check_lifetime()?;
            let result = promote::resume(&env, interrupt_token()).await?;
            reporter.summary(&summary_table(&result));
            reporter.result(&result);
        }
        Resolved::Rollback(only) => {
            reporter.result(&rollback::command(&env, &only, yes).await?);
        }
        Resolved::Status(None) => reporter.result(&status::status(&env).await?),
        Resolved::Status(Some(interval)) => {
            let terminal = std::io::stdout().is_terminal();
            let (rows, width) = bluegreen::rollout::watch::terminal_size();
            let options = bluegreen::rollout::watch::Options {
                interval,
                terminal: terminal && !json,
                width,
                rows,
                json,
            };
            let watched = bluegreen::rollout::watch::watch(&env, &options, interrupt_token());
            reporter.result(&watched.await?);
        }
        Resolved::Plan(version, allow) => {
            reporter.result(&status::plan(&env, &version, allow).await?);
        }
        Resolved::History(limit) => reporter.result(&status::history(&env, limit).await?),
        Resolved::Unlock => unlock(&env, &reporter, yes, json).await?,
        Resolved::Validate => unreachable!("answered before connecting"),
    }
    Ok(())
}

/// `bluegreen init`'s input: Terraform's JSON from `--from FILE`, or piped in.
fn terraform_json(from: Option<&std::path::Path>) -> Result<String, Error> {
    use std::io::Read;
    if let Some(path) = from.filter(|p| *p != std::path::Path::new("-")) {
        return std::fs::read_to_string(path)
            .map_err(|e| Error::Refused(format!("cannot read {}: {e}", path.display())));
    }
    if std::io::stdin().is_terminal() {
        return Err(Error::Refused(
            "init reads Terraform's JSON from standard input, which is a terminal: pipe it in \
             (terraform output -json | bluegreen init -e ENV) or pass --from FILE"
                .into(),
        ));
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| Error::Refused(format!("cannot read standard input: {e}")))?;
    Ok(text)
}

/// `bluegreen unlock`: removes the lock whoever holds it, after a confirmation.
async fn unlock(env: &Env, reporter: &Reporter, yes: bool, json: bool) -> Result<(), Error> {
    let env_name = env.plan.env.clone();
    let holder = env
        .lock
        .holder()
        .await
        .map_err(|e| Error::Failed(e.to_string()))?;
    let Some(holder) = holder else {
        reporter.result(&Unlocked {
            env: env_name,
            was: None,
        });
        return Ok(());
    };
    if !yes {
        if !std::io::stdin().is_terminal() || json {
            return Err(Error::Refused(format!(
                "{env_name} is locked by {holder}; unlocking needs confirmation: pass --yes"
            )));
        }
        eprint!(
            "{env_name} is locked by {holder}.\nRemove the lock? Only do this if that deployment is dead. [y/N] "
        );
        let mut answer = String::new();
        if std::io::stdin().read_line(&mut answer).is_err()
            || !matches!(answer.trim(), "y" | "Y" | "yes")
        {
            return Err(Error::Refused("not unlocked".into()));
        }
    }
    let was = env
        .lock
        .force_unlock()
        .await
        .map_err(|e| Error::Failed(e.to_string()))?;
    reporter.result(&Unlocked { env: env_name, was });
    Ok(())
}

#[derive(serde::Serialize)]
struct Unlocked {
    env: String,
    was: Option<bluegreen::aws::lock::Holder>,
}

impl std::fmt::Display for Unlocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.was {
            Some(h) => writeln!(f, "{}: unlocked (was held by {h})", self.env),
            None => writeln!(f, "{}: not locked", self.env),
        }
    }
}

fn summary_table(r: &rollout::promote::PromoteResult) -> String {
    let mut md = format!(
        "### bluegreen: {} {} in {}\n\n| region | colour | weight | phase | previous |\n|---|---|---:|---|---|\n",
        r.version, r.outcome, r.env
    );
    for (region, x) in &r.regions {
        md.push_str(&format!(
            "| {region} | {} | {}% | {} | {} |\n",
            x.colour,
            x.weight,
            x.phase,
            x.previous_version.as_deref().unwrap_or("?")
        ));
    }
    md
}
