//! The quality gate: may a candidate model replace production?
