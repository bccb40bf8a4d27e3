//! Integration tests: apitest. The suite runs against the real server (in-process, 127.0.0.1:0)
//! and against deliberately broken servers (small axum apps): no model, wrong version, slow,
//! wrong schema, nothing listening. JUnit output is read back with quick-junit.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns panic on purpose, like the tests

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use health_predict::apitest::{SuiteConfig, SuiteReport, Verdict, junit_xml, run_suite};
use health_predict::exit::Exit;
use health_predict::serve::{ModelSource, ServeConfig, ServerHandle, start};
use quick_junit::{NonSuccessKind, Report, TestCaseStatus};
use serde_json::json;

use crate::support::scorer::TestScorer;
use crate::support::{bin, run};

async fn serve(source: ModelSource, tweak: impl FnOnce(&mut ServeConfig)) -> ServerHandle {
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), source);
    tweak(&mut config);
    let mut h = start(config).await.unwrap();
    h.wait_ready(Duration::from_secs(20)).await.unwrap();
    h
}

/// Serves a router on 127.0.0.1:0 until the test ends.
async fn fake(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn quick(base: &str) -> SuiteConfig {
    let mut c = SuiteConfig::new(base);
    c.latency_requests = 40;
    c.concurrency = 4;
    c.ready_timeout = Duration::from_secs(2);
    // Timing is not under test here (a shared CI machine can be slow); the slow-server test
    // sets a tight budget against a server that is certainly slower.
    c.latency_budget = Duration::from_secs(5);
    c
}

fn check<'r>(r: &'r SuiteReport, name: &str) -> &'r health_predict::apitest::CheckResult {
    r.checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name} in {:?}", r.checks))
}

fn failed(r: &SuiteReport) -> Vec<&str> {
    r.checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name.as_str())
        .collect()
}

fn model_info() -> serde_json::Value {
    json!({"name": "m", "version": "v1", "data_fingerprint": "sha256:x", "metrics": {},
           "threshold": 0.5, "loaded_at": "2026-11-23T00:00:00Z"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_against_serve_and_junit_reads_back() {
    let h = serve(TestScorer::new("v3").source(), |_| {}).await;
    let mut cfg = quick(&h.base_url());
    cfg.expect_version = Some("v3".into());
    let report = run_suite(&cfg).await.unwrap();
    let failures: Vec<_> = report.checks.iter().filter(|c| !c.passed).collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(report.exit(), Exit::Success);
    assert_eq!(report.model_version.as_deref(), Some("v3"));
    for name in [
        "ready",
        "health",
        "model_info",
        "model_version",
        "predict_valid",
        "predict_batch",
        "missing_field_422",
        "wrong_type_422",
        "malformed_json_4xx",
        "unknown_category_200",
        "every_age_bracket",
        "oversized_body_413",
        "concurrent_requests",
        "latency_p95",
    ] {
        assert!(check(&report, name).passed);
    }

    let xml = String::from_utf8(junit_xml(&report)).unwrap();
    let junit = Report::deserialize_from_str(&xml).unwrap();
    assert_eq!(junit.test_suites.len(), 1);
    let suite = &junit.test_suites[0];
    assert_eq!(suite.tests, report.checks.len());
    assert_eq!(suite.failures, 0);
    assert!(suite.test_cases.iter().all(|c| c.time.is_some()));
    h.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_version_fails_only_the_version_check() {
    let h = serve(TestScorer::new("v1").source(), |_| {}).await;
    let mut cfg = quick(&h.base_url());
    cfg.expect_version = Some("v2".into());
    let report = run_suite(&cfg).await.unwrap();
    assert_eq!(failed(&report), ["model_version"]);
    assert_eq!(
        check(&report, "model_version").message,
        "expected model version v2, the server reports v1"
    );
    assert_eq!(report.exit(), Exit::TestsFailed);
    h.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_server_fails_the_latency_budget() {
    let scorer = TestScorer::new("v1");
    let h = serve(scorer.source(), |_| {}).await;
    scorer.delay_ms.store(30, Ordering::Relaxed);
    let mut cfg = quick(&h.base_url());
    cfg.latency_requests = 10;
    cfg.latency_budget = Duration::from_millis(20);
    let report = run_suite(&cfg).await.unwrap();
    let latency = check(&report, "latency_p95");
    assert!(!latency.passed);
    assert!(
        latency.message.starts_with("too slow: 10 requests: p50"),
        "{}",
        latency.message
    );
    assert!(
        latency.message.contains("(budget p95 20 ms)"),
        "{}",
        latency.message
    );
    assert!(check(&report, "predict_valid").passed);
    h.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_without_a_model_fails_readiness_and_predictions() {
    // The upstream's failure: healthy, but no model. /ready says 503 forever.
    let not_ready = || async {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "failed", "reason": "model file not found"})),
        )
    };
    let app = Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/ready", get(not_ready))
        .route("/model-info", get(not_ready))
        .route("/predict", post(not_ready))
        .route("/predict/batch", post(not_ready));
    let base = fake(app).await;
    let mut cfg = quick(&base);
    cfg.ready_timeout = Duration::from_millis(500);
    let report = run_suite(&cfg).await.unwrap();
    let ready = check(&report, "ready");
    assert!(!ready.passed);
    assert!(
        ready.message.contains("GET /ready answered HTTP 503"),
        "{}",
        ready.message
    );
    assert!(
        ready.message.ends_with(": model file not found"),
        "{}",
        ready.message
    );
    assert!(check(&report, "health").passed);
    let predict = check(&report, "predict_valid");
    assert!(!predict.passed);
    assert_eq!(
        predict.message,
        "expected HTTP 200, got 503: model file not found"
    );
    assert!(
        predict
            .request
            .as_deref()
            .unwrap()
            .starts_with("POST /predict\n{")
    );
    assert!(
        predict
            .response
            .as_deref()
            .unwrap()
            .contains("model file not found")
    );

    let xml = String::from_utf8(junit_xml(&report)).unwrap();
    let junit = Report::deserialize_from_str(&xml).unwrap();
    let case = junit.test_suites[0]
        .test_cases
        .iter()
        .find(|c| c.name.as_str() == "predict_valid")
        .unwrap();
    match &case.status {
        TestCaseStatus::NonSuccess { kind, message, .. } => {
            assert_eq!(*kind, NonSuccessKind::Failure);
            assert_eq!(
                message.as_ref().unwrap().as_str(),
                "expected HTTP 200, got 503: model file not found"
            );
        }
        other => panic!("predict_valid should fail: {other:?}"),
    }
    let out = case.system_out.as_ref().unwrap().as_str();
    assert!(out.contains("request:\nPOST /predict"), "{out}");
    assert!(out.contains("response:\nHTTP 503"), "{out}");
    assert_eq!(report.exit(), Exit::TestsFailed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_with_the_wrong_schema_fails_contract_checks() {
    // Answers 200 to everything, with its own field names.
    let wrong = || async { axum::Json(json!({"label": "yes", "score": 0.7})) };
    let app = Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route(
            "/ready",
            get(|| async { axum::Json(json!({"status": "ready"})) }),
        )
        .route("/model-info", get(|| async { axum::Json(model_info()) }))
        .route("/predict", post(wrong))
        .route("/predict/batch", post(wrong));
    let base = fake(app).await;
    let report = run_suite(&quick(&base)).await.unwrap();
    let predict = check(&report, "predict_valid");
    assert_eq!(
        predict.message,
        "the prediction lacks a numeric `probability`"
    );
    assert!(
        predict
            .response
            .as_deref()
            .unwrap()
            .contains("\"score\":0.7")
    );
    assert_eq!(
        check(&report, "missing_field_422").message,
        "expected HTTP 422, got 200"
    );
    assert_eq!(
        check(&report, "wrong_type_422").message,
        "expected HTTP 422, got 200"
    );
    assert_eq!(
        check(&report, "predict_batch").message,
        "the response lacks `predictions`"
    );
    assert!(check(&report, "health").passed);
    assert!(check(&report, "model_info").passed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_target_is_diagnosed() {
    let port = crate::support::free_port();
    let mut cfg = quick(&format!("http://127.0.0.1:{port}"));
    cfg.ready_timeout = Duration::from_millis(300);
    let report = run_suite(&cfg).await.unwrap();
    assert_eq!(report.exit(), Exit::Infra);
    let d = report.unreachable.as_ref().unwrap();
    assert_eq!(d.verdict, Verdict::Refused);
    let c = check(&report, "connectivity");
    assert!(
        c.message.contains("refused the connection"),
        "{}",
        c.message
    );
    assert!(c.response.as_deref().unwrap().contains("own loopback"));
}

#[test]
fn cli_exits_4_with_junit_and_json_counts() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route(
            "/ready",
            get(|| async { axum::Json(json!({"status": "ready"})) }),
        )
        .route("/model-info", get(|| async { axum::Json(model_info()) }));
    let base = rt.block_on(fake(app));
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("api.xml");
    let (code, stdout, stderr) = run(bin().args([
        "--output",
        "json",
        "api-test",
        "--base-url",
        &base,
        "--junit",
        junit.to_str().unwrap(),
        "--latency-requests",
        "5",
        "--expect-version",
        "v1",
    ]));
    assert_eq!(code, 4, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    // ready, health, model_info and model_version pass; everything that needs /predict fails.
    assert_eq!(doc["passed"], 4, "{doc:#}");
    assert!(doc["failed"].as_u64().unwrap() >= 10);
    let xml = std::fs::read_to_string(&junit).unwrap();
    let report = Report::deserialize_from_str(&xml).unwrap();
    assert_eq!(
        report.test_suites[0].failures,
        doc["failed"].as_u64().unwrap() as usize
    );

    let (code, stdout, _) =
        run(bin().args(["api-test", "--base-url", &base, "--latency-requests", "5"]));
    assert_eq!(code, 4);
    assert!(stdout.contains("FAIL predict_valid"), "{stdout}");
    assert!(stdout.contains("response: HTTP 404"), "{stdout}");
}

#[test]
fn doctor_net_explains_a_refused_port() {
    let port = crate::support::free_port();
    let (code, stdout, _) = run(bin().args(["doctor", "net", &format!("http://127.0.0.1:{port}")]));
    assert_eq!(code, 5);
    assert!(
        stdout.contains("refused the connection: nothing listens on port"),
        "{stdout}"
    );
    let (code, stdout, _) = run(bin()
        .env("HTTP_PROXY", "http://user:secret@proxy.invalid:3128")
        .args([
            "--output",
            "json",
            "doctor",
            "net",
            &format!("http://127.0.0.1:{port}"),
        ]));
    assert_eq!(code, 5);
    let d: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(d["verdict"], "refused");
    assert_eq!(d["proxy_vars"][0]["captures"], true);
    assert!(!stdout.contains("secret"), "{stdout}");
}

/// Kills the child on drop so a failed assertion leaves no server behind.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn cli_api_test_passes_against_cli_serve_on_a_trained_model() {
    let Some(model) = crate::support::scorer::trained_model() else {
        return;
    };
    let version = health_predict::model::ModelFile::load(&model)
        .unwrap()
        .meta()
        .model_id
        .clone();
    let port = crate::support::free_port();
    let mut child = Child(
        bin()
            .args([
                "serve",
                "--model",
                model.to_str().unwrap(),
                "--addr",
                &format!("127.0.0.1:{port}"),
            ])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("api.xml");
    let base = format!("http://127.0.0.1:{port}");
    let (code, stdout, stderr) = run(bin().args([
        "api-test",
        "--base-url",
        &base,
        "--junit",
        junit.to_str().unwrap(),
        "--expect-version",
        &version,
        "--latency-budget",
        "5s",
    ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("0 failed"), "{stdout}");
    assert!(stdout.contains(&format!("(model {version})")), "{stdout}");
    let report = Report::deserialize_from_str(&std::fs::read_to_string(&junit).unwrap()).unwrap();
    assert_eq!(report.test_suites[0].failures, 0);
    assert!(report.test_suites[0].tests >= 18);

    // The same service as a Kubernetes NodePort (kind maps the nodePort to the host): the URL is
    // built from --node-host/--node-port, the suite is the same.
    let (code, stdout, stderr) = run(bin().args([
        "api-test",
        "--k8s-service",
        "health-predict",
        "--k8s-mode",
        "node-port",
        "--node-port",
        &port.to_string(),
        "--expect-version",
        &version,
        "--latency-budget",
        "5s",
    ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("api-test http://127.0.0.1:{port}")),
        "{stdout}"
    );

    // SIGTERM: graceful stop, exit 0.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut log = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

/// `--base-url http://user:pass@host` once put the credentials into JUnit `<system-out>` and
/// stdout. Every printed and written place now shows the URL without them.
#[test]
fn credentials_in_the_base_url_are_never_printed_or_written() {
    const PASSWORD: &str = "hunter2-not-for-logs";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route(
            "/ready",
            get(|| async { axum::Json(json!({"status": "ready"})) }),
        );
    let base = rt.block_on(fake(app));
    let with_creds = base.replace("http://", &format!("http://tester:{PASSWORD}@"));
    let refused = format!(
        "http://tester:{PASSWORD}@127.0.0.1:{}",
        crate::support::free_port()
    );
    let dir = tempfile::tempdir().unwrap();
    for (url, want) in [(&with_creds, 4), (&refused, 5)] {
        for output in ["human", "json"] {
            let junit = dir.path().join(format!("{want}-{output}.xml"));
            let (code, stdout, stderr) = run(bin().env("GITHUB_ACTIONS", "true").args([
                "-vv",
                "--output",
                output,
                "api-test",
                "--base-url",
                url,
                "--junit",
                junit.to_str().unwrap(),
                "--latency-requests",
                "3",
                "--ready-timeout",
                "1s",
            ]));
            assert_eq!(code, want, "{stderr}");
            let xml = std::fs::read_to_string(&junit).unwrap();
            for (what, text) in [("stdout", &stdout), ("stderr", &stderr), ("JUnit", &xml)] {
                assert!(
                    !text.contains(PASSWORD),
                    "{what} holds the password:\n{text}"
                );
                assert!(!text.contains("tester:"), "{what} holds the user:\n{text}");
            }
            assert!(
                stdout.contains("127.0.0.1"),
                "the URL is still shown: {stdout}"
            );
        }
    }
}
