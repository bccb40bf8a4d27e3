//! Integration tests: kube.
