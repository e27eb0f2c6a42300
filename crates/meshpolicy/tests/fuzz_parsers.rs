//! Fuzz-style property tests with a fixed case budget (issue 10): every parser
//! of meshpolicy is fed *mutations of real inputs* (the Envoy log samples,
//! Istio config dumps and RBAC filter configs of the shared fixtures, the
//! walk-through's manifests, istioctl's `authz check` tables): bytes flipped,
//! inserted, deleted, truncated, duplicated, spliced with control sequences or
//! invalid UTF-8. Mutating real inputs reaches far deeper into the parsers
//! than random bytes (parser_props.rs covers those). Each parser must return
//! a value or a typed error, never panic; the checks that can fail beyond
//! "no panic" are invariants stated per parser (streamed and sliced reading
//! agree, a parsed selector re-parses to the same selector, a truncated JSON
//! dump is an error). The budget is fixed (`CASES` per parser) so CI time is
//! bounded; raise it locally with PROPTEST_CASES for a longer run.
//! YAML bombs (billion laughs through aliases) are checked to end with a
//! bounded answer.

use std::io::Cursor;
use std::path::PathBuf;

use meshpolicy::envoy::{
    LogReader, Scope, analyze_config_dump, analyze_filter_config, classify_line, parse_authz_check,
    scan_slice,
};
use meshpolicy::{Selector, parse_manifests};
use proptest::prelude::*;

const CASES: u32 = 256;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("tests/fixtures"))
        .find(|p| p.is_dir())
        .expect("tests/fixtures not found above the crate")
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(rel)).unwrap()
}

fn repo_file(rel: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(rel),
    )
    .unwrap()
}

/// One edit of a seed input.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn hostile_piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"\x1b[31m".to_vec()),
        Just(b"\x1b]0;owned\x07".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\0".to_vec()),
        Just(vec![0xff, 0xfe, 0xc3]),
        Just(b"[[[[[[[[".to_vec()),
        Just(b"{\"a\":{\"a\":".to_vec()),
        Just(b"&a [*a,*a,*a]".to_vec()),
        Just(b"\"".to_vec()),
        Just(b":".to_vec()),
        Just(b"\t".to_vec()),
        prop::collection::vec(any::<u8>(), 1..16),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Flip(p, b)),
        (any::<usize>(), hostile_piece()).prop_map(|(p, v)| Mutation::Insert(p, v)),
        (any::<usize>(), 1usize..64).prop_map(|(p, n)| Mutation::Delete(p, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1usize..256).prop_map(|(p, n)| Mutation::Duplicate(p, n)),
    ]
}

fn apply(seed: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for m in muts {
        let len = v.len().max(1);
        match m {
            Mutation::Flip(p, b) => {
                if !v.is_empty() {
                    let i = p % v.len();
                    v[i] ^= b | 1;
                }
            }
            Mutation::Insert(p, bytes) => {
                let i = p % (v.len() + 1);
                v.splice(i..i, bytes.iter().copied());
            }
            Mutation::Delete(p, n) => {
                let i = p % len;
                let end = (i + n).min(v.len());
                if i < end {
                    v.drain(i..end);
                }
            }
            Mutation::Truncate(p) => v.truncate(p % len),
            Mutation::Duplicate(p, n) => {
                let i = p % len;
                let end = (i + n).min(v.len());
                if i < end {
                    let part = v[i..end].to_vec();
                    v.splice(end..end, part);
                }
            }
        }
    }
    v
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..8)
}

/// Seeds, read once per test binary.
struct Seeds {
    log: Vec<u8>,
    dumps: Vec<Vec<u8>>,
    filters: Vec<Vec<u8>>,
    tables: Vec<String>,
    manifests: Vec<Vec<u8>>,
}

fn seeds() -> &'static Seeds {
    static SEEDS: std::sync::OnceLock<Seeds> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut filters = Vec::new();
        for dir in ["http", "tcp"] {
            let path = fixtures().join("istio/rbac-builder").join(dir);
            let mut names: Vec<_> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            filters.extend(names.iter().take(6).map(|p| std::fs::read(p).unwrap()));
        }
        Seeds {
            log: read("envoy-logs/istio-proxy-samples.log"),
            dumps: vec![
                read("istio/authz-check/configdump-1.25.json"),
                read("istio/authz-check/configdump-1.19.json"),
            ],
            filters,
            tables: vec![
                String::from_utf8(read("istio/authz-check/configdump-1.25.expected.txt")).unwrap(),
                String::from_utf8(read("istio/authz-check/configdump-1.19.expected.txt")).unwrap(),
            ],
            manifests: vec![
                repo_file("examples/walkthrough/istio-np-1.yaml"),
                repo_file("examples/walkthrough/istio-np-2.yaml"),
                repo_file("examples/walkthrough/00-namespaces.yaml"),
            ],
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// classify_line on every mutated log line, both scopes; RBAC-only never
    /// finds more than All.
    #[test]
    fn fuzz_classify_line(muts in mutations(), pick in any::<usize>()) {
        let log = &seeds().log;
        let lines: Vec<&[u8]> = log.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        let line = apply(lines[pick % lines.len()], &muts);
        let all = classify_line(&line, Scope::All);
        let rbac = classify_line(&line, Scope::RbacOnly);
        if rbac.is_rbac_related() {
            prop_assert!(all.is_rbac_related(), "{:?} vs {:?}", rbac, all);
        }
    }

    /// LogReader over a mutated log, in small random chunks, agrees with the
    /// slice scanner line for line.
    #[test]
    fn fuzz_log_reader(muts in mutations(), cap in 1usize..512) {
        let log = apply(&seeds().log, &muts);
        let streamed: Vec<_> = LogReader::new(
            std::io::BufReader::with_capacity(cap, Cursor::new(log.clone())),
            Scope::All,
        )
        .map(|e| e.map(|e| (e.line_no, format!("{:?}", e.line))))
        .collect::<Result<_, _>>()
        .unwrap();
        let sliced: Vec<_> = scan_slice(&log, Scope::All)
            .map(|e| (e.line_no, format!("{:?}", e.line)))
            .collect();
        prop_assert_eq!(streamed, sliced);
    }

    /// A mutated Istio config dump is analysed or refused with an error.
    #[test]
    fn fuzz_analyze_config_dump(muts in mutations(), pick in any::<bool>()) {
        let seed = &seeds().dumps[usize::from(pick)];
        let _ = analyze_config_dump(&apply(seed, &muts));
    }

    /// A dump cut anywhere inside is invalid JSON, hence an error (never a
    /// report built from half a dump).
    #[test]
    fn truncated_config_dump_is_an_error(cut in any::<usize>()) {
        let seed = &seeds().dumps[0];
        let end = cut % (seed.len() - 2) + 1;
        // Cutting only trailing whitespace leaves a valid document.
        prop_assume!(!seed[end..].iter().all(u8::is_ascii_whitespace));
        prop_assert!(analyze_config_dump(&seed[..end]).is_err());
    }

    /// Mutated RBAC filter configs (YAML and JSON) never panic.
    #[test]
    fn fuzz_analyze_filter_config(muts in mutations(), pick in any::<usize>()) {
        let filters = &seeds().filters;
        let _ = analyze_filter_config(&apply(&filters[pick % filters.len()], &muts));
    }

    /// istioctl's `authz check` table, mutated; rows parsed from an unmutated
    /// table with its last line removed are a prefix of the full parse.
    #[test]
    fn fuzz_parse_authz_check(muts in mutations(), pick in any::<bool>()) {
        let table = &seeds().tables[usize::from(pick)];
        let mutated = String::from_utf8_lossy(&apply(table.as_bytes(), &muts)).into_owned();
        let _ = parse_authz_check(&mutated);
        let full = parse_authz_check(table).unwrap();
        let short = table.trim_end().rsplit_once('\n').map(|(a, _)| a).unwrap_or("");
        if let Ok(rows) = parse_authz_check(short) {
            prop_assert!(rows.len() <= full.len());
            prop_assert_eq!(&full[..rows.len()], &rows[..]);
        }
    }

    /// Label selectors: any text parses or errors; a parsed selector prints to
    /// text that parses to the same selector.
    #[test]
    fn fuzz_selector_parse(
        parts in prop::collection::vec(prop_oneof![
            Just("app".to_string()), Just("=".to_string()), Just("==".to_string()),
            Just("!=".to_string()), Just(",".to_string()), Just(" in ".to_string()),
            Just(" notin ".to_string()), Just("(".to_string()), Just(")".to_string()),
            Just("!".to_string()), Just("a.b/c-d_e".to_string()), Just("x".to_string()),
            Just(" ".to_string()), "\\PC{0,4}",
        ], 0..12)
    ) {
        let text = parts.concat();
        if let Ok(sel) = Selector::parse(&text) {
            let printed = sel.to_string();
            let again = Selector::parse(&printed);
            prop_assert!(again.is_ok(), "{text:?} printed as {printed:?} which does not parse");
            prop_assert_eq!(again.unwrap().to_string(), printed);
        }
    }

    /// Mutated Kubernetes manifests (multi-document YAML) parse or error.
    #[test]
    fn fuzz_parse_manifests(muts in mutations(), pick in any::<usize>()) {
        let m = &seeds().manifests;
        let text = String::from_utf8_lossy(&apply(&m[pick % m.len()], &muts)).into_owned();
        let _ = parse_manifests(&text);
    }
}

/// Billion laughs: nine levels of nine aliases would expand to 9^9 nodes.
/// The parser must answer (error or a bounded result) instead of expanding.
#[test]
fn yaml_bomb_in_manifests_is_bounded() {
    let mut bomb = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb, namespace: x}\ndata:\n  a0: &a0 \"lol\"\n",
    );
    for i in 1..10 {
        let prev = format!("*a{}", i - 1);
        bomb.push_str(&format!(
            "  a{i}: &a{i} [{}]\n",
            std::iter::repeat_n(prev.as_str(), 9)
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    // Any answer is fine as long as it comes; a typed error is what we expect.
    let _ = parse_manifests(&bomb);
    let _ = analyze_filter_config(bomb.as_bytes());
}
