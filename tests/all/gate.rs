//! Integration tests: gate.
