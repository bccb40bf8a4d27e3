//! Command results: one JSON document on stdout with `--output json`, or human text.

use std::io::Write;

use serde::Serialize;

/// How results are printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Text for people.
    #[default]
    Human,
    /// Exactly one JSON document.
    Json,
}

/// A command result that can be shown both ways.
pub trait Render: Serialize {
    /// Writes the human form.
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()>;
}

/// Prints a result on stdout in the chosen format.
pub fn emit<T: Render + ?Sized>(format: Format, value: &T) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, value)?;
            writeln!(out)?;
        }
        Format::Human => value.human(&mut out)?,
    }
    out.flush()?;
    Ok(())
}
