//! The model file format: one JSON header line naming the format, its version and the SHA-256 of
//! the body, then the body (JSON: meta, preprocessing, learner). The checksum is verified before
//! the body is parsed, so a flipped byte is reported as corruption, not as a confusing parse error.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{FeatureSpec, Learner, ModelError, ModelFile, ModelMeta};

/// The format name in every header.
pub const FORMAT: &str = "health-predict-model";
/// The body layout version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    format_version: u32,
    checksum: String,
}

#[derive(Serialize)]
struct BodyRef<'a> {
    meta: &'a ModelMeta,
    features: &'a FeatureSpec,
    learner: &'a Learner,
}

#[derive(Deserialize)]
struct Body {
    meta: ModelMeta,
    features: FeatureSpec,
    learner: Learner,
}

/// The body bytes (meta without its checksum) and their SHA-256 hex.
pub(super) fn body(model: &ModelFile) -> (Vec<u8>, String) {
    let meta = ModelMeta {
        checksum: String::new(),
        ..model.meta.clone()
    };
    let bytes = serde_json::to_vec(&BodyRef {
        meta: &meta,
        features: &model.features,
        learner: &model.learner,
    })
    .unwrap_or_default();
    let sum = hex::encode(Sha256::digest(&bytes));
    (bytes, sum)
}

/// The whole file and its checksum.
pub(super) fn encode(model: &ModelFile) -> (Vec<u8>, String) {
    let (body, sum) = body(model);
    let header = serde_json::to_string(&Header {
        format: FORMAT.to_owned(),
        format_version: FORMAT_VERSION,
        checksum: format!("sha256:{sum}"),
    })
    .unwrap_or_default();
    let mut out = Vec::with_capacity(header.len() + 1 + body.len() + 1);
    out.extend_from_slice(header.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(&body);
    out.push(b'\n');
    (out, sum)
}

pub(super) fn decode(bytes: &[u8], source: &str) -> Result<ModelFile, ModelError> {
    let not_a_model = |why: &str| ModelError::NotAModel {
        source_name: source.to_owned(),
        why: why.to_owned(),
    };
    if bytes.is_empty() {
        return Err(not_a_model("it is empty"));
    }
    let Some(nl) = bytes.iter().position(|&b| b == b'\n') else {
        return Err(not_a_model("no header line"));
    };
    let header: Header = serde_json::from_slice(&bytes[..nl])
        .map_err(|_| not_a_model("the first line is not a model file header"))?;
    if header.format != FORMAT {
        return Err(not_a_model(&format!(
            "the header names format `{}`, expected `{FORMAT}`",
            header.format
        )));
    }
    if header.format_version != FORMAT_VERSION {
        return Err(ModelError::Version {
            source_name: source.to_owned(),
            found: header.format_version,
        });
    }
    let expected = header
        .checksum
        .strip_prefix("sha256:")
        .ok_or_else(|| not_a_model("the header's checksum is not `sha256:<hex>`"))?
        .to_owned();
    let mut body = &bytes[nl + 1..];
    if let Some(stripped) = body.strip_suffix(b"\n") {
        body = stripped;
    }
    let actual = hex::encode(Sha256::digest(body));
    if actual != expected {
        return Err(ModelError::Checksum {
            source_name: source.to_owned(),
            expected,
            actual,
        });
    }
    let parsed: Body = serde_json::from_slice(body).map_err(|e| ModelError::Malformed {
        source_name: source.to_owned(),
        why: e.to_string(),
    })?;
    let mut meta = parsed.meta;
    meta.checksum = actual;
    if meta.feature_names.len() != parsed.features.len() {
        return Err(ModelError::Malformed {
            source_name: source.to_owned(),
            why: "feature names and preprocessing disagree".into(),
        });
    }
    Ok(ModelFile {
        meta,
        features: parsed.features,
        learner: parsed.learner,
    })
}
