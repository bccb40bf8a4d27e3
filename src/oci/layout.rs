//! An image on disk: an OCI image layout directory (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`) or the same files as one tar (an "OCI archive", what
//! `kind load image-archive`, `podman load` and `docker load` read).
//!
//! Names: each name becomes one `index.json` entry for the image's manifest, annotated with
//! `io.containerd.image.name` (the full name containerd's importer uses as is) and, for a tagged
//! name, `org.opencontainers.image.ref.name` (the tag, what the OCI spec and podman read). A name
//! may be a digest reference (`repo@sha256:...`): containerd's CRI resolves a Pod's
//! `image: repo@sha256:...` only through an image of exactly that name, and `ctr import
//! --digests` names digest images after its own `import-<date>` prefix, not the repository.

use std::path::Path;

use serde_json::{Value, json};

use super::build::Image;
use super::tar::TarBuilder;
use super::{INDEX_TYPE, OciError};

/// The names an image is written under (full references: `docker.io/health-predict/api:v3`).
#[derive(Debug, Clone, Default)]
pub struct ImageNames(pub Vec<String>);

impl ImageNames {
    /// A tagged name plus the digest reference of the same repository, for kind/containerd.
    pub fn tag_and_digest(repository: &str, tag: &str, image: &Image) -> ImageNames {
        ImageNames(vec![
            format!("{repository}:{tag}"),
            format!("{repository}@{}", image.manifest.digest),
        ])
    }
}

/// `index.json` for `image` under `names` (one entry per name; none: one unnamed entry).
pub fn index(image: &Image, names: &ImageNames) -> Value {
    let platform = json!({
        "os": "linux",
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
    });
    let entry = |name: Option<&str>| {
        let mut d = image.manifest.descriptor();
        d["platform"] = platform.clone();
        if let Some(n) = name {
            let mut ann = json!({ "io.containerd.image.name": n });
            if !n.contains('@')
                && let Some((_, tag)) = n.rsplit('/').next().unwrap_or(n).split_once(':')
            {
                ann["org.opencontainers.image.ref.name"] = json!(tag);
            }
            d["annotations"] = ann;
        }
        d
    };
    let manifests: Vec<Value> = if names.0.is_empty() {
        vec![entry(None)]
    } else {
        names.0.iter().map(|n| entry(Some(n))).collect()
    };
    json!({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": manifests})
}

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

fn files(image: &Image, names: &ImageNames) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![
        ("oci-layout".to_owned(), OCI_LAYOUT.to_vec()),
        (
            "index.json".to_owned(),
            serde_json::to_vec(&index(image, names)).unwrap_or_default(),
        ),
    ];
    let mut seen = Vec::new();
    for b in image.layers.iter().chain([&image.config, &image.manifest]) {
        if seen.contains(&b.digest) {
            continue;
        }
        seen.push(b.digest.clone());
        out.push((
            format!("blobs/sha256/{}", b.digest.trim_start_matches("sha256:")),
            b.bytes.to_vec(),
        ));
    }
    out
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> OciError + '_ {
    move |source| OciError::Write {
        path: path.display().to_string(),
        source,
    }
}

/// Writes an OCI image layout directory (created; existing blobs are overwritten with the same
/// bytes, `index.json` last and atomically, so a reader never sees an index without its blobs).
pub fn write_layout(dir: &Path, image: &Image, names: &ImageNames) -> Result<(), OciError> {
    std::fs::create_dir_all(dir.join("blobs/sha256")).map_err(write_err(dir))?;
    let mut index = None;
    for (name, bytes) in files(image, names) {
        if name == "index.json" {
            index = Some(bytes);
            continue;
        }
        let p = dir.join(&name);
        crate::fsutil::write_atomic(&p, &bytes).map_err(write_err(&p))?;
    }
    let p = dir.join("index.json");
    crate::fsutil::write_atomic(&p, &index.unwrap_or_default()).map_err(write_err(&p))
}

/// The OCI layout as one deterministic tar.
pub fn archive(image: &Image, names: &ImageNames) -> Vec<u8> {
    let mut tar = TarBuilder::default();
    for (name, bytes) in files(image, names) {
        tar.file(&name, 0o644, &bytes);
    }
    tar.finish()
}

/// Writes `archive` to `path` atomically.
pub fn write_archive(path: &Path, image: &Image, names: &ImageNames) -> Result<u64, OciError> {
    let bytes = archive(image, names);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(write_err(parent))?;
    }
    crate::fsutil::write_atomic(path, &bytes).map_err(write_err(path))?;
    Ok(bytes.len() as u64)
}

/// Tars an OCI layout directory into `out` with a fresh `index.json` that names only its
/// linux image (`localhost/health-predict-test:<digest prefix>`); returns its manifest and config
/// digests, read from the blobs and checked against them.
pub fn archive_dir(dir: &Path, out: &Path) -> Result<(String, String), OciError> {
    let bad = |m: String| OciError::Image(format!("layout {}: {m}", dir.display()));
    let index: Value = std::fs::read(dir.join("index.json"))
        .map_err(|e| bad(format!("cannot read index.json: {e}")))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| bad(format!("index.json: {e}"))))?;
    let list = index["manifests"]
        .as_array()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| bad("index.json lists no manifests".into()))?;
    let desc = list
        .iter()
        .find(|m| m["platform"]["os"] == "linux")
        .unwrap_or(&list[0])
        .clone();
    let manifest_digest = desc["digest"]
        .as_str()
        .ok_or_else(|| bad("a descriptor without a digest".into()))?
        .to_owned();
    let blob = |digest: &str| -> Result<Vec<u8>, OciError> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| bad(format!("unsupported digest {digest:?}")))?;
        let bytes = std::fs::read(dir.join("blobs/sha256").join(hex))
            .map_err(|e| bad(format!("blob {digest}: {e}")))?;
        if super::sha256_digest(&bytes) != digest {
            return Err(bad(format!("blob {digest} does not match its digest")));
        }
        Ok(bytes)
    };
    let manifest: Value = serde_json::from_slice(&blob(&manifest_digest)?)
        .map_err(|e| bad(format!("manifest: {e}")))?;
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .ok_or_else(|| bad("the manifest has no config (an index? pass its image)".into()))?
        .to_owned();
    let mut tar = TarBuilder::default();
    tar.file("oci-layout", 0o644, OCI_LAYOUT);
    let mut named = desc.clone();
    named["annotations"] = json!({
        "io.containerd.image.name": format!("localhost/health-predict-test:{}", &manifest_digest[7..19]),
        "org.opencontainers.image.ref.name": &manifest_digest[7..19],
    });
    let new_index = json!({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [named]});
    tar.file(
        "index.json",
        0o644,
        &serde_json::to_vec(&new_index).unwrap_or_default(),
    );
    let mut digests = vec![manifest_digest.clone(), config_digest.clone()];
    for l in manifest["layers"].as_array().into_iter().flatten() {
        if let Some(d) = l["digest"].as_str() {
            digests.push(d.to_owned());
        }
    }
    for d in digests {
        let bytes = blob(&d)?;
        tar.file(&format!("blobs/sha256/{}", &d[7..]), 0o644, &bytes);
    }
    crate::fsutil::write_atomic(out, &tar.finish()).map_err(write_err(out))?;
    Ok((manifest_digest, config_digest))
}
