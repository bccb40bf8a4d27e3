//! Real pipeline output for the report tests: `pipeline simulate` run once per test binary on
//! small synthetic data (bootstrap, then batches 2 and 3 with a low drift threshold so both
//! retrain and pass the gate against a production model), shared read-only by every test that
//! needs a run directory or a history. Tests copy what they modify.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The simulation root: `initial/`, `batch_2/`, `batch_3/` (run directories) and `state/`
/// (with `state/history/`).
pub fn simulated() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        // Under cargo's scratch directory for integration tests (inside the target dir), replaced
        // on every test run, so nothing is left in /tmp.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("report-simulation-{}", std::process::id()));
        if let Ok(rd) = std::fs::read_dir(Path::new(env!("CARGO_TARGET_TMPDIR"))) {
            for e in rd.flatten() {
                // Only directories of test processes that have ended: another test binary
                // sharing this target dir may be reading its own right now.
                let name = e.file_name().to_string_lossy().into_owned();
                let ended = name
                    .strip_prefix("report-simulation-")
                    .and_then(|pid| pid.parse::<u32>().ok())
                    .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
                if ended {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let root = dir.join("sim");
        let (code, out, err) = super::run(
            super::bin()
                .current_dir(&dir)
                .env_remove("GITHUB_ACTIONS")
                .env_remove("GITHUB_OUTPUT")
                .env_remove("GITHUB_STEP_SUMMARY")
                .env_remove("HEALTH_PREDICT_RUN_ID")
                .args(["pipeline", "simulate", "--run-dir"])
                .arg(&root)
                .args([
                    "--synth-rows",
                    "8000",
                    "--batch-rows",
                    "1500",
                    "--trials",
                    "2",
                    "--min-holdout-rows",
                    "200",
                    "--latency-budget-ms",
                    "2000",
                    "--drift-share-threshold",
                    "0.02",
                    "--batches",
                    "2,3",
                ]),
        );
        assert_eq!(code, 0, "pipeline simulate failed\n{out}\n{err}");
        root
    })
}

/// A copy of one simulated run directory under `dest` (a test may change it).
pub fn copy_run(name: &str, dest: &Path) -> PathBuf {
    let src = simulated().join(name);
    let to = dest.join("run");
    copy_dir(&src, &to);
    to
}

pub fn copy_dir(src: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}
