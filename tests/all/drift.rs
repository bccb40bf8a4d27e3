//! Integration tests: drift.
