//! Verify a rollout by watching (not polling) the Deployment, its ReplicaSets, Pods and Events,
//! and classify a failure the moment its telling signal arrives.
//!
//! A status is trusted only once `observedGeneration >= generation`; pods count only when they
//! belong to the ReplicaSet of the Deployment's current revision. The assessment itself is a pure
//! function of the watched state ([`assess`]), so every rule is unit-tested without a server; the
//! async part only keeps the state current, enriches a failure (pull-secret inspection, the last
//! log lines) and, once the rollout is complete, checks `/model-info` through a [`Forwarder`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ::kube::Client;
use ::kube::api::{Api, LogParams};
use ::kube::runtime::WatchStreamExt;
use ::kube::runtime::watcher::{self, Event as WatchEvent};
use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Pod, Secret as KSecret, ServiceAccount};
use serde::Serialize;

use super::error::KubeError;
use super::forward::Forwarder;
use super::pull_secret::{
    self, DOCKERCONFIGJSON_KEY, DOCKERCONFIGJSON_TYPE, EXPIRES_AT_ANNOTATION,
};
use crate::retry::{Backoff, Decision, retry};

/// Annotation the deployment controller keeps the revision in.
pub const REVISION: &str = "deployment.kubernetes.io/revision";

/// What to verify.
#[derive(Debug, Clone)]
pub struct VerifyRequest {
    pub namespace: String,
    pub deployment: String,
    /// Give up (and report a timeout) after this long.
    pub timeout: Duration,
    /// Readiness-probe failures of one pod (the Unhealthy event's count) that fail the rollout.
    pub readiness_failures: i32,
    /// Log lines to fetch from a crashing container.
    pub log_lines: i64,
    /// Check `/model-info` reports this version through the Service (needs a forwarder).
    pub expected_version: Option<String>,
    /// The Service and port to reach for `/model-info`.
    pub service: String,
    pub service_port: u16,
}

impl VerifyRequest {
    pub fn new(namespace: &str, deployment: &str) -> VerifyRequest {
        VerifyRequest {
            namespace: namespace.to_owned(),
            deployment: deployment.to_owned(),
            timeout: Duration::from_secs(180),
            readiness_failures: 5,
            log_lines: 20,
            expected_version: None,
            service: deployment.to_owned(),
            service_port: 80,
        }
    }
}

/// The kinds of rollout failure verify tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// `ErrImagePull` / `ImagePullBackOff` / `InvalidImageName`.
    ImagePull,
    /// `CrashLoopBackOff` (with the last log lines).
    CrashLoop,
    /// `CreateContainerConfigError` / `CreateContainerError`.
    ContainerConfig,
    /// The scheduler cannot place a pod.
    Unschedulable,
    /// Readiness probes keep failing.
    Readiness,
    /// The Deployment's `progressDeadlineSeconds` passed (`ProgressDeadlineExceeded`).
    ProgressDeadline,
    /// The controller could not create pods (`ReplicaFailure`, e.g. a quota).
    ReplicaFailure,
    /// Nothing told a reason before verify's own deadline.
    Timeout,
    /// The rollout completed but `/model-info` did not report the expected version.
    ModelVersion,
}

/// What verify found about the pull secret behind an image pull failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PullSecretState {
    /// The pod names no pull secret at all (neither its spec nor its ServiceAccount).
    NoneConfigured,
    /// A named Secret does not exist.
    Missing { name: String },
    /// The Secret exists but cannot work (wrong type, bad JSON, no entry for the registry).
    Malformed { name: String, problem: String },
    /// The Secret's credentials expired (its expiry annotation is in the past).
    Expired { name: String, expired_at: String },
    /// The Secret looks valid: the cause is elsewhere (the image, the repository policy).
    Present { name: String },
}

/// A classified rollout failure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    pub kind: FailureKind,
    pub pod: Option<String>,
    pub message: String,
    pub hint: String,
    /// When verify classified the failure.
    pub detected_at: jiff::Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_secret: Option<PullSecretState>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
}

/// The outcome of a verify.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub namespace: String,
    pub deployment: String,
    pub passed: bool,
    pub revision: Option<String>,
    pub image: Option<String>,
    pub generation: Option<i64>,
    pub elapsed_ms: u64,
    pub failure: Option<Failure>,
    /// The version `/model-info` reported, when it was checked.
    pub model_version: Option<String>,
    /// The Events of the Deployment, its current ReplicaSet and Pods, oldest first.
    pub events: Vec<String>,
}

/// Everything watched, by name.
#[derive(Debug, Default, Clone)]
pub struct State {
    pub deployment: Option<Deployment>,
    pub replicasets: BTreeMap<String, ReplicaSet>,
    pub pods: BTreeMap<String, Pod>,
    pub events: BTreeMap<String, Event>,
}

/// The verdict on a state.
#[derive(Debug, Clone, PartialEq)]
pub enum Assessment {
    /// Still rolling out: why.
    Pending(String),
    /// Every replica of the current revision is updated and available, old ones gone.
    Complete,
    Failed(Failure),
}

fn revision_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<&str> {
    meta.annotations.as_ref()?.get(REVISION).map(String::as_str)
}

fn owned_by(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    kind: &str,
    name: &str,
) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == kind && o.name == name)
}

/// The ReplicaSet of the Deployment's current revision, once the controller has observed it.
pub fn current_replicaset<'a>(state: &'a State, d: &Deployment) -> Option<&'a ReplicaSet> {
    let name = d.metadata.name.as_deref()?;
    let rev = revision_of(&d.metadata)?;
    state.replicasets.values().find(|rs| {
        owned_by(&rs.metadata, "Deployment", name) && revision_of(&rs.metadata) == Some(rev)
    })
}

/// Whether the status describes the current spec.
pub fn observed(d: &Deployment) -> bool {
    let generation = d.metadata.generation.unwrap_or(0);
    let observed = d
        .status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .unwrap_or(-1);
    observed >= generation
}

const IMAGE_PULL: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];
const CONFIG: &[&str] = &["CreateContainerConfigError", "CreateContainerError"];

/// Classifies the watched state. Pure: the rules of verify live here.
pub fn assess(state: &State, readiness_failures: i32) -> Assessment {
    let Some(d) = &state.deployment else {
        return Assessment::Pending("waiting for the Deployment".into());
    };
    let generation = d.metadata.generation.unwrap_or(0);
    if !observed(d) {
        let seen = d
            .status
            .as_ref()
            .and_then(|s| s.observed_generation)
            .unwrap_or(0);
        return Assessment::Pending(format!(
            "the controller has observed generation {seen}, the spec is at {generation}: status not trusted yet"
        ));
    }
    let status = d.status.clone().unwrap_or_default();
    for c in status.conditions.iter().flatten() {
        if c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        {
            return Assessment::Failed(failure(
                FailureKind::ProgressDeadline,
                None,
                format!(
                    "the rollout missed its progress deadline ({}s): {}",
                    d.spec
                        .as_ref()
                        .and_then(|s| s.progress_deadline_seconds)
                        .unwrap_or(600),
                    c.message.clone().unwrap_or_default()
                ),
                "the new pods never became available; see the events above, or raise spec.progressDeadlineSeconds if start-up is legitimately slow",
            ));
        }
        if c.type_ == "ReplicaFailure" && c.status == "True" {
            return Assessment::Failed(failure(
                FailureKind::ReplicaFailure,
                None,
                format!(
                    "the controller cannot create pods: {}",
                    c.message.clone().unwrap_or_default()
                ),
                "check the namespace's ResourceQuota and LimitRange, and the pod security admission level",
            ));
        }
    }
    let Some(rs) = current_replicaset(state, d) else {
        return Assessment::Pending("waiting for the new ReplicaSet".into());
    };
    let rs_name = rs.metadata.name.clone().unwrap_or_default();
    let pods: Vec<&Pod> = state
        .pods
        .values()
        .filter(|p| owned_by(&p.metadata, "ReplicaSet", &rs_name))
        .collect();
    for p in &pods {
        if let Some(f) = pod_failure(p, state, readiness_failures) {
            return Assessment::Failed(f);
        }
    }
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < want {
        return Assessment::Pending(format!("{updated} of {want} replicas updated"));
    }
    if total > updated {
        return Assessment::Pending(format!(
            "{} old replicas pending termination",
            total - updated
        ));
    }
    if available < updated {
        return Assessment::Pending(format!(
            "{available} of {updated} updated replicas available"
        ));
    }
    Assessment::Complete
}

fn failure(kind: FailureKind, pod: Option<String>, message: String, hint: &str) -> Failure {
    Failure {
        kind,
        pod,
        message,
        hint: hint.to_owned(),
        detected_at: jiff::Timestamp::now(),
        pull_secret: None,
        logs: Vec::new(),
    }
}

fn pod_failure(p: &Pod, state: &State, readiness_failures: i32) -> Option<Failure> {
    let name = p.metadata.name.clone().unwrap_or_default();
    let status = p.status.as_ref()?;
    for c in status.conditions.iter().flatten() {
        if c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
        {
            return Some(failure(
                FailureKind::Unschedulable,
                Some(name),
                format!(
                    "pod cannot be scheduled: {}",
                    c.message.clone().unwrap_or_default()
                ),
                "lower the Deployment's resource requests, add nodes, or fix its nodeSelector/tolerations",
            ));
        }
    }
    for cs in status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
    {
        let Some(waiting) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = waiting.reason.as_deref().unwrap_or_default();
        let detail = waiting.message.clone().unwrap_or_default();
        if IMAGE_PULL.contains(&reason) {
            let detail = if detail.is_empty() {
                latest_event(state, &name, "Failed").unwrap_or_default()
            } else {
                detail
            };
            return Some(failure(
                FailureKind::ImagePull,
                Some(name),
                format!("{reason} for {}: {detail}", cs.image),
                "",
            ));
        }
        if reason == "CrashLoopBackOff" {
            let exit = cs
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| {
                    format!(
                        " (last exit code {}, {} restarts)",
                        t.exit_code, cs.restart_count
                    )
                })
                .unwrap_or_default();
            return Some(failure(
                FailureKind::CrashLoop,
                Some(name),
                format!("container {} keeps crashing{exit}", cs.name),
                "read the log lines above; run the image locally with the same arguments (`health-predict serve --model ...`)",
            ));
        }
        if CONFIG.contains(&reason) {
            return Some(failure(
                FailureKind::ContainerConfig,
                Some(name),
                format!("{reason}: {detail}"),
                "create the Secret or ConfigMap (and key) the container references, or fix the reference",
            ));
        }
    }
    // Probe failures with different messages (503, connection refused, timeout) are separate
    // Events: their counts add up. Newer recorders keep the count in `series`.
    let probe_failures: Vec<&Event> = state
        .events
        .values()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(name.as_str())
                && e.reason.as_deref() == Some("Unhealthy")
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("Readiness probe failed"))
        })
        .collect();
    let total: i32 = probe_failures.iter().map(|e| event_count(e)).sum();
    if total >= readiness_failures {
        let last = probe_failures
            .iter()
            .max_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0))
            .and_then(|e| e.message.clone())
            .unwrap_or_default();
        return Some(failure(
            FailureKind::Readiness,
            Some(name),
            format!("readiness probe failed {total} times: {last}"),
            "GET /ready answers 503 until the model is loaded and verified: check the model path and the container log",
        ));
    }
    None
}

fn event_count(e: &Event) -> i32 {
    let series = e.series.as_ref().and_then(|s| s.count).unwrap_or(0);
    e.count.unwrap_or(1).max(series).max(1)
}

fn latest_event(state: &State, object: &str, reason: &str) -> Option<String> {
    state
        .events
        .values()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(object) && e.reason.as_deref() == Some(reason)
        })
        .filter_map(|e| e.message.clone())
        .find(|m| !m.starts_with("Error: "))
}

/// The pull secrets a pod would use: its own `imagePullSecrets`, else its ServiceAccount's.
async fn inspect_pull_secret(client: &Client, ns: &str, pod: &Pod, image: &str) -> PullSecretState {
    let mut names: Vec<String> = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.name)
        .collect();
    let sa_name = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    if let Ok(Some(sa)) = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .get_opt(&sa_name)
        .await
    {
        for r in sa.image_pull_secrets.unwrap_or_default() {
            if !names.contains(&r.name) {
                names.push(r.name);
            }
        }
    }
    let registry = image_registry(image);
    let secrets: Api<KSecret> = Api::namespaced(client.clone(), ns);
    let mut last = PullSecretState::NoneConfigured;
    for name in names {
        let state = match secrets.get_opt(&name).await {
            Ok(None) => PullSecretState::Missing { name },
            Err(_) => continue,
            Ok(Some(s)) => judge_secret(&s, &name, &registry),
        };
        match state {
            // A usable secret for this registry: the problem is elsewhere.
            PullSecretState::Present { .. } => return state,
            PullSecretState::Malformed { ref problem, .. }
                if problem.contains("no credentials for registry") =>
            {
                if matches!(last, PullSecretState::NoneConfigured) {
                    last = state;
                }
            }
            _ => {
                if matches!(
                    last,
                    PullSecretState::NoneConfigured | PullSecretState::Malformed { .. }
                ) {
                    last = state;
                }
            }
        }
    }
    last
}

fn judge_secret(s: &KSecret, name: &str, registry: &str) -> PullSecretState {
    let name = name.to_owned();
    if s.type_.as_deref() != Some(DOCKERCONFIGJSON_TYPE) {
        return PullSecretState::Malformed {
            name,
            problem: format!(
                "type is {:?}, not {DOCKERCONFIGJSON_TYPE}",
                s.type_.as_deref().unwrap_or("Opaque")
            ),
        };
    }
    let Some(data) = s.data.as_ref().and_then(|d| d.get(DOCKERCONFIGJSON_KEY)) else {
        return PullSecretState::Malformed {
            name,
            problem: format!("has no {DOCKERCONFIGJSON_KEY} key"),
        };
    };
    if let Err(p) = pull_secret::check_dockerconfigjson(&data.0, registry) {
        return PullSecretState::Malformed {
            name,
            problem: p.to_string(),
        };
    }
    let expiry = s
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(EXPIRES_AT_ANNOTATION));
    if let Some(at) = expiry
        && let Ok(t) = at.parse::<jiff::Timestamp>()
        && t <= jiff::Timestamp::now()
    {
        return PullSecretState::Expired {
            name,
            expired_at: at.clone(),
        };
    }
    PullSecretState::Present { name }
}

/// The registry host of an image reference (Docker Hub when the first part is no host).
pub fn image_registry(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_owned()
        }
        _ => "docker.io".to_owned(),
    }
}

fn explain_pull(f: &mut Failure, state: PullSecretState, event_text: &str) {
    let refresh = "run `health-predict ecr refresh-secret` (the ECR refresher CronJob in k8s/ does it every 6 hours)";
    let expired_token = event_text.contains("expired") || event_text.contains("403");
    let (what, hint) = match &state {
        PullSecretState::NoneConfigured => (
            "the pod names no image pull secret".to_owned(),
            format!("add imagePullSecrets to the Deployment or its ServiceAccount, then {refresh}"),
        ),
        PullSecretState::Missing { name } => (
            format!("the pull secret {name} is missing"),
            format!("create it: {refresh}"),
        ),
        PullSecretState::Malformed { name, problem } => (
            format!("the pull secret {name} is malformed: it {problem}"),
            format!("re-create it: {refresh}"),
        ),
        PullSecretState::Expired { name, expired_at } => (
            format!("the pull secret {name} expired at {expired_at}"),
            format!("refresh it: {refresh}"),
        ),
        PullSecretState::Present { name } if expired_token => (
            format!("the registry rejected the token in {name} as expired"),
            format!("refresh it: {refresh}"),
        ),
        PullSecretState::Present { name } => (
            format!("the pull secret {name} looks valid, so the image itself is the problem"),
            "check that the image reference exists in the registry (`aws ecr describe-images`) and that the node can reach it".to_owned(),
        ),
    };
    f.message = format!("{}; {what}", f.message);
    f.hint = hint;
    f.pull_secret = Some(state);
}

enum Update {
    Deployment(WatchEvent<Deployment>),
    ReplicaSet(WatchEvent<ReplicaSet>),
    Pod(WatchEvent<Pod>),
    Event(WatchEvent<Event>),
    Error(String),
}

fn apply<K: ::kube::Resource>(map: &mut BTreeMap<String, K>, ev: WatchEvent<K>) {
    match ev {
        WatchEvent::Apply(o) | WatchEvent::InitApply(o) => {
            if let Some(n) = o.meta().name.clone() {
                map.insert(n, o);
            }
        }
        WatchEvent::Delete(o) => {
            if let Some(n) = o.meta().name.as_ref() {
                map.remove(n);
            }
        }
        WatchEvent::Init => map.clear(),
        WatchEvent::InitDone => {}
    }
}

fn event_line(e: &Event) -> String {
    format!(
        "{} {} {}/{}: {}{}",
        e.type_.as_deref().unwrap_or("Normal"),
        e.reason.as_deref().unwrap_or(""),
        e.involved_object.kind.as_deref().unwrap_or(""),
        e.involved_object.name.as_deref().unwrap_or(""),
        e.message.as_deref().unwrap_or(""),
        match e.count {
            Some(c) if c > 1 => format!(" (x{c})"),
            _ => String::new(),
        }
    )
}

fn relevant_events(state: &State) -> Vec<String> {
    let Some(d) = &state.deployment else {
        return Vec::new();
    };
    let mut names: Vec<String> = vec![d.metadata.name.clone().unwrap_or_default()];
    if let Some(rs) = current_replicaset(state, d) {
        let rs_name = rs.metadata.name.clone().unwrap_or_default();
        names.extend(
            state
                .pods
                .values()
                .filter(|p| owned_by(&p.metadata, "ReplicaSet", &rs_name))
                .filter_map(|p| p.metadata.name.clone()),
        );
        names.push(rs_name);
    }
    let mut events: Vec<&Event> = state
        .events
        .values()
        .filter(|e| {
            e.involved_object
                .name
                .as_ref()
                .is_some_and(|n| names.contains(n))
        })
        .collect();
    events.sort_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0));
    events.into_iter().map(event_line).collect()
}

/// Watches the rollout of `req.deployment` until it completes, fails, or the timeout passes.
/// With `expected_version` and a forwarder, then checks `/model-info` through the Service.
pub async fn verify(
    client: &Client,
    req: &VerifyRequest,
    forwarder: Option<&dyn Forwarder>,
) -> Result<VerifyReport, KubeError> {
    let started = Instant::now();
    let ns = req.namespace.as_str();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let first = retry(
        &Backoff::API,
        |_| deployments.get_opt(&req.deployment),
        super::error::decision,
    )
    .await
    .map_err(|(e, _)| KubeError::api(format!("reading Deployment {ns}/{}", req.deployment), e))?
    .ok_or_else(|| KubeError::NotFound {
        kind: "Deployment",
        namespace: ns.to_owned(),
        name: req.deployment.clone(),
    })?;
    let selector = first
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let by_labels = watcher::Config::default().labels(&selector);
    let d_stream = watcher::watcher(
        deployments.clone(),
        watcher::Config::default().fields(&format!("metadata.name={}", req.deployment)),
    )
    .default_backoff()
    .map(|e| e.map(Update::Deployment));
    let rs_stream = watcher::watcher(
        Api::<ReplicaSet>::namespaced(client.clone(), ns),
        by_labels.clone(),
    )
    .default_backoff()
    .map(|e| e.map(Update::ReplicaSet));
    let pod_stream = watcher::watcher(Api::<Pod>::namespaced(client.clone(), ns), by_labels)
        .default_backoff()
        .map(|e| e.map(Update::Pod));
    let ev_stream = watcher::watcher(
        Api::<Event>::namespaced(client.clone(), ns),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(|e| e.map(Update::Event));
    let mut updates = stream::select_all(vec![
        d_stream.boxed(),
        rs_stream.boxed(),
        pod_stream.boxed(),
        ev_stream.boxed(),
    ])
    .map(|r| r.unwrap_or_else(|e| Update::Error(e.to_string())));

    let mut state = State {
        deployment: Some(first),
        ..State::default()
    };
    let deadline = tokio::time::Instant::now() + req.timeout;
    let mut pending = String::from("waiting for the first status");
    let mut watch_error: Option<String> = None;
    let outcome = loop {
        let next = tokio::select! {
            u = updates.next() => u,
            _ = tokio::time::sleep_until(deadline) => None,
        };
        let Some(update) = next else {
            break Assessment::Failed(failure(
                FailureKind::Timeout,
                None,
                match &watch_error {
                    Some(e) => format!(
                        "no verdict within {}s: {pending}; last watch error: {e}",
                        req.timeout.as_secs()
                    ),
                    None => format!("no verdict within {}s: {pending}", req.timeout.as_secs()),
                },
                "see the events above; raise --timeout if the rollout is legitimately slow",
            ));
        };
        match update {
            Update::Deployment(ev) => {
                let mut m = BTreeMap::new();
                if let Some(d) = state.deployment.take() {
                    m.insert(req.deployment.clone(), d);
                }
                apply(&mut m, ev);
                state.deployment = m.remove(&req.deployment);
            }
            Update::ReplicaSet(ev) => apply(&mut state.replicasets, ev),
            Update::Pod(ev) => apply(&mut state.pods, ev),
            Update::Event(ev) => apply(&mut state.events, ev),
            Update::Error(e) => {
                tracing::warn!(error = %e, "watch failed; retrying with backoff");
                watch_error = Some(e);
                continue;
            }
        }
        match assess(&state, req.readiness_failures) {
            Assessment::Pending(why) => {
                if why != pending {
                    tracing::info!(deployment = %req.deployment, "{why}");
                    pending = why;
                }
            }
            done => break done,
        }
    };
    drop(updates);

    if matches!(outcome, Assessment::Failed(_)) {
        // Events that explain the failure may trail the status change that told it: take a
        // fresh snapshot for the report.
        if let Ok(list) = Api::<Event>::namespaced(client.clone(), ns)
            .list(&::kube::api::ListParams::default())
            .await
        {
            for e in list.items {
                if let Some(n) = e.metadata.name.clone() {
                    state.events.insert(n, e);
                }
            }
        }
    }
    let d = state.deployment.as_ref();
    let mut report = VerifyReport {
        namespace: req.namespace.clone(),
        deployment: req.deployment.clone(),
        passed: false,
        revision: d.and_then(|d| revision_of(&d.metadata)).map(str::to_owned),
        image: d
            .and_then(|d| d.spec.as_ref())
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone()),
        generation: d.and_then(|d| d.metadata.generation),
        elapsed_ms: 0,
        failure: None,
        model_version: None,
        events: relevant_events(&state),
    };
    match outcome {
        Assessment::Failed(mut f) => {
            enrich(client, req, &state, &mut f).await;
            report.failure = Some(f);
        }
        _ => match (&req.expected_version, forwarder) {
            (Some(expected), Some(fwd)) => match check_model_version(fwd, req, expected).await {
                Ok(v) => {
                    report.model_version = Some(v);
                    report.passed = true;
                }
                Err(f) => report.failure = Some(f),
            },
            _ => report.passed = true,
        },
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

async fn enrich(client: &Client, req: &VerifyRequest, state: &State, f: &mut Failure) {
    let Some(pod_name) = f.pod.clone() else {
        return;
    };
    let Some(pod) = state.pods.get(&pod_name) else {
        return;
    };
    match f.kind {
        FailureKind::ImagePull => {
            let image = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .map(|c| c.image.clone())
                .unwrap_or_default();
            let secret = inspect_pull_secret(client, &req.namespace, pod, &image).await;
            let text = format!(
                "{} {}",
                f.message,
                latest_event(state, &pod_name, "Failed").unwrap_or_default()
            );
            explain_pull(f, secret, &text);
        }
        FailureKind::CrashLoop => {
            let container = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| {
                    c.iter()
                        .find(|c| c.state.as_ref().and_then(|s| s.waiting.as_ref()).is_some())
                })
                .map(|c| c.name.clone());
            let pods: Api<Pod> = Api::namespaced(client.clone(), &req.namespace);
            let mut lp = LogParams {
                container,
                tail_lines: Some(req.log_lines),
                previous: true,
                ..LogParams::default()
            };
            let text = match pods.logs(&pod_name, &lp).await {
                Ok(t) if !t.trim().is_empty() => Ok(t),
                _ => {
                    lp.previous = false;
                    pods.logs(&pod_name, &lp).await
                }
            };
            match text {
                Ok(t) => f.logs = t.lines().map(str::to_owned).collect(),
                Err(e) => f.logs = vec![format!("(logs unavailable: {e})")],
            }
            if let Some(last) = f.logs.iter().rev().find(|l| !l.trim().is_empty()) {
                f.message = format!("{}; last log line: {last}", f.message);
            }
        }
        _ => {}
    }
}

/// GETs `/model-info` through the forwarder and compares its version.
async fn check_model_version(
    fwd: &dyn Forwarder,
    req: &VerifyRequest,
    expected: &str,
) -> Result<String, Failure> {
    let fail = |message: String| {
        failure(
            FailureKind::ModelVersion,
            None,
            message,
            "the cluster serves another model than the one deployed: check the image digest and the model baked into it",
        )
    };
    let handle = fwd
        .forward(&req.namespace, &req.service, req.service_port)
        .await
        .map_err(|e| fail(format!("could not reach Service {}: {e}", req.service)))?;
    let url = format!("{}/model-info", handle.base_url());
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let body: serde_json::Value = retry(
        &Backoff::READINESS,
        |_| {
            let http = http.clone();
            let url = url.clone();
            async move {
                http.get(&url)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await
            }
        },
        |_: &reqwest::Error| Decision::Retry,
    )
    .await
    .map_err(|(e, n)| fail(format!("GET {url} failed after {n} attempts: {e}")))?;
    let found = ["version", "model_version"]
        .iter()
        .find_map(|k| match &body[*k] {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .ok_or_else(|| fail(format!("{url} has no `version` field")))?;
    if found == expected {
        Ok(found)
    } else {
        Err(fail(format!(
            "/model-info reports version {found}, expected {expected}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(
        generation: i64,
        observed: i64,
        revision: &str,
        status: serde_json::Value,
    ) -> Deployment {
        let mut status = status;
        status["observedGeneration"] = json!(observed);
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "api", "namespace": "ns", "generation": generation,
                "annotations": {REVISION: revision}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}},
                "template": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [{"name": "api", "image": "i:1"}]}}},
            "status": status,
        }))
        .expect("deployment")
    }

    fn replicaset(name: &str, revision: &str) -> ReplicaSet {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": "ns", "annotations": {REVISION: revision},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "api", "uid": "u"}]},
            "spec": {"selector": {"matchLabels": {"app": "api"}}},
        }))
        .expect("replicaset")
    }

    fn pod(name: &str, rs: &str, status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "ns",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": "r"}]},
            "status": status,
        }))
        .expect("pod")
    }

    fn state(d: Deployment) -> State {
        let mut s = State {
            deployment: Some(d),
            ..State::default()
        };
        s.replicasets
            .insert("api-old".into(), replicaset("api-old", "1"));
        s.replicasets
            .insert("api-new".into(), replicaset("api-new", "2"));
        s
    }

    const DONE: &str =
        r#"{"replicas": 2, "updatedReplicas": 2, "availableReplicas": 2, "readyReplicas": 2}"#;

    #[test]
    fn a_stale_status_is_not_trusted() {
        let done: serde_json::Value = serde_json::from_str(DONE).expect("json");
        let s = state(deployment(2, 1, "1", done.clone()));
        assert!(matches!(assess(&s, 5), Assessment::Pending(why) if why.contains("not trusted")));
        let s = state(deployment(2, 2, "2", done));
        assert_eq!(assess(&s, 5), Assessment::Complete);
    }

    #[test]
    fn old_replicas_and_unavailable_ones_keep_it_pending() {
        let s = state(deployment(
            2,
            2,
            "2",
            json!({"replicas": 3, "updatedReplicas": 2, "availableReplicas": 3}),
        ));
        assert!(matches!(assess(&s, 5), Assessment::Pending(why) if why.contains("old replicas")));
        let s = state(deployment(
            2,
            2,
            "2",
            json!({"replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}),
        ));
        assert!(matches!(assess(&s, 5), Assessment::Pending(why) if why.contains("1 of 2")));
    }

    #[test]
    fn only_pods_of_the_current_revision_count() {
        let crash = json!({"containerStatuses": [{"name": "api", "image": "i:1", "imageID": "", "ready": false,
            "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]});
        let mut s = state(deployment(
            2,
            2,
            "2",
            json!({"replicas": 3, "updatedReplicas": 2}),
        ));
        s.pods
            .insert("old".into(), pod("old", "api-old", crash.clone()));
        assert!(matches!(assess(&s, 5), Assessment::Pending(_)));
        s.pods.insert("new".into(), pod("new", "api-new", crash));
        match assess(&s, 5) {
            Assessment::Failed(f) => {
                assert_eq!(f.kind, FailureKind::CrashLoop);
                assert_eq!(f.pod.as_deref(), Some("new"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn readiness_fails_only_at_the_threshold() {
        let mut s = state(deployment(
            2,
            2,
            "2",
            json!({"replicas": 2, "updatedReplicas": 2}),
        ));
        s.pods.insert(
            "new".into(),
            pod("new", "api-new", json!({"phase": "Running"})),
        );
        let event = |count: i32| -> Event {
            serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "ns"},
                "involvedObject": {"kind": "Pod", "name": "new"}, "reason": "Unhealthy",
                "message": "Readiness probe failed: HTTP probe failed with statuscode: 503", "count": count,
            }))
            .expect("event")
        };
        s.events.insert("e".into(), event(4));
        assert!(matches!(assess(&s, 5), Assessment::Pending(_)));
        s.events.insert("e".into(), event(5));
        assert!(matches!(assess(&s, 5), Assessment::Failed(f) if f.kind == FailureKind::Readiness));
        // Failures with different messages add up.
        s.events.insert("e".into(), event(3));
        let mut other = event(2);
        other.metadata.name = Some("e2".into());
        other.message = Some(
            "Readiness probe failed: dial tcp 10.0.0.1:8000: connect: connection refused".into(),
        );
        s.events.insert("e2".into(), other);
        assert!(
            matches!(assess(&s, 5), Assessment::Failed(f) if f.message.contains("failed 5 times"))
        );
    }

    #[test]
    fn registry_of_an_image() {
        assert_eq!(
            image_registry("123.dkr.ecr.eu-west-1.amazonaws.com/api:1"),
            "123.dkr.ecr.eu-west-1.amazonaws.com"
        );
        assert_eq!(image_registry("localhost:5000/api:1"), "localhost:5000");
        assert_eq!(image_registry("library/nginx:1"), "docker.io");
        assert_eq!(image_registry("nginx:1"), "docker.io");
    }
}
