//! health-predict: a hospital-readmission model's continuous-improvement loop in one binary.
//!
//! Domain modules (`data`, `model`, `drift`, `registry`, `gate`, `serve`, `apitest`, `kube`, `aws`,
//! `github`, `report`) never import the orchestrator (`pipeline`) nor the command line (`cli`);
//! `pipeline` composes them and `cli` turns arguments into their requests.

pub mod apitest;
pub mod aws;
pub mod ci;
pub mod cli;
pub mod container;
pub mod contracts;
pub mod data;
pub mod drift;
pub mod exit;
pub mod fsutil;
pub mod gate;
pub mod github;
pub mod kube;
pub mod logging;
pub mod model;
pub mod oci;
pub mod output;
pub mod pipeline;
pub mod registry;
pub mod report;
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
