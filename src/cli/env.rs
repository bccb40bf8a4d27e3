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
// github
pub const GITHUB_TOKEN: &str = "GITHUB_TOKEN";
pub const GITHUB_REPOSITORY: &str = "GITHUB_REPOSITORY";
pub const GITHUB_SHA: &str = "GITHUB_SHA";
pub const GITHUB_EVENT_NAME: &str = "GITHUB_EVENT_NAME";
pub const GITHUB_EVENT_PATH: &str = "GITHUB_EVENT_PATH";
pub const GITHUB_API_URL: &str = "GITHUB_API_URL";
pub const GITHUB_SERVER_URL: &str = "GITHUB_SERVER_URL";
pub const GITHUB_RUN_ID: &str = "GITHUB_RUN_ID";
pub const GITHUB_WORKSPACE: &str = "GITHUB_WORKSPACE";
pub const PUBLISH_RUN_DIR: &str = "HEALTH_PREDICT_RUN_DIR";
pub const PUBLISH_JUNIT: &str = "HEALTH_PREDICT_JUNIT";
pub const PUBLISH_SUMMARY: &str = "HEALTH_PREDICT_SUMMARY";
pub const PUBLISH_CHECK_NAME: &str = "HEALTH_PREDICT_CHECK_NAME";
pub const PUBLISH_COMMENT: &str = "HEALTH_PREDICT_COMMENT";
pub const PUBLISH_MAX_ANNOTATIONS: &str = "HEALTH_PREDICT_MAX_ANNOTATIONS";
