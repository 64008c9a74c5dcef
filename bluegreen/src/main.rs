//! bluegreen: parse → run → exit code. All work is in the library; this file wires signals,
//! output and exit codes.

use std::io::IsTerminal;
use std::process::ExitCode;

use bluegreen::aws::Settings;
use bluegreen::aws::lock::new_deployment_id;
use bluegreen::cli::{Cli, Command};
use bluegreen::config::{self, Overrides};
use bluegreen::report::{Format, Reporter};
use bluegreen::rollout::{self, Env, Error, promote, region::Until, rollback, status};
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
    match runtime.block_on(run(cli, reporter.clone())) {
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

async fn run(cli: Cli, reporter: Reporter) -> Result<(), Error> {
    let g = &cli.global;
    let env_name = g.env.clone().ok_or_else(|| {
        Error::Refused(format!(
            "no environment given: pass -e <env> or set BLUEGREEN_ENV; environments in {}: {}",
            g.config_dir.display(),
            config::known_envs(&g.config_dir)
        ))
    })?;
    let mut overrides = Overrides::default();
    if let Command::Promote(p) = &cli.command {
        let s = &p.strategy;
        overrides = Overrides {
            steps: s.steps.clone().or_else(|| s.preset.map(|p| p.steps())),
            bake: s.bake,
            final_bake: s.final_bake,
            poll: s.poll,
            ready_timeout: s.ready_timeout,
        };
    }
    let plan = config::load(&g.config_dir, &env_name, &overrides)
        .map_err(|e| Error::Refused(e.to_string()))?;
    let settings = Settings {
        max_attempts: g.aws_max_attempts,
        ..Settings::default()
    };

    // `continue` acts as the deployment it resumes; everything else is a new one.
    let deployment = new_deployment_id();
    match cli.command {
        Command::Promote(p) => {
            let until = p
                .until
                .as_deref()
                .map(Until::parse)
                .transpose()
                .map_err(Error::Refused)?;
            let env = Env::connect(plan, reporter.clone(), &settings, &deployment).await?;
            if p.dry_run {
                let report = status::plan(&env, &p.version, p.allow_findings).await?;
                reporter.result(&report);
                return Ok(());
            }
            let opts = promote::Options {
                version: p.version,
                until,
                allow_findings: p.allow_findings,
                ignore_alarms: p.ignore_alarms,
            };
            let result = promote::promote(&env, &opts, interrupt_token()).await?;
            reporter.summary(&summary_table(&result));
            reporter.result(&result);
        }
        Command::Continue => {
            let probe =
                Env::connect(plan.clone(), reporter.clone(), &settings, &deployment).await?;
            let record = rollback::latest_promote(&probe)
                .await?
                .filter(|r| r.outcome.is_none())
                .ok_or_else(|| Error::Refused(format!("{env_name} has no paused or unfinished promote to continue; see `bluegreen history -e {env_name}`")))?;
            let env = Env::connect(plan, reporter.clone(), &settings, &record.id).await?;
            let result = promote::resume(&env, record, interrupt_token()).await?;
            reporter.summary(&summary_table(&result));
            reporter.result(&result);
        }
        Command::Rollback => {
            let env = Env::connect(plan, reporter.clone(), &settings, &deployment).await?;
            let result = rollback::command(&env).await?;
            reporter.result(&result);
        }
        Command::Status => {
            let env = Env::connect(plan, reporter.clone(), &settings, &deployment).await?;
            reporter.result(&status::status(&env).await?);
        }
        Command::Plan(p) => {
            let env = Env::connect(plan, reporter.clone(), &settings, &deployment).await?;
            reporter.result(&status::plan(&env, &p.version, p.allow_findings).await?);
        }
        Command::History { limit } => {
            let env = Env::connect(plan, reporter.clone(), &settings, &deployment).await?;
            reporter.result(&status::history(&env, limit).await?);
        }
        Command::Unlock => {
            let env = Env::connect(plan, reporter.clone(), &settings, &deployment).await?;
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
            if !g.yes {
                if !std::io::stdin().is_terminal() || g.output == Format::Json {
                    return Err(Error::Refused(format!(
                        "{env_name} is locked by {holder}; unlocking needs confirmation: pass --yes"
                    )));
                }
                eprint!(
                    "{env_name} is locked by {holder}.\nRemove the lock? Only do this if that deployment is dead. [y/N] "
                );
                let mut answer = String::new();
                let _ = std::io::stdin().read_line(&mut answer);
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    return Err(Error::Refused("not unlocked".into()));
                }
            }
            let was = env
                .lock
                .force_unlock()
                .await
                .map_err(|e| Error::Failed(e.to_string()))?;
            reporter.result(&Unlocked { env: env_name, was });
        }
        Command::Completions { .. } => unreachable!("handled before the runtime starts"),
    }
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
