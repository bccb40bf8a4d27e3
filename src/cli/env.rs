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
// kube
pub const K8S_NAMESPACE: &str = "HEALTH_PREDICT_NAMESPACE";
pub const K8S_DEPLOYMENT: &str = "HEALTH_PREDICT_DEPLOYMENT";
pub const K8S_IMAGE: &str = "HEALTH_PREDICT_IMAGE";
pub const K8S_CHANGE_CAUSE: &str = "HEALTH_PREDICT_CHANGE_CAUSE";
pub const K8S_VERIFY_TIMEOUT: &str = "HEALTH_PREDICT_VERIFY_TIMEOUT";
pub const K8S_EXPECT_VERSION: &str = "HEALTH_PREDICT_EXPECT_VERSION";
pub const K8S_ROLLBACK_ON_FAILURE: &str = "HEALTH_PREDICT_ROLLBACK_ON_FAILURE";
pub const K8S_READINESS_FAILURES: &str = "HEALTH_PREDICT_READINESS_FAILURES";
pub const K8S_SERVICE: &str = "HEALTH_PREDICT_SERVICE";
pub const CLUSTER_PROVIDER: &str = "HEALTH_PREDICT_CLUSTER_PROVIDER";
pub const CLUSTER_NAME: &str = "HEALTH_PREDICT_CLUSTER_NAME";
pub const CLUSTER_CONFIG: &str = "HEALTH_PREDICT_CLUSTER_CONFIG";
pub const CLUSTER_LOGS_DIR: &str = "HEALTH_PREDICT_CLUSTER_LOGS_DIR";
