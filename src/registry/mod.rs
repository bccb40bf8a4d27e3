//! The model registry: versions, aliases, history and lineage, on local files or MLflow.
