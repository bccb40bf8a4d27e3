//! The whole loop through the binary, on small synthetic data: bootstrap, idempotent re-runs,
//! drift below threshold, a refused gate, failing API tests, and an interrupted run.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{bin, run};

/// Small, fast settings for debug builds.
const FAST: &[&str] = &[
    "--synth-rows",
    "4000",
    "--trials",
    "2",
    "--min-holdout-rows",
    "200",
];

fn hp(dir: &Path) -> Command {
    let mut c = bin();
    c.current_dir(dir)
        .env_remove("GITHUB_ACTIONS")
        .env_remove("HEALTH_PREDICT_RUN_ID")
        // The container test of the image is covered in `image`; here the loop's logic is.
        .env("HEALTH_PREDICT_CONTAINER_RUNTIME", "none");
    c
}

fn pipeline(dir: &Path, run_dir: &str, extra: &[&str]) -> (i32, Value, String) {
    let (code, out, err) = run(hp(dir)
        .args(["--output", "json", "pipeline", "run", "--run-dir", run_dir])
        .args(FAST)
        .args(extra)
        .args(if extra.contains(&"--latency-budget-ms") {
            &[][..]
        } else {
            &["--latency-budget-ms", "2000"][..]
        }));
    let doc: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("stdout is one JSON document ({e}): {out}\n{err}"));
    (code, doc, err)
}

fn status(doc: &Value, step: &str) -> String {
    doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == step)
        .unwrap_or_else(|| panic!("no step {step}"))["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn registry_json(dir: &Path, args: &[&str]) -> Value {
    let (code, out, err) = run(hp(dir)
        .args(["--output", "json", "registry"])
        .args(args)
        .args(["--registry", ".health-predict/registry"]));
    assert_eq!(code, 0, "registry {args:?}: {err}");
    serde_json::from_str(&out).unwrap()
}

fn production(dir: &Path) -> Option<u64> {
    let (code, out, _) = run(hp(dir).args([
        "--output",
        "json",
        "registry",
        "show",
        "production",
        "--registry",
        ".health-predict/registry",
    ]));
    (code == 0).then(|| {
        serde_json::from_str::<Value>(&out).unwrap()["version"]
            .as_u64()
            .unwrap()
    })
}

fn synth_batch(dir: &Path, seed: &str) -> PathBuf {
    let p = dir.join(format!("batch-{seed}.csv"));
    let (code, _, err) = run(hp(dir)
        .args(["data", "synth", "--rows", "2000", "--seed", seed, "--out"])
        .arg(&p));
    assert_eq!(code, 0, "{err}");
    p
}

#[test]
fn bootstrap_promotes_and_a_rerun_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (code, doc, err) = pipeline(dir.path(), "runs/one", &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(doc["status"], "passed");
    assert_eq!(doc["decision"], "DEPLOY");
    for step in [
        "load", "dataset", "train", "evaluate", "gate", "register", "package", "api-test",
        "deploy", "verify", "promote", "report",
    ] {
        assert_eq!(status(&doc, step), "passed", "{step}: {doc:#}");
    }
    assert_eq!(status(&doc, "drift"), "skipped");
    assert_eq!(doc["production_after"], 1);
    let run_dir = dir.path().join("runs/one");
    for f in [
        "run.json",
        "summary.md",
        "junit.xml",
        "gate.json",
        "gate.md",
        "metrics.json",
        "model.hpm",
    ] {
        assert!(run_dir.join(f).exists(), "{f} missing");
    }
    assert!(
        dir.path()
            .join(".health-predict/serving/model.hpm")
            .exists()
    );
    let history_before = registry_json(dir.path(), &["history", "--alias", "production"]);

    let (code, again, err) = pipeline(dir.path(), "runs/two", &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(again["decision"], "ALREADY_PROCESSED");
    assert_eq!(status(&again, "train"), "skipped");
    assert!(status(&again, "promote") == "skipped");
    let versions = registry_json(dir.path(), &["list"]);
    let count = versions["versions"]
        .as_array()
        .map_or_else(|| versions.as_array().unwrap().len(), Vec::len);
    assert_eq!(count, 1, "{versions:#}");
    assert_eq!(
        registry_json(dir.path(), &["history", "--alias", "production"]),
        history_before
    );
}

#[test]
fn drift_below_threshold_skips_training_and_keeps_production() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = pipeline(dir.path(), "runs/boot", &[]);
    assert_eq!(code, 0, "{err}");
    let batch = synth_batch(dir.path(), "7");
    let (code, doc, err) = pipeline(
        dir.path(),
        "runs/batch",
        &[
            "--batch",
            batch.to_str().unwrap(),
            "--drift-share-threshold",
            "0.95",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(doc["decision"], "NO_RETRAIN");
    assert_eq!(status(&doc, "drift"), "passed");
    for step in ["train", "gate", "register", "promote"] {
        assert_eq!(status(&doc, step), "skipped", "{step}");
    }
    assert!(doc["drift"]["share"].as_f64().unwrap() <= 0.95);
    assert!(dir.path().join("runs/batch/drift/drift.json").exists());
    assert_eq!(production(dir.path()), Some(1));
}

#[test]
fn a_refused_gate_leaves_production_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = pipeline(dir.path(), "runs/boot", &[]);
    assert_eq!(code, 0, "{err}");
    let batch = synth_batch(dir.path(), "8");
    // Demand an impossible AUC gain: the gate must say SKIP.
    let (code, doc, err) = pipeline(
        dir.path(),
        "runs/skip",
        &[
            "--batch",
            batch.to_str().unwrap(),
            "--force-retrain",
            "--gate-min-delta",
            "0.5",
            "--refresh-tolerance",
            "0",
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert_eq!(doc["decision"], "SKIP");
    assert_eq!(status(&doc, "gate"), "failed");
    for step in ["register", "api-test", "deploy", "promote"] {
        assert_eq!(status(&doc, step), "skipped", "{step}");
    }
    assert_eq!(production(dir.path()), Some(1));
    let versions = registry_json(dir.path(), &["list"]);
    let count = versions["versions"]
        .as_array()
        .map_or_else(|| versions.as_array().unwrap().len(), Vec::len);
    assert_eq!(count, 1, "a refused candidate is not registered");
}

#[test]
fn failing_api_tests_block_promotion() {
    let dir = tempfile::tempdir().unwrap();
    let (code, doc, err) = pipeline(dir.path(), "runs/slow", &["--latency-budget-ms", "0.001"]);
    assert_eq!(code, 4, "{err}");
    assert_eq!(status(&doc, "api-test"), "failed");
    assert_eq!(status(&doc, "promote"), "skipped");
    assert!(doc["tests"]["failed"].as_u64().unwrap() >= 1);
    assert_eq!(production(dir.path()), None, "production must not move");
    assert!(
        !dir.path()
            .join(".health-predict/serving/model.hpm")
            .exists()
    );
    let junit = std::fs::read_to_string(dir.path().join("runs/slow/junit.xml")).unwrap();
    assert!(junit.contains("<failure"), "{junit}");
}

#[test]
fn an_interrupted_run_leaves_a_consistent_registry() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = pipeline(dir.path(), "runs/boot", &[]);
    assert_eq!(code, 0, "{err}");
    let batch = synth_batch(dir.path(), "9");
    let mut child = hp(dir.path())
        .args([
            "pipeline",
            "run",
            "--run-dir",
            "runs/cut",
            "--force-retrain",
            "--batch",
        ])
        .arg(&batch)
        .args([
            "--synth-rows",
            "20000",
            "--trials",
            "6",
            "--min-holdout-rows",
            "200",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt as soon as training has started.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let start = Instant::now();
    let mut seen = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains("dataset: passed") {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGINT,
            )
            .unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no progress: {seen:?}"
        );
    }
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(130), "{seen:#?}");
    let doc: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("runs/cut/run.json")).unwrap())
            .unwrap();
    assert_eq!(doc["status"], "interrupted");
    assert_eq!(status(&doc, "promote"), "skipped");
    // The registry loads, production is where it was and its model verifies.
    assert_eq!(production(dir.path()), Some(1));
    registry_json(dir.path(), &["list"]);
    // The state lock was released: the same batch runs to completion now.
    let (code, doc, err) = pipeline(
        dir.path(),
        "runs/again",
        &["--batch", batch.to_str().unwrap(), "--force-retrain"],
    );
    assert!(code == 0 || code == 3, "{err}");
    assert_ne!(doc["status"], "interrupted");
}

#[test]
fn plan_names_the_steps_and_bad_settings_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(hp(dir.path()).args(["--output", "json", "pipeline", "plan"]));
    assert_eq!(code, 0, "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        plan["steps"].as_array().unwrap().len(),
        health_predict::pipeline::steps::Step::ALL.len()
    );
    assert_eq!(plan["steps"][1]["runs"], false, "no batch: no drift");

    std::fs::write(
        dir.path().join("health-predict.toml"),
        "trials = 3\ndrift_share = 0.2\n",
    )
    .unwrap();
    let (code, _, err) = run(hp(dir.path()).args(["pipeline", "plan"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("drift_share"), "{err}");
    assert!(err.contains("hint:"), "{err}");

    std::fs::write(dir.path().join("health-predict.toml"), "trials = 3\n").unwrap();
    let (code, out, _) =
        run(hp(dir.path()).args(["--output", "json", "pipeline", "plan", "--trials", "5"]));
    assert_eq!(code, 0);
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["config"]["trials"], 5, "flags override the file");

    let (code, _, err) = run(hp(dir.path()).args(["pipeline", "run", "--holdout-fraction", "2"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("`holdout_fraction` = 2") && err.contains("--holdout-fraction"),
        "{err}"
    );
}
