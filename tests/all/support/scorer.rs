//! A small deterministic scorer for testing the server's mechanics (not a trained model: the
//! tests on a trained model use `health-predict train` output). A logistic function of a few
//! counts, with optional delays for slow-server and shutdown tests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use health_predict::data::schema::col;
use health_predict::data::{Row, Value};
use health_predict::serve::{Contribution, Encounter, ModelDescription, ModelSource, Scorer};

#[derive(Debug, Default)]
pub struct TestScorer {
    /// Milliseconds every score sleeps; set after start-up so warm-up stays fast.
    pub delay_ms: AtomicU64,
    /// Scorings started so far (tests wait on it to know a request is in flight).
    pub calls: AtomicU64,
    /// While set, every score waits (at most 20 s) until it is cleared: a request held in
    /// flight for as long as a test needs, whatever the machine's load.
    pub hold: AtomicBool,
    pub version: String,
}

impl TestScorer {
    pub fn new(version: &str) -> Arc<TestScorer> {
        Arc::new(TestScorer {
            delay_ms: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            hold: AtomicBool::new(false),
            version: version.into(),
        })
    }

    pub fn source(self: &Arc<Self>) -> ModelSource {
        ModelSource::Scorer {
            scorer: self.clone(),
            source: "test scorer".into(),
        }
    }

    fn terms(e: &Encounter) -> Vec<(&'static str, i64, f64)> {
        let int = |c| match e.value(c) {
            Value::Int(v) => v,
            _ => 0,
        };
        vec![
            ("number_inpatient", int(col::NUMBER_INPATIENT), 0.4),
            ("time_in_hospital", int(col::TIME_IN_HOSPITAL), 0.05),
            ("num_medications", int(col::NUM_MEDICATIONS), 0.01),
        ]
    }
}

impl Scorer for TestScorer {
    fn describe(&self) -> ModelDescription {
        ModelDescription {
            name: "test-logistic".into(),
            version: self.version.clone(),
            data_fingerprint: "sha256:test".into(),
            metrics: BTreeMap::from([("auc".to_owned(), 0.5)]),
            threshold: 0.5,
            git_commit: None,
            feature_names: vec!["number_inpatient".into(), "time_in_hospital".into()],
            checksum: None,
        }
    }

    fn score(&self, e: &Encounter) -> f64 {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let d = self.delay_ms.load(Ordering::Relaxed);
        if d > 0 {
            std::thread::sleep(Duration::from_millis(d));
        }
        let held = std::time::Instant::now();
        while self.hold.load(Ordering::SeqCst) && held.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let z: f64 = -1.0
            + Self::terms(e)
                .iter()
                .map(|(_, v, w)| *v as f64 * w)
                .sum::<f64>();
        1.0 / (1.0 + (-z).exp())
    }

    fn explain(&self, e: &Encounter, top: usize) -> Vec<Contribution> {
        Self::terms(e)
            .into_iter()
            .take(top)
            .map(|(f, v, w)| Contribution {
                feature: f.into(),
                value: v.into(),
                contribution: v as f64 * w,
            })
            .collect()
    }
}

/// A model file trained once per test run on the first 20,000 rows of the real data (one trial),
/// or `None` (skipped) when the data is absent.
pub fn trained_model() -> Option<std::path::PathBuf> {
    static MODEL: std::sync::OnceLock<Option<(tempfile::TempDir, std::path::PathBuf)>> =
        std::sync::OnceLock::new();
    MODEL
        .get_or_init(|| {
            let data = super::shared_data()?;
            let table =
                health_predict::data::load(&data, &health_predict::data::LoadOptions::default())
                    .expect("the shared data loads");
            let rows: Vec<usize> = (0..20_000.min(table.len())).collect();
            let subset = table.select(&rows);
            let mut req = health_predict::model::TrainRequest::new(&subset);
            req.trials = 1;
            let outcome = health_predict::model::train(&req, &|_| {}).expect("training works");
            let dir = tempfile::tempdir().expect("a temp dir");
            let path = dir.path().join("model.json");
            outcome.model.save(&path).expect("the model saves");
            Some((dir, path))
        })
        .as_ref()
        .map(|(_, p)| p.clone())
}
