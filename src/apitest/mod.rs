//! API contract tests against a running prediction service, JUnit output and connectivity
//! diagnosis.
//!
//! The suite receives a base URL and nothing else: whoever runs it (the CLI, the pipeline, a
//! Kubernetes port-forward) supplies an address reachable from here. It waits for readiness with
//! a deadline first, runs every check even when some fail, and says why when the target cannot
//! be reached at all. It does not start servers.

pub(crate) mod diagnose;
mod junit;

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value as Json, json};

pub use diagnose::{Diagnosis, Verdict, diagnose};
pub use junit::{junit_xml, write_junit};

use crate::data::schema::AGE_BRACKETS;
use crate::exit::{Diagnose, Exit};
use crate::logging::strip_url_credentials;
use crate::retry::{Backoff, Decision, retry};
use crate::serve::encounter::example_json;

/// How the HTTP client treats proxy environment variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyMode {
    /// Connect directly, ignoring HTTP_PROXY/HTTPS_PROXY/ALL_PROXY (the default: targets are
    /// local servers, port-forwards and cluster addresses a proxy cannot reach).
    #[default]
    Direct,
    /// Honour the proxy variables, with NO_PROXY exclusions.
    FromEnv,
}

/// What to test and how.
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    /// The service's base URL (`http://127.0.0.1:8000`).
    pub base_url: String,
    /// Fail unless `/model-info` reports this version.
    pub expect_version: Option<String>,
    /// How long to wait for `/ready` before testing.
    pub ready_timeout: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Sequential requests for the latency check.
    pub latency_requests: usize,
    /// The p95 budget for single predictions.
    pub latency_budget: Duration,
    /// Simultaneous requests in the concurrency check.
    pub concurrency: usize,
    /// The size of the body sent to provoke 413 (must exceed the server's limit).
    pub oversize_bytes: usize,
    pub proxy: ProxyMode,
}

impl SuiteConfig {
    /// Defaults: 30 s readiness deadline, 10 s per request, p95 of 200 requests within 50 ms,
    /// 16 concurrent requests, a 2 MiB oversized body, direct connections.
    pub fn new(base_url: impl Into<String>) -> SuiteConfig {
        SuiteConfig {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            expect_version: None,
            ready_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            latency_requests: 200,
            latency_budget: Duration::from_millis(50),
            concurrency: 16,
            oversize_bytes: 2 << 20,
            proxy: ProxyMode::Direct,
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    pub millis: f64,
    /// What was checked (passed) or what went wrong (failed).
    pub message: String,
    /// The request that failed (method, path, body excerpt).
    pub request: Option<String>,
    /// An excerpt of the response that failed the check.
    pub response: Option<String>,
}

/// Everything a suite run found.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    pub base_url: String,
    pub passed: usize,
    pub failed: usize,
    pub millis: f64,
    /// The model version the service reported, when it did.
    pub model_version: Option<String>,
    pub checks: Vec<CheckResult>,
    /// Set when the service could not be reached at all.
    pub unreachable: Option<Diagnosis>,
}

impl SuiteReport {
    /// The exit code this report calls for.
    pub fn exit(&self) -> Exit {
        if self.unreachable.is_some() {
            Exit::Infra
        } else if self.failed > 0 || self.checks.is_empty() {
            Exit::TestsFailed
        } else {
            Exit::Success
        }
    }
}

impl crate::output::Render for SuiteReport {
    fn human(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(out, "api-test {}", self.base_url)?;
        for c in &self.checks {
            let mark = if c.passed { "PASS" } else { "FAIL" };
            writeln!(
                out,
                "  {mark} {:<26} {:>8.1} ms  {}",
                c.name, c.millis, c.message
            )?;
            if !c.passed {
                if let Some(r) = &c.request {
                    writeln!(out, "       request:  {}", one_line(r, 160))?;
                }
                if let Some(r) = &c.response {
                    writeln!(out, "       response: {}", one_line(r, 160))?;
                }
            }
        }
        if let Some(d) = &self.unreachable {
            write!(out, "{}", d.render())?;
        }
        writeln!(
            out,
            "{} passed, {} failed in {:.1} s{}",
            self.passed,
            self.failed,
            self.millis / 1000.0,
            self.model_version
                .as_deref()
                .map(|v| format!(" (model {v})"))
                .unwrap_or_default()
        )
    }
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    excerpt(&flat, max)
}

/// The first `max` characters of `s`, marked when cut.
pub fn excerpt(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}… ({} bytes in all)", s.len())
    }
}

/// Errors that stop the suite before any check runs.
#[derive(Debug, thiserror::Error)]
pub enum ApiTestError {
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("cannot write the JUnit report {path}")]
    Junit {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{0}` is not an http(s) base URL")]
    BadUrl(String),
}

impl Diagnose for ApiTestError {
    fn exit(&self) -> Exit {
        match self {
            ApiTestError::Client(_) => Exit::Failure,
            ApiTestError::Junit { .. } => Exit::Failure,
            ApiTestError::BadUrl(_) => Exit::Usage,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            ApiTestError::Client(_) => "see the cause above".into(),
            ApiTestError::Junit { .. } => {
                "check that the --junit directory exists and is writable".into()
            }
            ApiTestError::BadUrl(_) => {
                "pass --base-url like http://127.0.0.1:8000 (HEALTH_PREDICT_BASE_URL)".into()
            }
        })
    }
}

/// The HTTP client of the suite and the diagnosis, with its proxy behaviour explicit.
pub fn client(proxy: ProxyMode, timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    client_builder(proxy, timeout).build()
}

fn client_builder(proxy: ProxyMode, timeout: Duration) -> reqwest::ClientBuilder {
    crate::install_crypto_provider();
    let b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .pool_max_idle_per_host(64)
        .user_agent(concat!(
            "health-predict-api-test/",
            env!("CARGO_PKG_VERSION")
        ));
    match proxy {
        ProxyMode::Direct => b.no_proxy(),
        ProxyMode::FromEnv => b,
    }
}

/// A failed expectation with the exchange that showed it.
#[derive(Debug)]
struct Failure {
    message: String,
    request: Option<String>,
    response: Option<String>,
}

impl Failure {
    fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            request: None,
            response: None,
        }
    }
}

/// One HTTP exchange's result.
#[derive(Debug)]
struct Exchange {
    request: String,
    status: u16,
    body: String,
}

impl Exchange {
    fn json(&self) -> Result<Json, Failure> {
        serde_json::from_str(&self.body)
            .map_err(|e| self.fail(format!("the response is not JSON: {e}")))
    }

    fn fail(&self, message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            request: Some(excerpt(&self.request, 600)),
            response: Some(format!(
                "HTTP {}\n{}",
                self.status,
                excerpt(&self.body, 600)
            )),
        }
    }

    fn expect_status(&self, want: u16) -> Result<(), Failure> {
        if self.status == want {
            Ok(())
        } else {
            let detail = serde_json::from_str::<Json>(&self.body)
                .ok()
                .and_then(|j| {
                    j.get("message")
                        .or(j.get("reason"))
                        .and_then(|m| m.as_str())
                        .map(str::to_owned)
                })
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            Err(self.fail(format!("expected HTTP {want}, got {}{detail}", self.status)))
        }
    }
}

struct Suite {
    cfg: SuiteConfig,
    http: reqwest::Client,
    /// A client that never reuses connections, for requests whose connection the server may
    /// close (the oversized body), so they cannot break the next check's pooled connection.
    oneshot: reqwest::Client,
    version: Option<String>,
}

impl Suite {
    async fn send(
        &self,
        method: &str,
        path: &str,
        ct: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<Exchange, Failure> {
        self.send_with(&self.http, method, path, ct, body).await
    }

    async fn send_with(
        &self,
        http: &reqwest::Client,
        method: &str,
        path: &str,
        ct: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<Exchange, Failure> {
        let url = format!("{}{path}", self.cfg.base_url);
        let shown_body = body
            .as_deref()
            .map(|b| excerpt(&String::from_utf8_lossy(&b[..b.len().min(2000)]), 400))
            .unwrap_or_default();
        let request = format!("{method} {path}\n{shown_body}")
            .trim_end()
            .to_owned();
        let mut rb = match method {
            "POST" => http.post(&url),
            _ => http.get(&url),
        };
        if let Some(ct) = ct {
            rb = rb.header(reqwest::header::CONTENT_TYPE, ct);
        }
        if let Some(b) = body {
            rb = rb.body(b);
        }
        let response = rb.send().await.map_err(|e| Failure {
            message: format!("the request failed: {}", crate::exit::chain_text(&e)),
            request: Some(request.clone()),
            response: None,
        })?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(|e| Failure {
            message: format!(
                "reading the response failed: {}",
                crate::exit::chain_text(&e)
            ),
            request: Some(request.clone()),
            response: Some(format!("HTTP {status}")),
        })?;
        Ok(Exchange {
            request,
            status,
            body,
        })
    }

    async fn get(&self, path: &str) -> Result<Exchange, Failure> {
        self.send("GET", path, None, None).await
    }

    async fn post_json(&self, path: &str, body: &Json) -> Result<Exchange, Failure> {
        self.send(
            "POST",
            path,
            Some("application/json"),
            Some(body.to_string().into_bytes()),
        )
        .await
    }
}

fn result(name: &str, started: Instant, outcome: Result<String, Failure>) -> CheckResult {
    let millis = started.elapsed().as_secs_f64() * 1000.0;
    // Messages quote URLs (transport errors name the request URL): never with credentials.
    let strip = |s: String| strip_url_credentials(&s).into_owned();
    let outcome = outcome.map(strip).map_err(|f| Failure {
        message: strip(f.message),
        request: f.request.map(strip),
        response: f.response.map(strip),
    });
    let r = match outcome {
        Ok(message) => CheckResult {
            name: name.into(),
            passed: true,
            millis,
            message,
            request: None,
            response: None,
        },
        Err(f) => CheckResult {
            name: name.into(),
            passed: false,
            millis,
            message: f.message,
            request: f.request,
            response: f.response,
        },
    };
    tracing::debug!(check = name, passed = r.passed, "{}", r.message);
    r
}

/// Runs the whole suite. Returns a report in every case where a client could be built: an
/// unreachable target yields a report with `unreachable` set and a failed `connectivity` check.
pub async fn run_suite(cfg: &SuiteConfig) -> Result<SuiteReport, ApiTestError> {
    let started = Instant::now();
    match reqwest::Url::parse(&cfg.base_url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
        _ => {
            return Err(ApiTestError::BadUrl(
                strip_url_credentials(&cfg.base_url).into_owned(),
            ));
        }
    }
    let http = client(cfg.proxy, cfg.request_timeout).map_err(ApiTestError::Client)?;
    let oneshot = client_builder(cfg.proxy, cfg.request_timeout)
        .pool_max_idle_per_host(0)
        .build()
        .map_err(ApiTestError::Client)?;
    let mut suite = Suite {
        cfg: cfg.clone(),
        http,
        oneshot,
        version: None,
    };
    let mut checks = Vec::new();
    macro_rules! run {
        ($name:expr, $check:expr) => {{
            let t = Instant::now();
            let outcome = $check.await;
            checks.push(result($name, t, outcome));
        }};
    }

    // Readiness first, with a deadline and backoff. A target that never answers is diagnosed.
    let t = Instant::now();
    match wait_ready(&suite).await {
        Ok(message) => checks.push(result("ready", t, Ok(message))),
        Err(Waited::Unreachable(last)) => {
            let d = diagnose(&cfg.base_url, cfg.proxy, Duration::from_secs(3)).await;
            let mut f = Failure::new(format!("{} ({last})", d.explanation));
            f.request = Some("GET /ready".into());
            f.response = Some(d.render());
            checks.push(result("connectivity", t, Err(f)));
            let failed = checks.len();
            return Ok(SuiteReport {
                base_url: strip_url_credentials(&cfg.base_url).into_owned(),
                passed: 0,
                failed,
                millis: started.elapsed().as_secs_f64() * 1000.0,
                model_version: None,
                checks,
                unreachable: Some(d),
            });
        }
        Err(Waited::Failed(f)) => checks.push(result("ready", t, Err(f))),
    }

    run!("health", health(&suite));
    let t = Instant::now();
    let info = model_info(&suite).await;
    if let Ok((_, v)) = &info {
        suite.version = Some(v.clone());
    }
    checks.push(result("model_info", t, info.map(|(m, _)| m)));
    if let Some(want) = cfg.expect_version.clone() {
        run!("model_version", expect_version(&suite, want));
    }
    run!("openapi", openapi(&suite));
    run!("predict_valid", predict_valid(&suite));
    run!("predict_explain", predict_explain(&suite));
    run!("predict_batch", predict_batch(&suite));
    run!("hyphenated_names", hyphenated_names(&suite));
    run!("missing_field_422", missing_field(&suite));
    run!("wrong_type_422", wrong_type(&suite));
    run!("malformed_json_4xx", malformed_json(&suite));
    run!("wrong_content_type_415", wrong_content_type(&suite));
    run!("unknown_category_200", unknown_category(&suite));
    run!("every_age_bracket", every_age_bracket(&suite));
    run!("oversized_body_413", oversized_body(&suite));
    run!("concurrent_requests", concurrent(&suite));
    run!("latency_p95", latency(&suite));
    run!("metrics", metrics(&suite));

    let passed = checks.iter().filter(|c| c.passed).count();
    Ok(SuiteReport {
        base_url: strip_url_credentials(&cfg.base_url).into_owned(),
        passed,
        failed: checks.len() - passed,
        millis: started.elapsed().as_secs_f64() * 1000.0,
        model_version: suite.version.clone(),
        checks,
        unreachable: None,
    })
}

enum Waited {
    /// No HTTP answer at all: the last transport error.
    Unreachable(String),
    /// The server answered but never became ready.
    Failed(Failure),
}

async fn wait_ready(suite: &Suite) -> Result<String, Waited> {
    let policy = Backoff::READINESS
        .with_deadline(suite.cfg.ready_timeout)
        .with_attempts(u32::MAX);
    let started = Instant::now();
    let outcome = retry(
        &policy,
        |_| async { suite.get("/ready").await },
        |_| Decision::Retry,
    )
    .await;
    // `retry` only sees transport errors; a 503 is an answer, so poll again until the deadline.
    let mut last = match outcome {
        Ok(x) => x,
        Err((f, attempts)) => {
            return Err(Waited::Unreachable(format!(
                "{} after {attempts} attempts in {:.1} s",
                f.message,
                started.elapsed().as_secs_f64()
            )));
        }
    };
    let mut attempt = 0;
    while last.status != 200 {
        let wait = policy.delay(attempt);
        if started.elapsed() + wait > suite.cfg.ready_timeout {
            let reason = serde_json::from_str::<Json>(&last.body)
                .ok()
                .and_then(|j| j.get("reason").and_then(|r| r.as_str()).map(str::to_owned))
                .unwrap_or_else(|| "no reason given".into());
            return Err(Waited::Failed(last.fail(format!(
                "GET /ready answered HTTP {} for {:.1} s (--ready-timeout): {reason}",
                last.status,
                started.elapsed().as_secs_f64()
            ))));
        }
        tokio::time::sleep(wait).await;
        attempt += 1;
        last = match suite.get("/ready").await {
            Ok(x) => x,
            Err(f) => return Err(Waited::Failed(f)),
        };
    }
    let j = last.json().map_err(Waited::Failed)?;
    if j.get("status").and_then(Json::as_str) != Some("ready") {
        return Err(Waited::Failed(
            last.fail("HTTP 200 but `status` is not \"ready\""),
        ));
    }
    Ok(format!(
        "ready after {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    ))
}

fn field<'j>(x: &Exchange, j: &'j Json, name: &str) -> Result<&'j Json, Failure> {
    j.get(name)
        .ok_or_else(|| x.fail(format!("the response lacks `{name}`")))
}

fn probability(x: &Exchange, p: &Json) -> Result<f64, Failure> {
    let prob = p
        .get("probability")
        .and_then(Json::as_f64)
        .ok_or_else(|| x.fail("the prediction lacks a numeric `probability`"))?;
    if !(0.0..=1.0).contains(&prob) {
        return Err(x.fail(format!("probability {prob} is outside [0, 1]")));
    }
    let class = p
        .get("prediction")
        .and_then(Json::as_u64)
        .ok_or_else(|| x.fail("the prediction lacks an integer `prediction`"))?;
    if class > 1 {
        return Err(x.fail(format!("prediction {class} is neither 0 nor 1")));
    }
    if let Some(t) = p.get("threshold").and_then(Json::as_f64)
        && (prob >= t) != (class == 1)
    {
        return Err(x.fail(format!(
            "prediction {class} disagrees with probability {prob} and threshold {t}"
        )));
    }
    Ok(prob)
}

async fn health(s: &Suite) -> Result<String, Failure> {
    let x = s.get("/health").await?;
    x.expect_status(200)?;
    let j = x.json()?;
    if j.get("status").and_then(Json::as_str) != Some("ok") {
        return Err(x.fail("`status` is not \"ok\""));
    }
    Ok("GET /health is 200 ok".into())
}

async fn model_info(s: &Suite) -> Result<(String, String), Failure> {
    let x = s.get("/model-info").await?;
    x.expect_status(200)?;
    let j = x.json()?;
    for k in ["name", "version", "data_fingerprint", "loaded_at"] {
        if field(&x, &j, k)?.as_str().is_none_or(str::is_empty) {
            return Err(x.fail(format!("`{k}` is not a non-empty string")));
        }
    }
    field(&x, &j, "metrics")?
        .as_object()
        .ok_or_else(|| x.fail("`metrics` is not an object"))?;
    let t = field(&x, &j, "threshold")?
        .as_f64()
        .filter(|t| (0.0..=1.0).contains(t))
        .ok_or_else(|| x.fail("`threshold` is not a number in [0, 1]"))?;
    let version = j["version"].as_str().unwrap_or_default().to_owned();
    Ok((
        format!(
            "model {} version {version}, threshold {t}",
            j["name"].as_str().unwrap_or("")
        ),
        version,
    ))
}

async fn expect_version(s: &Suite, want: String) -> Result<String, Failure> {
    match &s.version {
        Some(v) if *v == want => Ok(format!("version {v} as expected")),
        Some(v) => Err(Failure {
            message: format!("expected model version {want}, the server reports {v}"),
            request: Some("GET /model-info".into()),
            response: Some(format!("version: {v}")),
        }),
        None => Err(Failure::new(format!(
            "expected model version {want}, but /model-info did not report a version"
        ))),
    }
}

async fn openapi(s: &Suite) -> Result<String, Failure> {
    let x = s.get("/openapi.json").await?;
    x.expect_status(200)?;
    let j = x.json()?;
    if j.get("openapi").and_then(Json::as_str).is_none() {
        return Err(x.fail("the document has no `openapi` version"));
    }
    for p in ["/predict", "/predict/batch", "/ready", "/model-info"] {
        if j.pointer(&format!("/paths/{}", p.replace('/', "~1")))
            .is_none()
        {
            return Err(x.fail(format!("the document does not describe {p}")));
        }
    }
    Ok("OpenAPI document describes the prediction routes".into())
}

async fn predict_valid(s: &Suite) -> Result<String, Failure> {
    let x = s.post_json("/predict", &example_json()).await?;
    x.expect_status(200)?;
    let j = x.json()?;
    let p = probability(&x, &j)?;
    if let (Some(want), Some(got)) = (&s.version, j.get("model_version").and_then(Json::as_str))
        && want != got
    {
        return Err(x.fail(format!(
            "model_version {got} differs from /model-info's {want}"
        )));
    }
    Ok(format!("probability {p:.4}"))
}

async fn predict_explain(s: &Suite) -> Result<String, Failure> {
    let x = s
        .post_json("/predict?explain=true", &example_json())
        .await?;
    x.expect_status(200)?;
    let j = x.json()?;
    probability(&x, &j)?;
    let c = field(&x, &j, "contributions")?
        .as_array()
        .ok_or_else(|| x.fail("`contributions` is not an array"))?;
    if c.is_empty() {
        return Err(x.fail("`contributions` is empty"));
    }
    for item in c {
        if item.get("feature").and_then(Json::as_str).is_none()
            || item.get("contribution").and_then(Json::as_f64).is_none()
        {
            return Err(x.fail("a contribution lacks `feature` or a numeric `contribution`"));
        }
    }
    Ok(format!(
        "{} contributions, top `{}`",
        c.len(),
        c[0]["feature"].as_str().unwrap_or("")
    ))
}

async fn predict_batch(s: &Suite) -> Result<String, Failure> {
    let mut second = example_json();
    second["age"] = json!("[30-40)");
    let body = json!({"encounters": [example_json(), second, example_json()]});
    let x = s.post_json("/predict/batch", &body).await?;
    x.expect_status(200)?;
    let j = x.json()?;
    let preds = field(&x, &j, "predictions")?
        .as_array()
        .ok_or_else(|| x.fail("`predictions` is not an array"))?;
    if preds.len() != 3 {
        return Err(x.fail(format!(
            "3 encounters sent, {} predictions returned",
            preds.len()
        )));
    }
    for p in preds {
        probability(&x, p)?;
    }
    Ok("3 encounters, 3 predictions in range".into())
}

async fn hyphenated_names(s: &Suite) -> Result<String, Failure> {
    let mut body = example_json();
    if let Some(o) = body.as_object_mut() {
        for name in ["glyburide_metformin", "metformin_pioglitazone"] {
            if let Some(v) = o.remove(name) {
                o.insert(name.replace('_', "-"), v);
            }
        }
    }
    let x = s.post_json("/predict", &body).await?;
    x.expect_status(200)?;
    probability(&x, &x.json()?)?;
    Ok("dataset spellings (glyburide-metformin) accepted".into())
}

fn names_field(x: &Exchange, name: &str) -> Result<(), Failure> {
    let j = x.json()?;
    let named = j.get("fields").and_then(Json::as_array).is_some_and(|f| {
        f.iter()
            .any(|e| e.get("field").and_then(Json::as_str) == Some(name))
    });
    if named {
        Ok(())
    } else {
        Err(x.fail(format!(
            "the 422 body does not name the field `{name}` under `fields`"
        )))
    }
}

async fn missing_field(s: &Suite) -> Result<String, Failure> {
    let mut body = example_json();
    if let Some(o) = body.as_object_mut() {
        o.remove("age");
    }
    let x = s.post_json("/predict", &body).await?;
    x.expect_status(422)?;
    names_field(&x, "age")?;
    Ok("absent `age` is 422 naming the field".into())
}

async fn wrong_type(s: &Suite) -> Result<String, Failure> {
    let mut body = example_json();
    body["time_in_hospital"] = json!("five");
    let x = s.post_json("/predict", &body).await?;
    x.expect_status(422)?;
    names_field(&x, "time_in_hospital")?;
    Ok("string for an integer is 422 naming the field".into())
}

async fn malformed_json(s: &Suite) -> Result<String, Failure> {
    let x = s
        .send(
            "POST",
            "/predict",
            Some("application/json"),
            Some(b"{\"age\": \"[70-80)\",".to_vec()),
        )
        .await?;
    // 400 or 422: a client error about the body, not a missing route (404) or anything else.
    if matches!(x.status, 400 | 422) {
        Ok(format!("truncated JSON is HTTP {}", x.status))
    } else {
        Err(x.fail(format!("expected HTTP 400 or 422, got {}", x.status)))
    }
}

async fn wrong_content_type(s: &Suite) -> Result<String, Failure> {
    let x = s
        .send(
            "POST",
            "/predict",
            Some("text/plain"),
            Some(example_json().to_string().into_bytes()),
        )
        .await?;
    x.expect_status(415)?;
    Ok("text/plain is 415".into())
}

async fn unknown_category(s: &Suite) -> Result<String, Failure> {
    let mut body = example_json();
    body["race"] = json!("Martian");
    body["metformin"] = json!("Sideways");
    let x = s.post_json("/predict", &body).await?;
    x.expect_status(200)?;
    let p = probability(&x, &x.json()?)?;
    Ok(format!("unknown categories scored, probability {p:.4}"))
}

async fn every_age_bracket(s: &Suite) -> Result<String, Failure> {
    let mut seen = Vec::new();
    for age in AGE_BRACKETS {
        let mut body = example_json();
        body["age"] = json!(age);
        let x = s.post_json("/predict", &body).await?;
        x.expect_status(200)?;
        seen.push(probability(&x, &x.json()?)?);
    }
    let (lo, hi) = seen
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), p| (l.min(*p), h.max(*p)));
    Ok(format!(
        "{} brackets scored, probability {lo:.3}..{hi:.3}",
        seen.len()
    ))
}

async fn oversized_body(s: &Suite) -> Result<String, Failure> {
    let mut body = format!("{{\"padding\": \"{}", "x".repeat(s.cfg.oversize_bytes)).into_bytes();
    body.extend_from_slice(b"\"}");
    let size = body.len();
    match s
        .send_with(
            &s.oneshot,
            "POST",
            "/predict",
            Some("application/json"),
            Some(body),
        )
        .await
    {
        Ok(x) => {
            x.expect_status(413)?;
            Ok(format!("{size} bytes is 413"))
        }
        Err(f) => Err(Failure {
            message: format!(
                "{} (a server should answer 413, not drop the connection)",
                f.message
            ),
            ..f
        }),
    }
}

async fn concurrent(s: &Suite) -> Result<String, Failure> {
    let n = s.cfg.concurrency.max(1) * 4;
    let body = example_json();
    let results = futures::future::join_all((0..n).map(|_| s.post_json("/predict", &body))).await;
    let mut probs = Vec::with_capacity(n);
    for r in results {
        let x = r?;
        x.expect_status(200)?;
        probs.push(probability(&x, &x.json()?)?);
    }
    if probs.windows(2).any(|w| w[0] != w[1]) {
        return Err(Failure::new(
            "the same encounter got different probabilities under concurrency",
        ));
    }
    Ok(format!("{n} simultaneous requests, identical answers"))
}

async fn latency(s: &Suite) -> Result<String, Failure> {
    let n = s.cfg.latency_requests.max(1);
    let body = example_json().to_string().into_bytes();
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let x = s
            .send(
                "POST",
                "/predict",
                Some("application/json"),
                Some(body.clone()),
            )
            .await?;
        times.push(t.elapsed());
        x.expect_status(200)?;
    }
    times.sort_unstable();
    let pct = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    let (p50, p95, p99) = (pct(0.50), pct(0.95), pct(0.99));
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let summary = format!(
        "{n} requests: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms (budget p95 {:.0} ms)",
        ms(p50),
        ms(p95),
        ms(p99),
        ms(s.cfg.latency_budget)
    );
    if p95 <= s.cfg.latency_budget {
        Ok(summary)
    } else {
        Err(Failure::new(format!("too slow: {summary}")))
    }
}

async fn metrics(s: &Suite) -> Result<String, Failure> {
    let x = s.get("/metrics").await?;
    x.expect_status(200)?;
    for m in [
        "health_predict_http_requests_total",
        "health_predict_http_request_duration_seconds_bucket",
        "health_predict_prediction_score_bucket",
    ] {
        if !x.body.contains(m) {
            return Err(x.fail(format!("the metrics lack `{m}`")));
        }
    }
    Ok("Prometheus text with request, latency and score metrics".into())
}
