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
// model
pub const TARGET_RECALL: &str = "HEALTH_PREDICT_TARGET_RECALL";
pub const ALGORITHM: &str = "HEALTH_PREDICT_ALGORITHM";
pub const THREADS: &str = "HEALTH_PREDICT_THREADS";
// drift
pub const DRIFT_REFERENCE: &str = "HEALTH_PREDICT_DRIFT_REFERENCE";
pub const DRIFT_CURRENT: &str = "HEALTH_PREDICT_DRIFT_CURRENT";
pub const DRIFT_REPORT: &str = "HEALTH_PREDICT_DRIFT_REPORT";
pub const DRIFT_METHOD: &str = "HEALTH_PREDICT_DRIFT_METHOD";
pub const DRIFT_THRESHOLD: &str = "HEALTH_PREDICT_DRIFT_THRESHOLD";
pub const DRIFT_SHARE_THRESHOLD: &str = "HEALTH_PREDICT_DRIFT_SHARE_THRESHOLD";
pub const DRIFT_DATASET_SHARE: &str = "HEALTH_PREDICT_DRIFT_DATASET_SHARE";
pub const DRIFT_MISSING: &str = "HEALTH_PREDICT_DRIFT_MISSING";
pub const DRIFT_FAIL_ON_DRIFT: &str = "HEALTH_PREDICT_DRIFT_FAIL_ON_DRIFT";
pub const FORCE_RETRAIN: &str = "HEALTH_PREDICT_FORCE_RETRAIN";
