//! `--file` on the shared real-world sample log gives the decisions its README documents.

use std::path::PathBuf;

use kubectl_rbaclog::files::read_file;
use kubectl_rbaclog::filter::{DecisionFilter, EngineFilter, Filters};
use kubectl_rbaclog::record::{DecisionRecord, EngineKind, Origin, RbacOutcome};

/// `<workspace root>/tests/fixtures/envoy-logs/istio-proxy-samples.log`.
fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/envoy-logs/istio-proxy-samples.log")
}

fn read(filters: Filters) -> Vec<DecisionRecord> {
    let mut out = Vec::new();
    let stats = read_file(&samples(), &filters, &mut |d| out.push(d)).unwrap();
    assert_eq!(stats.lines, 12);
    assert_eq!(stats.foreign, 0);
    assert_eq!(stats.unparsed, 0);
    out
}

#[test]
fn every_documented_decision() {
    let all = read(Filters {
        decision: DecisionFilter::All,
        ..Filters::default()
    });
    // 12 lines: lines 1+2 are one request, line 6 is the TCP filter's `no engine`
    // (it decided nothing: never a row), line 12 is not an RBAC decision.
    assert_eq!(all.len(), 9, "{all:#?}");

    // 1 + 2: the walk-through's denial, paired with its local reply.
    let walk = &all[0];
    assert_eq!(walk.origins(), vec![Origin::RbacDebug, Origin::LocalReply]);
    assert_eq!(walk.engine, EngineKind::Enforced);
    assert_eq!(walk.decision, RbacOutcome::Denied);
    let p = walk.policy.as_ref().unwrap();
    assert_eq!(p.namespace.as_deref(), Some("np-test-2"));
    assert_eq!(
        p.name.as_deref(),
        Some("deny-all-ingress-using-authorizationpolicy")
    );
    assert_eq!(p.rule.as_deref(), Some("0"));
    assert_eq!(walk.connection_id, Some(21));
    assert_eq!(walk.stream_id, Some(6_947_102_628_293_500_817));
    assert_eq!(walk.time.as_deref(), Some("2025-07-06T19:33:00.654348Z"));

    // 3: network filter, enforced denied, none.
    assert_eq!(all[1].policy_id.as_deref(), Some("none"));
    assert!(all[1].policy.is_none());
    // 4: Istio <= 1.16, enforced denied deny-path-headers.
    assert_eq!(all[2].engine, EngineKind::Enforced);
    assert_eq!(
        all[2].policy.as_ref().unwrap().name.as_deref(),
        Some("deny-path-headers")
    );
    // 5: dry-run.
    assert_eq!(all[3].engine, EngineKind::Shadow);
    assert_eq!(all[3].decision, RbacOutcome::Denied);
    // 7: plain Envoy layout; its time has no zone: kept as written, zone unknown.
    assert_eq!(all[4].engine, EngineKind::Enforced);
    assert_eq!(all[4].policy_id.as_deref(), Some("none"));
    assert_eq!(all[4].time.as_deref(), Some("2024-09-26 11:41:28.955"));
    assert_eq!(all[4].time_zone, Some("unknown"));
    assert_eq!(all[4].because.as_deref(), Some("no ALLOW rule matched"));
    // 8: legacy bare shadow denied, no policy.
    assert_eq!(all[5].engine, EngineKind::Shadow);
    assert_eq!(all[5].policy_id, None);
    // 9-11: access log denials with request details.
    for (d, path, down) in [
        (&all[6], "/", "10.244.1.1:0"),
        (
            &all[7],
            "/v1/models/bert-emotion-model:predict",
            "127.0.0.1:44576",
        ),
        (&all[8], "/api/catalog", "10.10.0.14:38380"),
    ] {
        assert_eq!(d.origin, Origin::AccessLog);
        assert_eq!(d.policy_id.as_deref(), Some("none"));
        let r = d.request.as_ref().unwrap();
        assert_eq!(r.path.as_deref(), Some(path));
        assert_eq!(r.response_code, Some(403));
        assert_eq!(d.downstream.as_deref(), Some(down));
    }
}

#[test]
fn filters_on_the_samples() {
    assert_eq!(read(Filters::default()).len(), 9);
    let shadow = read(Filters {
        engine: Some(EngineFilter::Shadow),
        ..Filters::default()
    });
    assert_eq!(shadow.len(), 2);
    let enforced = read(Filters {
        engine: Some(EngineFilter::Enforced),
        ..Filters::default()
    });
    assert_eq!(enforced.len(), 7);
    let allowed = read(Filters {
        decision: DecisionFilter::Allowed,
        ..Filters::default()
    });
    // The only allowed line is the TCP filter's `no engine`, which decides nothing.
    assert_eq!(allowed.len(), 0);
    let walk = read(Filters {
        policies: vec!["deny-all-ingress-using-authorizationpolicy".into()],
        ..Filters::default()
    });
    assert_eq!(walk.len(), 1);
    let none = read(Filters {
        policies: vec!["none".into()],
        ..Filters::default()
    });
    assert_eq!(none.len(), 5);
}

fn render(format: kubeplugin::OutputFormat, decision: DecisionFilter) -> String {
    use kubeplugin::render::Renderer;
    let data = std::fs::read(samples()).unwrap();
    let mut found = Vec::new();
    let filters = Filters {
        decision,
        ..Filters::default()
    };
    kubectl_rbaclog::files::read_stream(&data[..], "samples.log", &filters, &mut |d| found.push(d))
        .unwrap();
    let r = Renderer {
        format,
        no_headers: false,
        color: false,
        ..Renderer::default()
    };
    let mut out = Vec::new();
    r.write_all(&found, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn table_wide_and_json_snapshots() {
    use kubeplugin::OutputFormat;
    insta::assert_snapshot!("table", render(OutputFormat::Table, DecisionFilter::Denied));
    insta::assert_snapshot!("wide", render(OutputFormat::Wide, DecisionFilter::All));
    let json = render(OutputFormat::Json, DecisionFilter::Denied);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    for key in [
        "time",
        "namespace",
        "pod",
        "origin",
        "engine",
        "decision",
        "policy_id",
        "policy",
        "request",
        "downstream",
        "connection_id",
        "stream_id",
        "line",
    ] {
        assert!(v[0].get(key).is_some(), "missing {key}");
    }
    assert_eq!(v[0]["origin"], "rbac-debug");
    assert_eq!(
        v[0]["policy"]["name"],
        "deny-all-ingress-using-authorizationpolicy"
    );
    assert_eq!(v[0]["policy"]["rule"], "0");
    assert!(v[0]["policy"].get("provider").is_some());
    assert_eq!(v[0]["request"], serde_json::Value::Null);
    assert_eq!(v[6]["request"]["response_code"], 403);
    insta::assert_snapshot!("json", json);
    let jsonl = render(OutputFormat::Jsonl, DecisionFilter::Denied);
    assert_eq!(jsonl.lines().count(), 9);
}

#[test]
fn control_characters_are_escaped_in_tables_only() {
    use kubeplugin::OutputFormat;
    use kubeplugin::render::Renderer;
    let line = "[2025-07-22T17:55:52.085Z] \"GET /\x1b[2J\x07evil HTTP/1.1\" 403 - rbac_access_denied_matched_policy[none] - \"-\" 0 19 0 - \"10.244.1.1\" \"curl/8.14.1\" \"id\" \"host\" \"-\" inbound|80|| - 10.244.1.9:80 10.244.1.1:0 - default\n";
    let mut found = Vec::new();
    kubectl_rbaclog::files::read_stream(line.as_bytes(), "x", &Filters::default(), &mut |d| {
        found.push(d)
    })
    .unwrap();
    assert_eq!(found.len(), 1);
    let table = Renderer {
        format: OutputFormat::Table,
        no_headers: true,
        color: false,
        ..Renderer::default()
    }
    .table(&found);
    assert!(
        !table.contains('\x1b') && !table.contains('\x07'),
        "{table:?}"
    );
    assert!(table.contains("\\u{1b}[2J\\u{7}evil"), "{table}");
    // JSON keeps the data as it was.
    let json = serde_json::to_string(&found[0]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["request"]["path"].as_str().unwrap().contains('\x1b'));
}
