//! The three workflows users meet, run end to end here by the local runner
//! (`support::workflow`): every `run:` step and the composite action's steps for real, with the
//! test build of the binary (`HEALTH_PREDICT_BINARY`, which the action's install step honours).
//!
//! Third-party actions are replaced by declared stand-ins:
//! - `actions/checkout`: the working tree (plus the user's data files) copied into the workspace;
//! - `helm/kind-action`: the fake API server as the cluster (kubeconfig in `~/.kube/config`) and a
//!   `kind` executable that validates and records `kind load image-archive`, answers `get clusters`
//!   and `export logs`; a kubelet stand-in runs the loaded (or pulled) image for real when the API
//!   server's port-forward reaches its pod;
//! - `actions/upload-artifact`: copies the paths; `actions/cache`: a miss.
//!
//! Around them: moto (STS, ECR), a local OIDC token endpoint (offered only to jobs with
//! `id-token: write`), Debian's docker-registry standing in for ECR's registry host, a wiremock
//! GitHub API recording check runs and comments, and a bare git repository as the state remote.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::github::{REPO, check_run_responder, comment};
use crate::support::fake_kube::FakeKube;
use crate::support::kubelet::Kubelet;
use crate::support::moto::Moto;
use crate::support::registry::{Oidc, OidcConfig, Registry};
use crate::support::workflow::{JobRun, Runner, StandIn, StandInCall, checkout};
use crate::support::{self, bin, run};

const ROLE: &str = "arn:aws:iam::123456789012:role/health-predict-ci";
const REQUEST_TOKEN: &str = "runner-request-token-wf-5c1d";
/// moto's ECR authorization token decodes to `AWS:<this>`.
const ECR_PASSWORD: &str = "123456789012-auth-token";
const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
const STATE_BRANCH: &str = "health-predict-state";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `f` off the async runtime (the runner blocks on child processes; the fakes are async).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("runner thread")
}

/// The GitHub API: check runs (created, updated) and PR comments, recorded.
async fn github_api() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/repos/[^/]+/[^/]+/check-runs$"))
        .respond_with(check_run_responder(41))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path_regex(r"^/repos/[^/]+/[^/]+/check-runs/\d+$"))
        .respond_with(check_run_responder(41))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/repos/[^/]+/[^/]+/issues/\d+/comments$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/repos/[^/]+/[^/]+/issues/\d+/comments$"))
        .respond_with(ResponseTemplate::new(201).set_body_json(comment(77, 7, "report")))
        .mount(&server)
        .await;
    server
}

/// The calls the GitHub API received: `(method, path, body)`.
async fn published(server: &MockServer) -> Vec<(String, String, Value)> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                r.method.to_string(),
                r.url.path().to_owned(),
                serde_json::from_slice(&r.body).unwrap_or(Value::Null),
            )
        })
        .collect()
}

/// The names of the check runs created, with their final conclusion.
fn check_runs(calls: &[(String, String, Value)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (m, _, body) in calls.iter().filter(|(_, p, _)| p.contains("/check-runs")) {
        if m == "POST" {
            out.push((
                body["name"].as_str().unwrap_or_default().to_owned(),
                body["conclusion"].as_str().unwrap_or_default().to_owned(),
            ));
        } else if let (Some(last), Some(c)) = (out.last_mut(), body["conclusion"].as_str()) {
            last.1 = c.to_owned();
        }
    }
    out
}

/// A cluster stand-in: the kind executable, its image store, and the kubelet that runs images.
struct Cluster {
    kube: FakeKube,
    kubelet: Arc<Kubelet>,
    /// `kind` keeps loaded archives here, by digest.
    node_images: PathBuf,
    tools: PathBuf,
}

impl Cluster {
    async fn start(dir: &Path) -> Cluster {
        let kube = FakeKube::start().await;
        let node_images = dir.join("node-images");
        let tools = dir.join("kind-tools");
        std::fs::create_dir_all(&node_images).unwrap();
        std::fs::create_dir_all(&tools).unwrap();
        let kubelet = Arc::new(Kubelet::new(&node_images, &dir.join("kubelet")));
        std::fs::create_dir_all(dir.join("kubelet")).unwrap();
        let k = Arc::clone(&kubelet);
        kube.set_kubelet(Arc::new(move |pod, secrets| k.serve(pod, secrets)));
        Cluster {
            kube,
            kubelet,
            node_images,
            tools,
        }
    }

    /// The `kind` executable the kind-action stand-in puts on PATH.
    fn write_kind(&self, cluster: &str) {
        let script = format!(
            r#"#!/usr/bin/env bash
# kind stand-in: the cluster is the test's fake API server; images are kept for its kubelet.
set -euo pipefail
store={store}
name=kind
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) name="$2"; shift 2 ;;
    --name=*) name="${{1#--name=}}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
case "${{args[0]:-}} ${{args[1]:-}}" in
  "get clusters") echo {cluster} ;;
  "load image-archive")
    [[ "$name" == {cluster} ]] || {{ echo "ERROR: no nodes found for cluster \"$name\"" >&2; exit 1; }}
    file="${{args[2]:?kind load image-archive needs a file}}"
    tmp="$(mktemp -d)"
    tar -xf "$file" -C "$tmp" oci-layout index.json 2>/dev/null || {{ echo "ERROR: failed to load image: $file is not an OCI image archive (no oci-layout/index.json)" >&2; exit 1; }}
    jq -e '.imageLayoutVersion == "1.0.0"' "$tmp/oci-layout" >/dev/null || {{ echo "ERROR: failed to load image: bad oci-layout" >&2; exit 1; }}
    digest="$(jq -r '.manifests[0].digest' "$tmp/index.json")"
    [[ "$digest" == sha256:* ]] || {{ echo "ERROR: failed to load image: index.json names no manifest" >&2; exit 1; }}
    tar -tf "$file" | grep -qx "blobs/sha256/${{digest#sha256:}}" || {{ echo "ERROR: failed to load image: manifest blob $digest missing" >&2; exit 1; }}
    cp "$file" "$store/${{digest#sha256:}}.tar"
    echo "$name $digest" >>"$store/loaded.txt"
    echo "Image: \"\" with ID \"$digest\" not yet present on node \"$name-control-plane\", loading..."
    ;;
  "export logs")
    dir="${{args[2]:-/tmp/kind-logs}}"
    mkdir -p "$dir"
    echo "kind stand-in cluster $name" >"$dir/kind-version.txt"
    echo "Exporting logs for cluster \"$name\" to:"; echo "$dir"
    ;;
  *) echo "kind stand-in: unsupported: ${{args[*]}}" >&2; exit 2 ;;
esac
"#,
            store = self.node_images.display(),
        );
        let p = self.tools.join("kind");
        std::fs::write(&p, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// `(cluster, digest)` of every `kind load image-archive`.
    fn loaded(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.node_images.join("loaded.txt"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect()
    }

    fn deployed_image(&self, ns: &str) -> String {
        self.kube
            .get("apps/v1", "deployments", Some(ns), "health-predict")
            .expect("deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// The runner, the stand-ins and the machine's environment every workflow test shares.
fn runner(dir: &Path, cluster: &Cluster, user_files: Option<PathBuf>, api: &str) -> Runner {
    let mut r = Runner::new(&root(), dir);
    // The runner image: the pinned toolchain is preinstalled (no network here), so `rustup`
    // only confirms it and never changes this machine's default.
    let image_tools = dir.join("runner-image");
    std::fs::create_dir_all(&image_tools).unwrap();
    let rustup_home = std::env::var("RUSTUP_HOME")
        .unwrap_or_else(|_| format!("{}/.rustup", std::env::var("HOME").unwrap_or_default()));
    let rustup = image_tools.join("rustup");
    std::fs::write(
        &rustup,
        "#!/usr/bin/env bash\n# rustup stand-in: confirms a preinstalled toolchain; never downloads, never changes the default.\nset -euo pipefail\ncase \"$1\" in\n  toolchain) [[ \"$2\" == install ]] && ls -d \"$RUSTUP_HOME/toolchains/$3\"-* ;;\n  default) echo \"default toolchain: $2\" ;;\n  *) echo \"rustup stand-in: unsupported: $*\" >&2; exit 2 ;;\nesac\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rustup, std::fs::Permissions::from_mode(0o755)).unwrap();
    r.env.insert("RUSTUP_HOME".into(), rustup_home);
    let mut path = image_tools.display().to_string();
    if let Some(tools) = std::env::var_os("HEALTH_PREDICT_TOOLS") {
        path.push(':');
        path.push_str(&tools.to_string_lossy());
    }
    path.push(':');
    path.push_str(&std::env::var("PATH").unwrap_or_default());
    r.env.insert("PATH".into(), path);
    r.env.insert(
        "HEALTH_PREDICT_BINARY".into(),
        env!("CARGO_BIN_EXE_health-predict").into(),
    );
    r.env.insert("GITHUB_API_URL".into(), api.into());
    r.env.insert("NO_COLOR".into(), "1".into());
    // A debug build on a shared 2-core machine: latency budgets and holdout sizes for small data.
    for (k, v) in [
        ("HEALTH_PREDICT_MIN_HOLDOUT_ROWS", "200"),
        ("HEALTH_PREDICT_PIPELINE_LATENCY_BUDGET_MS", "2000"),
        ("HEALTH_PREDICT_LATENCY_BUDGET", "2s"),
        ("HEALTH_PREDICT_VERIFY_TIMEOUT", "60"),
    ] {
        r.env.insert(k.into(), v.into());
    }
    r.repository = REPO.into();

    let extra = user_files.clone();
    r.stand_ins.insert(
        "actions/checkout".into(),
        Box::new(move |call: &mut StandInCall<'_>| {
            checkout(&root(), call.workspace)?;
            if let Some(extra) = &extra {
                copy_tree(extra, call.workspace).map_err(|e| e.to_string())?;
            }
            Ok(())
        }) as StandIn,
    );
    let kubeconfig = cluster.kube.kubeconfig(dir);
    let tools = cluster.tools.clone();
    cluster.write_kind("health-predict");
    r.stand_ins.insert(
        "helm/kind-action".into(),
        Box::new(move |call: &mut StandInCall<'_>| {
            let name = call
                .with
                .get("cluster_name")
                .cloned()
                .unwrap_or_else(|| "chart-testing".into());
            if name != "health-predict" {
                return Err(format!(
                    "the stand-in cluster is health-predict, not {name}"
                ));
            }
            if let Some(config) = call.with.get("config") {
                let text = std::fs::read_to_string(call.workspace.join(config))
                    .map_err(|e| format!("kind config {config}: {e}"))?;
                if !text.contains("kind: Cluster") {
                    return Err(format!("{config} is not a kind cluster config"));
                }
            }
            let kube_dir = call.home.join(".kube");
            std::fs::create_dir_all(&kube_dir).map_err(|e| e.to_string())?;
            std::fs::copy(&kubeconfig, kube_dir.join("config")).map_err(|e| e.to_string())?;
            call.add_path.push(tools.clone());
            Ok(())
        }),
    );
    let artifacts = dir.join("artifacts");
    r.stand_ins.insert(
        "actions/upload-artifact".into(),
        Box::new(move |call: &mut StandInCall<'_>| {
            let name = call.with.get("name").cloned().unwrap_or_default();
            let dest = artifacts.join(&name);
            for p in call
                .with
                .get("path")
                .map(String::as_str)
                .unwrap_or("")
                .lines()
            {
                let p = Path::new(p.trim());
                if p.as_os_str().is_empty() || !p.exists() {
                    continue;
                }
                let to = dest.join(p.file_name().unwrap());
                if p.is_dir() {
                    copy_tree(p, &to).map_err(|e| e.to_string())?;
                } else {
                    std::fs::create_dir_all(&dest).map_err(|e| e.to_string())?;
                    std::fs::copy(p, &to).map_err(|e| e.to_string())?;
                }
            }
            Ok(())
        }),
    );
    r.stand_ins.insert(
        "actions/cache".into(),
        Box::new(|call: &mut StandInCall<'_>| {
            call.outputs.insert("cache-hit".into(), "false".into());
            Ok(())
        }),
    );
    r
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &dest)?;
        } else {
            std::fs::copy(e.path(), &dest)?;
        }
    }
    Ok(())
}

fn outputs(job: &JobRun, step: &str) -> BTreeMap<String, String> {
    job.step(step).outputs.clone()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = run(std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args));
    assert_eq!(code, 0, "git {args:?}: {err}");
    out
}

// ------------------------------------------------------------------------------------- tests

/// pr-check on a pull request: the image is built, loaded into kind by archive, deployed by the
/// digest that was loaded, served by the kubelet from that archive, and the full API suite runs
/// through the port-forward; check runs and the PR comment are published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_check_runs_end_to_end_with_the_image_loaded_into_kind() {
    let Some(_) = support::require_tool("jq") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path()).await;
    let api = github_api().await;
    let mut r = runner(dir.path(), &cluster, None, &api.uri());
    r.event_name = "pull_request".into();
    r.event = json!({
        "action": "synchronize", "number": 7,
        "pull_request": {
            "number": 7,
            "head": {"sha": "fedcba9876543210fedcba9876543210fedcba98", "ref": "feature",
                     "repo": {"full_name": REPO, "fork": false}},
            "base": {"ref": "main", "repo": {"full_name": REPO}},
        },
        "repository": {"full_name": REPO},
    });
    r.vars
        .insert("HEALTH_PREDICT_SYNTH_ROWS".into(), "4000".into());
    r.vars.insert("HEALTH_PREDICT_TRIALS".into(), "2".into());
    let jobs = blocking(move || r.run(".github/workflows/pr-check.yml")).await;
    let job = &jobs[0];
    let pipeline = outputs(job, "pipeline");
    assert!(job.succeeded, "{:?}\n{}", job.ids(), job.log);
    assert_eq!(pipeline["exit-code"], "0", "{}", job.log);
    assert_eq!(pipeline["decision"], "DEPLOY");
    assert_eq!(pipeline["model-version"], "1");

    // The image deployed is the one loaded into kind, by digest, and the kubelet ran it.
    let loaded = cluster.loaded();
    assert_eq!(loaded.len(), 1, "{loaded:?}");
    assert_eq!(loaded[0].0, "health-predict");
    let image = &pipeline["image"];
    assert!(
        image.ends_with(&format!("@{}", loaded[0].1)),
        "{image} vs {loaded:?}"
    );
    assert_eq!(&cluster.deployed_image("health-predict"), image);
    assert!(cluster.kubelet.started.lock().unwrap().contains(image));

    // The full API suite ran against the cluster through the port-forward.
    let api_out = outputs(job, "api");
    assert_eq!(api_out["exit-code"], "0", "{}", job.log);
    let junit = std::fs::read_to_string(r_temp(dir.path()).join("api-junit.xml")).unwrap();
    assert!(junit.contains("<testsuite"), "{junit}");
    assert!(!junit.contains("<failure"), "{junit}");

    // Published: two check runs, one PR comment, the job summary.
    let calls = published(&api).await;
    let runs = check_runs(&calls);
    assert!(
        runs.contains(&("health-predict pipeline".into(), "success".into())),
        "{runs:?}"
    );
    assert!(
        runs.contains(&("health-predict API tests".into(), "success".into())),
        "{runs:?}"
    );
    let comments: Vec<_> = calls
        .iter()
        .filter(|(m, p, _)| m == "POST" && p.ends_with("/issues/7/comments"))
        .collect();
    assert_eq!(comments.len(), 1, "{calls:?}");
    assert!(job.summary.contains("DEPLOY"), "{}", job.summary);
    // Nothing was pushed to a registry and no AWS credential was needed.
    assert!(!job.log.contains("AssumeRoleWithWebIdentity"));
}

fn r_temp(dir: &Path) -> PathBuf {
    dir.join("temp-1000")
}

/// Scheduled retrain twice on throwaway runners (state kept on a git branch), then the dispatch
/// deploy of `production`: OIDC -> STS -> ECR push -> deploy by digest to the lasting cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_retrain_twice_keeps_state_and_deploy_resolves_the_pushed_digest() {
    let (Some(_), Some(moto)) = (support::require_tool("jq"), Moto::start()) else {
        return;
    };
    let Some(registry) = Registry::start("AWS", ECR_PASSWORD) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let oidc = Oidc::start(OidcConfig {
        request_token: REQUEST_TOKEN.into(),
        sub: format!("repo:{REPO}:environment:retrain"),
    })
    .await;
    let cluster = Cluster::start(dir.path()).await;
    let host = registry.url.trim_start_matches("http://").to_owned();
    let api = github_api().await;

    // The user's repository: data prepared with `data split`, committed under data/.
    let user = dir.path().join("user-repo");
    let all = dir.path().join("all.csv");
    let (code, _, err) = run(bin()
        .args(["data", "synth", "--rows", "8000", "--out"])
        .arg(&all));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(bin()
        .args(["data", "split", "--batch-rows", "1000", "--data"])
        .arg(&all)
        .arg("--out")
        .arg(user.join("data")));
    assert_eq!(code, 0, "{err}");
    // The state remote.
    let remote = dir.path().join("state.git");
    git(
        dir.path(),
        &["init", "-q", "--bare", remote.to_str().unwrap()],
    );
    let kubeconfig = std::fs::read_to_string(cluster.kube.kubeconfig(dir.path())).unwrap();

    let make = |n: u64, event: &str, inputs: BTreeMap<String, Value>| {
        let run_dir = dir.path().join(format!("runner-{n}"));
        std::fs::create_dir_all(&run_dir).unwrap();
        let mut r = runner(&run_dir, &cluster, Some(user.clone()), &api.uri());
        r.event_name = event.into();
        r.event = json!({"repository": {"full_name": REPO}, "inputs": inputs});
        r.inputs = inputs;
        r.run_number = n;
        r.run_id = 2000 + n;
        r.oidc = Some((oidc.url.clone(), REQUEST_TOKEN.into()));
        r.env.insert("AWS_ENDPOINT_URL".into(), moto.url.clone());
        r.env
            .insert("HEALTH_PREDICT_GATE_REFRESH_TOLERANCE".into(), "1".into());
        for (k, v) in [
            ("AWS_ROLE_ARN", ROLE.to_owned()),
            ("AWS_REGION", "us-east-1".into()),
            ("ECR_REPOSITORY", "health-predict".into()),
            ("HEALTH_PREDICT_IMAGE_REGISTRY", registry.url.clone()),
            ("HEALTH_PREDICT_TRIALS", "2".into()),
            (
                "HEALTH_PREDICT_STATE_REPOSITORY",
                remote.display().to_string(),
            ),
        ] {
            r.vars.insert(k.into(), v);
        }
        r.secrets.insert("KUBECONFIG".into(), kubeconfig.clone());
        r
    };
    // docker-registry stands in for ECR's registry host: pods pull with the ECR pull secret.
    set_registries(
        &cluster.kubelet,
        vec![(host.clone(), registry.url.clone(), ECR_HOST.to_owned())],
    );

    // Run 1 (schedule): no state yet, so the first run trains, pushes, deploys and promotes.
    let r1 = make(1, "schedule", BTreeMap::new());
    let jobs = blocking(move || r1.run(".github/workflows/scheduled-retrain.yml")).await;
    let job = &jobs[0];
    assert!(job.succeeded, "{:?}\n{}", job.ids(), job.log);
    assert_eq!(job.environment.as_deref(), Some("retrain"));
    let p1 = outputs(job, "pipeline");
    assert_eq!(p1["exit-code"], "0");
    assert_eq!(p1["decision"], "DEPLOY");
    assert_eq!(p1["model-version"], "1");
    let image1 = p1["image"].clone();
    assert!(
        image1.starts_with(&format!("{host}/health-predict@sha256:")),
        "{image1}"
    );
    assert!(!p1["state-commit"].is_empty(), "{p1:?}");
    // OIDC -> STS inside the binary: tokens were requested for STS's audience.
    assert!(
        oidc.audiences().iter().all(|a| a == "sts.amazonaws.com") && !oidc.audiences().is_empty()
    );
    // The namespace was created before its pull secret; the pods pulled with it.
    assert!(
        cluster
            .kube
            .get("v1", "namespaces", None, "health-predict")
            .is_some()
    );
    assert!(
        cluster
            .kube
            .get("v1", "secrets", Some("health-predict"), "ecr-pull")
            .is_some()
    );
    assert_eq!(cluster.deployed_image("health-predict"), image1);
    assert!(cluster.kubelet.started.lock().unwrap().contains(&image1));
    let runs = check_runs(&published(&api).await);
    assert_eq!(
        runs,
        [("health-predict scheduled retrain".into(), "success".into())]
    );
    assert!(job.summary.contains("DEPLOY"), "{}", job.summary);

    // The state branch holds the registry, with the image recorded on version 1.
    let clone = dir.path().join("state-check");
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            "--branch",
            STATE_BRANCH,
            remote.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    let image_json: Value = serde_json::from_slice(
        &std::fs::read(clone.join("registry/versions/1/image.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(image_json["image"], image1.as_str());

    // Run 2 (dispatch, force-retrain) on a fresh runner: it sees run 1's production model and
    // its accepted batch.
    let mut inputs = BTreeMap::new();
    inputs.insert("force-retrain".to_owned(), json!(true));
    let r2 = make(2, "workflow_dispatch", inputs);
    let jobs = blocking(move || r2.run(".github/workflows/scheduled-retrain.yml")).await;
    let job = &jobs[0];
    assert!(job.succeeded, "{:?}\n{}", job.ids(), job.log);
    let p2 = outputs(job, "pipeline");
    assert_eq!(p2["model-version"], "2", "{p2:?}");
    assert!(
        ["DEPLOY", "DEPLOY_REFRESH"].contains(&p2["decision"].as_str()),
        "{p2:?}"
    );
    let run2: Value =
        serde_json::from_slice(&std::fs::read(Path::new(&p2["run-dir"]).join("run.json")).unwrap())
            .unwrap();
    assert_eq!(run2["production_before"], 1, "{run2}");
    assert_eq!(run2["production_after"], 2);
    let dataset = run2["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "dataset")
        .unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(dataset.contains("1 earlier batches"), "{dataset}");
    git(&clone, &["pull", "-q"]);
    let batches = std::fs::read_dir(clone.join("pipeline/batches"))
        .unwrap()
        .count();
    assert_eq!(batches, 2);
    let log = git(&clone, &["log", "--format=%s"]);
    assert_eq!(log.lines().count(), 2, "{log}");
    let image2 = p2["image"].clone();
    assert_ne!(image2, image1);

    // Dispatch deploy of version 1 (a rollback by version): resolved in the state branch's
    // registry to the digest run 1 pushed, deployed by digest, verified.
    let mut inputs = BTreeMap::new();
    inputs.insert("model".to_owned(), json!("1"));
    inputs.insert("namespace".to_owned(), json!("health-predict"));
    inputs.insert("dry-run".to_owned(), json!(false));
    let r3 = make(3, "workflow_dispatch", inputs);
    let jobs = blocking(move || r3.run(".github/workflows/deploy.yml")).await;
    let job = &jobs[0];
    assert!(job.succeeded, "{:?}\n{}", job.ids(), job.log);
    assert_eq!(job.environment.as_deref(), Some("health-predict"));
    let d = outputs(job, "deploy");
    assert_eq!(d["image"], image1);
    assert_eq!(d["model-version"], "1");
    assert_eq!(d["exit-code"], "0");
    assert_eq!(cluster.deployed_image("health-predict"), image1);
    assert!(job.summary.contains(&image1), "{}", job.summary);

    // A dry run of `production` resolves to run 2's image and changes nothing.
    let before = cluster.kube.resource_version();
    let mut inputs = BTreeMap::new();
    inputs.insert("model".to_owned(), json!("production"));
    inputs.insert("namespace".to_owned(), json!("health-predict"));
    inputs.insert("dry-run".to_owned(), json!(true));
    let r4 = make(4, "workflow_dispatch", inputs);
    let jobs = blocking(move || r4.run(".github/workflows/deploy.yml")).await;
    let job = &jobs[0];
    assert!(job.succeeded, "{:?}\n{}", job.ids(), job.log);
    assert_eq!(outputs(job, "deploy")["image"], image2);
    assert!(job.summary.contains("dry run"), "{}", job.summary);
    assert_eq!(cluster.kube.resource_version(), before);
    assert_eq!(cluster.deployed_image("health-predict"), image1);
}

fn set_registries(kubelet: &Arc<Kubelet>, registries: Vec<(String, String, String)>) {
    *kubelet.registries.lock().unwrap() = registries;
}
