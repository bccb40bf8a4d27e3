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
    let (exit, hint) = health_predict::exit::diagnose(&err);
    assert_eq!(exit, health_predict::exit::Exit::Infra);
    assert!(hint.unwrap().contains("RBAC"));
    let text = format!("{}{err:?}", health_predict::exit::render(&err));
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
    let node_port = manifests::node_port(&docs).expect("fixed nodePort");
    assert!(
        mapped.contains(&u64::from(node_port)),
        "{mapped:?} vs {node_port}"
    );
}
