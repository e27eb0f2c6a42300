//! rbaclog on what real Envoy 1.40 wrote (tests/data/envoy-1.40-*.log).
//!
//! The logs were made on this project's machines by running the official Envoy
//! 1.40.0 binary with `tests/data/envoy-1.40-rbac.yaml` (a network RBAC filter with
//! shadow rules only, then three HTTP RBAC filters: DENY `/admin` with a dry-run DENY
//! on `/dry`, ALLOW `GET`, and an AUDIT (`LOG`) on `/audit`), Istio's `--log-format`,
//! `rbac:debug,http:debug`, and Istio's default TEXT (or JSON) access log, while
//! three rounds of eight requests ran concurrently on two worker threads:
//! `GET /admin/a`, `GET /ok`, `GET /audit`, `GET /dry`, `GET /admin/b`, `GET /x`,
//! `POST /post`, `DELETE /admin/c`.

use std::path::PathBuf;

use jiff::Timestamp;
use kubectl_rbaclog::files::read_stream;
use kubectl_rbaclog::filter::{DecisionFilter, Filters};
use kubectl_rbaclog::record::{Action, DecisionRecord, EngineKind, Origin, RbacOutcome};

fn data(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .unwrap()
}

fn read(bytes: &[u8], decision: DecisionFilter) -> Vec<DecisionRecord> {
    let mut out = Vec::new();
    let filters = Filters {
        decision,
        ..Filters::default()
    };
    let stats = read_stream(bytes, "envoy.log", &filters, &mut |d| out.push(d)).unwrap();
    assert_eq!(stats.foreign, 0, "{stats:?}");
    assert_eq!(stats.unparsed, 0, "{stats:?}");
    assert_eq!(stats.rbac_other, 0, "{stats:?}");
    out
}

/// The 12 denials, each one request: its own debug line, local reply and access
/// line (the access line carries the same x-request-id as the checked request).
fn check_denials(denied: &[DecisionRecord]) {
    // The dry-run matches (`shadow denied`) are rows of their own.
    assert_eq!(
        denied
            .iter()
            .filter(|d| d.engine == EngineKind::Shadow)
            .count(),
        3
    );
    let denied: Vec<_> = denied
        .iter()
        .filter(|d| d.engine == EngineKind::Enforced)
        .collect();
    assert_eq!(denied.len(), 12, "{denied:#?}");
    let mut by_path = std::collections::BTreeMap::new();
    for d in &denied {
        let mut origins = d.origins();
        origins.sort();
        assert_eq!(
            origins,
            vec![Origin::RbacDebug, Origin::AccessLog, Origin::LocalReply],
            "{d:#?}"
        );
        assert_eq!(d.origin, Origin::RbacDebug);
        let rid = d
            .request_id
            .as_deref()
            .expect("request id from the checking block");
        let access = &d
            .paired
            .iter()
            .find(|p| p.origin == Origin::AccessLog)
            .unwrap()
            .line;
        assert!(access.contains(rid), "{rid} not in {access}");
        let req = d.request.as_ref().unwrap();
        assert_eq!(req.response_code, Some(403));
        let path = req.path.clone().unwrap();
        let expected = match path.as_str() {
            "/post" => "none",
            _ => "ns[foo]-policy[deny-admin]-rule[0]",
        };
        assert_eq!(d.policy_id.as_deref(), Some(expected), "{d:#?}");
        *by_path
            .entry((req.method.clone().unwrap(), path))
            .or_insert(0) += 1;
        // The other filters that ran are listed, not rows.
        assert!(d.filters.iter().all(|f| f.decision == RbacOutcome::Allowed));
    }
    let want: Vec<((String, String), i32)> = [
        ("DELETE", "/admin/c"),
        ("GET", "/admin/a"),
        ("GET", "/admin/b"),
        ("POST", "/post"),
    ]
    .into_iter()
    .map(|(m, p)| ((m.to_string(), p.to_string()), 3))
    .collect();
    assert_eq!(by_path.into_iter().collect::<Vec<_>>(), want);
}

fn check_all(all: &[DecisionRecord]) {
    // 24 requests, one row each, plus the 3 dry-run matches of `/dry`.
    assert_eq!(all.len(), 27, "{all:#?}");
    let shadow: Vec<_> = all
        .iter()
        .filter(|d| d.engine == EngineKind::Shadow)
        .collect();
    assert_eq!(shadow.len(), 3);
    assert!(shadow.iter().all(
        |d| d.policy_id.as_deref() == Some("ns[foo]-policy[dry]-rule[0]")
            && d.request.as_ref().unwrap().path.as_deref() == Some("/dry")
    ));
    // The TCP filter's `no engine, allowed by default` (24 of them) is never a row.
    assert!(all.iter().all(|d| !d.line.contains("no engine")));
    let audited: Vec<_> = all
        .iter()
        .filter(|d| d.filters.iter().any(|f| f.action == Some(Action::Audit)))
        .collect();
    assert_eq!(audited.len(), 3);
    for d in &audited {
        assert_eq!(d.request.as_ref().unwrap().path.as_deref(), Some("/audit"));
        assert_eq!(d.decision_label(), "allowed +audit");
        assert_eq!(
            d.policy_id.as_deref(),
            Some("ns[foo]-policy[allow-get]-rule[0]")
        );
    }
    let allowed = all
        .iter()
        .filter(|d| d.engine == EngineKind::Enforced && d.decision == RbacOutcome::Allowed);
    assert_eq!(allowed.count(), 12);
}

#[test]
fn text_log_in_write_order() {
    let log = data("envoy-1.40-text.log");
    check_denials(&read(&log, DecisionFilter::Denied));
    check_all(&read(&log, DecisionFilter::All));
}

/// Whole entries (a line and its continuation lines), in the order written.
fn entries(log: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for line in log.split(|&b| b == b'\n') {
        let starts = matches!(line.first(), Some(b'0'..=b'9') | Some(b'[') | Some(b'{'));
        match out.last_mut() {
            Some(last) if !starts => {
                last.push(b'\n');
                last.extend_from_slice(line);
            }
            _ => out.push(line.to_vec()),
        }
    }
    out.retain(|e| !e.is_empty());
    out
}

/// An entry's time: the Istio line's own, the access line's start time, the JSON's `start_time`.
fn entry_time(e: &[u8]) -> Timestamp {
    let s = String::from_utf8_lossy(e);
    let t = if let Some(rest) = s.strip_prefix('[') {
        rest.split(']').next().unwrap().to_string()
    } else if s.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        v["start_time"].as_str().unwrap().to_string()
    } else {
        s.split('\t').next().unwrap().to_string()
    };
    t.parse().unwrap_or_else(|_| panic!("{t}"))
}

/// As a log store shows it: entries sorted by their time (access lines by start
/// time, so before their own debug lines).
fn sorted_by_time(log: &[u8]) -> Vec<u8> {
    let mut es = entries(log);
    // Lines from Envoy's start-up (`[TIME][TID]...` native layout) do not occur: all are Istio's.
    es.sort_by_key(|e| entry_time(e));
    let mut out = es.join(&b'\n');
    out.push(b'\n');
    out
}

#[test]
fn text_log_sorted_by_start_time() {
    let log = sorted_by_time(&data("envoy-1.40-text.log"));
    // The reordering did put access lines before their debug lines.
    let first_access = log.windows(9).position(|w| w == b"] \"DELETE").unwrap();
    let first_delete_debug = log
        .windows(15)
        .position(|w| w == b"'DELETE'")
        .unwrap_or(usize::MAX);
    assert!(first_access < first_delete_debug || first_delete_debug == usize::MAX);
    check_denials(&read(&log, DecisionFilter::Denied));
    check_all(&read(&log, DecisionFilter::All));
}

#[test]
fn json_access_log_one_object_per_line_and_pretty_printed() {
    let log = data("envoy-1.40-json.log");
    check_denials(&read(&log, DecisionFilter::Denied));
    check_all(&read(&log, DecisionFilter::All));
    // jq's output: every object across several lines.
    let mut pretty = Vec::new();
    for line in log.split(|&b| b == b'\n') {
        if line.first() == Some(&b'{') {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            pretty.extend_from_slice(serde_json::to_string_pretty(&v).unwrap().as_bytes());
        } else {
            pretty.extend_from_slice(line);
        }
        pretty.push(b'\n');
    }
    check_denials(&read(&pretty, DecisionFilter::Denied));
    check_denials(&read(&sorted_by_time(&log), DecisionFilter::Denied));
}

#[test]
fn tool_prefixes_name_the_pod() {
    let log = data("envoy-1.40-text.log");
    for (prefix, pod) in [
        ("[pod/httpbin-7d5b/istio-proxy] ", "httpbin-7d5b"),
        ("httpbin-7d5b istio-proxy ", "httpbin-7d5b"),
        (
            "[pod/httpbin-7d5b/istio-proxy] 2026-12-04T16:14:44.5Z ",
            "httpbin-7d5b",
        ),
    ] {
        let mut prefixed = Vec::new();
        for line in log.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            // Continuation lines of a multi-line entry carry the prefix too.
            prefixed.extend_from_slice(prefix.as_bytes());
            prefixed.extend_from_slice(line);
            prefixed.push(b'\n');
        }
        let denied = read(&prefixed, DecisionFilter::Denied);
        check_denials(&denied);
        assert!(
            denied.iter().all(|d| d.pod.as_deref() == Some(pod)),
            "{prefix}"
        );
    }
}

/// Envoy writes a `checking request` entry to stderr in one write, but its
/// access log goes to stdout, and the container runtime interleaves the two
/// line by line: here (a capture of Envoy 1.40 behind meshpolicy's listener, a
/// DENY filter then an ALLOW filter) the POST's access line landed inside the
/// first filter's entry. Still one request: the ALLOW filter's denial, with
/// the first filter's "allowed, matched policy none" folded in, not a second
/// "allowed" row.
#[test]
fn an_access_line_inside_a_checking_request_entry_does_not_split_the_request() {
    let log = data("envoy-1.40-interleaved.log");
    let all = read(&log, DecisionFilter::All);
    assert_eq!(all.len(), 1, "{all:#?}");
    let d = &all[0];
    assert_eq!(d.decision, RbacOutcome::Denied, "{d:#?}");
    let req = d.request.as_ref().expect("the request from the entry");
    assert_eq!(req.method.as_deref(), Some("POST"));
    assert_eq!(req.path.as_deref(), Some("/api/items/4"));
    assert_eq!(
        d.request_id.as_deref(),
        Some("bd11a5a3-41c3-49a7-8afb-9de70b2becbc")
    );
}
