//! `serve` commands (being built: see the open issue that owns them).

use crate::cli::Context;
use crate::exit::{Exit, fail};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {}

pub async fn run(_: ServeArgs, _: &Context) -> anyhow::Result<Exit> {
    Err(fail(Exit::Failure, "`serve` is being built", None))
}
