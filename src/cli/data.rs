//! `data` commands: split, validate, profile, synth, fetch. Each turns its arguments into a
//! request for `crate::data` and renders the result.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;

use crate::cli::{Context, env};
use crate::data::split::{self, Manifest, SplitOptions};
use crate::data::{LoadOptions, load};
use crate::exit::Exit;
use crate::output::{Render, emit};

#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Split a file like the upstream: initial train/validation/test (grouped by patient), future
    /// data, and five simulated 2,000-row batches (two random, three drifted).
    Split(SplitArgs),
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
