//! The MLflow backend: MLflow's REST API 2.0 (registered models, model versions, aliases, tags)
//! with the model file stored as a run artifact through the tracking server's artifact proxy
//! (`mlflow-artifacts`). Stages are deprecated upstream and not used.
//!
//! Mapping: one registered model (`?model=`, default `health-predict`) holds the versions. Each
//! registration creates a run in an experiment (`?experiment=`, default `health-predict`), logs
//! params and metrics on it (so the MLflow UI shows them), uploads `model/model.bin`, then creates
//! a model version whose tags carry the checksum and the registration (lineage, metrics, params).
//! Alias history lives in registered-model tags `health_predict.history.<alias>.<µs>.<nonce>`, one
//! JSON event each (microseconds since the epoch, fixed width, so keys sort by time; the nonce
//! keeps concurrent moves from overwriting each other). MLflow has no multi-call transactions:
//! alias moves should be serialised by the caller (one pipeline at a time, e.g. a CI concurrency
//! group); registration is safe to race (a duplicate of the same bytes is deleted again).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{
    AliasAction, AliasEvent, Moved, Registered, Registration, Registry, RegistryError,
    VersionRecord, local::verify, rollback_target, sha256_hex, validate_alias,
};
use crate::retry::{Backoff, Decision, retry};
use crate::secret::Secret;

/// Registered model and experiment name when the URI names none.
pub const DEFAULT_NAME: &str = "health-predict";
const TAG_SHA: &str = "health_predict.sha256";
const TAG_SIZE: &str = "health_predict.size";
const TAG_REGISTRATION: &str = "health_predict.registration";
const TAG_HISTORY: &str = "health_predict.history.";
const TAG_IMAGE: &str = "health_predict.image";
const ARTIFACT_DIR: &str = "model";
const ARTIFACT_FILE: &str = "model.bin";

/// MLflow's credentials, as its own clients take them: a token, or a user and a password (the
/// token wins). `cli` reads them from `MLFLOW_TRACKING_TOKEN`, `MLFLOW_TRACKING_USERNAME` and
/// `MLFLOW_TRACKING_PASSWORD`; this module reads no variables.
#[derive(Debug, Clone, Default)]
pub struct MlflowCredentials {
    pub token: Option<Secret>,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

/// The credentials a client sends.
#[derive(Debug, Clone)]
enum Auth {
    None,
    Bearer(Secret),
    Basic(String, Secret),
}

/// A registry on an MLflow tracking server.
#[derive(Debug, Clone)]
pub struct MlflowRegistry {
    base: Url,
    model: String,
    experiment: String,
    client: reqwest::Client,
    auth: Auth,
}

/// A failed REST call: MLflow's own error answer, or no answer.
#[derive(Debug)]
enum CallError {
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
    Transport(reqwest::Error),
}

impl CallError {
    fn is(&self, code: &str) -> bool {
        matches!(self, CallError::Api { code: c, .. } if c == code)
    }

    fn into_registry(self, base: &Url, operation: &str) -> RegistryError {
        match self {
            CallError::Api {
                status,
                code,
                message,
            } => RegistryError::Mlflow {
                operation: operation.into(),
                problem: format!("HTTP {status} {code}: {message}"),
            },
            CallError::Transport(source) => RegistryError::Unreachable {
                url: base.to_string(),
                operation: operation.into(),
                source,
            },
        }
    }
}

#[derive(Debug, Deserialize)]
struct Tag {
    key: String,
    value: String,
}

#[derive(Debug, Deserialize)]
struct ModelVersion {
    version: String,
    #[serde(default)]
    creation_timestamp: Option<i64>,
    #[serde(default)]
    source: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    status_message: Option<String>,
    #[serde(default)]
    tags: Vec<Tag>,
}

#[derive(Debug, Deserialize)]
struct Alias {
    alias: String,
    version: String,
}

#[derive(Debug, Default, Deserialize)]
struct RegisteredModel {
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    aliases: Vec<Alias>,
}

impl MlflowRegistry {
    /// Parses `mlflow+http(s)://HOST:PORT[/PREFIX][?model=NAME&experiment=NAME]`; requests carry
    /// `credentials` (empty values are ignored).
    pub fn open(
        uri: &str,
        credentials: &MlflowCredentials,
    ) -> Result<MlflowRegistry, RegistryError> {
        let bad = || RegistryError::BadUri { uri: uri.into() };
        let rest = uri.strip_prefix("mlflow+").ok_or_else(bad)?;
        let mut url = Url::parse(rest).map_err(|_| bad())?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(bad());
        }
        if !url.username().is_empty() || url.password().is_some() {
            // Credentials in a URI end up in logs and process listings.
            return Err(bad());
        }
        let mut model = DEFAULT_NAME.to_owned();
        let mut experiment = DEFAULT_NAME.to_owned();
        for (k, v) in url.query_pairs() {
            match &*k {
                "model" => model = v.into_owned(),
                "experiment" => experiment = v.into_owned(),
                _ => return Err(bad()),
            }
        }
        let safe = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        };
        if !safe(&model) || !safe(&experiment) {
            return Err(bad());
        }
        url.set_query(None);
        url.set_fragment(None);
        if !url.path().ends_with('/') {
            let p = format!("{}/", url.path());
            url.set_path(&p);
        }
        let auth = match (
            credentials.token.clone().filter(|t| !t.is_empty()),
            credentials.username.clone().filter(|u| !u.is_empty()),
            credentials.password.clone().filter(|p| !p.is_empty()),
        ) {
            (Some(token), _, _) => Auth::Bearer(token),
            (None, Some(user), Some(pass)) => Auth::Basic(user, pass),
            _ => Auth::None,
        };
        crate::install_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|source| RegistryError::Unreachable {
                url: url.to_string(),
                operation: "client setup".into(),
                source,
            })?;
        Ok(MlflowRegistry {
            base: url,
            model,
            experiment,
            client,
            auth,
        })
    }

    fn url(&self, path: &str) -> Url {
        // `base` ends with `/` and `path` is relative, so joining keeps any prefix.
        self.base.join(path).unwrap_or_else(|_| self.base.clone())
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let rb = self.client.request(method, url);
        match &self.auth {
            Auth::None => rb,
            Auth::Bearer(t) => rb.bearer_auth(t.expose()),
            Auth::Basic(u, p) => rb.basic_auth(u, Some(p.expose())),
        }
    }

    /// One REST call with bounded retries. Connection failures are always retried (nothing
    /// reached the server); timeouts, 429 and 5xx only when `idempotent`.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Body<'_>>,
        idempotent: bool,
    ) -> Result<bytes::Bytes, CallError> {
        let mut url = self.url(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let result = retry(
            &Backoff::API,
            |_| {
                let mut rb = self.request(method.clone(), url.clone());
                match body {
                    Some(Body::Json(v)) => rb = rb.json(v),
                    Some(Body::Bytes(b)) => rb = rb.body(b.to_vec()),
                    None => {}
                }
                async move {
                    let resp = rb.send().await.map_err(CallError::Transport)?;
                    let status = resp.status();
                    let bytes = resp.bytes().await.map_err(CallError::Transport)?;
                    if status.is_success() {
                        return Ok(bytes);
                    }
                    let parsed: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    let text = |k: &str| parsed.get(k).and_then(Value::as_str).map(str::to_owned);
                    Err(CallError::Api {
                        status,
                        code: text("error_code").unwrap_or_else(|| status.as_str().to_owned()),
                        message: text("message").unwrap_or_else(|| {
                            String::from_utf8_lossy(&bytes).chars().take(300).collect()
                        }),
                    })
                }
            },
            |e: &CallError| match e {
                CallError::Transport(t) if t.is_connect() => Decision::Retry,
                CallError::Transport(t) if idempotent && t.is_timeout() => Decision::Retry,
                CallError::Api { status, .. }
                    if idempotent
                        && (status.is_server_error()
                            || *status == StatusCode::TOO_MANY_REQUESTS) =>
                {
                    Decision::Retry
                }
                _ => Decision::Stop,
            },
        )
        .await;
        result.map_err(|(e, _)| e)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        idempotent: bool,
    ) -> Result<T, CallError> {
        let path = format!("api/2.0/mlflow/{endpoint}");
        let bytes = self
            .send(method, &path, query, body.map(Body::Json), idempotent)
            .await?;
        serde_json::from_slice(if bytes.is_empty() { b"{}" } else { &bytes }).map_err(|e| {
            CallError::Api {
                status: StatusCode::OK,
                code: "UNEXPECTED_RESPONSE".into(),
                message: format!("{endpoint}: {e}"),
            }
        })
    }

    fn err(&self, operation: &str) -> impl FnOnce(CallError) -> RegistryError + '_ {
        let operation = operation.to_owned();
        move |e| e.into_registry(&self.base, &operation)
    }

    async fn registered_model(&self) -> Result<Option<RegisteredModel>, RegistryError> {
        #[derive(Deserialize)]
        struct Resp {
            registered_model: RegisteredModel,
        }
        match self
            .call::<Resp>(
                Method::GET,
                "registered-models/get",
                &[("name", &self.model)],
                None,
                true,
            )
            .await
        {
            Ok(r) => Ok(Some(r.registered_model)),
            Err(e) if e.is("RESOURCE_DOES_NOT_EXIST") => Ok(None),
            Err(e) => Err(self.err("registered-models/get")(e)),
        }
    }

    async fn ensure_model(&self) -> Result<(), RegistryError> {
        if self.registered_model().await?.is_some() {
            return Ok(());
        }
        let body = json!({
            "name": self.model,
            "description": "Hospital readmission models registered by health-predict",
        });
        match self
            .call::<Value>(
                Method::POST,
                "registered-models/create",
                &[],
                Some(&body),
                false,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is("RESOURCE_ALREADY_EXISTS") => Ok(()),
            Err(e) => Err(self.err("registered-models/create")(e)),
        }
    }

    async fn experiment_id(&self) -> Result<String, RegistryError> {
        #[derive(Deserialize)]
        struct Exp {
            experiment_id: String,
        }
        #[derive(Deserialize)]
        struct Got {
            experiment: Exp,
        }
        let query = [("experiment_name", self.experiment.as_str())];
        match self
            .call::<Got>(Method::GET, "experiments/get-by-name", &query, None, true)
            .await
        {
            Ok(g) => return Ok(g.experiment.experiment_id),
            Err(e) if e.is("RESOURCE_DOES_NOT_EXIST") => {}
            Err(e) => return Err(self.err("experiments/get-by-name")(e)),
        }
        let body = json!({ "name": self.experiment });
        match self
            .call::<Exp>(Method::POST, "experiments/create", &[], Some(&body), false)
            .await
        {
            Ok(e) => Ok(e.experiment_id),
            Err(e) if e.is("RESOURCE_ALREADY_EXISTS") => self
                .call::<Got>(Method::GET, "experiments/get-by-name", &query, None, true)
                .await
                .map(|g| g.experiment.experiment_id)
                .map_err(self.err("experiments/get-by-name")),
            Err(e) => Err(self.err("experiments/create")(e)),
        }
    }

    async fn model_versions(&self) -> Result<Vec<ModelVersion>, RegistryError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            model_versions: Vec<ModelVersion>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        let filter = format!("name='{}'", self.model);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("filter", filter.as_str()), ("max_results", "200")];
            if let Some(t) = token.as_deref() {
                query.push(("page_token", t));
            }
            let page: Page = self
                .call(Method::GET, "model-versions/search", &query, None, true)
                .await
                .map_err(self.err("model-versions/search"))?;
            out.extend(page.model_versions);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        out.sort_by_key(|v| v.version.parse::<u64>().unwrap_or(0));
        Ok(out)
    }

    async fn model_version(&self, version: u64) -> Result<ModelVersion, RegistryError> {
        #[derive(Deserialize)]
        struct Resp {
            model_version: ModelVersion,
        }
        let v = version.to_string();
        match self
            .call::<Resp>(
                Method::GET,
                "model-versions/get",
                &[("name", &self.model), ("version", &v)],
                None,
                true,
            )
            .await
        {
            Ok(r) => Ok(r.model_version),
            Err(e) if e.is("RESOURCE_DOES_NOT_EXIST") => Err(RegistryError::NoVersion {
                version,
                registry: self.describe(),
            }),
            Err(e) => Err(self.err("model-versions/get")(e)),
        }
    }

    fn to_record(&self, mv: &ModelVersion) -> Result<VersionRecord, RegistryError> {
        let version = mv.version.parse::<u64>().unwrap_or(0);
        let corrupt = |problem: String| RegistryError::Corrupt {
            version,
            registry: self.describe(),
            problem,
        };
        let tag = |k: &str| {
            mv.tags
                .iter()
                .find(|t| t.key == k)
                .map(|t| t.value.as_str())
        };
        let sha256 = tag(TAG_SHA)
            .ok_or_else(|| {
                corrupt(format!(
                    "no `{TAG_SHA}` tag: not registered by health-predict"
                ))
            })?
            .to_owned();
        let size = tag(TAG_SIZE)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt(format!("no valid `{TAG_SIZE}` tag")))?;
        let registration: Registration = match tag(TAG_REGISTRATION) {
            Some(j) => serde_json::from_str(j)
                .map_err(|e| corrupt(format!("`{TAG_REGISTRATION}` tag: {e}")))?,
            None => Registration::default(),
        };
        let registered_at = mv
            .creation_timestamp
            .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        Ok(VersionRecord {
            version,
            sha256,
            size,
            registered_at,
            model_id: registration.model_id,
            schema_hash: registration.schema_hash,
            lineage: registration.lineage,
            metrics: registration.metrics,
            params: registration.params,
            description: registration.description,
            image: tag(TAG_IMAGE).map(str::to_owned),
        })
    }

    /// The artifact proxy path of a version's model file.
    fn artifact_path(&self, mv: &ModelVersion) -> Result<String, RegistryError> {
        let rest =
            mv.source
                .strip_prefix("mlflow-artifacts:")
                .ok_or_else(|| RegistryError::Mlflow {
                    operation: "artifact download".into(),
                    problem: format!(
                        "version {} has source `{}`, not served by the artifact proxy; start the \
                     server with --artifacts-destination (artifact serving on)",
                        mv.version, mv.source
                    ),
                })?;
        // `mlflow-artifacts://host:port/path` or `mlflow-artifacts:/path`.
        let path = match rest.strip_prefix("//") {
            Some(r) => r.split_once('/').map_or("", |(_, p)| p),
            None => rest,
        };
        Ok(format!(
            "{}/{ARTIFACT_FILE}",
            path.trim_start_matches('/').trim_end_matches('/')
        ))
    }

    async fn wait_ready(&self, version: u64) -> Result<ModelVersion, RegistryError> {
        let r = retry(
            &Backoff::READINESS,
            |_| async move {
                let mv = self.model_version(version).await.map_err(Some)?;
                match mv.status.as_deref() {
                    None | Some("READY") => Ok(mv),
                    Some("PENDING_REGISTRATION") => Err(None),
                    Some(other) => Err(Some(RegistryError::Mlflow {
                        operation: "model-versions/create".into(),
                        problem: format!(
                            "version {version} is {other}: {}",
                            mv.status_message.unwrap_or_default()
                        ),
                    })),
                }
            },
            |e: &Option<RegistryError>| {
                if e.is_none() {
                    Decision::Retry
                } else {
                    Decision::Stop
                }
            },
        )
        .await;
        r.map_err(|(e, _)| {
            e.unwrap_or_else(|| RegistryError::Mlflow {
                operation: "model-versions/create".into(),
                problem: format!("version {version} stayed PENDING_REGISTRATION"),
            })
        })
    }

    async fn register_now(
        &self,
        model: &[u8],
        registration: &Registration,
    ) -> Result<Registered, RegistryError> {
        let sha256 = sha256_hex(model);
        let existing = self.model_versions().await?;
        for mv in existing.iter().rev() {
            if mv
                .tags
                .iter()
                .any(|t| t.key == TAG_SHA && t.value == sha256)
            {
                return Ok(Registered {
                    record: self.to_record(mv)?,
                    created: false,
                });
            }
        }
        if let Some(parent) = registration.lineage.parent_version
            && !existing.iter().any(|v| v.version == parent.to_string())
        {
            return Err(RegistryError::NoVersion {
                version: parent,
                registry: self.describe(),
            });
        }
        self.ensure_model().await?;
        let experiment_id = self.experiment_id().await?;

        #[derive(Deserialize)]
        struct RunInfo {
            run_id: String,
            artifact_uri: String,
        }
        #[derive(Deserialize)]
        struct Run {
            info: RunInfo,
        }
        #[derive(Deserialize)]
        struct Created {
            run: Run,
        }
        let now = jiff::Timestamp::now().as_millisecond();
        let mut run_tags =
            vec![json!({"key": "mlflow.runName", "value": format!("register-{}", &sha256[..12])})];
        if let Some(c) = &registration.lineage.git_commit {
            run_tags.push(json!({"key": "mlflow.source.git.commit", "value": c}));
        }
        if let Some(r) = &registration.lineage.run_id {
            run_tags.push(json!({"key": "health_predict.run_id", "value": r}));
        }
        let created: Created = self
            .call(
                Method::POST,
                "runs/create",
                &[],
                Some(&json!({"experiment_id": experiment_id, "start_time": now, "tags": run_tags})),
                false,
            )
            .await
            .map_err(self.err("runs/create"))?;
        let run = created.run.info;

        let params: Vec<Value> = registration
            .params
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                json!({"key": k, "value": value})
            })
            .collect();
        let metrics: Vec<Value> = registration
            .metrics
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| json!({"key": k, "value": v, "timestamp": now, "step": 0}))
            .collect();
        if !params.is_empty() || !metrics.is_empty() {
            self.call::<Value>(
                Method::POST,
                "runs/log-batch",
                &[],
                Some(&json!({"run_id": run.run_id, "params": params, "metrics": metrics})),
                true,
            )
            .await
            .map_err(self.err("runs/log-batch"))?;
        }

        let source = format!("{}/{ARTIFACT_DIR}", run.artifact_uri.trim_end_matches('/'));
        let probe = ModelVersion {
            version: "0".into(),
            creation_timestamp: None,
            source: source.clone(),
            status: None,
            status_message: None,
            tags: Vec::new(),
        };
        let artifact = self.artifact_path(&probe)?;
        self.send(
            Method::PUT,
            &format!("api/2.0/mlflow-artifacts/artifacts/{artifact}"),
            &[],
            Some(Body::Bytes(model)),
            true,
        )
        .await
        .map_err(self.err("artifact upload"))?;
        self.call::<Value>(
            Method::POST,
            "runs/update",
            &[],
            Some(&json!({"run_id": run.run_id, "status": "FINISHED", "end_time": jiff::Timestamp::now().as_millisecond()})),
            true,
        )
        .await
        .map_err(self.err("runs/update"))?;

        let registration_json =
            serde_json::to_string(registration).map_err(|e| RegistryError::Mlflow {
                operation: "model-versions/create".into(),
                problem: e.to_string(),
            })?;
        #[derive(Deserialize)]
        struct MvResp {
            model_version: ModelVersion,
        }
        let body = json!({
            "name": self.model,
            "source": source,
            "run_id": run.run_id,
            "description": registration.description.clone().unwrap_or_default(),
            "tags": [
                {"key": TAG_SHA, "value": sha256},
                {"key": TAG_SIZE, "value": model.len().to_string()},
                {"key": TAG_REGISTRATION, "value": registration_json},
            ],
        });
        let mv: MvResp = self
            .call(
                Method::POST,
                "model-versions/create",
                &[],
                Some(&body),
                false,
            )
            .await
            .map_err(self.err("model-versions/create"))?;
        let version = mv.model_version.version.parse::<u64>().unwrap_or(0);
        let ready = self.wait_ready(version).await?;
        // Another process may have registered the same bytes between our search and create.
        // The lowest such version wins; a later duplicate (ours) is deleted again.
        let first = self.model_versions().await?.into_iter().find(|mv| {
            mv.tags
                .iter()
                .any(|t| t.key == TAG_SHA && t.value == sha256)
        });
        if let Some(first) = first
            && first.version != ready.version
        {
            tracing::info!(
                duplicate = %ready.version,
                kept = %first.version,
                "a concurrent registration stored the same model first; removing the duplicate"
            );
            self.call::<Value>(
                Method::DELETE,
                "model-versions/delete",
                &[],
                Some(&json!({"name": self.model, "version": ready.version})),
                true,
            )
            .await
            .map_err(self.err("model-versions/delete"))?;
            return Ok(Registered {
                record: self.to_record(&first)?,
                created: false,
            });
        }
        Ok(Registered {
            record: self.to_record(&ready)?,
            created: true,
        })
    }

    async fn fetch_now(&self, version: u64) -> Result<(Vec<u8>, VersionRecord), RegistryError> {
        let mv = self.model_version(version).await?;
        let record = self.to_record(&mv)?;
        let path = self.artifact_path(&mv)?;
        let bytes = self
            .send(
                Method::GET,
                &format!("api/2.0/mlflow-artifacts/artifacts/{path}"),
                &[],
                None,
                true,
            )
            .await
            .map_err(|e| match e {
                CallError::Api { status, .. } if status == StatusCode::NOT_FOUND => {
                    RegistryError::Corrupt {
                        version,
                        registry: self.describe(),
                        problem: format!("artifact {path} is missing"),
                    }
                }
                e => e.into_registry(&self.base, "artifact download"),
            })?;
        verify(&bytes, &record).map_err(|problem| RegistryError::Corrupt {
            version,
            registry: self.describe(),
            problem,
        })?;
        Ok((bytes.to_vec(), record))
    }

    fn history_of(model: &RegisteredModel, alias: &str) -> Result<Vec<AliasEvent>, RegistryError> {
        let prefix = format!("{TAG_HISTORY}{alias}.");
        let mut tagged: Vec<(&str, &str)> = model
            .tags
            .iter()
            .filter_map(|t| {
                t.key
                    .strip_prefix(&prefix)
                    .map(|seq| (seq, t.value.as_str()))
            })
            .collect();
        tagged.sort_unstable();
        tagged
            .into_iter()
            .map(|(seq, v)| {
                serde_json::from_str(v).map_err(|e| RegistryError::BadState {
                    path: format!("registered-model tag {prefix}{seq}"),
                    problem: e.to_string(),
                })
            })
            .collect()
    }

    async fn move_alias(
        &self,
        alias: &str,
        to: u64,
        action: AliasAction,
        run_id: Option<&str>,
    ) -> Result<Moved, RegistryError> {
        // The target must be a complete health-predict version.
        let mv = self.model_version(to).await?;
        self.to_record(&mv)?;
        let model = self.registered_model().await?.unwrap_or_default();
        let from = model
            .aliases
            .iter()
            .find(|a| a.alias == alias)
            .and_then(|a| a.version.parse::<u64>().ok());
        if from == Some(to) && action == AliasAction::Promote {
            return Ok(Moved {
                alias: alias.into(),
                from,
                to,
                changed: false,
            });
        }
        let event = AliasEvent {
            alias: alias.into(),
            action,
            from,
            to,
            at: jiff::Timestamp::now(),
            run_id: run_id.map(str::to_owned),
        };
        self.call::<Value>(
            Method::POST,
            "registered-models/alias",
            &[],
            Some(&json!({"name": self.model, "alias": alias, "version": to.to_string()})),
            true,
        )
        .await
        .map_err(self.err("registered-models/alias"))?;
        let event_json = serde_json::to_string(&event).map_err(|e| RegistryError::BadState {
            path: "alias history".into(),
            problem: e.to_string(),
        })?;
        self.call::<Value>(
            Method::POST,
            "registered-models/set-tag",
            &[],
            Some(&json!({
                "name": self.model,
                "key": format!(
                    "{TAG_HISTORY}{alias}.{:016}.{:08x}",
                    event.at.as_microsecond().max(0),
                    rand::random::<u32>()
                ),
                "value": event_json,
            })),
            true,
        )
        .await
        .map_err(self.err("registered-models/set-tag"))?;
        Ok(Moved {
            alias: alias.into(),
            from,
            to,
            changed: true,
        })
    }
}

#[derive(Clone, Copy)]
enum Body<'a> {
    Json(&'a Value),
    Bytes(&'a [u8]),
}

impl Registry for MlflowRegistry {
    fn describe(&self) -> String {
        format!("mlflow+{}?model={}", self.base, self.model)
    }

    fn register<'a>(
        &'a self,
        model: &'a [u8],
        registration: &'a Registration,
    ) -> BoxFuture<'a, Result<Registered, RegistryError>> {
        self.register_now(model, registration).boxed()
    }

    fn versions(&self) -> BoxFuture<'_, Result<Vec<VersionRecord>, RegistryError>> {
        async move {
            let mut out = Vec::new();
            for mv in self.model_versions().await? {
                if !mv.tags.iter().any(|t| t.key == TAG_SHA) {
                    // Another tool's version of the same registered model: not ours to list.
                    tracing::warn!(
                        version = %mv.version,
                        "skipping a model version not registered by health-predict"
                    );
                    continue;
                }
                out.push(self.to_record(&mv)?);
            }
            Ok(out)
        }
        .boxed()
    }

    fn record(&self, version: u64) -> BoxFuture<'_, Result<VersionRecord, RegistryError>> {
        async move { self.to_record(&self.model_version(version).await?) }.boxed()
    }

    fn fetch(
        &self,
        version: u64,
    ) -> BoxFuture<'_, Result<(Vec<u8>, VersionRecord), RegistryError>> {
        self.fetch_now(version).boxed()
    }

    fn aliases(&self) -> BoxFuture<'_, Result<BTreeMap<String, u64>, RegistryError>> {
        async move {
            Ok(self
                .registered_model()
                .await?
                .unwrap_or_default()
                .aliases
                .into_iter()
                .filter_map(|a| a.version.parse().ok().map(|v| (a.alias, v)))
                .collect())
        }
        .boxed()
    }

    fn promote<'a>(
        &'a self,
        version: u64,
        alias: &'a str,
        run_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Moved, RegistryError>> {
        async move {
            validate_alias(alias)?;
            self.move_alias(alias, version, AliasAction::Promote, run_id)
                .await
        }
        .boxed()
    }

    fn rollback<'a>(
        &'a self,
        alias: &'a str,
        run_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Moved, RegistryError>> {
        async move {
            validate_alias(alias)?;
            let model = self.registered_model().await?.unwrap_or_default();
            let to = rollback_target(alias, &Self::history_of(&model, alias)?)?;
            self.move_alias(alias, to, AliasAction::Rollback, run_id)
                .await
        }
        .boxed()
    }

    fn set_image<'a>(
        &'a self,
        version: u64,
        image: &'a str,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        async move {
            self.record(version).await?;
            self.call::<Value>(
                Method::POST,
                "model-versions/set-tag",
                &[],
                Some(&json!({
                    "name": self.model,
                    "version": version.to_string(),
                    "key": TAG_IMAGE,
                    "value": image,
                })),
                true,
            )
            .await
            .map_err(self.err("model-versions/set-tag"))?;
            Ok(())
        }
        .boxed()
    }

    fn history<'a>(
        &'a self,
        alias: &'a str,
    ) -> BoxFuture<'a, Result<Vec<AliasEvent>, RegistryError>> {
        async move {
            validate_alias(alias)?;
            let model = self.registered_model().await?.unwrap_or_default();
            Self::history_of(&model, alias)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_parts_and_refusals() {
        let r = MlflowRegistry::open(
            "mlflow+http://127.0.0.1:5000/prefix?model=m1&experiment=e",
            &MlflowCredentials::default(),
        )
        .unwrap();
        assert_eq!(r.base.as_str(), "http://127.0.0.1:5000/prefix/");
        assert_eq!((r.model.as_str(), r.experiment.as_str()), ("m1", "e"));
        assert_eq!(
            r.url("api/2.0/mlflow/x").as_str(),
            "http://127.0.0.1:5000/prefix/api/2.0/mlflow/x"
        );
        for bad in [
            "mlflow+ftp://h:1",
            "mlflow+http://user:pw@h:1",
            "mlflow+http://h:1?model=a'b",
            "mlflow+http://h:1?other=1",
            "mlflow+nonsense",
        ] {
            assert!(
                MlflowRegistry::open(bad, &MlflowCredentials::default()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn artifact_paths_come_from_proxy_sources() {
        let r = MlflowRegistry::open(
            "mlflow+http://127.0.0.1:5000",
            &MlflowCredentials::default(),
        )
        .unwrap();
        let mv = |source: &str| ModelVersion {
            version: "1".into(),
            creation_timestamp: None,
            source: source.into(),
            status: None,
            status_message: None,
            tags: vec![],
        };
        assert_eq!(
            r.artifact_path(&mv("mlflow-artifacts:/1/abc/artifacts/model"))
                .unwrap(),
            "1/abc/artifacts/model/model.bin"
        );
        assert_eq!(
            r.artifact_path(&mv("mlflow-artifacts://h:5000/1/abc/artifacts/model/"))
                .unwrap(),
            "1/abc/artifacts/model/model.bin"
        );
        assert!(r.artifact_path(&mv("s3://bucket/x")).is_err());
    }
}
