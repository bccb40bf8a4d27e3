//! `data` commands: split, validate, profile, synth, fetch. Each turns its arguments into a
//! request for `crate::data` and renders the result.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;

use crate::ci;
use crate::cli::{Context, env};
use crate::data::fetch::{self, FetchReport, FetchRequest};
use crate::data::profile::{Profile, profile};
use crate::data::split::{self, Manifest, SplitOptions};
use crate::data::{Issue, LoadOptions, load};
use crate::exit::{Classify, Exit, fail};
use crate::output::{Render, emit};

#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Split a file like the upstream: initial train/validation/test (grouped by patient), future
    /// data, and five simulated 2,000-row batches (two random, three drifted).
    Split(SplitArgs),
    /// Check a file against the 50-column schema; list every problem with its line, column,
    /// value and what was expected. Exits 6 on any problem (including an empty file).
    Validate(ValidateArgs),
    /// Summarise a file: rows, class balance, missing rates, top categories, numeric columns.
    Profile(ProfileArgs),
    /// Generate synthetic encounters with the real schema, calibrated from embedded figures about
    /// the UCI file (CSV, or gzip when PATH ends in .gz).
    Synth(SynthArgs),
    /// Download the UCI dataset from its public home, verify the SHA-256 of
    /// `diabetic_data.csv` and `IDs_mapping.csv`, and write them atomically.
    Fetch(FetchArgs),
}

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// Directory to write `diabetic_data.csv` and `IDs_mapping.csv` into.
    #[arg(long, env = env::DATA_DIR, default_value = "data")]
    pub out: PathBuf,
    /// Where the zip is downloaded from.
    #[arg(long, env = env::DATA_URL, default_value = fetch::DEFAULT_URL)]
    pub url: String,
    /// Expect a different checksum for a file: `NAME=SHA256HEX` (repeatable). Only for a mirror
    /// you trust that serves a different release.
    #[arg(long = "expect-sha256", value_name = "NAME=HEX")]
    pub expect_sha256: Vec<String>,
    /// Timeout of each download attempt, in seconds.
    #[arg(long, env = env::FETCH_TIMEOUT, default_value_t = 300)]
    pub timeout: u64,
}

#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// Encounters to generate.
    #[arg(long, env = env::SYNTH_ROWS, default_value_t = 100_000)]
    pub rows: usize,
    /// Seed: the same seed gives the same file.
    #[arg(long, env = env::SEED, default_value_t = split::DEFAULT_SEED)]
    pub seed: u64,
    /// Output file; gzip-compressed when it ends in `.gz`.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The file to check (CSV or CSV.gz; gzip is detected from the content).
    pub path: PathBuf,
    /// Accept files without `readmitted`, `encounter_id` and `patient_nbr` (prediction inputs).
    #[arg(long)]
    pub unlabeled: bool,
    /// List at most this many problems (all of them are counted).
    #[arg(long, env = env::MAX_ISSUES, default_value_t = 100)]
    pub max_issues: usize,
    /// Stop with an error past this many bytes of input, after decompression (gzip bombs).
    #[arg(long, env = env::MAX_INPUT_BYTES, default_value_t = crate::data::load::MAX_BYTES)]
    pub max_bytes: u64,
    /// Stop with an error at a record (row) longer than this many bytes.
    #[arg(long, env = env::MAX_RECORD_BYTES, default_value_t = crate::data::load::MAX_RECORD_BYTES)]
    pub max_record_bytes: u64,
}

#[derive(Debug, clap::Args)]
pub struct ProfileArgs {
    /// The file to profile (CSV or CSV.gz). Unlabelled files are profiled without class balance.
    pub path: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct SplitArgs {
    /// The encounter file to split (CSV or CSV.gz).
    #[arg(long, env = env::DATA)]
    pub data: PathBuf,
    /// Output directory: initial/{train,validation,test}.csv, future.csv, batches/, split.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Seed for the patient split and the batch draws.
    #[arg(long, env = env::SEED, default_value_t = split::DEFAULT_SEED)]
    pub seed: u64,
    /// Rows per simulated batch.
    #[arg(long, env = env::BATCH_ROWS, default_value_t = split::BATCH_ROWS)]
    pub batch_rows: usize,
}

pub async fn run(command: DataCommand, ctx: &Context) -> anyhow::Result<Exit> {
    match command {
        DataCommand::Split(a) => split_cmd(a, ctx),
        DataCommand::Validate(a) => validate_cmd(a, ctx),
        DataCommand::Profile(a) => profile_cmd(a, ctx),
        DataCommand::Synth(a) => synth_cmd(a, ctx),
        DataCommand::Fetch(a) => fetch_cmd(a, ctx).await,
    }
}

fn split_cmd(a: SplitArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let table = load(&a.data, &LoadOptions::default())?;
    let opts = SplitOptions {
        seed: a.seed,
        batch_rows: a.batch_rows,
        source: Some(a.data.display().to_string()),
    };
    let s = split::split(&table, &opts)?;
    let manifest = split::write(&s, &a.out)
        .with_context(|| format!("writing the split to {}", a.out.display()))?;
    emit(
        ctx.output,
        &SplitReport {
            out: a.out.display().to_string(),
            manifest,
        },
    )?;
    Ok(Exit::Success)
}

#[derive(Debug, serde::Serialize)]
struct SplitReport {
    out: String,
    #[serde(flatten)]
    manifest: Manifest,
}

impl Render for SplitReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let m = &self.manifest;
        writeln!(
            out,
            "split {} rows (seed {}) into {}",
            m.source_rows, m.seed, self.out
        )?;
        writeln!(
            out,
            "{:<26} {:>7} {:>9} {:>8} {:>7} {:>7}  drift",
            "file", "rows", "patients", "pos.rate", "age70+", "diag"
        )?;
        let line = |out: &mut dyn Write, file: &str, s: &split::Summary, drift: &str| {
            writeln!(
                out,
                "{:<26} {:>7} {:>9} {:>8.3} {:>7.3} {:>7.2}  {}",
                file,
                s.rows,
                s.patients,
                s.positive_rate,
                s.share_age_70_plus,
                s.mean_number_diagnoses,
                drift
            )
        };
        for f in &m.files {
            line(out, &f.file, &f.summary, "")?;
        }
        for b in &m.batches {
            line(
                out,
                &b.file,
                &b.summary,
                &format!("{}: {}", b.drift, b.description),
            )?;
        }
        writeln!(out, "manifest: {}/split.json", self.out)
    }
}

fn validate_cmd(a: ValidateArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let opts = LoadOptions {
        max_issues: a.max_issues,
        max_bytes: a.max_bytes,
        max_record_bytes: a.max_record_bytes.max(1),
        ..if a.unlabeled {
            LoadOptions::unlabeled()
        } else {
            LoadOptions::default()
        }
    };
    let path = a.path.display().to_string();
    match load(&a.path, &opts) {
        Ok(t) => {
            emit(
                ctx.output,
                &ValidateReport {
                    path,
                    valid: true,
                    rows: Some(t.len()),
                    total_issues: 0,
                    issues: Vec::new(),
                },
            )?;
            Ok(Exit::Success)
        }
        Err(e) => {
            let Some((mut issues, total)) = e.issues() else {
                return Err(e.into());
            };
            issues.truncate(a.max_issues);
            emit(
                ctx.output,
                &ValidateReport {
                    path: path.clone(),
                    valid: false,
                    rows: None,
                    total_issues: total,
                    issues,
                },
            )?;
            if matches!(e, crate::data::DataError::TooLarge { .. }) {
                // The read stopped: the error and its hint say which limit and how to raise it.
                return Err(e.into());
            }
            Err(fail(
                Exit::InvalidInput,
                format!(
                    "{path} is not a valid encounter file: {total} {}",
                    if total == 1 { "problem" } else { "problems" }
                ),
                Some("fix the lines listed on stdout (line numbers count the header as line 1)"),
            ))
        }
    }
}

#[derive(Debug, serde::Serialize)]
struct ValidateReport {
    path: String,
    valid: bool,
    rows: Option<usize>,
    total_issues: usize,
    issues: Vec<Issue>,
}

impl Render for ValidateReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        if self.valid {
            return writeln!(
                out,
                "{}: valid, {} rows",
                self.path,
                self.rows.unwrap_or_default()
            );
        }
        let shown = if self.issues.len() < self.total_issues {
            format!(" (showing the first {})", self.issues.len())
        } else {
            String::new()
        };
        writeln!(
            out,
            "{}: INVALID, {} {}{shown}",
            self.path,
            self.total_issues,
            if self.total_issues == 1 {
                "problem"
            } else {
                "problems"
            }
        )?;
        for i in &self.issues {
            writeln!(out, "  {i}")?;
        }
        Ok(())
    }
}

fn profile_cmd(a: ProfileArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let opts = LoadOptions {
        require_target: false,
        require_ids: false,
        ..LoadOptions::default()
    };
    let t = load(&a.path, &opts)?;
    emit(
        ctx.output,
        &ProfileReport {
            path: a.path.display().to_string(),
            profile: profile(&t),
        },
    )?;
    Ok(Exit::Success)
}

#[derive(Debug, serde::Serialize)]
struct ProfileReport {
    path: String,
    #[serde(flatten)]
    profile: Profile,
}

impl Render for ProfileReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let p = &self.profile;
        write!(out, "{}: {} rows", self.path, p.rows)?;
        if let Some(n) = p.patients {
            write!(out, ", {n} patients")?;
        }
        writeln!(out)?;
        if let Some(cb) = &p.class_balance {
            let raw: Vec<String> = cb
                .readmitted
                .iter()
                .map(|c| format!("{} {} ({:.1}%)", c.value, c.count, 100.0 * c.share))
                .collect();
            writeln!(out, "readmitted: {}", raw.join(", "))?;
            writeln!(
                out,
                "positive rate: any {:.4} ({} of {}), lt30 {:.4} ({} of {})",
                cb.any.positive_rate,
                cb.any.positive,
                cb.any.positive + cb.any.negative,
                cb.lt30.positive_rate,
                cb.lt30.positive,
                cb.lt30.positive + cb.lt30.negative
            )?;
        }
        writeln!(
            out,
            "\n{:<26} {:>8} {:>8}  summary",
            "column", "missing", "distinct"
        )?;
        for c in &p.columns {
            let summary = match &c.numeric {
                Some(n) => format!(
                    "mean {:.2} sd {:.2} min {} p25 {} median {} p75 {} max {}",
                    n.mean, n.std, n.min, n.p25, n.median, n.p75, n.max
                ),
                None => c
                    .top
                    .iter()
                    .take(3)
                    .map(|t| format!("{} {:.1}%", ci::printable(&t.value), 100.0 * t.share))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            writeln!(
                out,
                "{:<26} {:>7.1}% {:>8}  {}",
                c.name,
                100.0 * c.missing_rate,
                c.distinct,
                summary
            )?;
        }
        Ok(())
    }
}

fn synth_cmd(a: SynthArgs, ctx: &Context) -> anyhow::Result<Exit> {
    if a.rows == 0 {
        return Err(fail(
            Exit::Usage,
            "--rows must be at least 1",
            Some("pass --rows N (or set HEALTH_PREDICT_SYNTH_ROWS)"),
        ));
    }
    let start = std::time::Instant::now();
    let t = crate::data::synth::generate(a.rows, a.seed);
    let generate_seconds = start.elapsed().as_secs_f64();
    let gzip = a.out.extension().is_some_and(|e| e == "gz");
    let bytes = t
        .to_csv_bytes(gzip)
        .classify(Exit::Failure, "could not encode the generated rows")?;
    crate::fsutil::write_atomic(&a.out, &bytes).classify(
        Exit::Failure,
        format!("check that {} is writable", a.out.display()),
    )?;
    let labels = t.labels(crate::data::Target::Any);
    let positive = labels.iter().filter(|l| **l == Some(true)).count();
    emit(
        ctx.output,
        &SynthReport {
            out: a.out.display().to_string(),
            rows: t.len(),
            seed: a.seed,
            gzip,
            bytes: bytes.len(),
            positive_rate: positive as f64 / t.len() as f64,
            generate_seconds,
            total_seconds: start.elapsed().as_secs_f64(),
        },
    )?;
    Ok(Exit::Success)
}

#[derive(Debug, serde::Serialize)]
struct SynthReport {
    out: String,
    rows: usize,
    seed: u64,
    gzip: bool,
    bytes: usize,
    positive_rate: f64,
    generate_seconds: f64,
    total_seconds: f64,
}

impl Render for SynthReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "wrote {} synthetic encounters (seed {}, positive rate {:.4}) to {} ({} bytes{}) in {:.3}s",
            self.rows,
            self.seed,
            self.positive_rate,
            self.out,
            self.bytes,
            if self.gzip { ", gzip" } else { "" },
            self.total_seconds
        )
    }
}

async fn fetch_cmd(a: FetchArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let mut req = FetchRequest::new(a.url, a.out);
    req.timeout = std::time::Duration::from_secs(a.timeout.max(1));
    for spec in &a.expect_sha256 {
        let Some((name, hex)) = spec.split_once('=') else {
            return Err(fail(
                Exit::Usage,
                format!("--expect-sha256 {spec:?} is not NAME=HEX"),
                Some("write it as --expect-sha256 diabetic_data.csv=<64 hex digits>"),
            ));
        };
        match req.expected.iter_mut().find(|(n, _)| n == name) {
            Some(e) => e.1 = hex.to_owned(),
            None => {
                return Err(fail(
                    Exit::Usage,
                    format!("--expect-sha256 names an unknown file {name:?}"),
                    Some("the files are diabetic_data.csv and IDs_mapping.csv"),
                ));
            }
        }
    }
    tracing::info!(url = %req.url, "downloading the dataset");
    let report = fetch::fetch(&req).await?;
    emit(ctx.output, &report)?;
    Ok(Exit::Success)
}

impl Render for FetchReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "downloaded {} ({} bytes, {} attempt(s), {:.1}s)",
            self.url, self.archive_bytes, self.attempts, self.seconds
        )?;
        for f in &self.files {
            writeln!(
                out,
                "  {} ({} bytes) sha256 {} verified, from {}",
                f.path, f.bytes, f.sha256, f.entry
            )?;
        }
        Ok(())
    }
}
