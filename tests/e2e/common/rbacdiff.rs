//! Shared plumbing of the differential tests against real Envoy
//! (tests/e2e/envoy_differential.rs, tests/e2e/envoy_whatif.rs).
//!
//! Both load many AuthorizationPolicy sets into one real Envoy (one inbound
//! listener per set, built by our Istio translation), send generated requests
//! (tests/common/policygen.rs) through it with real mTLS client certificates
//! and PROXY headers, and compare what Envoy answered with the engine's
//! decision. Keeping the listener building, the sending and the reading of
//! answers here means both tests judge Envoy the same way.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::envoy::{
    App, AppKind, Bootstrap, ClientTls, Dial, Envoy, EnvoyOptions, HttpResponse, MeshCa,
    TcpOutcome, WorkloadCert, http_request, tcp_exchange,
};
use super::policygen::{self, Identity, Payload, Request};
use meshpolicy::istio::listener::{
    AppProtocol, InboundPort, InboundSpec, SIDECAR_HTTP11_ALPNS, SIDECAR_TCP_ALPNS,
    inbound_clusters, inbound_listener,
};
use meshpolicy::istio::rbac::{TranslateOptions, http_filters, network_filters};
use meshpolicy::peerauth::MtlsMode;
use meshpolicy::{
    AuthorizationPolicy, AuthzRequest, CompiledAuthz, Decision, HttpAttributes,
    authz::evaluate_policies,
};

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What a request got, reduced to what the engine predicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Allowed,
    Denied,
    /// Anything else (a 400 for a path Envoy rejects before RBAC, a reset, ...).
    Other(String),
}

pub fn seen_http(r: std::io::Result<HttpResponse>) -> Seen {
    match r {
        Ok(r) if r.status == 403 && r.body == "RBAC: access denied" => Seen::Denied,
        Ok(r) if r.status == 200 && r.body.starts_with("web ") => Seen::Allowed,
        Ok(r) => Seen::Other(format!("HTTP {} {:?}", r.status, r.body)),
        Err(e) => Seen::Other(format!("no HTTP answer: {e}")),
    }
}

pub fn seen_tcp(o: TcpOutcome, payload: &[u8]) -> Seen {
    match o {
        TcpOutcome::Data(d) if d == payload => Seen::Allowed,
        TcpOutcome::Data(d) => Seen::Other(format!("TCP data {d:?}")),
        TcpOutcome::Closed(_) => Seen::Denied,
    }
}

/// The engine's decision for a generated request against compiled policies.
pub fn engine(policies: &[CompiledAuthz], req: &Request) -> Decision {
    let refs: Vec<&CompiledAuthz> = policies.iter().collect();
    let http = match &req.payload {
        Payload::Http {
            method,
            path,
            host,
            headers,
        } => Some(HttpAttributes {
            method: method.clone(),
            path: path.clone(),
            host: host.clone(),
            headers: headers.iter().cloned().collect::<BTreeMap<_, _>>(),
        }),
        Payload::Tcp => None,
    };
    let r = AuthzRequest {
        source_principal: req.identity.as_ref().map(Identity::principal),
        source_namespace: None,
        source_ip: req.source_ip.parse().ok(),
        remote_ip: None,
        request_principal: None,
        destination_namespace: policygen::DST_NAMESPACE.into(),
        destination_pod: policygen::DST_POD.into(),
        destination_ip: policygen::DST_IP.parse().ok(),
        destination_port: req.port,
        http,
    };
    evaluate_policies(&refs, &r, true, Vec::new()).decision
}

/// Parses and compiles generated policy manifests.
pub fn compile(policies: &[Value]) -> (Vec<AuthorizationPolicy>, Vec<CompiledAuthz>) {
    let parsed: Vec<AuthorizationPolicy> = policies
        .iter()
        .map(|p| serde_json::from_value(p.clone()).expect("generated policy parses"))
        .collect();
    let compiled = parsed
        .iter()
        .map(|p| CompiledAuthz::compile(p).expect("generated policy compiles"))
        .collect();
    (parsed, compiled)
}

/// One real Envoy in front of an HTTP app and an echo app, with the mesh CA
/// its listeners trust, ready to take one listener per policy set.
pub struct Bench {
    pub dir: tempfile::TempDir,
    pub ca: MeshCa,
    tls: meshpolicy::istio::listener::TlsFiles,
    web: App,
    echo: App,
    listeners: Vec<Value>,
    clusters: Vec<Value>,
}

impl Bench {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = MeshCa::new("cluster.local").unwrap();
        let server = ca
            .issue(policygen::DST_NAMESPACE, policygen::DST_SA)
            .unwrap();
        let tls = server.write(dir.path(), "server").unwrap();
        let web = App::start("web", AppKind::Http).unwrap();
        let echo = App::start("echo", AppKind::Echo).unwrap();
        Bench {
            dir,
            ca,
            tls,
            web,
            echo,
            listeners: Vec::new(),
            clusters: Vec::new(),
        }
    }

    /// Adds a listener `name` enforcing `parsed` (the destination's two HTTP
    /// ports and its TCP port, PERMISSIVE, PROXY protocol in front).
    pub fn add_listener(&mut self, name: &str, parsed: &[AuthorizationPolicy]) {
        self.add_listener_modes(name, parsed, |_| MtlsMode::Permissive);
    }

    /// [`Bench::add_listener`] with each port's PeerAuthentication mode.
    pub fn add_listener_modes(
        &mut self,
        name: &str,
        parsed: &[AuthorizationPolicy],
        mode: impl Fn(u16) -> MtlsMode,
    ) {
        let opts = TranslateOptions::default();
        let mut spec = InboundSpec::new("127.0.0.1".parse().unwrap(), 0, self.tls.clone());
        spec.name = name.to_string();
        spec.proxy_protocol = true;
        spec.ports = policygen::HTTP_PORTS
            .iter()
            .map(|&port| InboundPort {
                port,
                protocol: AppProtocol::Http,
                mtls: mode(port),
                upstream: self.web.addr,
            })
            .chain([InboundPort {
                port: policygen::TCP_PORT,
                protocol: AppProtocol::Tcp,
                mtls: mode(policygen::TCP_PORT),
                upstream: self.echo.addr,
            }])
            .collect();
        spec.http_filters = http_filters(parsed, &opts);
        spec.network_filters = network_filters(parsed, &opts);
        self.listeners
            .push(inbound_listener(&spec).expect("listener builds"));
        if self.clusters.is_empty() {
            self.clusters = inbound_clusters(&spec);
        }
    }

    /// Starts Envoy with every listener added so far.
    pub fn start(&mut self) -> Envoy {
        let boot = Bootstrap::sidecar(
            policygen::DST_POD,
            policygen::DST_NAMESPACE,
            std::mem::take(&mut self.listeners),
            self.clusters.clone(),
        );
        Envoy::start(self.dir.path(), &boot, &EnvoyOptions::default()).unwrap()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for Bench {
    fn default() -> Self {
        Self::new()
    }
}

/// Sends every `(listener address, request)` through Envoy on 4 threads and
/// returns, in the order given, what each got and how long it took (ms).
pub fn send_all(ca: &MeshCa, work: Vec<(SocketAddr, Request)>) -> Vec<(Seen, f64)> {
    // One client certificate per identity, made once.
    let mut certs: BTreeMap<Identity, WorkloadCert> = BTreeMap::new();
    for (_, r) in &work {
        if let Some(id) = &r.identity {
            certs
                .entry(id.clone())
                .or_insert_with(|| ca.issue_uri(&id.spiffe_uri()).unwrap());
        }
    }
    let http_tls: Arc<BTreeMap<Identity, ClientTls>> = Arc::new(
        certs
            .iter()
            .map(|(k, c)| (k.clone(), ClientTls::new(c, &SIDECAR_HTTP11_ALPNS).unwrap()))
            .collect(),
    );
    let tcp_tls: Arc<BTreeMap<Identity, ClientTls>> = Arc::new(
        certs
            .iter()
            .map(|(k, c)| (k.clone(), ClientTls::new(c, &SIDECAR_TCP_ALPNS).unwrap()))
            .collect(),
    );
    let work = Arc::new(work);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads = 4;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (work, next) = (work.clone(), next.clone());
            let (http_tls, tcp_tls) = (http_tls.clone(), tcp_tls.clone());
            std::thread::spawn(move || {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((addr, req)) = work.get(i) else {
                        break;
                    };
                    let addr = *addr;
                    let src: SocketAddr = format!("{}:{}", req.source_ip, 40000 + (i % 20000))
                        .parse()
                        .unwrap();
                    let dst: SocketAddr = format!("{}:{}", policygen::DST_IP, req.port)
                        .parse()
                        .unwrap();
                    let started = std::time::Instant::now();
                    let seen = match &req.payload {
                        Payload::Http {
                            method,
                            path,
                            host,
                            headers,
                        } => {
                            let dial = Dial {
                                tls: req.identity.as_ref().map(|id| http_tls[id].clone()),
                                proxy: Some((src, dst)),
                                bind: Some(src.ip()),
                            };
                            let h: Vec<(&str, &str)> = headers
                                .iter()
                                .map(|(k, v)| (k.as_str(), v.as_str()))
                                .collect();
                            seen_http(http_request(addr, &dial, method, path, host, &h))
                        }
                        Payload::Tcp => {
                            let dial = Dial {
                                tls: req.identity.as_ref().map(|id| tcp_tls[id].clone()),
                                proxy: Some((src, dst)),
                                bind: Some(src.ip()),
                            };
                            seen_tcp(tcp_exchange(addr, &dial, b"ping\n"), b"ping\n")
                        }
                    };
                    let ms = started.elapsed().as_secs_f64() * 1000.0;
                    out.push((i, seen, ms));
                }
                out
            })
        })
        .collect();
    let mut results: Vec<(usize, Seen, f64)> = Vec::new();
    for h in handles {
        results.extend(h.join().unwrap());
    }
    results.sort_by_key(|r| r.0);
    results.into_iter().map(|(_, s, ms)| (s, ms)).collect()
}
