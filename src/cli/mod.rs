//! The command line: clap definitions and their translation into library requests. Arguments
//! never reach the domain modules; each subcommand builds a validated request struct. The only
//! module that reads our environment variables (`env` names them) and hands their values down,
//! and the one that maps errors to exit codes and prints them (`errors`). Nothing imports it
//! but `main.rs`.

pub mod apitest;
pub mod aws;
pub mod data;
pub mod deploy;
pub mod doctor;
pub mod drift;
pub mod env;
pub mod errors;
pub mod github;
pub mod image;
pub mod model;
pub mod pipeline;
pub mod registry;
pub mod serve;

use clap::{Args, Parser, Subcommand};

use crate::exit::Exit;
use crate::output::Format;

/// One binary for a readmission model's continuous-improvement loop in CI.
#[derive(Debug, Parser)]
#[command(
    name = "health-predict",
    version,
    about,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Result format on stdout: `json` prints exactly one JSON document.
    #[arg(long, global = true, value_enum, default_value_t = Format::Human, env = env::OUTPUT)]
    pub output: Format,
    /// More logging on stderr (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

impl GlobalArgs {
    /// The logging settings: these flags, `HEALTH_PREDICT_LOG`, `NO_COLOR` and the terminal.
    pub fn log_settings(&self) -> crate::logging::LogSettings {
        crate::logging::LogSettings {
            quiet: self.quiet,
            verbose: self.verbose,
            directive: std::env::var(env::LOG).ok(),
            color: std::env::var_os(env::NO_COLOR).is_none_or(|v| v.is_empty())
                && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            github_actions: crate::ci::in_github_actions(),
        }
    }
}

/// Settings shared by every command handler.
#[derive(Debug, Clone)]
pub struct Context {
    pub output: Format,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch, synthesise, validate, profile and split encounter data.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Train a model with hyperparameter search and write a model file.
    Train(model::TrainArgs),
    /// Score a model file on a labelled data file.
    Evaluate(model::EvaluateArgs),
    /// Predict readmission risk for encounters in a CSV or JSON-lines file.
    Predict(model::PredictArgs),
    /// Compare a current batch with reference data, column by column.
    Drift(drift::DriftArgs),
    /// Serve the prediction HTTP API.
    Serve(serve::ServeArgs),
    /// Run the API contract tests against a running service and write JUnit XML.
    ApiTest(apitest::ApiTestArgs),
    /// Diagnose connectivity and environment problems.
    #[command(subcommand)]
    Doctor(doctor::DoctorCommand),
    /// The model registry: versions, aliases and their history.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Decide whether a candidate model may replace production.
    Gate(registry::GateArgs),
    /// The whole continuous-improvement loop.
    #[command(subcommand)]
    Pipeline(pipeline::PipelineCommand),
    /// Deploy the serving image to Kubernetes (server-side apply).
    Deploy(deploy::DeployArgs),
    /// Watch a rollout, diagnose failures as they happen, and check the served model version.
    Verify(deploy::VerifyArgs),
    /// Roll a Deployment back to its previous ReplicaSet template and verify it.
    Rollback(deploy::RollbackArgs),
    /// Local cluster helpers wrapping the kind and minikube CLIs.
    #[command(subcommand)]
    Cluster(deploy::ClusterCommand),
    /// Amazon ECR: pull secrets and docker logins from short-lived credentials.
    #[command(subcommand)]
    Ecr(aws::EcrCommand),
    /// Build, test as a container, and push the serving image (no Docker daemon needed to build).
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Publish results to GitHub: check run, job summary, PR comment, step outputs.
    #[command(subcommand)]
    Report(github::ReportCommand),
}

/// Runs a parsed command line on a new Tokio runtime.
pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    crate::install_crypto_provider();
    let ctx = Context {
        output: cli.global.output,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(dispatch(cli.command, ctx))
}

async fn dispatch(command: Command, ctx: Context) -> anyhow::Result<Exit> {
    match command {
        Command::Data(c) => data::run(c, &ctx).await,
        Command::Train(a) => model::train(a, &ctx).await,
        Command::Evaluate(a) => model::evaluate(a, &ctx).await,
        Command::Predict(a) => model::predict(a, &ctx).await,
        Command::Drift(a) => drift::run(a, &ctx).await,
        Command::Serve(a) => serve::run(a, &ctx).await,
        Command::ApiTest(a) => apitest::run(a, &ctx).await,
        Command::Doctor(c) => doctor::run(c, &ctx).await,
        Command::Registry(c) => registry::run(c, &ctx).await,
        Command::Gate(a) => registry::gate(a, &ctx).await,
        Command::Pipeline(c) => pipeline::run(c, &ctx).await,
        Command::Deploy(a) => deploy::deploy(a, &ctx).await,
        Command::Verify(a) => deploy::verify(a, &ctx).await,
        Command::Rollback(a) => deploy::rollback(a, &ctx).await,
        Command::Cluster(c) => deploy::cluster(c, &ctx).await,
        Command::Ecr(c) => aws::ecr(c, &ctx).await,
        Command::Image(c) => image::image(c, &ctx).await,
        Command::Report(c) => github::run(c, &ctx).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }
}
