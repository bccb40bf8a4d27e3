//! `model` commands (being built: see the open issue that owns them).

use crate::cli::Context;
use crate::exit::{Exit, fail};

#[derive(Debug, clap::Args)]
pub struct TrainArgs {}

pub async fn train(_: TrainArgs, _: &Context) -> anyhow::Result<Exit> {
    Err(fail(Exit::Failure, "`model` is being built", None))
}

#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {}

pub async fn evaluate(_: EvaluateArgs, _: &Context) -> anyhow::Result<Exit> {
    Err(fail(Exit::Failure, "`model` is being built", None))
}

#[derive(Debug, clap::Args)]
pub struct PredictArgs {}

pub async fn predict(_: PredictArgs, _: &Context) -> anyhow::Result<Exit> {
    Err(fail(Exit::Failure, "`model` is being built", None))
}
