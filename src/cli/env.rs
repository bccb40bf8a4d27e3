//! Every environment variable the program reads, in one place. Each tunable flag falls back to
//! one of these (`env = ...` on the flag).

pub const LOG: &str = "HEALTH_PREDICT_LOG";
pub const OUTPUT: &str = "HEALTH_PREDICT_OUTPUT";
pub const SEED: &str = "HEALTH_PREDICT_SEED";
pub const DATA: &str = "HEALTH_PREDICT_DATA";
pub const MODEL: &str = "HEALTH_PREDICT_MODEL";
pub const TRIALS: &str = "HEALTH_PREDICT_TRIALS";
pub const TARGET: &str = "HEALTH_PREDICT_TARGET";
pub const REGISTRY: &str = "HEALTH_PREDICT_REGISTRY";
pub const DATA_URL: &str = "HEALTH_PREDICT_DATA_URL";
// data
pub const BATCH_ROWS: &str = "HEALTH_PREDICT_BATCH_ROWS";
pub const MAX_ISSUES: &str = "HEALTH_PREDICT_MAX_ISSUES";
pub const SYNTH_ROWS: &str = "HEALTH_PREDICT_SYNTH_ROWS";
pub const DATA_DIR: &str = "HEALTH_PREDICT_DATA_DIR";
pub const FETCH_TIMEOUT: &str = "HEALTH_PREDICT_FETCH_TIMEOUT";
