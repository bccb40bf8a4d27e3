//! `drift` commands (being built: see the open issue that owns them).

use crate::cli::Context;
use crate::exit::{Exit, fail};

#[derive(Debug, clap::Args)]
pub struct DriftArgs {}

pub async fn run(_: DriftArgs, _: &Context) -> anyhow::Result<Exit> {
    Err(fail(Exit::Failure, "`drift` is being built", None))
}
