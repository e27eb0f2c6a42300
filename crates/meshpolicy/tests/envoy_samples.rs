//! Every line of `tests/fixtures/envoy-logs/istio-proxy-samples.log` decodes to the
//! fields the fixtures README describes, and the streaming readers report them with
//! the right line numbers whatever the input looks like around them.

use std::io::Cursor;
use std::path::PathBuf;

use meshpolicy::envoy::{
    AccessLogEncoding, AccessLogEntry, AccessVerdict, Decision, Engine, FilterKind, Layout,
    LogLine, LogReader, Scope, Transport, UnparsedReason, classify_line, format_local_reply_line,
    format_rbac_debug_line, format_rbac_denied_details, scan_slice,
};

fn fixtures() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|a| a.join("tests/fixtures"))
        .find(|p| p.is_dir())
        .expect("tests/fixtures not found above the crate")
}

fn samples() -> Vec<u8> {
    std::fs::read(fixtures().join("envoy-logs/istio-proxy-samples.log")).unwrap()
}

fn lines() -> Vec<LogLine> {
    let data = samples();
    data.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| classify_line(l, Scope::All))
        .collect()
}

fn rbac(line: &LogLine) -> &meshpolicy::envoy::RbacDecision {
    match line {
        LogLine::RbacDecision(d) => d,
        other => panic!("expected an RBAC decision, got {other:?}"),
    }
}

fn access(line: &LogLine) -> &AccessLogEntry {
    match line {
        LogLine::AccessLog(a) => a,
        other => panic!("expected an access log line, got {other:?}"),
    }
}

const WALKTHROUGH_POLICY: &str =
    "ns[np-test-2]-policy[deny-all-ingress-using-authorizationpolicy]-rule[0]";

#[test]
fn samples_file_has_twelve_lines() {
    assert_eq!(lines().len(), 12);
}

#[test]
fn line1_istio_117_enforced_denied() {
    let all = lines();
    let d = rbac(&all[0]);
    assert_eq!(d.header.layout, Layout::IstioTabs);
    assert!(!d.header.tabs_as_spaces);
    assert_eq!(
        d.header.time.as_deref(),
        Some("2025-07-06T19:33:00.654348Z")
    );
    assert_eq!(
        d.header.time_rfc3339.as_deref(),
        Some("2025-07-06T19:33:00.654348Z")
    );
    assert_eq!(d.header.level.as_deref(), Some("debug"));
    assert_eq!(d.header.logger.as_deref(), Some("rbac"));
    assert_eq!(
        d.header.caller.as_deref(),
        Some("external/envoy/source/extensions/filters/http/rbac/rbac_filter.cc:224")
    );
    assert_eq!(d.header.thread.as_deref(), Some("26"));
    assert_eq!(d.engine, Engine::Enforced);
    assert_eq!(d.decision, Decision::Denied);
    assert_eq!(d.filter, Some(FilterKind::Http));
    let p = d.policy.as_ref().unwrap();
    assert_eq!(p.raw, WALKTHROUGH_POLICY);
    assert_eq!(p.namespace.as_deref(), Some("np-test-2"));
    assert_eq!(
        p.name.as_deref(),
        Some("deny-all-ingress-using-authorizationpolicy")
    );
    assert_eq!(p.rule.as_deref(), Some("0"));
    assert!(!p.none && !p.custom);
}

#[test]
fn line2_local_reply_keeps_ids() {
    let all = lines();
    let LogLine::LocalReply(r) = &all[1] else {
        panic!("expected a local reply, got {:?}", all[1]);
    };
    assert_eq!(r.header.logger.as_deref(), Some("http"));
    assert_eq!(r.header.thread.as_deref(), Some("26"));
    assert_eq!(
        r.header.caller.as_deref(),
        Some("external/envoy/source/common/http/filter_manager.cc:1040")
    );
    assert_eq!(r.connection_id, Some(21));
    assert_eq!(r.stream_id, Some(6_947_102_628_293_500_817));
    assert_eq!(
        r.details,
        format!("rbac_access_denied_matched_policy[{WALKTHROUGH_POLICY}]")
    );
    let p = r.policy.as_ref().unwrap();
    assert_eq!(p.raw, WALKTHROUGH_POLICY);
    assert_eq!(p.namespace.as_deref(), Some("np-test-2"));
}

#[test]
fn line3_network_filter_policy_none() {
    let all = lines();
    let d = rbac(&all[2]);
    assert_eq!(d.header.layout, Layout::IstioTabs);
    assert_eq!(d.filter, Some(FilterKind::Network));
    assert_eq!(d.header.thread.as_deref(), Some("30"));
    assert_eq!((d.engine, d.decision), (Engine::Enforced, Decision::Denied));
    let p = d.policy.as_ref().unwrap();
    assert!(p.none);
    assert_eq!(p.raw, "none");
    assert_eq!(p.name, None);
}

#[test]
fn lines4_to_6_istio_116() {
    let all = lines();
    for d in [rbac(&all[3]), rbac(&all[4]), rbac(&all[5])] {
        assert_eq!(d.header.layout, Layout::IstioLegacy);
        assert_eq!(d.header.caller, None);
        assert_eq!(d.header.thread, None);
        assert_eq!(d.header.logger.as_deref(), Some("rbac"));
    }
    let d4 = rbac(&all[3]);
    assert_eq!(
        (d4.engine, d4.decision),
        (Engine::Enforced, Decision::Denied)
    );
    let p = d4.policy.as_ref().unwrap();
    assert_eq!(p.namespace.as_deref(), Some("foo"));
    assert_eq!(p.name.as_deref(), Some("deny-path-headers"));
    assert_eq!(p.rule.as_deref(), Some("0"));
    let d5 = rbac(&all[4]);
    assert_eq!((d5.engine, d5.decision), (Engine::Shadow, Decision::Denied));
    assert_eq!(
        d5.policy.as_ref().unwrap().raw,
        "ns[foo]-policy[deny-path-headers]-rule[0]"
    );
    let d6 = rbac(&all[5]);
    assert_eq!(
        (d6.engine, d6.decision),
        (Engine::None, Decision::AllowedByDefault)
    );
    assert_eq!(d6.policy, None);
    assert_eq!(
        d6.header.time_rfc3339.as_deref(),
        Some("2021-04-23T20:59:11.838538Z")
    );
}

#[test]
fn line7_plain_envoy() {
    let all = lines();
    let d = rbac(&all[6]);
    assert_eq!(d.header.layout, Layout::Envoy);
    assert_eq!(d.header.time.as_deref(), Some("2024-09-26 11:41:28.955"));
    assert_eq!(
        d.header.time_rfc3339.as_deref(),
        Some("2024-09-26T11:41:28.955Z")
    );
    assert_eq!(d.header.thread.as_deref(), Some("3492043"));
    assert_eq!(d.header.level.as_deref(), Some("debug"));
    assert_eq!(
        d.header.caller.as_deref(),
        Some("source/extensions/filters/http/rbac/rbac_filter.cc:194")
    );
    assert_eq!((d.engine, d.decision), (Engine::Enforced, Decision::Denied));
    assert!(d.policy.as_ref().unwrap().none);
}

#[test]
fn line8_legacy_bare_shadow_denied() {
    let all = lines();
    let d = rbac(&all[7]);
    assert_eq!(d.header.layout, Layout::Envoy);
    assert_eq!(d.header.thread.as_deref(), Some("152"));
    assert_eq!(
        d.header.caller.as_deref(),
        Some("external/envoy/source/extensions/filters/http/rbac/rbac_filter.cc:88")
    );
    assert_eq!((d.engine, d.decision), (Engine::Shadow, Decision::Denied));
    assert_eq!(d.policy, None);
}

#[test]
fn lines9_to_11_access_log_rbac_denials() {
    let all = lines();
    let expect = [
        (
            "GET",
            "/",
            "172.18.10.10",
            "10.244.1.9:80",
            "10.244.1.1:0",
            "020e467a-c234-4a8f-b9f4-ca156ca06578",
        ),
        (
            "POST",
            "/v1/models/bert-emotion-model:predict",
            "bert-model.default.example.com",
            "127.0.0.1:8080",
            "127.0.0.1:44576",
            "211ebf7c-1bc2-4008-aa50-9730fa6300dc",
        ),
        (
            "GET",
            "/api/catalog",
            "webapp.istioinaction",
            "10.10.0.16:8080",
            "10.10.0.14:38380",
            "1c29b4b4-acdd-9196-b093-322fd083ac38",
        ),
    ];
    for (line, (method, path, authority, local, remote, rid)) in all[8..11].iter().zip(expect) {
        let a = access(line);
        assert_eq!(a.encoding, AccessLogEncoding::Text);
        assert_eq!(a.response_code, Some(403));
        assert_eq!(a.response_flags, "-");
        assert_eq!(
            a.response_code_details.as_deref(),
            Some("rbac_access_denied_matched_policy[none]")
        );
        assert_eq!(a.connection_termination_details, None);
        assert_eq!(a.method.as_deref(), Some(method));
        assert_eq!(a.path.as_deref(), Some(path));
        assert_eq!(a.protocol.as_deref(), Some("HTTP/1.1"));
        assert_eq!(a.authority.as_deref(), Some(authority));
        assert_eq!(a.downstream_local_address.as_deref(), Some(local));
        assert_eq!(a.downstream_remote_address.as_deref(), Some(remote));
        assert_eq!(a.request_id.as_deref(), Some(rid));
        assert_eq!(a.bytes_sent, Some(19));
        match &a.verdict {
            AccessVerdict::RbacDenied { policy, transport } => {
                assert!(policy.none);
                assert_eq!(*transport, Transport::Http);
            }
            other => panic!("expected an RBAC denial, got {other:?}"),
        }
    }
    let first = access(&all[8]);
    assert_eq!(first.upstream_cluster.as_deref(), Some("inbound|80||"));
    assert_eq!(first.x_forwarded_for.as_deref(), Some("10.244.1.1"));
    assert_eq!(first.user_agent.as_deref(), Some("curl/8.14.1"));
    assert_eq!(
        first.requested_server_name.as_deref(),
        Some("outbound_.80_._.nginx-svc.default.svc.cluster.local")
    );
    assert_eq!(first.route_name.as_deref(), Some("default"));
    assert_eq!(
        first.start_time.as_deref(),
        Some("2025-07-22T17:55:52.085Z")
    );
    let second = access(&all[9]);
    assert_eq!(
        second.upstream_cluster.as_deref(),
        Some("outbound|80||knative-local-gateway.istio-system.svc.cluster.local")
    );
    assert_eq!(second.requested_server_name, None);
}

#[test]
fn line12_is_not_an_rbac_decision() {
    let all = lines();
    let a = access(&all[11]);
    assert_eq!(a.response_code, Some(418));
    assert_eq!(a.response_code_details.as_deref(), Some("via_upstream"));
    assert_eq!(a.verdict, AccessVerdict::NotRbac);
    assert_eq!(a.upstream_host.as_deref(), Some("127.0.0.1:80"));
    assert_eq!(a.upstream_service_time.as_deref(), Some("1"));
    assert_eq!(a.upstream_local_address.as_deref(), Some("127.0.0.1:41854"));
    assert!(!all[11].is_rbac_related());
    // The RBAC-only scope drops it entirely.
    assert_eq!(
        classify_line(&samples_line(12), Scope::RbacOnly),
        LogLine::Other
    );
}

fn samples_line(n: usize) -> Vec<u8> {
    samples()
        .split(|&b| b == b'\n')
        .nth(n - 1)
        .unwrap()
        .to_vec()
}

#[test]
fn tabs_pasted_as_spaces_give_the_same_fields() {
    let data = samples();
    for (i, line) in data.split(|&b| b == b'\n').enumerate().take(6) {
        let with_tabs = classify_line(line, Scope::All);
        // Expand tabs to the next multiple of 8, as a terminal shows them.
        let mut spaced = Vec::new();
        for &b in line {
            if b == b'\t' {
                let pad = 8 - spaced.len() % 8;
                spaced.extend(std::iter::repeat_n(b' ', pad));
            } else {
                spaced.push(b);
            }
        }
        let with_spaces = classify_line(&spaced, Scope::All);
        match (with_tabs, with_spaces) {
            (LogLine::RbacDecision(a), LogLine::RbacDecision(mut b)) => {
                assert!(b.header.tabs_as_spaces, "line {}", i + 1);
                b.header.tabs_as_spaces = false;
                assert_eq!(a, b, "line {}", i + 1);
            }
            (LogLine::LocalReply(a), LogLine::LocalReply(mut b)) => {
                assert!(b.header.tabs_as_spaces);
                b.header.tabs_as_spaces = false;
                assert_eq!(a, b);
            }
            (a, b) => panic!("line {}: {a:?} vs {b:?}", i + 1),
        }
    }
}

#[test]
fn json_logs() {
    let istio = br#"{"level":"debug","time":"2025-07-06T19:33:00.654348Z","scope":"envoy rbac","msg":"enforced denied, matched policy ns[a]-policy[b]-rule[3]","caller":"external/envoy/source/extensions/filters/network/rbac/rbac_filter.cc:168","thread":"7"}"#;
    let d = match classify_line(istio, Scope::RbacOnly) {
        LogLine::RbacDecision(d) => d,
        other => panic!("{other:?}"),
    };
    assert_eq!(d.header.layout, Layout::Json);
    assert_eq!(d.header.logger.as_deref(), Some("rbac"));
    assert_eq!(d.header.thread.as_deref(), Some("7"));
    assert_eq!(d.filter, Some(FilterKind::Network));
    assert_eq!(d.policy.unwrap().rule.as_deref(), Some("3"));

    let envoy = br#"{"time":"2024-09-26 11:41:28.955","name":"rbac","level":"debug","msg":"shadow allowed, matched policy none"}"#;
    let d = match classify_line(envoy, Scope::RbacOnly) {
        LogLine::RbacDecision(d) => d,
        other => panic!("{other:?}"),
    };
    assert_eq!((d.engine, d.decision), (Engine::Shadow, Decision::Allowed));
    assert_eq!(
        d.header.time_rfc3339.as_deref(),
        Some("2024-09-26T11:41:28.955Z")
    );

    let access_json = br#"{"start_time":"2025-01-01T00:00:00.000Z","method":null,"path":null,"protocol":null,"response_code":0,"response_flags":"-","response_code_details":null,"connection_termination_details":"rbac_access_denied_matched_policy[ns[x]-policy[tcp-deny]-rule[0]]","upstream_transport_failure_reason":null,"bytes_received":0,"bytes_sent":0,"duration":1,"x_forwarded_for":null,"user_agent":null,"request_id":null,"authority":null,"upstream_host":null,"upstream_cluster":"inbound|9000||","upstream_local_address":null,"downstream_local_address":"10.0.0.5:9000","downstream_remote_address":"10.0.0.6:40000","requested_server_name":null,"route_name":null}"#;
    let a = match classify_line(access_json, Scope::RbacOnly) {
        LogLine::AccessLog(a) => a,
        other => panic!("{other:?}"),
    };
    assert_eq!(a.encoding, AccessLogEncoding::Json);
    assert_eq!(a.response_code, Some(0));
    assert_eq!(a.downstream_local_address.as_deref(), Some("10.0.0.5:9000"));
    match a.verdict {
        AccessVerdict::RbacDenied { policy, transport } => {
            assert_eq!(transport, Transport::Tcp);
            assert_eq!(policy.name.as_deref(), Some("tcp-deny"));
        }
        other => panic!("{other:?}"),
    }

    let custom = br#"{"start_time":"2025-01-01T00:00:00.000Z","method":"GET","path":"/x","response_code":"403","response_flags":"UAEX","response_code_details":"ext_authz_denied"}"#;
    let a = match classify_line(custom, Scope::RbacOnly) {
        LogLine::AccessLog(a) => a,
        other => panic!("{other:?}"),
    };
    assert_eq!(a.response_code, Some(403));
    assert_eq!(
        a.verdict,
        AccessVerdict::CustomDenied {
            details: "ext_authz_denied".into()
        }
    );
}

#[test]
fn formatters_emit_what_the_parser_reads() {
    let line = format_rbac_debug_line(
        "2025-07-06T19:33:00.654348Z",
        FilterKind::Http,
        Engine::Enforced,
        Decision::Denied,
        Some(WALKTHROUGH_POLICY),
        26,
    );
    assert_eq!(line.as_bytes(), &samples_line(1)[..]);
    let reply = format_local_reply_line(
        "2025-07-06T19:33:00.654360Z",
        21,
        6_947_102_628_293_500_817,
        &format_rbac_denied_details(Some(WALKTHROUGH_POLICY)),
        26,
    );
    assert_eq!(reply.as_bytes(), &samples_line(2)[..]);
    for n in 9..=12 {
        let original = samples_line(n);
        let parsed = access(&classify_line(&original, Scope::All)).clone();
        assert_eq!(parsed.format_text().as_bytes(), &original[..], "line {n}");
    }
}

#[test]
fn truncated_and_unknown_lines_are_reported_not_fatal() {
    let truncated = b"2025-07-06T19:33:00.654348Z\tdebug\tenvoy rbac external/envoy/source/extensions/filters/http/rbac/rbac_filter.cc:224\tenforced denied, matched pol";
    assert!(matches!(
        classify_line(truncated, Scope::RbacOnly),
        LogLine::Unparsed(u) if u.reason == UnparsedReason::TruncatedRbacMessage
    ));
    let cut_access = b"[2025-07-22T17:55:52.085Z] \"GET / HTTP/1.1\" 403 - rbac_access_denied_matched_policy[none] - \"-\" 0 19";
    assert!(matches!(
        classify_line(cut_access, Scope::RbacOnly),
        LogLine::Unparsed(u) if u.reason == UnparsedReason::AccessLogFields { found: 8 }
    ));
    let bad_json = br#"{"scope":"envoy rbac","msg":"enforced denied"#;
    assert!(matches!(
        classify_line(bad_json, Scope::RbacOnly),
        LogLine::Unparsed(u) if matches!(u.reason, UnparsedReason::Json { .. })
    ));
    // RBAC debug lines that are not decisions are notes, not decisions.
    let checking = b"2025-07-06T19:33:00.654348Z\tdebug\tenvoy rbac external/envoy/source/extensions/filters/http/rbac/rbac_filter.cc:130\tchecking request: requestedServerName: , sourceIP: 10.0.0.1:4000\tthread=26";
    match classify_line(checking, Scope::RbacOnly) {
        LogLine::RbacNote(n) => {
            assert_eq!(n.kind, meshpolicy::envoy::NoteKind::CheckingRequest);
            assert!(n.complete);
            assert_eq!(
                n.request.unwrap().source_ip.as_deref(),
                Some("10.0.0.1:4000")
            );
        }
        other => panic!("{other:?}"),
    }
}

/// A log mixing the samples with noise, invalid UTF-8, CRLF and no final newline.
fn messy_log() -> (Vec<u8>, Vec<u64>) {
    let mut out = Vec::new();
    let mut expected_rbac_lines = Vec::new();
    let mut n = 0u64;
    for (i, line) in samples().split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        for k in 0..3 {
            out.extend_from_slice(
                format!("2025-01-01T00:00:00.000000Z\tinfo\tads\tnoise {i} {k} ").as_bytes(),
            );
            out.extend_from_slice(b"\xfe\xff\r\n");
            n += 1;
        }
        out.extend_from_slice(line);
        out.push(b'\n');
        n += 1;
        if i != 11 {
            expected_rbac_lines.push(n);
        }
    }
    out.extend_from_slice(b"[2018-07-26 20:39:18.060][152][debug][rbac] x.cc:88] enforced allowed, matched policy ns[a]-policy[b]-rule[0]");
    n += 1;
    expected_rbac_lines.push(n);
    (out, expected_rbac_lines)
}

#[test]
fn slice_scanner_reports_rbac_lines_with_numbers() {
    let (log, expected) = messy_log();
    let got: Vec<u64> = scan_slice(&log, Scope::RbacOnly)
        .map(|e| e.line_no)
        .collect();
    assert_eq!(got, expected);
    let all: Vec<_> = scan_slice(&log, Scope::All).collect();
    assert_eq!(all.len() as u64, *expected.last().unwrap());
    assert!(
        all.iter()
            .enumerate()
            .all(|(i, e)| e.line_no == i as u64 + 1)
    );
}

#[test]
fn reader_matches_slice_scanner_with_tiny_buffers() {
    let (log, expected) = messy_log();
    let from_slice: Vec<_> = scan_slice(&log, Scope::RbacOnly).collect();
    // A 7-byte BufReader forces every line across many reads.
    let reader = std::io::BufReader::with_capacity(7, Cursor::new(log.clone()));
    let from_reader: Vec<_> = LogReader::new(reader, Scope::RbacOnly)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(from_reader, from_slice);
    assert_eq!(
        from_reader.iter().map(|e| e.line_no).collect::<Vec<_>>(),
        expected
    );
    let all = LogReader::new(Cursor::new(log), Scope::All).count();
    assert_eq!(all as u64, *expected.last().unwrap());
}

#[test]
fn reader_skips_over_long_lines_and_keeps_counting() {
    let mut log = Vec::new();
    log.extend_from_slice(b"short line\n");
    log.extend_from_slice(
        b"2025-07-06T19:33:00.654348Z\tdebug\tenvoy rbac\tenforced denied, matched policy ",
    );
    log.extend(std::iter::repeat_n(b'[', 10_000));
    log.push(b'\n');
    log.extend(std::iter::repeat_n(b'x', 5_000));
    log.push(b'\n');
    log.extend_from_slice(samples_line(3).as_slice());
    log.push(b'\n');
    let entries: Vec<_> = LogReader::new(Cursor::new(log), Scope::RbacOnly)
        .with_max_line(2048)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[0].line_no, 2);
    assert!(matches!(
        &entries[0].line,
        LogLine::Unparsed(u) if u.reason == UnparsedReason::TooLong { limit: 2048 }
    ));
    assert_eq!(entries[1].line_no, 4);
    assert!(matches!(entries[1].line, LogLine::RbacDecision(_)));
}

#[test]
fn entries_serialize_as_snake_case_json() {
    let entry = scan_slice(&samples(), Scope::RbacOnly).next().unwrap();
    let json = serde_json::to_value(&entry).unwrap();
    assert_eq!(json["line_no"], 1);
    assert_eq!(json["type"], "rbac_decision");
    assert_eq!(json["value"]["engine"], "enforced");
    assert_eq!(json["value"]["decision"], "denied");
    assert_eq!(json["value"]["layout"], "istio_tabs");
    assert_eq!(json["value"]["policy"]["namespace"], "np-test-2");
}
