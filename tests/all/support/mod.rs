//! Shared test helpers: the real data file, external programs, the binary, free ports.
#![allow(dead_code)]

pub mod mlflow;
pub mod models;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether this run is CI, where every external program must be present.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The real UCI data: `$HEALTH_PREDICT_REAL_DATA` when set (`.ci/run` sets it when the machine
/// has the file), else `shared/data/diabetic_data.csv.gz` in an ancestor of the checkout, or
/// `None` with a message when absent (a clone used outside this workplace). Under `CI=true` a
/// missing file fails the test.
pub fn shared_data() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HEALTH_PREDICT_REAL_DATA") {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "HEALTH_PREDICT_REAL_DATA={} does not exist: point it at diabetic_data.csv.gz",
            p.display()
        );
        return Some(p);
    }
    // `../shared/data` beside the checkout; a git worktree may sit one level deeper, so look in
    // every ancestor's `shared/data`.
    let rel = Path::new("shared/data/diabetic_data.csv.gz");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let p = root.join("..").join(rel);
    if let Some(found) = root
        .ancestors()
        .skip(1)
        .map(|a| a.join(rel))
        .find(|c| c.exists())
    {
        Some(found)
    } else {
        if in_ci() {
            panic!(
                "CI=true but the real data is missing: set HEALTH_PREDICT_REAL_DATA to \
                 diabetic_data.csv.gz (.ci/run does when the machine has it) or place it at {}",
                p.display()
            );
        }
        eprintln!(
            "skipped: {} is absent and HEALTH_PREDICT_REAL_DATA is unset (tests on the real data need it)",
            p.display()
        );
        None
    }
}

/// Finds an external program on PATH (or in `$HEALTH_PREDICT_TOOLS`, where `.ci/run` installs
/// Python tools). Returns `None` with a skip message locally; panics under CI.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(extra) = std::env::var_os("HEALTH_PREDICT_TOOLS") {
        dirs.extend(std::env::split_paths(&extra));
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    if in_ci() {
        panic!("CI=true but `{name}` is not installed; .ci/run must install it");
    }
    eprintln!("skipped: `{name}` is not installed (see .ci/run for how CI installs it)");
    None
}

/// Finds a program on PATH without skipping or failing (for "this or that" choices).
pub fn require_tool_quiet(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The `health-predict` binary built for this test run.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_health-predict"))
}

/// A free TCP port on 127.0.0.1 (bound then released: a small race that tests tolerate by retrying
/// the server start).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Runs a command, returning (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("command runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// The fake API server is held to the dead-code lint: it carries only what the tests use.
#[warn(dead_code)]
pub mod fake_kube;
pub mod kubelet;
pub mod moto;
pub mod registry;
pub mod runs;
pub mod scorer;
pub mod workflow;

/// Headless Chromium with a throwaway profile, logging to stderr (console messages included).
pub fn chromium_cmd(chromium: &Path, profile: &Path) -> Command {
    let mut c = Command::new(chromium);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

/// Screenshots `page` at `window` ("W,H") into `png`: Chromium exits 0, the page logs nothing
/// to the console, and the picture is a PNG of real content (over 20 kB).
pub fn screenshot(chromium: &Path, profile: &Path, window: &str, page: &Path, png: &Path) {
    let (code, _, stderr) = run(chromium_cmd(chromium, profile)
        .arg(format!("--window-size={window}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display())));
    assert_eq!(code, 0, "{stderr}");
    let console: Vec<&str> = stderr.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    let bytes = std::fs::read(png).expect("screenshot written");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
        "{} bytes",
        bytes.len()
    );
}
