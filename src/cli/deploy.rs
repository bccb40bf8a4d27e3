//! `deploy` commands (being built: see the open issue that owns them).

use crate::cli::Context;
use crate::exit::{Exit, fail};

#[derive(Debug, clap::Args)]
pub struct DeployArgs {}

pub async fn deploy(_: DeployArgs, _: &Context) -> anyhow::Result<Exit> {
    Err(fail(Exit::Failure, "`deploy` is being built", None))
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {}

pub async fn verify(_: VerifyArgs, _: &Context) -> anyhow::Result<Exit> {
    Err(fail(Exit::Failure, "`deploy` is being built", None))
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {}

pub async fn rollback(_: RollbackArgs, _: &Context) -> anyhow::Result<Exit> {
    Err(fail(Exit::Failure, "`deploy` is being built", None))
}

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Not built yet.
    #[command(hide = true)]
    Pending,
}

pub async fn cluster(_: ClusterCommand, _: &Context) -> anyhow::Result<Exit> {
    Err(fail(Exit::Failure, "`deploy` is being built", None))
}
