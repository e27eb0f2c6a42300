//! Verdicts per second on a cluster-sized model: 200 namespaces, 2,000 pods,
//! 1,000 NetworkPolicies and 1,000 AuthorizationPolicies. Policies are indexed
//! by namespace, so a verdict looks only at the namespaces involved; this
//! benchmark is where that claim is measured (figures go to BENCHMARKS.md).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use meshpolicy::workload::ContainerPort;
use meshpolicy::{
    AuthorizationPolicy, Cluster, ClusterOptions, Endpoint, HttpAttributes, Namespace, Pod,
    Protocol,
};
use serde_json::json;

const NAMESPACES: usize = 200;
const PODS_PER_NS: usize = 10;
const POLICIES_PER_NS: usize = 5;
const BATCH: usize = 1_000;

fn model() -> Cluster {
    let mut c = Cluster::with_options(ClusterOptions::default());
    for n in 0..NAMESPACES {
        let ns = format!("ns-{n}");
        let mut l = BTreeMap::new();
        l.insert("team".to_string(), format!("team-{}", n % 20));
        c.add_namespace(Namespace::new(&ns, l));
        for p in 0..PODS_PER_NS {
            let mut labels = BTreeMap::new();
            labels.insert("app".to_string(), format!("app-{p}"));
            labels.insert("tier".to_string(), ["web", "api", "db"][p % 3].to_string());
            let mut pod = Pod::new(&ns, &format!("app-{p}-0"), labels);
            pod.ip = Some(IpAddr::V4(Ipv4Addr::new(
                10,
                (n / 250) as u8,
                (n % 250) as u8,
                p as u8 + 1,
            )));
            pod.has_sidecar = true;
            pod.ports = vec![
                ContainerPort {
                    name: Some("http".into()),
                    port: 8080,
                    protocol: Protocol::Tcp,
                },
                ContainerPort {
                    name: Some("metrics".into()),
                    port: 9090,
                    protocol: Protocol::Tcp,
                },
            ];
            c.add_pod(pod);
        }
        for k in 0..POLICIES_PER_NS {
            let np: NetworkPolicy = serde_json::from_value(json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": format!("np-{k}"), "namespace": ns},
                "spec": {
                    "podSelector": {"matchLabels": {"app": format!("app-{}", k * 2)}},
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [
                        {"from": [{"podSelector": {"matchLabels": {"tier": "web"}}}],
                         "ports": [{"port": "http"}]},
                        {"from": [{"namespaceSelector": {"matchLabels": {"team": format!("team-{}", k)}},
                                   "podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["api", "web"]}]}}],
                         "ports": [{"port": 8000, "endPort": 8100}]},
                        {"from": [{"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}}]}
                    ],
                    "egress": [
                        {"to": [{"namespaceSelector": {}}], "ports": [{"port": 53, "protocol": "UDP"}]},
                        {"to": [{"podSelector": {"matchLabels": {"tier": "db"}}}]}
                    ]
                }
            }))
            .unwrap();
            c.add_network_policy(&np).unwrap();
            let ap: AuthorizationPolicy = serde_json::from_value(json!({
                "metadata": {"name": format!("ap-{k}"), "namespace": ns},
                "spec": {
                    "action": if k == 0 { "DENY" } else { "ALLOW" },
                    "selector": {"matchLabels": {"app": format!("app-{}", k * 2)}},
                    "rules": [
                        {"from": [{"source": {"principals": [format!("cluster.local/ns/ns-{}/sa/*", (n + 1) % NAMESPACES)]}}],
                         "to": [{"operation": {"methods": ["GET"], "paths": ["/api/*"]}}]},
                        {"from": [{"source": {"namespaces": ["ns-1*"]}}],
                         "when": [{"key": "request.headers[x-debug]", "notValues": ["1"]}]}
                    ]
                }
            }))
            .unwrap();
            c.add_authorization_policy(&ap).unwrap();
        }
    }
    c
}

/// A fixed, spread-out set of (src, dst, port) triples.
fn pairs(c: &Cluster) -> Vec<(Endpoint, Endpoint, u16)> {
    let pods = c.pods();
    let mut out = Vec::with_capacity(BATCH);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..BATCH {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let s = &pods[(x as usize) % pods.len()];
        let d = &pods[((x >> 20) as usize) % pods.len()];
        let port = [8080, 9090, 8050, 53][i % 4];
        out.push((
            Endpoint::pod(&s.namespace, &s.name),
            Endpoint::pod(&d.namespace, &d.name),
            port,
        ));
    }
    out
}

fn bench(c: &mut Criterion) {
    let model = model();
    let triples = pairs(&model);
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("network_verdicts_200ns_2000pods_1000np", |b| {
        b.iter(|| {
            let mut allowed = 0usize;
            for (s, d, port) in &triples {
                let v = model.evaluate_network(s, d, *port, Protocol::Tcp).unwrap();
                allowed += usize::from(v.allowed);
            }
            black_box(allowed)
        })
    });
    let requests: Vec<_> = triples
        .iter()
        .map(|(s, d, port)| {
            let Endpoint::Pod { namespace, name } = d else {
                unreachable!()
            };
            model
                .authz_request(
                    s,
                    namespace,
                    name,
                    *port,
                    Some(HttpAttributes {
                        method: "GET".into(),
                        path: "/api/items".into(),
                        host: "svc".into(),
                        headers: BTreeMap::new(),
                    }),
                )
                .unwrap()
        })
        .collect();
    g.bench_function("authz_verdicts_200ns_2000pods_1000ap", |b| {
        b.iter(|| {
            let mut allowed = 0usize;
            for r in &requests {
                let v = model.evaluate_authz(r).unwrap();
                allowed += usize::from(v.decision == meshpolicy::Decision::Allow);
            }
            black_box(allowed)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
