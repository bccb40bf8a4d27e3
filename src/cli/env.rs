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

// aws
/// The AWS region (the SDK's own variable; `AWS_DEFAULT_REGION` is read as a fallback).
pub const AWS_REGION: &str = "AWS_REGION";
pub const AWS_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
/// An endpoint for every AWS service (the SDK's own variable; tests point it at moto).
pub const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
pub const AWS_CREDENTIALS: &str = "HEALTH_PREDICT_AWS_CREDENTIALS";
pub const AWS_ROLE_ARN: &str = "HEALTH_PREDICT_AWS_ROLE_ARN";
pub const OIDC_AUDIENCE: &str = "HEALTH_PREDICT_OIDC_AUDIENCE";
pub const AWS_SESSION_NAME: &str = "HEALTH_PREDICT_AWS_SESSION_NAME";
pub const AWS_SESSION_DURATION: &str = "HEALTH_PREDICT_AWS_SESSION_DURATION";
pub const AWS_TIMEOUT: &str = "HEALTH_PREDICT_AWS_TIMEOUT";
/// Docker's own variable: the directory holding `config.json`.
pub const DOCKER_CONFIG: &str = "DOCKER_CONFIG";
pub const PULL_SECRET_NAMESPACES: &str = "HEALTH_PREDICT_PULL_SECRET_NAMESPACES";
pub const PULL_SECRET_NAME: &str = "HEALTH_PREDICT_PULL_SECRET_NAME";
pub const PULL_SECRET_SERVICE_ACCOUNT: &str = "HEALTH_PREDICT_PULL_SECRET_SERVICE_ACCOUNT";
pub const REFRESH_BEFORE: &str = "HEALTH_PREDICT_REFRESH_BEFORE";
pub const REFRESH_MIN_INTERVAL: &str = "HEALTH_PREDICT_REFRESH_MIN_INTERVAL";
pub const IMAGE_REGISTRY: &str = "HEALTH_PREDICT_IMAGE_REGISTRY";
pub const IMAGE_REPOSITORY: &str = "HEALTH_PREDICT_IMAGE_REPOSITORY";
pub const IMAGE_TAG: &str = "HEALTH_PREDICT_IMAGE_TAG";
pub const IMAGE_BASE: &str = "HEALTH_PREDICT_IMAGE_BASE";
pub const REGISTRY_USER: &str = "HEALTH_PREDICT_REGISTRY_USER";
pub const REGISTRY_PASSWORD: &str = "HEALTH_PREDICT_REGISTRY_PASSWORD";
pub const REFRESH_MAX_CYCLES: &str = "HEALTH_PREDICT_REFRESH_MAX_CYCLES";
pub const IMAGE_BINARY: &str = "HEALTH_PREDICT_IMAGE_BINARY";
pub const IMAGE_CA_BUNDLE: &str = "HEALTH_PREDICT_IMAGE_CA_BUNDLE";
pub const IMAGE_PORT: &str = "HEALTH_PREDICT_IMAGE_PORT";
pub const IMAGE_CHUNK_MIB: &str = "HEALTH_PREDICT_IMAGE_CHUNK_MIB";
pub const REGISTRY_TIMEOUT: &str = "HEALTH_PREDICT_REGISTRY_TIMEOUT";
