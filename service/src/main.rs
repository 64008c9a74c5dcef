//! The service binary: configuration from the environment, JSON logs, graceful shutdown on
//! SIGTERM/SIGINT, and the `healthcheck` subcommand for the container health check.

use std::process::ExitCode;
use std::time::Duration;

use service::{Config, healthcheck};

const USAGE: &str = "usage: service [healthcheck | --version | --help]

Runs the hello service. Configuration comes from the environment:
  PORT                   TCP port (default 8080)
  BIND_ADDR              address to listen on (default 0.0.0.0)
  APP_VERSION            release reported in every answer (default: the crate version)
  AWS_REGION             region reported in every answer (set by ECS)
  DRAIN_TIMEOUT          time in-flight requests get after SIGTERM (default 10s)
  RATE_LIMIT_PER_SECOND  per-client requests per second; unset = no limit
  RATE_LIMIT_BURST       per-client burst (default 2 x RATE_LIMIT_PER_SECOND)
  RUST_LOG               log filter (default info)

`service healthcheck` GETs /health from the service on PORT and exits 0 if it is healthy.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("service: {err}");
            return ExitCode::FAILURE;
        }
    };
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => run(config),
        ["healthcheck"] => {
            match healthcheck::check(healthcheck::target(config.bind), Duration::from_secs(3)) {
                Ok(_) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("service healthcheck: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        ["--version" | "-V"] => {
            println!("service {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        ["--help" | "-h"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("service: unexpected arguments {other:?}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run(config: Config) -> ExitCode {
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stdout)
        .init();

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("service: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(config.bind).await {
            Ok(listener) => listener,
            Err(err) => {
                eprintln!("service: cannot listen on {}: {err}", config.bind);
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(
            addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            version = %config.info.version,
            region = %config.info.region,
            "listening"
        );
        match service::serve(listener, &config, shutdown_signal()).await {
            Ok(()) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("service: server failed: {err}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Resolves on the first SIGTERM (what ECS sends on stop) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(err), _) | (_, Err(err)) => {
            // Without signal handlers the process would die mid-request on stop; say so loudly.
            tracing::error!(%err, "cannot install signal handlers; shutdown will not be graceful");
            return std::future::pending().await;
        }
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "shutdown requested");
}
