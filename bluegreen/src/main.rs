//! bluegreen: multi-region blue/green deployments for containers on AWS ECS.

use std::process::ExitCode;

use clap::Parser;

/// Ship one container image to many AWS regions, blue/green, with one shared rollback.
#[derive(Debug, Parser)]
#[command(name = "bluegreen", version, about, long_about = None)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    ExitCode::SUCCESS
}
