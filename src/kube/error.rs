//! The kube module's error type: what failed, its exit class, and what to change.

use crate::exit::{Diagnose, Exit};
use crate::retry::Decision;

/// Errors at the kube module's boundary.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// No kubeconfig or in-cluster configuration could be loaded.
    #[error("could not configure a Kubernetes client")]
    Config(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An API call failed (after retries for transient failures).
    #[error("{action} failed")]
    Api {
        action: String,
        #[source]
        source: ::kube::Error,
    },
    /// An image reference that would not pin what runs.
    #[error("image reference `{image}` {problem}")]
    ImageRef { image: String, problem: String },
    /// A bundled or given manifest is invalid.
    #[error("manifest {name}: {problem}")]
    Manifest { name: String, problem: String },
    /// The object an operation needs does not exist.
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    /// Rollback found no earlier revision.
    #[error("Deployment {namespace}/{name} has no previous revision to roll back to")]
    NoPreviousRevision { namespace: String, name: String },
    /// A port-forward could not be set up.
    #[error("port-forward to {target} failed: {problem}")]
    Forward { target: String, problem: String },
    /// A cluster CLI (kind, minikube) failed.
    #[error("`{command}` failed: {problem}")]
    Cluster { command: String, problem: String },
}

impl KubeError {
    pub(crate) fn api(action: impl Into<String>, source: ::kube::Error) -> KubeError {
        KubeError::Api {
            action: action.into(),
            source,
        }
    }
}

/// The HTTP status code of a kube error the API server answered.
pub fn status_code(e: &::kube::Error) -> Option<u16> {
    match e {
        ::kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Whether a failed API call is worth retrying: throttling, server errors, connection trouble.
pub fn decision(e: &::kube::Error) -> Decision {
    match e {
        ::kube::Error::Api(s) if matches!(s.code, 429 | 500 | 502 | 503 | 504) => Decision::Retry,
        ::kube::Error::Api(_) => Decision::Stop,
        ::kube::Error::HyperError(_) | ::kube::Error::Service(_) => Decision::Retry,
        _ => Decision::Stop,
    }
}

impl Diagnose for KubeError {
    fn exit(&self) -> Exit {
        match self {
            KubeError::ImageRef { .. } => Exit::Usage,
            KubeError::Config(_) => Exit::Usage,
            KubeError::Manifest { .. } => Exit::InvalidInput,
            KubeError::NoPreviousRevision { .. } => Exit::DeployFailed,
            _ => Exit::Infra,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            KubeError::Config(_) => {
                "set KUBECONFIG (or run inside a pod with a service account); `kubectl config current-context` shows what is used".into()
            }
            KubeError::ImageRef { .. } => {
                "pass --image REGISTRY/REPO@sha256:DIGEST or a unique tag such as the commit SHA".into()
            }
            KubeError::Manifest { .. } => "fix the manifest in k8s/ (see docs/kubernetes.md)".into(),
            KubeError::NotFound { kind, .. } => {
                format!("deploy first (`health-predict deploy --image ...`) or pass the right --namespace / name for the {kind}")
            }
            KubeError::NoPreviousRevision { .. } => {
                "there is nothing to roll back to: this is the Deployment's first revision".into()
            }
            KubeError::Forward { .. } => {
                "check that the Service has ready endpoints (`health-predict verify`) and that your credentials may create pods/portforward".into()
            }
            KubeError::Cluster { .. } => {
                "run `health-predict cluster doctor`; cluster logs are exported next to the failure".into()
            }
            KubeError::Api { source, .. } => match status_code(source) {
                Some(401) => "the cluster rejected the credentials: refresh the kubeconfig's token".into(),
                Some(403) => "RBAC denied the call: grant the service account the verbs in k8s/rbac.yaml".into(),
                Some(404) => "the namespace or object does not exist: check --namespace".into(),
                Some(409) => "another writer changed the object at the same time: run the command again".into(),
                Some(422) => "the API server rejected the object as invalid: see the message above".into(),
                Some(_) => "the API server failed; retried with backoff: check the cluster's health".into(),
                None => "the API server could not be reached: check the kubeconfig's server address and the network".into(),
            },
        })
    }
}
