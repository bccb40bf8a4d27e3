//! Kubernetes through kube-rs: manifests, deploy (server-side apply), verify (watch and diagnose
//! rollout failures as they happen), rollback, image pull secrets, port-forward and the local
//! cluster CLIs (kind, minikube).
//!
//! A leaf module: it never imports `pipeline`, `cli` or another domain module. Registry
//! credentials for pull secrets come from the caller.

pub mod error;
pub mod manifests;
pub mod pull_secret;

pub use error::KubeError;
pub use pull_secret::{PullSecretRequest, apply_pull_secret};

/// The field manager of every write this program makes.
pub const FIELD_MANAGER: &str = "health-predict";

/// A client from the ambient configuration: `KUBECONFIG`/`~/.kube/config`, else in-cluster.
pub async fn client() -> Result<::kube::Client, KubeError> {
    crate::install_crypto_provider();
    ::kube::Client::try_default()
        .await
        .map_err(|e| KubeError::Config(Box::new(e)))
}
