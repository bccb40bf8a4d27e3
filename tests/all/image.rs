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

/// The container runtime the tests use (docker with a daemon, else podman); `None` skips
/// locally, and fails under CI, where `.ci/run` installs podman.
fn runtime() -> Option<PathBuf> {
    for name in ["docker", "podman"] {
        if let Some(p) = crate::support::require_tool_quiet(name) {
            let ok = Command::new(&p)
                .args(["version"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return Some(p);
            }
        }
    }
    crate::support::require_tool("podman")
}

fn leftovers(rt: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for args in [
        &["ps", "-a", "--format", "{{.Names}} {{.Image}}"][..],
        &["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"][..],
    ] {
        let (_, out, _) = run(Command::new(rt).args(args));
        found.extend(
            out.lines()
                .filter(|l| l.contains(needle))
                .map(str::to_owned),
        );
    }
    found
}

#[test]
fn a_default_run_tests_the_image_it_publishes_as_a_container() {
    let Some(rt) = runtime() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, err) = run(hp(dir.path())
        .env_remove("HEALTH_PREDICT_CONTAINER_RUNTIME")
        .args([
            "--output",
            "json",
            "pipeline",
            "run",
            "--run-dir",
            "runs/boot",
        ])
        .args(FAST));
    assert_eq!(code, 0, "{stdout}\n{err}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let digest = doc["image_build"]["digest"].as_str().unwrap().to_owned();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );

    // The suite ran against the container of exactly that image...
    let t = &doc["api_test"];
    assert!(
        t["target"].as_str().unwrap().starts_with("container:"),
        "{t}"
    );
    assert_eq!(t["digest"], digest.as_str());
    assert!(t["fallback"].is_null());
    assert!(t["cold_start_ms"].as_f64().is_some());
    assert!(
        doc["tests"]["passed"].as_u64().unwrap() >= 10,
        "{}",
        doc["tests"]
    );
    assert_eq!(doc["tests"]["failed"], 0);
    assert!(
        step(&doc, "api-test")["detail"]
            .as_str()
            .unwrap()
            .contains(&digest)
    );
    let junit = std::fs::read_to_string(dir.path().join("runs/boot/junit.xml")).unwrap();
    assert!(!junit.contains("<failure"), "{junit}");
    assert!(dir.path().join("runs/boot/container.log").exists());

    // ...and the same digest was published: on the local target, an OCI archive in the state
    // directory whose index names that manifest.
    assert_eq!(doc["published"]["digest"], digest.as_str());
    let archive = dir.path().join(format!(
        ".health-predict/images/{}.tar",
        digest.replace(':', "-")
    ));
    assert_eq!(
        doc["published"]["destination"],
        format!(
            "archive:{}",
            archive.strip_prefix(dir.path()).unwrap().display()
        )
    );
    let (code, index, err) = run(Command::new("tar")
        .arg("-xOf")
        .arg(&archive)
        .arg("index.json"));
    assert_eq!(code, 0, "{err}");
    let index: Value = serde_json::from_str(&index).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    assert_eq!(
        doc["image"],
        format!("docker.io/health-predict/api@{digest}").as_str()
    );
    // Nothing is left running or loaded.
    assert!(leftovers(&rt, &digest[7..19]).is_empty());
}

/// A small real model file (logistic regression on synthetic rows).
fn small_model(dir: &Path) -> PathBuf {
    use health_predict::model::{Algorithm, TrainRequest, train};
    let table = health_predict::data::synth::generate(2_000, 3);
    let mut req = TrainRequest::new(&table);
    req.algorithm = Algorithm::Logistic;
    req.trials = 1;
    req.threads = Some(1);
    let outcome = train(&req, &|_| {}).unwrap();
    let path = dir.join("model.hpm");
    outcome.model.save(&path).unwrap();
    path
}

fn image_test(dir: &Path, layout: &Path, name: &str) -> (i32, String, String, String) {
    let junit = dir.join(format!("{name}.xml"));
    let (code, out, err) = run(hp(dir)
        .args(["image", "test", "--layout"])
        .arg(layout)
        .args([
            "--expect-version",
            "7",
            "--latency-budget-ms",
            "2000",
            "--junit",
        ])
        .arg(&junit));
    let junit = std::fs::read_to_string(&junit).unwrap_or_default();
    (code, out, err, junit)
}

#[test]
fn broken_images_fail_with_a_diagnosis_and_the_container_output_in_the_report() {
    use health_predict::oci::{self, Base, BuildSpec, ImageNames};
    let Some(rt) = runtime() else { return };
    let dir = tempfile::tempdir().unwrap();
    let spec = BuildSpec {
        binary: PathBuf::from(env!("CARGO_BIN_EXE_health-predict")),
        model: small_model(dir.path()),
        base: Base::None,
        serve_args: vec!["--model-version=7".into()],
        port: Some(8000),
        ca_bundle: None,
    };
    let good = oci::build(&spec).unwrap();
    let lib = good.files.iter().find(|f| f.contains("libgcc_s")).cloned();

    // The control: the image as built passes, so the failures below are the breakage's.
    let layout = dir.path().join("good");
    oci::write_layout(&layout, &good, &ImageNames::default()).unwrap();
    let (code, out, err, junit) = image_test(dir.path(), &layout, "good");
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("0 failed"), "{out}");
    assert!(!junit.contains("<failure"), "{junit}");

    // A model path that does not exist in the image.
    let bad_model = good
        .with_config(|c| c["config"]["Entrypoint"][3] = "/model/missing.hpm".into())
        .unwrap();
    let layout = dir.path().join("bad-model");
    oci::write_layout(&layout, &bad_model, &ImageNames::default()).unwrap();
    let (code, out, err, junit) = image_test(dir.path(), &layout, "bad-model");
    assert_eq!(code, 4, "{out}\n{err}");
    assert!(
        out.contains("the model file the entrypoint names is not in the image"),
        "{out}"
    );
    // The crashed container's own output reaches the JUnit report.
    assert!(junit.contains("<failure"), "{junit}");
    assert!(
        junit.contains("cannot read model file /model/missing.hpm"),
        "{junit}"
    );
    assert!(leftovers(&rt, &bad_model.manifest.digest[7..19]).is_empty());

    // A shared library deleted by a whiteout in a layer on top.
    let Some(lib) = lib else {
        eprintln!("skipped the missing-library case: the binary links no libgcc_s");
        return;
    };
    let (parent, file) = lib.trim_start_matches('/').rsplit_once('/').unwrap();
    let mut tar = oci::tar::TarBuilder::default();
    tar.file(&format!("{parent}/.wh.{file}"), 0o644, b"");
    let no_lib = good.with_layer(&tar.finish()).unwrap();
    let layout = dir.path().join("no-lib");
    oci::write_layout(&layout, &no_lib, &ImageNames::default()).unwrap();
    let (code, out, err, junit) = image_test(dir.path(), &layout, "no-lib");
    assert_eq!(code, 4, "{out}\n{err}");
    assert!(
        out.contains("a shared library is missing from the image: libgcc_s.so.1"),
        "{out}"
    );
    assert!(
        junit.contains("error while loading shared libraries"),
        "{junit}"
    );
    assert!(leftovers(&rt, &no_lib.manifest.digest[7..19]).is_empty());
}

/// `image push` against Debian's docker-registry behind a fault-injection proxy.
mod push {
    use std::process::Command;
    use std::time::Duration;

    use serde_json::Value;

    use crate::support::moto::{Fault, FaultProxy};
    use crate::support::registry::Registry;
    use crate::support::{bin, run};

    async fn exec(mut cmd: Command) -> (i32, String, String) {
        tokio::task::spawn_blocking(move || run(&mut cmd))
            .await
            .expect("join")
    }

    fn json_of(stdout: &str) -> Value {
        serde_json::from_str(stdout).unwrap_or_else(|e| panic!("one JSON document ({e}): {stdout}"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn registry_faults_are_retried_and_chunked_uploads_work() {
        let Some(registry) = Registry::start("AWS", "registry-password-3d9e") else {
            return;
        };
        let proxy = FaultProxy::start(&registry.url).await;
        proxy.inject("GET v2", [Fault::registry(503, "UNAVAILABLE")]);
        proxy.inject("HEAD blobs", [Fault::Delay(Duration::from_secs(15))]);
        proxy.inject("POST uploads", [Fault::registry(429, "TOOMANYREQUESTS")]);
        proxy.inject("PATCH uploads", [Fault::registry(500, "UNKNOWN")]);
        proxy.inject("PUT manifests", [Fault::registry(502, "UNAVAILABLE")]);
        let dir = tempfile::tempdir().expect("tempdir");
        let model = dir.path().join("model.json");
        std::fs::write(&model, b"{}").expect("model");
        let push = |tag: &str| {
            let mut c = bin();
            c.env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HEALTH_PREDICT_REGISTRY_PASSWORD", "registry-password-3d9e")
                .args([
                    "image",
                    "push",
                    "--registry",
                    proxy.url.as_str(),
                    "--registry-user",
                    "AWS",
                    "--repository",
                    "team/health-predict",
                    "--tag",
                    tag,
                    "--model",
                    model.to_str().expect("utf8"),
                    "--chunk-mib",
                    "1",
                    "--registry-timeout",
                    "6s",
                    "--output",
                    "json",
                ]);
            c
        };
        let (code, out, err) = exec(push("chunked")).await;
        assert_eq!(code, 0, "{err}");
        let report = json_of(&out);
        assert_eq!(report["uploaded_blobs"], 2);
        // Each fault cost one extra request, and the layer went up in 1 MiB chunks.
        assert_eq!(proxy.calls("GET v2"), 2);
        assert!(
            proxy.calls("HEAD blobs") >= 3,
            "{}",
            proxy.calls("HEAD blobs")
        );
        assert_eq!(proxy.calls("PUT manifests"), 2);
        let layer_bytes = report["uploaded_bytes"].as_u64().expect("bytes");
        let chunks = layer_bytes.div_ceil(1 << 20) as u32;
        assert!(
            proxy.calls("PATCH uploads") >= chunks,
            "{} < {chunks}",
            proxy.calls("PATCH uploads")
        );

        // A real refusal (400) is reported at once, not retried.
        proxy.inject("PUT manifests", [Fault::registry(400, "MANIFEST_INVALID")]);
        let before = proxy.calls("PUT manifests");
        let (code, _, err) = exec(push("refused")).await;
        assert_eq!(code, 5, "{err}");
        assert!(err.contains("MANIFEST_INVALID"), "{err}");
        assert_eq!(proxy.calls("PUT manifests"), before + 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn push_through_a_bearer_token_realm() {
        let Some(registry) = Registry::start_open() else {
            return;
        };
        let gate = FaultProxy::start(&registry.url).await;
        gate.require_bearer("robot", "robot-password-55e1", "bearer-token-0b7c2f");
        let dir = tempfile::tempdir().expect("tempdir");
        let model = dir.path().join("model.json");
        std::fs::write(&model, b"{}").expect("model");
        let mut c = bin();
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HEALTH_PREDICT_REGISTRY_PASSWORD", "robot-password-55e1")
            .args([
                "image",
                "push",
                "--registry",
                gate.url.as_str(),
                "--registry-user",
                "robot",
                "--repository",
                "health-predict",
                "--tag",
                "bearer",
                "--model",
                model.to_str().expect("utf8"),
                "--output",
                "json",
                "-vv",
            ]);
        let (code, out, err) = exec(c).await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(json_of(&out)["uploaded_blobs"], 2);
        let scopes = gate.token_scopes();
        assert_eq!(scopes.len(), 1, "{scopes:?}");
        assert!(scopes[0].contains("service=fake-registry"), "{scopes:?}");
        assert!(
            scopes[0].contains("scope=repository%3Ahealth-predict%3Apull%2Cpush"),
            "{scopes:?}"
        );
        let all = format!("{out}{err}");
        for s in ["robot-password-55e1", "bearer-token-0b7c2f"] {
            assert!(!all.contains(s), "a secret leaked");
        }
    }
}

/// deploy = kubernetes with a repository: the tested image is pushed in-process (no child
/// process) and the registry, the report and the Deployment agree on one digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_image_is_the_tested_one_and_is_deployed_by_digest() {
    let Some(registry) = crate::support::registry::Registry::start_open() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeKube::start().await;
    let kc = fake.kubeconfig(dir.path());
    let mut cmd = hp(dir.path());
    cmd.env("KUBECONFIG", &kc)
        .env_remove("HEALTH_PREDICT_CONTAINER_RUNTIME")
        .args([
            "--output",
            "json",
            "pipeline",
            "run",
            "--run-dir",
            "runs/push",
        ])
        .args(FAST)
        .args([
            "--deploy",
            "kubernetes",
            "--image-repository",
            "team/health-predict",
            "--image-registry",
            registry.url.as_str(),
            "--step-timeout-seconds",
            "60",
        ]);
    let (_, stdout, err) = tokio::task::spawn_blocking(move || run(&mut cmd))
        .await
        .unwrap();
    let doc: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("one JSON document ({e}): {stdout}\n{err}"));
    assert_eq!(step(&doc, "push")["status"], "passed", "{doc}\n{err}");
    let digest = doc["image_build"]["digest"].as_str().unwrap().to_owned();
    assert_eq!(doc["published"]["digest"], digest.as_str());
    if doc["api_test"]["target"]
        .as_str()
        .unwrap()
        .starts_with("container:")
    {
        assert_eq!(doc["api_test"]["digest"], digest.as_str());
    } else {
        assert!(
            !crate::support::in_ci(),
            "CI has podman: {}",
            doc["api_test"]
        );
    }
    // The registry holds that manifest under the run's tag.
    health_predict::install_crypto_provider();
    let tag = doc["image_build"]["tag"].as_str().unwrap();
    let resp = reqwest::Client::new()
        .get(format!(
            "{}/v2/team/health-predict/manifests/{tag}",
            registry.url
        ))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["docker-content-digest"].to_str().unwrap(),
        digest
    );
    let host = registry.url.trim_start_matches("http://").to_owned();
    let reference = format!("{host}/team/health-predict@{digest}");
    assert_eq!(doc["image"], reference.as_str());
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
