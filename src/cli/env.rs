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
// serve
pub const ADDR: &str = "HEALTH_PREDICT_ADDR";
pub const BATCH_LIMIT: &str = "HEALTH_PREDICT_BATCH_LIMIT";
pub const BODY_LIMIT: &str = "HEALTH_PREDICT_BODY_LIMIT";
pub const REQUEST_TIMEOUT: &str = "HEALTH_PREDICT_REQUEST_TIMEOUT";
pub const SHUTDOWN_GRACE: &str = "HEALTH_PREDICT_SHUTDOWN_GRACE";
pub const READY_TIMEOUT: &str = "HEALTH_PREDICT_READY_TIMEOUT";
pub const BASE_URL: &str = "HEALTH_PREDICT_BASE_URL";
pub const JUNIT: &str = "HEALTH_PREDICT_JUNIT";
pub const EXPECT_VERSION: &str = "HEALTH_PREDICT_EXPECT_VERSION";
pub const LATENCY_BUDGET: &str = "HEALTH_PREDICT_LATENCY_BUDGET";
pub const LATENCY_REQUESTS: &str = "HEALTH_PREDICT_LATENCY_REQUESTS";
pub const CONCURRENCY: &str = "HEALTH_PREDICT_CONCURRENCY";
pub const USE_ENV_PROXY: &str = "HEALTH_PREDICT_USE_ENV_PROXY";
