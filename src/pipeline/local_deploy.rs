//! The `local` deploy target and the local API-test step.
//!
//! A local deployment is a serving slot in the state directory (`serving/model.hpm` with
//! `serving/deployed.json`), the file a long-running `health-predict serve --model` points at.
//! Installing keeps the previous model for rollback; verification serves the slot's file on an
//! ephemeral loopback port and checks that `/model-info` reports the candidate's version and
//! checksum — the same check a Kubernetes verify makes through the cluster.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::apitest::{self, ProxyMode, SuiteConfig, SuiteReport};
use crate::model::ModelFile;
use crate::serve::{self, Identity, ModelInfo, ModelSource, ServeConfig, ServerHandle};

const LOOPBACK: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);
const READY: Duration = Duration::from_secs(30);
const GRACE: Duration = Duration::from_secs(5);

/// Stops a server when dropped, so an error or an interruption never leaves it running.
struct Running(Option<ServerHandle>);

impl Running {
    fn handle(&mut self) -> &mut ServerHandle {
        self.0.as_mut().expect("server handle present until stop")
    }

    async fn stop(mut self) {
        if let Some(h) = self.0.take()
            && let Err(e) = h.shutdown(GRACE).await
        {
            tracing::warn!("local server did not stop cleanly: {e}");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.shutdown_token().cancel();
        }
    }
}

/// Serves `model` in-process on 127.0.0.1 (an ephemeral port), runs the API contract suite
/// against it expecting `version`, writes JUnit, and stops the server.
pub async fn api_test(
    model: Arc<ModelFile>,
    version: &str,
    latency_budget_ms: f64,
    junit: &Path,
) -> anyhow::Result<SuiteReport> {
    let mut config = ServeConfig::new(
        LOOPBACK,
        ModelSource::Scorer {
            scorer: model,
            source: "pipeline candidate".into(),
        },
    );
    config.identity = Identity {
        name: Some("health-predict".into()),
        version: Some(version.to_owned()),
        alias: None,
    };
    let mut server = Running(Some(serve::start(config).await?));
    server.handle().wait_ready(READY).await?;
    let mut suite = SuiteConfig::new(server.handle().base_url());
    suite.expect_version = Some(version.to_owned());
    suite.latency_budget = Duration::from_secs_f64(latency_budget_ms / 1000.0);
    let report = apitest::run_suite(&suite).await;
    server.stop().await;
    let report = report?;
    apitest::write_junit(&report, junit)?;
    Ok(report)
}

/// What is deployed in a slot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployed {
    pub version: u64,
    pub run_id: String,
    pub checksum: String,
    pub deployed_at: String,
}

/// A local serving slot.
#[derive(Debug, Clone)]
pub struct Slot {
    dir: PathBuf,
}

impl Slot {
    pub fn new(state_dir: &Path) -> Slot {
        Slot {
            dir: state_dir.join("serving"),
        }
    }

    /// The model file a `serve --model` process reads.
    pub fn model_path(&self) -> PathBuf {
        self.dir.join("model.hpm")
    }

    fn record_path(&self) -> PathBuf {
        self.dir.join("deployed.json")
    }

    /// What the slot serves now.
    pub fn current(&self) -> anyhow::Result<Option<Deployed>> {
        read_record(&self.record_path())
    }

    /// Installs a model file, keeping the current one as the rollback target.
    pub fn install(&self, model: &Path, version: u64, run_id: &str) -> anyhow::Result<String> {
        let bytes =
            std::fs::read(model).with_context(|| format!("cannot read {}", model.display()))?;
        let parsed = ModelFile::from_bytes(&bytes)?;
        let current = self.current()?;
        if let Some(c) = &current {
            if c.version == version && c.checksum == parsed.meta().checksum {
                return Ok(format!(
                    "version {version} already installed in {}",
                    self.dir.display()
                ));
            }
            let prev = std::fs::read(self.model_path())?;
            crate::fsutil::write_atomic(&self.dir.join("previous.hpm"), &prev)?;
            crate::fsutil::write_atomic(
                &self.dir.join("previous.json"),
                &serde_json::to_vec_pretty(c)?,
            )?;
        }
        crate::fsutil::write_atomic(&self.model_path(), &bytes)?;
        let record = Deployed {
            version,
            run_id: run_id.to_owned(),
            checksum: parsed.meta().checksum.clone(),
            deployed_at: jiff::Timestamp::now().to_string(),
        };
        crate::fsutil::write_atomic(&self.record_path(), &serde_json::to_vec_pretty(&record)?)?;
        Ok(format!(
            "installed version {version} in {}{}",
            self.dir.display(),
            current.map_or(String::new(), |c| format!(
                " (previous: version {})",
                c.version
            ))
        ))
    }

    /// Serves the slot's file and checks `/model-info` over HTTP: the version, and the model
    /// checksum the server verified on load.
    pub async fn verify(&self, version: u64, checksum: &str) -> anyhow::Result<String> {
        let mut config = ServeConfig::new(LOOPBACK, ModelSource::File(self.model_path()));
        config.identity = Identity {
            name: Some("health-predict".into()),
            version: Some(version.to_string()),
            alias: Some(super::record::PRODUCTION.into()),
        };
        let mut server = Running(Some(serve::start(config).await?));
        let ready = server.handle().wait_ready(READY).await;
        let base = server.handle().base_url();
        let info = match ready {
            Ok(_) => fetch_info(&base).await,
            Err(e) => Err(e.into()),
        };
        server.stop().await;
        let info = info?;
        if info.version != version.to_string() {
            bail!(
                "{base}/model-info reports version {}, expected {version}",
                info.version
            );
        }
        if info.checksum.as_deref() != Some(checksum) {
            bail!(
                "{base}/model-info reports checksum {}, expected {checksum}",
                info.checksum.as_deref().unwrap_or("(none)")
            );
        }
        Ok(format!(
            "{base}/model-info serves version {version} (checksum verified)"
        ))
    }

    /// Puts the previous model back (after a failed verify).
    pub fn restore_previous(&self) -> anyhow::Result<String> {
        let prev_model = self.dir.join("previous.hpm");
        match read_record(&self.dir.join("previous.json"))? {
            Some(prev) if prev_model.exists() => {
                let bytes = std::fs::read(&prev_model)?;
                crate::fsutil::write_atomic(&self.model_path(), &bytes)?;
                crate::fsutil::write_atomic(
                    &self.record_path(),
                    &serde_json::to_vec_pretty(&prev)?,
                )?;
                Ok(format!("version {} restored", prev.version))
            }
            _ => {
                for p in [self.model_path(), self.record_path()] {
                    if p.exists() {
                        std::fs::remove_file(&p)?;
                    }
                }
                Ok("no previous deployment: slot emptied".into())
            }
        }
    }
}

fn read_record(path: &Path) -> anyhow::Result<Option<Deployed>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| {
            format!("{} is not a deployment record", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn fetch_info(base: &str) -> anyhow::Result<ModelInfo> {
    let client = apitest::client(ProxyMode::Direct, Duration::from_secs(10))?;
    let url = format!("{base}/model-info");
    let resp = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    if !resp.status().is_success() {
        bail!("GET {url} answered {}", resp.status());
    }
    resp.json::<ModelInfo>()
        .await
        .with_context(|| format!("GET {url}: not a model-info document"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_without_previous_empties_the_slot() {
        let dir = tempfile::tempdir().unwrap();
        let slot = Slot::new(dir.path());
        std::fs::create_dir_all(dir.path().join("serving")).unwrap();
        std::fs::write(slot.model_path(), b"x").unwrap();
        assert_eq!(
            slot.restore_previous().unwrap(),
            "no previous deployment: slot emptied"
        );
        assert!(!slot.model_path().exists());
        assert!(slot.current().unwrap().is_none());
    }
}
