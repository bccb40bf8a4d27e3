//! Integration tests: serve. The server runs in-process on 127.0.0.1:0 and is driven over real
//! HTTP; the binary is used for the command-line contract.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns panic on purpose, like the tests

use std::sync::atomic::Ordering;

use futures::StreamExt;
use std::time::Duration;

use health_predict::serve::encounter::example_json;
use health_predict::serve::{ModelSource, Phase, ServeConfig, ServerHandle, start};
use serde_json::{Value, json};

use crate::support::scorer::TestScorer;
use crate::support::{bin, run};

async fn serve(source: ModelSource, tweak: impl FnOnce(&mut ServeConfig)) -> ServerHandle {
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), source);
    tweak(&mut config);
    start(config).await.expect("server starts")
}

fn client() -> reqwest::Client {
    health_predict::install_crypto_provider();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn post(url: &str, body: &Value) -> (u16, Value) {
    let r = client().post(url).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predicts_validates_and_reports() {
    let mut h = serve(TestScorer::new("v7").source(), |c| c.batch_limit = 3).await;
    let info = h.wait_ready(Duration::from_secs(10)).await.unwrap();
    assert_eq!(info.version, "v7");
    let base = h.base_url();
    let c = client();

    let health: Value = c
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let ready = c.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let mi: Value = c
        .get(format!("{base}/model-info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for k in [
        "name",
        "version",
        "data_fingerprint",
        "metrics",
        "threshold",
        "loaded_at",
        "source",
    ] {
        assert!(mi.get(k).is_some(), "model-info lacks {k}: {mi}");
    }

    let (status, p) = post(&format!("{base}/predict"), &example_json()).await;
    assert_eq!(status, 200, "{p}");
    let prob = p["probability"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&prob));
    assert_eq!(p["model_version"], "v7");
    assert!(p.get("contributions").is_none());

    let (status, p) = post(
        &format!("{base}/predict?explain=true&top=2"),
        &example_json(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(p["contributions"].as_array().unwrap().len(), 2);

    let (status, e) = post(&format!("{base}/predict?explain=maybe"), &example_json()).await;
    assert_eq!(status, 422);
    assert_eq!(e["fields"][0]["field"], "explain");

    // Field-level 422 naming every bad field.
    let mut bad = example_json();
    bad.as_object_mut().unwrap().remove("gender");
    bad["num_medications"] = json!("many");
    let (status, e) = post(&format!("{base}/predict"), &bad).await;
    assert_eq!(status, 422);
    assert_eq!(e["error"], "validation_failed");
    let fields: Vec<&str> = e["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["gender", "num_medications"]);
    assert!(
        e["fields"][1]["expected"]
            .as_str()
            .unwrap()
            .contains("non-negative integer")
    );

    // Unknown categories are scored and listed.
    let mut odd = example_json();
    odd["race"] = json!("Martian");
    let (status, p) = post(&format!("{base}/predict"), &odd).await;
    assert_eq!(status, 200);
    assert_eq!(p["unknown_categories"], json!(["race"]));

    // Batch: order, limit and item paths in errors.
    let (status, b) = post(
        &format!("{base}/predict/batch"),
        &json!({"encounters": [example_json(), odd]}),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["count"], 2);
    let (status, e) = post(
        &format!("{base}/predict/batch"),
        &json!({"encounters": vec![example_json(); 4]}),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        e["fields"][0]["expected"]
            .as_str()
            .unwrap()
            .contains("1 to 3"),
        "{e}"
    );
    let (status, e) = post(
        &format!("{base}/predict/batch"),
        &json!({"encounters": [example_json(), bad]}),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(e["fields"][0]["field"], "encounters[1].gender");

    // Transport-level errors: malformed JSON 400, wrong content type 415, oversized body 413.
    let r = c
        .post(format!("{base}/predict"))
        .header("content-type", "application/json")
        .body("{\"age\":")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "malformed_json");
    let r = c
        .post(format!("{base}/predict"))
        .header("content-type", "text/plain")
        .body(example_json().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(2 << 20));
    let r = c
        .post(format!("{base}/predict"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["connection"], "close");
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "payload_too_large"
    );
    let r = c.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    let doc: Value = c
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc["components"]["schemas"]["BatchRequest"]["properties"]["encounters"]["maxItems"],
        3
    );

    let metrics = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("health_predict_http_requests_total{route=\"/predict\",status=\"422\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("health_predict_http_requests_total{route=\"/predict\",status=\"413\"} 1")
    );
    assert!(
        metrics.contains("health_predict_prediction_score_count 5"),
        "{metrics}"
    );
    assert!(metrics.contains("health_predict_model_ready 1"));

    h.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_until_warm_and_stays_503_without_a_model() {
    // A scorer that takes 20 ms per warm-up scoring: about four seconds of "warming".
    let slow = TestScorer::new("v1");
    slow.delay_ms.store(20, Ordering::Relaxed);
    let mut h = serve(slow.source(), |_| {}).await;
    let base = h.base_url();
    let r = client().get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert!(
        matches!(body["status"].as_str(), Some("warming" | "loading")),
        "{body}"
    );
    let (status, e) = post(&format!("{base}/predict"), &example_json()).await;
    assert_eq!(status, 503);
    assert_eq!(e["error"], "not_ready");
    assert_eq!(
        client()
            .get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    h.wait_ready(Duration::from_secs(20)).await.unwrap();
    assert_eq!(
        client()
            .get(format!("{base}/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    h.shutdown(Duration::from_secs(5)).await.unwrap();

    // No model file: /ready says why, forever; wait_ready reports the failure.
    let mut h = serve(ModelSource::File("/nonexistent/model.json".into()), |_| {}).await;
    let err = h.wait_ready(Duration::from_secs(10)).await.unwrap_err();
    assert!(err.to_string().contains("/nonexistent/model.json"), "{err}");
    assert_eq!(h.phase().0, Phase::Failed);
    let r = client()
        .get(format!("{}/ready", h.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "failed");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/model.json")
    );
    h.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_and_timeouts_answer_408() {
    let scorer = TestScorer::new("v1");
    let mut h = serve(scorer.source(), |c| {
        c.request_timeout = Duration::from_millis(300)
    })
    .await;
    h.wait_ready(Duration::from_secs(10)).await.unwrap();
    let base = h.base_url();

    // A client that sends half a body and stalls gets 408 when the timeout passes.
    let stalled = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(
        b"{\"age\":",
    ))])
    .chain(futures::stream::once(async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok(bytes::Bytes::from_static(b"1}"))
    }));
    let r = client()
        .post(format!("{base}/predict"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stalled))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 408);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "timeout");

    scorer.delay_ms.store(200, Ordering::Relaxed);
    let url = format!("{base}/predict");
    let before = scorer.calls.load(Ordering::SeqCst);
    let in_flight = tokio::spawn(async move { post(&url, &example_json()).await });
    // Shut down only once the request is being scored (bounded wait).
    for _ in 0..2000 {
        if scorer.calls.load(Ordering::SeqCst) > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        scorer.calls.load(Ordering::SeqCst) > before,
        "the request never reached the scorer"
    );
    h.shutdown(Duration::from_secs(5)).await.unwrap();
    let (status, p) = in_flight.await.unwrap();
    assert_eq!(status, 200, "in-flight request was cut: {p}");
    let after = client().get(format!("{base}/health")).send().await;
    assert!(after.is_err(), "server still answers after shutdown");
}

#[test]
fn cli_refuses_a_missing_model_with_a_hint() {
    let port = crate::support::free_port();
    let (code, _, stderr) = run(bin().args([
        "serve",
        "--model",
        "/nonexistent/model.json",
        "--addr",
        &format!("127.0.0.1:{port}"),
        "--ready-timeout",
        "10s",
    ]));
    assert_eq!(code, 6, "{stderr}");
    assert!(
        stderr.contains("error: cannot serve model /nonexistent/model.json"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: check --model"), "{stderr}");
}

#[test]
fn cli_reports_a_busy_port_as_usage() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (code, _, stderr) = run(bin().args(["serve", "--model", "m.json", "--addr", &addr]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--addr"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_verified_trained_model_file() {
    let Some(path) = crate::support::scorer::trained_model() else {
        return;
    };
    let model = health_predict::model::ModelFile::load(&path).unwrap();
    let mut h = serve(ModelSource::File(path.clone()), |_| {}).await;
    let info = h.wait_ready(Duration::from_secs(30)).await.unwrap();
    assert_eq!(info.version, model.meta().model_id);
    assert_eq!(info.threshold, model.threshold());
    assert_eq!(info.data_fingerprint, model.meta().data_fingerprint);
    assert!(info.checksum.is_some());
    assert!(
        info.metrics.contains_key("test.roc_auc"),
        "{:?}",
        info.metrics
    );

    let base = h.base_url();
    let (status, p) = post(&format!("{base}/predict?explain=true"), &example_json()).await;
    assert_eq!(status, 200, "{p}");
    let encounter = health_predict::serve::Encounter::from_json(&example_json(), "").unwrap();
    assert_eq!(
        p["probability"].as_f64().unwrap(),
        model.predict_proba(&encounter)
    );
    let contributions = p["contributions"].as_array().unwrap();
    assert_eq!(contributions.len(), 5);
    assert!(contributions.iter().all(|c| {
        info.feature_names
            .contains(&c["feature"].as_str().unwrap().to_owned())
    }));
    h.shutdown(Duration::from_secs(5)).await.unwrap();

    // One flipped byte: the checksum catches it and /ready never turns 200.
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0x01;
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.json");
    std::fs::write(&corrupt, bytes).unwrap();
    let mut h = serve(ModelSource::File(corrupt), |_| {}).await;
    let err = h
        .wait_ready(Duration::from_secs(30))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.to_lowercase().contains("checksum"), "{err}");
    let r = client()
        .get(format!("{}/ready", h.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    h.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_5xx_and_no_schema_violations() {
    let Some(st) = crate::support::require_tool("st") else {
        return;
    };
    let Some(model) = crate::support::scorer::trained_model() else {
        return;
    };
    let mut h = serve(ModelSource::File(model), |_| {}).await;
    h.wait_ready(Duration::from_secs(30)).await.unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/contract/schemathesis.sh"
    );
    let base = h.base_url();
    let dir = tempfile::tempdir().unwrap();
    let report_dir = dir.path().to_owned();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        run(std::process::Command::new(script)
            .arg(&base)
            .arg(&report_dir)
            .env("SCHEMATHESIS", st)
            .env("NO_PROXY", "127.0.0.1"))
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("schemathesis.sh: "))
        .unwrap();
    let cases: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(cases >= 1000, "{line}");
    h.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// The hostile batches of issue 15: a thousand empty objects, and hundreds of kilobytes of
/// unknown keys, once answered with 6-8 MB error bodies. Now: the first 20 problems and a count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_errors_are_bounded_however_many_fields_are_wrong() {
    let mut h = serve(TestScorer::new("v1").source(), |_| {}).await;
    h.wait_ready(Duration::from_secs(10)).await.unwrap();
    let url = format!("{}/predict/batch", h.base_url());
    let c = client();
    let send = |body: Vec<u8>| {
        let c = c.clone();
        let url = url.clone();
        async move {
            let r = c
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.bytes().await.unwrap())
        }
    };

    let empties = format!("{{\"encounters\":[{}]}}", vec!["{}"; 1000].join(","));
    let (status, body) = send(empties.into_bytes()).await;
    assert_eq!(status, 422);
    assert!(body.len() < 16 << 10, "422 body is {} bytes", body.len());
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["fields"].as_array().unwrap().len(), 20);
    let total = v["total_fields"].as_u64().unwrap();
    assert!(total >= 1000, "every problem is counted: {total}");
    assert!(v["message"].as_str().unwrap().contains("first 20"), "{v}");

    // ~770 KB of unknown keys, in the batch object and in one encounter.
    let keys: Vec<String> = (0..42_000)
        .map(|i| format!("\"unknown_{i:06}\":1"))
        .collect();
    let body = format!(
        "{{{},\"encounters\":[{{{}}}]}}",
        keys[..21_000].join(","),
        keys[21_000..].join(",")
    );
    assert!(body.len() > 700 << 10);
    let (status, reply) = send(body.into_bytes()).await;
    assert_eq!(status, 422);
    assert!(reply.len() < 16 << 10, "422 body is {} bytes", reply.len());
    let v: Value = serde_json::from_slice(&reply).unwrap();
    assert!(
        v["total_fields"].as_u64().unwrap() >= 42_000,
        "{}",
        v["total_fields"]
    );

    // One 500 KB key is not echoed back whole.
    let body = format!("{{\"{}\":1}}", "k".repeat(500 << 10));
    let r = c
        .post(format!("{}/predict", h.base_url()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let reply = r.bytes().await.unwrap();
    assert!(reply.len() < 16 << 10, "422 body is {} bytes", reply.len());
}

/// Above `max_concurrent` prediction requests are shed at once with 503 and `Retry-After`, while
/// `/ready` and `/health` keep answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictions_are_shed_above_the_concurrency_limit_and_probes_still_answer() {
    let scorer = TestScorer::new("v1");
    let mut h = serve(scorer.source(), |c| c.max_concurrent = 1).await;
    h.wait_ready(Duration::from_secs(10)).await.unwrap();
    let base = h.base_url();
    scorer.hold.store(true, Ordering::SeqCst);
    let before = scorer.calls.load(Ordering::SeqCst);
    let url = format!("{base}/predict");
    // Padded past the inline size with JSON whitespace, so the held scoring blocks a blocking
    // thread, as large bodies do, and never one of the server's two async workers.
    let padded = format!("{}{}", example_json(), " ".repeat(20 << 10));
    let held = tokio::spawn(async move {
        let r = client()
            .post(&url)
            .header("content-type", "application/json")
            .body(padded)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    });
    for _ in 0..2000 {
        if scorer.calls.load(Ordering::SeqCst) > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        scorer.calls.load(Ordering::SeqCst) > before,
        "never in flight"
    );

    let c = client();
    let shed = c
        .post(format!("{base}/predict"))
        .json(&example_json())
        .send()
        .await
        .unwrap();
    assert_eq!(shed.status(), 503);
    assert_eq!(shed.headers()["retry-after"], "1");
    assert_eq!(shed.json::<Value>().await.unwrap()["error"], "overloaded");
    for path in ["/ready", "/health", "/metrics"] {
        let r = c.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path} while predictions are shed");
    }
    scorer.hold.store(false, Ordering::SeqCst);
    let (status, _) = held.await.unwrap();
    assert_eq!(status, 200);
    let (status, p) = post(&format!("{base}/predict"), &example_json()).await;
    assert_eq!(status, 200, "the permit is returned: {p}");
}

/// Reads until the server closes the connection (guarded: a server that never closes fails the
/// test after 20 s instead of hanging it). Returns what was read.
async fn read_until_closed(s: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "the server kept the connection open: {}",
        String::from_utf8_lossy(&got)
    );
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    let mut h = serve(TestScorer::new("v1").source(), |c| {
        c.idle_timeout = Duration::from_millis(300);
        c.header_read_timeout = Duration::from_millis(300);
    })
    .await;
    h.wait_ready(Duration::from_secs(10)).await.unwrap();
    let addr = h.addr();

    // Connected, silent.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(read_until_closed(&mut idle).await.is_empty());

    // Half a request head, then nothing.
    let mut partial = tokio::net::TcpStream::connect(addr).await.unwrap();
    partial
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let got = read_until_closed(&mut partial).await;
    assert!(
        !got.starts_with(b"HTTP/1.1 200"),
        "a half-sent head was answered"
    );

    // One request, then kept alive and idle.
    let mut kept = tokio::net::TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut kept).await;
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_above_the_cap_wait_until_one_closes() {
    let mut h = serve(TestScorer::new("v1").source(), |c| c.max_connections = 2).await;
    h.wait_ready(Duration::from_secs(10)).await.unwrap();
    let addr = h.addr();
    let first = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _second = tokio::net::TcpStream::connect(addr).await.unwrap();
    let url = format!("{}/health", h.base_url());
    let third = tokio::spawn(async move { client().get(url).send().await.map(|r| r.status()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served above the cap"
    );
    drop(first);
    let status = tokio::time::timeout(Duration::from_secs(20), third)
        .await
        .expect("served once a slot freed")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
}
