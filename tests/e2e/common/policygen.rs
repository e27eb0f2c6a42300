//! Seeded generator of AuthorizationPolicy sets and requests for the
//! differential test against real Envoy.
//!
//! The engine's predictions are only worth something if real Envoy, configured
//! by our Istio translation, decides the same. This module draws policy sets
//! covering every field of Istio's AuthorizationPolicy reference that a sidecar
//! evaluates (sources, operations, conditions, actions, dry-run) from small
//! value pools chosen so that matches and misses are both frequent, and
//! requests (identity, source address, port, method, path edge cases, host,
//! headers) from pools that hit those values, their neighbours and the path
//! normalisation cases Envoy rewrites. Same seed, same cases.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// The destination workload every policy set protects.
pub const DST_NAMESPACE: &str = "foo";
pub const DST_POD: &str = "httpbin-6b9d8c7f5-x2x9k";
pub const DST_SA: &str = "httpbin";
pub const DST_IP: &str = "10.244.1.7";
pub const DST_LABEL: (&str, &str) = ("app", "httpbin");
/// Ports of the destination: two HTTP ports and one TCP port.
pub const HTTP_PORTS: [u16; 2] = [8080, 9090];
pub const TCP_PORT: u16 = 3306;
pub const ROOT_NAMESPACE: &str = "istio-system";

/// A source identity: namespace and service account (mTLS), or none (plain text).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub trust_domain: String,
    pub namespace: String,
    pub service_account: String,
}

impl Identity {
    /// `TD/ns/NS/sa/SA`, as the engine takes it (no `spiffe://`).
    pub fn principal(&self) -> String {
        format!(
            "{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }

    /// The certificate's URI SAN.
    pub fn spiffe_uri(&self) -> String {
        format!("spiffe://{}", self.principal())
    }
}

/// What is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Http {
        method: String,
        /// Sent on the request line exactly as written.
        path: String,
        host: String,
        headers: Vec<(String, String)>,
    },
    /// A TCP connection that writes a line and expects the app's echo.
    Tcp,
}

/// One request of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub identity: Option<Identity>,
    /// The source address Envoy sees (carried by the PROXY protocol).
    pub source_ip: String,
    pub port: u16,
    pub payload: Payload,
}

/// One policy set and the requests sent against it.
#[derive(Debug, Clone)]
pub struct Case {
    pub index: usize,
    /// AuthorizationPolicy manifests (JSON), all applying to the destination.
    pub policies: Vec<Value>,
    pub requests: Vec<Request>,
}

const NAMESPACES: &[&str] = &["ns-a", "ns-b", "ns-c"];
const SERVICE_ACCOUNTS: &[&str] = &["sa-1", "sa-2", "default"];
/// Source addresses are loopback addresses: the client really connects from
/// them, because Envoy's `source.ip` is the physical peer (a PROXY header only
/// changes `remote.ip`), and this machine may only use its own addresses.
const SOURCE_IPS: &[&str] = &["127.1.2.3", "127.200.0.9", "127.168.1.10", "127.16.0.1"];

const P_PRINCIPALS: &[&str] = &[
    "cluster.local/ns/ns-a/sa/sa-1",
    "cluster.local/ns/ns-b/sa/default",
    "cluster.local/ns/ns-a/*",
    "*/sa/sa-2",
    "*",
];
const P_NAMESPACES: &[&str] = &["ns-a", "ns-b", "ns-*", "*-c", "*"];
const P_IPS: &[&str] = &[
    "127.0.0.0/8",
    "127.1.2.3",
    "127.168.0.0/16",
    "127.16.0.1/32",
    "127.200.0.0/24",
    "10.0.0.0/8",
];
const P_SERVICE_ACCOUNTS: &[&str] = &["sa-1", "ns-a/sa-1", "ns-b/default", "ns-c/sa-2", "default"];
const P_TRUST_DOMAINS: &[&str] = &["cluster.local", "other.example", "*"];
const P_REQUEST_PRINCIPALS: &[&str] = &["issuer.example/alice", "*"];
const P_METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH"];
const P_PATHS: &[&str] = &[
    "/admin",
    "/admin/panel",
    "/admin/*",
    "*/info",
    "/api/*",
    "/",
    "*",
    "/data",
    "/api/{*}/info",
    "/api/{**}",
    "/{*}/panel",
];
const P_HOSTS: &[&str] = &[
    "httpbin.foo.svc.cluster.local",
    "httpbin.foo.svc.cluster.local:8080",
    "*.example.com",
    "example.com",
    "httpbin*",
    "*",
];
const P_PORTS: &[&str] = &["8080", "9090", "3306"];
const P_HEADER_VALUES: &[&str] = &["a", "b", "a*", "*z", "*"];

const R_METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
const R_PATHS: &[&str] = &[
    "/",
    "/admin",
    "/admin/",
    "/admin/panel",
    "/admin/panel?a=b",
    "/admin/./panel",
    "/admin/x/../panel",
    "/x/../admin/panel",
    "/ADMIN/panel",
    "/Admin",
    "/admin/%2e%2e/panel",
    "/%61dmin/panel",
    "/admin%2Fpanel",
    "//admin/panel",
    "/api/v1/info",
    "/api/v1/v2/info",
    "/x/info",
    "/info",
    "/data",
    "/data?x=/admin",
    "/datax",
];
const R_HOSTS: &[&str] = &[
    "httpbin.foo.svc.cluster.local",
    "httpbin.foo.svc.cluster.local:8080",
    "httpbin",
    "www.example.com",
    "example.com",
    "other.test",
];
const R_HEADER_VALUES: &[&str] = &["a", "b", "abz", "z", "xyz"];

fn pick<'a>(rng: &mut StdRng, pool: &[&'a str]) -> &'a str {
    pool.choose(rng).copied().unwrap_or_default()
}

/// One to three values from a pool, without repeats.
fn some(rng: &mut StdRng, pool: &[&str]) -> Vec<String> {
    let n = rng.random_range(1..=3.min(pool.len()));
    let mut out: Vec<String> = Vec::new();
    while out.len() < n {
        let v = pick(rng, pool).to_string();
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

fn source(rng: &mut StdRng) -> Value {
    let mut s = serde_json::Map::new();
    // Each field is set with probability ~1/4, at least one field.
    let fields: &[(&str, &[&str])] = &[
        ("principals", P_PRINCIPALS),
        ("notPrincipals", P_PRINCIPALS),
        ("namespaces", P_NAMESPACES),
        ("notNamespaces", P_NAMESPACES),
        ("ipBlocks", P_IPS),
        ("notIpBlocks", P_IPS),
        ("remoteIpBlocks", P_IPS),
        ("notRemoteIpBlocks", P_IPS),
        ("serviceAccounts", P_SERVICE_ACCOUNTS),
        ("notServiceAccounts", P_SERVICE_ACCOUNTS),
        ("trustDomains", P_TRUST_DOMAINS),
        ("notTrustDomains", P_TRUST_DOMAINS),
    ];
    while s.is_empty() {
        for (name, pool) in fields {
            if rng.random_ratio(1, 6) {
                s.insert((*name).to_string(), json!(some(rng, pool)));
            }
        }
    }
    // JWT fields are rare: requests carry no JWT, so the engine says it cannot
    // evaluate them (on HTTP) and the request is left out of the comparison.
    if rng.random_ratio(1, 40) {
        let name = if rng.random_bool(0.5) {
            "requestPrincipals"
        } else {
            "notRequestPrincipals"
        };
        s.insert(name.to_string(), json!(some(rng, P_REQUEST_PRINCIPALS)));
    }
    Value::Object(s)
}

fn operation(rng: &mut StdRng, http: bool) -> Value {
    let mut o = serde_json::Map::new();
    let fields: &[(&str, &[&str], bool)] = &[
        ("ports", P_PORTS, false),
        ("notPorts", P_PORTS, false),
        ("methods", P_METHODS, true),
        ("notMethods", P_METHODS, true),
        ("paths", P_PATHS, true),
        ("notPaths", P_PATHS, true),
        ("hosts", P_HOSTS, true),
        ("notHosts", P_HOSTS, true),
    ];
    while o.is_empty() {
        for (name, pool, is_http) in fields {
            if (http || !is_http) && rng.random_ratio(1, 4) {
                o.insert((*name).to_string(), json!(some(rng, pool)));
            }
        }
    }
    Value::Object(o)
}

fn condition(rng: &mut StdRng, http: bool) -> Value {
    let keys: Vec<&str> = if http {
        vec![
            "request.headers[x-token]",
            "source.ip",
            "remote.ip",
            "source.namespace",
            "source.principal",
            "destination.port",
            "destination.ip",
        ]
    } else {
        vec![
            "source.ip",
            "source.namespace",
            "source.principal",
            "destination.port",
        ]
    };
    let key = pick(rng, &keys);
    let pool: &[&str] = match key {
        "request.headers[x-token]" => P_HEADER_VALUES,
        "source.ip" | "remote.ip" => P_IPS,
        "source.namespace" => P_NAMESPACES,
        "source.principal" => P_PRINCIPALS,
        "destination.port" => P_PORTS,
        _ => &[DST_IP, "10.244.0.0/16", "10.9.9.9"],
    };
    let mut c = serde_json::Map::new();
    c.insert("key".into(), json!(key));
    if rng.random_ratio(2, 3) {
        c.insert("values".into(), json!(some(rng, pool)));
    }
    if c.len() == 1 || rng.random_ratio(1, 4) {
        c.insert("notValues".into(), json!(some(rng, pool)));
    }
    Value::Object(c)
}

fn rule(rng: &mut StdRng, http: bool) -> Value {
    let mut r = serde_json::Map::new();
    if rng.random_ratio(2, 3) {
        let n = rng.random_range(1..=2);
        let from: Vec<Value> = (0..n).map(|_| json!({ "source": source(rng) })).collect();
        r.insert("from".into(), json!(from));
    }
    if rng.random_ratio(2, 3) {
        let n = rng.random_range(1..=2);
        let to: Vec<Value> = (0..n)
            .map(|_| json!({ "operation": operation(rng, http) }))
            .collect();
        r.insert("to".into(), json!(to));
    }
    if rng.random_ratio(1, 3) {
        let n = rng.random_range(1..=2);
        let when: Vec<Value> = (0..n).map(|_| condition(rng, http)).collect();
        r.insert("when".into(), json!(when));
    }
    Value::Object(r)
}

fn policy(rng: &mut StdRng, case: usize, i: usize) -> Value {
    let action = *["ALLOW", "ALLOW", "ALLOW", "DENY", "DENY", "DENY", "AUDIT"]
        .choose(rng)
        .unwrap_or(&"ALLOW");
    // Policies that name only TCP-compatible fields are drawn now and then so
    // that the TCP port sees enforced rules, not only "HTTP fields dropped".
    let http = !rng.random_ratio(1, 4);
    let n_rules = match rng.random_range(0..10) {
        0 => 0,
        1..=5 => 1,
        6..=8 => 2,
        _ => 3,
    };
    let rules: Vec<Value> = (0..n_rules).map(|_| rule(rng, http)).collect();
    let (namespace, selector) = match rng.random_range(0..6) {
        0 => (ROOT_NAMESPACE, false),
        1 => (DST_NAMESPACE, false),
        _ => (DST_NAMESPACE, true),
    };
    let mut spec = serde_json::Map::new();
    if selector {
        spec.insert(
            "selector".into(),
            json!({ "matchLabels": { DST_LABEL.0: DST_LABEL.1 } }),
        );
    }
    if action != "ALLOW" || rng.random_bool(0.5) {
        spec.insert("action".into(), json!(action));
    }
    if !rules.is_empty() || rng.random_bool(0.5) {
        spec.insert("rules".into(), json!(rules));
    }
    let mut meta = json!({ "name": format!("p{case}-{i}"), "namespace": namespace });
    if rng.random_ratio(1, 8) {
        meta["annotations"] = json!({ "istio.io/dry-run": "true" });
    }
    json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": meta,
        "spec": Value::Object(spec),
    })
}

fn request(rng: &mut StdRng) -> Request {
    let identity = if rng.random_ratio(1, 5) {
        None
    } else {
        Some(Identity {
            // A peer from another trust domain now and then (a federated mesh).
            trust_domain: if rng.random_ratio(1, 10) {
                "other.example"
            } else {
                "cluster.local"
            }
            .to_string(),
            namespace: pick(rng, NAMESPACES).to_string(),
            service_account: pick(rng, SERVICE_ACCOUNTS).to_string(),
        })
    };
    let source_ip = pick(rng, SOURCE_IPS).to_string();
    if rng.random_ratio(1, 6) {
        return Request {
            identity,
            source_ip,
            port: TCP_PORT,
            payload: Payload::Tcp,
        };
    }
    let port = *HTTP_PORTS.choose(rng).unwrap_or(&HTTP_PORTS[0]);
    let mut headers = Vec::new();
    if rng.random_bool(0.6) {
        headers.push((
            "x-token".to_string(),
            pick(rng, R_HEADER_VALUES).to_string(),
        ));
    }
    Request {
        identity,
        source_ip,
        port,
        payload: Payload::Http {
            method: pick(rng, R_METHODS).to_string(),
            path: pick(rng, R_PATHS).to_string(),
            host: pick(rng, R_HOSTS).to_string(),
            headers,
        },
    }
}

/// `cases` policy sets with `requests` requests each, from `seed`.
pub fn generate(seed: u64, cases: usize, requests: usize) -> Vec<Case> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..cases)
        .map(|index| {
            let n = rng.random_range(1..=3);
            let policies = (0..n).map(|i| policy(&mut rng, index, i)).collect();
            let requests = (0..requests).map(|_| request(&mut rng)).collect();
            Case {
                index,
                policies,
                requests,
            }
        })
        .collect()
}
