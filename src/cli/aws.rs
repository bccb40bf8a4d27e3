//! `aws` commands (being built: see the open issue that owns them).

use crate::cli::Context;
use crate::exit::{Exit, fail};

#[derive(Debug, clap::Subcommand)]
pub enum EcrCommand {
    /// Not built yet.
    #[command(hide = true)]
    Pending,
}

pub async fn ecr(_: EcrCommand, _: &Context) -> anyhow::Result<Exit> {
    Err(fail(Exit::Failure, "`aws` is being built", None))
}

#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Not built yet.
    #[command(hide = true)]
    Pending,
}

pub async fn image(_: ImageCommand, _: &Context) -> anyhow::Result<Exit> {
    Err(fail(Exit::Failure, "`aws` is being built", None))
}
