//! The prediction HTTP API (`health-predict serve`).
