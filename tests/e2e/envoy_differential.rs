//! Differential test: the policy engine against real Envoy 1.40.
//!
//! Our predictions (`npexec --predict`, `--explain`, authzcheck) are only
//! right if they agree with the proxy that enforces the policies. For each
//! generated policy set (tests/e2e/common/policygen.rs), meshpolicy translates the
//! policies into Istio's RBAC filters (`istio::rbac`) and wraps them in Istio's
//! inbound listener (`istio::listener`); real Envoy loads every set at once, one
//! listener each, in front of an HTTP app and an echo app. Every request is
//! sent through real Envoy, with the source identity as a real mTLS client
//! certificate (or plain text) and the source address in a PROXY header, and
//! Envoy's answer is compared with the engine's decision for the same request.
//! Zero disagreements is the only passing result.
//!
//! Size: `MESHDEBUG_DIFF_CASES` policy sets x `MESHDEBUG_DIFF_REQUESTS` requests
//! (default 100 x 200 = 20,000 requests), seed `MESHDEBUG_DIFF_SEED`; `make
//! conformance` runs a larger set. Needs the real binary (`make envoy`).

use crate::common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use common::envoy::{
    App, AppKind, Bootstrap, ClientTls, Dial, Envoy, EnvoyOptions, HttpResponse, MeshCa,
    TcpOutcome, WorkloadCert, http_request, tcp_exchange,
};
use common::policygen::{self, Case, Identity, Payload, Request};
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

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What a request got, reduced to what the engine predicts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Allowed,
    Denied,
    /// Anything else (a 400 for a path Envoy rejects before RBAC, a reset, ...).
    Other(String),
}

fn seen_http(r: std::io::Result<HttpResponse>) -> Seen {
    match r {
        Ok(r) if r.status == 403 && r.body == "RBAC: access denied" => Seen::Denied,
        Ok(r) if r.status == 200 && r.body.starts_with("web ") => Seen::Allowed,
        Ok(r) => Seen::Other(format!("HTTP {} {:?}", r.status, r.body)),
        Err(e) => Seen::Other(format!("no HTTP answer: {e}")),
    }
}

fn seen_tcp(o: TcpOutcome, payload: &[u8]) -> Seen {
    match o {
        TcpOutcome::Data(d) if d == payload => Seen::Allowed,
        TcpOutcome::Data(d) => Seen::Other(format!("TCP data {d:?}")),
        TcpOutcome::Closed(_) => Seen::Denied,
    }
}

fn engine(policies: &[CompiledAuthz], req: &Request) -> Decision {
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

struct Prepared {
    case: Case,
    compiled: Vec<CompiledAuthz>,
    listener_name: String,
}

#[test]
fn engine_agrees_with_real_envoy_on_generated_policies_and_requests() {
    let seed = env_usize("MESHDEBUG_DIFF_SEED", 20261204) as u64;
    let n_cases = env_usize("MESHDEBUG_DIFF_CASES", 100);
    let n_requests = env_usize("MESHDEBUG_DIFF_REQUESTS", 200);
    let cases = policygen::generate(seed, n_cases, n_requests);

    let dir = tempfile::tempdir().unwrap();
    let ca = MeshCa::new("cluster.local").unwrap();
    let server = ca
        .issue(policygen::DST_NAMESPACE, policygen::DST_SA)
        .unwrap();
    let tls = server.write(dir.path(), "server").unwrap();
    let web = App::start("web", AppKind::Http).unwrap();
    let echo = App::start("echo", AppKind::Echo).unwrap();

    let opts = TranslateOptions::default();
    let mut listeners = Vec::new();
    let mut clusters = Vec::new();
    let mut prepared = Vec::new();
    for case in cases {
        let parsed: Vec<AuthorizationPolicy> = case
            .policies
            .iter()
            .map(|p| serde_json::from_value(p.clone()).expect("generated policy parses"))
            .collect();
        let compiled: Vec<CompiledAuthz> = parsed
            .iter()
            .map(|p| CompiledAuthz::compile(p).expect("generated policy compiles"))
            .collect();
        let mut spec = InboundSpec::new("127.0.0.1".parse().unwrap(), 0, tls.clone());
        spec.name = format!("case-{}", case.index);
        spec.proxy_protocol = true;
        spec.ports = policygen::HTTP_PORTS
            .iter()
            .map(|&port| InboundPort {
                port,
                protocol: AppProtocol::Http,
                mtls: MtlsMode::Permissive,
                upstream: web.addr,
            })
            .chain([InboundPort {
                port: policygen::TCP_PORT,
                protocol: AppProtocol::Tcp,
                mtls: MtlsMode::Permissive,
                upstream: echo.addr,
            }])
            .collect();
        spec.http_filters = http_filters(&parsed, &opts);
        spec.network_filters = network_filters(&parsed, &opts);
        listeners.push(inbound_listener(&spec).expect("listener builds"));
        if clusters.is_empty() {
            clusters = inbound_clusters(&spec);
        }
        prepared.push(Prepared {
            listener_name: spec.name.clone(),
            case,
            compiled,
        });
    }
    let boot = Bootstrap::sidecar(
        policygen::DST_POD,
        policygen::DST_NAMESPACE,
        listeners,
        clusters,
    );
    let envoy = Envoy::start(dir.path(), &boot, &EnvoyOptions::default()).unwrap();

    // One client certificate per identity, made once.
    let mut certs: BTreeMap<Identity, WorkloadCert> = BTreeMap::new();
    for p in &prepared {
        for r in &p.case.requests {
            if let Some(id) = &r.identity {
                certs
                    .entry(id.clone())
                    .or_insert_with(|| ca.issue_uri(&id.spiffe_uri()).unwrap());
            }
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

    // Work items: (listener address, case index, request index).
    let mut work = Vec::new();
    for (ci, p) in prepared.iter().enumerate() {
        let addr = envoy.listener_address(&p.listener_name).unwrap();
        for ri in 0..p.case.requests.len() {
            work.push((addr, ci, ri));
        }
    }
    let prepared = Arc::new(prepared);
    let work = Arc::new(work);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads = 4;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (prepared, work, next) = (prepared.clone(), work.clone(), next.clone());
            let (http_tls, tcp_tls) = (http_tls.clone(), tcp_tls.clone());
            std::thread::spawn(move || {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&(addr, ci, ri)) = work.get(i) else {
                        break;
                    };
                    let req = &prepared[ci].case.requests[ri];
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
                    out.push((ci, ri, seen, ms));
                }
                out
            })
        })
        .collect();
    let mut results = Vec::new();
    for h in handles {
        results.extend(h.join().unwrap());
    }

    let mut disagreements = Vec::new();
    let (mut agree, mut cannot, mut other) = (0usize, 0usize, 0usize);
    let mut by_decision: BTreeMap<String, usize> = BTreeMap::new();
    let mut timing: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    for (ci, ri, seen, ms) in &results {
        let kind = match prepared[*ci].case.requests[*ri].payload {
            Payload::Http { .. } => "http",
            Payload::Tcp => "tcp",
        };
        let label = match seen {
            Seen::Other(_) => "other".to_string(),
            s => format!("{s:?}"),
        };
        let t = timing.entry(format!("{kind} {label}")).or_default();
        t.0 += 1;
        t.1 += ms;
    }
    for (k, (n, total)) in &timing {
        eprintln!(
            "  {k}: {n} requests, {:.1} ms each on average",
            total / *n as f64
        );
    }
    for (ci, ri, seen, _) in &results {
        let p = &prepared[*ci];
        let req = &p.case.requests[*ri];
        let predicted = engine(&p.compiled, req);
        *by_decision
            .entry(format!("{predicted:?}/{seen:?}"))
            .or_default() += 1;
        match (predicted, seen) {
            (Decision::CannotEvaluate, _) => cannot += 1,
            (Decision::Allow, Seen::Allowed) | (Decision::Deny, Seen::Denied) => agree += 1,
            (_, Seen::Other(_)) => {
                other += 1;
                disagreements.push((*ci, *ri, predicted, seen.clone()));
            }
            _ => disagreements.push((*ci, *ri, predicted, seen.clone())),
        }
    }
    eprintln!(
        "differential: seed {seed}, {} policy sets, {} requests: {agree} agree, {} disagree \
         ({other} not an RBAC answer), {cannot} the engine cannot evaluate",
        prepared.len(),
        results.len(),
        disagreements.len()
    );
    for (k, v) in &by_decision {
        eprintln!("  engine/envoy {k}: {v}");
    }
    for (ci, ri, predicted, seen) in disagreements.iter().take(15) {
        let p = &prepared[*ci];
        eprintln!(
            "--- case {ci} request {ri}: engine {predicted:?}, envoy {seen:?}\n  request: {:?}\n  policies: {}",
            p.case.requests[*ri],
            serde_json::to_string(&p.case.policies).unwrap()
        );
    }
    assert_eq!(
        results.len(),
        n_cases * n_requests,
        "every request was sent"
    );
    assert!(
        disagreements.is_empty(),
        "{} of {} requests: the engine and real Envoy disagree (first ones above)",
        disagreements.len(),
        results.len()
    );
    assert!(
        cannot * 20 < results.len(),
        "the engine could not evaluate {cannot} requests: the generator lost its point"
    );
    drop(envoy);
}

#[test]
fn the_generator_is_deterministic() {
    let a = policygen::generate(7, 3, 5);
    let b = policygen::generate(7, 3, 5);
    assert_eq!(a.len(), 3);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.policies, y.policies);
        assert_eq!(x.requests, y.requests);
    }
    assert_ne!(policygen::generate(8, 3, 5)[0].requests, a[0].requests);
}
