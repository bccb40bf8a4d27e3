//! Integration tests: aws. The binary runs against real programs on 127.0.0.1: `moto_server` for
//! STS and ECR (behind a fault-injection proxy), Debian's `docker-registry` with htpasswd auth, a
//! local GitHub OIDC token endpoint, and the fake Kubernetes API server. Registry-only push
//! tests (faults, chunks, bearer realms) are in `image`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::support::fake_kube::FakeKube;
use crate::support::moto::{Fault, FaultProxy, Moto};
use crate::support::registry::{Oidc, OidcConfig, Registry};
use crate::support::{bin, run};

const ROLE: &str = "arn:aws:iam::123456789012:role/health-predict-ci";
const SUB: &str = "repo:acme/health-predict:ref:refs/heads/main";
const REQUEST_TOKEN: &str = "runner-request-token-7f3a9c51d2";
const REGION: &str = "us-east-1";
const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

/// moto behind the fault proxy, the OIDC endpoint and the fake API server.
struct World {
    _moto: Moto,
    proxy: FaultProxy,
    oidc: Oidc,
    kube: FakeKube,
    dir: tempfile::TempDir,
}

async fn world() -> Option<World> {
    health_predict::install_crypto_provider();
    let moto = Moto::start()?;
    let proxy = FaultProxy::start(&moto.url).await;
    let oidc = Oidc::start(OidcConfig {
        request_token: REQUEST_TOKEN.into(),
        sub: SUB.into(),
    })
    .await;
    let kube = FakeKube::start_store_only().await;
    Some(World {
        _moto: moto,
        proxy,
        oidc,
        kube,
        dir: tempfile::tempdir().expect("tempdir"),
    })
}

impl World {
    /// The binary with a clean environment: OIDC variables as a runner with `id-token: write`
    /// sets them, the role ARN, moto (through the proxy) as the AWS endpoint, the fake cluster.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = bin();
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("NO_COLOR", "1")
            .env("ACTIONS_ID_TOKEN_REQUEST_URL", &self.oidc.url)
            .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN)
            .env("GITHUB_RUN_ID", "4242")
            .env("GITHUB_RUN_ATTEMPT", "1")
            .env("HEALTH_PREDICT_AWS_ROLE_ARN", ROLE)
            .env("AWS_REGION", REGION)
            .env("AWS_ENDPOINT_URL", &self.proxy.url)
            .env("KUBECONFIG", self.kube.kubeconfig(self.dir.path()))
            .args(args);
        c
    }

    fn model(&self) -> std::path::PathBuf {
        let p = self.dir.path().join("model.json");
        std::fs::write(&p, br#"{"format":"health-predict-model","trees":[]}"#).expect("model");
        p
    }

    /// The `.dockerconfigjson` of a pull secret in the fake cluster.
    fn pull_config(&self, ns: &str) -> Value {
        let s = self
            .kube
            .get("v1", "secrets", Some(ns), "ecr-pull")
            .expect("secret applied");
        assert_eq!(s["type"], "kubernetes.io/dockerconfigjson");
        let data = s["data"][".dockerconfigjson"].as_str().expect("data");
        serde_json::from_slice(&STANDARD.decode(data).expect("base64")).expect("json")
    }

    fn resource_version(&self, plural: &str, ns: &str, name: &str) -> String {
        self.kube.get("v1", plural, Some(ns), name).expect("object")["metadata"]["resourceVersion"]
            .as_str()
            .expect("rv")
            .to_owned()
    }
}

async fn exec(mut cmd: Command) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || run(&mut cmd))
        .await
        .expect("join")
}

fn json_of(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("one JSON document ({e}): {stdout}"))
}

/// Secret values that must never appear in output, with their base64 forms.
fn with_encodings(values: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for v in values.iter().filter(|v| v.len() >= 8) {
        out.push(v.clone());
        out.push(STANDARD.encode(v));
    }
    out
}

/// Asserts no secret occurs in `text` outside `::add-mask::` lines (which the runner consumes).
fn assert_no_leak(label: &str, text: &str, secrets: &[String]) {
    for line in text.lines() {
        if line.starts_with("::add-mask::") {
            continue;
        }
        for s in secrets {
            assert!(
                !line.contains(s.as_str()),
                "{label}: a secret value leaked in line: {line}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_oidc_sts_ecr_pull_secret_and_push_are_idempotent() {
    let Some(w) = world().await else { return };
    // An account that already pulls from another registry: its entry must survive.
    w.kube
        .put(json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "health-predict", "namespace": "prod"},
        "imagePullSecrets": [{"name": "dockerhub"}]}));
    let refresh = [
        "ecr",
        "refresh-secret",
        "--namespace",
        "prod,staging",
        "--service-account",
        "health-predict",
        "--output",
        "json",
        "-vv",
    ];
    let mut captured = String::new();
    let (code, out, err) = exec(w.cmd(&refresh)).await;
    captured.push_str(&out);
    captured.push_str(&err);
    assert_eq!(code, 0, "{err}");
    let report = json_of(&out);
    let cycle = &report["cycles"][0];
    assert_eq!(cycle["registry"], ECR_HOST);
    assert_eq!(cycle["credentials"], "github-oidc");
    assert_eq!(cycle["changed"], true);
    // moto answers a fixed expiry; it is reported as given.
    assert_eq!(cycle["expires_at"], "2015-01-01T00:00:00Z");
    assert_eq!(cycle["namespaces"].as_array().expect("ns").len(), 2);
    // OIDC token for STS's audience -> one STS exchange -> ECR token.
    assert_eq!(w.oidc.audiences(), vec!["sts.amazonaws.com".to_owned()]);
    assert_eq!(w.proxy.calls("AssumeRoleWithWebIdentity"), 1);
    assert_eq!(w.proxy.calls("GetAuthorizationToken"), 1);

    // The Secret in both namespaces carries the ECR credential; the accounts list it.
    let mut login = None;
    for ns in ["prod", "staging"] {
        let config = w.pull_config(ns);
        let auth = config["auths"][ECR_HOST]["auth"].as_str().expect("auth");
        let pair = String::from_utf8(STANDARD.decode(auth).expect("b64")).expect("utf8");
        let (user, password) = pair.split_once(':').expect("user:password");
        assert_eq!(user, "AWS");
        login = Some((user.to_owned(), password.to_owned()));
    }
    let names = |ns: &str| -> Vec<String> {
        w.kube
            .get("v1", "serviceaccounts", Some(ns), "health-predict")
            .expect("account")["imagePullSecrets"]
            .as_array()
            .expect("list")
            .iter()
            .map(|r| r["name"].as_str().expect("name").to_owned())
            .collect()
    };
    assert_eq!(names("prod"), ["dockerhub", "ecr-pull"]);
    assert_eq!(names("staging"), ["ecr-pull"]);
    let versions = |w: &World| {
        [
            w.resource_version("secrets", "prod", "ecr-pull"),
            w.resource_version("secrets", "staging", "ecr-pull"),
            w.resource_version("serviceaccounts", "prod", "health-predict"),
            w.resource_version("serviceaccounts", "staging", "health-predict"),
        ]
    };
    let before = versions(&w);

    // Re-running changes nothing.
    let (code, out, err) = exec(w.cmd(&refresh)).await;
    captured.push_str(&out);
    captured.push_str(&err);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_of(&out)["cycles"][0]["changed"], false);
    assert_eq!(versions(&w), before);
    assert_eq!(names("prod"), ["dockerhub", "ecr-pull"]);

    // The registry accepts exactly that credential (user AWS, the ECR password), as ECR would:
    // moto does not serve /v2, so its htpasswd user is made from the pull secret's `auth`.
    let (user, password) = login.expect("credential");
    let Some(registry) = Registry::start(&user, &password) else {
        return;
    };
    let model = w.model();
    let push = [
        "image",
        "push",
        "--ecr",
        "--create-repository",
        "--registry",
        registry.url.as_str(),
        "--repository",
        "health-predict",
        "--tag",
        "e2e",
        "--model",
        model.to_str().expect("utf8"),
        "--serve-arg=--host=0.0.0.0",
        "--output",
        "json",
        "-vv",
    ];
    let (code, out, err) = exec(w.cmd(&push)).await;
    captured.push_str(&out);
    captured.push_str(&err);
    assert_eq!(code, 0, "{err}");
    let first = json_of(&out);
    let digest = first["digest"].as_str().expect("digest").to_owned();
    assert!(digest.starts_with("sha256:"));
    assert_eq!(first["repository_created"], true);
    assert_eq!(first["uploaded_blobs"], 2);
    let host = registry.url.trim_start_matches("http://");
    assert_eq!(
        first["reference"],
        format!("{host}/health-predict@{digest}")
    );

    // The registry serves the manifest under the tag with the same digest.
    let http = reqwest::Client::new();
    let manifest = http
        .get(format!("{}/v2/health-predict/manifests/e2e", registry.url))
        .basic_auth(&user, Some(&password))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .expect("manifest");
    assert_eq!(manifest.status(), 200);
    assert_eq!(
        manifest.headers()["docker-content-digest"]
            .to_str()
            .expect("digest"),
        digest
    );
    let manifest: Value = manifest.json().await.expect("json");
    let config_digest = manifest["config"]["digest"].as_str().expect("config");
    let config: Value = http
        .get(format!(
            "{}/v2/health-predict/blobs/{config_digest}",
            registry.url
        ))
        .basic_auth(&user, Some(&password))
        .send()
        .await
        .expect("config")
        .json()
        .await
        .expect("config json");
    assert_eq!(
        config["config"]["Entrypoint"],
        json!([
            "/usr/local/bin/health-predict",
            "serve",
            "--model",
            "/model/model.json",
            "--host=0.0.0.0"
        ])
    );

    // Pushing again uploads nothing and names the same image.
    let (code, out, err) = exec(w.cmd(&push)).await;
    captured.push_str(&out);
    captured.push_str(&err);
    assert_eq!(code, 0, "{err}");
    let again = json_of(&out);
    assert_eq!(again["digest"], digest);
    assert_eq!(again["uploaded_blobs"], 0);
    assert_eq!(again["existing_blobs"], 2);
    assert_eq!(again["repository_created"], false);

    // The image's layer really runs: unpack it and start the binary in a chroot (root only).
    if run(Command::new("id").arg("-u")).1.trim() == "0" {
        let layer = manifest["layers"][0]["digest"].as_str().expect("layer");
        let bytes = http
            .get(format!("{}/v2/health-predict/blobs/{layer}", registry.url))
            .basic_auth(&user, Some(&password))
            .send()
            .await
            .expect("layer")
            .bytes()
            .await
            .expect("bytes");
        let root = w.dir.path().join("rootfs");
        unpack(&bytes, &root);
        let (code, out, err) = run(Command::new("chroot")
            .arg(&root)
            .arg("/usr/local/bin/health-predict")
            .arg("--version"));
        assert_eq!(code, 0, "the image's binary does not start: {err}");
        assert!(out.starts_with("health-predict "), "{out}");
    }

    let mut secrets = vec![REQUEST_TOKEN.to_owned(), password.clone()];
    secrets.extend(w.oidc.issued());
    secrets.extend(w.proxy.xml_values("SecretAccessKey"));
    secrets.extend(w.proxy.xml_values("SessionToken"));
    secrets.push(format!("AWS:{password}"));
    assert_no_leak("e2e", &captured, &with_encodings(&secrets));
}

/// Unpacks a gzipped tar with the system `tar` (an independent reader of our layer format).
fn unpack(gz: &[u8], root: &Path) {
    std::fs::create_dir_all(root).expect("root");
    let file = root.with_extension("tar.gz");
    std::fs::write(&file, gz).expect("layer file");
    let (code, _, err) = run(Command::new("tar")
        .arg("xzf")
        .arg(&file)
        .arg("-C")
        .arg(root));
    assert_eq!(code, 0, "tar: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leak_test_no_secret_value_appears_in_any_output() {
    let Some(w) = world().await else { return };
    let ecr_password = "123456789012-auth-token";
    let Some(registry) = Registry::start("AWS", ecr_password) else {
        return;
    };
    let gh_output = w.dir.path().join("github_output");
    let summary = w.dir.path().join("summary.md");
    let actions = |mut c: Command| {
        c.env("GITHUB_ACTIONS", "true")
            .env("GITHUB_OUTPUT", &gh_output)
            .env("GITHUB_STEP_SUMMARY", &summary);
        c
    };
    let model = w.model();
    let model = model.to_str().expect("utf8");
    let docker = w.dir.path().join("docker");
    let docker = docker.to_str().expect("utf8");
    let mut captured = String::new();
    let mut runs: Vec<(Vec<&str>, Option<i32>)> = vec![
        (
            vec![
                "ecr",
                "login",
                "--docker-config",
                docker,
                "-vv",
                "--output",
                "json",
            ],
            Some(0),
        ),
        (
            vec!["ecr", "login", "--docker-config", docker, "-vv"],
            Some(0),
        ),
        (
            vec![
                "ecr",
                "refresh-secret",
                "-n",
                "prod,staging",
                "--service-account",
                "sa",
                "-vv",
            ],
            Some(0),
        ),
        (
            vec![
                "ecr",
                "refresh-secret",
                "-n",
                "prod",
                "--watch",
                "--max-cycles",
                "1",
                "-vv",
                "--output",
                "json",
            ],
            Some(0),
        ),
        (
            vec![
                "image",
                "push",
                "--ecr",
                "--registry",
                &registry.url,
                "--repository",
                "hp",
                "--tag",
                "leak",
                "--model",
                model,
                "-vv",
            ],
            Some(0),
        ),
    ];
    for (args, expect) in runs.drain(..) {
        let (code, out, err) = exec(actions(w.cmd(&args))).await;
        if let Some(e) = expect {
            assert_eq!(code, e, "{args:?}: {err}");
        }
        captured.push_str(&out);
        captured.push_str(&err);
        assert!(
            err.contains("::add-mask::"),
            "{args:?}: masks are registered in Actions (on stderr)"
        );
    }

    // Every documented log filter, and the SDK's own modules by name (a specific directive such
    // as `aws_smithy_runtime::client::orchestrator=trace` once beat the appended cap and printed
    // the token before its mask): the SDK's events below WARN are dropped at the layer.
    let filters = [
        "trace",
        "debug",
        "info,health_predict=trace",
        "aws_smithy_runtime::client::orchestrator=trace",
        "aws_smithy_runtime=trace,aws_sdk_ecr=trace,aws_sdk_sts=trace,aws_config=trace",
        "trace,aws_smithy_runtime::client::orchestrator=trace,hyper=trace,h2=trace,reqwest=trace",
    ];
    for filter in filters {
        let mut runs = vec![
            vec!["ecr", "login", "--docker-config", docker],
            vec!["ecr", "refresh-secret", "-n", "prod"],
        ];
        if filter.contains("orchestrator") {
            runs.push(vec![
                "image",
                "push",
                "--ecr",
                "--registry",
                &registry.url,
                "--repository",
                "hp",
                "--tag",
                "leak-log",
                "--model",
                model,
                "-vv",
            ]);
        }
        for args in runs {
            let mut c = actions(w.cmd(&args));
            c.env("HEALTH_PREDICT_LOG", filter);
            let (code, out, err) = exec(c).await;
            assert_eq!(code, 0, "{filter} {args:?}: {err}");
            if filter == "trace" {
                assert!(err.lines().count() > 20, "trace logging is on");
            }
            assert!(
                !err.lines()
                    .any(|l| l.contains("aws_smithy") || l.contains("orchestrator")),
                "{filter} {args:?}: SDK events below WARN reached stderr:\n{err}"
            );
            captured.push_str(&out);
            captured.push_str(&err);
        }
    }

    // Failure paths print errors: they must not carry secrets either.
    w.proxy.inject(
        "AssumeRoleWithWebIdentity",
        [Fault::sts(
            403,
            "AccessDenied",
            "Not authorized to perform sts:AssumeRoleWithWebIdentity",
        )],
    );
    let (code, out, err) = exec(actions(w.cmd(&[
        "ecr",
        "login",
        "--docker-config",
        docker,
        "-vv",
    ])))
    .await;
    assert_eq!(code, 2, "{err}");
    captured.push_str(&out);
    captured.push_str(&err);
    w.proxy.inject(
        "GetAuthorizationToken",
        [Fault::ecr(400, "AccessDeniedException", "not authorized")],
    );
    let (code, out, err) = exec(actions(w.cmd(&[
        "ecr",
        "login",
        "--docker-config",
        docker,
        "-vv",
    ])))
    .await;
    assert_eq!(code, 5, "{err}");
    captured.push_str(&out);
    captured.push_str(&err);
    let wrong_password = "wrong-registry-password-81c2";
    let mut push = w.cmd(&[
        "image",
        "push",
        "--registry",
        &registry.url,
        "--repository",
        "hp",
        "--tag",
        "x",
        "--model",
        model,
        "--registry-user",
        "AWS",
        "-vv",
    ]);
    push.env("HEALTH_PREDICT_REGISTRY_PASSWORD", wrong_password);
    let (code, out, err) = exec(actions(push)).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("rejected the credentials"), "{err}");
    captured.push_str(&out);
    captured.push_str(&err);

    let mut secrets = vec![
        REQUEST_TOKEN.to_owned(),
        ecr_password.to_owned(),
        format!("AWS:{ecr_password}"),
        wrong_password.to_owned(),
        format!("AWS:{wrong_password}"),
    ];
    let issued = w.oidc.issued();
    assert!(
        issued.len() >= 6,
        "a fresh OIDC token per run: {}",
        issued.len()
    );
    for jwt in &issued {
        secrets.push(jwt.clone());
        // The signature part alone is secret material too.
        secrets.push(jwt.rsplit('.').next().expect("sig").to_owned());
    }
    let keys = w.proxy.xml_values("SecretAccessKey");
    let sessions = w.proxy.xml_values("SessionToken");
    assert!(
        !keys.is_empty() && !sessions.is_empty(),
        "STS issued credentials"
    );
    secrets.extend(keys);
    secrets.extend(sessions.clone());
    let secrets = with_encodings(&secrets);
    captured.push_str(&std::fs::read_to_string(&gh_output).unwrap_or_default());
    captured.push_str(&std::fs::read_to_string(&summary).unwrap_or_default());
    assert_no_leak("leak test", &captured, &secrets);

    // And the values were registered with the runner's masker before use.
    let masks: Vec<&str> = captured
        .lines()
        .filter_map(|l| l.strip_prefix("::add-mask::"))
        .collect();
    for must in [
        REQUEST_TOKEN,
        ecr_password,
        sessions[0].as_str(),
        issued[0].as_str(),
    ] {
        assert!(
            masks.contains(&must),
            "not masked: a value of length {}",
            must.len()
        );
    }
    // The error still says what to change: the token's claims, never the token.
    assert!(captured.contains(SUB), "claims shown for AccessDenied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_5xx_and_timeouts_are_retried_with_fresh_tokens() {
    let Some(w) = world().await else { return };
    w.proxy.inject(
        "AssumeRoleWithWebIdentity",
        [
            Fault::sts(503, "ServiceUnavailable", "try later"),
            Fault::sts(429, "Throttling", "Rate exceeded"),
        ],
    );
    // Three faults, so one slow answer from a busy moto still fits the five attempts.
    w.proxy.inject(
        "GetAuthorizationToken",
        [
            Fault::ecr(400, "ThrottlingException", "Rate exceeded"),
            Fault::ecr(500, "ServerException", "internal"),
            Fault::Delay(Duration::from_secs(12)),
        ],
    );
    let docker = w.dir.path().join("docker");
    let (code, out, err) = exec(w.cmd(&[
        "ecr",
        "login",
        "--docker-config",
        docker.to_str().expect("utf8"),
        "--aws-timeout",
        "5s",
        "--output",
        "json",
    ]))
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_of(&out)["registry"], ECR_HOST);
    assert_eq!(w.proxy.calls("AssumeRoleWithWebIdentity"), 3);
    assert_eq!(w.proxy.calls("GetAuthorizationToken"), 4);
    // Every STS attempt used a token fetched for it.
    let issued = w.oidc.issued();
    assert_eq!(issued.len(), 3);
    let mut distinct = issued.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 3);
    let config: Value =
        serde_json::from_slice(&std::fs::read(docker.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(
        config["auths"][ECR_HOST]["auth"],
        STANDARD.encode("AWS:123456789012-auth-token")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_failures_are_reported_with_hints_not_retried() {
    let Some(w) = world().await else { return };
    let login = ["ecr", "login", "--docker-config", "unused-dir"];

    // A trust policy that rejects the token's sub: the claims and the fix, once.
    w.proxy.inject(
        "AssumeRoleWithWebIdentity",
        [Fault::sts(
            403,
            "AccessDenied",
            "Not authorized to perform sts:AssumeRoleWithWebIdentity",
        )],
    );
    let (code, _, err) = exec(w.cmd(&login)).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("sub=\"{SUB}\"")), "{err}");
    assert!(err.contains("aud=\"sts.amazonaws.com\""), "{err}");
    assert!(
        err.contains("hint:") && err.contains("trust policy"),
        "{err}"
    );
    assert_eq!(w.proxy.calls("AssumeRoleWithWebIdentity"), 1);

    // An expired web identity token.
    w.proxy.inject(
        "AssumeRoleWithWebIdentity",
        [Fault::sts(
            400,
            "ExpiredTokenException",
            "Token expired: current date/time is past the exp",
        )],
    );
    let (code, _, err) = exec(w.cmd(&login)).await;
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("has expired"), "{err}");
    assert!(err.contains("hint:") && err.contains("clock"), "{err}");

    // ECR refuses: reported at once, exit 5 (infrastructure), not retried.
    let before = w.proxy.calls("GetAuthorizationToken");
    w.proxy.inject(
        "GetAuthorizationToken",
        [Fault::ecr(
            400,
            "AccessDeniedException",
            "not authorized to perform ecr:GetAuthorizationToken",
        )],
    );
    let (code, _, err) = exec(w.cmd(&login)).await;
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("AccessDeniedException"), "{err}");
    assert!(err.contains("after 1 attempt(s)"), "{err}");
    assert_eq!(w.proxy.calls("GetAuthorizationToken"), before + 1);

    // Transient failures that never end: bounded, then reported.
    w.proxy.inject(
        "GetAuthorizationToken",
        (0..5).map(|_| Fault::ecr(500, "ServerException", "internal")),
    );
    let (code, _, err) = exec(w.cmd(&login)).await;
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("after 5 attempt(s)"), "{err}");

    // In GitHub Actions without `id-token: write` the runner sets no token variables.
    let mut c = w.cmd(&login);
    c.env_remove("ACTIONS_ID_TOKEN_REQUEST_URL")
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
        .env("GITHUB_ACTIONS", "true");
    let (code, _, err) = exec(c).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("id-token: write"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_refreshes_each_cycle_and_stops_on_sigterm() {
    let Some(w) = world().await else { return };
    let (code, out, err) = exec(w.cmd(&[
        "ecr",
        "refresh-secret",
        "-n",
        "prod",
        "--watch",
        "--min-interval",
        "1s",
        "--max-cycles",
        "2",
        "--output",
        "json",
    ]))
    .await;
    assert_eq!(code, 0, "{err}");
    let report = json_of(&out);
    let cycles = report["cycles"].as_array().expect("cycles");
    assert_eq!(cycles.len(), 2);
    assert_eq!(cycles[0]["changed"], true);
    assert_eq!(cycles[1]["changed"], false);
    // Each cycle gets fresh credentials (a new OIDC token and STS session).
    assert_eq!(w.oidc.issued().len(), 2);

    // Without a cycle limit it runs until SIGTERM, then exits cleanly.
    w.kube.delete("v1", "secrets", Some("prod"), "ecr-pull");
    let mut child = w
        .cmd(&[
            "ecr",
            "refresh-secret",
            "-n",
            "prod",
            "--watch",
            "--min-interval",
            "1h",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    while w
        .kube
        .get("v1", "secrets", Some("prod"), "ecr-pull")
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "the first refresh never happened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "SIGTERM did not stop --watch");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_cronjob_uses_the_web_identity_token_file() {
    let Some(w) = world().await else { return };
    // What the CronJob in k8s/ecr-refresher.yaml sets: a projected service-account token file,
    // the role, the region and a session name; no GitHub variables and no keys.
    let token_file = w.dir.path().join("token");
    let jwt = format!(
        "eyJhbGciOiJSUzI1NiJ9.{}.c2lnbmF0dXJl",
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"sub":"system:serviceaccount:health-predict:ecr-refresher","aud":"sts.amazonaws.com"}"#)
    );
    std::fs::write(&token_file, &jwt).expect("token file");
    let mut c = w.cmd(&[
        "ecr",
        "refresh-secret",
        "--namespace",
        "health-predict",
        "--secret-name",
        "ecr-pull",
        "--service-account",
        "health-predict",
        "--output",
        "json",
        "-vv",
    ]);
    c.env_remove("ACTIONS_ID_TOKEN_REQUEST_URL")
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
        .env_remove("HEALTH_PREDICT_AWS_ROLE_ARN")
        .env(
            "AWS_ROLE_ARN",
            "arn:aws:iam::123456789012:role/health-predict-ecr-refresher",
        )
        .env("AWS_WEB_IDENTITY_TOKEN_FILE", &token_file)
        .env("AWS_ROLE_SESSION_NAME", "health-predict-ecr-refresher");
    let (code, out, err) = exec(c).await;
    assert_eq!(code, 0, "{err}");
    let report = json_of(&out);
    assert_eq!(report["cycles"][0]["credentials"], "default-chain");
    assert_eq!(w.proxy.calls("AssumeRoleWithWebIdentity"), 1);
    assert!(w.oidc.issued().is_empty(), "no GitHub token in a pod");
    assert_eq!(
        w.pull_config("health-predict")["auths"][ECR_HOST]["auth"],
        STANDARD.encode("AWS:123456789012-auth-token")
    );
    assert!(!err.contains(&jwt) && !out.contains(&jwt));
}

#[test]
fn help_text_of_the_aws_commands() {
    for args in [
        &["ecr", "login", "--help"][..],
        &["ecr", "refresh-secret", "--help"][..],
        &["image", "push", "--help"][..],
    ] {
        let (code, out, err) = run(bin().env_clear().env("NO_COLOR", "1").args(args));
        assert_eq!(code, 0, "{err}");
        insta::assert_snapshot!(args[..2].join("-"), out);
    }
}

/// Real AWS, opt-in: a GitHub Actions job with `id-token: write` and a role trusted for this
/// repository (HEALTH_PREDICT_AWS_ROLE_ARN, AWS_REGION) runs it with `--ignored`.
#[test]
#[ignore = "needs AWS: a role trusted for this repository's GitHub OIDC tokens"]
fn real_aws_login_and_push() {
    for var in [
        "HEALTH_PREDICT_AWS_ROLE_ARN",
        "AWS_REGION",
        "ACTIONS_ID_TOKEN_REQUEST_URL",
    ] {
        assert!(std::env::var_os(var).is_some(), "{var} must be set");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, out, err) = run(bin().args([
        "ecr",
        "login",
        "--docker-config",
        dir.path().to_str().expect("utf8"),
        "--output",
        "json",
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(
        json_of(&out)["registry"]
            .as_str()
            .expect("registry")
            .contains(".dkr.ecr.")
    );
    let model = dir.path().join("model.json");
    std::fs::write(&model, b"{}").expect("model");
    let (code, out, err) = run(bin().args([
        "image",
        "push",
        "--ecr",
        "--create-repository",
        "--repository",
        "health-predict-ci-check",
        "--tag",
        "ci",
        "--model",
        model.to_str().expect("utf8"),
        "--output",
        "json",
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(
        json_of(&out)["digest"]
            .as_str()
            .expect("digest")
            .starts_with("sha256:")
    );
}
