//! `--file` on every layout rbaclog reads, with lines made from the formats'
//! definitions (Istio's TEXT and JSON access log formats, Envoy's and Istio's log
//! layouts, ztunnel's access fields), one decision each.

use kubectl_rbaclog::files::read_stream;
use kubectl_rbaclog::filter::{DecisionFilter, Filters};
use kubectl_rbaclog::pairing::Stats;
use kubectl_rbaclog::record::{
    Action, DecisionRecord, EngineKind, FilterName, Origin, RbacOutcome,
};

fn read(text: &str) -> (Vec<DecisionRecord>, Stats) {
    let mut out = Vec::new();
    let filters = Filters {
        decision: DecisionFilter::All,
        ..Filters::default()
    };
    let stats = read_stream(text.as_bytes(), "x.log", &filters, &mut |d| out.push(d)).unwrap();
    (out, stats)
}

const ID: &str = "ns[foo]-policy[deny-path-headers]-rule[0]";

/// Istio's default TEXT access log line (the format string in meshpolicy's access_log).
fn text_access(
    time: &str,
    method: &str,
    path: &str,
    code: u16,
    flags: &str,
    details: &str,
    rid: &str,
) -> String {
    format!(
        "[{time}] \"{method} {path} HTTP/1.1\" {code} {flags} {details} - \"-\" 0 19 1 - \"-\" \"curl/8.5.0\" \"{rid}\" \"httpbin.foo:8000\" \"-\" inbound|80|| - 10.244.0.9:80 10.244.0.7:51234 outbound_.8000_._.httpbin.foo.svc.cluster.local default"
    )
}

#[test]
fn bare_messages_and_spaces_for_tabs() {
    let text = format!(
        "shadow denied, matched policy {ID}\nenforced denied, matched policy none\n2021-04-23T20:43:18.552910Z     debug    envoy rbac   enforced denied, matched policy {ID}\n"
    );
    let (out, stats) = read(&text);
    assert_eq!(out.len(), 3, "{out:#?}");
    assert_eq!(stats.foreign, 0);
    assert_eq!(out[0].engine, EngineKind::Shadow);
    assert_eq!(out[0].policy_label(), "foo/deny-path-headers");
    assert_eq!(out[1].because.as_deref(), Some("no ALLOW rule matched"));
    assert_eq!(out[2].time.as_deref(), Some("2021-04-23T20:43:18.552910Z"));
}

#[test]
fn epoch_prefix_and_older_local_reply_pair_into_one_request() {
    let text = format!(
        "[Envoy (Epoch 0)] [2019-11-05 09:12:44.123][27][debug][rbac] [external/envoy/source/extensions/filters/http/rbac/rbac_filter.cc:114] enforced denied, matched policy {ID}\n\
         [Envoy (Epoch 0)] [2019-11-05 09:12:44.124][27][debug][http] [external/envoy/source/common/http/conn_manager_impl.cc:1409] [C747][S3780791924704176796] Sending local reply with details rbac_access_denied_matched_policy[{ID}]\n\
         [2019-11-05 09:13:00.000][28][debug][rbac] [external/envoy/source/extensions/filters/http/rbac/rbac_filter.cc:114] enforced denied\n\
         [2019-11-05 09:13:00.001][28][debug][http] [external/envoy/source/common/http/conn_manager_impl.cc:1409] [C748][S1] Sending local reply with details rbac_access_denied\n"
    );
    let (out, _) = read(&text);
    assert_eq!(out.len(), 2, "{out:#?}");
    assert_eq!(
        out[0].origins(),
        vec![Origin::RbacDebug, Origin::LocalReply]
    );
    assert_eq!(out[0].connection_id, Some(747));
    assert_eq!(out[0].stream_id, Some(3_780_791_924_704_176_796));
    assert_eq!(out[0].time.as_deref(), Some("2019-11-05 09:12:44.123"));
    assert_eq!(out[0].time_zone, Some("unknown"));
    assert_eq!(
        out[1].origins(),
        vec![Origin::RbacDebug, Origin::LocalReply]
    );
    assert_eq!(out[1].connection_id, Some(748));
    let json = serde_json::to_value(&out[0]).unwrap();
    assert_eq!(json["time_zone"], "unknown");
}

#[test]
fn custom_denials_in_text_and_json_access_logs() {
    let json = serde_json::json!({
        "start_time": "2025-01-01T10:00:01.000Z", "method": "GET", "path": "/headers",
        "protocol": "HTTP/1.1", "response_code": 401, "response_flags": "UAEX",
        "response_code_details": "ext_authz_error", "connection_termination_details": null,
        "upstream_transport_failure_reason": null, "bytes_received": 0, "bytes_sent": 0,
        "duration": 2, "upstream_service_time": null, "x_forwarded_for": null,
        "user_agent": "curl/8.5.0", "request_id": "r-2", "authority": "httpbin.foo:8000",
        "upstream_host": null, "upstream_cluster": "inbound|80||", "upstream_local_address": null,
        "downstream_local_address": "10.244.0.9:80", "downstream_remote_address": "10.244.0.7:40000",
        "requested_server_name": null, "route_name": "default"
    });
    let text = format!(
        "{}\n{}\n{}\n",
        text_access(
            "2025-01-01T10:00:00.000Z",
            "GET",
            "/admin",
            403,
            "UAEX",
            "ext_authz_denied",
            "r-1"
        ),
        serde_json::to_string(&json).unwrap(),
        serde_json::to_string_pretty(&json)
            .unwrap()
            .replace("r-2", "r-3"),
    );
    let (out, stats) = read(&text);
    assert_eq!(out.len(), 3, "{out:#?}");
    assert_eq!(stats.foreign, 0, "{stats:?}");
    for (d, details, code) in [
        (&out[0], "ext_authz_denied", 403),
        (&out[1], "ext_authz_error", 401),
        (&out[2], "ext_authz_error", 401),
    ] {
        assert_eq!(d.action, Some(Action::Custom));
        assert_eq!(d.engine, EngineKind::Enforced);
        assert_eq!(d.decision, RbacOutcome::Denied);
        assert_eq!(d.filter, Some(FilterName::ExtAuthz));
        assert_eq!(d.details.as_deref(), Some(details));
        assert_eq!(d.request.as_ref().unwrap().response_code, Some(code));
        assert_eq!(d.decision_label(), "denied (CUSTOM)");
    }
    assert_eq!(out[2].request_id.as_deref(), Some("r-3"));
}

#[test]
fn a_custom_trigger_is_not_a_dry_run() {
    let text = "2025-01-01T10:00:00.000000Z\tdebug\tenvoy rbac external/envoy/source/extensions/filters/http/rbac/rbac_filter.cc:176\tshadow denied, matched policy istio-ext-authz-ns[foo]-policy[ext-authz]-rule[0]\tthread=20\n\
2025-01-01T10:00:01.000000Z\tdebug\tenvoy rbac\tshadow denied, matched policy istio-ext-authz-opa-ns[foo]-policy[ext-authz]-rule[0]\tthread=20\n";
    let (out, _) = read(text);
    assert_eq!(out.len(), 2);
    for d in &out {
        assert_eq!(d.action, Some(Action::Custom));
        assert_eq!(d.decision_label(), "sent to ext_authz");
    }
    assert_eq!(
        out[1].policy.as_ref().unwrap().provider.as_deref(),
        Some("opa")
    );
    assert_eq!(out[1].policy_label(), "foo/ext-authz (ext_authz opa)");
}

#[test]
fn ztunnel_rejections() {
    let fields = "src.addr=10.244.1.5:43210 src.workload=sleep-7d5b src.namespace=foo src.identity=\"spiffe://cluster.local/ns/foo/sa/sleep\" dst.addr=10.244.2.7:15008 dst.hbone_addr=10.244.2.7:80 dst.service=httpbin.foo.svc.cluster.local dst.workload=httpbin-5c6d dst.namespace=foo direction=\"inbound\" bytes_sent=0 bytes_recv=0 duration=\"0ms\"";
    let text = format!(
        "2024-06-10T10:00:00.123456Z\terror\taccess\tconnection complete\t{fields} error=\"connection closed due to policy rejection: allow policies exist, but none allowed\"\n\
         2024-06-10T10:00:01Z  error  access  connection complete  {fields} error=\"connection closed due to policy rejection: explicitly denied by: foo/deny-sleep\"\n\
         error access connection complete {fields} error=\"connection closed due to policy rejection: explicitly denied by: foo/deny-sleep\"\n\
         2023-03-01T10:00:00.000000Z  INFO outbound{{id=abc}}: ztunnel::proxy::outbound: RBAC rejected conn=10.244.1.5(spiffe://cluster.local/ns/foo/sa/sleep)->10.244.2.7:80\n\
         2024-06-10T10:00:02Z\tinfo\tztunnel::proxy::inbound\tdry-run deny policy match policy=\"foo/deny-dry\"\n"
    );
    let (out, stats) = read(&text);
    assert_eq!(stats.ztunnel, 5);
    assert_eq!(out.len(), 5, "{out:#?}");
    assert!(
        out.iter()
            .all(|d| d.origin == Origin::Ztunnel && d.proxy == Some("ztunnel"))
    );
    assert_eq!(out[0].because.as_deref(), Some("no ALLOW rule matched"));
    assert_eq!(out[0].from.as_deref(), Some("foo/sleep-7d5b"));
    assert_eq!(out[0].to.as_deref(), Some("foo/httpbin-5c6d"));
    assert_eq!(out[1].policy_label(), "foo/deny-sleep");
    assert_eq!(out[2].time, None);
    assert_eq!(out[3].downstream.as_deref(), Some("10.244.1.5"));
    assert_eq!(out[4].engine, EngineKind::Shadow);
    assert_eq!(out[4].policy_label(), "foo/deny-dry");
}

#[test]
fn lines_that_mention_rbac_are_counted_not_dropped() {
    let text = "2025-01-01T10:00:00.000000Z\tdebug\tenvoy rbac\tsomething new about a policy\tthread=1\nhello\n";
    let (out, stats) = read(text);
    assert!(out.is_empty());
    assert_eq!(stats.rbac_other, 1);
    assert_eq!(stats.foreign, 1);
    assert_eq!(stats.first_foreign.as_deref(), Some("hello"));
}

/// ztunnel's access fields as its JSON log format (`LOG_FORMAT=json`) writes them.
fn ztunnel_json(time: &str, error: Option<&str>) -> String {
    let mut v = serde_json::json!({
        "level": if error.is_some() { "error" } else { "info" },
        "time": time, "scope": "access", "message": "connection complete",
        "src.addr": "10.244.1.5:43210", "src.workload": "sleep-7d5b", "src.namespace": "foo",
        "src.identity": "spiffe://cluster.local/ns/foo/sa/sleep",
        "dst.addr": "10.244.2.7:15008", "dst.hbone_addr": "10.244.2.7:80",
        "dst.workload": "httpbin-5c6d", "dst.namespace": "foo",
        "direction": "inbound", "bytes_sent": 0, "bytes_recv": 0, "duration": "0ms"
    });
    if let Some(e) = error {
        v["error"] = e.into();
    }
    serde_json::to_string(&v).unwrap()
}

#[test]
fn ztunnel_json_log_format() {
    let text = format!(
        "{}\n{}\n",
        ztunnel_json(
            "2024-06-10T10:00:00.123456Z",
            Some("connection closed due to policy rejection: explicitly denied by: foo/deny-sleep")
        ),
        ztunnel_json("2024-06-10T10:00:01Z", None),
    );
    let (out, stats) = read(&text);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(stats.ztunnel_other, 1, "{stats:?}");
    let d = &out[0];
    assert_eq!(d.time.as_deref(), Some("2024-06-10T10:00:00.123456Z"));
    assert_eq!(d.policy_label(), "foo/deny-sleep");
    assert_eq!(d.from.as_deref(), Some("foo/sleep-7d5b"));
    assert_eq!(d.to.as_deref(), Some("foo/httpbin-5c6d"));
    assert_eq!(d.downstream.as_deref(), Some("10.244.1.5:43210"));
}

#[test]
fn a_ztunnel_log_without_rejections_gets_no_debug_advice() {
    let fields = "src.addr=10.244.1.5:43210 src.workload=sleep-7d5b src.namespace=foo dst.addr=10.244.2.7:15008 dst.workload=httpbin-5c6d dst.namespace=foo direction=\"inbound\" bytes_sent=75 bytes_recv=230 duration=\"3ms\"";
    let text = format!(
        "2024-06-10T10:00:00.123456Z\tinfo\taccess\tconnection complete\t{fields}\n\
         2024-06-10T10:00:00.2Z  info  ztunnel::proxy::inbound  listener established\n{}\n",
        ztunnel_json("2024-06-10T10:00:01Z", None)
    );
    let (out, stats) = read(&text);
    assert!(out.is_empty(), "{out:#?}");
    assert_eq!(stats.ztunnel_other, 3, "{stats:?}");
    assert_eq!(stats.foreign, 0, "{stats:?}");
    let note = kubectl_rbaclog::output::nothing_found("x.log", "", &stats, "denied").join("\n");
    assert!(note.contains("3 other ztunnel lines"), "{note}");
    assert!(note.contains("none of its 3 lines"), "{note}");
    assert!(!note.contains("enable"), "{note}");
    // An Envoy log without RBAC lines still gets the advice.
    let (_, stats) = read("2024-06-10T10:00:00.123456Z\tinfo\tenvoy main\tstarting\n");
    let note = kubectl_rbaclog::output::nothing_found("x.log", "", &stats, "denied").join("\n");
    assert!(note.contains("enable one of"), "{note}");
}

#[test]
fn a_custom_denial_joins_its_trigger_and_names_policy_and_provider() {
    // Envoy 1.40's layout: the CUSTOM policy's shadow RBAC filter logs its
    // `checking request` entry and the trigger; ext_authz denies; the access
    // line (same x-request-id) says UAEX. Another request's denial (r-9) has no
    // trigger of its own and stays a row of its own.
    let checking = |rid: &str| {
        format!(
            "2025-01-01T10:00:00.000100Z\tdebug\tenvoy rbac external/envoy/source/extensions/filters/http/rbac/rbac_filter.cc:130\tchecking request: requestedServerName: , sourceIP: 10.244.0.7:51234, directRemoteIP: 10.244.0.7:51234, remoteIP: 10.244.0.7:51234,localAddress: 10.244.0.9:80, ssl: none, headers: ':authority', 'httpbin.foo:8000'\n':path', '/admin'\n':method', 'GET'\n'x-request-id', '{rid}'\n, dynamicMetadata: \tthread=20\n"
        )
    };
    let text = format!(
        "{}2025-01-01T10:00:00.000200Z\tdebug\tenvoy rbac external/envoy/source/extensions/filters/http/rbac/rbac_filter.cc:176\tshadow denied, matched policy istio-ext-authz-opa-ns[foo]-policy[ext-authz]-rule[0]\tthread=20\n{}\n{}\n",
        checking("r-1"),
        text_access(
            "2025-01-01T10:00:00.000Z",
            "GET",
            "/admin",
            403,
            "UAEX",
            "ext_authz_denied",
            "r-9"
        ),
        text_access(
            "2025-01-01T10:00:00.000Z",
            "GET",
            "/admin",
            403,
            "UAEX",
            "ext_authz_denied",
            "r-1"
        ),
    );
    let (out, _) = read(&text);
    assert_eq!(out.len(), 2, "{out:#?}");
    let joined = out
        .iter()
        .find(|d| d.request_id.as_deref() == Some("r-1"))
        .unwrap();
    assert_eq!(joined.engine, EngineKind::Enforced);
    assert_eq!(joined.decision, RbacOutcome::Denied);
    assert_eq!(joined.action, Some(Action::Custom));
    assert_eq!(joined.filter, Some(FilterName::ExtAuthz));
    assert_eq!(joined.details.as_deref(), Some("ext_authz_denied"));
    assert_eq!(joined.policy_label(), "foo/ext-authz (ext_authz opa)");
    assert_eq!(joined.origins(), vec![Origin::RbacDebug, Origin::AccessLog]);
    assert_eq!(joined.decision_label(), "denied (CUSTOM)");
    assert_eq!(joined.filters.len(), 1);
    let alone = out
        .iter()
        .find(|d| d.request_id.as_deref() == Some("r-9"))
        .unwrap();
    assert_eq!(alone.policy, None);
    assert_eq!(alone.origins(), vec![Origin::AccessLog]);
}
