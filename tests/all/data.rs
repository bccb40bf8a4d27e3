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

use health_predict::data::synth::{pearson, ranks};

fn numeric_columns(t: &Table) -> Vec<Vec<f64>> {
    use health_predict::data::schema::AGE_BRACKETS;
    let mut cols: Vec<Vec<f64>> = (col::ADMISSION_TYPE_ID..=col::NUMBER_DIAGNOSES)
        .filter(|&c| {
            !matches!(
                c,
                col::PAYER_CODE | col::MEDICAL_SPECIALTY | col::DIAG_1 | col::DIAG_2 | col::DIAG_3
            )
        })
        .map(|c| t.ints(c).iter().map(|v| v.unwrap_or(0) as f64).collect())
        .collect();
    cols.push(
        (0..t.len())
            .map(|i| match t.get(i, col::AGE) {
                Value::Str(a) => AGE_BRACKETS.iter().position(|b| *b == a).unwrap_or(0) as f64,
                _ => 0.0,
            })
            .collect(),
    );
    cols
}

#[test]
fn synthetic_data_matches_the_real_file() {
    use health_predict::data::schema::{COLUMNS, EXPIRED_OR_HOSPICE, Kind, Target};
    use health_predict::data::synth;
    let Some(data) = shared_data() else { return };
    let real = load_ok(&data);
    let syn = synth::generate(real.len(), 11);
    assert_eq!(syn.len(), real.len());

    // Marginals: total variation distance per column (0 = identical, 1 = disjoint).
    let freq = |t: &Table, c: usize| -> HashMap<String, f64> {
        let mut m = HashMap::new();
        for i in 0..t.len() {
            let k = match t.get(i, c) {
                Value::Missing => "?".to_owned(),
                Value::Int(v) => v.to_string(),
                Value::Str(s) => s.to_owned(),
            };
            *m.entry(k).or_insert(0.0) += 1.0 / t.len() as f64;
        }
        m
    };
    let mut worst = (0.0, "");
    for (c, spec) in COLUMNS.iter().enumerate() {
        if spec.kind == Kind::Identifier {
            continue;
        }
        let (a, b) = (freq(&real, c), freq(&syn, c));
        let keys: HashSet<&String> = a.keys().chain(b.keys()).collect();
        let tv: f64 = keys
            .iter()
            .map(|k| (a.get(*k).unwrap_or(&0.0) - b.get(*k).unwrap_or(&0.0)).abs())
            .sum::<f64>()
            / 2.0;
        if tv > worst.0 {
            worst = (tv, spec.name);
        }
        // ICD-9 columns have ~750 codes, most rare: sampling noise alone is ~0.03 there.
        let limit = if spec.name.starts_with("diag_") {
            0.05
        } else {
            0.02
        };
        assert!(tv < limit, "{}: total variation {tv:.4}", spec.name);
    }
    eprintln!(
        "fidelity: worst marginal total variation {:.4} ({})",
        worst.0, worst.1
    );

    // Positive rate after removing expired/hospice encounters (real: 0.4713).
    let kept = |t: &Table| -> Vec<usize> {
        (0..t.len())
            .filter(|&i| {
                !matches!(t.get(i, col::DISCHARGE_DISPOSITION_ID), Value::Int(d) if EXPIRED_OR_HOSPICE.contains(&d))
            })
            .collect()
    };
    let rate = |t: &Table| {
        let l = t.labels(Target::Any);
        let k = kept(t);
        k.iter().filter(|&&i| l[i] == Some(true)).count() as f64 / k.len() as f64
    };
    let (rr, rs) = (rate(&real), rate(&syn));
    eprintln!("fidelity: positive rate real {rr:.4} synthetic {rs:.4}");
    assert!((rr - rs).abs() < 0.01);
    let lt30 = |t: &Table| {
        let l = t.labels(Target::Lt30);
        l.iter().filter(|&&x| x == Some(true)).count() as f64 / t.len() as f64
    };
    assert!((lt30(&real) - lt30(&syn)).abs() < 0.01);

    // Dependence between numerics: Spearman correlations.
    let (nr, ns) = (numeric_columns(&real), numeric_columns(&syn));
    let (rr_, rs_): (Vec<Vec<f64>>, Vec<Vec<f64>>) = (
        nr.iter().map(|c| ranks(c)).collect(),
        ns.iter().map(|c| ranks(c)).collect(),
    );
    let mut max_diff: f64 = 0.0;
    let mut sum_diff = 0.0;
    let mut pairs = 0.0;
    for i in 0..nr.len() {
        for j in 0..i {
            let d = (pearson(&rr_[i], &rr_[j]) - pearson(&rs_[i], &rs_[j])).abs();
            max_diff = max_diff.max(d);
            sum_diff += d;
            pairs += 1.0;
        }
    }
    eprintln!(
        "fidelity: Spearman |real - synthetic| max {max_diff:.4}, mean {:.4} over {pairs} pairs",
        sum_diff / pairs
    );
    assert!(max_diff < 0.07 && sum_diff / pairs < 0.02);

    // The generator's label model, applied to real rows, ranks real readmissions (the embedded
    // logistic model alone reaches 0.66 on held-out real rows).
    let k = kept(&real);
    let labels = real.labels(Target::Any);
    let (scores, ys): (Vec<f64>, Vec<bool>) = k
        .iter()
        .filter_map(|&i| Some((synth::label_probability(&real, i)?, labels[i]?)))
        .unzip();
    assert!(scores.len() as f64 > 0.99 * k.len() as f64);
    let a = health_predict::model::metrics::roc_auc(&ys, &scores);
    eprintln!("fidelity: generator label model AUC on real rows {a:.4}");
    assert!(a > 0.66, "{a}");

    // Patients with several encounters, like the real file (71,518 patients in 101,766 rows).
    let patients: HashSet<i64> = ids(&syn, col::PATIENT_NBR).into_iter().collect();
    let share = patients.len() as f64 / syn.len() as f64;
    eprintln!("fidelity: patients per encounter real 0.7028 synthetic {share:.4}");
    assert!((share - 0.7028).abs() < 0.03);
}

#[test]
fn synth_cli_writes_valid_csv_and_gzip_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.csv");
    let b = dir.path().join("b.csv.gz");
    for p in [&a, &b] {
        let (code, _, err) = run(bin()
            .args(["data", "synth", "--rows", "2500", "--seed", "9", "--out"])
            .arg(p));
        assert_eq!(code, 0, "{err}");
    }
    let gz = std::fs::read(&b).unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    let ta = load_ok(&a);
    let tb = load_ok(&b);
    assert_eq!(ta.len(), 2500);
    assert_eq!(
        ta.to_csv_bytes(false).unwrap(),
        tb.to_csv_bytes(false).unwrap()
    );
    assert_eq!(ta.to_csv_bytes(false).unwrap(), std::fs::read(&a).unwrap());
    let (code, out, _) = run(bin().args(["data", "validate"]).arg(&b));
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = run(bin()
        .args(["--output", "json", "data", "synth", "--rows", "10", "--out"])
        .arg(dir.path().join("c.csv")));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rows"], 10);
    let (code, _, err) = run(bin()
        .args(["data", "synth", "--rows", "0", "--out"])
        .arg(dir.path().join("d.csv")));
    assert_eq!(code, 2, "{err}");
}

/// A tiny HTTP/1.1 server on 127.0.0.1 speaking the real wire format, with routes that misbehave
/// on purpose. Returns its base URL and a counter of requests per path.
fn serve(
    routes: Vec<(&'static str, Route)>,
) -> (
    String,
    std::sync::Arc<std::sync::Mutex<HashMap<String, u32>>>,
) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    let hits = std::sync::Arc::new(std::sync::Mutex::new(HashMap::new()));
    let seen = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).map_or(true, |n| n == 0) || line == "\r\n" {
                    break;
                }
            }
            let path = first.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let n = {
                let mut h = seen.lock().expect("hits lock");
                let n = h.entry(path.clone()).or_insert(0);
                *n += 1;
                *n
            };
            let route = routes.iter().find(|(p, _)| *p == path).map(|(_, r)| r);
            let (status, body, send): (&str, &[u8], usize) = match route {
                Some(Route::Ok(b)) => ("200 OK", b, b.len()),
                Some(Route::Truncated(b)) => ("200 OK", b, b.len() / 2),
                Some(Route::FailFirst(b)) if n == 1 => ("503 Service Unavailable", b"busy", 4),
                Some(Route::FailFirst(b)) => ("200 OK", b, b.len()),
                None => ("404 Not Found", b"not found", 9),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/zip\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body[..send]);
            let _ = stream.flush();
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    });
    (url, hits)
}

enum Route {
    Ok(Vec<u8>),
    /// Announces the full length, sends half, closes.
    Truncated(Vec<u8>),
    /// 503 on the first request, the body afterwards.
    FailFirst(Vec<u8>),
}

#[test]
fn fetch_downloads_verifies_and_refuses_bad_downloads() {
    use health_predict::data::fetch::build_zip;
    use sha2::{Digest, Sha256};
    let csv = good_csv(25);
    let ids = b"admission_type_id,description\n1,Emergency\n".to_vec();
    let zip = build_zip(&[
        ("dataset_diabetes/README.txt", b"readme"),
        ("dataset_diabetes/diabetic_data.csv", csv.as_bytes()),
        ("dataset_diabetes/IDs_mapping.csv", &ids),
    ])
    .unwrap();
    let corrupt = build_zip(&[
        ("diabetic_data.csv", csv.replace("428", "429").as_bytes()),
        ("IDs_mapping.csv", &ids),
    ])
    .unwrap();
    let (url, hits) = serve(vec![
        ("/ok.zip", Route::Ok(zip.clone())),
        ("/corrupt.zip", Route::Ok(corrupt)),
        ("/truncated.zip", Route::Truncated(zip.clone())),
        ("/flaky.zip", Route::FailFirst(zip)),
    ]);
    let sums = [
        format!(
            "diabetic_data.csv={}",
            hex::encode(Sha256::digest(csv.as_bytes()))
        ),
        format!("IDs_mapping.csv={}", hex::encode(Sha256::digest(&ids))),
    ];
    let fetch = |path: &str, out: &Path, with_sums: bool| {
        let mut cmd = bin();
        cmd.args(["--output", "json", "data", "fetch", "--url"])
            .arg(format!("{url}{path}"))
            .arg("--out")
            .arg(out);
        if with_sums {
            for s in &sums {
                cmd.args(["--expect-sha256", s]);
            }
        }
        run(&mut cmd)
    };
    let dir = tempfile::tempdir().unwrap();
    let entries = |p: &Path| std::fs::read_dir(p).map(|d| d.count()).unwrap_or(0);

    // A good archive: both files found by name, verified, written.
    let out = dir.path().join("ok");
    let (code, stdout, stderr) = fetch("/ok.zip", &out, true);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["files"][0]["entry"], "dataset_diabetes/diabetic_data.csv");
    assert_eq!(
        std::fs::read_to_string(out.join("diabetic_data.csv")).unwrap(),
        csv
    );
    assert_eq!(std::fs::read(out.join("IDs_mapping.csv")).unwrap(), ids);
    assert_eq!(validate(&out.join("diabetic_data.csv"), false).0, 0);

    // The published checksums refuse this small stand-in: exit 6, nothing written.
    let out = dir.path().join("published");
    let (code, _, stderr) = fetch("/ok.zip", &out, false);
    assert_eq!(code, 6, "{stderr}");
    assert!(
        stderr.contains("checksum mismatch for diabetic_data.csv") && stderr.contains("0689e7ec"),
        "{stderr}"
    );
    assert_eq!(entries(&out), 0);

    // A corrupted download: refused, nothing left behind.
    let out = dir.path().join("corrupt");
    let (code, _, stderr) = fetch("/corrupt.zip", &out, true);
    assert_eq!(code, 6, "{stderr}");
    assert!(
        stderr.contains("checksum mismatch") && stderr.contains("hint:"),
        "{stderr}"
    );
    assert_eq!(entries(&out), 0);

    // 404: an infrastructure failure naming the URL and status, not retried.
    let out = dir.path().join("missing");
    let (code, _, stderr) = fetch("/missing.zip", &out, true);
    assert_eq!(code, 5, "{stderr}");
    assert!(
        stderr.contains("HTTP 404") && stderr.contains("--url"),
        "{stderr}"
    );
    assert_eq!(hits.lock().unwrap()["/missing.zip"], 1);
    assert_eq!(entries(&out), 0);

    // A body cut short: retried, then an infrastructure failure; nothing written.
    let out = dir.path().join("truncated");
    let (code, _, stderr) = fetch("/truncated.zip", &out, true);
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains("failed after 3 attempt(s)"), "{stderr}");
    assert_eq!(hits.lock().unwrap()["/truncated.zip"], 3);
    assert_eq!(entries(&out), 0);

    // A transient 503 is retried and the download succeeds.
    let out = dir.path().join("flaky");
    let (code, stdout, stderr) = fetch("/flaky.zip", &out, true);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["attempts"], 2);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn validate_output_reads_well() {
    let dir = tempfile::tempdir().unwrap();
    let good = good_csv(4);
    let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
    lines[1] = lines[1].replacen("V57", "V5", 1);
    let mut f: Vec<&str> = lines[2].split(',').collect();
    f[4] = "[100-110)";
    f[13] = "-2";
    lines[2] = f.join(",");
    lines[3] = lines[3].split(',').take(20).collect::<Vec<_>>().join(",");
    let p = dir.path().join("bad.csv");
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    let (code, out, err) = run(bin().args(["data", "validate"]).arg(&p));
    assert_eq!(code, 6);
    let text = format!("{out}---\n{err}").replace(&p.display().to_string(), "bad.csv");
    insta::assert_snapshot!(text);
}

/// A quoted newline in a cell once put `::error ...` at the start of a printed line, which the
/// Actions runner executes as a workflow command. Values are now printed on one line.
#[test]
fn a_cell_cannot_forge_a_workflow_command() {
    let dir = tempfile::tempdir().unwrap();
    let good = good_csv(5);
    let lines: Vec<&str> = good.lines().collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let race = header.iter().position(|h| *h == "race").unwrap();
    let mut fields: Vec<String> = lines[2].split(',').map(str::to_owned).collect();
    fields[race] = "\"Caucasian\n::error file=x.rs,line=1::FORGED\r\n::add-mask::FORGED2\u{2028}::warning::FORGED3\"".into();
    let text = format!("{}\n{}\n{}\n", lines[0], lines[1], fields.join(","));
    let p = dir.path().join("forged.csv");
    std::fs::write(&p, text).unwrap();
    for json in [false, true] {
        let mut cmd = bin();
        cmd.env("GITHUB_ACTIONS", "true");
        if json {
            cmd.args(["--output", "json"]);
        }
        let (code, out, err) = run(cmd.args(["data", "validate"]).arg(&p));
        assert_eq!(code, 6, "{out}{err}");
        for line in out.lines().chain(err.lines()) {
            assert!(
                !line.trim_start().starts_with("::") || !line.contains("FORGED"),
                "a forged workflow command was printed: {line:?}"
            );
            // JSON keeps U+2028 as is (valid JSON; the runner splits lines at \r and \n only).
            assert!(json || !line.contains('\u{2028}'), "{line:?}");
        }
        assert!(!out.lines().any(|l| l.starts_with("::")), "{out}");
        if !json {
            assert!(out.contains("line 3, column `race`"), "{out}");
            assert!(out.contains("Caucasian\\n::error"), "shown escaped: {out}");
        }
    }
}

/// The csv reader counted a CRLF's `\n` towards the next record, so every line number of a
/// Windows file was one low.
#[test]
fn crlf_files_report_the_right_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let good = good_csv(6);
    let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
    let mut fields: Vec<String> = lines[4].split(',').map(str::to_owned).collect();
    fields[9] = "three".into();
    lines[4] = fields.join(",");
    let p = dir.path().join("crlf.csv");
    std::fs::write(&p, format!("{}\r\n", lines.join("\r\n"))).unwrap();
    let (code, out, err) = validate(&p, true);
    assert_eq!(code, 6, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["total_issues"], 1, "{v}");
    assert_eq!(v["issues"][0]["line"], 5, "{v}");
    assert_eq!(v["issues"][0]["column"], "time_in_hospital");
    // Without the bad cell the CRLF file is valid, trailing `\r` and all.
    std::fs::write(&p, good.replace('\n', "\r\n")).unwrap();
    let (code, out, err) = validate(&p, false);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("valid, 6 rows"), "{out}");
}

/// A small .csv.gz holding one enormous field (or expanding past the byte limit) stops with an
/// error naming the limit, instead of holding the whole field in memory.
#[test]
fn gzip_bombs_and_huge_records_stop_at_the_limits() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let good = good_csv(3);
    let header = good.lines().next().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    write!(gz, "{header}\n\"").unwrap();
    let zeros = vec![b'0'; 1 << 20];
    for _ in 0..64 {
        gz.write_all(&zeros).unwrap(); // one 64 MiB quoted field
    }
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 1 << 20, "{} bytes compressed", bomb.len());
    let p = dir.path().join("bomb.csv.gz");
    std::fs::write(&p, &bomb).unwrap();
    let (code, out, err) = validate(&p, false);
    assert_eq!(code, 6, "{out}{err}");
    assert!(err.contains("record longer than 1048576 bytes"), "{err}");
    assert!(err.contains("--max-record-bytes"), "{err}");
    assert!(out.contains("line 2"), "{out}");

    // The total after decompression is limited too.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(good_csv(3000).as_bytes()).unwrap();
    let p = dir.path().join("big.csv.gz");
    std::fs::write(&p, gz.finish().unwrap()).unwrap();
    let (code, _, err) = run(bin()
        .args(["data", "validate", "--max-bytes", "100000"])
        .arg(&p));
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("more than 100000 bytes"), "{err}");
    assert!(err.contains("--max-bytes"), "{err}");

    // A record over a small limit, found exactly (not only by the read-ahead window).
    let p = dir.path().join("small.csv");
    std::fs::write(&p, &good).unwrap();
    let (code, _, err) = run(bin()
        .args(["data", "validate", "--max-record-bytes", "64"])
        .arg(&p));
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains("record longer than 64 bytes (line 1)"),
        "{err}"
    );
}
