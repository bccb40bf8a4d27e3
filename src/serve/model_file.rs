//! Serving a model file written by `health-predict train`.

use std::path::Path;
use std::sync::Arc;

use super::scorer::Scorer;

/// Reads, verifies and parses a model file.
pub(crate) fn load(path: &Path) -> Result<Arc<dyn Scorer>, String> {
    Err(format!(
        "{}: model files cannot be served by this build yet (the model file API is not merged)",
        path.display()
    ))
}
