//! `data` commands (being built: see the open issue that owns them).

use crate::cli::Context;
use crate::exit::{Exit, fail};

#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Not built yet.
    #[command(hide = true)]
    Pending,
}

pub async fn run(_: DataCommand, _: &Context) -> anyhow::Result<Exit> {
    Err(fail(Exit::Failure, "`data` is being built", None))
}
