//! Integration tests: apitest.
