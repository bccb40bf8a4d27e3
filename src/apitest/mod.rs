//! API contract tests against a running service, JUnit output and connectivity diagnosis.
