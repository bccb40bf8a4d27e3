//! `github` commands (being built: see the open issue that owns them).

use crate::cli::Context;
use crate::exit::{Exit, fail};

#[derive(Debug, clap::Subcommand)]
pub enum ReportCommand {
    /// Not built yet.
    #[command(hide = true)]
    Pending,
}

pub async fn run(_: ReportCommand, _: &Context) -> anyhow::Result<Exit> {
    Err(fail(Exit::Failure, "`github` is being built", None))
}
