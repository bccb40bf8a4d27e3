//! The `kubernetes` deploy target: deploy the image with server-side apply, verify the rollout
//! (rolling back on failure) and check the served version through the API server.

use super::config::PipelineConfig;
use super::steps::Done;
use crate::exit::{Exit, fail};

/// Deploys `image` as model `version`.
pub async fn deploy(
    _cfg: &PipelineConfig,
    _image: &str,
    _version: u64,
) -> anyhow::Result<Done<()>> {
    Err(fail(
        Exit::Usage,
        "deploy = kubernetes is being wired",
        None,
    ))
}

/// Verifies the rollout of model `version`.
pub async fn verify(_cfg: &PipelineConfig, _version: u64) -> anyhow::Result<Done<()>> {
    Err(fail(
        Exit::Usage,
        "deploy = kubernetes is being wired",
        None,
    ))
}
