//! The mesh in process: one test per curl outcome class, the log lines the
//! destination's real Envoy writes (parsed back with meshpolicy's readers),
//! log levels from annotations, the access log switch and propagation delay
//! (observed by moving the mesh's clock, never by timing). Requests a
//! sidecar decides go through [`Mesh::send_request`]; [`Mesh::evaluate`]
//! tells which layer (before the sidecar) decided.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use meshpolicy::envoy::{AccessVerdict, LogLine, Scope, classify_line};
use meshsim::mesh::{DecidingLayer, Mesh};
use meshsim::traffic::{Container, NetOutcome, NetRequest, Network};
use meshsim::{Config, Handle, Server};
use serde_json::json;

fn scenario() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mesh_scenarios/outcomes.yaml")
}

async fn start(propagation_delay: Duration) -> Handle {
    let h = Server::start(Config {
        scenarios: vec![scenario()],
        time_scale: 0.01,
        ready_delay: Duration::from_millis(100),
        propagation_delay,
        ..Config::default()
    })
    .await
    .expect("server starts");
    // Bounded wait for the scenario's pods, not a timed assertion.
    for _ in 0..400 {
        let ready = h.cluster.with_store(|s| {
            s.list(meshsim::store::resources::PODS, None).all(|p| {
                p["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
        });
        if ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h
}

fn mesh(h: &Handle) -> Arc<Mesh> {
    h.cluster.mesh().expect("mesh installed").clone()
}

fn from(ns: &str, pod: &str) -> Container {
    Container {
        namespace: ns.into(),
        pod: pod.into(),
        container: "client".into(),
        image: "curlimages/curl:8.5.0".into(),
        tools: vec!["curl".into()],
    }
}

fn req(method: &str, host: &str) -> NetRequest {
    NetRequest {
        method: method.into(),
        scheme: "http".into(),
        host: host.into(),
        port: 80,
        path: "/".into(),
        headers: vec![
            ("Host".into(), host.into()),
            ("User-Agent".into(), "curl/7.88.1".into()),
            ("Accept".into(), "*/*".into()),
        ],
        body: None,
    }
}

fn http(o: &NetOutcome) -> (u16, String, Duration) {
    match o {
        NetOutcome::Http {
            status,
            body,
            after,
            ..
        } => (*status, String::from_utf8_lossy(body).into_owned(), *after),
        other => panic!("expected an HTTP answer, got {other:?}"),
    }
}

fn header<'a>(o: &'a NetOutcome, name: &str) -> Option<&'a str> {
    match o {
        NetOutcome::Http { headers, .. } => headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_class() {
    let h = start(Duration::from_secs(2)).await;
    let m = mesh(&h);
    let plain = from("mesh-plain", "client-plain");
    let side = from("mesh-a", "client-sidecar");

    // DNS failure, in every spelling that does not exist.
    for host in [
        "nosuch",
        "svc-web",
        "svc-web.nosuch",
        "svc-web.mesh-a.svc.cluster.nope",
    ] {
        assert!(
            matches!(
                m.send_request(&plain, &req("GET", host)).await,
                NetOutcome::DnsFailure
            ),
            "{host}"
        );
    }

    // Application answer (through the destination sidecar), every name form.
    for (f, host) in [
        (&plain, "svc-web.mesh-a"),
        (&plain, "svc-web.mesh-a.svc"),
        (&plain, "svc-web.mesh-a.svc.cluster.local"),
        (&side, "svc-web"),
    ] {
        let v = m.evaluate(f, &req("GET", host)).unwrap();
        assert_eq!(v.layer, DecidingLayer::Envoy, "{host}: {}", v.reason);
        let out = m.send_request(f, &req("GET", host)).await;
        let (status, body, after) = http(&out);
        assert_eq!((status, body.as_str()), (200, "hello from web"));
        assert_eq!(after, Duration::from_millis(20), "meshsim.dev/latency");
        assert_eq!(header(&out, "server"), Some("istio-envoy"));
    }
    // The service IP and the pod IP resolve too.
    let (svc_ip, pod_ip) = h.cluster.with_store(|s| {
        (
            s.get(meshsim::store::resources::SERVICES, "mesh-a", "svc-web")
                .unwrap()["spec"]["clusterIP"]
                .as_str()
                .unwrap()
                .to_string(),
            s.get(meshsim::store::resources::PODS, "mesh-a", "web")
                .unwrap()["status"]["podIP"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    });
    assert_eq!(
        m.resolve(&plain, "svc-web.mesh-a").as_deref(),
        Some(svc_ip.as_str())
    );
    assert_eq!(
        http(&m.send_request(&plain, &req("GET", &svc_ip)).await).0,
        200
    );
    let mut direct = req("GET", &pod_ip);
    direct.port = 8080;
    assert_eq!(http(&m.send_request(&plain, &direct).await).0, 200);

    // 403 from the destination's RBAC filter, with or without a client sidecar.
    for f in [&plain, &side] {
        let out = m.send_request(f, &req("GET", "svc-denied.mesh-a")).await;
        let (status, body, _) = http(&out);
        assert_eq!((status, body.as_str()), (403, "RBAC: access denied"));
        assert_eq!(header(&out, "content-length"), Some("19"));
        assert_eq!(header(&out, "content-type"), Some("text/plain"));
        assert_eq!(header(&out, "server"), Some("istio-envoy"));
    }
    // The DENY rule only matches GET.
    let out = m
        .send_request(&side, &req("POST", "svc-denied.mesh-a"))
        .await;
    assert_eq!(http(&out).0, 200);

    // mTLS STRICT: plain text is reset; the sidecar client gets through.
    let out = m
        .send_request(&plain, &req("GET", "svc-strict.mesh-a"))
        .await;
    assert!(matches!(out, NetOutcome::Reset { .. }), "{out:?}");
    let out = m.send_request(&side, &req("GET", "svc-strict")).await;
    assert_eq!(
        http(&out),
        (200, "hello from strict".into(), Duration::ZERO)
    );

    // Nothing listening: refused, or the client sidecar's 503.
    let v = m.evaluate(&plain, &req("GET", "svc-closed")).unwrap();
    assert!(matches!(v.outcome, NetOutcome::Refused { .. }), "{v:?}");
    let v = m
        .evaluate(&side, &req("GET", "svc-closed.mesh-plain"))
        .unwrap();
    let (status, body, _) = http(&v.outcome);
    assert_eq!(status, 503);
    assert!(body.starts_with("upstream connect error or disconnect/reset before headers. reset reason: connection failure"), "{body}");

    // NetworkPolicy drop: the plain client times out; the sidecar answers 503 after 10 s.
    let v = m.evaluate(&plain, &req("GET", "svc-blocked")).unwrap();
    assert!(matches!(v.outcome, NetOutcome::ConnectTimeout), "{v:?}");
    assert_eq!(v.layer, DecidingLayer::NetworkPolicy);
    let v = m
        .evaluate(&side, &req("GET", "svc-blocked.mesh-plain"))
        .unwrap();
    assert_eq!(
        http(&v.outcome),
        (
            503,
            "upstream connect error or disconnect/reset before headers. reset reason: connection timeout".into(),
            Duration::from_secs(10)
        )
    );
    let out = v.source.unwrap().access.unwrap();
    assert_eq!(out.response_flags, "UF,URX");

    // Unknown service port and a service without ready endpoints.
    let mut odd = req("GET", "svc-web.mesh-a");
    odd.port = 81;
    assert!(matches!(
        m.evaluate(&plain, &odd).unwrap().outcome,
        NetOutcome::ConnectTimeout
    ));
    h.cluster.with_store(|s| {
        let def = meshsim::store::resources::preferred(meshsim::store::resources::SERVICES);
        s.create(def, "mesh-a", json!({"metadata": {"name": "empty"}, "spec": {"selector": {"app": "none"}, "ports": [{"port": 80}]}}))
            .unwrap();
    });
    assert!(matches!(
        m.evaluate(&plain, &req("GET", "empty.mesh-a"))
            .unwrap()
            .outcome,
        NetOutcome::Refused { .. }
    ));
    let (status, body, _) = http(&m.send_request(&side, &req("GET", "empty")).await);
    assert_eq!((status, body.as_str()), (503, "no healthy upstream"));

    // localhost: the pod itself, no policy.
    let mut local = req("GET", "localhost");
    local.port = 8080;
    let v = m.evaluate(&from("mesh-a", "denied"), &local).unwrap();
    assert_eq!(v.layer, DecidingLayer::Application, "{}", v.reason);
    assert_eq!(
        http(&m.send_request(&from("mesh-a", "denied"), &local).await).0,
        200
    );
    h.shutdown().await;
}

fn proxy_log(h: &Handle, ns: &str, pod: &str) -> Vec<String> {
    h.cluster.logs().lines(ns, pod, "istio-proxy")
}

/// The pod's istio-proxy log once the lines after `before` satisfy `done`.
/// Envoy writes its log on its own threads and meshsim appends what Envoy
/// prints from another task, so a line can land just after the answer: this
/// waits for it (bounded at 10 s, not a timed assertion).
async fn logged(
    h: &Handle,
    (ns, pod): (&str, &str),
    before: usize,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let mut lines = proxy_log(h, ns, pod);
    for _ in 0..1000 {
        if done(&lines[before..]) {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        lines = proxy_log(h, ns, pod);
    }
    panic!(
        "{ns}/{pod}: expected lines not logged: {:#?}",
        &lines[before..]
    );
}

/// Whether `lines` hold an RBAC decision, a local reply and an access log line.
fn decision_reply_and_access(lines: &[String]) -> bool {
    let kinds: Vec<LogLine> = lines
        .iter()
        .map(|l| classify_line(l.as_bytes(), Scope::All))
        .collect();
    kinds.iter().any(|l| matches!(l, LogLine::RbacDecision(_)))
        && kinds.iter().any(|l| matches!(l, LogLine::LocalReply(_)))
        && kinds.iter().any(|l| matches!(l, LogLine::AccessLog(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_lines_local_reply_and_access_log() {
    let h = start(Duration::from_secs(2)).await;
    let m = mesh(&h);
    let side = from("mesh-a", "client-sidecar");
    let before = proxy_log(&h, "mesh-a", "denied").len();
    let out = m.send_request(&side, &req("GET", "svc-denied")).await;
    assert_eq!(http(&out).0, 403);
    let lines = logged(&h, ("mesh-a", "denied"), before, decision_reply_and_access).await;
    let new: Vec<LogLine> = lines[before..]
        .iter()
        .map(|l| classify_line(l.as_bytes(), Scope::All))
        .collect();
    let id = "ns[mesh-a]-policy[deny-get]-rule[0]";
    assert!(
        lines[before..].iter().any(|l| l
            .contains(&format!("enforced denied, matched policy {id}"))
            && l.contains("\tthread=")),
        "{lines:#?}"
    );
    let decision = new.iter().find_map(|l| match l {
        LogLine::RbacDecision(d) => Some(d.clone()),
        _ => None,
    });
    assert_eq!(decision.unwrap().policy.unwrap().raw, id);
    let reply = new.iter().find_map(|l| match l {
        LogLine::LocalReply(r) => Some(r.clone()),
        _ => None,
    });
    let reply = reply.expect("local reply line (logLevel debug)");
    assert_eq!(
        reply.details,
        format!("rbac_access_denied_matched_policy[{id}]")
    );
    assert!(reply.connection_id.is_some() && reply.stream_id.is_some());
    let access = new.iter().find_map(|l| match l {
        LogLine::AccessLog(a) => Some(a.clone()),
        _ => None,
    });
    let access = access.expect("server-side access log line");
    assert_eq!(access.response_code, Some(403));
    assert!(
        matches!(access.verdict, AccessVerdict::RbacDenied { .. }),
        "{access:?}"
    );
    assert_eq!(access.upstream_cluster.as_deref(), Some("inbound|8080||"));
    assert_eq!(
        access.requested_server_name.as_deref(),
        Some("outbound_.80_._.svc-denied.mesh-a.svc.cluster.local")
    );
    // The client's outbound line sees the 403 from upstream.
    let client = proxy_log(&h, "mesh-a", "client-sidecar");
    assert!(
        client.iter().any(|l| l.contains("\" 403 - via_upstream ")
            && l.contains("outbound|80||svc-denied.mesh-a.svc.cluster.local")),
        "{client:#?}"
    );

    // An allowed request logs the DENY filter's miss.
    let before = proxy_log(&h, "mesh-a", "denied").len();
    let _ = m.send_request(&side, &req("POST", "svc-denied")).await;
    let lines = logged(&h, ("mesh-a", "denied"), before, |new| {
        new.iter().any(|l| l.contains("enforced allowed"))
    })
    .await;
    assert!(
        lines[before..].iter().any(|l| l.ends_with(&format!(
            "enforced allowed, matched policy none\tthread={}",
            l.rsplit('=').next().unwrap()
        ))),
        "{:#?}",
        &lines[before..]
    );

    // Logger levels, changed through the real Envoy's admin: rbac back to
    // warning hides decisions but not the access log.
    let admin = m.admin_address("mesh-a", "denied").await.expect("admin");
    let r = meshsim::mesh::sidecar::admin_request(admin, "POST", "/logging?rbac=warning")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("\n  rbac: warning\n"));
    let before = proxy_log(&h, "mesh-a", "denied").len();
    let _ = m.send_request(&side, &req("GET", "svc-denied")).await;
    // The access log line comes after the request's RBAC lines, if any.
    let lines = logged(&h, ("mesh-a", "denied"), before, |new| {
        new.iter()
            .any(|l| l.starts_with('[') && l.contains("rbac_access_denied_matched_policy"))
    })
    .await;
    assert!(
        !lines[before..].iter().any(|l| l.contains("enforced")),
        "{:#?}",
        &lines[before..]
    );
    assert!(
        lines[before..]
            .iter()
            .any(|l| l.starts_with('[') && l.contains("rbac_access_denied_matched_policy"))
    );
    // The annotation's levels are what Envoy started with.
    let admin = m.admin_address("mesh-a", "web").await.expect("admin");
    let r = meshsim::mesh::sidecar::admin_request(admin, "POST", "/logging")
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&r.body).contains("\n  rbac: debug\n"));

    // Access logging off through the mesh config: no access line any more.
    h.cluster.with_store(|s| {
        let ns = meshsim::store::resources::preferred(meshsim::store::resources::NAMESPACES);
        let _ = s.create(ns, "", json!({"metadata": {"name": "istio-system"}}));
        let cm = meshsim::store::resources::preferred(meshsim::store::resources::CONFIGMAPS);
        s.create(
            cm,
            "istio-system",
            json!({"metadata": {"name": "istio"}, "data": {"mesh": "accessLogFile: \"\"\n"}}),
        )
        .unwrap();
    });
    let before = proxy_log(&h, "mesh-a", "web").len();
    assert_eq!(
        http(&m.send_request(&side, &req("GET", "svc-web")).await).0,
        200
    );
    let lines = proxy_log(&h, "mesh-a", "web");
    assert!(
        !lines[before..].iter().any(|l| l.starts_with('[')),
        "{:#?}",
        &lines[before..]
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propagation_delay_old_policy_until_the_sidecar_gets_the_new_one() {
    // One hour of simulated delay: nothing moves unless the test moves the clock.
    let h = start(Duration::from_secs(3600)).await;
    let m = mesh(&h);
    let plain = from("mesh-plain", "client-plain");
    assert!(m.sidecar_policies("mesh-a", "web").is_empty());
    assert_eq!(
        http(&m.send_request(&plain, &req("GET", "svc-web.mesh-a")).await).0,
        200
    );

    let ap = meshsim::store::resources::find("security.istio.io", "v1", "authorizationpolicies")
        .unwrap();
    h.cluster.with_store(|s| {
        s.create(ap, "mesh-a", json!({"metadata": {"name": "deny-web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "action": "DENY", "rules": [{}]}}))
            .unwrap();
    });
    assert!(m.settle(2000).await, "mesh observed the change");
    // Right after the write, the sidecar still decides with the old (empty) set.
    assert!(m.sidecar_policies("mesh-a", "web").is_empty());
    assert_eq!(
        http(&m.send_request(&plain, &req("GET", "svc-web.mesh-a")).await).0,
        200
    );
    // Once the delay has passed, the new policy decides.
    m.advance_clock(m.real_propagation_delay() + Duration::from_millis(1));
    let got: Vec<String> = m
        .sidecar_policies("mesh-a", "web")
        .iter()
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(got, vec!["deny-web".to_string()]);
    assert_eq!(
        http(&m.send_request(&plain, &req("GET", "svc-web.mesh-a")).await).0,
        403
    );
    // Other sidecars never receive it (selector).
    assert!(m.sidecar_policies("mesh-a", "strict").is_empty());

    // Deleting it: denied until the delay passes again.
    h.cluster.with_store(|s| {
        s.delete(ap, "mesh-a", "deny-web").unwrap();
    });
    assert!(m.settle(2000).await);
    assert_eq!(
        http(&m.send_request(&plain, &req("GET", "svc-web.mesh-a")).await).0,
        403
    );
    m.advance_clock(m.real_propagation_delay() + Duration::from_millis(1));
    assert_eq!(
        http(&m.send_request(&plain, &req("GET", "svc-web.mesh-a")).await).0,
        200
    );

    // NetworkPolicy is the CNI's: it applies at once.
    let np = meshsim::store::resources::find("networking.k8s.io", "v1", "networkpolicies").unwrap();
    h.cluster.with_store(|s| {
        s.create(np, "mesh-a", json!({"metadata": {"name": "deny-all"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}))
            .unwrap();
    });
    assert_eq!(
        m.evaluate(&plain, &req("GET", "svc-web.mesh-a"))
            .unwrap()
            .layer,
        DecidingLayer::NetworkPolicy
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_audit_custom_and_mtls_disable() {
    let h = start(Duration::from_secs(0)).await;
    let m = mesh(&h);
    let side = from("mesh-a", "client-sidecar");
    let ap = meshsim::store::resources::find("security.istio.io", "v1", "authorizationpolicies")
        .unwrap();
    h.cluster.with_store(|s| {
        for (name, spec) in [
            ("audit-all", json!({"selector": {"matchLabels": {"app": "web"}}, "action": "AUDIT", "rules": [{}]})),
            ("allow-nothing-dry", json!({"selector": {"matchLabels": {"app": "web"}}, "action": "ALLOW", "rules": [{"to": [{"operation": {"paths": ["/nope"]}}]}]})),
        ] {
            let mut obj = json!({"metadata": {"name": name}, "spec": spec});
            if name.ends_with("-dry") {
                obj["metadata"]["annotations"] = json!({"istio.io/dry-run": "true"});
            }
            s.create(ap, "mesh-a", obj).unwrap();
        }
    });
    assert!(m.settle(2000).await);
    // The dry-run ALLOW misses (shadow denied) but only logs; AUDIT logs its match.
    let before = proxy_log(&h, "mesh-a", "web").len();
    assert_eq!(
        http(&m.send_request(&side, &req("GET", "svc-web")).await).0,
        200
    );
    let decisions = |l: &&String| l.contains("\tenvoy rbac ") && !l.contains("checking request");
    let lines = logged(&h, ("mesh-a", "web"), before, |new| {
        new.iter().filter(decisions).count() >= 4
    })
    .await;
    let msgs: Vec<&str> = lines[before..]
        .iter()
        .filter(decisions)
        .map(|l| l.split('\t').nth(3).unwrap_or(""))
        .collect();
    assert_eq!(
        msgs,
        // Envoy 1.40's HTTP filter: each allowed decision is followed by
        // "allowed by default or by policy" ("no engine" is the TCP filter's).
        vec![
            "enforced allowed, matched policy ns[mesh-a]-policy[audit-all]-rule[0]",
            "allowed by default or by policy",
            "shadow denied, matched policy none",
            "allowed by default or by policy",
        ]
    );

    // CUSTOM naming a provider the mesh config does not have: istiod builds
    // DENY rules instead of ext_authz (builder.go, `getBadCustomDenyRules`),
    // so the request is denied by RBAC under the bad-CUSTOM id.
    h.cluster.with_store(|s| {
        s.create(ap, "mesh-a", json!({"metadata": {"name": "ext"}, "spec": {"selector": {"matchLabels": {"app": "strict"}}, "action": "CUSTOM", "provider": {"name": "opa"}, "rules": [{}]}}))
            .unwrap();
    });
    assert!(m.settle(2000).await);
    let before = proxy_log(&h, "mesh-a", "strict").len();
    let out = m.send_request(&side, &req("GET", "svc-strict")).await;
    assert_eq!(http(&out).0, 403);
    let lines = logged(&h, ("mesh-a", "strict"), before, |new| {
        new.iter().any(|l| {
            matches!(
                classify_line(l.as_bytes(), Scope::All),
                LogLine::AccessLog(_)
            )
        })
    })
    .await;
    let access = lines[before..]
        .iter()
        .find_map(|l| match classify_line(l.as_bytes(), Scope::All) {
            LogLine::AccessLog(a) => Some(a),
            _ => None,
        })
        .expect("access log line");
    assert!(
        matches!(&access.verdict, AccessVerdict::RbacDenied { policy, .. }
            if policy.raw == "istio-ext-authz-opa-ns[mesh-a]-policy[ext]-rule[0]-deny-due-to-bad-CUSTOM-action"),
        "{access:?}"
    );

    // PeerAuthentication DISABLE: the client sidecar's mTLS handshake is cut (503 connection termination).
    let pa =
        meshsim::store::resources::find("security.istio.io", "v1", "peerauthentications").unwrap();
    h.cluster.with_store(|s| {
        s.create(pa, "mesh-a", json!({"metadata": {"name": "web-plain"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "mtls": {"mode": "DISABLE"}}}))
            .unwrap();
    });
    assert!(m.settle(2000).await);
    let (status, body, _) = http(&m.send_request(&side, &req("GET", "svc-web")).await);
    assert_eq!(status, 503);
    assert!(
        body.ends_with("reset reason: connection termination"),
        "{body}"
    );
    // A plain-text client is fine with DISABLE.
    let out = m
        .send_request(
            &from("mesh-plain", "client-plain"),
            &req("GET", "svc-web.mesh-a"),
        )
        .await;
    assert_eq!(http(&out).0, 200);
    h.shutdown().await;
}
