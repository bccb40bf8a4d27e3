//! Pipeline configuration: command-line flags and environment variables (through clap), an
//! optional `health-predict.toml`, and defaults — merged in that order of precedence and
//! validated once, with errors that name the key to change.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::container::RuntimeChoice;
use crate::data::Target;

/// Where a model is deployed after it passed the local API tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum DeployTarget {
    /// Install the model as the state directory's serving artifact and verify it by serving it.
    Local,
    /// Server-side apply to a Kubernetes cluster and verify the rollout.
    Kubernetes,
    /// No deployment: the run stops after the local API tests and does not promote.
    None,
}

/// The one definition of the shared pipeline settings: for each, its `health-predict.toml` key
/// (the field name), its type in a configuration layer, its command-line help, how clap spells
/// the flag, the environment variable (a constant's name in `cli::env`), and how a flag's value
/// becomes a layer's value (`opt`: as is; `flag`: set means `Some(true)`). Order is help order.
///
/// It hands the list to `$callback!`: `Settings` here, and the clap arguments in
/// `cli::pipeline`, are both generated from it, so a setting is added in one place.
/// `run_dir` and `batch` are per-command (their help differs) and not listed.
macro_rules! pipeline_settings {
    ($callback:ident) => {
        $callback! {
            /// Initial (reference) data, CSV or CSV.gz [default: the synthetic generator].
            data: Option<PathBuf> => Option<PathBuf>, opt, [long], env(DATA);
            /// Rows the synthetic generator makes when --data is not given [default: 20000].
            synth_rows: Option<usize> => Option<usize>, opt, [long], env(SYNTH_ROWS);
            /// Rows per simulated batch [default: 2000].
            batch_rows: Option<usize> => Option<usize>, opt, [long], env(BATCH_ROWS);
            /// Seed for synthesis, splits, search and the gate's bootstrap [default: 42].
            seed: Option<u64> => Option<u64>, opt, [long], env(SEED);
            /// Label: `any` readmission (upstream) or `lt30` (within 30 days) [default: any].
            target: Option<Target> => Option<Target>, opt, [long, value_enum], env(TARGET);
            /// Hyperparameter-search trials [default: 8].
            trials: Option<usize> => Option<usize>, opt, [long], env(TRIALS);
            /// State directory: registry, serving slot, accepted batches, ledger [default: .health-predict].
            state_dir: Option<PathBuf> => Option<PathBuf>, opt, [long], env(STATE_DIR);
            /// Registry: a directory or `mlflow+http://HOST:PORT` [default: STATE_DIR/registry].
            registry: Option<String> => Option<String>, opt, [long], env(REGISTRY);
            /// Retrain when the share of drifted columns is over this [default: 0.30].
            drift_share_threshold: Option<f64> => Option<f64>, opt, [long],
                env(DRIFT_SHARE_THRESHOLD);
            /// Train whatever the drift check says.
            force_retrain: bool => Option<bool>, flag, [long], env(FORCE_RETRAIN);
            /// Share of the batch's patients held out for evaluation and the gate [default: 0.3].
            holdout_fraction: Option<f64> => Option<f64>, opt, [long], env(HOLDOUT_FRACTION);
            /// How far below production's holdout AUC a candidate may be and still deploy as a refresh
            /// [default: 0.02].
            refresh_tolerance: Option<f64> => Option<f64>, opt, [long],
                env(GATE_REFRESH_TOLERANCE);
            /// Fewest holdout rows the gate accepts [default: 300].
            min_holdout_rows: Option<usize> => Option<usize>, opt, [long], env(MIN_HOLDOUT_ROWS);
            /// Deploy target [default: local].
            deploy: Option<DeployTarget> => Option<DeployTarget>, opt, [long, value_enum],
                env(DEPLOY);
            /// Kubernetes namespace for deploy = kubernetes [default: health-predict].
            namespace: Option<String> => Option<String>, opt, [long], env(NAMESPACE);
            /// Image reference to deploy (by digest or unique tag) for deploy = kubernetes.
            image: Option<String> => Option<String>, opt, [long], env(IMAGE);
            /// Repository the image is pushed to for deploy = kubernetes.
            image_repository: Option<String> => Option<String>, opt, [long, alias = "image-repo"],
                env(IMAGE_REPOSITORY);
            /// Registry host the image is pushed to (`image push --registry`).
            image_registry: Option<String> => Option<String>, opt, [long], env(IMAGE_REGISTRY);
            /// Push to Amazon ECR with short-lived credentials (`image push --ecr`).
            ecr: bool => Option<bool>, flag, [long], env();
            /// The kind cluster to load the image into for deploy = kubernetes without --image or
            /// --image-repository [default: health-predict].
            kind_cluster: Option<String> => Option<String>, opt, [long], env(KIND_CLUSTER);
            /// Container runtime that runs the built image for the API tests: auto (docker, then
            /// podman), docker, podman, or none (test in-process) [default: auto].
            container_runtime: Option<RuntimeChoice> => Option<RuntimeChoice>, opt,
                [long = "runtime", value_enum], env(CONTAINER_RUNTIME);
            /// The holdout-AUC gain over production at which the gate says DEPLOY [default: 0].
            gate_min_delta: Option<f64> => Option<f64>, opt, [long, allow_hyphen_values = true],
                env(GATE_MIN_DELTA);
            /// p95 latency budget of the API tests' latency check, in ms [default: 50].
            latency_budget_ms: Option<f64> => Option<f64>, opt, [long],
                env(PIPELINE_LATENCY_BUDGET_MS);
            /// Deadline of each step, in seconds [default: 600].
            step_timeout_seconds: Option<u64> => Option<u64>, opt, [long], env(STEP_TIMEOUT);
        }
    };
}
pub(crate) use pipeline_settings;

/// How a flag's parsed value becomes a layer's value (see `pipeline_settings!`).
pub mod layer {
    /// An optional flag: as given.
    pub fn opt<T: Clone>(v: &Option<T>) -> Option<T> {
        v.clone()
    }

    /// A switch: given means `Some(true)`; absent leaves the setting to the next layer.
    pub fn flag(v: &bool) -> Option<bool> {
        v.then_some(true)
    }
}

macro_rules! settings_struct {
    ($(
        $(#[doc = $doc:expr])*
        $name:ident : $cli:ty => $file:ty, $via:ident, [$($arg:tt)*], env($($env:ident)?);
    )*) => {
        /// Every setting, each optional: one layer of configuration (flags+env, or the TOML file).
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Settings {
            $(pub $name: $file,)*
            /// The new batch (`pipeline run --batch`).
            pub batch: Option<PathBuf>,
            /// Where the run's outputs go (`--run-dir`).
            pub run_dir: Option<PathBuf>,
        }

        impl Settings {
            /// `self` wins where set; `lower` fills the rest.
            pub fn over(self, lower: Settings) -> Settings {
                Settings {
                    $($name: self.$name.or(lower.$name),)*
                    batch: self.batch.or(lower.batch),
                    run_dir: self.run_dir.or(lower.run_dir),
                }
            }
        }
    };
}
pipeline_settings!(settings_struct);

impl Settings {
    /// Reads a `health-predict.toml`; unknown keys and wrong types are errors naming the key.
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: e.message().to_owned(),
            key: e
                .span()
                .map(|s| text[s].lines().next().unwrap_or_default().to_owned()),
        })
    }
}

/// The validated configuration of one pipeline run.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineConfig {
    /// Initial (reference) data; `None`: the synthetic generator.
    pub data: Option<PathBuf>,
    /// The new batch; `None`: a bootstrap run on the initial data (or a synthetic batch when the
    /// initial data is synthetic and a production model exists).
    pub batch: Option<PathBuf>,
    pub synth_rows: usize,
    pub batch_rows: usize,
    pub seed: u64,
    pub target: Target,
    pub trials: usize,
    pub state_dir: PathBuf,
    pub registry: String,
    pub run_dir: Option<PathBuf>,
    pub drift_share_threshold: f64,
    pub force_retrain: bool,
    pub holdout_fraction: f64,
    pub refresh_tolerance: f64,
    pub min_holdout_rows: usize,
    pub deploy: DeployTarget,
    pub namespace: String,
    pub image: Option<String>,
    pub image_repository: Option<String>,
    /// Registry the image is pushed to (`image push --registry`); `None` with `ecr`: the
    /// account's ECR registry.
    pub image_registry: Option<String>,
    /// Log in to ECR with short-lived credentials to push (`image push --ecr`).
    pub ecr: bool,
    /// The kind cluster the image is loaded into when deploy = kubernetes has neither `image`
    /// nor `image_repository` (`kind load image-archive --name`).
    pub kind_cluster: String,
    /// Which container runtime runs the image for the API tests (`auto`: docker, then podman;
    /// `none`: test in-process).
    pub container_runtime: RuntimeChoice,
    /// The AUC gain over production at which the gate says DEPLOY (0: as good is enough).
    pub gate_min_delta: f64,
    pub latency_budget_ms: f64,
    pub step_timeout: Duration,
}

/// Defaults, documented in `docs/pipeline.md`.
pub mod defaults {
    pub const SYNTH_ROWS: usize = 20_000;
    pub const BATCH_ROWS: usize = 2_000;
    pub const SEED: u64 = 42;
    pub const TRIALS: usize = 8;
    pub const STATE_DIR: &str = ".health-predict";
    pub const DRIFT_SHARE_THRESHOLD: f64 = 0.30;
    pub const HOLDOUT_FRACTION: f64 = 0.3;
    pub const REFRESH_TOLERANCE: f64 = 0.02;
    pub const MIN_HOLDOUT_ROWS: usize = 300;
    pub const NAMESPACE: &str = "health-predict";
    pub const KIND_CLUSTER: &str = "health-predict";
    pub const LATENCY_BUDGET_MS: f64 = 50.0;
    pub const STEP_TIMEOUT_SECONDS: u64 = 600;
}

impl PipelineConfig {
    /// Applies defaults and validates every value.
    pub fn resolve(s: Settings) -> Result<PipelineConfig, ConfigError> {
        use defaults as d;
        let state_dir = s.state_dir.unwrap_or_else(|| PathBuf::from(d::STATE_DIR));
        let registry = s
            .registry
            .unwrap_or_else(|| state_dir.join("registry").display().to_string());
        let cfg = PipelineConfig {
            data: s.data,
            batch: s.batch,
            synth_rows: s.synth_rows.unwrap_or(d::SYNTH_ROWS),
            batch_rows: s.batch_rows.unwrap_or(d::BATCH_ROWS),
            seed: s.seed.unwrap_or(d::SEED),
            target: s.target.unwrap_or_default(),
            trials: s.trials.unwrap_or(d::TRIALS),
            state_dir,
            registry,
            run_dir: s.run_dir,
            drift_share_threshold: s.drift_share_threshold.unwrap_or(d::DRIFT_SHARE_THRESHOLD),
            force_retrain: s.force_retrain.unwrap_or(false),
            holdout_fraction: s.holdout_fraction.unwrap_or(d::HOLDOUT_FRACTION),
            refresh_tolerance: s.refresh_tolerance.unwrap_or(d::REFRESH_TOLERANCE),
            min_holdout_rows: s.min_holdout_rows.unwrap_or(d::MIN_HOLDOUT_ROWS),
            deploy: s.deploy.unwrap_or(DeployTarget::Local),
            namespace: s.namespace.unwrap_or_else(|| d::NAMESPACE.into()),
            image: s.image,
            image_repository: s.image_repository,
            image_registry: s.image_registry,
            ecr: s.ecr.unwrap_or(false),
            kind_cluster: s.kind_cluster.unwrap_or_else(|| d::KIND_CLUSTER.into()),
            container_runtime: s.container_runtime.unwrap_or(RuntimeChoice::Auto),
            gate_min_delta: s.gate_min_delta.unwrap_or(0.0),
            latency_budget_ms: s.latency_budget_ms.unwrap_or(d::LATENCY_BUDGET_MS),
            step_timeout: Duration::from_secs(
                s.step_timeout_seconds.unwrap_or(d::STEP_TIMEOUT_SECONDS),
            ),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &'static str, value: String, expected: &'static str| {
            Err(ConfigError::Invalid {
                key,
                value,
                expected,
            })
        };
        if self.synth_rows < 1_000 {
            return bad("synth_rows", self.synth_rows.to_string(), "at least 1000");
        }
        if self.batch_rows < 100 {
            return bad("batch_rows", self.batch_rows.to_string(), "at least 100");
        }
        if self.trials == 0 || self.trials > 500 {
            return bad("trials", self.trials.to_string(), "between 1 and 500");
        }
        if !(0.0..=1.0).contains(&self.drift_share_threshold) {
            return bad(
                "drift_share_threshold",
                self.drift_share_threshold.to_string(),
                "between 0 and 1",
            );
        }
        if !(0.05..=0.9).contains(&self.holdout_fraction) {
            return bad(
                "holdout_fraction",
                self.holdout_fraction.to_string(),
                "between 0.05 and 0.9",
            );
        }
        if !(-1.0..=1.0).contains(&self.gate_min_delta) {
            return bad(
                "gate_min_delta",
                self.gate_min_delta.to_string(),
                "between -1 and 1",
            );
        }
        if !(0.0..=1.0).contains(&self.refresh_tolerance) {
            return bad(
                "refresh_tolerance",
                self.refresh_tolerance.to_string(),
                "between 0 and 1",
            );
        }
        if !self.latency_budget_ms.is_finite() || self.latency_budget_ms <= 0.0 {
            return bad(
                "latency_budget_ms",
                self.latency_budget_ms.to_string(),
                "a positive number of milliseconds",
            );
        }
        if self.step_timeout < Duration::from_secs(1) {
            return bad(
                "step_timeout_seconds",
                self.step_timeout.as_secs().to_string(),
                "at least 1",
            );
        }
        let dns_label = |v: &str| {
            !v.is_empty()
                && v.len() <= 63
                && v.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !v.starts_with('-')
                && !v.ends_with('-')
        };
        if !dns_label(&self.kind_cluster) {
            return bad(
                "kind_cluster",
                self.kind_cluster.clone(),
                "a kind cluster name (lowercase letters, digits and '-', at most 63)",
            );
        }
        if self.ecr && self.image_repository.is_none() {
            return bad(
                "image_repository",
                "(unset)".into(),
                "the ECR repository to push to when ecr = true",
            );
        }
        for (key, path) in [("data", &self.data), ("batch", &self.batch)] {
            if let Some(p) = path
                && !p.exists()
            {
                return bad(
                    key,
                    p.display().to_string(),
                    "an existing CSV or CSV.gz file",
                );
            }
        }
        Ok(())
    }
}

/// Configuration errors; each names the key to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}{}", key.as_ref().map(|k| format!(" (at `{k}`)")).unwrap_or_default())]
    Parse {
        path: String,
        message: String,
        key: Option<String>,
    },
    #[error("`{key}` = {value} is invalid: expected {expected}")]
    Invalid {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
}

impl crate::exit::Diagnose for ConfigError {
    fn exit(&self) -> crate::exit::Exit {
        crate::exit::Exit::Usage
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            ConfigError::Read { .. } => "check --config (or remove it to use defaults)".into(),
            ConfigError::Parse { .. } => {
                "fix the key in health-predict.toml; `health-predict pipeline plan` shows the merged settings".into()
            }
            ConfigError::Invalid { key, .. } => format!(
                "set --{} (or `{key}` in health-predict.toml) to a valid value",
                key.replace('_', "-")
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_override_defaults() {
        let flags = Settings {
            trials: Some(3),
            ..Settings::default()
        };
        let file = Settings {
            trials: Some(50),
            seed: Some(7),
            ..Settings::default()
        };
        let cfg = PipelineConfig::resolve(flags.over(file)).unwrap();
        assert_eq!(cfg.trials, 3);
        assert_eq!(cfg.seed, 7);
        assert_eq!(cfg.synth_rows, defaults::SYNTH_ROWS);
        assert!(cfg.registry.ends_with("registry"));
    }

    #[test]
    fn file_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("health-predict.toml");
        std::fs::write(&p, "trials = 5\nseeds = 3\n").unwrap();
        let err = Settings::from_file(&p).unwrap_err().to_string();
        assert!(err.contains("seeds"), "{err}");
        std::fs::write(&p, "trials = \"many\"\n").unwrap();
        let err = Settings::from_file(&p).unwrap_err().to_string();
        assert!(err.contains("trials") || err.contains("many"), "{err}");
        std::fs::write(&p, "trials = 5\ndeploy = \"local\"\n").unwrap();
        assert_eq!(Settings::from_file(&p).unwrap().trials, Some(5));
    }

    #[test]
    fn invalid_values_name_the_key() {
        let s = Settings {
            drift_share_threshold: Some(1.5),
            ..Settings::default()
        };
        let err = PipelineConfig::resolve(s).unwrap_err();
        assert!(
            err.to_string().starts_with("`drift_share_threshold` = 1.5"),
            "{err}"
        );
        // deploy = kubernetes without an image or repository is the kind path.
        let s = Settings {
            deploy: Some(DeployTarget::Kubernetes),
            ..Settings::default()
        };
        let cfg = PipelineConfig::resolve(s).unwrap();
        assert_eq!(cfg.kind_cluster, defaults::KIND_CLUSTER);
        let s = Settings {
            kind_cluster: Some("Bad_Name".into()),
            ..Settings::default()
        };
        let err = PipelineConfig::resolve(s).unwrap_err().to_string();
        assert!(err.starts_with("`kind_cluster`"), "{err}");
    }
}
