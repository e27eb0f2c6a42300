//! Every envelope and message wording rbaclog reads, one line each, made from the
//! formats' definitions (Istio's `--log-format`, Envoy's default `[%Y-%m-%d %T.%e][%t][%l][%n] [%g:%#] %v`,
//! the RBAC filter's and filter manager's messages, ztunnel's access fields).

use meshpolicy::envoy::{
    Engine, FilterKind, Layout, LogLine, NoteKind, Scope, ZtunnelKind, ZtunnelReason, classify_line,
};

const ID: &str = "ns[foo]-policy[deny-path-headers]-rule[0]";

fn decision(line: &str) -> meshpolicy::envoy::RbacDecision {
    match classify_line(line.as_bytes(), Scope::RbacOnly) {
        LogLine::RbacDecision(d) => d,
        other => panic!("not a decision: {other:?}\n{line}"),
    }
}

#[test]
fn istio_layout_with_tabs_turned_into_spaces() {
    for sep in [" ", "    ", "\t"] {
        for caller in [
            "",
            "external/envoy/source/extensions/filters/http/rbac/rbac_filter.cc:224 ",
        ] {
            for thread in ["", "\tthread=26", " thread=26"] {
                let line = format!(
                    "2021-04-23T20:43:18.552910Z{sep}debug{sep}envoy rbac {caller}{sep}enforced denied, matched policy {ID}{thread}"
                );
                let d = decision(&line);
                assert_eq!(d.engine, Engine::Enforced, "{line}");
                assert_eq!(d.policy.as_ref().unwrap().raw, ID, "{line}");
                assert_eq!(
                    d.header.time_rfc3339.as_deref(),
                    Some("2021-04-23T20:43:18.552910Z")
                );
                assert_eq!(d.header.tabs_as_spaces, sep != "\t", "{line}");
                assert_eq!(d.header.thread.is_some(), !thread.is_empty(), "{line}");
                if !caller.is_empty() {
                    assert_eq!(d.filter, Some(FilterKind::Http));
                }
            }
        }
    }
}

#[test]
fn shadow_lines_and_bare_messages() {
    let d = decision(&format!("shadow denied, matched policy {ID}"));
    assert_eq!(d.engine, Engine::Shadow);
    assert_eq!(d.header.layout, Layout::Bare);
    let d = decision("enforced denied, matched policy none");
    assert!(d.policy.unwrap().none);
    let d = decision("shadow denied");
    assert_eq!(d.policy, None);
    // A line that merely talks about policies is not a decision.
    assert_eq!(
        classify_line(b"the policy matched nothing", Scope::RbacOnly),
        LogLine::Other
    );
}

#[test]
fn envoy_native_layout_behind_the_epoch_prefix_has_no_zone() {
    let line = format!(
        "[Envoy (Epoch 0)] [2019-11-05 09:12:44.123][27][debug][rbac] [external/envoy/source/extensions/filters/http/rbac/rbac_filter.cc:114] enforced denied, matched policy {ID}"
    );
    let d = decision(&line);
    assert_eq!(d.header.layout, Layout::Envoy);
    assert_eq!(d.header.time.as_deref(), Some("2019-11-05 09:12:44.123"));
    assert!(d.header.time_zone_unknown);
    assert_eq!(d.header.thread.as_deref(), Some("27"));
    let with_zone = decision(&format!(
        "2021-04-23T20:43:18.552910Z\tdebug\tenvoy rbac\tenforced denied, matched policy {ID}"
    ));
    assert!(!with_zone.header.time_zone_unknown);
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["time_zone_unknown"], true);
}

#[test]
fn older_local_reply_wording_with_short_ids() {
    let line = format!(
        "[2020-03-01 10:00:00.001][31][debug][http] [external/envoy/source/common/http/conn_manager_impl.cc:1409] [C747][S3780791924704176796] Sending local reply with details rbac_access_denied_matched_policy[{ID}]"
    );
    let LogLine::LocalReply(r) = classify_line(line.as_bytes(), Scope::RbacOnly) else {
        panic!("{line}")
    };
    assert_eq!(r.connection_id, Some(747));
    assert_eq!(r.stream_id, Some(3_780_791_924_704_176_796));
    assert_eq!(r.policy.unwrap().raw, ID);
    assert!(r.rbac_denied);
    let bare = "[2020-03-01 10:00:00.001][31][debug][http] [source/common/http/conn_manager_impl.cc:1409] [C7][S9] Sending local reply with details rbac_access_denied";
    let LogLine::LocalReply(r) = classify_line(bare.as_bytes(), Scope::RbacOnly) else {
        panic!("{bare}")
    };
    assert!(r.rbac_denied && r.policy.is_none());
}

#[test]
fn envoy_1_40_notes_are_not_decisions() {
    let first = "2026-12-04T16:04:06.895178Z\tdebug\tenvoy rbac source/extensions/filters/http/rbac/rbac_filter.cc:266\tchecking request: requestedServerName: , sourceIP: 127.0.0.1:33672, directRemoteIP: 127.0.0.1:33672, remoteIP: 127.0.0.1:33672,localAddress: 127.0.0.1:18080, ssl: none, headers: ':authority', 'localhost:18080'";
    let LogLine::RbacNote(n) = classify_line(first.as_bytes(), Scope::RbacOnly) else {
        panic!()
    };
    assert_eq!(n.kind, NoteKind::CheckingRequest);
    assert!(!n.complete, "the entry goes on over the next lines");
    let mut req = n.request.unwrap();
    assert_eq!(req.authority.as_deref(), Some("localhost:18080"));
    assert_eq!(req.source_ip.as_deref(), Some("127.0.0.1:33672"));
    for l in [
        "':path', '/admin/x'",
        "':method', 'GET'",
        "'x-request-id', 'abc'",
    ] {
        assert!(meshpolicy::envoy::rbac_log::is_continuation(l.as_bytes()));
        req.absorb(l.as_bytes());
    }
    assert_eq!(req.path.as_deref(), Some("/admin/x"));
    assert_eq!(req.method.as_deref(), Some("GET"));
    assert_eq!(req.request_id.as_deref(), Some("abc"));
    assert!(meshpolicy::envoy::rbac_log::ends_entry(b"\tthread=23829"));
    assert!(!meshpolicy::envoy::rbac_log::ends_entry(
        b"'x-thread', 'thread=1x'"
    ));
    let after = "2026-12-04T16:04:06.905693Z\tdebug\tenvoy rbac source/extensions/filters/http/rbac/rbac_filter.cc:290\tallowed by default or by policy\tthread=23829";
    assert!(matches!(
        classify_line(after.as_bytes(), Scope::RbacOnly),
        LogLine::RbacNote(n) if n.kind == NoteKind::AllowedByDefaultOrPolicy
    ));
    let no_engine = "2026-12-04T16:04:06.894960Z\tdebug\tenvoy rbac source/extensions/filters/network/rbac/rbac_filter.cc:152\tno engine, allowed by default\tthread=23829";
    let d = decision(no_engine);
    assert_eq!(d.engine, Engine::None);
    assert_eq!(d.filter, Some(FilterKind::Network));
}

#[test]
fn ztunnel_lines_in_every_form() {
    let fields = "src.addr=10.244.1.5:43210 src.workload=\"sleep-7d5b\" src.namespace=\"foo\" src.identity=\"spiffe://cluster.local/ns/foo/sa/sleep\" dst.addr=10.244.2.7:15008 dst.hbone_addr=10.244.2.7:80 dst.service=\"httpbin.foo.svc.cluster.local\" dst.workload=\"httpbin-5c6d\" dst.namespace=\"foo\" direction=\"inbound\" bytes_sent=0 bytes_recv=0 duration=\"0ms\"";
    for head in [
        "2024-06-10T10:00:00.123456Z\terror\taccess\tconnection complete\t",
        "2024-06-10T10:00:00.123456Z  error  access  connection complete  ",
        "error access connection complete ",
    ] {
        let line = format!(
            "{head}{fields} error=\"connection closed due to policy rejection: allow policies exist, but none allowed\""
        );
        let LogLine::Ztunnel(z) = classify_line(line.as_bytes(), Scope::RbacOnly) else {
            panic!("{line}")
        };
        assert_eq!(z.kind, ZtunnelKind::Access);
        assert_eq!(z.reason, ZtunnelReason::NoAllowMatched);
        assert_eq!(z.src_workload.as_deref(), Some("sleep-7d5b"));
        assert_eq!(z.dst_workload.as_deref(), Some("httpbin-5c6d"));
        assert_eq!(z.src_addr.as_deref(), Some("10.244.1.5:43210"));
        assert_eq!(z.time.is_some(), head.starts_with("2024"));
        assert_eq!(z.level.as_deref(), Some("error"));
    }
    let denied = format!(
        "2024-06-10T10:00:00Z\terror\taccess\tconnection complete\t{fields} error=\"connection closed due to policy rejection: explicitly denied by: foo/deny-sleep\""
    );
    let LogLine::Ztunnel(z) = classify_line(denied.as_bytes(), Scope::RbacOnly) else {
        panic!()
    };
    assert_eq!(z.policy.as_deref(), Some("foo/deny-sleep"));
    let old = "2023-03-01T10:00:00.000000Z  INFO outbound{id=abc}: ztunnel::proxy::outbound: RBAC rejected conn=10.244.1.5(spiffe://cluster.local/ns/foo/sa/sleep)->10.244.2.7:80";
    let LogLine::Ztunnel(z) = classify_line(old.as_bytes(), Scope::RbacOnly) else {
        panic!()
    };
    assert_eq!(z.kind, ZtunnelKind::RbacRejected);
    assert_eq!(z.src_addr.as_deref(), Some("10.244.1.5"));
    assert_eq!(
        z.src_identity.as_deref(),
        Some("spiffe://cluster.local/ns/foo/sa/sleep")
    );
    assert_eq!(z.dst_addr.as_deref(), Some("10.244.2.7:80"));
    let dry = "2024-06-10T10:00:00Z\tinfo\tztunnel::proxy::inbound\tdry-run deny policy match policy=\"foo/deny-dry\"";
    let LogLine::Ztunnel(z) = classify_line(dry.as_bytes(), Scope::RbacOnly) else {
        panic!()
    };
    assert_eq!(z.kind, ZtunnelKind::DryRun);
    assert_eq!(z.policy.as_deref(), Some("foo/deny-dry"));
}
