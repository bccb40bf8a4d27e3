//! `apitest` commands (being built: see the open issue that owns them).

use crate::cli::Context;
use crate::exit::{Exit, fail};

#[derive(Debug, clap::Args)]
pub struct ApiTestArgs {}

pub async fn run(_: ApiTestArgs, _: &Context) -> anyhow::Result<Exit> {
    Err(fail(Exit::Failure, "`apitest` is being built", None))
}
