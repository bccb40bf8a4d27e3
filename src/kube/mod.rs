//! Kubernetes through kube-rs: manifests, deploy (server-side apply), verify (watch and diagnose
//! rollout failures as they happen), rollback, image pull secrets, port-forward and the local
//! cluster CLIs (kind, minikube).
//!
//! A leaf module: it never imports `pipeline`, `cli` or another domain module. Registry
//! credentials for pull secrets come from the caller.

pub mod cluster;
pub mod deploy;
pub(crate) mod error;
pub mod forward;
pub mod manifests;
pub mod pull_secret;
pub mod verify;

pub use deploy::{
    DeployPlan, DeployReport, DeployRequest, RollbackRequest, check_image, deploy, deploy_verified,
    rollback,
};
pub use error::KubeError;
pub use forward::{ForwardHandle, Forwarder, KubeForwarder, forward_service};
pub use pull_secret::{PullSecretRequest, apply_pull_secret};
pub use verify::{VerifyReport, VerifyRequest, verify};

/// The field manager of every write this program makes.
pub const FIELD_MANAGER: &str = "health-predict";

/// A client from the ambient configuration: `KUBECONFIG`/`~/.kube/config`, else in-cluster.
pub async fn client() -> Result<::kube::Client, KubeError> {
    crate::install_crypto_provider();
    ::kube::Client::try_default()
        .await
        .map_err(|e| KubeError::Config(Box::new(e)))
}
