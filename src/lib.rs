//! health-predict: a hospital-readmission model's continuous-improvement loop in one binary.
//!
//! Domain modules (`data`, `model`, `drift`, `registry`, `gate`, `serve`, `apitest`, `kube`, `aws`,
//! `github`, `report`) never import the orchestrator (`pipeline`) nor the command line (`cli`);
//! `pipeline` composes them and `cli` turns arguments into their requests.

pub mod apitest;
pub(crate) mod aws;
pub(crate) mod ci;
pub mod cli;
pub(crate) mod container;
pub(crate) mod contracts;
pub mod data;
pub mod drift;
pub mod exit;
pub(crate) mod fsutil;
pub(crate) mod gate;
pub(crate) mod github;
pub mod kube;
pub mod logging;
pub mod model;
pub mod oci;
pub(crate) mod output;
pub mod pipeline;
pub mod registry;
pub(crate) mod report;
pub mod retry;
pub mod secret;
pub mod serve;

/// The version of this build, recorded in model files and reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Installs ring as the process-wide rustls crypto provider. Every TLS user (kube, reqwest,
/// octocrab, the AWS SDK) shares it; call once before any of them runs. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
