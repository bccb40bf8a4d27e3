//! Integration tests: the registry through the real binary and the library, on both backends.
//!
//! - Kill tests: writers SIGKILLed at random points leave a registry that loads, with every
//!   alias on a complete, checksum-valid version.
//! - Processes registering at once get distinct versions (and the same file, one version).
//! - One register/promote/rollback/gate scenario against the local directory and a real
//!   `mlflow server`.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use health_predict::model::ModelFile;
use health_predict::registry::{Registry, alias_stack, local::LocalRegistry};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::support::mlflow;
use crate::support::models::{Models, models};
use crate::support::{bin, run};

/// `health-predict --output json ARGS --registry URI`: (exit code, parsed stdout, stderr).
pub fn hp(registry: &str, args: &[&str]) -> (i32, Value, String) {
    let mut cmd = bin();
    cmd.args(["--output", "json"])
        .args(args)
        .args(["--registry", registry]);
    let (code, out, err) = run(&mut cmd);
    let json = serde_json::from_str(&out).unwrap_or(Value::Null);
    (code, json, err)
}

fn ok(registry: &str, args: &[&str]) -> Value {
    let (code, json, err) = hp(registry, args);
    assert_eq!(code, 0, "{args:?} failed: {err}");
    json
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Everything a reader must be able to rely on, checked through the library.
fn assert_consistent(root: &Path) -> (usize, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let reg: Box<dyn Registry> = Box::new(LocalRegistry::new(root));
        let versions = reg.versions().await.expect("the registry loads");
        let numbers: Vec<u64> = versions.iter().map(|r| r.version).collect();
        let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
        assert_eq!(numbers, expected, "versions are complete and contiguous");
        let aliases = reg.aliases().await.expect("aliases load");
        for (alias, version) in &aliases {
            let (bytes, record) = reg
                .fetch(*version)
                .await
                .unwrap_or_else(|e| panic!("alias {alias} -> version {version}: {e}"));
            assert_eq!(record.version, *version);
            ModelFile::from_bytes(&bytes)
                .unwrap_or_else(|e| panic!("alias {alias} -> version {version}: {e}"));
            let history = reg.history(alias).await.expect("history loads");
            assert_eq!(
                alias_stack(&history).last(),
                Some(version),
                "alias {alias}'s history ends where it points"
            );
        }
        (versions.len(), aliases.len())
    })
}

fn partial_versions(root: &Path) -> usize {
    std::fs::read_dir(root.join("versions"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn writers_killed_at_random_points_leave_a_consistent_registry() {
    let Some(m) = models() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("reg");
    let reg = path(&root);
    ok(
        reg,
        &[
            "registry",
            "register",
            path(&m.variants[0]),
            "--alias",
            "production",
        ],
    );
    ok(
        reg,
        &[
            "registry",
            "register",
            path(&m.trees),
            "--alias",
            "candidate",
        ],
    );
    // How long whole writes take here; the kill window then adapts (longer after a kill, shorter
    // after a write that finished first) so that kills keep landing on both sides of the end
    // however loaded the machine is.
    let timed = |args: &[&str]| {
        let t0 = Instant::now();
        ok(reg, args);
        t0.elapsed()
    };
    let typical = (timed(&[
        "registry",
        "register",
        path(&m.variants[1]),
        "--alias",
        "candidate",
    ]) + timed(&["registry", "promote", "3", "--alias", "production"])
        + timed(&["registry", "rollback", "--alias", "production"]))
        / 3;
    let seed = std::env::var("HEALTH_PREDICT_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let iterations = 60;
    let (mut interrupted, mut completed, mut saw_partial) = (0, 0, 0);
    let mut next_variant = 2;
    let mut window = typical;
    for _ in 0..iterations {
        let versions = assert_consistent(&root).0 as u64;
        let args: Vec<String> = match rng.random_range(0..10) {
            0..=5 => {
                let v = &m.variants[next_variant % m.variants.len()];
                next_variant += 1;
                vec![
                    "registry".into(),
                    "register".into(),
                    path(v).into(),
                    "--alias".into(),
                    "candidate".into(),
                ]
            }
            6..=7 => vec![
                "registry".into(),
                "promote".into(),
                rng.random_range(1..=versions).to_string(),
                "--alias".into(),
                "production".into(),
            ],
            _ => vec![
                "registry".into(),
                "rollback".into(),
                "--alias".into(),
                "production".into(),
            ],
        };
        let mut cmd = bin();
        if args[1] == "register" {
            // Half-written versions must be seen, not just hoped for: the writer pauses
            // between the model file and the record, and the kill lands at a random time.
            cmd.env("HEALTH_PREDICT_FAILPOINT_REGISTRY_PAUSE_MS", "150");
        }
        let mut child = cmd
            .args(&args)
            .args(["--registry", reg, "-q"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("binary starts");
        std::thread::sleep(window.mul_f64(rng.random_range(0.0..2.0)));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let status = child.wait().expect("child reaped");
        if status.signal() == Some(9) {
            interrupted += 1;
            window = window.mul_f64(1.15);
        } else {
            completed += 1;
            window = window.mul_f64(0.87);
        }
        if partial_versions(&root) > 0 {
            saw_partial += 1;
        }
        assert_consistent(&root);
    }
    eprintln!(
        "kill test (seed {seed}, typical write {} ms): {interrupted} writers killed, {completed} \
         finished first, {saw_partial} kills left a partial version behind",
        typical.as_millis()
    );
    assert!(
        interrupted >= iterations / 6 && completed >= iterations / 10 && saw_partial >= 1,
        "the kills must land both mid-write and after completion for the test to mean much: \
         {interrupted} killed, {completed} finished, {saw_partial} partial"
    );
    // The CLI reads it too, and the next writer sweeps what killed writers left.
    let list = ok(reg, &["registry", "list"]);
    assert!(!list["versions"].as_array().unwrap().is_empty());
    let v = m.variants.last().unwrap();
    ok(reg, &["registry", "register", path(v)]);
    assert_eq!(partial_versions(&root), 0);
    assert_consistent(&root);
}

/// Starts `health-predict registry register MODEL` as a child with JSON output.
fn spawn_register(reg: &str, model: &Path) -> std::process::Child {
    bin()
        .args(["--output", "json", "registry", "register", path(model)])
        .args(["--registry", reg])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts")
}

/// Four processes register four files at once: all succeed, with four distinct versions.
fn register_at_once(reg: &str, models: &[std::path::PathBuf]) -> BTreeSet<u64> {
    let children: Vec<_> = models.iter().map(|v| spawn_register(reg, v)).collect();
    let mut versions = BTreeSet::new();
    for c in children {
        let out = c.wait_with_output().expect("child output");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        let json: Value = serde_json::from_slice(&out.stdout).expect("JSON output");
        assert_eq!(json["created"], true);
        versions.insert(json["version"].as_u64().expect("a version"));
    }
    assert_eq!(versions.len(), models.len(), "{versions:?}");
    versions
}

#[test]
fn processes_registering_at_once_get_distinct_versions() {
    let Some(m) = models() else { return };
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("reg");
    let versions = register_at_once(path(&reg), &m.variants[..4]);
    assert_eq!(versions, BTreeSet::from([1, 2, 3, 4]));

    // The same file from two processes at once: one version, no duplicate.
    let same: Vec<_> = (0..2)
        .map(|_| spawn_register(path(&reg), &m.variants[5]))
        .collect();
    let outs: Vec<Value> = same
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success());
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    assert_eq!(outs[0]["version"], outs[1]["version"]);
    let created: Vec<bool> = outs.iter().map(|o| o["created"] == true).collect();
    assert_eq!(created.iter().filter(|c| **c).count(), 1, "{outs:?}");
    assert_eq!(assert_consistent(&reg).0, 5);
}

#[test]
fn processes_registering_at_once_on_mlflow_get_distinct_versions() {
    let Some(m) = models() else { return };
    let Some(server) = mlflow::server() else {
        return;
    };
    // A fresh registered model and experiment: the processes also race to create them.
    let reg = server.registry_uri(&format!("hp-race-{}", std::process::id()));
    let versions = register_at_once(&reg, &m.variants[6..10]);
    assert_eq!(versions, BTreeSet::from([1, 2, 3, 4]));

    // The same file from three processes at once: every one answers with the same version and
    // one version remains (a racer that created a duplicate deletes it again).
    let outs: Vec<Value> = (0..3)
        .map(|_| spawn_register(&reg, &m.variants[11]))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    assert!(
        outs.iter().all(|o| o["version"] == outs[0]["version"]),
        "{outs:?}"
    );
    let list = ok(&reg, &["registry", "list"]);
    let listed: Vec<&Value> = list["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["version"] == outs[0]["version"] || v["sha256"] == outs[0]["sha256"])
        .collect();
    assert_eq!(listed.len(), 1, "{list:#}");
    assert_eq!(list["versions"].as_array().unwrap().len(), 5);
}

/// Register, gate, promote, gate again, roll back: the same steps on any backend.
fn scenario(reg: &str, m: &Models, report: &Path) {
    let a = ok(
        reg,
        &[
            "registry",
            "register",
            path(&m.weak),
            "--alias",
            "production",
            "--run-id",
            "run-1",
        ],
    );
    assert_eq!(a["created"], true);
    let va = a["version"].as_u64().expect("a version");
    let b = ok(
        reg,
        &[
            "registry",
            "register",
            path(&m.good),
            "--alias",
            "candidate",
            "--parent-version",
            &va.to_string(),
        ],
    );
    let vb = b["version"].as_u64().expect("a version");
    assert!(vb > va, "versions are monotonic");
    let again = ok(reg, &["registry", "register", path(&m.good)]);
    assert_eq!(
        (again["version"].as_u64(), &again["created"]),
        (Some(vb), &Value::Bool(false))
    );

    let shown = ok(reg, &["registry", "show", "candidate"]);
    assert_eq!(shown["version"].as_u64(), Some(vb));
    assert_eq!(
        shown["record"]["lineage"]["parent_version"].as_u64(),
        Some(va)
    );
    assert!(shown["record"]["lineage"]["data_fingerprint"].is_string());
    assert!(shown["record"]["metrics"]["test.roc_auc"].is_number());
    let by_path = ok(reg, &["registry", "show", path(&m.good)]);
    assert_eq!(by_path["version"].as_u64(), Some(vb));

    // The image the pipeline records on a version comes back with it (deploy workflows read it).
    assert!(shown["image"].is_null());
    health_predict::install_crypto_provider();
    let image = "registry.example/health-predict@sha256:0123abcd";
    let r = health_predict::registry::open(reg, &Default::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(r.set_image(vb, image)).unwrap();
    let shown = ok(reg, &["registry", "show", &vb.to_string()]);
    assert_eq!(shown["image"], image);
    assert_eq!(shown["record"]["image"], image);
    assert!(ok(reg, &["registry", "show", &va.to_string()])["image"].is_null());

    let holdout = path(&m.holdout);
    let report_dir = path(report);
    let (code, gate, err) = hp(
        reg,
        &[
            "gate",
            "--data",
            holdout,
            "--bootstrap",
            "200",
            "--report",
            report_dir,
        ],
    );
    assert_eq!(gate["decision"], "DEPLOY", "{err}\n{gate:#}");
    assert_eq!(code, 0);
    assert_eq!(gate["candidate"]["version"].as_u64(), Some(vb));
    assert_eq!(gate["production"]["version"].as_u64(), Some(va));
    let written: Value =
        serde_json::from_slice(&std::fs::read(report.join("gate.json")).expect("gate.json"))
            .expect("gate.json is JSON");
    assert_eq!(written["decision"], "DEPLOY");
    let md = std::fs::read_to_string(report.join("gate.md")).expect("gate.md");
    assert!(md.contains("Quality gate: `DEPLOY`"), "{md}");

    let moved = ok(
        reg,
        &["registry", "promote", "candidate", "--alias", "production"],
    );
    assert_eq!(
        (
            moved["from"].as_u64(),
            moved["to"].as_u64(),
            &moved["changed"]
        ),
        (Some(va), Some(vb), &Value::Bool(true))
    );
    let noop = ok(
        reg,
        &[
            "registry",
            "promote",
            &vb.to_string(),
            "--alias",
            "production",
        ],
    );
    assert_eq!(noop["changed"], false);
    let history = ok(reg, &["registry", "history", "--alias", "production"]);
    assert_eq!(
        history["events"].as_array().expect("a list").len(),
        2,
        "{history:#}"
    );
    assert_eq!(history["events"][0]["run_id"], "run-1");

    // The old model against the new production: clearly worse, so SKIP (exit 3).
    let (code, gate, err) = hp(
        reg,
        &[
            "gate",
            "--candidate",
            &va.to_string(),
            "--data",
            holdout,
            "--bootstrap",
            "200",
        ],
    );
    assert_eq!(gate["decision"], "SKIP", "{err}\n{gate:#}");
    assert_eq!(code, 3);
    assert!(gate["delta"].as_f64().expect("a delta") < -0.02);

    let back = ok(reg, &["registry", "rollback", "--alias", "production"]);
    assert_eq!(
        (back["from"].as_u64(), back["to"].as_u64()),
        (Some(vb), Some(va))
    );
    let shown = ok(reg, &["registry", "show", "production"]);
    assert_eq!(shown["version"].as_u64(), Some(va));
    let history = ok(reg, &["registry", "history", "--alias", "production"]);
    let events = history["events"].as_array().expect("a list");
    assert_eq!(events.len(), 3);
    assert_eq!(events[2]["action"], "rollback");
    let (code, _, err) = hp(reg, &["registry", "rollback", "--alias", "production"]);
    assert_eq!(code, 2, "nothing left to roll back to: {err}");
    assert!(err.contains("no previous version"), "{err}");

    let list = ok(reg, &["registry", "list"]);
    assert_eq!(list["versions"].as_array().expect("a list").len(), 2);
    assert_eq!(list["aliases"]["production"].as_u64(), Some(va));
    assert_eq!(list["aliases"]["candidate"].as_u64(), Some(vb));
}

#[test]
fn scenario_on_the_local_registry() {
    let Some(m) = models() else { return };
    let dir = tempfile::tempdir().unwrap();
    scenario(path(&dir.path().join("reg")), m, &dir.path().join("report"));
}

#[test]
fn scenario_on_a_real_mlflow_server() {
    let Some(m) = models() else { return };
    let Some(server) = mlflow::server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let name = format!("hp-scenario-{}", std::process::id());
    scenario(&server.registry_uri(&name), m, &dir.path().join("report"));
}

#[test]
fn mlflow_reads_are_checksum_verified() {
    let Some(m) = models() else { return };
    let Some(server) = mlflow::server() else {
        return;
    };
    let name = format!("hp-tamper-{}", std::process::id());
    let reg = server.registry_uri(&name);
    let v = ok(&reg, &["registry", "register", path(&m.variants[0])])["version"]
        .as_u64()
        .unwrap();
    // Replace the stored artifact behind MLflow's back.
    let mut stored = Vec::new();
    for entry in walk(&server.dir.join("artifacts")) {
        if entry.ends_with("model/model.bin")
            && std::fs::read(&entry).unwrap() == std::fs::read(&m.variants[0]).unwrap()
        {
            stored.push(entry);
        }
    }
    assert_eq!(stored.len(), 1, "{stored:?}");
    std::fs::write(&stored[0], std::fs::read(&m.variants[1]).unwrap()).unwrap();
    let (code, _, err) = hp(&reg, &["registry", "show", &v.to_string()]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("is corrupt"), "{err}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn cli_errors_name_the_problem_and_exit_with_its_class() {
    let Some(m) = models() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("reg");
    let reg = path(&root);
    ok(reg, &["registry", "register", path(&m.variants[0])]);
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["registry", "show", "has space"],
            2,
            "not a valid alias name",
        ),
        (vec!["registry", "show", "9"], 2, "version 9 does not exist"),
        (
            vec!["registry", "show", "production"],
            2,
            "alias `production` is not set",
        ),
        (
            vec!["registry", "promote", "1", "--alias", "v2"],
            2,
            "not a valid alias",
        ),
        (
            vec!["registry", "register", path(&m.holdout)],
            6,
            "cannot use",
        ),
        (
            vec!["registry", "register", "./absent.model"],
            6,
            "cannot read model file",
        ),
    ];
    for (args, want, needle) in cases {
        let (code, _, err) = hp(reg, &args);
        assert_eq!(code, want, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(err.contains("hint: "), "{args:?}: {err}");
    }
    std::fs::write(root.join("versions/1/model.bin"), b"tampered").unwrap();
    let (code, _, err) = hp(reg, &["registry", "show", "1"]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("is corrupt"), "{err}");
    let (code, _, err) = hp("s3://bucket/x", &["registry", "list"]);
    assert_eq!(code, 2, "{err}");
    let unreachable = format!("mlflow+http://127.0.0.1:{}", crate::support::free_port());
    let (code, _, err) = hp(&unreachable, &["registry", "list"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("could not be reached"), "{err}");
}

#[test]
fn human_output_lists_versions_and_aliases() {
    let Some(m) = models() else { return };
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("reg");
    let mut cmd = bin();
    cmd.args([
        "registry",
        "register",
        path(&m.good),
        "--alias",
        "production",
    ])
    .args(["--registry", path(&reg)]);
    let (code, out, err) = run(&mut cmd);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("registered version 1"), "{out}");
    assert!(out.contains("production: unset -> version 1"), "{out}");
    let mut cmd = bin();
    cmd.args(["registry", "list", "--registry", path(&reg)]);
    let (_, out, _) = run(&mut cmd);
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with('1'))
        .unwrap();
    assert!(line.ends_with("production"), "{out}");
}
