//! Real model files trained once per test-binary run on slices of the shared UCI data, for the
//! registry and gate tests: a few models of different quality and many distinct small ones.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use health_predict::data::{LoadOptions, Table, Target, load};
use health_predict::model::{Algorithm, TrainRequest, train};

use super::shared_data;

/// Model files and a holdout in a temporary directory (kept for the process's life).
#[derive(Debug)]
pub struct Models {
    pub dir: PathBuf,
    /// Rows 90,000.. of the UCI file (never trained on), as CSV.
    pub holdout: PathBuf,
    /// Logistic regression on 8,000 rows.
    pub good: PathBuf,
    /// Logistic regression on 400 rows: clearly worse on the holdout.
    pub weak: PathBuf,
    /// Gradient-boosted trees on 8,000 rows (large file: ~1 MB).
    pub trees: PathBuf,
    /// Logistic regression for the `lt30` target: not comparable with the others.
    pub lt30: PathBuf,
    /// Small distinct valid model files (logistic, different seeds), for kill and race tests.
    pub variants: Vec<PathBuf>,
}

static MODELS: OnceLock<Option<Models>> = OnceLock::new();

/// The shared models, or `None` (skipped) where the shared data is absent outside CI.
pub fn models() -> Option<&'static Models> {
    MODELS.get_or_init(build).as_ref()
}

fn train_to(table: &Table, algorithm: Algorithm, target: Target, seed: u64, out: &Path) {
    let mut req = TrainRequest::new(table);
    req.algorithm = algorithm;
    req.target = target;
    req.seed = seed;
    req.trials = 2;
    req.threads = Some(1);
    let outcome = train(&req, &|_| {}).expect("training on real rows succeeds");
    outcome.model.save(out).expect("model file saves");
}

/// `CARGO_TARGET_TMPDIR/test-models-PID`, after removing those of test runs that have ended
/// (a static is never dropped, so each run cleans up after the last).
fn models_dir() -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    if let Ok(entries) = std::fs::read_dir(base) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("test-models-")
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
            if !alive {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = base.join(format!("test-models-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("models dir");
    dir
}

fn build() -> Option<Models> {
    let data = shared_data()?;
    let started = std::time::Instant::now();
    let table = load(&data, &LoadOptions::default()).expect("shared data loads");
    let dir = models_dir();
    let rows = |r: std::ops::Range<usize>| table.select(&r.collect::<Vec<_>>());
    let holdout = dir.join("holdout.csv");
    rows(90_000..table.len())
        .write_csv(std::fs::File::create(&holdout).expect("holdout file"))
        .expect("holdout written");
    let big = rows(0..8_000);
    let m = |name: &str| dir.join(name);
    train_to(&big, Algorithm::Logistic, Target::Any, 42, &m("good.model"));
    train_to(
        &rows(8_000..8_400),
        Algorithm::Logistic,
        Target::Any,
        42,
        &m("weak.model"),
    );
    train_to(&big, Algorithm::Gbt, Target::Any, 42, &m("trees.model"));
    train_to(
        &big,
        Algorithm::Logistic,
        Target::Lt30,
        42,
        &m("lt30.model"),
    );
    let small = rows(10_000..11_000);
    let variants: Vec<PathBuf> = (0..24)
        .map(|i| {
            let p = m(&format!("variant-{i:02}.model"));
            train_to(&small, Algorithm::Logistic, Target::Any, 1000 + i, &p);
            p
        })
        .collect();
    eprintln!(
        "test models trained in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Some(Models {
        holdout,
        good: m("good.model"),
        weak: m("weak.model"),
        trees: m("trees.model"),
        lt30: m("lt30.model"),
        variants,
        dir,
    })
}
