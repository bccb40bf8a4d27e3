//! What the parts of a run share, below all of them: `run.json`'s type as the pipeline writes
//! it, and the registry aliases a run moves. Holds no logic, so `run`, `summary`, `history` and
//! `local_deploy` all import it and none of them imports another to reach it.

/// `run.json`: the record of a run (the type lives with its readers in `crate::contracts`).
pub type RunReport = crate::contracts::RunReport<super::config::PipelineConfig>;
pub use crate::contracts::{
    ApiTestRecord, DriftSummary, ImageRecord, InputsSummary, ModelSummary, TestCounts,
};

/// The alias the deployed model carries.
pub const PRODUCTION: &str = "production";
/// The alias a registered, not yet deployed candidate carries.
pub const CANDIDATE: &str = "candidate";
