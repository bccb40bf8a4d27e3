//! Integration tests: gate decisions through the binary on real models and real holdout rows,
//! including every refusal a reviewer would want.

use std::path::Path;

use serde_json::Value;

use crate::registry::hp;
use crate::support::models::models;

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// A local registry with `production` (good) and `candidate` (weak) set.
fn registry(dir: &Path) -> String {
    let m = models().expect("checked by the caller");
    let reg = path(&dir.join("reg")).to_owned();
    for (model, alias) in [(&m.good, "production"), (&m.weak, "candidate")] {
        let (code, _, err) = hp(
            &reg,
            &["registry", "register", path(model), "--alias", alias],
        );
        assert_eq!(code, 0, "{err}");
    }
    reg
}

fn gate(reg: &str, extra: &[&str]) -> (i32, Value, String) {
    let m = models().expect("checked by the caller");
    let mut args = vec!["gate", "--bootstrap", "200"];
    if !extra.contains(&"--data") {
        args.extend(["--data", path(&m.holdout)]);
    }
    args.extend(extra);
    hp(reg, &args)
}

fn assert_refused(result: &(i32, Value, String), needle: &str) {
    let (code, json, err) = result;
    assert_eq!(json["decision"], "REFUSED", "{err}\n{json:#}");
    assert_eq!(*code, 3, "a refusal is not a pass");
    let refusals: Vec<&str> = json["refusals"]
        .as_array()
        .expect("refusals is a list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        refusals.iter().any(|r| r.contains(needle)),
        "{needle:?} not in {refusals:?}"
    );
}

#[test]
fn no_production_model_deploys() {
    let Some(m) = models() else { return };
    let dir = tempfile::tempdir().unwrap();
    let reg = path(&dir.path().join("reg")).to_owned();
    let (code, _, err) = hp(
        &reg,
        &[
            "registry",
            "register",
            path(&m.good),
            "--alias",
            "candidate",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, json, err) = gate(&reg, &[]);
    assert_eq!(json["decision"], "DEPLOY", "{err}\n{json:#}");
    assert_eq!(code, 0);
    assert!(json["production"].is_null());
    assert!(json["candidate"]["auc"].as_f64().unwrap() > 0.6);
}

#[test]
fn worse_candidate_skips_unless_within_the_refresh_tolerance() {
    if models().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let (code, json, err) = gate(&reg, &[]);
    assert_eq!(json["decision"], "SKIP", "{err}\n{json:#}");
    assert_eq!(code, 3);
    let delta = json["delta"].as_f64().unwrap();
    let c = json["candidate"]["auc"].as_f64().unwrap();
    let p = json["production"]["auc"].as_f64().unwrap();
    assert!((delta - (c - p)).abs() < 1e-12);
    let interval = &json["interval"];
    assert!(interval["low"].as_f64().unwrap() <= delta);
    assert!(interval["high"].as_f64().unwrap() >= delta);
    assert_eq!(interval["resamples"], 200);
    assert!(json["holdout"]["scored_rows"].as_u64().unwrap() > 10_000);

    let tolerance = format!("{:.4}", -delta + 0.001);
    let (code, json, err) = gate(&reg, &["--refresh-tolerance", &tolerance]);
    assert_eq!(json["decision"], "DEPLOY_REFRESH", "{err}\n{json:#}");
    assert_eq!(code, 0);

    // The same inputs give the same numbers: the bootstrap is seeded.
    let (_, again, _) = gate(&reg, &["--refresh-tolerance", &tolerance]);
    assert_eq!(again["interval"], json["interval"]);
    // Swapped, the better model deploys.
    let (code, json, _) = gate(
        &reg,
        &["--candidate", "production", "--production", "candidate"],
    );
    assert_eq!((code, &json["decision"]), (0, &Value::from("DEPLOY")));
}

#[test]
fn missing_or_unusable_inputs_are_refused_with_reports_written() {
    let Some(m) = models() else { return };
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let report = dir.path().join("report");

    let absent = dir.path().join("absent.csv");
    let r = gate(&reg, &["--data", path(&absent), "--report", path(&report)]);
    assert_refused(&r, "holdout unavailable");
    let written: Value =
        serde_json::from_slice(&std::fs::read(report.join("gate.json")).unwrap()).unwrap();
    assert_eq!(written["decision"], "REFUSED");
    let md = std::fs::read_to_string(report.join("gate.md")).unwrap();
    assert!(md.contains("### Why the gate refused"), "{md}");

    assert_refused(
        &gate(&reg, &["--min-rows", "1000000"]),
        "fewer than the minimum 1000000",
    );
    assert_refused(
        &gate(&reg, &["--production", "99"]),
        "version 99 does not exist",
    );
    assert_refused(
        &gate(&reg, &["--candidate", "shadow"]),
        "alias `shadow` is not set",
    );
    assert_refused(
        &gate(&reg, &["--candidate", path(&m.holdout)]),
        "not a health-predict model file",
    );
    assert_refused(
        &gate(&reg, &["--candidate", path(&m.lt30)]),
        "different feature schemas",
    );

    // A production model whose stored bytes no longer match their checksum.
    std::fs::write(dir.path().join("reg/versions/1/model.bin"), b"bit rot").unwrap();
    assert_refused(&gate(&reg, &[]), "is corrupt");
}

#[test]
fn bad_settings_are_usage_errors() {
    if models().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let (code, _, err) = gate(&reg, &["--confidence", "2"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("confidence"), "{err}");
}

#[test]
fn the_pr_comment_shows_every_number() {
    if models().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let report = dir.path().join("report");
    let (_, json, _) = gate(&reg, &["--report", path(&report)]);
    let md = std::fs::read_to_string(report.join("gate.md")).unwrap();
    assert!(md.starts_with("## ⏭️ Quality gate: `SKIP`"), "{md}");
    for number in [
        format!("{:.4}", json["candidate"]["auc"].as_f64().unwrap()),
        format!("{:.4}", json["production"]["auc"].as_f64().unwrap()),
        format!("{:+.4}", json["delta"].as_f64().unwrap()),
        format!("{:+.4}", json["interval"]["low"].as_f64().unwrap()),
        format!("{:+.4}", json["interval"]["high"].as_f64().unwrap()),
    ] {
        assert!(md.contains(&number), "{number} missing from\n{md}");
    }
    assert!(
        md.contains("| Model | alias `candidate` (version 2) | alias `production` (version 1) |"),
        "{md}"
    );
}
