//! Column-by-column drift detection between a reference and a current batch, and the retraining decision.
