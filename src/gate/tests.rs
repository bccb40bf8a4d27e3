//! Gate decisions for the documented cases, with scorers that return fixed scores.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::data::Value;
use crate::data::schema::{WIDTH, col};

struct Fixed {
    scores: Vec<f64>,
    schema: Option<&'static str>,
}

impl Scorer for Fixed {
    fn schema_hash(&self) -> Option<String> {
        self.schema.map(str::to_owned)
    }
    fn model_id(&self) -> Option<String> {
        Some("fixed".into())
    }
    fn target(&self) -> Option<Target> {
        Some(Target::Lt30)
    }
    fn score(&self, table: &Table) -> Result<Vec<f64>, String> {
        Ok(self.scores[..table.len().min(self.scores.len())].to_vec())
    }
}

struct Broken;

impl Scorer for Broken {
    fn schema_hash(&self) -> Option<String> {
        Some("s1".into())
    }
    fn model_id(&self) -> Option<String> {
        None
    }
    fn target(&self) -> Option<Target> {
        Some(Target::Lt30)
    }
    fn score(&self, _: &Table) -> Result<Vec<f64>, String> {
        Err("feature `age` missing from the encoder".into())
    }
}

/// A holdout of `n` rows, about a third positive, with labels only.
fn holdout(n: usize, positive_every: usize) -> (Table, Vec<bool>) {
    let mut t = Table::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let mut row = [Value::Missing; WIDTH];
        let pos = i % positive_every == 0;
        row[col::READMITTED] = Value::Str(if pos { "<30" } else { "NO" });
        t.push_row(&row);
        labels.push(pos);
    }
    (t, labels)
}

/// Scores separating the classes with `signal` (0: random) plus seeded noise.
fn scores(labels: &[bool], signal: f64, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    labels
        .iter()
        .map(|&l| if l { signal } else { 0.0 } + rng.random::<f64>())
        .collect()
}

/// Defaults with fewer resamples: debug builds are slow and the tests check decisions.
fn cfg() -> GateConfig {
    GateConfig {
        bootstrap: 300,
        ..GateConfig::default()
    }
}

fn model<'a>(source: &'a str, scorer: &'a dyn Scorer) -> GateModel<'a> {
    GateModel {
        source,
        version: Some(1),
        sha256: "ab12",
        model: scorer,
    }
}

fn run(
    cand: &dyn Scorer,
    prod: Option<&dyn Scorer>,
    table: &Table,
    config: &GateConfig,
) -> GateReport {
    evaluate(
        Ok(model("candidate", cand)),
        prod.map(|p| Ok(model("production", p))),
        Ok(Holdout {
            source: "holdout.csv",
            table,
        }),
        config,
    )
}

fn fixed(s: Vec<f64>) -> Fixed {
    Fixed {
        scores: s,
        schema: Some("s1"),
    }
}

#[test]
fn no_production_model_deploys() {
    let (t, l) = holdout(2000, 3);
    let c = fixed(scores(&l, 0.3, 1));
    let r = run(&c, None, &t, &cfg());
    assert_eq!(r.decision, Decision::Deploy, "{}", r.reason);
    assert!(r.production.is_none() && r.delta.is_none() && r.interval.is_none());
    assert!(r.candidate.auc.unwrap() > 0.6);
    assert_eq!(r.exit_code, 0);
}

#[test]
fn better_or_equal_candidate_deploys_with_an_interval_around_the_delta() {
    let (t, l) = holdout(3000, 3);
    let c = fixed(scores(&l, 0.5, 1));
    let p = fixed(scores(&l, 0.2, 2));
    let r = run(&c, Some(&p), &t, &cfg());
    assert_eq!(r.decision, Decision::Deploy, "{}", r.reason);
    let d = r.delta.unwrap();
    assert!(d > 0.05, "{d}");
    let i = r.interval.clone().unwrap();
    assert!(i.low < d && d < i.high, "{i:?} {d}");
    assert!(i.low > 0.0, "a large gain should exclude 0: {i:?}");
    assert_eq!(i.resamples, 300);

    let same = run(&c, Some(&c), &t, &cfg());
    assert_eq!(same.delta, Some(0.0));
    assert_eq!(same.decision, Decision::Deploy, "delta 0 deploys");
}

#[test]
fn slightly_worse_refreshes_and_clearly_worse_skips_with_configurable_tolerance() {
    let (t, l) = holdout(3000, 3);
    let c = fixed(scores(&l, 0.2, 1));
    let p = fixed(scores(&l, 0.5, 2));
    let skip = run(&c, Some(&p), &t, &cfg());
    let d = skip.delta.unwrap();
    assert!(d < -0.02, "{d}");
    assert_eq!(skip.decision, Decision::Skip, "{}", skip.reason);
    assert_eq!(skip.exit_code, 3);
    assert!(skip.refusals.is_empty());

    let wide = GateConfig {
        refresh_tolerance: -d + 0.001,
        ..cfg()
    };
    let refresh = run(&c, Some(&p), &t, &wide);
    assert_eq!(
        refresh.decision,
        Decision::DeployRefresh,
        "{}",
        refresh.reason
    );
    assert_eq!(refresh.exit_code, 0);

    // The boundary belongs to DEPLOY_REFRESH: -tolerance <= delta.
    let exact = GateConfig {
        refresh_tolerance: -d,
        ..cfg()
    };
    assert_eq!(
        run(&c, Some(&p), &t, &exact).decision,
        Decision::DeployRefresh
    );
}

#[test]
fn a_min_delta_demands_a_gain_and_shifts_the_refresh_band() {
    let (t, l) = holdout(3000, 3);
    let c = fixed(scores(&l, 0.5, 1));
    let p = fixed(scores(&l, 0.2, 2));
    let d = run(&c, Some(&p), &t, &cfg()).delta.unwrap();
    assert!(d > 0.05, "{d}");
    let demanding = GateConfig {
        min_delta: d + 0.01,
        refresh_tolerance: 0.0,
        ..cfg()
    };
    let r = run(&c, Some(&p), &t, &demanding);
    assert_eq!(r.decision, Decision::Skip, "{}", r.reason);
    let banded = GateConfig {
        min_delta: d + 0.01,
        refresh_tolerance: 0.02,
        ..cfg()
    };
    assert_eq!(
        run(&c, Some(&p), &t, &banded).decision,
        Decision::DeployRefresh
    );
    let bad = GateConfig {
        min_delta: f64::NAN,
        ..cfg()
    };
    assert_refused(&run(&c, Some(&p), &t, &bad), "min delta");
}

#[test]
fn the_bootstrap_is_seeded() {
    let (t, l) = holdout(1500, 3);
    let c = fixed(scores(&l, 0.3, 1));
    let p = fixed(scores(&l, 0.25, 2));
    let a = run(&c, Some(&p), &t, &cfg());
    let b = run(&c, Some(&p), &t, &cfg());
    assert_eq!(a.interval, b.interval);
    let other = GateConfig { seed: 7, ..cfg() };
    assert_ne!(a.interval, run(&c, Some(&p), &t, &other).interval);
    let none = GateConfig {
        bootstrap: 0,
        ..cfg()
    };
    assert!(run(&c, Some(&p), &t, &none).interval.is_none());
}

fn assert_refused(r: &GateReport, needle: &str) {
    assert_eq!(r.decision, Decision::Refused, "{}", r.reason);
    assert_eq!(r.exit_code, 3);
    assert!(
        r.refusals.iter().any(|x| x.contains(needle)),
        "{needle:?} not in {:?}",
        r.refusals
    );
}

#[test]
fn small_or_single_class_holdouts_are_refused() {
    let (t, l) = holdout(500, 3);
    let c = fixed(scores(&l, 0.5, 1));
    assert_refused(&run(&c, None, &t, &cfg()), "fewer than the minimum 1000");
    let (t, l) = holdout(2000, 100);
    let c = fixed(scores(&l, 0.5, 1));
    assert_refused(&run(&c, None, &t, &cfg()), "each class needs at least 50");
    let (t, l) = holdout(2000, 1);
    let c = fixed(scores(&l, 0.5, 1));
    assert_refused(&run(&c, None, &t, &cfg()), "0 negative");
}

#[test]
fn different_schemas_are_refused() {
    let (t, l) = holdout(2000, 3);
    let c = fixed(scores(&l, 0.5, 1));
    let p = Fixed {
        scores: scores(&l, 0.1, 2),
        schema: Some("s2"),
    };
    let r = run(&c, Some(&p), &t, &cfg());
    assert_refused(&r, "different feature schemas");
    // The numbers are still reported for the reviewer.
    assert!(r.delta.is_some());
    let unknown = Fixed {
        scores: scores(&l, 0.1, 2),
        schema: None,
    };
    assert_refused(
        &run(&c, Some(&unknown), &t, &cfg()),
        "production model records no schema hash",
    );
}

#[test]
fn missing_inputs_are_refusals_not_passes() {
    let (t, l) = holdout(2000, 3);
    let c = fixed(scores(&l, 0.5, 1));
    let h = || {
        Ok(Holdout {
            source: "h",
            table: &t,
        })
    };
    let cfg = cfg();
    let r = evaluate(Err("version 9 does not exist".into()), None, h(), &cfg);
    assert_refused(&r, "candidate model unavailable: version 9");
    let r = evaluate(
        Ok(model("c", &c)),
        Some(Err("checksum mismatch".into())),
        h(),
        &cfg,
    );
    assert_refused(&r, "production model unavailable: checksum mismatch");
    let r = evaluate(Ok(model("c", &c)), None, Err("no such file".into()), &cfg);
    assert_refused(&r, "holdout unavailable: no such file");
    assert!(r.holdout.is_none());
}

#[test]
fn models_that_cannot_score_are_refused() {
    let (t, l) = holdout(2000, 3);
    let mut s = scores(&l, 0.5, 1);
    s[17] = f64::NAN;
    let nan = fixed(s);
    assert_refused(
        &run(&nan, None, &t, &cfg()),
        "non-finite score on holdout row 18",
    );
    let short = fixed(scores(&l[..10], 0.5, 1));
    assert_refused(&run(&short, None, &t, &cfg()), "returned 10 scores");
    let good = fixed(scores(&l, 0.5, 1));
    assert_refused(
        &run(&good, Some(&Broken), &t, &cfg()),
        "production model could not score the holdout: feature `age`",
    );
}

#[test]
fn bad_settings_are_refused() {
    let (t, l) = holdout(2000, 3);
    let c = fixed(scores(&l, 0.5, 1));
    let cfg = GateConfig {
        confidence: 1.5,
        ..cfg()
    };
    assert_refused(&run(&c, None, &t, &cfg), "confidence");
}

#[test]
fn unlabelled_rows_are_left_out_of_both_models() {
    let (mut t, l) = holdout(2000, 3);
    let mut row = [Value::Missing; WIDTH];
    row[col::READMITTED] = Value::Missing;
    t.push_row(&row);
    let mut cs = scores(&l, 0.5, 1);
    cs.push(f64::NAN); // scored but unlabelled: never used
    let c = fixed(cs);
    let r = run(&c, None, &t, &cfg());
    assert_eq!(r.decision, Decision::Deploy, "{}", r.reason);
    let h = r.holdout.unwrap();
    assert_eq!((h.rows, h.scored_rows), (2001, 2000));
}

#[test]
fn reports_render_for_people_and_pull_requests() {
    let (t, l) = holdout(2000, 3);
    let c = fixed(scores(&l, 0.2, 1));
    let p = fixed(scores(&l, 0.5, 2));
    let r = run(&c, Some(&p), &t, &cfg());
    let md = render::markdown(&r);
    assert!(md.starts_with("## ⏭️ Quality gate: `SKIP`"), "{md}");
    assert!(md.contains("| ROC AUC |"), "{md}");
    assert!(md.contains("paired bootstrap resamples (seed 42)"), "{md}");
    let text = render::human(&r);
    assert!(text.starts_with("gate: SKIP\n"), "{text}");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["decision"], "SKIP");
    assert!(json["delta"].as_f64().unwrap() < 0.0);
    assert!(json["interval"]["low"].is_number());
    assert_eq!(json["config"]["refresh_tolerance"], 0.02);
}

#[test]
fn expired_and_hospice_discharges_are_left_out() {
    let (mut t, l) = holdout(2000, 3);
    let mut cs = scores(&l, 0.5, 1);
    for d in crate::data::schema::EXPIRED_OR_HOSPICE {
        let mut row = [Value::Missing; WIDTH];
        row[col::READMITTED] = Value::Str("NO");
        row[col::DISCHARGE_DISPOSITION_ID] = Value::Int(*d);
        t.push_row(&row);
        cs.push(f64::NAN); // would refuse if it were scored
    }
    let r = run(&fixed(cs), None, &t, &cfg());
    assert_eq!(r.decision, Decision::Deploy, "{}", r.reason);
    assert_eq!(r.holdout.unwrap().excluded_rows, 6);
}

struct OtherTarget(Fixed);

impl Scorer for OtherTarget {
    fn schema_hash(&self) -> Option<String> {
        self.0.schema_hash()
    }
    fn model_id(&self) -> Option<String> {
        None
    }
    fn target(&self) -> Option<Target> {
        Some(Target::Any)
    }
    fn score(&self, table: &Table) -> Result<Vec<f64>, String> {
        self.0.score(table)
    }
}

#[test]
fn models_predicting_different_targets_are_refused() {
    let (t, l) = holdout(2000, 3);
    let c = fixed(scores(&l, 0.5, 1));
    let p = OtherTarget(fixed(scores(&l, 0.4, 2)));
    assert_refused(
        &run(&c, Some(&p), &t, &cfg()),
        "candidate predicts target `lt30` but production predicts `any`",
    );
    let asked = GateConfig {
        target: Some(Target::Any),
        ..cfg()
    };
    assert_refused(&run(&c, None, &t, &asked), "asked to score target `any`");
}

#[test]
fn what_reviewers_read_is_stable() {
    let (t, l) = holdout(2000, 3);
    let c = fixed(scores(&l, 0.2, 1));
    let p = fixed(scores(&l, 0.5, 2));
    let mut skip = run(&c, Some(&p), &t, &cfg());
    skip.evaluated_at = jiff::Timestamp::UNIX_EPOCH;
    skip.health_predict_version = "X.Y.Z";
    insta::assert_snapshot!("gate_skip_md", render::markdown(&skip));
    insta::assert_snapshot!("gate_skip_human", render::human(&skip));

    let (small, l) = holdout(300, 3);
    let c = fixed(scores(&l, 0.2, 1));
    let mut refused = evaluate(
        Ok(model("candidate", &c)),
        Some(Err("version 9 does not exist in reg".into())),
        Ok(Holdout {
            source: "holdout.csv",
            table: &small,
        }),
        &cfg(),
    );
    refused.evaluated_at = jiff::Timestamp::UNIX_EPOCH;
    refused.health_predict_version = "X.Y.Z";
    insta::assert_snapshot!("gate_refused_md", render::markdown(&refused));
}
