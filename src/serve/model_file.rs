//! Serving a model file written by `health-predict train`: [`ModelFile::load`] verifies the
//! checksum before parsing, so a served model is always the one that was trained.

use std::path::Path;
use std::sync::Arc;

use super::encounter::Encounter;
use super::scorer::{Contribution, ModelDescription, Scorer};
use crate::model::ModelFile;

/// Reads, verifies and parses a model file.
pub(crate) fn load(path: &Path) -> Result<Arc<dyn Scorer>, String> {
    match ModelFile::load(path) {
        Ok(m) => Ok(Arc::new(m)),
        Err(e) => Err(crate::exit::chain_text(&e)),
    }
}

impl Scorer for ModelFile {
    fn describe(&self) -> ModelDescription {
        let meta = self.meta();
        let metrics = meta.flat_metrics();
        ModelDescription {
            name: format!("readmission-{}", meta.algorithm),
            version: meta.model_id.clone(),
            data_fingerprint: meta.data_fingerprint.clone(),
            metrics,
            threshold: meta.threshold,
            git_commit: meta.git_commit.clone(),
            feature_names: meta.feature_names.clone(),
            checksum: (!meta.checksum.is_empty()).then(|| meta.checksum.clone()),
        }
    }

    fn score(&self, encounter: &Encounter) -> f64 {
        self.predict_proba(encounter)
    }

    fn explain(&self, encounter: &Encounter, top: usize) -> Vec<Contribution> {
        ModelFile::explain(self, encounter, top)
            .into_iter()
            .map(|c| Contribution {
                feature: c.feature,
                value: c.value.into(),
                contribution: c.contribution,
            })
            .collect()
    }
}
