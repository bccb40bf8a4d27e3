//! `registry` commands (being built: see the open issue that owns them).

use crate::cli::Context;
use crate::exit::{Exit, fail};

#[derive(Debug, clap::Subcommand)]
pub enum RegistryCommand {
    /// Not built yet.
    #[command(hide = true)]
    Pending,
}

pub async fn run(_: RegistryCommand, _: &Context) -> anyhow::Result<Exit> {
    Err(fail(Exit::Failure, "`registry` is being built", None))
}

#[derive(Debug, clap::Args)]
pub struct GateArgs {}

pub async fn gate(_: GateArgs, _: &Context) -> anyhow::Result<Exit> {
    Err(fail(Exit::Failure, "`registry` is being built", None))
}
