//! The serving image: the pipeline's kind path (build in-process, `kind load image-archive`,
//! deploy by digest) with a `kind` stand-in that validates the archive it is given, and the
//! container test of the exact image (podman here, docker on GitHub's runners).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::fake_kube::FakeKube;
use crate::support::{bin, run};

/// Small, fast pipeline settings for debug builds.
const FAST: &[&str] = &[
    "--synth-rows",
    "3000",
    "--trials",
    "1",
    "--min-holdout-rows",
    "200",
    "--latency-budget-ms",
    "2000",
];

/// A `kind` stand-in: accepts only `load image-archive <tar> --name <cluster>`, unpacks the tar,
/// checks it is an OCI layout whose every blob matches its digest, and keeps the arguments and
/// `index.json` for the test to read.
const KIND_STANDIN: &str = r#"#!/usr/bin/env bash
set -euo pipefail
out="$KIND_STANDIN_OUT"
printf '%s\n' "$*" >> "$out/args"
[ "$1 $2" = "load image-archive" ] || { echo "stand-in: unexpected: $*" >&2; exit 64; }
archive="$3"; [ "$4" = "--name" ] || { echo "stand-in: no --name" >&2; exit 64; }
dir=$(mktemp -d)
tar -xf "$archive" -C "$dir"
[ -f "$dir/oci-layout" ] || { echo "stand-in: no oci-layout" >&2; exit 65; }
[ -f "$dir/index.json" ] || { echo "stand-in: no index.json" >&2; exit 65; }
for blob in "$dir"/blobs/sha256/*; do
  sum=$(sha256sum "$blob" | cut -d' ' -f1)
  [ "$sum" = "$(basename "$blob")" ] || { echo "stand-in: blob $blob does not match" >&2; exit 65; }
done
cp "$dir/index.json" "$out/index.json"
ls "$dir/blobs/sha256" > "$out/blobs"
rm -rf "$dir"
echo "Image: \"\" with ID \"sha256:x\" not yet present on node \"$5-control-plane\", loading..."
"#;

fn step<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {doc}"))
}

fn standin_path(dir: &Path) -> String {
    let bin_dir = dir.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let kind = bin_dir.join("kind");
    std::fs::write(&kind, KIND_STANDIN).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&kind, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn hp(dir: &Path) -> Command {
    let mut c = bin();
    c.current_dir(dir)
        .env_remove("GITHUB_ACTIONS")
        .env_remove("HEALTH_PREDICT_RUN_ID")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_without_an_image_loads_the_built_archive_into_kind_and_deploys_by_digest() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kind-out");
    std::fs::create_dir_all(&out).unwrap();
    let path = standin_path(dir.path());

    // The plan says what will happen instead of refusing.
    let (code, plan, err) =
        run(hp(dir.path())
            .env("PATH", &path)
            .args(["pipeline", "plan", "--deploy", "kubernetes"]));
    assert_eq!(code, 0, "{plan}\n{err}");
    assert!(
        plan.contains("kind load image-archive") && plan.contains("--name health-predict"),
        "{plan}"
    );

    let fake = FakeKube::start().await;
    let kc = fake.kubeconfig(dir.path());
    let mut cmd = hp(dir.path());
    cmd.env("PATH", &path)
        .env("KIND_STANDIN_OUT", &out)
        .env("KUBECONFIG", &kc)
        .args([
            "--output",
            "json",
            "pipeline",
            "run",
            "--run-dir",
            "runs/kind",
        ])
        .args(FAST)
        .args([
            "--deploy",
            "kubernetes",
            "--kind-cluster",
            "ci-cluster",
            "--runtime",
            "none",
            "--step-timeout-seconds",
            "60",
        ]);
    let (_, stdout, err) = tokio::task::spawn_blocking(move || run(&mut cmd))
        .await
        .unwrap();
    let doc: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("one JSON document ({e}): {stdout}\n{err}"));
    assert_eq!(step(&doc, "package")["status"], "passed", "{err}");
    assert_eq!(step(&doc, "push")["status"], "passed", "{doc}\n{err}");

    // Without a runtime the suite ran in-process, and the report says so.
    assert_eq!(doc["api_test"]["target"], "in-process");
    assert!(
        doc["api_test"]["fallback"]
            .as_str()
            .unwrap()
            .contains("container_runtime = none"),
        "{}",
        doc["api_test"]
    );

    // kind was called once, with the archive and the cluster name.
    let args = std::fs::read_to_string(out.join("args")).unwrap();
    let args: Vec<&str> = args.trim().split(' ').collect();
    assert_eq!(args[..2], ["load", "image-archive"]);
    assert!(args[2].ends_with("runs/kind/image-kind.tar"), "{args:?}");
    assert_eq!(args[3..], ["--name", "ci-cluster"]);

    // The archive names the image by tag and by digest (what containerd's CRI resolves a Pod's
    // `image: repo@sha256:...` with), both pointing at the built manifest.
    let digest = doc["image_build"]["digest"].as_str().unwrap().to_owned();
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("index.json")).unwrap()).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{index}");
    assert!(entries.iter().all(|e| e["digest"] == digest.as_str()));
    let names: Vec<&str> = entries
        .iter()
        .map(|e| {
            e["annotations"]["io.containerd.image.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    let tag = doc["image_build"]["tag"].as_str().unwrap();
    assert_eq!(
        names,
        [
            format!("docker.io/health-predict/api:{tag}"),
            format!("docker.io/health-predict/api@{digest}")
        ]
    );
    assert_eq!(
        entries[0]["annotations"]["org.opencontainers.image.ref.name"],
        tag
    );
    let blobs = std::fs::read_to_string(out.join("blobs")).unwrap();
    assert!(blobs.contains(digest.trim_start_matches("sha256:")));

    // Deployed by that digest.
    let reference = format!("docker.io/health-predict/api@{digest}");
    assert_eq!(doc["published"]["reference"], reference.as_str());
    assert_eq!(doc["published"]["destination"], "kind:ci-cluster");
    assert_eq!(doc["image"], reference.as_str());
    assert_eq!(step(&doc, "deploy")["status"], "passed", "{doc}\n{err}");
    let deployment = fake
        .get(
            "apps/v1",
            "deployments",
            Some("health-predict"),
            "health-predict",
        )
        .expect("the deployment was applied");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        reference.as_str()
    );
}

#[test]
fn kubernetes_without_kind_on_path_fails_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    // Only the tools the build needs (ldd) remain reachable.
    let path = format!("{}:/usr/bin:/bin", empty.display());
    if PathBuf::from("/usr/bin/kind").exists() || PathBuf::from("/bin/kind").exists() {
        eprintln!("skipped: kind is installed system-wide");
        return;
    }
    let (code, stdout, err) = run(hp(dir.path())
        .env("PATH", &path)
        .args([
            "--output",
            "json",
            "pipeline",
            "run",
            "--run-dir",
            "runs/nokind",
        ])
        .args(FAST)
        .args(["--deploy", "kubernetes", "--runtime", "none"]));
    assert_ne!(code, 0, "{stdout}\n{err}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(step(&doc, "push")["status"], "errored", "{doc}");
    assert!(err.contains("`kind` is not on PATH"), "{err}");
    assert!(err.contains("--image-repository"), "{err}");
    assert_eq!(step(&doc, "deploy")["status"], "skipped");
}
