//! The pipeline's record of completed runs, so that running the same batch with the same settings
//! twice does not retrain, register or move aliases again. Interrupted or errored runs are not
//! recorded: they are retried in full next time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What a completed run decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub run_id: String,
    pub finished: String,
    pub exit_code: u8,
    pub decision: Option<String>,
    pub model_version: Option<u64>,
    pub run_dir: String,
}

/// Completed runs by input key.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Ledger {
    #[serde(default)]
    runs: BTreeMap<String, Entry>,
    #[serde(skip)]
    path: PathBuf,
}

impl Ledger {
    /// Loads the ledger of a state directory (empty when absent).
    pub fn open(state_dir: &Path) -> anyhow::Result<Ledger> {
        let path = state_dir.join("pipeline").join("ledger.json");
        let mut ledger: Ledger = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!("{} is not a valid pipeline ledger: {e}", path.display())
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ledger::default(),
            Err(e) => return Err(e.into()),
        };
        ledger.path = path;
        Ok(ledger)
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.runs.get(key)
    }

    /// Records a completed run and writes the ledger atomically.
    pub fn record(&mut self, key: &str, entry: Entry) -> anyhow::Result<()> {
        self.runs.insert(key.to_owned(), entry);
        let bytes = serde_json::to_vec_pretty(&*self)?;
        crate::fsutil::write_atomic(&self.path, &bytes)?;
        Ok(())
    }
}

/// The key of a run's inputs: the data fingerprints and every setting that changes the outcome.
pub fn key(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_and_keys_differ_by_input() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(dir.path()).unwrap();
        let k = key(&["data", "batch", "seed=1"]);
        assert_ne!(k, key(&["data", "batch", "seed=2"]));
        assert_ne!(key(&["ab", "c"]), key(&["a", "bc"]));
        assert!(l.get(&k).is_none());
        let e = Entry {
            run_id: "r1".into(),
            finished: "now".into(),
            exit_code: 0,
            decision: Some("DEPLOY".into()),
            model_version: Some(1),
            run_dir: "runs/r1".into(),
        };
        l.record(&k, e.clone()).unwrap();
        assert_eq!(Ledger::open(dir.path()).unwrap().get(&k), Some(&e));
    }
}
