//! Routes, handlers, response types and the JSON error contract of the prediction API.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::encounter::{Encounter, FieldError, Problems, kind_of};
use super::metrics::Metrics;
use super::scorer::{Contribution, Scorer};

/// The most contributions `?top=` may ask for.
pub const MAX_TOP: usize = 50;
/// Bodies up to this size (about 16 encounters) are parsed and scored on the async workers;
/// larger ones on a blocking thread.
const INLINE_BODY_BYTES: usize = 16 * 1024;
/// Contributions returned by `?explain=true` without `top`.
pub const DEFAULT_TOP: usize = 5;
/// Field problems listed in one error response; the rest are only counted (`total_fields`), so a
/// batch of a thousand empty objects answers in kilobytes, not megabytes.
pub const MAX_LISTED_FIELDS: usize = 20;

/// Every route, for metrics labels and the OpenAPI document.
pub const ROUTES: [&str; 8] = [
    "/health",
    "/ready",
    "/model-info",
    "/predict",
    "/predict/batch",
    "/openapi.json",
    "/metrics",
    "unmatched",
];

/// Where the server is in its start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Reading and verifying the model.
    Loading,
    /// Scoring warm-up requests.
    Warming,
    /// Serving predictions.
    Ready,
    /// The model could not be loaded or verified; see `reason`.
    Failed,
}

/// `/model-info`: what is being served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelInfo {
    /// The model's name.
    pub name: String,
    /// The model's version.
    pub version: String,
    /// The registry alias it was resolved from (`production`), when served from a registry.
    pub alias: Option<String>,
    /// The fingerprint of the training data.
    pub data_fingerprint: String,
    /// Evaluation metrics recorded at training time.
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// The probability at or above which the prediction is 1.
    pub threshold: f64,
    /// The git commit the model was trained from.
    pub git_commit: Option<String>,
    /// When this server finished loading the model (RFC 3339, UTC).
    pub loaded_at: String,
    /// The features the model reads.
    pub feature_names: Vec<String>,
    /// The verified checksum of the model file.
    pub checksum: Option<String>,
    /// Where the model came from (file path or registry reference).
    pub source: String,
}

/// A ready model with its description.
pub(crate) struct Loaded {
    pub scorer: Arc<dyn Scorer>,
    pub info: ModelInfo,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// State shared by every handler.
#[derive(Debug)]
pub(crate) struct AppState {
    pub ready: OnceLock<Loaded>,
    pub phase: tokio::sync::watch::Sender<(Phase, Option<String>)>,
    pub metrics: Metrics,
    pub batch_limit: usize,
    pub body_limit: usize,
    pub timeout: Duration,
    pub openapi: OnceLock<Json>,
    /// Permits for prediction requests in flight (see [`shed`]).
    pub predicting: Arc<tokio::sync::Semaphore>,
    pub max_concurrent: usize,
}

impl AppState {
    pub fn phase(&self) -> (Phase, Option<String>) {
        self.phase.borrow().clone()
    }

    pub fn set_phase(&self, phase: Phase, reason: Option<String>) {
        self.phase.send_replace((phase, reason));
    }
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// A stable code: `validation_failed`, `malformed_json`, `unsupported_media_type`,
    /// `payload_too_large`, `not_ready`, `overloaded`, `timeout`, `not_found`,
    /// `method_not_allowed`, `internal`.
    pub error: String,
    /// What went wrong, in plain words.
    pub message: String,
    /// For `validation_failed`: the first fields that were wrong (at most 20).
    #[serde(default)]
    pub fields: Vec<FieldError>,
    /// For `validation_failed`: how many field problems there were in all.
    #[serde(default)]
    pub total_fields: usize,
}

/// An error response.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, error: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                error: error.into(),
                message: message.into(),
                fields: Vec::new(),
                total_fields: 0,
            },
        }
    }

    fn invalid(problems: Problems) -> ApiError {
        let (fields, n) = problems.into_parts();
        let first = fields
            .first()
            .map(|f| format!("`{}` {}", f.field, f.problem))
            .unwrap_or_default();
        let listed = if fields.len() < n {
            format!(" (the first {} are listed)", fields.len())
        } else {
            String::new()
        };
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            if n == 1 {
                format!("1 field is invalid: {first}")
            } else {
                format!("{n} fields are invalid{listed}; first: {first}")
            },
        );
        e.body.fields = fields;
        e.body.total_fields = n;
        e
    }

    fn invalid_one(error: FieldError) -> ApiError {
        let mut p = Problems::new(1);
        p.push_with(|| error);
        ApiError::invalid(p)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body)).into_response();
        // The rest of an oversized or stalled body is never read, so the server closes this
        // connection: say so, or a pooling client reuses it and loses its next request.
        if matches!(
            self.status,
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
        ) {
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// `/health` and `/ready` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Status {
    /// `ok` for liveness; the start-up phase for readiness.
    pub status: String,
    /// The served model's version once ready.
    pub model_version: Option<String>,
    /// Why the server is not ready, when it is not.
    pub reason: Option<String>,
}

/// One prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Prediction {
    /// 1 when `probability >= threshold` (readmission predicted), else 0.
    #[schemars(range(min = 0, max = 1))]
    pub prediction: u8,
    /// The predicted probability of readmission.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub probability: f64,
    /// The decision threshold applied.
    pub threshold: f64,
    /// The version of the model that scored it.
    pub model_version: String,
    /// Fields whose value was not a known category (scored with the unknown mapping).
    pub unknown_categories: Vec<String>,
    /// The largest feature contributions, with `?explain=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contributions: Option<Vec<Contribution>>,
}

/// The request body of `POST /predict/batch`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The encounters to score, at most the server's batch limit.
    #[allow(
        dead_code,
        reason = "documents the body for the OpenAPI schema; the handler parses batches itself"
    )]
    pub encounters: Vec<super::encounter::EncounterSchema>,
}

/// The answer to `POST /predict/batch`: predictions in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BatchResponse {
    /// The version of the model that scored them.
    pub model_version: String,
    /// The number of predictions.
    pub count: usize,
    /// One prediction per encounter, in order.
    pub predictions: Vec<Prediction>,
}

/// Builds the router around shared state.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.body_limit;
    // Only the prediction routes are limited: probes and metrics must answer under any load.
    let predictions = Router::new()
        .route("/predict", post(predict))
        .route("/predict/batch", post(predict_batch))
        .route_layer(middleware::from_fn_with_state(state.clone(), shed));
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/model-info", get(model_info))
        .merge(predictions)
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Sheds prediction requests above the concurrency limit at once, before their body is read:
/// 503 `overloaded` with `Retry-After`, so memory stays bounded by the limit times the body limit.
async fn shed(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    match state.predicting.clone().try_acquire_owned() {
        Ok(permit) => {
            let response = next.run(req).await;
            drop(permit);
            response
        }
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!(
                "{} prediction requests are already in flight (--max-concurrent); retry after 1 s",
                state.max_concurrent
            ),
        )
        .into_response(),
    }
}

/// Times every request out, records metrics and logs one structured line.
async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|p| ROUTES.iter().find(|r| **r == p.as_str()))
        .copied()
        .unwrap_or("unmatched");
    let method = req.method().clone();
    let response = match tokio::time::timeout(state.timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the request did not complete within {} ms",
                state.timeout.as_millis()
            ),
        )
        .into_response(),
    };
    let elapsed = start.elapsed();
    let status = response.status().as_u16();
    state.metrics.request(route, status, elapsed);
    let micros = elapsed.as_micros() as u64;
    match status {
        500.. => tracing::warn!(%method, route, status, latency_us = micros, "request"),
        400.. => tracing::info!(%method, route, status, latency_us = micros, "request"),
        _ => tracing::debug!(%method, route, status, latency_us = micros, "request"),
    }
    response
}

async fn health() -> axum::Json<Status> {
    axum::Json(Status {
        status: "ok".into(),
        model_version: None,
        reason: None,
    })
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if let Some(loaded) = state.ready.get() {
        return axum::Json(Status {
            status: "ready".into(),
            model_version: Some(loaded.info.version.clone()),
            reason: None,
        })
        .into_response();
    }
    let (phase, reason) = state.phase();
    let status = serde_json::to_value(phase)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "loading".into());
    let mut r = (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(Status {
            status,
            model_version: None,
            reason: Some(reason.unwrap_or_else(|| "the model is not loaded yet".into())),
        }),
    )
        .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn loaded(state: &AppState) -> Result<&Loaded, ApiError> {
    state.ready.get().ok_or_else(|| {
        let (phase, reason) = state.phase();
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            match (phase, reason) {
                (Phase::Failed, Some(r)) => format!("no model is being served: {r}"),
                _ => "the model is still loading; poll /ready".into(),
            },
        )
    })
}

async fn model_info(State(state): State<Arc<AppState>>) -> Result<axum::Json<ModelInfo>, ApiError> {
    Ok(axum::Json(loaded(&state)?.info.clone()))
}

async fn openapi(State(state): State<Arc<AppState>>) -> Response {
    match state.openapi.get() {
        Some(doc) => axum::Json(doc.clone()).into_response(),
        None => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "no OpenAPI document",
        )
        .into_response(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let version = state.ready.get().map(|l| l.info.version.as_str());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(version.is_some(), version),
    )
        .into_response()
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {}; see /openapi.json", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{method} is not allowed on {}; see /openapi.json",
            uri.path()
        ),
    )
}

/// Query options of the prediction routes.
#[derive(Debug, Clone, Copy)]
struct Options {
    explain: Option<usize>,
}

fn options(uri: &Uri) -> Result<Options, ApiError> {
    let mut explain = false;
    let mut top = None;
    let mut errors = Problems::new(MAX_LISTED_FIELDS);
    for pair in uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "explain" => match v {
                "true" | "1" => explain = true,
                "false" | "0" => explain = false,
                _ => errors.push_with(|| FieldError {
                    field: "explain".into(),
                    problem: format!("is \"{}\"", v.chars().take(40).collect::<String>()),
                    expected: "true or false".into(),
                }),
            },
            "top" => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_TOP).contains(&n) => top = Some(n),
                _ => errors.push_with(|| FieldError {
                    field: "top".into(),
                    problem: format!("is \"{}\"", v.chars().take(40).collect::<String>()),
                    expected: format!("an integer from 1 to {MAX_TOP}"),
                }),
            },
            _ => {}
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    Ok(Options {
        explain: explain.then(|| top.unwrap_or(DEFAULT_TOP)),
    })
}

/// Checks the content type and body, then parses JSON.
fn json_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence != "application/json" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            if ct.is_empty() {
                "no Content-Type; send `Content-Type: application/json`".to_owned()
            } else {
                format!(
                    "Content-Type `{}` is not supported; send `application/json`",
                    ct.chars().take(80).collect::<String>()
                )
            },
        ));
    }
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the body is larger than the limit of {} bytes (--body-limit)",
                    state.body_limit
                ),
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("the body could not be read: {}", rejection.body_text()),
            )
        }
    })?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )
    })
}

fn score(loaded: &Loaded, e: &Encounter, opts: Options) -> Result<Prediction, ApiError> {
    let p = loaded.scorer.score(e);
    if !p.is_finite() || !(0.0..=1.0).contains(&p) {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the model returned a probability outside [0, 1]",
        ));
    }
    let contributions = opts.explain.map(|top| {
        let mut c = loaded.scorer.explain(e, top);
        c.retain(|c| c.contribution.is_finite());
        c
    });
    let threshold = loaded.info.threshold;
    Ok(Prediction {
        prediction: u8::from(p >= threshold),
        probability: p,
        threshold,
        model_version: loaded.info.version.clone(),
        unknown_categories: e
            .unknown_categories()
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        contributions,
    })
}

async fn predict(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Prediction>, ApiError> {
    loaded(&state)?;
    let opts = options(&uri)?;
    off_the_workers(&state, body, move |st, body| {
        single(st, opts, &headers, body)
    })
    .await
    .map(axum::Json)
}

async fn predict_batch(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<BatchResponse>, ApiError> {
    loaded(&state)?;
    let opts = options(&uri)?;
    off_the_workers(&state, body, move |st, body| {
        batch(st, opts, &headers, body)
    })
    .await
    .map(axum::Json)
}

/// Permits for parsing large bodies off the async workers: one per core.
fn heavy_work() -> &'static tokio::sync::Semaphore {
    static HEAVY: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    HEAVY.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    })
}

/// Runs `work` on the body: inline when the body is small, else on a blocking thread. Parsing,
/// validating and scoring a large body is CPU work; on the async workers it would delay `/ready`
/// and `/health` behind it (a probe that times out restarts a healthy pod).
async fn off_the_workers<T: Send + 'static>(
    state: &Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
    work: impl FnOnce(&AppState, Result<Bytes, BytesRejection>) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let small = match &body {
        Ok(b) => b.len() <= INLINE_BODY_BYTES,
        Err(_) => true,
    };
    if small {
        return work(state.as_ref(), body);
    }
    // At most one large body per core is parsed at a time: the rest wait here, as bytes, so
    // memory stays bounded by the cores rather than by `--max-concurrent`.
    let _permit = heavy_work().acquire().await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("scoring failed: {e}"),
        )
    })?;
    let st = state.clone();
    tokio::task::spawn_blocking(move || work(st.as_ref(), body))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("scoring failed: {e}"),
            )
        })?
}

fn single(
    state: &AppState,
    opts: Options,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Prediction, ApiError> {
    let loaded = loaded(state)?;
    let json = json_body(state, headers, body)?;
    let mut problems = Problems::new(MAX_LISTED_FIELDS);
    let encounter =
        Encounter::validate(&json, "", &mut problems).ok_or_else(|| ApiError::invalid(problems))?;
    let p = score(loaded, &encounter, opts)?;
    state
        .metrics
        .predictions([(p.probability, p.prediction == 1)]);
    Ok(p)
}

fn batch(
    state: &AppState,
    opts: Options,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<BatchResponse, ApiError> {
    let loaded = loaded(state)?;
    let json = json_body(state, headers, body)?;
    let field = |problem: String, expected: String| {
        ApiError::invalid_one(FieldError {
            field: "encounters".into(),
            problem,
            expected,
        })
    };
    let expected = format!("an array of 1 to {} encounter objects", state.batch_limit);
    let obj = json.as_object().ok_or_else(|| {
        ApiError::invalid_one(FieldError {
            field: "(body)".into(),
            problem: format!("is {}", kind_of(&json)),
            expected: "an object {\"encounters\": [...]}".into(),
        })
    })?;
    let mut errors = Problems::new(MAX_LISTED_FIELDS);
    for k in obj.keys().filter(|k| *k != "encounters") {
        errors.push_with(|| FieldError {
            field: k.clone(),
            problem: "is not a field of a batch request".into(),
            expected: "only `encounters`".into(),
        });
    }
    let items = match obj.get("encounters") {
        Some(Json::Array(items)) => items,
        Some(other) => return Err(field(format!("is {}", kind_of(other)), expected)),
        None => return Err(field("is required but absent".into(), expected)),
    };
    if items.is_empty() || items.len() > state.batch_limit {
        return Err(field(
            format!("holds {} encounters", items.len()),
            format!("{expected} (--batch-limit)"),
        ));
    }
    let mut encounters = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let Some(e) = Encounter::validate(item, &format!("encounters[{i}]."), &mut errors) {
            encounters.push(e);
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let predictions = encounters
        .iter()
        .map(|e| score(loaded, e, opts))
        .collect::<Result<Vec<_>, _>>()?;
    state.metrics.predictions(
        predictions
            .iter()
            .map(|p| (p.probability, p.prediction == 1)),
    );
    Ok(BatchResponse {
        model_version: loaded.info.version.clone(),
        count: predictions.len(),
        predictions,
    })
}
