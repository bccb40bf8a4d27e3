//! The `health-predict` binary: parse arguments, set up logging and the runtime, run, exit.

use std::process::ExitCode;

use clap::Parser;
use health_predict::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    health_predict::logging::init(&cli.global.log_settings());
    health_predict::cli::errors::finish(health_predict::cli::run(cli))
}
