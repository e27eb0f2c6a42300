//! meshpolicy's Istio inbound listener, loaded into real Envoy 1.40: mTLS by
//! PeerAuthentication mode, identities reaching RBAC through the peer
//! certificate, TCP RBAC, and Istio's TEXT access log.
//!
//! Needs the real binary (`make envoy`); see tests/e2e/common/envoy.rs.

use crate::common;

use std::net::SocketAddr;
use std::path::PathBuf;

use common::envoy::{
    App, AppKind, Bootstrap, ClientTls, Dial, Envoy, EnvoyOptions, MeshCa, TcpOutcome, WAIT_LIMIT,
    WorkloadCert, http_request, tcp_exchange, validate, wait_for_file_line,
};
use meshpolicy::envoy::{AccessVerdict, LogLine, Scope, classify_line};
use meshpolicy::istio::listener::{
    AccessLog, AppProtocol, InboundPort, InboundSpec, SIDECAR_HTTP11_ALPNS, SIDECAR_TCP_ALPNS,
    inbound_clusters, inbound_listener,
};
use meshpolicy::peerauth::MtlsMode;
use serde_json::{Value, json};

const HTTP_PORT: u16 = 8080;
const TCP_PORT: u16 = 9000;
const DENY_POLICY: &str = "ns[server-ns]-policy[deny-bad]-rule[0]";
const TCP_DENY_POLICY: &str = "ns[server-ns]-policy[deny-bad-ns]-rule[0]";

/// An Istio-shaped sidecar in front of an HTTP app (8080) and an echo app
/// (9000), reached through a PROXY header so one listener port serves both.
struct Sidecar {
    _dir: tempfile::TempDir,
    envoy: Envoy,
    _apps: Vec<App>,
    listener: SocketAddr,
    access_log: PathBuf,
    good: WorkloadCert,
    bad: WorkloadCert,
}

fn http_deny_principal(principal: &str) -> Value {
    json!({
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {"action": "DENY", "policies": {DENY_POLICY: {
                "permissions": [{"any": true}],
                "principals": [{"filter_state": {
                    "key": "io.istio.peer_principal",
                    "string_match": {"exact": principal}
                }}]
            }}},
            "shadow_rules_stat_prefix": "istio_dry_run_allow_"
        }
    })
}

fn tcp_deny_namespace(ns: &str) -> Value {
    json!({
        "name": "envoy.filters.network.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC",
            "stat_prefix": "tcp.",
            "rules": {"action": "DENY", "policies": {TCP_DENY_POLICY: {
                "permissions": [{"any": true}],
                "principals": [{"filter_state": {
                    "key": "io.istio.peer_principal",
                    "string_match": {"safe_regex": {"regex": format!(".*/ns/{ns}/.*")}}
                }}]
            }}}
        }
    })
}

fn spec_for(
    dir: &std::path::Path,
    ca: &MeshCa,
    modes: (MtlsMode, MtlsMode),
    upstreams: (SocketAddr, SocketAddr),
) -> InboundSpec {
    let server = ca.issue("server-ns", "server").unwrap();
    let tls = server.write(dir, "server").unwrap();
    let mut spec = InboundSpec::new("127.0.0.1".parse().unwrap(), 0, tls);
    spec.proxy_protocol = true;
    spec.access_log = AccessLog::File(dir.join("access.log").display().to_string());
    spec.ports = vec![
        InboundPort {
            port: HTTP_PORT,
            protocol: AppProtocol::Http,
            mtls: modes.0,
            upstream: upstreams.0,
        },
        InboundPort {
            port: TCP_PORT,
            protocol: AppProtocol::Tcp,
            mtls: modes.1,
            upstream: upstreams.1,
        },
    ];
    spec.http_filters = vec![http_deny_principal(
        "spiffe://cluster.local/ns/bad-ns/sa/bad",
    )];
    spec.network_filters = vec![tcp_deny_namespace("bad-ns")];
    spec
}

impl Sidecar {
    fn start(http_mode: MtlsMode, tcp_mode: MtlsMode) -> Self {
        Self::start_with(http_mode, tcp_mode, None)
    }

    /// As [`Sidecar::start`], with other HTTP filters than the principal DENY.
    fn start_with(
        http_mode: MtlsMode,
        tcp_mode: MtlsMode,
        http_filters: Option<Vec<Value>>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = MeshCa::new("cluster.local").unwrap();
        let web = App::start("web", AppKind::Http).unwrap();
        let echo = App::start("echo", AppKind::Echo).unwrap();
        let mut spec = spec_for(
            dir.path(),
            &ca,
            (http_mode, tcp_mode),
            (web.addr, echo.addr),
        );
        if let Some(f) = http_filters {
            spec.http_filters = f;
        }
        let listener = inbound_listener(&spec).unwrap();
        let boot = Bootstrap::sidecar(
            "server",
            "server-ns",
            vec![listener],
            inbound_clusters(&spec),
        );
        let envoy = Envoy::start(dir.path(), &boot, &EnvoyOptions::default()).unwrap();
        let addr = envoy.listener_address(&spec.name).unwrap();
        Self {
            access_log: dir.path().join("access.log"),
            good: ca.issue("client-ns", "client").unwrap(),
            bad: ca.issue("bad-ns", "bad").unwrap(),
            _dir: dir,
            envoy,
            _apps: vec![web, echo],
            listener: addr,
        }
    }

    /// Dial options for `port` from a made-up pod address.
    fn dial(&self, port: u16, cert: Option<&WorkloadCert>, alpn: &[&str]) -> Dial {
        Dial {
            tls: cert.map(|c| ClientTls::new(c, alpn).unwrap()),
            proxy: Some((
                "10.1.0.7:41000".parse().unwrap(),
                SocketAddr::from(([10, 1, 0, 9], port)),
            )),
            bind: None,
        }
    }

    fn get(
        &self,
        cert: Option<&WorkloadCert>,
        path: &str,
    ) -> std::io::Result<common::envoy::HttpResponse> {
        let dial = self.dial(HTTP_PORT, cert, &SIDECAR_HTTP11_ALPNS);
        http_request(self.listener, &dial, "GET", path, "web.server-ns:8080", &[])
    }

    fn tcp(&self, cert: Option<&WorkloadCert>) -> TcpOutcome {
        tcp_exchange(
            self.listener,
            &self.dial(TCP_PORT, cert, &SIDECAR_TCP_ALPNS),
            b"ping\n",
        )
    }

    fn log(&self) -> String {
        self.envoy.output.lines().join("\n")
    }
}

#[test]
fn validate_accepts_the_generated_config_for_every_mode() {
    let modes = [MtlsMode::Strict, MtlsMode::Permissive, MtlsMode::Disable];
    let ca = MeshCa::new("cluster.local").unwrap();
    let up: SocketAddr = "127.0.0.1:1".parse().unwrap();
    for (i, &h) in modes.iter().enumerate() {
        for &t in &modes {
            let dir = tempfile::tempdir().unwrap();
            let mut spec = spec_for(dir.path(), &ca, (h, t), (up, up));
            // Alternate the listener options too.
            spec.proxy_protocol = i % 2 == 0;
            spec.bind_app_ports = i % 2 == 1;
            spec.port = 15006;
            let boot = Bootstrap::sidecar(
                "server",
                "server-ns",
                vec![inbound_listener(&spec).unwrap()],
                inbound_clusters(&spec),
            );
            let v = validate(&boot.write(dir.path()).unwrap()).unwrap();
            assert!(v.ok, "{h}/{t} static: {}", v.output);
            let boot = boot.dynamic(dir.path()).unwrap();
            let v = validate(&boot.write(dir.path()).unwrap()).unwrap();
            assert!(v.ok, "{h}/{t} file-based LDS/CDS: {}", v.output);
        }
    }
    // The check can fail: a filter chain match field Envoy does not know.
    let dir = tempfile::tempdir().unwrap();
    let spec = spec_for(
        dir.path(),
        &ca,
        (MtlsMode::Strict, MtlsMode::Strict),
        (up, up),
    );
    let mut l = inbound_listener(&spec).unwrap();
    l["filter_chains"][0]["filter_chain_match"]["no_such_field"] = json!(1);
    let boot = Bootstrap::sidecar("server", "server-ns", vec![l], inbound_clusters(&spec));
    assert!(!validate(&boot.write(dir.path()).unwrap()).unwrap().ok);
}

#[test]
fn strict_refuses_plaintext_and_accepts_mtls() {
    let s = Sidecar::start(MtlsMode::Strict, MtlsMode::Strict);
    let plain = s.get(None, "/hello");
    assert!(plain.is_err(), "plain text into STRICT answered: {plain:?}");
    let r = s.get(Some(&s.good), "/hello").unwrap();
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "web /hello"),
        "{}",
        s.log()
    );
    assert_eq!(r.header("server"), Some("istio-envoy"));
    // The app saw the client cert header (APPEND_FORWARD + URI) with the client's id.
    let xfcc = r.header("x-app-saw-xfcc").unwrap_or_default();
    assert!(
        xfcc.contains("URI=spiffe://cluster.local/ns/client-ns/sa/client"),
        "{xfcc:?}"
    );
    assert!(matches!(s.tcp(None), TcpOutcome::Closed(_)));
    assert_eq!(s.tcp(Some(&s.good)), TcpOutcome::Data(b"ping\n".to_vec()));
}

#[test]
fn strict_requires_a_client_certificate_from_the_mesh_ca() {
    let s = Sidecar::start(MtlsMode::Strict, MtlsMode::Strict);
    let server_ca = s.good.ca_der.clone();
    // TLS with Istio's ALPN but no client certificate.
    let anonymous = ClientTls::custom(None, &server_ca, &SIDECAR_HTTP11_ALPNS).unwrap();
    let dial = |tls| Dial {
        tls: Some(tls),
        ..s.dial(HTTP_PORT, None, &[])
    };
    let r = http_request(s.listener, &dial(anonymous), "GET", "/", "web", &[]);
    assert!(r.is_err(), "no client certificate, yet: {r:?}");
    // A certificate with the right SPIFFE id from another CA.
    let rogue = MeshCa::new("cluster.local").unwrap();
    let forged = rogue.issue("client-ns", "client").unwrap();
    let forged = ClientTls::custom(Some(&forged), &server_ca, &SIDECAR_HTTP11_ALPNS).unwrap();
    let r = http_request(s.listener, &dial(forged), "GET", "/", "web", &[]);
    assert!(r.is_err(), "foreign CA accepted: {r:?}");
    // The same client with the mesh CA's certificate gets through.
    assert_eq!(s.get(Some(&s.good), "/").unwrap().status, 200);
}

#[test]
fn permissive_accepts_plaintext_and_mtls() {
    let s = Sidecar::start(MtlsMode::Permissive, MtlsMode::Permissive);
    assert_eq!(s.get(None, "/a").unwrap().status, 200, "{}", s.log());
    assert_eq!(s.get(Some(&s.good), "/b").unwrap().body, "web /b");
    assert_eq!(s.tcp(None), TcpOutcome::Data(b"ping\n".to_vec()));
    assert_eq!(s.tcp(Some(&s.good)), TcpOutcome::Data(b"ping\n".to_vec()));
    // TLS without Istio's ALPN values is not mesh mTLS: no HTTP chain takes it.
    let dial = s.dial(HTTP_PORT, Some(&s.good), &["http/1.1"]);
    assert!(http_request(s.listener, &dial, "GET", "/", "web", &[]).is_err());
}

#[test]
fn disable_accepts_plaintext_only() {
    let s = Sidecar::start(MtlsMode::Disable, MtlsMode::Disable);
    assert_eq!(s.get(None, "/x").unwrap().body, "web /x", "{}", s.log());
    assert!(s.get(Some(&s.good), "/x").is_err());
    assert_eq!(s.tcp(None), TcpOutcome::Data(b"ping\n".to_vec()));
    assert!(matches!(s.tcp(Some(&s.good)), TcpOutcome::Closed(_)));
}

#[test]
fn deny_on_a_principal_denies_only_that_identity() {
    let s = Sidecar::start(MtlsMode::Strict, MtlsMode::Strict);
    let r = s.get(Some(&s.bad), "/admin").unwrap();
    assert_eq!((r.status, r.body.as_str()), (403, "RBAC: access denied"));
    let r = s.get(Some(&s.good), "/admin").unwrap();
    assert_eq!(r.status, 200);
    let want = format!("enforced denied, matched policy {DENY_POLICY}");
    let line = s.envoy.output.wait_for(WAIT_LIMIT, |l| l.contains(&want));
    let line = line.unwrap_or_else(|| panic!("no `{want}` in Envoy's log:\n{}", s.log()));
    // Istio's log layout: TIME<TAB>LEVEL<TAB>envoy rbac ...<TAB>MESSAGE<TAB>thread=N.
    assert_eq!(line.split('\t').nth(1), Some("debug"), "{line:?}");
    assert!(
        line.split('\t').nth(2).unwrap().starts_with("envoy rbac "),
        "{line:?}"
    );
}

#[test]
fn network_rbac_deny_closes_the_tcp_connection() {
    let s = Sidecar::start(MtlsMode::Permissive, MtlsMode::Permissive);
    assert!(
        matches!(s.tcp(Some(&s.bad)), TcpOutcome::Closed(_)),
        "{}",
        s.log()
    );
    assert_eq!(s.tcp(Some(&s.good)), TcpOutcome::Data(b"ping\n".to_vec()));
    // Plain text has no principal: the namespace DENY does not match.
    assert_eq!(s.tcp(None), TcpOutcome::Data(b"ping\n".to_vec()));
    let want = format!("enforced denied, matched policy {TCP_DENY_POLICY}");
    assert!(
        s.envoy
            .output
            .wait_for(WAIT_LIMIT, |l| l.contains(&want))
            .is_some(),
        "{}",
        s.log()
    );
}

fn parse_access(line: &str) -> meshpolicy::envoy::AccessLogEntry {
    match classify_line(line.as_bytes(), Scope::All) {
        LogLine::AccessLog(e) => *e,
        other => panic!("not an access log line: {line:?} -> {other:?}"),
    }
}

#[test]
fn access_log_lines_use_istios_text_format() {
    let s = Sidecar::start(MtlsMode::Strict, MtlsMode::Permissive);
    assert_eq!(s.get(Some(&s.good), "/ok?q=1").unwrap().status, 200);
    assert_eq!(s.get(Some(&s.bad), "/no").unwrap().status, 403);
    assert!(matches!(s.tcp(Some(&s.bad)), TcpOutcome::Closed(_)));
    assert!(s.get(None, "/plain").is_err());

    let ok = wait_for_file_line(&s.access_log, WAIT_LIMIT, |l| l.contains("\"GET /ok?q=1 "))
        .unwrap_or_else(|| panic!("no access line for /ok; log:\n{}", s.log()));
    let e = parse_access(&ok);
    assert_eq!(e.response_code, Some(200));
    assert_eq!(e.method.as_deref(), Some("GET"));
    assert_eq!(e.upstream_cluster.as_deref(), Some("inbound|8080||"));
    assert_eq!(e.verdict, AccessVerdict::NotRbac);
    // The PROXY header's addresses are what Envoy saw.
    assert_eq!(
        e.downstream_remote_address.as_deref(),
        Some("10.1.0.7:41000")
    );
    assert_eq!(e.downstream_local_address.as_deref(), Some("10.1.0.9:8080"));

    let denied = wait_for_file_line(&s.access_log, WAIT_LIMIT, |l| l.contains("\"GET /no "))
        .expect("access line for the denied request");
    let e = parse_access(&denied);
    assert_eq!(e.response_code, Some(403));
    assert_eq!(
        e.response_code_details.as_deref(),
        Some(format!("rbac_access_denied_matched_policy[{DENY_POLICY}]").as_str())
    );
    assert!(
        matches!(e.verdict, AccessVerdict::RbacDenied { .. }),
        "{:?}",
        e.verdict
    );

    let tcp = wait_for_file_line(&s.access_log, WAIT_LIMIT, |l| {
        l.contains(&format!(
            "rbac_access_denied_matched_policy[{TCP_DENY_POLICY}]"
        ))
    })
    .expect("access line for the denied TCP connection");
    let e = parse_access(&tcp);
    assert_eq!(e.response_code, Some(0));
    assert!(
        matches!(e.verdict, AccessVerdict::RbacDenied { .. }),
        "{:?}",
        e.verdict
    );

    // Plain text into STRICT: no filter chain, logged by the listener itself.
    let nr = wait_for_file_line(&s.access_log, WAIT_LIMIT, |l| {
        l.contains("filter_chain_not_found")
    });
    let nr = nr.unwrap_or_else(|| {
        let file = std::fs::read_to_string(&s.access_log).unwrap_or_default();
        panic!("no listener access line; file:\n{file}")
    });
    let e = parse_access(&nr);
    assert_eq!(e.response_flags, "NR");
    assert_eq!(e.verdict, AccessVerdict::NotRbac);
}

/// A port for Envoy to bind: taken from the OS, released, then bound by Envoy.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn app_ports_bound_directly_without_proxy_protocol() {
    // Two distinct ports: hold both before releasing them.
    let (a, b) = (
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
    );
    let ports = [
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    ];
    drop((a, b));
    let mut ports = ports.into_iter();
    let mut free = move || ports.next().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = MeshCa::new("cluster.local").unwrap();
    let web = App::start("web", AppKind::Http).unwrap();
    let tls = ca
        .issue("server-ns", "server")
        .unwrap()
        .write(dir.path(), "server")
        .unwrap();
    let mut spec = InboundSpec::new("127.0.0.1".parse().unwrap(), free(), tls);
    let app_port = free();
    spec.bind_app_ports = true;
    spec.ports = vec![InboundPort {
        port: app_port,
        protocol: AppProtocol::Http,
        mtls: MtlsMode::Strict,
        upstream: web.addr,
    }];
    let boot = Bootstrap::sidecar(
        "server",
        "server-ns",
        vec![inbound_listener(&spec).unwrap()],
        inbound_clusters(&spec),
    )
    .dynamic(dir.path())
    .unwrap();
    let envoy = Envoy::start(dir.path(), &boot, &EnvoyOptions::default()).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], app_port));
    let plain = Dial::default();
    assert!(http_request(addr, &plain, "GET", "/", "web", &[]).is_err());
    let client = ca.issue("client-ns", "client").unwrap();
    let mtls = Dial {
        tls: Some(ClientTls::new(&client, &SIDECAR_HTTP11_ALPNS).unwrap()),
        proxy: None,
        bind: None,
    };
    let r = http_request(addr, &mtls, "GET", "/direct", "web", &[]);
    let r = r.unwrap_or_else(|e| panic!("{e}; envoy:\n{}", envoy.output.lines().join("\n")));
    assert_eq!(r.body, "web /direct");
    drop(envoy);
}

#[test]
fn file_based_lds_update_changes_the_mode_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let ca = MeshCa::new("cluster.local").unwrap();
    let web = App::start("web", AppKind::Http).unwrap();
    let tls = ca
        .issue("server-ns", "server")
        .unwrap()
        .write(dir.path(), "server")
        .unwrap();
    let mut spec = InboundSpec::new("127.0.0.1".parse().unwrap(), free_port(), tls);
    spec.ports = vec![InboundPort {
        port: spec.port,
        protocol: AppProtocol::Http,
        mtls: MtlsMode::Strict,
        upstream: web.addr,
    }];
    let boot = Bootstrap::sidecar(
        "server",
        "server-ns",
        vec![inbound_listener(&spec).unwrap()],
        inbound_clusters(&spec),
    )
    .dynamic(dir.path())
    .unwrap();
    let envoy = Envoy::start(dir.path(), &boot, &EnvoyOptions::default()).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], spec.port));
    assert!(http_request(addr, &Dial::default(), "GET", "/", "web", &[]).is_err());

    spec.ports[0].mtls = MtlsMode::Permissive;
    envoy
        .replace_listeners(&boot, &[inbound_listener(&spec).unwrap()])
        .unwrap();
    let r = http_request(addr, &Dial::default(), "GET", "/now", "web", &[]);
    let r = r.unwrap_or_else(|e| panic!("{e}; envoy:\n{}", envoy.output.lines().join("\n")));
    assert_eq!(r.body, "web /now");
}

#[test]
fn allow_on_an_authenticated_principal_as_istios_sidecar_builder_writes_it() {
    // Istio's builder (sidecar) matches principals on the peer certificate
    // (`authenticated.principal_name`), as in its goldens; no policy matched
    // under ALLOW denies with policy `none`.
    let allow = json!({
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {"policies": {"ns[server-ns]-policy[allow-client]-rule[0]": {
                "permissions": [{"and_rules": {"rules": [{"any": true}]}}],
                "principals": [{"and_ids": {"ids": [{"or_ids": {"ids": [{"authenticated": {
                    "principal_name": {"safe_regex": {"regex": "spiffe://.+/ns/client-ns/(.+/|)sa/client(/.+)?"}}
                }}]}}]}}]
            }}},
            "shadow_rules_stat_prefix": "istio_dry_run_allow_"
        }
    });
    let s = Sidecar::start_with(
        MtlsMode::Permissive,
        MtlsMode::Permissive,
        Some(vec![allow]),
    );
    assert_eq!(
        s.get(Some(&s.good), "/").unwrap().status,
        200,
        "{}",
        s.log()
    );
    let r = s.get(Some(&s.bad), "/").unwrap();
    assert_eq!((r.status, r.body.as_str()), (403, "RBAC: access denied"));
    // Plain text has no principal at all.
    assert_eq!(s.get(None, "/").unwrap().status, 403);
    assert!(
        s.envoy
            .output
            .wait_for(WAIT_LIMIT, |l| l
                .contains("enforced denied, matched policy none"))
            .is_some(),
        "{}",
        s.log()
    );
}

/// PeerAuthentication sets, composed by meshpolicy into the listener's modes,
/// and meshpolicy's prediction of each client's fate checked against what
/// real Envoy does with the traffic that client would send. (What the client
/// sends, auto mTLS, is the prediction's own input here: Envoy checks the
/// server side only.)
#[test]
fn peerauth_predictions_match_real_envoy() {
    use meshpolicy::peerauth::{
        Addressed, ClientTransport, Destination, PeerAuthentication, effective_mode, predict,
    };
    const ROOT: &str = "istio-system";
    let pa = |ns: &str, name: &str, spec: Value| {
        PeerAuthentication::from_value(
            &json!({"metadata": {"name": name, "namespace": ns}, "spec": spec}),
            "default",
        )
        .unwrap()
    };
    let sel = json!({"matchLabels": {"app": "web"}});
    let scenarios: Vec<(&str, Vec<PeerAuthentication>)> = vec![
        ("none", vec![]),
        (
            "ns strict",
            vec![pa("server-ns", "d", json!({"mtls": {"mode": "STRICT"}}))],
        ),
        (
            "ns disable",
            vec![pa("server-ns", "d", json!({"mtls": {"mode": "DISABLE"}}))],
        ),
        (
            "workload disable",
            vec![pa(
                "server-ns",
                "w",
                json!({"selector": sel, "mtls": {"mode": "DISABLE"}}),
            )],
        ),
        (
            "workload strict under ns disable",
            vec![
                pa("server-ns", "d", json!({"mtls": {"mode": "DISABLE"}})),
                pa(
                    "server-ns",
                    "w",
                    json!({"selector": sel, "mtls": {"mode": "STRICT"}}),
                ),
            ],
        ),
        (
            "mesh strict, 9000 permissive",
            vec![
                pa(ROOT, "mesh", json!({"mtls": {"mode": "STRICT"}})),
                pa(
                    "server-ns",
                    "w",
                    json!({"selector": sel, "portLevelMtls": {"9000": {"mode": "PERMISSIVE"}}}),
                ),
            ],
        ),
    ];
    let labels = std::collections::BTreeMap::from([("app".to_string(), "web".to_string())]);
    let (mut checked, mut refused) = (0, 0);
    for (name, policies) in &scenarios {
        let mode = |port| effective_mode(policies, "server-ns", &labels, port, ROOT).mode;
        let s = Sidecar::start(mode(HTTP_PORT), mode(TCP_PORT));
        for client_sidecar in [false, true] {
            for port in [HTTP_PORT, TCP_PORT] {
                let dest = Destination {
                    namespace: "server-ns",
                    labels: &labels,
                    has_sidecar: true,
                    port,
                };
                let p = predict(policies, client_sidecar, dest, Addressed::Service, ROOT);
                let cert = (p.client_sends == ClientTransport::Mtls).then_some(&s.good);
                let passed = if port == HTTP_PORT {
                    s.get(cert, "/").is_ok_and(|r| r.status == 200)
                } else {
                    s.tcp(cert) == TcpOutcome::Data(b"ping\n".to_vec())
                };
                assert_eq!(
                    passed,
                    !p.outcome.is_failure(),
                    "{name}: client sidecar {client_sidecar}, port {port}: predicted {p:?}"
                );
                checked += 1;
                refused += usize::from(!passed);
            }
        }
    }
    assert_eq!(checked, scenarios.len() * 4);
    // Both kinds of outcome were exercised (9 of the 24 are refusals).
    assert_eq!(refused, 9, "{refused} of {checked} refused");
}
