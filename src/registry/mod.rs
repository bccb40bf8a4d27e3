//! The model registry: versions, aliases, alias history and lineage, on a local directory
//! (default) or an MLflow tracking server.
//!
//! Responsible for: storing model files immutably under monotonic version numbers, moving aliases
//! (`production`, `candidate`, any other) with a recorded history, resolving a REF (version number,
//! alias or path) to verified model bytes. Must not: decide whether a model is good enough (that is
//! `gate`), train, or deploy. A reader never sees half a version, and model bytes are checked
//! against their recorded SHA-256 on every read.

pub mod local;
pub(crate) mod mlflow;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::exit::{Diagnose, Exit};
pub use mlflow::MlflowCredentials;

/// The local registry directory used when neither `--registry` nor `HEALTH_PREDICT_REGISTRY`
/// names one.
pub const DEFAULT_LOCAL: &str = ".health-predict/registry";

/// Where a model came from: enough to reproduce it and to trace it back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    /// Fingerprint of the training data (from the model file).
    pub data_fingerprint: Option<String>,
    /// The registry version this model was trained to replace (usually production's).
    pub parent_version: Option<u64>,
    /// The pipeline run that produced it (e.g. `GITHUB_RUN_ID`).
    pub run_id: Option<String>,
    /// The source commit it was trained from.
    pub git_commit: Option<String>,
}

/// What the caller knows about a model being registered, besides its bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    pub model_id: Option<String>,
    pub schema_hash: Option<String>,
    pub lineage: Lineage,
    pub metrics: BTreeMap<String, f64>,
    pub params: BTreeMap<String, serde_json::Value>,
    pub description: Option<String>,
}

impl Registration {
    /// The registration a model file describes: model id, schema hash, training-data
    /// fingerprint, git commit, metrics (flattened: `test.roc_auc`, `validation.roc_auc`, ...)
    /// and params. `lineage` adds what the file cannot know (parent version, run id) and a git
    /// commit only when the file has none.
    pub fn from_model(meta: &crate::model::ModelMeta, lineage: Lineage) -> Registration {
        let metrics = meta.flat_metrics();
        let params = match &meta.params {
            serde_json::Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            serde_json::Value::Null => BTreeMap::new(),
            other => BTreeMap::from([("params".to_owned(), other.clone())]),
        };
        let mut params: BTreeMap<String, serde_json::Value> = params;
        params.insert("algorithm".into(), meta.algorithm.clone().into());
        params.insert("threshold".into(), meta.threshold.into());
        if let Ok(t) = serde_json::to_value(meta.target) {
            params.insert("target".into(), t);
        }
        Registration {
            model_id: Some(meta.model_id.clone()),
            schema_hash: Some(meta.schema_hash.clone()),
            lineage: Lineage {
                data_fingerprint: Some(meta.data_fingerprint.clone()),
                git_commit: meta.git_commit.clone().or(lineage.git_commit),
                ..lineage
            },
            metrics,
            params,
            description: None,
        }
    }
}

/// One registered model version, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub version: u64,
    /// SHA-256 of the model file, hex.
    pub sha256: String,
    /// Size of the model file in bytes.
    pub size: u64,
    pub registered_at: jiff::Timestamp,
    pub model_id: Option<String>,
    pub schema_hash: Option<String>,
    pub lineage: Lineage,
    pub metrics: BTreeMap<String, f64>,
    pub params: BTreeMap<String, serde_json::Value>,
    pub description: Option<String>,
    /// The container image that serves this version, by digest (`REPO@sha256:...`), recorded by
    /// the pipeline once the image exists; `deploy` workflows resolve a version or alias to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// The outcome of a registration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Registered {
    pub record: VersionRecord,
    /// False when the same model file was already registered: `record` is that version.
    pub created: bool,
}

/// How an alias moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AliasAction {
    Promote,
    Rollback,
}

/// One move of an alias, in the order they happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasEvent {
    pub alias: String,
    pub action: AliasAction,
    pub from: Option<u64>,
    pub to: u64,
    pub at: jiff::Timestamp,
    /// The pipeline run that moved it, when known.
    pub run_id: Option<String>,
}

/// The outcome of a promote or rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Moved {
    pub alias: String,
    pub from: Option<u64>,
    pub to: u64,
    /// False when the alias already pointed at `to` (nothing was written, no history entry).
    pub changed: bool,
}

/// A model named on the command line or by the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    /// A registry version number (`3` or `v3`).
    Version(u64),
    /// A registry alias (`production`, `candidate`, ...).
    Alias(String),
    /// A model file outside the registry. Any REF containing `/` or `.` is a path; write
    /// `./name` for a file whose name would otherwise read as an alias.
    Path(PathBuf),
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelRef::Version(v) => write!(f, "version {v}"),
            ModelRef::Alias(a) => write!(f, "alias `{a}`"),
            ModelRef::Path(p) => write!(f, "file {}", p.display()),
        }
    }
}

impl FromStr for ModelRef {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<ModelRef, RegistryError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(RegistryError::BadRef {
                reference: s.into(),
            });
        }
        if let Some(v) = parse_version(s) {
            return if v == 0 {
                Err(RegistryError::BadRef {
                    reference: s.into(),
                })
            } else {
                Ok(ModelRef::Version(v))
            };
        }
        if s.contains(['/', '\\', '.']) {
            return Ok(ModelRef::Path(PathBuf::from(s)));
        }
        validate_alias(s)?;
        Ok(ModelRef::Alias(s.to_owned()))
    }
}

fn parse_version(s: &str) -> Option<u64> {
    let digits = s.strip_prefix('v').unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

/// Alias names: 1-255 of `[A-Za-z0-9_-]`, not a version number (`7`, `v7`) and not `latest`
/// (MLflow's reserved words, enforced on both backends so a registry can move between them).
pub fn validate_alias(alias: &str) -> Result<(), RegistryError> {
    let ok = !alias.is_empty()
        && alias.len() <= 255
        && alias
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && parse_version(alias).is_none()
        && !alias.eq_ignore_ascii_case("latest");
    if ok {
        Ok(())
    } else {
        Err(RegistryError::BadAlias {
            alias: alias.into(),
        })
    }
}

/// A model's bytes with what the registry knows about it.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub bytes: Vec<u8>,
    /// The registry record; `None` for a file given by path.
    pub record: Option<VersionRecord>,
    /// SHA-256 of `bytes`, hex.
    pub sha256: String,
    /// How it was named, for reports: `version 3`, `alias `production` (version 3)`, a path.
    pub source: String,
}

impl Resolved {
    pub fn version(&self) -> Option<u64> {
        self.record.as_ref().map(|r| r.version)
    }
}

/// Errors of both registry backends.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("`{reference}` is not a model REF (a version number, an alias or a path)")]
    BadRef { reference: String },
    #[error("`{alias}` is not a valid alias name")]
    BadAlias { alias: String },
    #[error("unsupported registry URI `{uri}`")]
    BadUri { uri: String },
    #[error("version {version} does not exist in {registry}")]
    NoVersion { version: u64, registry: String },
    #[error("alias `{alias}` is not set in {registry}")]
    AliasUnset { alias: String, registry: String },
    #[error("alias `{alias}` has no previous version to roll back to")]
    NoPrevious { alias: String },
    #[error("version {version} in {registry} is corrupt: {problem}")]
    Corrupt {
        version: u64,
        registry: String,
        problem: String,
    },
    #[error("registry state {path} is unreadable: {problem}")]
    BadState { path: String, problem: String },
    #[error("cannot access {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("another process holds the registry lock {path} (waited {waited_secs} s)")]
    Locked { path: String, waited_secs: u64 },
    #[error("cannot read model file {path}")]
    ModelFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot use {what} as a model")]
    InvalidModel {
        what: String,
        #[source]
        source: crate::model::ModelError,
    },
    #[error("MLflow {operation} failed: {problem}")]
    Mlflow { operation: String, problem: String },
    #[error("MLflow at {url} could not be reached for {operation}")]
    Unreachable {
        url: String,
        operation: String,
        #[source]
        source: reqwest::Error,
    },
}

impl Diagnose for RegistryError {
    fn exit(&self) -> Exit {
        match self {
            RegistryError::BadRef { .. }
            | RegistryError::BadAlias { .. }
            | RegistryError::BadUri { .. } => Exit::Usage,
            RegistryError::NoVersion { .. }
            | RegistryError::AliasUnset { .. }
            | RegistryError::NoPrevious { .. } => Exit::Usage,
            RegistryError::Corrupt { .. }
            | RegistryError::BadState { .. }
            | RegistryError::ModelFile { .. }
            | RegistryError::InvalidModel { .. } => Exit::InvalidInput,
            RegistryError::Io { .. }
            | RegistryError::Locked { .. }
            | RegistryError::Mlflow { .. }
            | RegistryError::Unreachable { .. } => Exit::Infra,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            RegistryError::BadRef { .. } => {
                "a REF is a version number (`3`), an alias (`production`) or a path containing \
                 `/` or `.` (`./model.json`)"
                    .into()
            }
            RegistryError::BadAlias { .. } => {
                "aliases use letters, digits, `_` and `-`, and may not look like a version \
                 (`7`, `v7`) or be `latest`"
                    .into()
            }
            RegistryError::BadUri { .. } => format!(
                "set --registry (or HEALTH_PREDICT_REGISTRY) to a directory (default \
                 {DEFAULT_LOCAL}) or to mlflow+http://HOST:PORT"
            ),
            RegistryError::NoVersion { .. } => {
                "list the versions with `health-predict registry list`".into()
            }
            RegistryError::AliasUnset { alias, .. } => {
                format!(
                    "promote a version first: `health-predict registry promote N --alias {alias}`"
                )
            }
            RegistryError::NoPrevious { alias } => format!(
                "see `health-predict registry history --alias {alias}`; promote an explicit \
                 version instead"
            ),
            RegistryError::Corrupt { .. } => {
                "the stored model file does not match its checksum: re-register the model from \
                 its source and promote the new version"
                    .into()
            }
            RegistryError::BadState { .. } => {
                "the registry directory was edited by hand or by a newer health-predict; restore \
                 it from backup or use a matching version"
                    .into()
            }
            RegistryError::Io { .. } => {
                "check the registry directory's permissions and free space (--registry, \
                 HEALTH_PREDICT_REGISTRY)"
                    .into()
            }
            RegistryError::Locked { .. } => {
                "another health-predict process is writing to this registry; wait for it (locks \
                 are released by the kernel when a process dies, so this is a live writer)"
                    .into()
            }
            RegistryError::ModelFile { .. } => "check the model file path".into(),
            RegistryError::InvalidModel { .. } => {
                "produce the file with `health-predict train` (or `pipeline train`)".into()
            }
            RegistryError::Mlflow { .. } => {
                "check the MLflow server's log; MLFLOW_TRACKING_TOKEN or \
                 MLFLOW_TRACKING_USERNAME/PASSWORD authenticate when it requires it"
                    .into()
            }
            RegistryError::Unreachable { .. } => {
                "check that the MLflow server is running and the URI in --registry \
                 (HEALTH_PREDICT_REGISTRY) is right"
                    .into()
            }
        })
    }
}

/// A model registry backend. Writers are idempotent where the pipeline needs it: registering a
/// model file already present returns its version, promoting an alias to where it already points
/// is a no-op.
pub trait Registry: Send + Sync + fmt::Debug {
    /// A display form of where this registry lives (no credentials).
    fn describe(&self) -> String;

    /// Stores a model file as a new version, or returns the version that already holds these
    /// exact bytes.
    fn register<'a>(
        &'a self,
        model: &'a [u8],
        registration: &'a Registration,
    ) -> BoxFuture<'a, Result<Registered, RegistryError>>;

    /// Every version, oldest first.
    fn versions(&self) -> BoxFuture<'_, Result<Vec<VersionRecord>, RegistryError>>;

    /// One version's record (no model bytes).
    fn record(&self, version: u64) -> BoxFuture<'_, Result<VersionRecord, RegistryError>>;

    /// One version's model bytes and record, the bytes verified against the recorded checksum.
    fn fetch(&self, version: u64)
    -> BoxFuture<'_, Result<(Vec<u8>, VersionRecord), RegistryError>>;

    /// Every alias and the version it points at.
    fn aliases(&self) -> BoxFuture<'_, Result<BTreeMap<String, u64>, RegistryError>>;

    /// Points `alias` at `version`; a no-op when it already does.
    fn promote<'a>(
        &'a self,
        version: u64,
        alias: &'a str,
        run_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Moved, RegistryError>>;

    /// Moves `alias` back to the version it pointed at before its current one.
    fn rollback<'a>(
        &'a self,
        alias: &'a str,
        run_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Moved, RegistryError>>;

    /// Records the image that serves `version` (replacing an earlier one). The model bytes and
    /// their checksum are not touched.
    fn set_image<'a>(
        &'a self,
        version: u64,
        image: &'a str,
    ) -> BoxFuture<'a, Result<(), RegistryError>>;

    /// Every move of `alias`, oldest first.
    fn history<'a>(
        &'a self,
        alias: &'a str,
    ) -> BoxFuture<'a, Result<Vec<AliasEvent>, RegistryError>>;
}

impl<'r> dyn Registry + 'r {
    /// The version an alias points at, if set.
    pub async fn alias(&self, alias: &str) -> Result<Option<u64>, RegistryError> {
        validate_alias(alias)?;
        Ok(self.aliases().await?.get(alias).copied())
    }

    /// The version a registry REF names (a path is not a registry REF here).
    pub async fn version_of(&self, reference: &ModelRef) -> Result<u64, RegistryError> {
        match reference {
            ModelRef::Version(v) => Ok(*v),
            ModelRef::Alias(a) => self
                .alias(a)
                .await?
                .ok_or_else(|| RegistryError::AliasUnset {
                    alias: a.clone(),
                    registry: self.describe(),
                }),
            ModelRef::Path(p) => Err(RegistryError::BadRef {
                reference: p.display().to_string(),
            }),
        }
    }

    /// A REF's model bytes (checksum-verified for registry versions) and record.
    pub async fn resolve(&self, reference: &ModelRef) -> Result<Resolved, RegistryError> {
        match reference {
            ModelRef::Path(p) => {
                let bytes = std::fs::read(p).map_err(|source| RegistryError::ModelFile {
                    path: p.display().to_string(),
                    source,
                })?;
                Ok(Resolved {
                    sha256: sha256_hex(&bytes),
                    bytes,
                    record: None,
                    source: p.display().to_string(),
                })
            }
            _ => {
                let version = self.version_of(reference).await?;
                let (bytes, record) = self.fetch(version).await?;
                let source = match reference {
                    ModelRef::Alias(a) => format!("alias `{a}` (version {version})"),
                    _ => format!("version {version}"),
                };
                Ok(Resolved {
                    sha256: record.sha256.clone(),
                    bytes,
                    record: Some(record),
                    source,
                })
            }
        }
    }

    /// Registers model bytes after checking they are a model file, described by what the file
    /// says about itself plus `lineage`: the pipeline's entry point.
    pub async fn register_model(
        &self,
        bytes: &[u8],
        lineage: Lineage,
    ) -> Result<Registered, RegistryError> {
        let registration = registration_for(bytes, "model bytes", lineage)?;
        self.register(bytes, &registration).await
    }

    /// Registers a model file read from disk, described by what the file says about itself
    /// (model id, schema hash, data fingerprint, metrics, params) plus `lineage`.
    pub async fn register_file(
        &self,
        path: &std::path::Path,
        lineage: Lineage,
    ) -> Result<Registered, RegistryError> {
        let bytes = std::fs::read(path).map_err(|source| RegistryError::ModelFile {
            path: path.display().to_string(),
            source,
        })?;
        let registration = registration_for(&bytes, &path.display().to_string(), lineage)?;
        self.register(&bytes, &registration).await
    }
}

/// Checks that `bytes` are a model file (format and embedded checksum) and describes it for
/// registration from what the file says about itself.
pub fn registration_for(
    bytes: &[u8],
    what: &str,
    lineage: Lineage,
) -> Result<Registration, RegistryError> {
    let model =
        crate::model::ModelFile::from_bytes(bytes).map_err(|e| RegistryError::InvalidModel {
            what: what.into(),
            source: e,
        })?;
    Ok(Registration::from_model(model.meta(), lineage))
}

/// Opens the registry a URI names: a directory path (or `file://PATH`), or
/// `mlflow+http(s)://HOST:PORT[/PREFIX][?model=NAME&experiment=NAME]` (which uses `mlflow`).
pub fn open(uri: &str, mlflow: &MlflowCredentials) -> Result<Box<dyn Registry>, RegistryError> {
    let uri = uri.trim();
    if uri.starts_with("mlflow+") {
        return Ok(Box::new(mlflow::MlflowRegistry::open(uri, mlflow)?));
    }
    if let Some(path) = uri.strip_prefix("file://") {
        return Ok(Box::new(local::LocalRegistry::new(path)));
    }
    if uri.is_empty() || uri.contains("://") {
        return Err(RegistryError::BadUri { uri: uri.into() });
    }
    Ok(Box::new(local::LocalRegistry::new(uri)))
}

/// SHA-256 of bytes, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Replays an alias's history as a stack (promote pushes, rollback pops) and returns it: the top
/// is where the alias points, the one below is where a rollback goes.
pub fn alias_stack(history: &[AliasEvent]) -> Vec<u64> {
    let mut stack = Vec::new();
    for e in history {
        match e.action {
            AliasAction::Promote => stack.push(e.to),
            AliasAction::Rollback => {
                stack.pop();
                // A rollback lands on the new top; if history was truncated, trust the event.
                if stack.last() != Some(&e.to) {
                    stack.push(e.to);
                }
            }
        }
    }
    stack
}

/// The target of a rollback of `alias` given its history, or `NoPrevious`.
pub fn rollback_target(alias: &str, history: &[AliasEvent]) -> Result<u64, RegistryError> {
    let stack = alias_stack(history);
    if stack.len() < 2 {
        return Err(RegistryError::NoPrevious {
            alias: alias.into(),
        });
    }
    Ok(stack[stack.len() - 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: AliasAction, from: Option<u64>, to: u64) -> AliasEvent {
        AliasEvent {
            alias: "production".into(),
            action,
            from,
            to,
            at: jiff::Timestamp::UNIX_EPOCH,
            run_id: None,
        }
    }

    #[test]
    fn refs_parse_as_version_alias_or_path() {
        assert_eq!("3".parse::<ModelRef>().unwrap(), ModelRef::Version(3));
        assert_eq!("v12".parse::<ModelRef>().unwrap(), ModelRef::Version(12));
        assert_eq!(
            "production".parse::<ModelRef>().unwrap(),
            ModelRef::Alias("production".into())
        );
        assert_eq!(
            "model.json".parse::<ModelRef>().unwrap(),
            ModelRef::Path("model.json".into())
        );
        assert_eq!(
            "./candidate".parse::<ModelRef>().unwrap(),
            ModelRef::Path("./candidate".into())
        );
        for bad in ["", "0", "has space", "latest", "ünï"] {
            assert!(bad.parse::<ModelRef>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn alias_names_follow_mlflow_rules() {
        for ok in ["production", "candidate", "shadow_2", "a-b"] {
            validate_alias(ok).unwrap();
        }
        for bad in ["", "v3", "42", "LATEST", "a.b", "a/b", &"x".repeat(256)] {
            assert!(validate_alias(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rollback_walks_back_through_promotions() {
        use AliasAction::*;
        let mut h = vec![
            ev(Promote, None, 1),
            ev(Promote, Some(1), 2),
            ev(Promote, Some(2), 3),
        ];
        assert_eq!(rollback_target("production", &h).unwrap(), 2);
        h.push(ev(Rollback, Some(3), 2));
        assert_eq!(rollback_target("production", &h).unwrap(), 1);
        h.push(ev(Rollback, Some(2), 1));
        assert!(matches!(
            rollback_target("production", &h),
            Err(RegistryError::NoPrevious { .. })
        ));
        h.push(ev(Promote, Some(1), 4));
        assert_eq!(alias_stack(&h), vec![1, 4]);
        assert_eq!(rollback_target("production", &h).unwrap(), 1);
    }

    #[test]
    fn uris_pick_a_backend() {
        let none = MlflowCredentials::default();
        assert!(
            open("some/dir", &none)
                .unwrap()
                .describe()
                .contains("some/dir")
        );
        assert!(
            open("file:///tmp/x", &none)
                .unwrap()
                .describe()
                .contains("/tmp/x")
        );
        assert!(
            open("mlflow+http://127.0.0.1:5000", &none)
                .unwrap()
                .describe()
                .starts_with("mlflow")
        );
        assert!(matches!(
            open("s3://bucket/x", &none),
            Err(RegistryError::BadUri { .. })
        ));
    }
}
