//! OCI images without a Docker daemon: build the serving image in memory ([`build()`]), write it
//! as an OCI image layout or a tar of one (`layout`), and push it with the distribution API
//! (`push`). The tar writer ([`tar`]) is deterministic, so equal inputs give equal digests.
//!
//! Used in-process by the pipeline and by `image push`/`image test`. It must not import `aws`,
//! `kube` or `pipeline`: registry credentials (ECR's included) come in as a [`RegistryLogin`].

pub(crate) mod build;
pub(crate) mod layout;
pub(crate) mod push;
pub mod tar;

use sha2::{Digest, Sha256};

use crate::exit::{Diagnose, Exit};

pub use build::{Base, Blob, BuildSpec, Image, build, shared_libraries};
pub use layout::{ImageNames, write_archive, write_layout};
pub use push::{PushReport, Pusher, RegistryLogin, Target, parse_challenge};

pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const DOCKER_LIST_TYPE: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// Where the binary lives in the image.
pub const BINARY_PATH: &str = "usr/local/bin/health-predict";
/// Where the CA bundle goes (the path rustls-native-certs and OpenSSL look at on Debian).
pub const CA_BUNDLE_PATH: &str = "etc/ssl/certs/ca-certificates.crt";
/// Where the model lives in the image (file name kept).
pub const MODEL_DIR: &str = "model";
/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Errors of image building, writing and pushing. Messages never contain a password or token.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("invalid setting: {0}")]
    Invalid(String),
    #[error("registry {registry}: {operation} failed after {attempts} attempt(s): {message}")]
    Registry {
        registry: String,
        operation: String,
        attempts: u32,
        message: String,
    },
    #[error("registry {registry} rejected the credentials for {operation} (HTTP {status})")]
    RegistryAuth {
        registry: String,
        operation: String,
        status: u16,
    },
    #[error("image: {0}")]
    Image(String),
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Diagnose for OciError {
    fn exit(&self) -> Exit {
        match self {
            OciError::Invalid(_) | OciError::RegistryAuth { .. } => Exit::Usage,
            OciError::Image(_) => Exit::InvalidInput,
            OciError::Write { .. } => Exit::Failure,
            OciError::Registry { .. } => Exit::Infra,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            OciError::Invalid(_) => "see --help for the accepted values".into(),
            OciError::Registry { .. } => "check the registry address (--registry) and that it speaks the OCI distribution API (/v2/)".into(),
            OciError::RegistryAuth { .. } => "use --ecr to log in with an ECR token, or set HEALTH_PREDICT_REGISTRY_USER/HEALTH_PREDICT_REGISTRY_PASSWORD; ECR tokens expire after 12 hours".into(),
            OciError::Image(_) => "--binary must be the health-predict executable, --model a model file, --base an OCI image layout directory or `none`".into(),
            OciError::Write { .. } => "check the directory exists and is writable, and that the disk has room".into(),
        })
    }
}
