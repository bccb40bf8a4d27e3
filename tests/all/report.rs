//! The run history site and the charts in summaries, on real pipeline output
//! (`support::runs::simulated`): `report html` lists every run; `summary.md` carries Mermaid
//! charts; headless Chromium renders the site (screenshot) and every Mermaid block with the
//! pinned mermaid package (`.ci/mermaid`), so a chart GitHub would show as a parse error fails
//! here first.

use std::path::{Path, PathBuf};

use crate::support::{self, bin, require_tool, run};

fn history_files(state: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(state.join("history"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    v
}

fn site(dir: &Path) -> PathBuf {
    let out = dir.join("site");
    let (code, stdout, stderr) = run(bin()
        .args(["report", "html", "--runs"])
        .arg(support::runs::simulated().join("state"))
        .arg("--out")
        .arg(&out));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    out
}

#[test]
fn simulate_then_report_html_lists_every_run() {
    let sim = support::runs::simulated();
    let records = history_files(&sim.join("state"));
    assert_eq!(
        records.len(),
        3,
        "one record per simulated run: {records:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = site(dir.path());
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    for rec in &records {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(rec).unwrap()).unwrap();
        let id = v["run"]["run_id"].as_str().unwrap();
        assert!(index.contains(id), "index lacks run {id}");
    }
    let links = index.matches("<a href=\"runs/").count();
    assert_eq!(links, records.len(), "one row per run");
    // The decisions the simulation made are in the index, with the batch names.
    assert!(
        index.contains("batch_2") && index.contains("batch_3"),
        "{index}"
    );
    assert!(index.contains(">DEPLOY<"), "{index}");
    let pages: Vec<_> = std::fs::read_dir(out.join("runs")).unwrap().collect();
    assert_eq!(pages.len(), records.len());
    for p in pages {
        let html = std::fs::read_to_string(p.unwrap().path()).unwrap();
        assert!(!html.contains("<script"), "no scripts in the site");
        assert!(!html.contains("http://") || html.contains("http://www.w3.org/2000/svg"));
        assert!(html.contains("<h2>Drift</h2>") && html.contains("<h2>Gate</h2>"));
        assert!(html.contains("<h2>API tests</h2>"));
    }
    let batch3 = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("batch_3.html"))
        .unwrap();
    let html = std::fs::read_to_string(batch3).unwrap();
    assert!(html.contains("<svg"), "inline SVG charts");
    assert!(
        html.contains("Candidate − production AUC"),
        "interval chart"
    );
}

#[test]
fn report_html_refuses_a_missing_history_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(bin()
        .args(["report", "html", "--runs"])
        .arg(dir.path().join("nope"))
        .arg("--out")
        .arg(dir.path().join("site")));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("hint: pass the pipeline's --state-dir"),
        "{stderr}"
    );
}

/// Every ```mermaid block of a Markdown document.
fn mermaid_blocks(md: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut cur: Option<String> = None;
    for line in md.lines() {
        match (&mut cur, line.trim()) {
            (None, "```mermaid") => cur = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                cur = None;
            }
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

#[test]
fn summary_md_carries_mermaid_charts_of_drift_auc_and_trend() {
    let sim = support::runs::simulated();
    let md = std::fs::read_to_string(sim.join("batch_3").join("summary.md")).unwrap();
    let blocks = mermaid_blocks(&md);
    assert!(!blocks.is_empty(), "{md}");
    assert!(
        blocks.iter().all(|b| b.starts_with("xychart-beta")),
        "{blocks:?}"
    );
    assert!(md.contains("title \"Drift distance by column"), "{md}");
    assert!(md.contains("title \"Holdout ROC AUC\""), "{md}");
    assert!(md.contains("### Trend"), "{md}");
    assert!(
        md.contains("title \"Holdout ROC AUC, last 3 gated runs"),
        "{md}"
    );
    assert!(md.contains("95% interval ["), "{md}");
}

#[test]
fn the_site_renders_in_headless_chromium() {
    let Some(chromium) = require_tool("chromium") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = site(dir.path());
    let png = dir.path().join("site.png");
    support::screenshot(
        &chromium,
        &dir.path().join("profile"),
        "1200,1400",
        &out.join("index.html"),
        &png,
    );
    // One run's page: drift bars and the gate's interval.
    let page = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("batch_3.html"))
        .unwrap();
    let run_png = dir.path().join("run.png");
    support::screenshot(
        &chromium,
        &dir.path().join("profile2"),
        "1200,2200",
        &page,
        &run_png,
    );
    // `HEALTH_PREDICT_UPDATE_SCREENSHOT=1` refreshes the pictures in the docs.
    if std::env::var("HEALTH_PREDICT_UPDATE_SCREENSHOT").is_ok_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::copy(&png, docs.join("report-site.png")).unwrap();
        std::fs::copy(&run_png, docs.join("report-run.png")).unwrap();
    }
}

/// The pinned mermaid bundle that `.ci/run` installs (`HEALTH_PREDICT_MERMAID`).
fn mermaid_js() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HEALTH_PREDICT_MERMAID").map(PathBuf::from)
        && p.is_file()
    {
        return Some(p);
    }
    if support::in_ci() {
        panic!(
            "CI=true but HEALTH_PREDICT_MERMAID does not name mermaid.min.js; .ci/run installs it"
        );
    }
    eprintln!(
        "skipped: HEALTH_PREDICT_MERMAID is not set (run `bash .ci/run`, or npm ci in .ci/mermaid and point it at node_modules/mermaid/dist/mermaid.min.js)"
    );
    None
}

#[test]
fn every_mermaid_block_renders_with_the_pinned_mermaid() {
    let Some(chromium) = require_tool("chromium") else {
        return;
    };
    let Some(js) = mermaid_js() else {
        return;
    };
    let sim = support::runs::simulated();
    let mut blocks = Vec::new();
    for run in ["initial", "batch_2", "batch_3"] {
        let md = std::fs::read_to_string(sim.join(run).join("summary.md")).unwrap();
        blocks.extend(mermaid_blocks(&md));
    }
    assert!(blocks.len() >= 5, "{blocks:?}");
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("mermaid.html");
    let sources = serde_json::to_string(&blocks).unwrap();
    std::fs::write(
        &page,
        format!(
            r#"<!DOCTYPE html><html><head><meta charset="utf-8"><script src="file://{}"></script></head>
<body><pre id="result">pending</pre><script>
const sources = {sources};
(async () => {{
  mermaid.initialize({{ startOnLoad: false }});
  const out = [];
  for (let i = 0; i < sources.length; i++) {{
    try {{
      await mermaid.parse(sources[i]);
      const r = await mermaid.render('chart' + i, sources[i]);
      out.push({{ ok: r.svg.includes('<svg') && !r.svg.includes('Syntax error'), bars: (r.svg.match(/<rect/g) || []).length }});
    }} catch (e) {{
      out.push({{ ok: false, error: String(e && e.message || e) }});
    }}
  }}
  document.getElementById('result').textContent = 'RESULT' + JSON.stringify(out) + 'END';
}})();
</script></body></html>"#,
            js.display()
        ),
    )
    .unwrap();
    let (code, dom, stderr) = run(
        support::chromium_cmd(&chromium, &dir.path().join("profile"))
            .arg("--allow-file-access-from-files")
            .arg("--virtual-time-budget=20000")
            .arg("--dump-dom")
            .arg(format!("file://{}", page.display())),
    );
    assert_eq!(code, 0, "{stderr}");
    let start = dom
        .find("RESULT[")
        .unwrap_or_else(|| panic!("mermaid did not finish: {dom}\n{stderr}"));
    let end = start + dom[start..].find("]END").unwrap() + 1;
    let results: Vec<serde_json::Value> = serde_json::from_str(&dom[start + 6..end]).unwrap();
    assert_eq!(results.len(), blocks.len());
    for (r, src) in results.iter().zip(&blocks) {
        assert_eq!(r["ok"], true, "mermaid rejected:\n{src}\n{r}");
        assert!(
            r["bars"].as_u64().unwrap() > 0,
            "nothing drawn:\n{src}\n{r}"
        );
    }
}
