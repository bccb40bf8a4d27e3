//! health-predict: a hospital-readmission model's continuous-improvement loop in one binary.
//!
//! Imports run one way, top to bottom, with no cycle between files (`farm-studio look` shows none):
//! - `cli` (with `main.rs`): clap definitions, the environment (`cli::env`), and the mapping from
//!   errors to exit codes and the final error message (`cli::errors`). Nothing else imports it.
//! - `pipeline`: composes the domains into one run; only `cli` imports it.
//! - domains (`github`, `report`, `contracts`, `gate`, `apitest`, `serve`, `registry`,
//!   `container`, `model`, `drift`, `oci`, `aws`, `kube`, `data`): never import `pipeline` or
//!   `cli`, and read no environment variables of ours; `cli` reads them and hands values in
//!   (settings structs, credentials such as `registry::MlflowCredentials`).
//! - leaves (`exit`, `secret`, `logging`, `retry`, `ci`, `fsutil`, `output`): import no other
//!   module of this crate but `ci` (from `secret`). `exit` holds the codes and the `Diagnose`
//!   trait every domain error implements; `logging` takes a `LogSettings` value.
//!
//! Variables still read below `cli`, each a convention of a platform or library: GitHub Actions'
//! own (`ci`, `github::publish`: `GITHUB_ACTIONS`, `GITHUB_OUTPUT`, `GITHUB_STEP_SUMMARY`), the
//! AWS SDK's default chain (`aws::credentials` names `AWS_ROLE_ARN` and
//! `AWS_WEB_IDENTITY_TOKEN_FILE` to explain a refusal), `PATH` and the proxy variables that the
//! `kind`/`minikube` programs and HTTP clients honour (`kube::cluster`, `apitest::diagnose`), and
//! one test-only failpoint owned by `registry::local`.

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
