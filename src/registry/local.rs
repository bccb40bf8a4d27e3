//! The local registry: a directory that cannot be left half-written.
//!
//! Layout (format 1):
//! ```text
//! ROOT/.lock                    fs4 (flock) lock serialising writers; released by the kernel
//!                               when the holder dies
//! ROOT/versions/N/model.bin     the model file, immutable
//! ROOT/versions/N/record.json   its record (checksum, lineage, metrics, params)
//! ROOT/versions/N/image.json    the image serving it, by digest (written later, replaced whole)
//! ROOT/aliases.json             every alias and the history of every move, one atomic file
//! ```
//! A version is written into `versions/.tmp-*`, both files fsynced, then the directory is renamed
//! to its number: it appears whole or not at all. Aliases are rewritten with
//! `crate::fsutil::write_atomic` and only ever name versions that already exist, so a writer
//! killed at any instant leaves every alias on a complete version. Readers take no lock.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{
    AliasAction, AliasEvent, Moved, Registered, Registration, Registry, RegistryError,
    VersionRecord, rollback_target, sha256_hex, validate_alias,
};
use crate::retry::{Backoff, Decision, retry};

const FORMAT: u32 = 1;
const LOCK: &str = ".lock";
const VERSIONS: &str = "versions";
const ALIASES: &str = "aliases.json";
const MODEL: &str = "model.bin";
const RECORD: &str = "record.json";
/// The image serving a version, written after the version (the record itself never changes).
const IMAGE: &str = "image.json";
const TMP_PREFIX: &str = ".tmp-";

/// A registry in a local directory.
#[derive(Debug, Clone)]
pub struct LocalRegistry {
    root: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct StoredRecord {
    format: u32,
    #[serde(flatten)]
    record: VersionRecord,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AliasState {
    format: u32,
    aliases: BTreeMap<String, u64>,
    history: Vec<AliasEvent>,
}

/// Holds the writer lock until dropped (closing the file releases the flock).
#[derive(Debug)]
struct WriteLock {
    _file: File,
}

impl LocalRegistry {
    pub fn new(root: impl Into<PathBuf>) -> LocalRegistry {
        LocalRegistry { root: root.into() }
    }

    fn io(&self, path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError {
        let path = path.display().to_string();
        move |source| RegistryError::Io { path, source }
    }

    fn versions_dir(&self) -> PathBuf {
        self.root.join(VERSIONS)
    }

    fn version_dir(&self, version: u64) -> PathBuf {
        self.versions_dir().join(version.to_string())
    }

    async fn lock(&self) -> Result<WriteLock, RegistryError> {
        std::fs::create_dir_all(&self.root).map_err(self.io(&self.root))?;
        let path = self.root.join(LOCK);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(self.io(&path))?;
        let policy = Backoff::REGISTRY_LOCK;
        let attempt = retry(
            &policy,
            |_| {
                let r = fs4::fs_std::FileExt::try_lock_exclusive(&file);
                async move {
                    match r {
                        Ok(true) => Ok(()),
                        Ok(false) => Err(None),
                        Err(e) => Err(Some(e)),
                    }
                }
            },
            |e: &Option<std::io::Error>| {
                if e.is_none() {
                    Decision::Retry
                } else {
                    Decision::Stop
                }
            },
        )
        .await;
        match attempt {
            Ok(()) => Ok(WriteLock { _file: file }),
            Err((Some(e), _)) => Err(self.io(&path)(e)),
            Err((None, _)) => Err(RegistryError::Locked {
                path: path.display().to_string(),
                waited_secs: policy.deadline.as_secs(),
            }),
        }
    }

    /// Version numbers present (complete directories only), ascending.
    fn version_numbers(&self) -> Result<Vec<u64>, RegistryError> {
        let dir = self.versions_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(&dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(self.io(&dir))?;
            if let Some(v) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
            {
                out.push(v);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    fn read_record(&self, version: u64) -> Result<VersionRecord, RegistryError> {
        let path = self.version_dir(version).join(RECORD);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(if self.version_dir(version).exists() {
                    self.corrupt(version, "record.json is missing")
                } else {
                    RegistryError::NoVersion {
                        version,
                        registry: self.describe(),
                    }
                });
            }
            Err(e) => return Err(self.io(&path)(e)),
        };
        let stored: StoredRecord = serde_json::from_slice(&bytes)
            .map_err(|e| self.corrupt(version, &format!("record.json: {e}")))?;
        if stored.format != FORMAT {
            return Err(RegistryError::BadState {
                path: path.display().to_string(),
                problem: format!("format {} (this build reads {FORMAT})", stored.format),
            });
        }
        if stored.record.version != version {
            return Err(self.corrupt(
                version,
                &format!("record.json says version {}", stored.record.version),
            ));
        }
        let mut record = stored.record;
        let image_path = self.version_dir(version).join(IMAGE);
        match std::fs::read(&image_path) {
            Ok(b) => {
                let v: serde_json::Value = serde_json::from_slice(&b)
                    .map_err(|e| self.corrupt(version, &format!("{IMAGE}: {e}")))?;
                record.image = v["image"].as_str().map(str::to_owned);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io(&image_path)(e)),
        }
        Ok(record)
    }

    fn corrupt(&self, version: u64, problem: &str) -> RegistryError {
        RegistryError::Corrupt {
            version,
            registry: self.describe(),
            problem: problem.into(),
        }
    }

    fn read_aliases(&self) -> Result<AliasState, RegistryError> {
        let path = self.root.join(ALIASES);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(AliasState {
                    format: FORMAT,
                    ..AliasState::default()
                });
            }
            Err(e) => return Err(self.io(&path)(e)),
        };
        let state: AliasState =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::BadState {
                path: path.display().to_string(),
                problem: e.to_string(),
            })?;
        if state.format != FORMAT {
            return Err(RegistryError::BadState {
                path: path.display().to_string(),
                problem: format!("format {} (this build reads {FORMAT})", state.format),
            });
        }
        Ok(state)
    }

    fn write_aliases(&self, state: &AliasState) -> Result<(), RegistryError> {
        let path = self.root.join(ALIASES);
        let mut bytes = serde_json::to_vec_pretty(state).map_err(|e| RegistryError::BadState {
            path: path.display().to_string(),
            problem: e.to_string(),
        })?;
        bytes.push(b'\n');
        crate::fsutil::write_atomic(&path, &bytes).map_err(self.io(&path))
    }

    /// Removes version directories a killed writer left before renaming them into place.
    fn sweep_temporaries(&self) -> Result<(), RegistryError> {
        let dir = self.versions_dir();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let p = entry.path();
                tracing::debug!(path = %p.display(), "removing an abandoned partial version");
                std::fs::remove_dir_all(&p).map_err(self.io(&p))?;
            }
        }
        Ok(())
    }

    fn register_locked(
        &self,
        model: &[u8],
        registration: &Registration,
    ) -> Result<Registered, RegistryError> {
        self.sweep_temporaries()?;
        let sha256 = sha256_hex(model);
        let numbers = self.version_numbers()?;
        for &v in numbers.iter().rev() {
            let record = self.read_record(v)?;
            if record.sha256 == sha256 {
                return Ok(Registered {
                    record,
                    created: false,
                });
            }
        }
        if let Some(parent) = registration.lineage.parent_version
            && !numbers.contains(&parent)
        {
            return Err(RegistryError::NoVersion {
                version: parent,
                registry: self.describe(),
            });
        }
        let version = numbers.last().map_or(1, |v| v + 1);
        let record = VersionRecord {
            version,
            sha256,
            size: model.len() as u64,
            registered_at: jiff::Timestamp::now(),
            model_id: registration.model_id.clone(),
            schema_hash: registration.schema_hash.clone(),
            lineage: registration.lineage.clone(),
            metrics: registration.metrics.clone(),
            params: registration.params.clone(),
            description: registration.description.clone(),
            image: None,
        };
        let versions = self.versions_dir();
        std::fs::create_dir_all(&versions).map_err(self.io(&versions))?;
        let tmp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempdir_in(&versions)
            .map_err(self.io(&versions))?;
        write_synced(&tmp.path().join(MODEL), model).map_err(self.io(tmp.path()))?;
        failpoint_pause();
        let mut json = serde_json::to_vec_pretty(&StoredRecord {
            format: FORMAT,
            record: record.clone(),
        })
        .map_err(|e| self.corrupt(version, &e.to_string()))?;
        json.push(b'\n');
        write_synced(&tmp.path().join(RECORD), &json).map_err(self.io(tmp.path()))?;
        crate::fsutil::sync_dir(tmp.path()).map_err(self.io(tmp.path()))?;
        let final_dir = self.version_dir(version);
        // `keep` disarms the temp dir's cleanup: from here the rename decides.
        let tmp_path = tmp.keep();
        std::fs::rename(&tmp_path, &final_dir).map_err(self.io(&final_dir))?;
        crate::fsutil::sync_dir(&versions).map_err(self.io(&versions))?;
        Ok(Registered {
            record,
            created: true,
        })
    }

    fn move_alias_locked(
        &self,
        alias: &str,
        to: u64,
        action: AliasAction,
        run_id: Option<&str>,
    ) -> Result<Moved, RegistryError> {
        // The target must be a complete version: aliases never point at anything else.
        self.read_record(to)?;
        let mut state = self.read_aliases()?;
        let from = state.aliases.get(alias).copied();
        if from == Some(to) && action == AliasAction::Promote {
            return Ok(Moved {
                alias: alias.into(),
                from,
                to,
                changed: false,
            });
        }
        state.aliases.insert(alias.into(), to);
        state.history.push(AliasEvent {
            alias: alias.into(),
            action,
            from,
            to,
            at: jiff::Timestamp::now(),
            run_id: run_id.map(str::to_owned),
        });
        state.format = FORMAT;
        self.write_aliases(&state)?;
        Ok(Moved {
            alias: alias.into(),
            from,
            to,
            changed: true,
        })
    }

    fn fetch_now(&self, version: u64) -> Result<(Vec<u8>, VersionRecord), RegistryError> {
        let record = self.read_record(version)?;
        let path = self.version_dir(version).join(MODEL);
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                self.corrupt(version, "model.bin is missing")
            } else {
                self.io(&path)(e)
            }
        })?;
        verify(&bytes, &record).map_err(|problem| self.corrupt(version, &problem))?;
        Ok((bytes, record))
    }
}

/// Checks model bytes against their record's size and checksum.
pub(crate) fn verify(bytes: &[u8], record: &VersionRecord) -> Result<(), String> {
    if bytes.len() as u64 != record.size {
        return Err(format!(
            "model file has {} bytes, recorded {}",
            bytes.len(),
            record.size
        ));
    }
    let actual = sha256_hex(bytes);
    if actual != record.sha256 {
        return Err(format!(
            "model file SHA-256 {actual} differs from recorded {}",
            record.sha256
        ));
    }
    Ok(())
}

/// Test-only fault injection, owned here rather than in `cli::env` because no user sets it: with
/// this variable set to a number of milliseconds (at most 10 s), a writer pauses between the model
/// file and the record of a half-written version, so the kill tests' SIGKILL reliably lands
/// mid-write however fast the machine is. Unset (always, outside tests): nothing. The one variable
/// a domain module reads itself: passing it down through every writer would put a test hook in
/// the registry's API.
pub const FAILPOINT_PAUSE_MS_VAR: &str = "HEALTH_PREDICT_FAILPOINT_REGISTRY_PAUSE_MS";

fn failpoint_pause() {
    if let Some(ms) = std::env::var(FAILPOINT_PAUSE_MS_VAR)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms.min(10_000)));
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

impl Registry for LocalRegistry {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn register<'a>(
        &'a self,
        model: &'a [u8],
        registration: &'a Registration,
    ) -> BoxFuture<'a, Result<Registered, RegistryError>> {
        async move {
            let _lock = self.lock().await?;
            self.register_locked(model, registration)
        }
        .boxed()
    }

    fn versions(&self) -> BoxFuture<'_, Result<Vec<VersionRecord>, RegistryError>> {
        async move {
            self.version_numbers()?
                .into_iter()
                .map(|v| self.read_record(v))
                .collect()
        }
        .boxed()
    }

    fn record(&self, version: u64) -> BoxFuture<'_, Result<VersionRecord, RegistryError>> {
        async move { self.read_record(version) }.boxed()
    }

    fn fetch(
        &self,
        version: u64,
    ) -> BoxFuture<'_, Result<(Vec<u8>, VersionRecord), RegistryError>> {
        async move { self.fetch_now(version) }.boxed()
    }

    fn aliases(&self) -> BoxFuture<'_, Result<BTreeMap<String, u64>, RegistryError>> {
        async move { Ok(self.read_aliases()?.aliases) }.boxed()
    }

    fn promote<'a>(
        &'a self,
        version: u64,
        alias: &'a str,
        run_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Moved, RegistryError>> {
        async move {
            validate_alias(alias)?;
            let _lock = self.lock().await?;
            self.move_alias_locked(alias, version, AliasAction::Promote, run_id)
        }
        .boxed()
    }

    fn rollback<'a>(
        &'a self,
        alias: &'a str,
        run_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Moved, RegistryError>> {
        async move {
            validate_alias(alias)?;
            let _lock = self.lock().await?;
            let state = self.read_aliases()?;
            let history: Vec<_> = state
                .history
                .into_iter()
                .filter(|e| e.alias == alias)
                .collect();
            let to = rollback_target(alias, &history)?;
            self.move_alias_locked(alias, to, AliasAction::Rollback, run_id)
        }
        .boxed()
    }

    fn set_image<'a>(
        &'a self,
        version: u64,
        image: &'a str,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        async move {
            let _lock = self.lock().await?;
            self.read_record(version)?;
            let path = self.version_dir(version).join(IMAGE);
            let mut json = serde_json::to_vec_pretty(&serde_json::json!({ "image": image }))
                .map_err(|e| self.corrupt(version, &e.to_string()))?;
            json.push(b'\n');
            crate::fsutil::write_atomic(&path, &json).map_err(self.io(&path))?;
            Ok(())
        }
        .boxed()
    }

    fn history<'a>(
        &'a self,
        alias: &'a str,
    ) -> BoxFuture<'a, Result<Vec<AliasEvent>, RegistryError>> {
        async move {
            validate_alias(alias)?;
            Ok(self
                .read_aliases()?
                .history
                .into_iter()
                .filter(|e| e.alias == alias)
                .collect())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{ModelRef, RegistryError};

    fn reg(dir: &Path) -> Box<dyn Registry> {
        Box::new(LocalRegistry::new(dir))
    }

    #[tokio::test]
    async fn versions_are_monotonic_and_registration_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let r = reg(dir.path());
        let a = r
            .register(b"model a", &Registration::default())
            .await
            .unwrap();
        let b = r
            .register(b"model b", &Registration::default())
            .await
            .unwrap();
        assert_eq!((a.record.version, b.record.version), (1, 2));
        assert!(a.created && b.created);
        let again = r
            .register(b"model a", &Registration::default())
            .await
            .unwrap();
        assert!(!again.created);
        assert_eq!(again.record.version, 1);
        assert_eq!(r.versions().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn the_serving_image_is_recorded_per_version_without_touching_the_model() {
        let dir = tempfile::tempdir().unwrap();
        let r = reg(dir.path());
        r.register(b"one", &Registration::default()).await.unwrap();
        assert_eq!(r.record(1).await.unwrap().image, None);
        let image = "127.0.0.1:5000/health-predict@sha256:abc";
        r.set_image(1, image).await.unwrap();
        r.set_image(1, image).await.unwrap();
        let (bytes, record) = r.fetch(1).await.unwrap();
        assert_eq!(bytes, b"one");
        assert_eq!(record.image.as_deref(), Some(image));
        assert!(matches!(
            r.set_image(2, image).await,
            Err(RegistryError::NoVersion { version: 2, .. })
        ));
    }

    #[tokio::test]
    async fn promote_is_idempotent_and_rollback_returns_to_previous() {
        let dir = tempfile::tempdir().unwrap();
        let r = reg(dir.path());
        for m in [&b"one"[..], b"two", b"three"] {
            r.register(m, &Registration::default()).await.unwrap();
        }
        r.promote(1, "production", None).await.unwrap();
        let m = r.promote(2, "production", Some("run-7")).await.unwrap();
        assert_eq!((m.from, m.to, m.changed), (Some(1), 2, true));
        let same = r.promote(2, "production", None).await.unwrap();
        assert!(!same.changed);
        assert_eq!(r.history("production").await.unwrap().len(), 2);
        let back = r.rollback("production", None).await.unwrap();
        assert_eq!((back.from, back.to), (Some(2), 1));
        assert_eq!(r.alias("production").await.unwrap(), Some(1));
        assert!(matches!(
            r.rollback("production", None).await,
            Err(RegistryError::NoPrevious { .. })
        ));
        assert!(matches!(
            r.promote(9, "production", None).await,
            Err(RegistryError::NoVersion { version: 9, .. })
        ));
        let h = r.history("production").await.unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h[1].run_id.as_deref(), Some("run-7"));
        assert_eq!(h[2].action, AliasAction::Rollback);
    }

    #[tokio::test]
    async fn tampered_model_bytes_are_refused_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let r = reg(dir.path());
        r.register(b"pristine", &Registration::default())
            .await
            .unwrap();
        let ok = r.resolve(&ModelRef::Version(1)).await.unwrap();
        assert_eq!(ok.bytes, b"pristine");
        std::fs::write(dir.path().join("versions/1/model.bin"), b"pristinE").unwrap();
        let err = r.resolve(&ModelRef::Version(1)).await.unwrap_err();
        assert!(
            matches!(err, RegistryError::Corrupt { version: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("SHA-256"), "{err}");
    }

    #[tokio::test]
    async fn abandoned_partial_versions_are_invisible_and_swept() {
        let dir = tempfile::tempdir().unwrap();
        let r = reg(dir.path());
        r.register(b"one", &Registration::default()).await.unwrap();
        let partial = dir.path().join("versions/.tmp-killed");
        std::fs::create_dir_all(&partial).unwrap();
        std::fs::write(partial.join("model.bin"), b"half").unwrap();
        assert_eq!(r.versions().await.unwrap().len(), 1);
        let two = r.register(b"two", &Registration::default()).await.unwrap();
        assert_eq!(two.record.version, 2);
        assert!(!partial.exists());
    }

    #[tokio::test]
    async fn unset_alias_and_missing_registry_read_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let r = reg(&dir.path().join("absent"));
        assert!(r.versions().await.unwrap().is_empty());
        assert_eq!(r.alias("production").await.unwrap(), None);
        assert!(matches!(
            r.resolve(&ModelRef::Alias("production".into())).await,
            Err(RegistryError::AliasUnset { .. })
        ));
        assert!(
            !dir.path().join("absent").exists(),
            "readers create nothing"
        );
    }

    #[tokio::test]
    async fn a_held_lock_makes_writers_wait_not_interleave() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalRegistry::new(dir.path());
        let held = local.lock().await.unwrap();
        let writer = {
            let local = local.clone();
            tokio::spawn(async move {
                local
                    .register(b"waits", &Registration::default())
                    .await
                    .map(|r| r.record.version)
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!writer.is_finished(), "the writer must wait for the lock");
        assert!(local.version_numbers().unwrap().is_empty());
        drop(held);
        assert_eq!(writer.await.unwrap().unwrap(), 1);
    }

    #[tokio::test]
    async fn unknown_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(ALIASES),
            br#"{"format":99,"aliases":{},"history":[]}"#,
        )
        .unwrap();
        let r = reg(dir.path());
        assert!(matches!(
            r.aliases().await,
            Err(RegistryError::BadState { .. })
        ));
    }
}
