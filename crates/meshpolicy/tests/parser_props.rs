//! Property tests: no input makes any parser panic, hostile inputs (100k `[`, deep JSON,
//! invalid UTF-8) are handled, and the streaming reader agrees with the slice scanner.
//! Linear time is by construction (substring searches, no backtracking); these tests
//! only check the pathological inputs finish and give sane answers, never their timing.

use std::io::Cursor;

use meshpolicy::envoy::{
    LogLine, LogReader, PolicyId, Scope, analyze_config_dump, analyze_filter_config, classify_line,
    parse_authz_check, scan_slice,
};
use proptest::prelude::*;

/// Bytes biased towards the characters the parsers care about.
fn log_bytes() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop_oneof![
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b"\t".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"rbac".to_vec()),
        Just(b"envoy rbac ".to_vec()),
        Just(b"ns[".to_vec()),
        Just(b"]-policy[".to_vec()),
        Just(b"]-rule[".to_vec()),
        Just(b"enforced denied, matched policy ".to_vec()),
        Just(b"Preparing local reply with details ".to_vec()),
        Just(b"rbac_access_denied_matched_policy[".to_vec()),
        Just(b"2025-07-06T19:33:00.654348Z\tdebug\t".to_vec()),
        Just(b"[2024-09-26 11:41:28.955][1][debug][rbac] ".to_vec()),
        Just(b"[2025-07-22T17:55:52.085Z] \"GET / HTTP/1.1\" ".to_vec()),
        Just(b"{\"msg\":".to_vec()),
        Just(b"thread=".to_vec()),
        Just(vec![0xff, 0xfe]),
        Just(vec![0xe2, 0x82]),
        prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop::collection::vec(pieces, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn classify_never_panics(line in log_bytes()) {
        let all = classify_line(&line, Scope::All);
        let rbac = classify_line(&line, Scope::RbacOnly);
        // The RBAC-only scope never finds more than the full scope.
        if rbac != LogLine::Other {
            prop_assert_eq!(rbac, all);
        }
    }

    #[test]
    fn reader_agrees_with_slice(log in log_bytes(), cap in 1usize..64) {
        let from_slice: Vec<_> = scan_slice(&log, Scope::RbacOnly).collect();
        let reader = std::io::BufReader::with_capacity(cap, Cursor::new(log.clone()));
        let from_reader: Vec<_> = LogReader::new(reader, Scope::RbacOnly)
            .collect::<Result<_, _>>()
            .unwrap();
        prop_assert_eq!(from_reader, from_slice);
        let lines = log.split(|&b| b == b'\n').count()
            - usize::from(log.last() == Some(&b'\n') || log.is_empty());
        prop_assert_eq!(scan_slice(&log, Scope::All).count(), lines);
    }

    #[test]
    fn policy_ids_never_panic(raw in "\\PC{0,60}") {
        let id = PolicyId::parse(&raw);
        if let (Some(ns), Some(name)) = (&id.namespace, &id.name) {
            let needle = format!("ns[{ns}]-policy[{name}]-rule[");
            prop_assert!(raw.contains(&needle));
        }
    }

    #[test]
    fn authz_table_parser_never_panics(text in "\\PC{0,200}") {
        let _ = parse_authz_check(&text);
    }

    #[test]
    fn config_parsers_never_panic(bytes in log_bytes()) {
        let _ = analyze_config_dump(&bytes);
        let _ = analyze_filter_config(&bytes);
    }
}

#[test]
fn hundred_thousand_brackets() {
    let brackets = vec![b'['; 100_000];
    assert_eq!(classify_line(&brackets, Scope::All), LogLine::Other);
    let mut rbac =
        b"2025-07-06T19:33:00.654348Z\tdebug\tenvoy rbac\tenforced denied, matched policy ns["
            .to_vec();
    rbac.extend_from_slice(&brackets);
    rbac.extend_from_slice(b"]-policy[");
    rbac.extend_from_slice(&brackets);
    let LogLine::RbacDecision(d) = classify_line(&rbac, Scope::RbacOnly) else {
        panic!("expected a decision");
    };
    let p = d.policy.unwrap();
    assert_eq!(p.name, None, "no `]-rule[`: not Istio's naming");
    let access = [b"[2025-07-22T17:55:52.085Z] \"".as_slice(), &brackets].concat();
    assert!(matches!(
        classify_line(&access, Scope::All),
        LogLine::Unparsed(_)
    ));
    let ids = "]-policy[".repeat(20_000) + &"]-rule[".repeat(20_000);
    let id = PolicyId::parse(&format!("ns[a{ids}0]"));
    assert_eq!(id.namespace.as_deref().map(str::len), Some(1 + 9 * 19_999));
    assert_eq!(id.rule.as_deref(), Some("0"));
}

#[test]
fn deeply_nested_json_is_an_error_not_a_crash() {
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    assert!(analyze_config_dump(deep.as_bytes()).is_err());
    assert!(analyze_filter_config(deep.as_bytes()).is_err());
    let deep_obj = "{\"a\":".repeat(50_000) + "1" + &"}".repeat(50_000);
    assert!(analyze_config_dump(deep_obj.as_bytes()).is_err());
    let line = "{\"msg\":".repeat(50_000) + "\"rbac\"" + &"}".repeat(50_000);
    assert!(matches!(
        classify_line(line.as_bytes(), Scope::RbacOnly),
        LogLine::Unparsed(_)
    ));
    let yaml = "- ".repeat(50_000) + "x";
    assert!(analyze_filter_config(yaml.as_bytes()).is_err());
    // The YAML parser is superlinear on deep flow mappings: refused before parsing.
    let yaml_flow = "a: ".to_owned() + &"{a: ".repeat(50_000) + "1" + &"}".repeat(50_000);
    assert!(analyze_filter_config(yaml_flow.as_bytes()).is_err());
}

#[test]
fn invalid_utf8_is_decoded_lossily() {
    let line = b"2025-07-06T19:33:00.654348Z\tdebug\tenvoy rbac\tenforced denied, matched policy ns[\xff]-policy[a\xfe]-rule[0]";
    let LogLine::RbacDecision(d) = classify_line(line, Scope::RbacOnly) else {
        panic!("expected a decision");
    };
    let p = d.policy.unwrap();
    assert_eq!(p.namespace.as_deref(), Some("\u{fffd}"));
    assert_eq!(p.name.as_deref(), Some("a\u{fffd}"));
}

#[test]
fn long_line_in_tiny_chunks_is_read_once() {
    // A 300 kB RBAC line delivered 16 bytes at a time, then a normal one: only new bytes
    // are searched for a newline, so this is linear (it was quadratic once).
    let mut log = b"2025-07-06T19:33:00.654348Z\tdebug\tenvoy rbac\tenforced denied, matched policy ns[a]-policy[".to_vec();
    log.extend(std::iter::repeat_n(b'x', 300_000));
    log.extend_from_slice(
        b"]-rule[0]\n[2018-07-26 20:39:18.060][152][debug][rbac] x.cc:88] shadow denied\n",
    );
    let reader = std::io::BufReader::with_capacity(16, Cursor::new(log));
    let entries: Vec<_> = LogReader::new(reader, Scope::RbacOnly)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(entries.len(), 2);
    let LogLine::RbacDecision(d) = &entries[0].line else {
        panic!("expected a decision, got {:?}", entries[0].line);
    };
    assert_eq!(
        d.policy.as_ref().unwrap().name.as_ref().map(String::len),
        Some(300_000)
    );
    assert_eq!(entries[1].line_no, 2);
}
