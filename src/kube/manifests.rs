//! The Kubernetes manifests in `k8s/`, bundled into the binary: parsing, validation against the
//! Kubernetes API types (every field must be one the API knows, with the right type) plus the
//! rules this project depends on (probes, non-root, read-only root filesystem, resources, pull
//! secrets, selectors that match), and rendering for a deploy (namespace, image, change cause).

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::KubeError;

/// The image in the bundled manifests that `deploy` replaces.
pub const PLACEHOLDER_IMAGE: &str = "health-predict/api:set-by-health-predict-deploy";
/// The annotation `kubectl rollout history` shows.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
/// The Deployment, Service and ServiceAccount name.
pub const APP: &str = "health-predict";
/// The namespace the bundled manifests name.
pub const DEFAULT_NAMESPACE: &str = "health-predict";
/// Values in `k8s/ecr-refresher.yaml` that `deploy` must replace (role ARN, region).
pub const PLACEHOLDER: &str = "set-by-health-predict-deploy";

/// How the Service is exposed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceType {
    /// Inside the cluster only (the default; reach it with a port-forward or an Ingress).
    #[default]
    ClusterIp,
    /// Also on port 30080 of every node: for kind, whose port mappings publish it on the host.
    NodePort,
}

/// The ECR refresher CronJob's settings (rendered into `k8s/ecr-refresher.yaml`).
#[derive(Debug, Clone, Default)]
pub struct Refresher {
    /// The IAM role the CronJob assumes through web identity.
    pub role_arn: String,
    /// The AWS region of the registry.
    pub region: String,
}

/// The files of `k8s/`, in apply order.
pub const BUNDLED: &[(&str, &str)] = &[
    ("namespace.yaml", include_str!("../../k8s/namespace.yaml")),
    (
        "serviceaccount.yaml",
        include_str!("../../k8s/serviceaccount.yaml"),
    ),
    ("service.yaml", include_str!("../../k8s/service.yaml")),
    (
        "networkpolicy.yaml",
        include_str!("../../k8s/networkpolicy.yaml"),
    ),
    ("pdb.yaml", include_str!("../../k8s/pdb.yaml")),
    ("deployment.yaml", include_str!("../../k8s/deployment.yaml")),
    (
        "ecr-refresher.yaml",
        include_str!("../../k8s/ecr-refresher.yaml"),
    ),
];

/// One manifest document and the file it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    pub file: String,
    pub value: Value,
}

impl Doc {
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }
    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }
    fn label(&self) -> String {
        format!("{} ({} {})", self.file, self.kind(), self.name())
    }
}

/// Parses a multi-document YAML file.
pub fn parse(file: &str, text: &str) -> Result<Vec<Doc>, KubeError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| KubeError::Manifest {
        name: file.to_owned(),
        problem: format!("not valid YAML: {e}"),
    })?;
    Ok(docs
        .into_iter()
        .filter(|v| !v.is_null())
        .map(|value| Doc {
            file: file.to_owned(),
            value,
        })
        .collect())
}

/// Every bundled document.
pub fn bundled() -> Result<Vec<Doc>, KubeError> {
    let mut out = Vec::new();
    for (file, text) in BUNDLED {
        out.extend(parse(file, text)?);
    }
    Ok(out)
}

/// Deserialises into the API type and back; any field the type dropped is unknown to the API.
fn roundtrip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Vec<String>, String> {
    let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut unknown = Vec::new();
    dropped(v, &back, String::new(), &mut unknown);
    Ok(unknown)
}

fn dropped(orig: &Value, back: &Value, path: String, out: &mut Vec<String>) {
    match (orig, back) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(bv) => dropped(v, bv, p, out),
                    None if v.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                dropped(x, y, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Checks one document against its API type. Returns the problems found.
pub fn validate_schema(doc: &Doc) -> Vec<String> {
    use k8s_openapi::api::{apps, batch, core, policy, rbac};
    let v = &doc.value;
    let key = (v["apiVersion"].as_str().unwrap_or(""), doc.kind());
    let result = match key {
        ("v1", "Namespace") => roundtrip::<core::v1::Namespace>(v),
        ("v1", "ServiceAccount") => roundtrip::<core::v1::ServiceAccount>(v),
        ("v1", "Service") => roundtrip::<core::v1::Service>(v),
        ("v1", "Secret") => roundtrip::<core::v1::Secret>(v),
        ("v1", "ConfigMap") => roundtrip::<core::v1::ConfigMap>(v),
        ("apps/v1", "Deployment") => roundtrip::<apps::v1::Deployment>(v),
        ("policy/v1", "PodDisruptionBudget") => roundtrip::<policy::v1::PodDisruptionBudget>(v),
        ("batch/v1", "CronJob") => roundtrip::<batch::v1::CronJob>(v),
        ("rbac.authorization.k8s.io/v1", "Role") => roundtrip::<rbac::v1::Role>(v),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => roundtrip::<rbac::v1::RoleBinding>(v),
        ("networking.k8s.io/v1", "NetworkPolicy") => {
            roundtrip::<k8s_openapi::api::networking::v1::NetworkPolicy>(v)
        }
        (api, kind) => Err(format!("unsupported apiVersion/kind {api}/{kind}")),
    };
    match result {
        Ok(unknown) => unknown
            .into_iter()
            .map(|p| format!("{}: unknown field `{p}`", doc.label()))
            .collect(),
        Err(e) => vec![format!("{}: {e}", doc.label())],
    }
}

fn pod_rules(label: &str, spec: &Value, serving: bool, problems: &mut Vec<String>) {
    let mut need = |ok: bool, what: &str| {
        if !ok {
            problems.push(format!("{label}: {what}"));
        }
    };
    need(
        spec["securityContext"]["runAsNonRoot"] == true,
        "pod securityContext.runAsNonRoot must be true",
    );
    need(
        spec["imagePullSecrets"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
            || !serving,
        "imagePullSecrets must name the registry pull secret",
    );
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    need(!containers.is_empty(), "no containers");
    for c in &containers {
        let name = c["name"].as_str().unwrap_or("?");
        let sc = &c["securityContext"];
        need(
            sc["readOnlyRootFilesystem"] == true,
            &format!("container {name}: securityContext.readOnlyRootFilesystem must be true"),
        );
        need(
            sc["allowPrivilegeEscalation"] == false,
            &format!("container {name}: securityContext.allowPrivilegeEscalation must be false"),
        );
        for r in ["requests", "limits"] {
            need(
                c["resources"][r]["cpu"].is_string() && c["resources"][r]["memory"].is_string(),
                &format!("container {name}: resources.{r} needs cpu and memory"),
            );
        }
        if serving {
            need(
                c["readinessProbe"]["httpGet"]["path"] == "/ready",
                &format!("container {name}: readinessProbe must GET /ready"),
            );
            need(
                c["livenessProbe"]["httpGet"]["path"] == "/health",
                &format!("container {name}: livenessProbe must GET /health"),
            );
        }
    }
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// Schema checks for every document plus the project's rules across them.
pub fn validate(docs: &[Doc]) -> Vec<String> {
    let mut problems: Vec<String> = docs.iter().flat_map(validate_schema).collect();
    let find = |kind: &str, name: &str| docs.iter().find(|d| d.kind() == kind && d.name() == name);
    let Some(deploy) = find("Deployment", APP) else {
        problems.push(format!("no Deployment named {APP}"));
        return problems;
    };
    let d = &deploy.value;
    let pod_labels = &d["spec"]["template"]["metadata"]["labels"];
    if !labels_match(&d["spec"]["selector"]["matchLabels"], pod_labels) {
        problems.push(format!(
            "{}: spec.selector does not match the pod template labels",
            deploy.label()
        ));
    }
    pod_rules(
        &deploy.label(),
        &d["spec"]["template"]["spec"],
        true,
        &mut problems,
    );
    match find("Service", APP) {
        Some(svc) => {
            if !labels_match(&svc.value["spec"]["selector"], pod_labels) {
                problems.push(format!(
                    "{}: selector does not select the Deployment's pods",
                    svc.label()
                ));
            }
            let ports: Vec<&Value> = d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                .collect();
            for p in svc.value["spec"]["ports"].as_array().into_iter().flatten() {
                let target = &p["targetPort"];
                let ok = ports.iter().any(|cp| match target {
                    Value::String(n) => cp["name"] == n.as_str(),
                    Value::Number(n) => cp["containerPort"].as_u64() == n.as_u64(),
                    _ => false,
                });
                if !ok {
                    problems.push(format!(
                        "{}: targetPort {target} is no container port",
                        svc.label()
                    ));
                }
                if svc.value["spec"]["type"] == "NodePort" && !p["nodePort"].is_number() {
                    problems.push(format!("{}: a NodePort Service needs a fixed nodePort (kind's port mappings are fixed at creation)", svc.label()));
                }
            }
        }
        None => problems.push(format!("no Service named {APP}")),
    }
    if let Some(np) = find("NetworkPolicy", APP) {
        let spec = &np.value["spec"];
        if !labels_match(&spec["podSelector"]["matchLabels"], pod_labels) {
            problems.push(format!(
                "{}: podSelector does not select the Deployment's pods",
                np.label()
            ));
        }
        let container_ports: Vec<&Value> = d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .collect();
        let rules = spec["ingress"].as_array().cloned().unwrap_or_default();
        for rule in &rules {
            let ports = rule["ports"].as_array().cloned().unwrap_or_default();
            // A rule without ports admits every port: exactly what this policy must not do.
            if ports.is_empty() {
                problems.push(format!(
                    "{}: an ingress rule without ports opens every port; list the serving port",
                    np.label()
                ));
            }
            for p in &ports {
                let ok = container_ports.iter().any(|cp| match &p["port"] {
                    Value::String(n) => cp["name"] == n.as_str(),
                    Value::Number(n) => cp["containerPort"].as_u64() == n.as_u64(),
                    _ => false,
                });
                if !ok {
                    problems.push(format!(
                        "{}: ingress port {} is not the serving container's port",
                        np.label(),
                        p["port"]
                    ));
                }
            }
        }
    } else {
        problems.push(format!(
            "no NetworkPolicy named {APP}: ingress to the pods must be limited to the serving port"
        ));
    }
    if let Some(pdb) = find("PodDisruptionBudget", APP)
        && !labels_match(&pdb.value["spec"]["selector"]["matchLabels"], pod_labels)
    {
        problems.push(format!(
            "{}: selector does not select the Deployment's pods",
            pdb.label()
        ));
    }
    for cj in docs.iter().filter(|d| d.kind() == "CronJob") {
        pod_rules(
            &cj.label(),
            &cj.value["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            false,
            &mut problems,
        );
    }
    problems
}

/// The fixed nodePort of the Service, for matching kind's port mappings.
pub fn node_port(docs: &[Doc]) -> Option<u16> {
    docs.iter()
        .find(|d| d.kind() == "Service" && d.name() == APP)
        .and_then(|s| s.value["spec"]["ports"][0]["nodePort"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
}

/// What a deploy applies.
#[derive(Debug, Clone)]
pub struct Render<'a> {
    pub namespace: &'a str,
    pub image: &'a str,
    pub change_cause: &'a str,
    /// Include the ECR refresher CronJob and its RBAC, with these settings.
    pub ecr_refresher: Option<&'a Refresher>,
    pub service_type: ServiceType,
}

/// Why a refresher cannot be rendered: a setting left empty or at the placeholder.
pub fn check_refresher(r: &Refresher) -> Result<(), String> {
    let unset = |v: &str| v.trim().is_empty() || v == PLACEHOLDER;
    if unset(&r.role_arn) {
        return Err(
            "the ECR refresher needs the IAM role it assumes: pass --ecr-role-arn \
                    (HEALTH_PREDICT_ECR_ROLE_ARN)"
                .into(),
        );
    }
    if !r.role_arn.starts_with("arn:") || !r.role_arn.contains(":role/") {
        return Err(format!(
            "--ecr-role-arn `{}` is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)",
            r.role_arn
        ));
    }
    if unset(&r.region) {
        return Err(
            "the ECR refresher needs the registry's region: pass --aws-region \
                    (AWS_REGION)"
                .into(),
        );
    }
    Ok(())
}

/// The bundled documents for one deploy: namespace set everywhere, the image in place of the
/// placeholder, the change cause on the Deployment.
pub fn render(docs: &[Doc], r: &Render<'_>) -> Vec<Doc> {
    docs.iter()
        .filter(|d| r.ecr_refresher.is_some() || d.file != "ecr-refresher.yaml")
        .map(|d| {
            let mut d = d.clone();
            let kind = d.kind().to_owned();
            let v = &mut d.value;
            if kind == "Namespace" {
                v["metadata"]["name"] = Value::from(r.namespace);
            } else {
                v["metadata"]["namespace"] = Value::from(r.namespace);
            }
            if let Some(subjects) = v["subjects"].as_array_mut() {
                for s in subjects {
                    s["namespace"] = Value::from(r.namespace);
                }
            }
            replace_image(v, r.image);
            if kind == "Deployment" {
                v["metadata"]["annotations"][CHANGE_CAUSE] = Value::from(r.change_cause);
            }
            if kind == "Service" && d.file == "service.yaml" {
                render_service(&mut d.value, r.service_type);
            }
            if let (Some(refresher), "CronJob") = (r.ecr_refresher, kind.as_str()) {
                render_refresher(&mut d.value, r.namespace, refresher);
            }
            d
        })
        .collect()
}

fn render_service(v: &mut Value, t: ServiceType) {
    let spec = &mut v["spec"];
    match t {
        ServiceType::ClusterIp => {
            spec["type"] = Value::from("ClusterIP");
            if let Some(ports) = spec["ports"].as_array_mut() {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    p.remove("nodePort");
                }
            }
        }
        ServiceType::NodePort => {
            spec["type"] = Value::from("NodePort");
            if let Some(p) = spec["ports"].get_mut(0) {
                p["nodePort"] = Value::from(super::cluster::NODE_PORT);
            }
        }
    }
}

fn render_refresher(v: &mut Value, namespace: &str, r: &Refresher) {
    let containers = &mut v["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"];
    for c in containers.as_array_mut().into_iter().flatten() {
        if let Some(args) = c["args"].as_array_mut()
            && let Some(i) = args.iter().position(|a| a == "--namespace")
            && i + 1 < args.len()
        {
            args[i + 1] = Value::from(namespace);
        }
        for e in c["env"].as_array_mut().into_iter().flatten() {
            match e["name"].as_str() {
                Some("AWS_ROLE_ARN") => e["value"] = Value::from(r.role_arn.as_str()),
                Some("AWS_REGION") => e["value"] = Value::from(r.region.as_str()),
                _ => {}
            }
        }
    }
}

fn replace_image(v: &mut Value, image: &str) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "image" && x == PLACEHOLDER_IMAGE {
                    *x = Value::from(image);
                } else {
                    replace_image(x, image);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| replace_image(x, image)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_manifests_validate() {
        let docs = bundled().expect("parse");
        assert!(docs.len() >= 9, "{}", docs.len());
        let problems = validate(&docs);
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn unknown_fields_and_broken_rules_are_reported() {
        let mut docs = bundled().expect("parse");
        let i = docs
            .iter()
            .position(|d| d.kind() == "Deployment")
            .expect("deployment");
        let d = &mut docs[i];
        d.value["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pth"] =
            Value::from("/ready");
        d.value["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] =
            Value::from(false);
        d.value["spec"]["replicas"] = Value::from("two");
        let problems = validate(&docs).join("\n");
        assert!(problems.contains("invalid type"), "{problems}");
        docs[i].value["spec"]["replicas"] = Value::from(2);
        let problems = validate(&docs).join("\n");
        assert!(
            problems.contains(
                "unknown field `spec.template.spec.containers[0].readinessProbe.httpGet.pth`"
            ),
            "{problems}"
        );
        assert!(
            problems.contains("readOnlyRootFilesystem must be true"),
            "{problems}"
        );
    }

    #[test]
    fn render_sets_namespace_image_and_cause() {
        let docs = bundled().expect("parse");
        let out = render(
            &docs,
            &Render {
                namespace: "staging",
                image: "r.io/a@sha256:abc",
                change_cause: "deploy x",
                ecr_refresher: None,
                service_type: ServiceType::default(),
            },
        );
        assert!(out.iter().all(|d| d.file != "ecr-refresher.yaml"));
        let text =
            serde_json::to_string(&out.iter().map(|d| &d.value).collect::<Vec<_>>()).expect("json");
        assert!(!text.contains(PLACEHOLDER_IMAGE));
        assert!(!text.contains("\"namespace\":\"health-predict\""));
        let d = out
            .iter()
            .find(|d| d.kind() == "Deployment")
            .expect("deployment");
        assert_eq!(d.value["metadata"]["annotations"][CHANGE_CAUSE], "deploy x");
        assert_eq!(
            d.value["spec"]["template"]["spec"]["containers"][0]["image"],
            "r.io/a@sha256:abc"
        );
        let svc = out.iter().find(|d| d.kind() == "Service").expect("svc");
        assert_eq!(svc.value["spec"]["type"], "ClusterIP");
        assert_eq!(node_port(&out), None);
        assert!(out.iter().any(|d| d.kind() == "NetworkPolicy"));
    }

    #[test]
    fn node_port_and_refresher_are_rendered_from_the_request() {
        let docs = bundled().expect("parse");
        let refresher = Refresher {
            role_arn: "arn:aws:iam::210987654321:role/refresher".into(),
            region: "us-east-2".into(),
        };
        let out = render(
            &docs,
            &Render {
                namespace: "prod",
                image: "r.io/a@sha256:abc",
                change_cause: "x",
                ecr_refresher: Some(&refresher),
                service_type: ServiceType::NodePort,
            },
        );
        assert_eq!(node_port(&out), Some(super::super::cluster::NODE_PORT));
        assert!(validate(&out).is_empty(), "{:#?}", validate(&out));
        let cj = out.iter().find(|d| d.kind() == "CronJob").expect("cronjob");
        let c = &cj.value["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
        let args: Vec<&str> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        let i = args.iter().position(|a| *a == "--namespace").unwrap();
        assert_eq!(args[i + 1], "prod");
        let env = |n: &str| {
            c["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == n)
                .unwrap()["value"]
                .clone()
        };
        assert_eq!(
            env("AWS_ROLE_ARN"),
            "arn:aws:iam::210987654321:role/refresher"
        );
        assert_eq!(env("AWS_REGION"), "us-east-2");
        let text = serde_json::to_string(&cj.value).unwrap();
        assert!(!text.contains(PLACEHOLDER), "{text}");
        assert!(
            check_refresher(&Refresher::default())
                .unwrap_err()
                .contains("--ecr-role-arn")
        );
        assert!(
            check_refresher(&Refresher {
                role_arn: "nope".into(),
                region: "x".into()
            })
            .is_err()
        );
        assert!(check_refresher(&refresher).is_ok());
    }

    #[test]
    fn the_network_policy_is_required_and_must_name_the_serving_port() {
        let mut docs = bundled().expect("parse");
        let i = docs
            .iter()
            .position(|d| d.kind() == "NetworkPolicy")
            .expect("policy");
        docs[i].value["spec"]["ingress"][0]["ports"][0]["port"] = Value::from(9999);
        assert!(validate(&docs).join("\n").contains("ingress port 9999"));
        docs[i].value["spec"]["ingress"][0] = serde_json::json!({});
        assert!(validate(&docs).join("\n").contains("opens every port"));
        docs.remove(i);
        assert!(validate(&docs).join("\n").contains("no NetworkPolicy"));
    }
}
