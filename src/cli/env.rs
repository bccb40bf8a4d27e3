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
// model
pub const TARGET_RECALL: &str = "HEALTH_PREDICT_TARGET_RECALL";
pub const ALGORITHM: &str = "HEALTH_PREDICT_ALGORITHM";
pub const THREADS: &str = "HEALTH_PREDICT_THREADS";

// registry
/// MLflow's own credential variables, read by the MLflow registry backend.
pub const MLFLOW_TRACKING_TOKEN: &str = "MLFLOW_TRACKING_TOKEN";
pub const MLFLOW_TRACKING_USERNAME: &str = "MLFLOW_TRACKING_USERNAME";
pub const MLFLOW_TRACKING_PASSWORD: &str = "MLFLOW_TRACKING_PASSWORD";
pub const RUN_ID: &str = "HEALTH_PREDICT_RUN_ID";
pub const GIT_COMMIT: &str = "HEALTH_PREDICT_GIT_COMMIT";
pub const GATE_REFRESH_TOLERANCE: &str = "HEALTH_PREDICT_GATE_REFRESH_TOLERANCE";
pub const GATE_MIN_ROWS: &str = "HEALTH_PREDICT_GATE_MIN_ROWS";
pub const GATE_MIN_CLASS_ROWS: &str = "HEALTH_PREDICT_GATE_MIN_CLASS_ROWS";
pub const GATE_BOOTSTRAP: &str = "HEALTH_PREDICT_GATE_BOOTSTRAP";
pub const GATE_CONFIDENCE: &str = "HEALTH_PREDICT_GATE_CONFIDENCE";
pub const GATE_REPORT: &str = "HEALTH_PREDICT_GATE_REPORT";
pub const GATE_DATA: &str = "HEALTH_PREDICT_GATE_DATA";
pub const GATE_CANDIDATE: &str = "HEALTH_PREDICT_GATE_CANDIDATE";
pub const GATE_PRODUCTION: &str = "HEALTH_PREDICT_GATE_PRODUCTION";
