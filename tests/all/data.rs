//! The `data` commands through the binary: split, validate, profile, synth, fetch, and the
//! loader's behaviour on malformed files.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use health_predict::data::schema::col;
use health_predict::data::{LoadOptions, Table, Value, load};

use crate::support::{bin, run, shared_data};

fn ids(t: &Table, c: usize) -> Vec<i64> {
    t.ints(c).iter().flatten().copied().collect()
}

fn load_ok(p: &Path) -> Table {
    load(p, &LoadOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn split_reproduces_the_upstream_layout_on_real_data() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("split");
    let (code, stdout, stderr) = run(bin()
        .args(["--output", "json", "data", "split", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&out));
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["source_rows"], 101_766);
    assert_eq!(report["seed"], 42);

    let train = load_ok(&out.join("initial/train.csv"));
    let validation = load_ok(&out.join("initial/validation.csv"));
    let test = load_ok(&out.join("initial/test.csv"));
    let future = load_ok(&out.join("future.csv"));
    // The first 20% of file order is the initial data, the rest is future data.
    assert_eq!(train.len() + validation.len() + test.len(), 20_353);
    assert_eq!(future.len(), 101_766 - 20_353);
    assert!((train.len() as f64 / 20_353.0 - 0.70).abs() < 0.01);
    // No patient's encounters sit in two initial splits.
    let sets: Vec<HashSet<i64>> = [&train, &validation, &test]
        .iter()
        .map(|t| ids(t, col::PATIENT_NBR).into_iter().collect())
        .collect();
    assert!(sets[0].is_disjoint(&sets[1]));
    assert!(sets[0].is_disjoint(&sets[2]));
    assert!(sets[1].is_disjoint(&sets[2]));
    // Future data starts where the initial data ends.
    let all = load_ok(&data);
    assert_eq!(
        future.get(0, col::ENCOUNTER_ID),
        all.get(20_353, col::ENCOUNTER_ID)
    );

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("split.json")).unwrap()).unwrap();
    let batches = manifest["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 5);
    let future_by_encounter: HashMap<i64, usize> = ids(&future, col::ENCOUNTER_ID)
        .into_iter()
        .enumerate()
        .map(|(i, e)| (e, i))
        .collect();
    for (i, b) in batches.iter().enumerate() {
        let name = format!("batch_{}", i + 1);
        assert_eq!(b["name"], name.as_str());
        assert_eq!(b["summary"]["rows"], 2000);
        let t = load_ok(&out.join(format!("batches/{name}.csv")));
        assert_eq!(t.len(), 2000);
        // Every batch row comes from the future data.
        let mut changed_labels = 0;
        for (r, e) in ids(&t, col::ENCOUNTER_ID).iter().enumerate() {
            let f = future_by_encounter[e];
            if t.get(r, col::READMITTED) != future.get(f, col::READMITTED) {
                changed_labels += 1;
            }
        }
        if i == 4 {
            // The flips are in `readmitted` itself, the column every target comes from.
            let flipped = b["outcomes"][1]["flipped"].as_u64().unwrap();
            assert!(flipped > 50, "{b}");
            assert_eq!(changed_labels, flipped);
        } else {
            assert_eq!(changed_labels, 0, "{name}");
        }
    }
    let share = |i: usize, k: &str| batches[i]["summary"][k].as_f64().unwrap();
    let fut = &manifest["files"][3]["summary"];
    assert!(share(2, "share_age_70_plus") > fut["share_age_70_plus"].as_f64().unwrap() + 0.04);
    assert!(share(3, "share_age_80_plus") > fut["share_age_80_plus"].as_f64().unwrap() + 0.1);
    assert!(
        share(3, "mean_num_lab_procedures")
            > fut["mean_num_lab_procedures"].as_f64().unwrap() + 4.0
    );
    assert!(share(4, "share_emergency_visits") >= 0.35);

    // Shifted integer columns stay non-negative integers (the loader would reject anything else).
    let b4 = load_ok(&out.join("batches/batch_4.csv"));
    assert!(matches!(b4.get(0, col::TIME_IN_HOSPITAL), Value::Int(v) if v >= 0));
}

#[test]
fn split_refuses_a_file_too_small_for_batches() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.csv");
    let t = load_ok(&data).select(&(0..2000).collect::<Vec<_>>());
    std::fs::write(&small, t.to_csv_bytes(false).unwrap()).unwrap();
    let (code, _, stderr) = run(bin()
        .args(["data", "split", "--data"])
        .arg(&small)
        .arg("--out")
        .arg(dir.path().join("out")));
    assert_eq!(code, 6, "{stderr}");
    assert!(stderr.contains("fewer than one 2000-row batch"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
}
