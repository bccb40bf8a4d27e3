//! Integration tests: kube. Everything runs against the fake API server over real HTTP
//! (`support::fake_kube`); real-cluster tests are `#[ignore = "needs a kind cluster"]`.

use std::time::Duration;

use health_predict::kube::pull_secret::{
    self, AccountChange, DOCKERCONFIGJSON_KEY, EXPIRES_AT_ANNOTATION, PullSecretRequest,
};
use health_predict::secret::Secret;
use serde_json::json;

use crate::support::fake_kube::FakeKube;

const REGISTRY: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

fn pull_request(password: &str, namespaces: &[&str]) -> PullSecretRequest {
    PullSecretRequest {
        name: "ecr-pull".into(),
        registry: REGISTRY.into(),
        username: "AWS".into(),
        password: Secret::new(password),
        expires_at: Some("2030-01-01T00:00:00Z".parse().expect("timestamp")),
        namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
        service_account: Some("health-predict".into()),
    }
}

#[tokio::test]
async fn pull_secret_is_applied_merged_and_idempotent() {
    health_predict::install_crypto_provider();
    let fake = FakeKube::start_store_only().await;
    // One namespace already has an account with another pull secret that must survive.
    fake.put(json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "health-predict", "namespace": "prod"},
        "imagePullSecrets": [{"name": "dockerhub"}]}));
    let client = fake.client();
    let req = pull_request("s3cret-token", &["prod", "staging"]);
    let out = pull_secret::apply_pull_secret(&client, &req).await.unwrap();
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|o| o.secret_changed));
    // A fresh namespace is created (server-side apply, its own field manager) before its Secret:
    // the fake answers 404 for writes into a namespace that does not exist, as an API server does.
    let n = fake
        .get("v1", "namespaces", None, "staging")
        .expect("namespace applied");
    assert_eq!(
        n["metadata"]["managedFields"][0]["manager"],
        "health-predict-pull-secret"
    );
    assert_eq!(out[0].service_account, Some(AccountChange::Added));
    assert_eq!(out[1].service_account, Some(AccountChange::Created));

    let sa = fake
        .get("v1", "serviceaccounts", Some("prod"), "health-predict")
        .unwrap();
    assert_eq!(
        sa["imagePullSecrets"],
        json!([{"name": "dockerhub"}, {"name": "ecr-pull"}])
    );
    for ns in ["prod", "staging"] {
        let s = fake.get("v1", "secrets", Some(ns), "ecr-pull").unwrap();
        assert_eq!(s["type"], "kubernetes.io/dockerconfigjson");
        assert_eq!(
            s["metadata"]["annotations"][EXPIRES_AT_ANNOTATION],
            "2030-01-01T00:00:00Z"
        );
        use base64::Engine;
        let data = base64::engine::general_purpose::STANDARD
            .decode(s["data"][DOCKERCONFIGJSON_KEY].as_str().unwrap())
            .unwrap();
        pull_secret::check_dockerconfigjson(&data, REGISTRY).unwrap();
    }
    // Applied with server-side apply and our field manager, never deleted.
    let reqs = fake.requests();
    let applies: Vec<_> = reqs
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/secrets/"))
        .collect();
    assert_eq!(applies.len(), 2);
    for r in &applies {
        assert_eq!(
            r.content_type.as_deref(),
            Some("application/apply-patch+yaml")
        );
        assert_eq!(
            r.query.get("fieldManager").map(String::as_str),
            Some("health-predict")
        );
        assert_eq!(r.query.get("force").map(String::as_str), Some("true"));
    }
    assert!(reqs.iter().all(|r| r.method != "DELETE"));

    // Re-running changes nothing.
    let rv = fake.resource_version();
    let again = pull_secret::apply_pull_secret(&client, &req).await.unwrap();
    assert!(again.iter().all(|o| !o.secret_changed), "{again:?}");
    assert!(
        again
            .iter()
            .all(|o| o.service_account == Some(AccountChange::AlreadyPresent))
    );
    assert_eq!(fake.resource_version(), rv);

    // A new token updates in place: same uid, new content.
    let uid =
        fake.get("v1", "secrets", Some("prod"), "ecr-pull").unwrap()["metadata"]["uid"].clone();
    let fresh = pull_secret::apply_pull_secret(&client, &pull_request("next-token", &["prod"]))
        .await
        .unwrap();
    assert!(fresh[0].secret_changed);
    assert_eq!(
        fake.get("v1", "secrets", Some("prod"), "ecr-pull").unwrap()["metadata"]["uid"],
        uid
    );
}

#[tokio::test]
async fn pull_secret_retries_throttling_and_conflicts() {
    health_predict::install_crypto_provider();
    let fake = FakeKube::start_store_only().await;
    fake.put(json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "health-predict", "namespace": "prod"}}));
    fake.fail_next("PATCH", "/secrets/ecr-pull", 429, 2);
    fake.fail_next("PUT", "/serviceaccounts/health-predict", 409, 1);
    let out = pull_secret::apply_pull_secret(&fake.client(), &pull_request("t", &["prod"]))
        .await
        .unwrap();
    assert_eq!(out[0].service_account, Some(AccountChange::Added));
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 2);
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 1);
}

#[tokio::test]
async fn pull_secret_failure_is_classified_without_leaking() {
    health_predict::install_crypto_provider();
    let fake = FakeKube::start_store_only().await;
    fake.fail_next("PATCH", "/secrets/ecr-pull", 403, 1);
    let err = pull_secret::apply_pull_secret(&fake.client(), &pull_request("leaky-pw", &["prod"]))
        .await
        .unwrap_err();
    let err = anyhow::Error::new(err);
    let (exit, hint) = health_predict::cli::errors::diagnose(&err);
    assert_eq!(exit, health_predict::exit::Exit::Infra);
    assert!(hint.unwrap().contains("RBAC"));
    let text = format!("{}{err:?}", health_predict::cli::errors::render(&err));
    assert!(!text.contains("leaky-pw"), "{text}");
    let _ = Duration::ZERO;
}

#[test]
fn manifests_validate_and_kind_maps_the_node_port() {
    use health_predict::kube::manifests;
    let docs = manifests::bundled().expect("bundled manifests parse");
    let problems = manifests::validate(&docs);
    assert!(problems.is_empty(), "{problems:#?}");
    // The files on disk are the ones bundled (no stale copy in the binary).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s");
    let mut on_disk = 0;
    for entry in std::fs::read_dir(&dir).expect("k8s/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let bundled = manifests::BUNDLED.iter().find(|(f, _)| *f == name);
            assert_eq!(
                bundled.map(|(_, t)| *t),
                Some(text.as_str()),
                "{name} is not bundled"
            );
            on_disk += 1;
        }
    }
    assert_eq!(on_disk, manifests::BUNDLED.len());
    let kind_text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kind-config/kind.yaml"),
    )
    .unwrap();
    let kind: serde_json::Value = serde_saphyr::from_str(&kind_text).unwrap();
    assert_eq!(kind["kind"], "Cluster");
    let mapped: Vec<u64> = kind["nodes"][0]["extraPortMappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["containerPort"].as_u64().unwrap())
        .collect();
    // ClusterIP unless asked; rendered as a NodePort for kind, on the port kind maps.
    assert_eq!(manifests::node_port(&docs), None);
    let rendered = manifests::render(
        &docs,
        &manifests::Render {
            namespace: "health-predict",
            image: "r.io/a:v1",
            change_cause: "x",
            ecr_refresher: None,
            service_type: manifests::ServiceType::NodePort,
        },
    );
    let node_port = manifests::node_port(&rendered).expect("fixed nodePort");
    assert!(
        mapped.contains(&u64::from(node_port)),
        "{mapped:?} vs {node_port}"
    );
}

// ---------------------------------------------------------------------------------------------
// deploy / verify / rollback scenarios against the fake API server

mod scenarios {
    use std::time::{Duration, Instant};

    use health_predict::kube::deploy::{self, DeployPlan, DeployRequest};
    use health_predict::kube::manifests;
    use health_predict::kube::verify::{FailureKind, PullSecretState, VerifyRequest};
    use serde_json::json;

    use crate::support::fake_kube::{Behaviour, FakeKube, Rollout, TELLING};

    const NS: &str = "health-predict";
    const GOOD: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/health-predict:good-v1";

    fn image(tag: &str) -> String {
        format!("123456789012.dkr.ecr.eu-west-1.amazonaws.com/health-predict:{tag}-v2")
    }

    fn plan(image: &str) -> DeployPlan {
        let mut verify = VerifyRequest::new(NS, manifests::APP);
        verify.timeout = Duration::from_secs(30);
        DeployPlan {
            deploy: DeployRequest {
                namespace: NS.into(),
                image: image.into(),
                change_cause: format!("test deploy {image}"),
                ecr_refresher: None,
                service_type: Default::default(),
                manifests: manifests::bundled().expect("manifests"),
            },
            verify: Some(verify),
            rollback_on_failure: true,
        }
    }

    /// A fake cluster where `GOOD` was deployed and verified.
    async fn cluster_with_good_release() -> FakeKube {
        health_predict::install_crypto_provider();
        let fake = FakeKube::start().await;
        let report = deploy::deploy_verified(&fake.client(), &plan(GOOD), None)
            .await
            .expect("first deploy");
        assert!(report.passed, "{report:#?}");
        assert_eq!(
            report
                .verify
                .as_ref()
                .expect("verified")
                .revision
                .as_deref(),
            Some("1")
        );
        fake
    }

    fn deployed_image(fake: &FakeKube) -> String {
        let d = fake
            .get("apps/v1", "deployments", Some(NS), manifests::APP)
            .expect("deployment");
        d["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .expect("image")
            .to_owned()
    }

    /// Deploys `tag` (which fails as `behaviour`), and checks the diagnosis, its latency, and that
    /// the automatic rollback's own verify passed.
    async fn failing_rollout(
        fake: &FakeKube,
        tag: &str,
        behaviour: Behaviour,
    ) -> health_predict::kube::verify::Failure {
        fake.on_image(tag, Rollout::new(behaviour));
        let report = deploy::deploy_verified(&fake.client(), &plan(&image(tag)), None)
            .await
            .expect("deploy runs");
        assert!(!report.passed);
        let verify = report.verify.clone().expect("verify ran");
        let failure = verify.failure.clone().expect("a diagnosis");
        let telling = fake
            .mark_wall(TELLING)
            .expect("the scenario emitted its telling event");
        let diagnosed = std::time::SystemTime::from(failure.detected_at);
        let latency = diagnosed
            .duration_since(telling)
            .expect("diagnosed after the telling event");
        eprintln!(
            "{tag}: {:?} diagnosed {latency:?} after the telling event",
            failure.kind
        );
        assert!(
            latency < Duration::from_secs(10),
            "diagnosis {latency:?} after the telling event"
        );
        assert_eq!(verify.revision.as_deref(), Some("2"));
        assert!(!verify.events.is_empty(), "events are reported");
        // The automatic rollback restored the previous template and its verify passed.
        let rollback = report.rollback.expect("rolled back");
        let outcome = rollback.outcome.expect("rollback applied");
        assert_eq!(outcome.to_revision, 1);
        assert_eq!(outcome.to_image.as_deref(), Some(GOOD));
        let again = rollback.verify.expect("rollback verified");
        assert!(again.passed, "{again:#?}");
        assert_eq!(again.revision.as_deref(), Some("3"));
        assert_eq!(deployed_image(fake), GOOD);
        failure
    }

    fn pull_secret(fake: &FakeKube, config: &str, expires_at: &str) {
        use base64::Engine;
        fake.put(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "ecr-pull", "namespace": NS,
                "annotations": {"health-predict.io/expires-at": expires_at}},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(config)}}));
    }

    const VALID_CONFIG: &str = r#"{"auths":{"123456789012.dkr.ecr.eu-west-1.amazonaws.com":{"username":"AWS","password":"x","auth":"QVdTOng="}}}"#;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missing_pull_secret() {
        let fake = cluster_with_good_release().await;
        let f = failing_rollout(&fake, "no-secret", Behaviour::ImagePullFails {
            message: "pull access denied, repository does not exist or may require authorization: authorization failed: no basic auth credentials".into(),
        })
        .await;
        assert_eq!(f.kind, FailureKind::ImagePull);
        assert_eq!(
            f.pull_secret,
            Some(PullSecretState::Missing {
                name: "ecr-pull".into()
            })
        );
        assert!(
            f.message.contains("ErrImagePull") || f.message.contains("ImagePullBackOff"),
            "{}",
            f.message
        );
        assert!(
            f.message.contains("the pull secret ecr-pull is missing"),
            "{}",
            f.message
        );
        assert!(
            f.hint.contains("health-predict ecr refresh-secret"),
            "{}",
            f.hint
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expired_token() {
        let fake = cluster_with_good_release().await;
        pull_secret(&fake, VALID_CONFIG, "2020-01-01T00:00:00Z");
        let f = failing_rollout(&fake, "expired", Behaviour::ImagePullFails {
            message: "failed to authorize: failed to fetch anonymous token: unexpected status: 403 Forbidden: Your authorization token has expired. Reauthenticate and try again.".into(),
        })
        .await;
        assert_eq!(f.kind, FailureKind::ImagePull);
        assert!(
            matches!(&f.pull_secret, Some(PullSecretState::Expired { name, .. }) if name == "ecr-pull"),
            "{:?}",
            f.pull_secret
        );
        assert!(
            f.message.contains("expired at 2020-01-01T00:00:00Z"),
            "{}",
            f.message
        );
        assert!(
            f.hint.contains("health-predict ecr refresh-secret"),
            "{}",
            f.hint
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn malformed_pull_secret() {
        let fake = cluster_with_good_release().await;
        pull_secret(
            &fake,
            r#"{"auths":{"docker.io":{"auth":"QVdTOng="}}}"#,
            "2099-01-01T00:00:00Z",
        );
        let f = failing_rollout(
            &fake,
            "malformed",
            Behaviour::ImagePullFails {
                message: "no basic auth credentials".into(),
            },
        )
        .await;
        assert!(
            matches!(&f.pull_secret, Some(PullSecretState::Malformed { problem, .. })
            if problem.contains("no credentials for registry 123456789012.dkr.ecr.eu-west-1.amazonaws.com")),
            "{:?}",
            f.pull_secret
        );
        assert!(
            f.hint.contains("health-predict ecr refresh-secret"),
            "{}",
            f.hint
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn crash_loop_with_logs() {
        let fake = cluster_with_good_release().await;
        let f = failing_rollout(&fake, "crashes", Behaviour::CrashLoop {
            logs: "starting health-predict serve\nloading /model/model.json\nerror: model file /model/model.json: checksum mismatch\n".into(),
            exit_code: 6,
        })
        .await;
        assert_eq!(f.kind, FailureKind::CrashLoop);
        assert!(f.message.contains("last exit code 6"), "{}", f.message);
        assert!(f.message.contains("checksum mismatch"), "{}", f.message);
        assert_eq!(f.logs.len(), 3, "{:?}", f.logs);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn create_container_config_error() {
        let fake = cluster_with_good_release().await;
        let f = failing_rollout(
            &fake,
            "cfgerr",
            Behaviour::ConfigError {
                message: "secret \"model-key\" not found".into(),
            },
        )
        .await;
        assert_eq!(f.kind, FailureKind::ContainerConfig);
        assert!(
            f.message
                .contains("CreateContainerConfigError: secret \"model-key\" not found"),
            "{}",
            f.message
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unschedulable() {
        let fake = cluster_with_good_release().await;
        let f = failing_rollout(&fake, "huge", Behaviour::Unschedulable {
            message: "0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.".into(),
        })
        .await;
        assert_eq!(f.kind, FailureKind::Unschedulable);
        assert!(f.message.contains("Insufficient memory"), "{}", f.message);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failing_readiness() {
        let fake = cluster_with_good_release().await;
        let f = failing_rollout(
            &fake,
            "notready",
            Behaviour::ReadinessFails {
                message: "HTTP probe failed with statuscode: 503".into(),
            },
        )
        .await;
        assert_eq!(f.kind, FailureKind::Readiness);
        assert!(
            f.message.contains("readiness probe failed 5 times"),
            "{}",
            f.message
        );
        assert!(f.hint.contains("/ready"), "{}", f.hint);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn progress_deadline() {
        let fake = cluster_with_good_release().await;
        let f = failing_rollout(
            &fake,
            "stuck",
            Behaviour::ProgressDeadline {
                after: Duration::from_secs(1),
            },
        )
        .await;
        assert_eq!(f.kind, FailureKind::ProgressDeadline);
        assert!(
            f.message.contains("progress deadline (120s)"),
            "{}",
            f.message
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_readiness_passes() {
        let fake = cluster_with_good_release().await;
        fake.on_image(
            "slow",
            Rollout::new(Behaviour::SlowReadiness {
                probe_failures: 3,
                ready_after: Duration::from_secs(2),
            }),
        );
        let started = Instant::now();
        let report = deploy::deploy_verified(&fake.client(), &plan(&image("slow")), None)
            .await
            .unwrap();
        assert!(report.passed, "{report:#?}");
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "passed before the pods were ready"
        );
        let v = report.verify.unwrap();
        assert!(
            v.events
                .iter()
                .any(|e| e.contains("Readiness probe failed")),
            "{:?}",
            v.events
        );
        assert!(report.rollback.is_none());
        assert_eq!(deployed_image(&fake), image("slow"));
    }

    /// Stands in for the API server's port-forward: a local server answering `/model-info`.
    struct FakeForwarder {
        base_url: String,
        calls: std::sync::Mutex<Vec<String>>,
    }

    impl health_predict::kube::forward::Forwarder for FakeForwarder {
        fn forward<'a>(
            &'a self,
            namespace: &'a str,
            service: &'a str,
            port: u16,
        ) -> health_predict::kube::forward::ForwardFuture<'a> {
            self.calls
                .lock()
                .expect("calls")
                .push(format!("{namespace}/{service}:{port}"));
            let url = self.base_url.clone();
            Box::pin(async move { Ok(health_predict::kube::forward::ForwardHandle::fixed(url)) })
        }
    }

    async fn model_info_server(version: &'static str) -> String {
        let app = axum::Router::new().route(
            "/model-info",
            axum::routing::get(move || async move {
                axum::Json(json!({"name": "readmission", "version": version}))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn model_version_is_checked_through_the_forwarder() {
        let fake = cluster_with_good_release().await;
        let fwd = FakeForwarder {
            base_url: model_info_server("7").await,
            calls: std::sync::Mutex::new(Vec::new()),
        };
        let mut req = VerifyRequest::new(NS, manifests::APP);
        req.timeout = Duration::from_secs(20);
        req.expected_version = Some("7".into());
        let ok = health_predict::kube::verify::verify(&fake.client(), &req, Some(&fwd))
            .await
            .expect("verify runs");
        assert!(ok.passed, "{ok:#?}");
        assert_eq!(ok.model_version.as_deref(), Some("7"));
        assert_eq!(
            *fwd.calls.lock().expect("calls"),
            vec!["health-predict/health-predict:80"]
        );

        req.expected_version = Some("8".into());
        let wrong = health_predict::kube::verify::verify(&fake.client(), &req, Some(&fwd))
            .await
            .expect("verify runs");
        assert!(!wrong.passed);
        let f = wrong.failure.expect("failure");
        assert_eq!(f.kind, FailureKind::ModelVersion);
        assert!(
            f.message.contains("reports version 7, expected 8"),
            "{}",
            f.message
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stale_generation_is_not_trusted() {
        let fake = cluster_with_good_release().await;
        // The controller takes 2 s to observe the new generation; meanwhile the status still says
        // "all replicas available" for generation 1.
        fake.on_image(
            "lagging",
            Rollout::healthy().observe_after(Duration::from_secs(2)),
        );
        let started = Instant::now();
        let report = deploy::deploy_verified(&fake.client(), &plan(&image("lagging")), None)
            .await
            .unwrap();
        assert!(report.passed, "{report:#?}");
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "trusted a stale status"
        );
        let v = report.verify.unwrap();
        assert_eq!(v.revision.as_deref(), Some("2"));
        assert_eq!(v.generation, Some(2));
    }
}

// ---------------------------------------------------------------------------------------------
// cluster helpers against fake `kind` / `minikube` scripts that fail in scripted ways

mod cluster {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use health_predict::kube::cluster::{self, ClusterRequest, Provider};
    use health_predict::retry::Backoff;

    const FAST: Backoff = Backoff {
        max_attempts: 3,
        base: Duration::from_millis(5),
        max_delay: Duration::from_millis(10),
        deadline: Duration::from_secs(30),
    };

    /// A fake CLI: logs each call's arguments; `create cluster`/`start` fail until the
    /// `fail_creates`-th call with `failure` on stderr.
    fn fake_tool(dir: &Path, name: &str, fail_creates: u32, failure: &str) -> PathBuf {
        let path = dir.join(name);
        let d = dir.display();
        let script = format!(
            r#"#!/bin/sh
echo "$*" >> "{d}/calls"
case "$1 $2" in
  "create cluster"|"start -p")
    for a in "$@"; do case "$prev" in --config) cat "$a" > "{d}/config-used";; esac; prev="$a"; done
    n=$(cat "{d}/count" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "{d}/count"
    if [ "$n" -le {fail_creates} ]; then echo "{failure}" >&2; exit 80; fi
    exit 0;;
  "get clusters") exit 0;;
  "status -p") echo "Profile not found"; exit 85;;
  "export logs") mkdir -p "$3"; echo "kubelet log" > "$3/kubelet.log"; exit 0;;
  "logs -p") echo "minikube log" > "$5"; exit 0;;
  *) exit 0;;
esac
"#
        );
        std::fs::write(&path, script).expect("write fake tool");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod fake tool");
        path
    }

    fn calls(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn request(provider: Provider, tool: PathBuf, dir: &Path) -> ClusterRequest {
        let mut r = ClusterRequest::new(provider, tool, "hp-test", dir.join("logs"));
        r.backoff = FAST;
        r
    }

    #[tokio::test]
    async fn kind_up_retries_after_cleaning_a_half_created_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let tool = fake_tool(
            dir.path(),
            "kind",
            1,
            "ERROR: failed to create cluster: node(s) already exist for a cluster with the name \"hp-test\"",
        );
        let report = cluster::up(&request(Provider::Kind, tool, dir.path()))
            .await
            .unwrap();
        assert_eq!(report.attempts, 2);
        let calls = calls(dir.path());
        assert_eq!(calls[0], "get clusters");
        assert!(
            calls[1].starts_with("create cluster --name hp-test --config "),
            "{calls:?}"
        );
        assert_eq!(calls[2], "delete cluster --name hp-test");
        assert!(calls[3].starts_with("create cluster"));
        // The bundled config with the fixed port mapping was used.
        let used = std::fs::read_to_string(dir.path().join("config-used")).unwrap();
        assert!(used.contains("containerPort: 30080"), "{used}");
    }

    #[tokio::test]
    async fn kind_up_gives_up_with_logs_exported() {
        let dir = tempfile::tempdir().unwrap();
        let tool = fake_tool(
            dir.path(),
            "kind",
            99,
            "ERROR: failed to create cluster: could not find a log line that matches \"Reached target .*Multi-User System.*\"",
        );
        let err = cluster::up(&request(Provider::Kind, tool, dir.path()))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("kind create cluster"), "{text}");
        let err = anyhow::Error::new(err);
        let rendered = health_predict::cli::errors::render(&err);
        assert!(
            rendered.contains("gave up after 3 attempt(s)"),
            "{rendered}"
        );
        assert!(rendered.contains("cluster logs exported to"), "{rendered}");
        assert!(
            rendered.contains("hint: run `health-predict cluster doctor`"),
            "{rendered}"
        );
        assert_eq!(
            health_predict::cli::errors::diagnose(&err).0,
            health_predict::exit::Exit::Infra
        );
        assert!(dir.path().join("logs/kubelet.log").exists());
    }

    #[tokio::test]
    async fn kind_port_conflict_is_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        let tool = fake_tool(
            dir.path(),
            "kind",
            99,
            "docker: Error response from daemon: Bind for 127.0.0.1:30080 failed: port is already allocated.",
        );
        let err = cluster::up(&request(Provider::Kind, tool, dir.path()))
            .await
            .unwrap_err();
        let text = health_predict::cli::errors::render(&anyhow::Error::new(err));
        assert!(text.contains("gave up after 1 attempt(s)"), "{text}");
        assert!(text.contains("hostPort in kind-config/kind.yaml"), "{text}");
    }

    #[tokio::test]
    async fn minikube_start_failure_purges_and_retries() {
        let dir = tempfile::tempdir().unwrap();
        let tool = fake_tool(
            dir.path(),
            "minikube",
            1,
            "X Exiting due to GUEST_PROVISION: Failed to start host: creating host: create: creating: container exited unexpectedly",
        );
        let report = cluster::up(&request(Provider::Minikube, tool, dir.path()))
            .await
            .unwrap();
        assert_eq!(report.attempts, 2);
        let calls = calls(dir.path());
        assert_eq!(
            calls,
            vec![
                "start -p hp-test --wait=all",
                "delete -p hp-test --purge",
                "start -p hp-test --wait=all"
            ]
        );
    }

    #[tokio::test]
    async fn load_image_warns_on_latest() {
        let dir = tempfile::tempdir().unwrap();
        let tool = fake_tool(dir.path(), "kind", 0, "");
        let req = request(Provider::Kind, tool, dir.path());
        let report = cluster::load_image(&req, "health-predict/api:latest")
            .await
            .unwrap();
        assert_eq!(report.warnings.len(), 1);
        assert!(report.warnings[0].contains("imagePullPolicy to Always"));
        let ok = cluster::load_image(&req, "health-predict/api:3f2c1e9")
            .await
            .unwrap();
        assert!(ok.warnings.is_empty());
        assert_eq!(
            calls(dir.path()).last().unwrap(),
            "load docker-image health-predict/api:3f2c1e9 --name hp-test"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The commands, run as the binary against the fake API server through a kubeconfig

mod commands {
    use std::process::Command;

    use crate::support::fake_kube::{Behaviour, FakeKube, Rollout};
    use crate::support::{bin, run};

    async fn run_async(mut cmd: Command) -> (i32, String, String) {
        tokio::task::spawn_blocking(move || run(&mut cmd))
            .await
            .expect("command thread")
    }

    fn cmd(kubeconfig: &std::path::Path, args: &[&str]) -> Command {
        let mut c = bin();
        c.args(args)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("GITHUB_ACTIONS")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env("HEALTH_PREDICT_VERIFY_TIMEOUT", "30");
        c
    }

    /// Mutable tags other than `:latest` were accepted; refresher settings were placeholders.
    #[tokio::test]
    async fn mutable_tags_and_an_unset_refresher_are_refused_before_any_request() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = FakeKube::start().await;
        let kc = fake.kubeconfig(dir.path());
        for tag in ["production", "stable", "main", "feature-x"] {
            let image = format!("r.io/api:{tag}");
            let (code, _, err) = run_async(cmd(&kc, &["deploy", "--image", &image])).await;
            assert_eq!(code, 2, "{tag}: {err}");
            assert!(err.contains(&format!("uses :{tag}")), "{err}");
            assert!(err.contains("digest"), "{err}");
        }
        let (code, _, err) = run_async(cmd(
            &kc,
            &[
                "deploy",
                "--image",
                "r.io/api:v3",
                "--ecr-refresher",
                "--no-verify",
            ],
        ))
        .await;
        assert_ne!(code, 0, "{err}");
        assert!(err.contains("--ecr-role-arn"), "{err}");
        assert!(
            fake.requests().is_empty(),
            "nothing was sent to the cluster"
        );
    }

    #[tokio::test]
    async fn latest_is_refused_with_a_hint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = FakeKube::start().await;
        let kc = fake.kubeconfig(dir.path());
        let (code, _, err) = run_async(cmd(&kc, &["deploy", "--image", "r.io/api:latest"])).await;
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("error: image reference `r.io/api:latest` uses :latest"),
            "{err}"
        );
        assert!(
            err.contains("hint: pass --image REGISTRY/REPO@sha256:DIGEST"),
            "{err}"
        );
        assert!(
            fake.requests().is_empty(),
            "nothing was sent to the cluster"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deploy_verify_fail_rollback_through_the_binary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = FakeKube::start().await;
        let kc = fake.kubeconfig(dir.path());
        let good = "r.io/health-predict/api:v1";
        let (code, out, err) =
            run_async(cmd(&kc, &["deploy", "--image", good, "--output", "json"])).await;
        assert_eq!(code, 0, "{out}\n{err}");
        let doc: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
        assert_eq!(doc["passed"], true);
        assert_eq!(doc["verify"]["revision"], "1");
        assert_eq!(doc["deploy"]["applied"].as_array().map(Vec::len), Some(6));

        fake.on_image(
            "v2-broken",
            Rollout::new(Behaviour::CrashLoop {
                logs: "error: no model at /model/model.json\n".into(),
                exit_code: 6,
            }),
        );
        let (code, out, err) = run_async(cmd(
            &kc,
            &["deploy", "--image", "r.io/health-predict/api:v2-broken"],
        ))
        .await;
        assert_eq!(code, 7, "{out}\n{err}");
        assert!(out.contains("verify: FAILED"), "{out}");
        assert!(out.contains("[crash_loop]"), "{out}");
        assert!(out.contains("no model at /model/model.json"), "{out}");
        assert!(
            out.contains("rolled back to revision 1 (image r.io/health-predict/api:v1)"),
            "{out}"
        );
        assert!(out.contains("rollback verify: passed"), "{out}");
        let d = fake
            .get(
                "apps/v1",
                "deployments",
                Some("health-predict"),
                "health-predict",
            )
            .expect("deployment");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            good
        );
        assert!(
            d["metadata"]["annotations"]["kubernetes.io/change-cause"]
                .as_str()
                .is_some_and(|c| c.contains("rollback to revision 1"))
        );

        // verify alone on the restored Deployment passes; rolling back again returns to the
        // broken image, whose verify fails (exit 7).
        let (code, out, err) = run_async(cmd(&kc, &["verify"])).await;
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(out.contains("passed"), "{out}");
        let (code, out, err) = run_async(cmd(&kc, &["rollback", "--output", "json"])).await;
        assert_eq!(code, 7, "{out}\n{err}");
        let doc: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
        assert_eq!(
            doc["rollback"]["to_image"],
            "r.io/health-predict/api:v2-broken"
        );
        assert_eq!(doc["verify"]["passed"], false);
        assert_eq!(doc["verify"]["failure"]["kind"], "crash_loop");
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn github_actions_gets_a_group_an_annotation_and_an_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = FakeKube::start().await;
        let kc = fake.kubeconfig(dir.path());
        let (code, out, err) = run_async(cmd(&kc, &["deploy", "--image", "r.io/api:v1"])).await;
        assert_eq!(code, 0, "{out}\n{err}");
        fake.on_image(
            "v2",
            Rollout::new(Behaviour::Unschedulable {
                message: "0/1 nodes are available: 1 Insufficient cpu.".into(),
            }),
        );
        let gh_output = dir.path().join("github_output");
        let mut c = cmd(
            &kc,
            &[
                "deploy",
                "--image",
                "r.io/api:v2",
                "--rollback-on-failure",
                "false",
            ],
        );
        c.env("GITHUB_ACTIONS", "true")
            .env("GITHUB_OUTPUT", &gh_output);
        let (code, out, err) = run_async(c).await;
        assert_eq!(code, 7, "{out}\n{err}");
        let group = err
            .find("::group::events and logs: health-predict/health-predict")
            .expect(&err);
        let end = err.find("::endgroup::").expect(&err);
        assert!(group < end);
        assert!(err[group..end].contains("FailedScheduling"), "{err}");
        assert!(err.contains("::error::verify health-predict/health-predict: pod cannot be scheduled: 0/1 nodes are available: 1 Insufficient cpu."), "{err}");
        assert!(!out.contains("rolled back"), "{out}");
        let written = std::fs::read_to_string(&gh_output).expect("GITHUB_OUTPUT");
        assert!(
            written.starts_with("deploy-passed<<ghadelimiter_") && written.contains("\nfalse\n"),
            "{written}"
        );
        let d = fake
            .get(
                "apps/v1",
                "deployments",
                Some("health-predict"),
                "health-predict",
            )
            .expect("deployment");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "r.io/api:v2"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Real cluster (the kind job on GitHub's runners): KUBECONFIG points at a kind cluster created by
// `health-predict cluster up`, and HEALTH_PREDICT_TEST_IMAGE names a serving image loaded into it
// (`health-predict cluster load-image`), tagged uniquely.

mod real_cluster {
    use std::time::Duration;

    use health_predict::kube::deploy::{self, DeployPlan, DeployRequest};
    use health_predict::kube::forward::{self, KubeForwarder};
    use health_predict::kube::manifests;
    use health_predict::kube::verify::{FailureKind, VerifyRequest};

    fn plan(ns: &str, image: &str) -> DeployPlan {
        let mut verify = VerifyRequest::new(ns, manifests::APP);
        verify.timeout = Duration::from_secs(240);
        DeployPlan {
            deploy: DeployRequest {
                namespace: ns.into(),
                image: image.into(),
                change_cause: format!("kind test {image}"),
                ecr_refresher: None,
                service_type: Default::default(),
                manifests: manifests::bundled().expect("manifests"),
            },
            verify: Some(verify),
            rollback_on_failure: true,
        }
    }

    #[tokio::test]
    #[ignore = "needs a kind cluster"]
    async fn deploy_forward_and_roll_back_on_kind() {
        health_predict::install_crypto_provider();
        let image = std::env::var("HEALTH_PREDICT_TEST_IMAGE").expect("HEALTH_PREDICT_TEST_IMAGE");
        let client = health_predict::kube::client().await.expect("kubeconfig");
        let ns = "health-predict-e2e";
        let report = deploy::deploy_verified(&client, &plan(ns, &image), None)
            .await
            .expect("deploy");
        assert!(report.passed, "{report:#?}");

        // Port-forward through the API server and reach the API.
        let fwd = KubeForwarder {
            client: client.clone(),
        };
        let handle = forward::forward_service(fwd.client.clone(), ns, manifests::APP, 80)
            .await
            .expect("port-forward");
        let body = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("http client")
            .get(format!("{}/health", handle.base_url()))
            .send()
            .await
            .expect("GET /health through the forward");
        assert!(body.status().is_success());

        // An image that does not exist: diagnosed as an image pull failure, rolled back.
        let missing = "ghcr.io/health-predict/does-not-exist:0000000";
        let report = deploy::deploy_verified(&client, &plan(ns, missing), Some(&fwd))
            .await
            .expect("deploy runs");
        assert!(!report.passed);
        let failure = report.verify.expect("verify").failure.expect("failure");
        assert_eq!(failure.kind, FailureKind::ImagePull, "{failure:#?}");
        let rollback = report.rollback.expect("rollback");
        assert!(rollback.verify.expect("verified").passed);
    }
}

#[tokio::test]
async fn deploy_without_namespace_rights_still_applies_the_rest() {
    use health_predict::kube::deploy::{self, DeployRequest};
    use health_predict::kube::manifests;
    health_predict::install_crypto_provider();
    let fake = FakeKube::start_store_only().await;
    // The cluster admin created the namespace; these credentials may not read it.
    fake.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "staging"}}));
    fake.fail_next("GET", "/api/v1/namespaces/staging", 403, 1);
    let out = deploy::deploy(
        &fake.client(),
        &DeployRequest {
            namespace: "staging".into(),
            image: "r.io/api:abc1234".into(),
            change_cause: "test".into(),
            ecr_refresher: Some(manifests::Refresher {
                role_arn: "arn:aws:iam::210987654321:role/refresher".into(),
                region: "us-east-2".into(),
            }),
            service_type: manifests::ServiceType::NodePort,
            manifests: manifests::bundled().expect("manifests"),
        },
    )
    .await
    .expect("deploy");
    let kinds: Vec<&str> = out.applied.iter().map(|a| a.kind.as_str()).collect();
    assert!(!kinds.contains(&"Namespace"), "{kinds:?}");
    assert!(
        kinds.contains(&"CronJob") && kinds.contains(&"RoleBinding"),
        "{kinds:?}"
    );
    let cj = fake
        .get("batch/v1", "cronjobs", Some("staging"), "ecr-refresher")
        .expect("cronjob");
    let container = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "r.io/api:abc1234");
    // The refresher is rendered from the request, not left at compiled-in placeholders.
    let args = container["args"].to_string();
    assert!(args.contains(r#""--namespace","staging""#), "{args}");
    let env = container["env"].to_string();
    assert!(
        env.contains("arn:aws:iam::210987654321:role/refresher"),
        "{env}"
    );
    assert!(
        env.contains("us-east-2") && !env.contains("set-by-health-predict-deploy"),
        "{env}"
    );
    assert!(kinds.contains(&"NetworkPolicy"), "{kinds:?}");
    let np = fake
        .get(
            "networking.k8s.io/v1",
            "networkpolicies",
            Some("staging"),
            "health-predict",
        )
        .expect("network policy");
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["port"], "http");
    let svc = fake
        .get("v1", "services", Some("staging"), "health-predict")
        .expect("service");
    assert_eq!(svc["spec"]["type"], "NodePort");
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30080);
    let rb = fake
        .get(
            "rbac.authorization.k8s.io/v1",
            "rolebindings",
            Some("staging"),
            "ecr-refresher",
        )
        .expect("rolebinding");
    assert_eq!(rb["subjects"][0]["namespace"], "staging");
    // A second deploy of the same image changes nothing but the Namespace it may now create.
    fake.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "staging"}}));
    let again = deploy::deploy(
        &fake.client(),
        &DeployRequest {
            namespace: "staging".into(),
            image: "r.io/api:abc1234".into(),
            change_cause: "test".into(),
            ecr_refresher: Some(manifests::Refresher {
                role_arn: "arn:aws:iam::210987654321:role/refresher".into(),
                region: "us-east-2".into(),
            }),
            service_type: manifests::ServiceType::NodePort,
            manifests: manifests::bundled().expect("manifests"),
        },
    )
    .await
    .expect("deploy");
    let changed: Vec<&str> = again
        .applied
        .iter()
        .filter(|a| a.changed)
        .map(|a| a.kind.as_str())
        .collect();
    assert_eq!(changed, vec!["Namespace"], "{again:?}");
}
