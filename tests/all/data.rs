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

/// A valid file of `n` hand-made rows (no dependence on the shared data).
fn good_csv(n: usize) -> String {
    use health_predict::data::schema::{COLUMNS, Kind, names};
    let header = names().collect::<Vec<_>>().join(",");
    let mut out = format!("{header}\n");
    for i in 0..n {
        let row: Vec<String> = COLUMNS
            .iter()
            .enumerate()
            .map(|(c, spec)| match (c, spec.kind) {
                (0, _) => (1000 + i).to_string(),
                (1, _) => (500 + i / 2).to_string(),
                (18..=20, _) => ["428", "250.83", "V57"][c - 18].to_owned(),
                (_, Kind::Categorical) => spec
                    .allowed
                    .map_or("X".to_owned(), |a| a[i % a.len()].to_owned()),
                _ => ((i * 3 + c) % 9).to_string(),
            })
            .collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

fn validate(path: &Path, json: bool) -> (i32, String, String) {
    let mut cmd = bin();
    if json {
        cmd.args(["--output", "json"]);
    }
    run(cmd.args(["data", "validate"]).arg(path))
}

#[test]
fn malformed_files_exit_6_with_located_messages_and_never_panic() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let good = good_csv(40);
    let lines: Vec<&str> = good.lines().collect();
    let header = lines[0];
    let row = lines[1];
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(good_csv(3000).as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let mut non_utf8 = format!("{header}\n{row}\n").into_bytes();
    non_utf8.extend_from_slice(b"1\xff23,");
    non_utf8.extend_from_slice(lines[2].split_once(',').unwrap().1.as_bytes());
    non_utf8.push(b'\n');
    let truncated = format!("{header}\n{row}\n{}\n", &lines[2][..lines[2].len() / 2]);
    let mut fields: Vec<&str> = lines[2].split(',').collect();
    fields[9] = "three";
    let wrong_type = format!("{header}\n{row}\n{}\n", fields.join(","));
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("empty.csv", Vec::new(), &["line 1", "empty"]),
        (
            "header_only.csv",
            format!("{header}\n").into_bytes(),
            &["line 2", "no data rows"],
        ),
        (
            "truncated_row.csv",
            truncated.into_bytes(),
            &["line 3", "fields but the header has 50"],
        ),
        (
            "missing_column.csv",
            good.replace(",number_diagnoses,", ",").into_bytes(),
            &["column `number_diagnoses`", "missing"],
        ),
        (
            "extra_column.csv",
            good.replacen(&format!("{header}\n"), &format!("{header},notes\n"), 1)
                .into_bytes(),
            &["column `notes`", "not a column"],
        ),
        (
            "wrong_type.csv",
            wrong_type.into_bytes(),
            &["line 3", "column `time_in_hospital`", "`three`", "integer"],
        ),
        (
            "non_utf8.csv",
            non_utf8,
            &["line 3", "column `encounter_id`", "UTF-8"],
        ),
        ("cut.csv.gz", gz[..gz.len() / 2].to_vec(), &["line"]),
    ];
    for (name, bytes, wants) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let (code, out, err) = validate(&p, false);
        assert_eq!(code, 6, "{name}: {out}{err}");
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{name}: {err}"
        );
        assert!(
            err.starts_with("error: ") && err.contains("hint: "),
            "{name}: {err}"
        );
        for w in wants {
            assert!(out.contains(w), "{name}: {w:?} not in {out}");
        }
        // The same files fail the other commands that read data, with the location in the error.
        let (code, _, err) = run(bin().args(["data", "profile"]).arg(&p));
        assert_eq!(code, 6, "{name}: {err}");
        assert!(
            err.contains("line") || err.contains("column"),
            "{name}: {err}"
        );
        assert!(!err.contains("panicked"), "{name}: {err}");
        // JSON output is one document listing the issues.
        let (code, out, _) = validate(&p, true);
        assert_eq!(code, 6);
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{name}: {e}: {out}"));
        assert_eq!(v["valid"], false);
        assert!(v["total_issues"].as_u64().unwrap() >= 1);
        assert!(v["issues"][0]["line"].as_u64().is_some(), "{name}: {v}");
    }
    // A good file is valid; the gzip of it too.
    let p = dir.path().join("good.csv");
    std::fs::write(&p, &good).unwrap();
    let (code, out, err) = validate(&p, false);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("valid, 40 rows"), "{out}");
    let p = dir.path().join("good.csv.gz");
    std::fs::write(&p, &gz).unwrap();
    assert_eq!(validate(&p, false).0, 0);
}

#[test]
fn validate_lists_every_problem_up_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let good = good_csv(30);
    let bad: String = good
        .lines()
        .enumerate()
        .map(|(i, l)| if i > 0 { l.replacen("V57", "X57", 1) } else { l.to_owned() } + "\n")
        .collect();
    let p = dir.path().join("bad.csv");
    std::fs::write(&p, bad).unwrap();
    let (code, out, _) = validate(&p, true);
    assert_eq!(code, 6);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["total_issues"], 30);
    assert_eq!(v["issues"].as_array().unwrap().len(), 30);
    assert_eq!(v["issues"][4]["line"], 6);
    assert_eq!(v["issues"][4]["column"], "diag_3");
    assert_eq!(v["issues"][4]["value"], "X57");
    assert!(
        v["issues"][4]["problem"]
            .as_str()
            .unwrap()
            .contains("expected")
    );
    let (code, out, _) = run(bin()
        .args(["data", "validate", "--max-issues", "3"])
        .arg(&p));
    assert_eq!(code, 6);
    assert!(out.contains("30 problems (showing the first 3)"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.contains("diag_3")).count(),
        3,
        "{out}"
    );
}

#[test]
fn profile_reports_balance_missing_rates_and_summaries() {
    let Some(data) = shared_data() else { return };
    let (code, out, err) = run(bin()
        .args(["--output", "json", "data", "profile"])
        .arg(&data));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rows"], 101_766);
    assert_eq!(v["patients"], 71_518);
    assert_eq!(v["class_balance"]["any"]["positive"], 35_545 + 11_357);
    assert_eq!(v["class_balance"]["lt30"]["positive"], 11_357);
    let cols = v["columns"].as_array().unwrap();
    assert_eq!(cols.len(), 50);
    let weight = cols.iter().find(|c| c["name"] == "weight").unwrap();
    assert_eq!(weight["missing"], 98_569);
    let race = cols.iter().find(|c| c["name"] == "race").unwrap();
    assert_eq!(race["top"][0]["value"], "Caucasian");
    assert_eq!(race["top"][0]["count"], 76_099);
    let lab = cols
        .iter()
        .find(|c| c["name"] == "num_lab_procedures")
        .unwrap();
    assert_eq!(lab["numeric"]["max"], 132);
    assert_eq!(lab["numeric"]["median"], 44);
    let (code, out, _) = run(bin().args(["data", "profile"]).arg(&data));
    assert_eq!(code, 0);
    assert!(out.contains("101766 rows, 71518 patients"), "{out}");
    assert!(out.contains("positive rate: any 0.4609"), "{out}");
}
