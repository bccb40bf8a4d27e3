//! The command line as users meet it.

use crate::support::{bin, run};

#[test]
fn version_and_help_work() {
    let (code, out, _) = run(bin().arg("--version"));
    assert_eq!(code, 0);
    assert!(out.starts_with("health-predict "), "{out}");
    let (code, out, _) = run(bin().arg("--help"));
    assert_eq!(code, 0);
    assert!(out.contains("pipeline"), "{out}");
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let (code, _, err) = run(bin().arg("no-such-command"));
    assert_eq!(code, 2, "{err}");
}

#[test]
fn api_test_needs_a_target() {
    let (code, _, err) = run(bin().arg("api-test"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--base-url") && err.contains("--k8s-service"),
        "{err}"
    );
}
