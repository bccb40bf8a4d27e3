//! Why a URL cannot be reached, in plain words: an invalid URL, a name that does not resolve, no
//! route from this network namespace, a refused connection, a timeout, or a proxy variable that
//! captures the address; then what to do.
//!
//! Used by `api-test` when the target does not answer and by `health-predict doctor net URL`.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::ProxyMode;

/// The conclusion of a diagnosis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// An HTTP server answered.
    Reachable,
    InvalidUrl,
    DnsFailure,
    /// No route from this network namespace to the address.
    Unroutable,
    /// The host answered but nothing listens on the port.
    Refused,
    /// Connection attempts got no answer.
    Timeout,
    /// The TCP connection opened but HTTP failed (TLS, reset, proxy).
    HttpFailed,
}

/// One proxy variable set in the environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxyVar {
    /// The variable's name as set (any case).
    pub name: String,
    /// Its value with any credentials removed.
    pub value: String,
    /// Whether it applies to the diagnosed URL (scheme matches and NO_PROXY does not exclude it).
    pub captures: bool,
}

/// One address tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub address: String,
    /// `connected`, `refused`, `timeout`, `unroutable` or an error text.
    pub outcome: String,
    pub millis: u64,
}

/// The result of diagnosing a URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    pub url: String,
    pub verdict: Verdict,
    /// What happened, in plain words.
    pub explanation: String,
    /// What to do about it.
    pub advice: Vec<String>,
    pub addresses: Vec<Attempt>,
    pub proxy_vars: Vec<ProxyVar>,
    /// Whether this program's HTTP client uses proxy variables (`--use-env-proxy`).
    pub client_uses_env_proxy: bool,
    /// The HTTP status of `GET /health` when a server answered.
    pub http_status: Option<u16>,
}

impl Diagnosis {
    /// Human text: verdict, explanation, advice, details.
    pub fn render(&self) -> String {
        let mut s = format!("{}: {}\n", self.url, self.explanation);
        for a in &self.advice {
            s.push_str(&format!("  - {a}\n"));
        }
        for a in &self.addresses {
            s.push_str(&format!(
                "  tried {}: {} ({} ms)\n",
                a.address, a.outcome, a.millis
            ));
        }
        for p in &self.proxy_vars {
            s.push_str(&format!(
                "  {}={}{}\n",
                p.name,
                p.value,
                if p.captures {
                    " (applies to this URL)"
                } else {
                    ""
                }
            ));
        }
        s
    }
}

/// Reads the proxy variables of the environment (any case) and decides which apply to `url`.
pub fn proxy_vars(url: &reqwest::Url, env: &[(String, String)]) -> Vec<ProxyVar> {
    let lower = |n: &str| n.to_ascii_lowercase();
    let no_proxy: Vec<String> = env
        .iter()
        .filter(|(k, _)| lower(k) == "no_proxy")
        .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .filter(|s| !s.is_empty())
        .collect();
    let host = url
        .host_str()
        .unwrap_or("")
        .trim_matches(['[', ']'])
        .to_ascii_lowercase();
    let excluded = no_proxy.iter().any(|entry| no_proxy_matches(entry, &host));
    let scheme_var = format!("{}_proxy", url.scheme());
    env.iter()
        .filter(|(k, _)| {
            let k = lower(k);
            k == "http_proxy" || k == "https_proxy" || k == "all_proxy" || k == "no_proxy"
        })
        .map(|(k, v)| {
            let l = lower(k);
            let applies = !v.trim().is_empty() && (l == scheme_var || l == "all_proxy");
            ProxyVar {
                name: k.clone(),
                value: strip_credentials(v),
                captures: applies && !excluded,
            }
        })
        .collect()
}

/// Whether one NO_PROXY entry excludes `host`: `*`, an exact name or IP, a domain suffix (with or
/// without a leading dot), or an IPv4 CIDR block.
fn no_proxy_matches(entry: &str, host: &str) -> bool {
    let entry = entry.trim_start_matches("*.");
    if entry == "*" || entry == host {
        return true;
    }
    if let Some((net, bits)) = entry.split_once('/')
        && let (Ok(IpAddr::V4(net)), Ok(bits), Ok(IpAddr::V4(ip))) = (
            net.parse::<IpAddr>(),
            bits.parse::<u32>(),
            host.parse::<IpAddr>(),
        )
        && bits <= 32
    {
        let mask = if bits == 0 {
            0
        } else {
            u32::MAX << (32 - bits)
        };
        return u32::from(net) & mask == u32::from(ip) & mask;
    }
    let suffix = entry.trim_start_matches('.');
    host.parse::<IpAddr>().is_err() && !suffix.is_empty() && host.ends_with(&format!(".{suffix}"))
}

fn strip_credentials(v: &str) -> String {
    match reqwest::Url::parse(v) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            format!("{u} (credentials removed)")
        }
        _ => v.to_owned(),
    }
}

/// Diagnoses `url`: proxies, DNS, routes, TCP and a `GET /health`. The diagnosis never repeats
/// credentials given in the URL (`http://user:pass@host`).
pub async fn diagnose(url: &str, proxy: ProxyMode, timeout: Duration) -> Diagnosis {
    let strip = |s: &str| crate::logging::strip_url_credentials(s).into_owned();
    let mut d = diagnose_raw(url, proxy, timeout).await;
    d.url = strip(&d.url);
    d.explanation = strip(&d.explanation);
    d.advice = d.advice.iter().map(|a| strip(a)).collect();
    d
}

async fn diagnose_raw(url: &str, proxy: ProxyMode, timeout: Duration) -> Diagnosis {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let mut d = Diagnosis {
        url: url.to_owned(),
        verdict: Verdict::InvalidUrl,
        explanation: String::new(),
        advice: Vec::new(),
        addresses: Vec::new(),
        proxy_vars: Vec::new(),
        client_uses_env_proxy: proxy == ProxyMode::FromEnv,
        http_status: None,
    };
    let parsed = match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => u,
        Ok(u) => {
            d.explanation = format!(
                "`{url}` is not an http(s) URL with a host (scheme `{}`)",
                u.scheme()
            );
            d.advice
                .push("pass a base URL such as http://127.0.0.1:8000".into());
            return d;
        }
        Err(e) => {
            d.explanation = format!("`{url}` is not a valid URL: {e}");
            d.advice
                .push("pass a base URL such as http://127.0.0.1:8000".into());
            return d;
        }
    };
    d.proxy_vars = proxy_vars(&parsed, &env);
    let capturing: Vec<ProxyVar> = d
        .proxy_vars
        .iter()
        .filter(|p| p.captures)
        .cloned()
        .collect();
    let host = parsed
        .host_str()
        .unwrap_or("")
        .trim_matches(['[', ']'])
        .to_owned();
    let port = parsed.port_or_known_default().unwrap_or(80);

    let proxy_note = |d: &mut Diagnosis| {
        if let Some(p) = capturing.first() {
            if d.client_uses_env_proxy {
                d.advice.push(format!(
                    "{}={} sends this URL through a proxy, which cannot reach cluster-internal or \
                     loopback addresses: add `{host}` to NO_PROXY, or drop --use-env-proxy",
                    p.name, p.value
                ));
            } else {
                d.advice.push(format!(
                    "{} is set and would capture this URL for proxy-aware tools (curl, Python \
                     requests) but this program connects directly (no --use-env-proxy); if curl \
                     works and this does not, the proxy is what reaches the server: add `{host}` \
                     to NO_PROXY for those tools or pass --use-env-proxy here",
                    p.name
                ));
            }
        }
    };

    // DNS.
    let resolved =
        tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port))).await;
    let addrs: Vec<SocketAddr> = match resolved {
        Ok(Ok(a)) => a.take(4).collect(),
        Ok(Err(e)) => {
            d.verdict = Verdict::DnsFailure;
            d.explanation = format!("the name `{host}` does not resolve from here ({e})");
            d.advice
                .push("check the spelling of the host in the URL".into());
            d.advice.push(
                "Kubernetes service names (`svc.cluster.local`) resolve only inside the cluster: \
                 from a runner use `kubectl port-forward` (api-test --k8s-service) or a NodePort URL"
                    .into(),
            );
            proxy_note(&mut d);
            return d;
        }
        Err(_) => {
            d.verdict = Verdict::DnsFailure;
            d.explanation = format!(
                "resolving `{host}` took longer than {} ms",
                timeout.as_millis()
            );
            d.advice
                .push("check /etc/resolv.conf and the DNS server of this machine".into());
            proxy_note(&mut d);
            return d;
        }
    };

    // Routes and TCP, address by address.
    let mut connected = None;
    let mut outcomes = Vec::new();
    for addr in &addrs {
        let t = Instant::now();
        let outcome = if !has_route(addr) {
            "unroutable".to_owned()
        } else {
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(_)) => {
                    connected.get_or_insert(*addr);
                    "connected".into()
                }
                Ok(Err(e)) => match e.kind() {
                    ErrorKind::ConnectionRefused => "refused".into(),
                    ErrorKind::TimedOut => "timeout".into(),
                    ErrorKind::NetworkUnreachable | ErrorKind::HostUnreachable => {
                        "unroutable".into()
                    }
                    _ => format!("error: {e}"),
                },
                Err(_) => "timeout".into(),
            }
        };
        d.addresses.push(Attempt {
            address: addr.to_string(),
            outcome: outcome.clone(),
            millis: t.elapsed().as_millis() as u64,
        });
        outcomes.push(outcome);
    }
    let all = |o: &str| !outcomes.is_empty() && outcomes.iter().all(|x| x == o);
    let first = addrs.first().map(|a| a.to_string()).unwrap_or_default();
    let loopback = addrs.iter().any(|a| a.ip().is_loopback());

    if connected.is_none() {
        if all("refused") {
            d.verdict = Verdict::Refused;
            d.explanation = format!(
                "{first} answered but refused the connection: nothing listens on port {port} there"
            );
            d.advice
                .push("start the server, or fix the port in the URL".into());
            if loopback {
                d.advice.push(
                    "127.0.0.1 is this network namespace's own loopback: a server in another \
                     container, a VM or a cluster node is not reachable as 127.0.0.1 from here; \
                     use its address, a published port, or `kubectl port-forward`"
                        .into(),
                );
            } else {
                d.advice.push(
                    "if the server runs, it may listen only on 127.0.0.1: start it with \
                     --addr 0.0.0.0:PORT; in Kubernetes check `kubectl get endpoints` (a Service \
                     without ready pods refuses) and the NodePort number"
                        .into(),
                );
            }
        } else if outcomes.iter().any(|o| o == "unroutable")
            && !outcomes.iter().any(|o| o == "timeout")
        {
            d.verdict = Verdict::Unroutable;
            d.explanation = format!(
                "this network namespace has no route to {first}: the address belongs to another \
                 network (a Minikube/kind node or a Docker network seen from another container)"
            );
            d.advice.push(
                "run the tests where that network is reachable, or expose the service on an \
                 address reachable from here: `kubectl port-forward` (api-test --k8s-service), a \
                 published port, or the host network"
                    .into(),
            );
        } else {
            d.verdict = Verdict::Timeout;
            d.explanation = format!(
                "connecting to {first} got no answer within {} ms: packets are dropped on the way \
                 (a firewall, a security group) or the address is on a network this one cannot \
                 reach",
                timeout.as_millis()
            );
            d.advice.push(
                "check firewalls and security groups for the port; a NodePort or node IP from \
                 another namespace often times out: use `kubectl port-forward` (api-test --k8s-service)"
                    .into(),
            );
        }
        proxy_note(&mut d);
        return d;
    }

    // HTTP.
    let client = super::client(proxy, timeout);
    let health = format!("{}/health", url.trim_end_matches('/'));
    match client {
        Err(e) => {
            d.verdict = Verdict::HttpFailed;
            d.explanation = format!("the HTTP client could not be built: {e}");
        }
        Ok(c) => match c.get(&health).send().await {
            Ok(r) => {
                d.verdict = Verdict::Reachable;
                d.http_status = Some(r.status().as_u16());
                d.explanation = format!("an HTTP server answered GET {health} with {}", r.status());
            }
            Err(e) => {
                d.verdict = Verdict::HttpFailed;
                d.explanation = format!(
                    "TCP to {} connected, but HTTP failed: {}",
                    connected.map(|a| a.to_string()).unwrap_or_default(),
                    crate::exit::chain_text(&e)
                );
                d.advice.push(
                    "check the scheme (http vs https) and that the port serves HTTP, not another protocol"
                        .into(),
                );
            }
        },
    }
    proxy_note(&mut d);
    d
}

/// Whether the kernel has a route to `addr` (a UDP connect sends nothing).
fn has_route(addr: &SocketAddr) -> bool {
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().unwrap_or(*addr)
    } else {
        "[::]:0".parse().unwrap_or(*addr)
    };
    match std::net::UdpSocket::bind(bind) {
        Ok(s) => !matches!(
            s.connect(addr).map_err(|e| e.kind()),
            Err(ErrorKind::NetworkUnreachable | ErrorKind::HostUnreachable)
        ),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn proxy_variables_in_any_case_and_no_proxy() {
        let url = reqwest::Url::parse("http://10.1.2.3:30080/").unwrap();
        let v = proxy_vars(
            &url,
            &env(&[("http_proxy", "http://user:pw@proxy:3128"), ("HOME", "/")]),
        );
        assert_eq!(v.len(), 1);
        assert!(v[0].captures);
        assert!(!v[0].value.contains("pw"), "{}", v[0].value);
        let v = proxy_vars(
            &url,
            &env(&[
                ("HTTP_PROXY", "http://proxy:3128"),
                ("No_Proxy", "localhost,10.0.0.0/8"),
            ]),
        );
        assert!(!v.iter().any(|p| p.captures), "{v:?}");
        let https = reqwest::Url::parse("https://api.example.com/").unwrap();
        let v = proxy_vars(
            &https,
            &env(&[("HTTP_PROXY", "http://p:1"), ("ALL_PROXY", "socks5://p:2")]),
        );
        assert_eq!(
            v.iter()
                .filter(|p| p.captures)
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>(),
            ["ALL_PROXY"]
        );
        let v = proxy_vars(
            &https,
            &env(&[("HTTPS_PROXY", "http://p:1"), ("NO_PROXY", ".example.com")]),
        );
        assert!(!v[0].captures);
    }

    #[test]
    fn no_proxy_entries() {
        assert!(no_proxy_matches("*", "x"));
        assert!(no_proxy_matches(
            "svc.cluster.local",
            "api.svc.cluster.local"
        ));
        assert!(no_proxy_matches(".cluster.local", "api.svc.cluster.local"));
        assert!(!no_proxy_matches("cluster.local", "notcluster.local"));
        assert!(no_proxy_matches("192.168.49.0/24", "192.168.49.2"));
        assert!(!no_proxy_matches("192.168.49.0/24", "192.168.50.2"));
        assert!(no_proxy_matches("127.0.0.1", "127.0.0.1"));
    }

    #[tokio::test]
    async fn refused_invalid_and_dns() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = diagnose(
            &format!("http://127.0.0.1:{port}"),
            ProxyMode::Direct,
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(d.verdict, Verdict::Refused, "{d:?}");
        assert!(
            d.render().contains("nothing listens on port"),
            "{}",
            d.render()
        );
        assert!(d.advice.iter().any(|a| a.contains("own loopback")));
        let d = diagnose("ftp://x", ProxyMode::Direct, Duration::from_secs(1)).await;
        assert_eq!(d.verdict, Verdict::InvalidUrl);
        let d = diagnose(
            "http://no-such-host.invalid:80",
            ProxyMode::Direct,
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(d.verdict, Verdict::DnsFailure, "{d:?}");
    }
}
