//! `train`, `evaluate` and `predict`: arguments into [`crate::model`] requests, results on stdout.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cli::{Context, env};
use crate::data::schema::{COLUMNS, Kind, col};
use crate::data::{LoadOptions, Row, Table, Target, Value};
use crate::exit::{Classify, Exit, fail};
use crate::model::{
    self, Algorithm, Metrics, ModelFile, Progress, SplitMetrics, ThresholdRule, TrainRequest,
};
use crate::output::{Render, emit};

/// Train a model with hyperparameter search and write a model file.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Labelled encounter data (CSV or CSV.gz with the 50 UCI columns).
    #[arg(long, env = env::DATA, value_name = "PATH")]
    pub data: PathBuf,
    /// Where to write the model file (atomically).
    #[arg(long, env = env::MODEL, value_name = "MODEL", required_unless_present = "export_features")]
    pub out: Option<PathBuf>,
    /// Hyperparameter trials (successive halving keeps the best third per rung).
    #[arg(long, env = env::TRIALS, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub trials: u32,
    /// Seed for the split, the search and the learner.
    #[arg(long, env = env::SEED, default_value_t = 42)]
    pub seed: u64,
    /// Positive class: `any` readmission (default) or `lt30` (within 30 days).
    #[arg(long, env = env::TARGET, value_enum, default_value_t = Target::Any)]
    pub target: Target,
    /// Choose the threshold as the highest with at least this recall on validation (default:
    /// maximise F1).
    #[arg(long, env = env::TARGET_RECALL, value_name = "R")]
    pub target_recall: Option<f64>,
    /// The learner: gradient-boosted trees or the logistic-regression baseline.
    #[arg(long, env = env::ALGORITHM, value_enum, default_value_t = Algorithm::Gbt)]
    pub algorithm: Algorithm,
    /// Training threads (default: every core).
    #[arg(long, env = env::THREADS, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: Option<u32>,
    /// Write the split's encoded features to DIR (for benchmarks) instead of training.
    #[arg(long, value_name = "DIR", hide = true)]
    pub export_features: Option<PathBuf>,
}

impl TrainArgs {
    fn threshold_rule(&self) -> anyhow::Result<ThresholdRule> {
        match self.target_recall {
            None => Ok(ThresholdRule::MaxF1),
            Some(r) if r > 0.0 && r <= 1.0 => Ok(ThresholdRule::TargetRecall { recall: r }),
            Some(r) => Err(fail(
                Exit::Usage,
                format!("--target-recall {r} is not in (0, 1]"),
                Some("pass a recall such as 0.8, or omit --target-recall to maximise F1"),
            )),
        }
    }
}

fn load_labelled(path: &Path) -> anyhow::Result<Table> {
    Ok(crate::data::load(path, &LoadOptions::default())?)
}

#[derive(Debug, Serialize)]
struct TrainReport {
    model: String,
    model_id: String,
    algorithm: String,
    target: Target,
    metrics: SplitMetrics,
    baseline: Option<SplitMetrics>,
    threshold: f64,
    threshold_rule: ThresholdRule,
    train_seconds: f64,
    search_seconds: f64,
    trials: u32,
    params: serde_json::Value,
    split: model::SplitInfo,
    features: usize,
    data_fingerprint: String,
    schema_hash: String,
}

fn metric_line(out: &mut dyn Write, name: &str, m: &Metrics) -> std::io::Result<()> {
    writeln!(
        out,
        "  {name:<10} ROC AUC {:.4}  PR AUC {:.4}  log loss {:.4}  Brier {:.4}  precision {:.3}  recall {:.3}  F1 {:.3}  ({} rows, {} positive)",
        m.roc_auc, m.pr_auc, m.log_loss, m.brier, m.precision, m.recall, m.f1, m.rows, m.positives
    )
}

impl Render for TrainReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "trained {} model {} (target {:?}) in {:.1} s ({} trials, search {:.1} s)",
            self.algorithm,
            self.model_id,
            self.target,
            self.train_seconds,
            self.trials,
            self.search_seconds
        )?;
        writeln!(out, "wrote {}", self.model)?;
        writeln!(
            out,
            "split by patient (seed {}): {} train / {} validation / {} test rows, {} removed (expired/hospice or unlabelled)",
            self.split.seed,
            self.split.train_rows,
            self.split.validation_rows,
            self.split.test_rows,
            self.split.removed_rows
        )?;
        writeln!(
            out,
            "threshold {:.4} ({})",
            self.threshold, self.threshold_rule
        )?;
        metric_line(out, "test", &self.metrics.test)?;
        metric_line(out, "validation", &self.metrics.validation)?;
        if let Some(b) = &self.baseline {
            metric_line(out, "baseline", &b.test)?;
        }
        Ok(())
    }
}

#[derive(Debug, Serialize)]
struct ExportReport {
    #[serde(flatten)]
    summary: model::ExportSummary,
}

impl Render for ExportReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "exported {} features: {} train / {} validation / {} test rows to {}",
            self.summary.features.len(),
            self.summary.train_rows,
            self.summary.validation_rows,
            self.summary.test_rows,
            self.summary.dir
        )
    }
}

pub async fn train(args: TrainArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let rule = args.threshold_rule()?;
    let table = load_labelled(&args.data)?;
    let mut req = TrainRequest::new(&table);
    req.target = args.target;
    req.seed = args.seed;
    req.trials = args.trials as usize;
    req.threshold_rule = rule;
    req.algorithm = args.algorithm;
    req.threads = args.threads.map(|t| t as usize);
    if let Some(dir) = &args.export_features {
        let summary = model::export_features(&req, dir)?;
        emit(ctx.output, &ExportReport { summary })?;
        return Ok(Exit::Success);
    }
    let Some(out) = args.out.as_deref() else {
        return Err(fail(
            Exit::Usage,
            "--out is required",
            Some("pass --out MODEL"),
        ));
    };
    let bar = progress_bar();
    let on_progress = |p: Progress<'_>| match p {
        Progress::Trial {
            report,
            done,
            total,
        } => {
            if let Some(bar) = &bar {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            }
            tracing::debug!(
                trial = report.trial,
                rung = report.rung,
                trees = report.trees,
                auc = report.validation_roc_auc,
                "trial {done}/{total}"
            );
        }
    };
    tracing::info!(
        rows = table.len(),
        trials = req.trials,
        "training {:?} on {}",
        req.algorithm,
        args.data.display()
    );
    let outcome = tokio::task::block_in_place(|| model::train(&req, &on_progress))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    outcome.model.save(out)?;
    let meta = outcome.model.meta();
    let report = TrainReport {
        model: out.display().to_string(),
        model_id: meta.model_id.clone(),
        algorithm: meta.algorithm.clone(),
        target: meta.target,
        metrics: meta.metrics.clone(),
        baseline: meta.baseline.clone(),
        threshold: meta.threshold,
        threshold_rule: meta.threshold_rule,
        train_seconds: round3(outcome.train_seconds),
        search_seconds: round3(outcome.search_seconds),
        trials: args.trials,
        params: meta.params.clone(),
        split: meta.split.clone(),
        features: meta.feature_names.len(),
        data_fingerprint: meta.data_fingerprint.clone(),
        schema_hash: meta.schema_hash.clone(),
    };
    emit(ctx.output, &report)?;
    Ok(Exit::Success)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} trials {pos}/{len} {wide_bar} {elapsed}")
    {
        bar.set_style(style);
    }
    Some(bar)
}

fn load_model(path: &Path) -> anyhow::Result<ModelFile> {
    Ok(ModelFile::load(path)?)
}

/// Score a model file on a labelled data file.
#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// The model file.
    #[arg(long, env = env::MODEL, value_name = "MODEL")]
    pub model: PathBuf,
    /// Labelled encounter data (CSV or CSV.gz).
    #[arg(long, env = env::DATA, value_name = "PATH")]
    pub data: PathBuf,
}

#[derive(Debug, Serialize)]
struct EvaluateReport {
    model: String,
    model_id: String,
    target: Target,
    data: String,
    metrics: Metrics,
    removed_rows: usize,
    /// The model's own test metrics from training, for comparison.
    trained_test: Metrics,
}

impl Render for EvaluateReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "model {} (target {:?}) on {} ({} rows removed: expired/hospice or unlabelled)",
            self.model_id, self.target, self.data, self.removed_rows
        )?;
        metric_line(out, "this data", &self.metrics)?;
        metric_line(out, "trained", &self.trained_test)
    }
}

pub async fn evaluate(args: EvaluateArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let model = load_model(&args.model)?;
    let table = load_labelled(&args.data)?;
    let ev = tokio::task::block_in_place(|| model.evaluate(&table))?;
    let meta = model.meta();
    emit(
        ctx.output,
        &EvaluateReport {
            model: args.model.display().to_string(),
            model_id: meta.model_id.clone(),
            target: meta.target,
            data: args.data.display().to_string(),
            metrics: ev.metrics,
            removed_rows: ev.removed_rows,
            trained_test: meta.metrics.test.clone(),
        },
    )?;
    Ok(Exit::Success)
}

/// How predictions are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PredictionFormat {
    Csv,
    Jsonl,
}

/// Predict readmission risk for encounters in a CSV or JSON-lines file.
#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// The model file.
    #[arg(long, env = env::MODEL, value_name = "MODEL")]
    pub model: PathBuf,
    /// Encounters: CSV/CSV.gz with the UCI columns (`readmitted` and ids optional), or JSON lines
    /// (`.jsonl`/`.ndjson`, or content starting with `{`) of objects keyed by column name.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Write predictions to FILE (atomically) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Prediction format (default: from --out's extension, else csv).
    #[arg(long, value_enum)]
    pub format: Option<PredictionFormat>,
}

#[derive(Debug, Serialize)]
struct Prediction {
    row: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    encounter_id: Option<i64>,
    probability: f64,
    prediction: u8,
    threshold: f64,
}

#[derive(Debug, Serialize)]
struct PredictReport {
    model_id: String,
    threshold: f64,
    rows: usize,
    positives: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    out: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    predictions: Vec<Prediction>,
}

impl Render for PredictReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{} predictions ({} at or above threshold {:.4}) by model {}{}",
            self.rows,
            self.positives,
            self.threshold,
            self.model_id,
            self.out
                .as_ref()
                .map(|o| format!(" written to {o}"))
                .unwrap_or_default()
        )
    }
}

/// One JSON-lines input row.
struct JsonRow(serde_json::Map<String, serde_json::Value>);

impl Row for JsonRow {
    fn value(&self, c: usize) -> Value<'_> {
        match self.0.get(COLUMNS[c].name) {
            None | Some(serde_json::Value::Null) => Value::Missing,
            Some(serde_json::Value::String(s)) if s == "?" => Value::Missing,
            Some(serde_json::Value::String(s)) => match COLUMNS[c].kind {
                Kind::Categorical => Value::Str(s),
                _ => s.trim().parse().map_or(Value::Missing, Value::Int),
            },
            Some(serde_json::Value::Number(n)) => n.as_i64().map_or(Value::Missing, Value::Int),
            Some(serde_json::Value::Bool(b)) => Value::Str(if *b { "Yes" } else { "No" }),
            Some(_) => Value::Missing,
        }
    }
}

fn read_jsonl(path: &Path) -> anyhow::Result<Table> {
    let file = std::fs::File::open(path)
        .classify(Exit::InvalidInput, "check the path given with --input")?;
    let mut table = Table::new();
    let bad = |line: usize, what: String| {
        fail(
            Exit::InvalidInput,
            format!("{}: line {line}: {what}", path.display()),
            Some("each line must be a JSON object keyed by the UCI column names"),
        )
    };
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| bad(i + 1, format!("cannot read: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&line)
            .map_err(|e| bad(i + 1, format!("not a JSON object: {e}")))?;
        for (k, v) in &obj {
            let Some(c) = crate::data::schema::index_of(k) else {
                return Err(bad(i + 1, format!("unknown column `{k}`")));
            };
            let ok = match (COLUMNS[c].kind, v) {
                (_, serde_json::Value::Null) => true,
                (Kind::Categorical, serde_json::Value::String(_)) => true,
                (Kind::Categorical, _) => false,
                (_, serde_json::Value::Number(n)) => n.as_i64().is_some(),
                (_, serde_json::Value::String(s)) => s == "?" || s.trim().parse::<i64>().is_ok(),
                _ => false,
            };
            if !ok {
                return Err(bad(
                    i + 1,
                    format!(
                        "column `{k}`: value {v} is not {}",
                        match COLUMNS[c].kind {
                            Kind::Categorical => "a string",
                            _ => "an integer",
                        }
                    ),
                ));
            }
        }
        table.push(&JsonRow(obj));
    }
    if table.is_empty() {
        return Err(fail(
            Exit::InvalidInput,
            format!("{} has no rows", path.display()),
            Some("pass a file with at least one encounter"),
        ));
    }
    Ok(table)
}

fn is_jsonl(path: &Path) -> anyhow::Result<bool> {
    if path
        .extension()
        .is_some_and(|e| e == "jsonl" || e == "ndjson" || e == "json")
    {
        return Ok(true);
    }
    let mut head = [0u8; 64];
    let n = std::io::Read::read(
        &mut std::fs::File::open(path)
            .classify(Exit::InvalidInput, "check the path given with --input")?,
        &mut head,
    )?;
    Ok(head[..n]
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{'))
}

pub async fn predict(args: PredictArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let model = load_model(&args.model)?;
    let table = if is_jsonl(&args.input)? {
        read_jsonl(&args.input)?
    } else {
        crate::data::load(&args.input, &LoadOptions::unlabeled())?
    };
    let probs = tokio::task::block_in_place(|| model.predict_table(&table));
    let threshold = model.threshold();
    let ids = table
        .is_present(col::ENCOUNTER_ID)
        .then(|| table.ints(col::ENCOUNTER_ID));
    let predictions: Vec<Prediction> = probs
        .iter()
        .enumerate()
        .map(|(i, &p)| Prediction {
            row: i + 1,
            encounter_id: ids.and_then(|ids| ids[i]),
            probability: p,
            prediction: u8::from(p >= threshold),
            threshold,
        })
        .collect();
    let format = args.format.unwrap_or(match &args.out {
        Some(p) if p.extension().is_some_and(|e| e == "jsonl" || e == "ndjson") => {
            PredictionFormat::Jsonl
        }
        _ => PredictionFormat::Csv,
    });
    let positives = predictions.iter().filter(|p| p.prediction == 1).count();
    let mut report = PredictReport {
        model_id: model.meta().model_id.clone(),
        threshold,
        rows: predictions.len(),
        positives,
        out: None,
        predictions: Vec::new(),
    };
    match (&args.out, ctx.output) {
        (Some(out), _) => {
            crate::fsutil::write_atomic(out, &render_predictions(&predictions, format)?)
                .classify(Exit::Failure, "check that --out's directory is writable")?;
            report.out = Some(out.display().to_string());
            emit(ctx.output, &report)?;
        }
        (None, crate::output::Format::Json) => {
            report.predictions = predictions;
            emit(ctx.output, &report)?;
        }
        (None, crate::output::Format::Human) => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&render_predictions(&predictions, format)?)?;
            stdout.flush()?;
        }
    }
    Ok(Exit::Success)
}

fn render_predictions(p: &[Prediction], format: PredictionFormat) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(p.len() * 48);
    match format {
        PredictionFormat::Jsonl => {
            for x in p {
                serde_json::to_writer(&mut out, x)?;
                out.push(b'\n');
            }
        }
        PredictionFormat::Csv => {
            writeln!(out, "row,encounter_id,probability,prediction,threshold")?;
            for x in p {
                writeln!(
                    out,
                    "{},{},{},{},{}",
                    x.row,
                    x.encounter_id.map(|i| i.to_string()).unwrap_or_default(),
                    x.probability,
                    x.prediction,
                    x.threshold
                )?;
            }
        }
    }
    Ok(out)
}
