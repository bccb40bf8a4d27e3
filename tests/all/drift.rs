//! Integration tests: drift. Statistics against committed scipy fixtures, edge cases, the CLI and
//! its reports, and the HTML report in headless Chromium.
#![allow(clippy::unwrap_used)] // test helpers, like the tests themselves

use std::path::{Path, PathBuf};

use health_predict::data::schema::{COLUMNS, Kind, WIDTH, col};
use health_predict::data::{Table, Value};
use health_predict::drift::stats::{self, CountPair};
use health_predict::drift::{self, DriftConfig, DriftError, Method, MissingPolicy};
use serde_json::Value as Json;

use crate::support::{bin, require_tool, run, shared_data};

fn fixture() -> Json {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/drift/stats.json");
    serde_json::from_slice(&std::fs::read(p).expect("fixture")).expect("json")
}

/// Compares to 1e-9 relative; zeros must be zero to 1e-12; "inf"/"nan" are spelled out.
fn check(case: &str, what: &str, got: f64, want: &Json) {
    match want {
        Json::String(s) if s == "inf" => assert!(got.is_infinite(), "{case}/{what}: {got}"),
        Json::String(s) if s == "nan" => {
            panic!("{case}/{what}: the fixture holds NaN; decide the result explicitly")
        }
        _ => {
            let w = want.as_f64().expect("number");
            let ok = if w == 0.0 {
                got.abs() < 1e-12
            } else {
                ((got - w) / w).abs() <= 1e-9
            };
            assert!(ok, "{case}/{what}: got {got:e}, scipy {w:e}");
        }
    }
}

fn sorted(v: &Json) -> Vec<f64> {
    let mut xs: Vec<f64> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect();
    xs.sort_by(f64::total_cmp);
    xs
}

fn counts(r: &Json, c: &Json) -> CountPair {
    let r: Vec<&str> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    let c: Vec<&str> = c
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    let mut keys: Vec<&str> = r.iter().chain(&c).copied().collect();
    keys.sort_unstable();
    keys.dedup();
    CountPair {
        reference: keys
            .iter()
            .map(|k| r.iter().filter(|x| *x == k).count() as u64)
            .collect(),
        current: keys
            .iter()
            .map(|k| c.iter().filter(|x| *x == k).count() as u64)
            .collect(),
    }
}

#[test]
fn statistics_match_scipy_fixtures() {
    let f = fixture();
    let cases = f["cases"].as_array().expect("cases");
    assert!(cases.len() >= 15);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let e = &case["expected"];
        let (b, mut filled) = if case["kind"] == "numeric" {
            let r = match &case["reference"] {
                Json::String(key) => sorted(&f["samples"][key.as_str()]),
                inline => sorted(inline),
            };
            let c = sorted(&case["current"]);
            let ks = stats::ks_2samp(&r, &c);
            check(name, "ks statistic", ks.statistic, &e["ks_statistic"]);
            check(name, "ks p-value", ks.p_value, &e["ks_p_value"]);
            assert_eq!(
                ks.method == stats::KsMethod::Exact,
                e["ks_exact"].as_bool().unwrap(),
                "{name}: exact vs asymptotic"
            );
            check(
                name,
                "wasserstein",
                stats::wasserstein_norm(&r, &c),
                &e["wasserstein_norm"],
            );
            (stats::numeric_shares(&r, &c), stats::numeric_shares(&r, &c))
        } else {
            let cp = counts(&case["reference"], &case["current"]);
            let chi = stats::chi_square(&cp);
            check(
                name,
                "chi statistic",
                chi.statistic,
                &e["chi_square_statistic"],
            );
            if e["chi_square_p_value"] == "nan" {
                // scipy returns NaN with no degrees of freedom; one shared category cannot drift.
                assert_eq!(chi.p_value, 1.0, "{name}");
            } else {
                check(name, "chi p-value", chi.p_value, &e["chi_square_p_value"]);
            }
            let z = stats::z_test(&cp, 0);
            check(name, "z p-value", z.p_value, &e["z_p_value"]);
            if let Some(zs) = e.get("z_statistic") {
                check(name, "z statistic", z.statistic, zs);
            }
            (stats::category_shares(&cp), stats::category_shares(&cp))
        };
        check(
            name,
            "jensen-shannon",
            stats::jensen_shannon(&b.reference, &b.current),
            &e["jensen_shannon"],
        );
        stats::fill_zeroes(&mut filled.reference);
        stats::fill_zeroes(&mut filled.current);
        check(
            name,
            "psi",
            stats::psi(&filled.reference, &filled.current),
            &e["psi"],
        );
        check(
            name,
            "kl",
            stats::kl_divergence(&filled.reference, &filled.current),
            &e["kl_div"],
        );
    }
}

/// A table of `n` rows where every column holds a plausible constant, then `edit` changes rows.
fn table(n: usize, edit: impl Fn(usize, &mut Vec<Value<'static>>)) -> Table {
    let mut t = Table::new();
    for i in 0..n {
        let mut row: Vec<Value<'static>> = COLUMNS
            .iter()
            .map(|c| match c.kind {
                Kind::Identifier => Value::Int(i as i64),
                Kind::Integer => Value::Int(1),
                Kind::Categorical => Value::Str(c.allowed.map_or("X", |a| a[0])),
            })
            .collect();
        assert_eq!(row.len(), WIDTH);
        edit(i, &mut row);
        t.push_row(&row);
    }
    t
}

fn only(cols: &[usize]) -> DriftConfig {
    DriftConfig {
        columns: cols.to_vec(),
        ..DriftConfig::default()
    }
}

#[test]
fn default_selection_follows_evidently() {
    // Small reference (<= 1000): numeric > 5 values -> KS; 3..5 -> chi-square; 2 -> Z.
    let r = table(400, |i, row| {
        row[col::NUM_LAB_PROCEDURES] = Value::Int((i % 40) as i64);
        row[col::NUM_PROCEDURES] = Value::Int((i % 4) as i64);
        row[col::GENDER] = Value::Str(if i % 2 == 0 { "Male" } else { "Female" });
        row[col::AGE] = Value::Str(["[50-60)", "[60-70)", "[70-80)"][i % 3]);
    });
    let c = table(200, |i, row| {
        row[col::NUM_LAB_PROCEDURES] = Value::Int((i % 40 + 5) as i64);
        row[col::NUM_PROCEDURES] = Value::Int((i % 4) as i64);
        row[col::GENDER] = Value::Str(if i % 3 == 0 { "Male" } else { "Female" });
        row[col::AGE] = Value::Str(["[50-60)", "[60-70)", "[70-80)"][i % 3]);
    });
    let cols = [
        col::NUM_LAB_PROCEDURES,
        col::NUM_PROCEDURES,
        col::GENDER,
        col::AGE,
    ];
    let rep = drift::detect(&r, &c, &only(&cols)).unwrap();
    let tests: Vec<Method> = rep.columns.iter().map(|c| c.test).collect();
    assert_eq!(
        tests,
        [
            Method::Ks,
            Method::ChiSquare,
            Method::ZTest,
            Method::ChiSquare
        ]
    );
    // num_procedures has 4 values: still a numerical column (typed by dtype, as Evidently's
    // drift metrics do), tested with chi-squared because it has 3..5 values.
    assert_eq!(
        rep.columns[1].column_type,
        health_predict::drift::ColumnType::Numerical
    );
    assert!(
        rep.columns[0].why.contains("(<= 1000)"),
        "{}",
        rep.columns[0].why
    );
    // Large reference: numeric > 5 values -> Wasserstein; everything else -> Jensen-Shannon.
    let big_r = table(1500, |i, row| {
        row[col::NUM_LAB_PROCEDURES] = Value::Int((i % 40) as i64);
        row[col::GENDER] = Value::Str(if i % 2 == 0 { "Male" } else { "Female" });
    });
    let rep = drift::detect(&big_r, &c, &only(&cols)).unwrap();
    let tests: Vec<Method> = rep.columns.iter().map(|c| c.test).collect();
    assert_eq!(
        tests,
        [
            Method::Wasserstein,
            Method::JensenShannon,
            Method::JensenShannon,
            Method::JensenShannon
        ]
    );
}

#[test]
fn decision_uses_strict_share_and_force_flag() {
    let r = table(300, |i, row| {
        row[col::GENDER] = Value::Str(["Male", "Female"][i % 2])
    });
    let c = table(300, |_, row| row[col::GENDER] = Value::Str("Male"));
    // One of two columns drifts: share 0.5 -> dataset drift (>= 0.5) and retrain (> 0.3).
    let rep = drift::detect(&r, &c, &only(&[col::GENDER, col::RACE])).unwrap();
    assert_eq!(rep.decision.drifted_columns, 1);
    assert!(rep.decision.dataset_drift && rep.decision.retrain);
    // Share exactly at the threshold does not retrain (strict).
    let cfg = DriftConfig {
        drift_share_threshold: 0.5,
        ..only(&[col::GENDER, col::RACE])
    };
    let rep = drift::detect(&r, &c, &cfg).unwrap();
    assert!(!rep.decision.drift_over_threshold && !rep.decision.retrain);
    let cfg = DriftConfig {
        force_retrain: true,
        ..cfg
    };
    let rep = drift::detect(&r, &c, &cfg).unwrap();
    assert!(rep.decision.retrain && rep.decision.reason.contains("forced"));
}

#[test]
fn edge_cases_give_a_result_or_a_clear_error() {
    // Category only in the current batch: chi-square p = 0, drift.
    let r = table(300, |_, row| row[col::RACE] = Value::Str("Caucasian"));
    let c = table(100, |i, row| {
        row[col::RACE] = Value::Str(if i < 50 { "Caucasian" } else { "Asian" })
    });
    let rep = drift::detect(&r, &c, &only(&[col::RACE])).unwrap();
    assert_eq!(rep.columns[0].test, Method::ZTest);
    assert!(rep.columns[0].drifted && rep.columns[0].score.is_finite());
    let cfg = DriftConfig {
        method: Some(Method::ChiSquare),
        ..only(&[col::RACE])
    };
    let rep = drift::detect(&r, &c, &cfg).unwrap();
    assert_eq!(rep.columns[0].score, 0.0);
    assert!(rep.columns[0].drifted);

    // Constant numeric column on both sides: no drift, finite score.
    let r = table(1200, |_, _| {});
    let c = table(100, |_, _| {});
    let rep = drift::detect(&r, &c, &only(&[col::TIME_IN_HOSPITAL])).unwrap();
    assert!(!rep.columns[0].drifted && rep.columns[0].score == 0.0);

    // All-missing categorical column: a category of its own by default (missingness is data) ...
    let r = table(50, |_, row| row[col::WEIGHT] = Value::Missing);
    let c = table(50, |_, row| row[col::WEIGHT] = Value::Missing);
    let rep = drift::detect(&r, &c, &only(&[col::WEIGHT])).unwrap();
    assert!(!rep.columns[0].drifted && rep.columns[0].score == 1.0);
    // ... and a clear error when missing values are dropped.
    let cfg = DriftConfig {
        missing: MissingPolicy::Drop,
        ..only(&[col::WEIGHT])
    };
    let err = drift::detect(&r, &c, &cfg).unwrap_err();
    assert!(
        matches!(
            err,
            DriftError::EmptyColumn {
                all_missing: true,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("every value is missing"), "{err}");

    // An empty current batch is an error, never "no drift".
    let empty = Table::new();
    let err = drift::detect(&r, &empty, &only(&[col::GENDER])).unwrap_err();
    assert!(err.to_string().contains("current data (no rows)"), "{err}");

    // A numeric-only test on a categorical column is a usage error.
    let cfg = DriftConfig {
        method: Some(Method::Ks),
        ..only(&[col::GENDER])
    };
    assert!(matches!(
        drift::detect(&r, &r, &cfg).unwrap_err(),
        DriftError::MethodNotApplicable { .. }
    ));
}

/// Writes reference (first 14,000 rows) and current (rows 20,000..22,000) of the real data.
fn real_split(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let data = shared_data()?;
    let t = health_predict::data::load(&data, &Default::default()).unwrap();
    let r = t.select(&(0..14_000).collect::<Vec<_>>());
    let c = t.select(&(20_000..22_000).collect::<Vec<_>>());
    let (rp, cp) = (dir.join("reference.csv"), dir.join("current.csv"));
    r.write_csv(std::fs::File::create(&rp).unwrap()).unwrap();
    c.write_csv(std::fs::File::create(&cp).unwrap()).unwrap();
    Some((rp, cp))
}

#[test]
fn cli_writes_reports_and_prints_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    let Some((rp, cp)) = real_split(dir.path()) else {
        return;
    };
    let out = dir.path().join("report");
    let (code, stdout, stderr) = run(bin()
        .args(["--output", "json", "drift", "--reference"])
        .arg(&rp)
        .arg("--current")
        .arg(&cp)
        .arg("--report")
        .arg(&out));
    assert_eq!(code, 0, "{stderr}");
    let decision: Json = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(decision["columns"], 44);
    // Values Evidently 0.4.22 reports for this split (see benches/drift_vs_evidently.sh).
    assert_eq!(decision["drifted_columns"], 5);
    assert_eq!(decision["retrain"], false);

    let report: Json =
        serde_json::from_slice(&std::fs::read(out.join("drift.json")).unwrap()).unwrap();
    let cols = report["columns"].as_array().unwrap();
    assert_eq!(cols.len(), 44);
    let dd = cols
        .iter()
        .find(|c| c["column"] == "discharge_disposition_id")
        .unwrap();
    assert_eq!(dd["test"], "wasserstein");
    assert_eq!(dd["type"], "numerical");
    assert!((dd["score"].as_f64().unwrap() - 0.29060200633854066).abs() < 1e-9);
    assert_eq!(dd["drifted"], true);
    for key in [
        "statistic",
        "threshold",
        "why",
        "reference",
        "current",
        "distribution",
    ] {
        assert!(dd.get(key).is_some(), "missing {key}");
    }
    let md = std::fs::read_to_string(out.join("drift.md")).unwrap();
    insta::assert_snapshot!("drift_md_real_rows_20000_22000", md);
    let first_row = md.lines().find(|l| l.starts_with("| `")).unwrap();
    assert!(
        first_row.contains("**yes**"),
        "most drifted first: {first_row}"
    );
    let html = std::fs::read_to_string(out.join("drift.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 44);
    assert!(!html.contains("<script"));
    let offline = html.replace("http://www.w3.org/2000/svg", "");
    assert!(!offline.contains("http://") && !offline.contains("https://"));

    // In GitHub Actions the decision becomes step outputs.
    let gh_out = dir.path().join("github_output");
    let (code, _, stderr) = run(bin()
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &gh_out)
        .args(["drift", "--reference"])
        .arg(&rp)
        .arg("--current")
        .arg(&cp));
    assert_eq!(code, 0, "{stderr}");
    let outputs = std::fs::read_to_string(&gh_out).unwrap();
    for name in ["drift_share<<", "drifted_columns<<", "retrain<<"] {
        assert!(outputs.contains(name), "{outputs}");
    }
    assert!(outputs.contains("\n5\n"), "{outputs}");

    // A drifted batch with --fail-on-drift exits 1; a bad override exits 2 with a hint.
    let (code, _, stderr) = run(bin()
        .args([
            "drift",
            "--fail-on-drift",
            "--drift-share-threshold",
            "0.05",
            "--reference",
        ])
        .arg(&rp)
        .arg("--current")
        .arg(&cp));
    assert_eq!(code, 1, "{stderr}");
    let (code, _, stderr) = run(bin()
        .args(["drift", "--column-method", "race=ks", "--reference"])
        .arg(&rp)
        .arg("--current")
        .arg(&cp));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("hint: use chi-square"), "{stderr}");
}

#[test]
fn html_report_renders_in_headless_chromium_without_console_errors() {
    let Some(chromium) = require_tool("chromium") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some((rp, cp)) = real_split(dir.path()) else {
        return;
    };
    let out = dir.path().join("report");
    let (code, _, stderr) = run(bin()
        .args(["drift", "--reference"])
        .arg(&rp)
        .arg("--current")
        .arg(&cp)
        .arg("--report")
        .arg(&out));
    assert_eq!(code, 0, "{stderr}");
    let png = dir.path().join("shot.png");
    crate::support::screenshot(
        &chromium,
        &dir.path().join("profile"),
        "1280,2000",
        &out.join("drift.html"),
        &png,
    );
}
