//! Building the serving image in memory: base (an OCI layout or scratch) + one layer with the
//! binary, the model and (for scratch) the binary's shared libraries as `ldd` lists them.
//! Deterministic: the same inputs give the same manifest digest.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde_json::{Value, json};

use super::tar::TarBuilder;
use super::{
    BINARY_PATH, CA_BUNDLE_PATH, CONFIG_TYPE, DOCKER_LIST_TYPE, INDEX_TYPE, LAYER_TYPE,
    MANIFEST_TYPE, MODEL_DIR, OciError, sha256_digest,
};

/// What the image is made of.
#[derive(Debug, Clone)]
pub enum Base {
    /// Scratch: the layer carries the binary, its shared libraries (if any) and the model.
    None,
    /// An OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/...`).
    Layout(PathBuf),
}

impl std::str::FromStr for Base {
    type Err = String;
    fn from_str(s: &str) -> Result<Base, String> {
        Ok(if s == "none" || s == "scratch" {
            Base::None
        } else {
            Base::Layout(PathBuf::from(s))
        })
    }
}

/// A request to build the serving image.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    pub binary: PathBuf,
    pub model: PathBuf,
    pub base: Base,
    /// Extra arguments after `serve --model <path>` (e.g. `--host 0.0.0.0`).
    pub serve_args: Vec<String>,
    /// The container port to declare.
    pub port: Option<u16>,
    /// A CA bundle to add at `etc/ssl/certs/ca-certificates.crt` (a scratch image has none, and
    /// the in-cluster ECR refresher calls STS and ECR over TLS).
    pub ca_bundle: Option<PathBuf>,
}

/// A content-addressed blob.
#[derive(Debug, Clone)]
pub struct Blob {
    pub media_type: String,
    pub digest: String,
    pub bytes: Bytes,
}

impl Blob {
    pub fn new(media_type: &str, bytes: impl Into<Bytes>) -> Blob {
        let bytes = bytes.into();
        Blob {
            media_type: media_type.into(),
            digest: sha256_digest(&bytes),
            bytes,
        }
    }

    pub(crate) fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

/// A built image, ready to push.
#[derive(Debug, Clone)]
pub struct Image {
    /// Base layers first, ours last.
    pub layers: Vec<Blob>,
    pub config: Blob,
    pub manifest: Blob,
    /// Files in our layer (paths inside the image).
    pub files: Vec<String>,
}

/// Builds the image in memory. Deterministic: the same inputs give the same digest.
pub fn build(spec: &BuildSpec) -> Result<Image, OciError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| OciError::Image(format!("cannot read {}: {e}", p.display())))
    };
    let binary = read(&spec.binary)?;
    if !binary.starts_with(b"\x7fELF") {
        return Err(OciError::Image(format!(
            "{} is not an ELF executable",
            spec.binary.display()
        )));
    }
    let model = read(&spec.model)?;
    let model_name = spec
        .model
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| OciError::Image("the model path has no file name".into()))?;
    let model_path = format!("{MODEL_DIR}/{model_name}");

    let mut tar = TarBuilder::default();
    tar.file(BINARY_PATH, 0o755, &binary);
    tar.file(&model_path, 0o644, &model);
    if matches!(spec.base, Base::None) {
        for lib in shared_libraries(&spec.binary)? {
            let bytes = read(&lib)?;
            let inside = lib.to_string_lossy().trim_start_matches('/').to_owned();
            tar.file(&inside, 0o755, &bytes);
        }
    }
    if let Some(ca) = &spec.ca_bundle {
        tar.file(CA_BUNDLE_PATH, 0o644, &read(ca)?);
    }
    let files = tar.files.clone();
    let tar = tar.finish();
    let diff_id = sha256_digest(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar)
        .and_then(|_| gz.flush())
        .map_err(|e| OciError::Image(format!("compressing the layer: {e}")))?;
    let gz = gz
        .finish()
        .map_err(|e| OciError::Image(format!("compressing the layer: {e}")))?;
    let ours = Blob::new(LAYER_TYPE, gz);

    let (mut layers, mut config) = match &spec.base {
        Base::None => (
            Vec::new(),
            json!({
                "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": []},
                "history": [],
            }),
        ),
        Base::Layout(dir) => read_layout(dir)?,
    };
    let entry = format!("/{BINARY_PATH}");
    let mut cmd = vec![
        entry.clone(),
        "serve".into(),
        "--model".into(),
        format!("/{model_path}"),
    ];
    cmd.extend(spec.serve_args.iter().cloned());
    {
        let c = config
            .as_object_mut()
            .ok_or_else(|| OciError::Image("the base image config is not an object".into()))?;
        let cfg = c.entry("config").or_insert_with(|| json!({}));
        if !cfg.is_object() {
            *cfg = json!({});
        }
        cfg["Entrypoint"] = json!(cmd);
        cfg["Cmd"] = Value::Null;
        let mut env: Vec<Value> = cfg
            .get("Env")
            .and_then(|e| e.as_array())
            .cloned()
            .unwrap_or_default();
        env.retain(|e| {
            e.as_str()
                .is_none_or(|s| !s.starts_with("HEALTH_PREDICT_MODEL="))
        });
        env.push(json!(format!("HEALTH_PREDICT_MODEL=/{model_path}")));
        if !env
            .iter()
            .any(|e| e.as_str().is_some_and(|s| s.starts_with("PATH=")))
        {
            env.push(json!(
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            ));
        }
        cfg["Env"] = json!(env);
        if let Some(port) = spec.port {
            cfg["ExposedPorts"] = json!({ format!("{port}/tcp"): {} });
        }
        let labels = cfg
            .as_object_mut()
            .map(|o| o.entry("Labels").or_insert_with(|| json!({})));
        if let Some(Value::Object(l)) = labels {
            l.insert(
                "org.opencontainers.image.title".into(),
                json!("health-predict"),
            );
            l.insert(
                "org.opencontainers.image.version".into(),
                json!(crate::VERSION),
            );
        }
        let rootfs = c
            .entry("rootfs")
            .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
        match rootfs.get_mut("diff_ids").and_then(|d| d.as_array_mut()) {
            Some(ids) => ids.push(json!(diff_id)),
            None => rootfs["diff_ids"] = json!([diff_id]),
        }
        let history = c.entry("history").or_insert_with(|| json!([]));
        if let Some(h) = history.as_array_mut() {
            h.push(json!({
                "created_by": format!("health-predict image push (binary + {model_name})"),
                "comment": "health-predict serving layer",
            }));
        }
    }
    layers.push(ours);
    assemble(layers, &config, files)
}

/// Config and manifest blobs for `layers` under `config`.
fn assemble(layers: Vec<Blob>, config: &Value, files: Vec<String>) -> Result<Image, OciError> {
    let config = Blob::new(
        CONFIG_TYPE,
        serde_json::to_vec(config).map_err(|e| OciError::Image(e.to_string()))?,
    );
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": config.descriptor(),
        "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        "annotations": {"org.opencontainers.image.title": "health-predict"},
    });
    let manifest = Blob::new(
        MANIFEST_TYPE,
        serde_json::to_vec(&manifest).map_err(|e| OciError::Image(e.to_string()))?,
    );
    Ok(Image {
        layers,
        config,
        manifest,
        files,
    })
}

impl Image {
    fn config_value(&self) -> Result<Value, OciError> {
        serde_json::from_slice(&self.config.bytes)
            .map_err(|e| OciError::Image(format!("config: {e}")))
    }

    /// A copy with its config changed by `f` (e.g. another entrypoint); new digests.
    pub fn with_config(&self, f: impl FnOnce(&mut Value)) -> Result<Image, OciError> {
        let mut config = self.config_value()?;
        f(&mut config);
        assemble(self.layers.clone(), &config, self.files.clone())
    }

    /// A copy with one more layer on top, from an uncompressed tar (OCI whiteouts, `.wh.NAME`,
    /// delete a lower layer's file); new digests.
    pub fn with_layer(&self, tar: &[u8]) -> Result<Image, OciError> {
        let mut config = self.config_value()?;
        let diff_id = sha256_digest(tar);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(tar)
            .map_err(|e| OciError::Image(format!("compressing the layer: {e}")))?;
        let gz = gz
            .finish()
            .map_err(|e| OciError::Image(format!("compressing the layer: {e}")))?;
        match config["rootfs"]["diff_ids"].as_array_mut() {
            Some(ids) => ids.push(json!(diff_id)),
            None => config["rootfs"] = json!({"type": "layers", "diff_ids": [diff_id]}),
        }
        let mut layers = self.layers.clone();
        layers.push(Blob::new(LAYER_TYPE, gz));
        assemble(layers, &config, self.files.clone())
    }
}

/// The dynamic loader and shared libraries `ldd` lists for a binary; empty when it is static.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, OciError> {
    let out = std::process::Command::new("ldd").arg(binary).output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            return Err(OciError::Image(format!(
                "cannot run ldd to find the shared libraries of {} ({e}); use a static (musl) build or --base with a libc",
                binary.display()
            )));
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("statically linked") {
        // `ldd` exits non-zero for "not a dynamic executable": nothing to add.
        return Ok(Vec::new());
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.trim().split(' ').next().unwrap_or(""),
            None => line.split(' ').next().unwrap_or(""),
        };
        if path.starts_with('/') {
            let p = PathBuf::from(path);
            if !libs.contains(&p) {
                libs.push(p);
            }
        }
    }
    Ok(libs)
}

/// Reads an OCI image layout: the base layers and config of its linux/amd64 (or only) image.
fn read_layout(dir: &Path) -> Result<(Vec<Blob>, Value), OciError> {
    let bad = |m: String| OciError::Image(format!("base layout {}: {m}", dir.display()));
    let blob = |digest: &str| -> Result<Vec<u8>, OciError> {
        let hexpart = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| bad(format!("unsupported digest {digest:?}")))?;
        let p = dir.join("blobs/sha256").join(hexpart);
        let bytes =
            std::fs::read(&p).map_err(|e| bad(format!("cannot read {}: {e}", p.display())))?;
        if sha256_digest(&bytes) != digest {
            return Err(bad(format!("blob {digest} does not match its digest")));
        }
        Ok(bytes)
    };
    let index = std::fs::read(dir.join("index.json"))
        .map_err(|e| bad(format!("cannot read index.json: {e}")))?;
    let mut doc: Value =
        serde_json::from_slice(&index).map_err(|e| bad(format!("index.json: {e}")))?;
    // Descend through indexes to one image manifest.
    let manifest = loop {
        let list = doc
            .get("manifests")
            .and_then(|m| m.as_array())
            .filter(|m| !m.is_empty())
            .ok_or_else(|| bad("an index with no manifests".into()))?;
        let pick = list
            .iter()
            .find(|m| {
                m["platform"]["os"] == "linux"
                    && (m["platform"]["architecture"] == "amd64"
                        && std::env::consts::ARCH == "x86_64"
                        || m["platform"]["architecture"] == "arm64"
                            && std::env::consts::ARCH == "aarch64")
            })
            .unwrap_or(&list[0]);
        let digest = pick["digest"]
            .as_str()
            .ok_or_else(|| bad("a descriptor without a digest".into()))?;
        let next: Value = serde_json::from_slice(&blob(digest)?)
            .map_err(|e| bad(format!("manifest {digest}: {e}")))?;
        let media = pick["mediaType"].as_str().unwrap_or("");
        if media == INDEX_TYPE || media == DOCKER_LIST_TYPE || next.get("manifests").is_some() {
            doc = next;
        } else {
            break next;
        }
    };
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .ok_or_else(|| bad("the manifest has no config".into()))?;
    let config: Value =
        serde_json::from_slice(&blob(config_digest)?).map_err(|e| bad(format!("config: {e}")))?;
    let mut layers = Vec::new();
    for l in manifest["layers"].as_array().into_iter().flatten() {
        let digest = l["digest"]
            .as_str()
            .ok_or_else(|| bad("a layer without a digest".into()))?;
        let media = l["mediaType"].as_str().unwrap_or(LAYER_TYPE);
        let b = Blob::new(media, blob(digest)?);
        layers.push(b);
    }
    Ok((layers, config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::tar::TarBuilder;

    fn spec(dir: &Path, base: Base) -> BuildSpec {
        let model = dir.join("model.json");
        std::fs::write(&model, b"{\"trees\":[]}").unwrap();
        BuildSpec {
            binary: small_elf(),
            model,
            base,
            serve_args: vec!["--host".into(), "0.0.0.0".into()],
            port: Some(8000),
            ca_bundle: None,
        }
    }

    /// A small dynamically linked executable (the test binary itself is tens of MB to gzip).
    fn small_elf() -> PathBuf {
        let t = PathBuf::from("/bin/true");
        if t.is_file() {
            t
        } else {
            std::env::current_exe().unwrap()
        }
    }

    fn untar(gz: &[u8]) -> Vec<(String, usize)> {
        let mut tar = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut tar).unwrap();
        let mut out = Vec::new();
        let mut off = 0;
        while off + 512 <= tar.len() && tar[off] != 0 {
            let h = &tar[off..off + 512];
            let name = String::from_utf8_lossy(&h[..100])
                .trim_end_matches('\0')
                .to_string();
            let prefix = String::from_utf8_lossy(&h[345..500])
                .trim_end_matches('\0')
                .to_string();
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&h[124..135]).trim_end_matches('\0'),
                8,
            )
            .unwrap();
            let sum: u32 = h
                .iter()
                .enumerate()
                .map(|(i, &b)| {
                    if (148..156).contains(&i) {
                        32
                    } else {
                        b as u32
                    }
                })
                .sum();
            let stored =
                u32::from_str_radix(String::from_utf8_lossy(&h[148..154]).trim(), 8).unwrap();
            assert_eq!(sum, stored, "checksum of {name}");
            let full = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            out.push((full, size));
            off += 512 + size.div_ceil(512) * 512;
        }
        out
    }

    #[test]
    fn scratch_image_has_binary_model_libs_and_entrypoint() {
        let dir = tempfile::tempdir().unwrap();
        let img = build(&spec(dir.path(), Base::None)).unwrap();
        assert_eq!(img.layers.len(), 1);
        let entries = untar(&img.layers[0].bytes);
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&BINARY_PATH));
        assert!(names.contains(&"model/model.json"));
        let config: Value = serde_json::from_slice(&img.config.bytes).unwrap();
        assert_eq!(
            config["config"]["Entrypoint"],
            json!([
                "/usr/local/bin/health-predict",
                "serve",
                "--model",
                "/model/model.json",
                "--host",
                "0.0.0.0"
            ])
        );
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
        let manifest: Value = serde_json::from_slice(&img.manifest.bytes).unwrap();
        assert_eq!(manifest["config"]["digest"], json!(img.config.digest));
        assert_eq!(manifest["layers"][0]["digest"], json!(img.layers[0].digest));
        // A dynamically linked binary brings its loader into the layer.
        if !shared_libraries(&small_elf()).unwrap().is_empty() {
            assert!(names.iter().any(|n| n.contains("ld-linux")), "{names:?}");
        }
        // Deterministic: same inputs, same digest.
        let again = build(&spec(dir.path(), Base::None)).unwrap();
        assert_eq!(again.manifest.digest, img.manifest.digest);
    }

    #[test]
    fn layout_base_layers_come_first() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = build(&spec(dir.path(), Base::None)).unwrap();
        // Write the scratch image as an OCI layout and use it as a base.
        let layout = dir.path().join("layout");
        let blobs = layout.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        for b in scratch
            .layers
            .iter()
            .chain([&scratch.config, &scratch.manifest])
        {
            std::fs::write(blobs.join(&b.digest[7..]), &b.bytes).unwrap();
        }
        std::fs::write(
            layout.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let index = json!({"schemaVersion":2,"manifests":[{"mediaType":MANIFEST_TYPE,"digest":scratch.manifest.digest,"size":scratch.manifest.bytes.len(),"platform":{"os":"linux","architecture":"amd64"}}]});
        std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
        let img = build(&spec(dir.path(), Base::Layout(layout.clone()))).unwrap();
        assert_eq!(img.layers.len(), 2);
        assert_eq!(img.layers[0].digest, scratch.layers[0].digest);
        let config: Value = serde_json::from_slice(&img.config.bytes).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        assert_eq!(config["history"].as_array().unwrap().len(), 2);
        // A corrupted blob is refused.
        std::fs::write(blobs.join(&scratch.layers[0].digest[7..]), b"x").unwrap();
        let err = build(&spec(dir.path(), Base::Layout(layout))).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[test]
    fn long_paths_use_the_ustar_prefix() {
        let mut t = TarBuilder::default();
        let long = format!("{}/file", "d".repeat(120));
        t.file(&long, 0o644, b"abc");
        let tar = t.finish();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let entries = untar(&gz.finish().unwrap());
        assert_eq!(entries.last().unwrap(), &(long, 3));
    }
}
