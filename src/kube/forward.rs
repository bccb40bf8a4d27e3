//! Reaching a Service from the test runner. The default is the API server's port-forward (kube
//! `ws`): it works from any runner with a kubeconfig, with no NodePort, ClusterIP route or proxy
//! involved. NodePort and in-cluster DNS URLs are builders for the other two modes.
//!
//! Port-forward sits behind [`Forwarder`] so verify and api-test can be tested with a fake; the
//! real implementation is exercised by the kind job (no API server can run here).

use std::future::Future;
use std::pin::Pin;

use ::kube::Client;
use ::kube::api::{Api, ListParams};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::error::KubeError;

/// A running forward: a `http://127.0.0.1:PORT` base URL, torn down on drop.
#[derive(Debug)]
pub struct ForwardHandle {
    base_url: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ForwardHandle {
    /// A handle for a URL something else keeps alive (fakes, NodePort, DNS).
    pub fn fixed(base_url: impl Into<String>) -> ForwardHandle {
        ForwardHandle {
            base_url: base_url.into(),
            task: None,
        }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}

impl Drop for ForwardHandle {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// The future a [`Forwarder`] returns.
pub type ForwardFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ForwardHandle, KubeError>> + Send + 'a>>;

/// Something that makes a Service port reachable on 127.0.0.1.
pub trait Forwarder: Send + Sync {
    fn forward<'a>(&'a self, namespace: &'a str, service: &'a str, port: u16) -> ForwardFuture<'a>;
}

/// Port-forward through the API server.
#[derive(Clone)]
pub struct KubeForwarder {
    pub client: Client,
}

impl std::fmt::Debug for KubeForwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeForwarder")
    }
}

impl Forwarder for KubeForwarder {
    fn forward<'a>(&'a self, namespace: &'a str, service: &'a str, port: u16) -> ForwardFuture<'a> {
        Box::pin(forward_service(
            self.client.clone(),
            namespace,
            service,
            port,
        ))
    }
}

/// The pod and container port behind a Service port: a ready pod its selector picks, and the
/// Service's targetPort resolved (by number or by the container port's name).
pub async fn resolve_target(
    client: &Client,
    ns: &str,
    service: &str,
    port: u16,
) -> Result<(String, u16), KubeError> {
    let target = format!("service {ns}/{service}:{port}");
    let forward_err = |problem: String| KubeError::Forward {
        target: target.clone(),
        problem,
    };
    let svc = Api::<Service>::namespaced(client.clone(), ns)
        .get_opt(service)
        .await
        .map_err(|e| KubeError::api(format!("reading Service {ns}/{service}"), e))?
        .ok_or_else(|| KubeError::NotFound {
            kind: "Service",
            namespace: ns.to_owned(),
            name: service.to_owned(),
        })?;
    let spec = svc.spec.unwrap_or_default();
    let sp = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.port == i32::from(port))
        .ok_or_else(|| forward_err(format!("the Service has no port {port}")))?;
    let selector = spec
        .selector
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    if selector.is_empty() {
        return Err(forward_err("the Service has no selector".into()));
    }
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| KubeError::api(format!("listing pods for {selector}"), e))?;
    let ready = |p: &Pod| {
        p.metadata.deletion_timestamp.is_none()
            && p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let pod = pods
        .items
        .into_iter()
        .find(ready)
        .ok_or_else(|| forward_err(format!("no ready pod matches {selector}")))?;
    let container_port = match sp.target_port {
        None => sp.port,
        Some(IntOrString::Int(n)) => n,
        Some(IntOrString::String(name)) => pod
            .spec
            .as_ref()
            .into_iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .ok_or_else(|| forward_err(format!("no container port is named {name}")))?,
    };
    let container_port = u16::try_from(container_port)
        .map_err(|_| forward_err(format!("bad port {container_port}")))?;
    Ok((pod.metadata.name.unwrap_or_default(), container_port))
}

/// Forwards a Service port to `127.0.0.1:0` through the API server. Each accepted connection gets
/// its own port-forward stream to the chosen pod. The forward ends when the handle is dropped.
pub async fn forward_service(
    client: Client,
    ns: &str,
    service: &str,
    port: u16,
) -> Result<ForwardHandle, KubeError> {
    let (pod, container_port) = resolve_target(&client, ns, service, port).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| KubeError::Forward {
            target: format!("service {ns}/{service}:{port}"),
            problem: format!("cannot listen on 127.0.0.1: {e}"),
        })?;
    let addr = listener.local_addr().map_err(|e| KubeError::Forward {
        target: format!("service {ns}/{service}:{port}"),
        problem: e.to_string(),
    })?;
    let pods: Api<Pod> = Api::namespaced(client, ns);
    tracing::info!(%addr, pod = %pod, port = container_port, "port-forward listening");
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                break;
            };
            let pods = pods.clone();
            let pod = pod.clone();
            tokio::spawn(async move {
                let mut pf = match pods.portforward(&pod, &[container_port]).await {
                    Ok(pf) => pf,
                    Err(e) => {
                        tracing::warn!(error = %e, "port-forward failed");
                        return;
                    }
                };
                let Some(mut upstream) = pf.take_stream(container_port) else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                drop(upstream);
                let _ = pf.join().await;
            });
        }
    });
    Ok(ForwardHandle {
        base_url: format!("http://{addr}"),
        task: Some(task),
    })
}

/// A NodePort URL (kind publishes the nodePort on the host through extraPortMappings).
pub fn node_port_url(host: &str, node_port: u16) -> String {
    format!("http://{host}:{node_port}")
}

/// The in-cluster DNS URL, for callers running inside the cluster.
pub fn cluster_dns_url(service: &str, namespace: &str, port: u16) -> String {
    format!("http://{service}.{namespace}.svc.cluster.local:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_builders() {
        assert_eq!(node_port_url("127.0.0.1", 30080), "http://127.0.0.1:30080");
        assert_eq!(
            cluster_dns_url("health-predict", "prod", 80),
            "http://health-predict.prod.svc.cluster.local:80"
        );
        assert_eq!(ForwardHandle::fixed("http://x").base_url(), "http://x");
    }
}
