//! The continuous-improvement loop: composes the domain modules into steps with deadlines and
//! recorded outcomes, writes one run directory, and decides the exit code at the end. The only
//! module that depends on all the others; none depends on it.

pub mod config;
pub mod history;
pub mod image;
pub mod kubernetes;
pub mod ledger;
pub mod local_deploy;
pub mod record;
pub mod run;
pub mod steps;
pub mod summary;
