//! `pipeline` commands (being built: see the open issue that owns them).

use crate::cli::Context;
use crate::exit::{Exit, fail};

#[derive(Debug, clap::Subcommand)]
pub enum PipelineCommand {
    /// Not built yet.
    #[command(hide = true)]
    Pending,
}

pub async fn run(_: PipelineCommand, _: &Context) -> anyhow::Result<Exit> {
    Err(fail(Exit::Failure, "`pipeline` is being built", None))
}
