//! `doctor` commands (being built: see the open issue that owns them).

use crate::cli::Context;
use crate::exit::{Exit, fail};

#[derive(Debug, clap::Subcommand)]
pub enum DoctorCommand {
    /// Not built yet.
    #[command(hide = true)]
    Pending,
}

pub async fn run(_: DoctorCommand, _: &Context) -> anyhow::Result<Exit> {
    Err(fail(Exit::Failure, "`doctor` is being built", None))
}
