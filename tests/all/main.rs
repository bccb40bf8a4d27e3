//! The one integration-test binary. Each module tests one area through the library or the CLI.
//!
//! Tests that need a real program (moto_server, docker-registry, mlflow, chromium, actionlint)
//! find it through `support::require_tool`: skipped with a message on a developer machine that
//! lacks it, a failure under CI (`CI=true`), where `.ci/run` installs them all.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod apitest;
mod aws;
mod cli;
mod data;
mod drift;
mod gate;
mod github;
mod image;
mod kube;
mod model;
mod pipeline;
mod registry;
mod release;
mod report;
mod serve;
mod workflows;
