//! The NetworkPolicy engine against np-guard/netpol-analyzer's expected
//! connectivity, an independent implementation. Every case folder under
//! `tests/fixtures/netpol-analyzer/` is loaded from its own files and checked
//! two ways:
//!
//! - strictly, verdict by verdict: for every ordered pair of pods of distinct
//!   workloads (named as netpol-analyzer names them), and every pod with every
//!   sample address outside the cluster (both ends of every range any line
//!   lists, plus 0.0.0.0 and 255.255.255.255), on every port named in the
//!   expected file, in any policy or by any container (plus 1, 9999 and
//!   65535), on TCP, UDP and SCTP, `evaluate_network` must say allowed exactly
//!   when the line for that pair (the external range looked up for that
//!   workload and direction) allows the port; and every expected line must be
//!   hit on a port it allows;
//! - whole: `connectivity::connlist` must print the expected file's lines,
//!   in its order (lines naming netpol-analyzer's `{ingress-controller}`
//!   pseudo-peer, which comes from Routes we do not model, are set aside).
//!
//! A mutated expected line must make the strict comparison fail.

mod common_engine;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use meshpolicy::connectivity::{ConnectionSet, Peer, WorkloadRef, connlist};
use meshpolicy::manifests::Objects;
use meshpolicy::{Cluster, ClusterOptions, Endpoint, Pod, Protocol, parse_manifests};

const PROTOCOLS: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

struct Case {
    cluster: Cluster,
    objects: Objects,
}

fn load(dir: &Path) -> Case {
    let mut objects = Objects::default();
    for f in common_engine::files_with_ext(dir, &["yaml", "yml", "json"]) {
        let fname = f.file_name().unwrap().to_string_lossy().to_string();
        if fname.contains("connlist") {
            continue; // expected output of the other tool, not input
        }
        let o = parse_manifests(&common_engine::read(&f))
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        meshpolicy::whatif::merge_objects(&mut objects, o);
    }
    let cluster = Cluster::from_objects(objects.clone(), ClusterOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    Case { cluster, objects }
}

/// Expected lines by (source, destination); lines whose peers are not ours
/// (`{ingress-controller}`) are returned apart.
type Expected = BTreeMap<(Peer, Peer), (usize, ConnectionSet)>;

fn parse_expected(text: &str) -> (Expected, Vec<String>) {
    let mut out = Expected::new();
    let mut other = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (pair, conn) = line.split_once(" : ").expect("`SRC => DST : CONN`");
        let (src, dst) = pair.split_once(" => ").expect("`SRC => DST`");
        match (src.parse::<Peer>(), dst.parse::<Peer>()) {
            (Ok(s), Ok(d)) => {
                let c: ConnectionSet = conn.parse().unwrap_or_else(|e| panic!("line {i}: {e}"));
                out.insert((s, d), (i, c));
            }
            _ => other.push(line.to_string()),
        }
    }
    (out, other)
}

/// Every port worth probing: named in the expected file (both ends of each
/// range), in any policy (numbers, endPorts, named ports resolved on every
/// container), declared by any container, plus 1, 9999 and 65535.
fn ports_to_probe(case: &Case, expected: &Expected) -> BTreeSet<u16> {
    let mut ports: BTreeSet<u16> = BTreeSet::from([1, 9999, 65535]);
    for (_, c) in expected.values() {
        for p in PROTOCOLS {
            for &(a, b) in c.ports(p).ranges() {
                ports.insert(a);
                ports.insert(b);
            }
        }
    }
    let pods = case.cluster.pods();
    for p in pods {
        ports.extend(p.ports.iter().map(|cp| cp.port));
    }
    for np in &case.objects.network_policies {
        let spec = np.spec.as_ref().expect("spec");
        let rule_ports = spec
            .ingress
            .iter()
            .flatten()
            .flat_map(|r| r.ports.iter().flatten())
            .chain(
                spec.egress
                    .iter()
                    .flatten()
                    .flat_map(|r| r.ports.iter().flatten()),
            );
        for rp in rule_ports {
            match &rp.port {
                Some(IntOrString::Int(n)) => {
                    ports.insert(u16::try_from(*n).unwrap());
                }
                Some(IntOrString::String(name)) => {
                    for p in pods {
                        for cp in &p.ports {
                            if cp.name.as_deref() == Some(name.as_str()) {
                                ports.insert(cp.port);
                            }
                        }
                    }
                    if let Ok(n) = name.parse::<u16>() {
                        ports.insert(n);
                    }
                }
                None => {}
            }
            if let Some(e) = rp.end_port {
                ports.insert(u16::try_from(e).unwrap());
            }
        }
    }
    ports
}

#[derive(Debug, Default)]
struct Outcome {
    checks: usize,
    mismatches: Vec<String>,
    /// Expected lines never hit on a port they allow.
    unhit: Vec<String>,
    /// Lines whose peers we do not model.
    other: Vec<String>,
}

fn strict_compare(case: &Case, expected_text: &str) -> Outcome {
    let (expected, other) = parse_expected(expected_text);
    let ports = ports_to_probe(case, &expected);
    let cluster = &case.cluster;

    let mut workloads: BTreeMap<WorkloadRef, Vec<&Pod>> = BTreeMap::new();
    for p in cluster.pods() {
        workloads.entry(WorkloadRef::of(p)).or_default().push(p);
    }
    assert!(!workloads.is_empty(), "no workloads");

    let mut out = Outcome {
        other,
        ..Outcome::default()
    };
    let mut hit: BTreeSet<(Peer, Peer)> = BTreeSet::new();
    let mut check = |se: &Endpoint, de: &Endpoint, key: Option<(Peer, Peer)>, what: &str| {
        let line = key.as_ref().and_then(|k| expected.get(k));
        for proto in PROTOCOLS {
            for &port in &ports {
                let want = line.is_some_and(|(_, c)| c.contains(proto, port));
                let v = cluster
                    .evaluate_network(se, de, port, proto)
                    .expect("endpoints exist");
                out.checks += 1;
                if v.allowed != want {
                    out.mismatches.push(format!(
                        "{what} {proto} {port}: expected {}, engine says {} ({})",
                        if want { "allowed" } else { "denied" },
                        if v.allowed { "allowed" } else { "denied" },
                        v.explanation
                    ));
                } else if want {
                    hit.insert(key.clone().unwrap());
                }
            }
        }
    };

    for (sw, spods) in &workloads {
        for (dw, dpods) in &workloads {
            if sw == dw {
                continue;
            }
            let key = (Peer::Workload(sw.clone()), Peer::Workload(dw.clone()));
            for sp in spods {
                for dp in dpods {
                    let what = format!("{sw} ({}) => {dw} ({})", sp.name, dp.name);
                    check(
                        &Endpoint::pod(&sp.namespace, &sp.name),
                        &Endpoint::pod(&dp.namespace, &dp.name),
                        Some(key.clone()),
                        &what,
                    );
                }
            }
        }
    }

    // External samples: both ends of every listed range, and the two ends of the space.
    let mut samples: BTreeSet<Ipv4Addr> =
        BTreeSet::from([Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST]);
    for (s, d) in expected.keys() {
        for p in [s, d] {
            if let Peer::External { start, end } = p {
                samples.insert(*start);
                samples.insert(*end);
            }
        }
    }
    // The range listed for this workload and direction that holds `ip`, if any.
    let lookup = |w: &WorkloadRef, ip: Ipv4Addr, inbound: bool| {
        expected.keys().find_map(|(s, d)| {
            let (ext, wl) = if inbound { (s, d) } else { (d, s) };
            match (ext, wl) {
                (Peer::External { start, end }, Peer::Workload(x))
                    if x == w && (*start..=*end).contains(&ip) =>
                {
                    Some((s.clone(), d.clone()))
                }
                _ => None,
            }
        })
    };
    for (w, pods) in &workloads {
        for pod in pods {
            let pe = Endpoint::pod(&pod.namespace, &pod.name);
            for &ip in &samples {
                let ee = Endpoint::External { ip: IpAddr::V4(ip) };
                check(
                    &ee,
                    &pe,
                    lookup(w, ip, true),
                    &format!("{ip} => {w} ({})", pod.name),
                );
                check(
                    &pe,
                    &ee,
                    lookup(w, ip, false),
                    &format!("{w} ({}) => {ip}", pod.name),
                );
            }
        }
    }

    out.unhit = expected
        .iter()
        .filter(|(k, _)| !hit.contains(*k))
        .map(|(k, (i, c))| format!("line {}: {} => {} : {c}", i + 1, k.0, k.1))
        .collect();
    out
}

fn cases() -> Vec<PathBuf> {
    let root = common_engine::fixture("netpol-analyzer");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected_connlist.txt").is_file())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 5,
        "netpol-analyzer cases under {}",
        root.display()
    );
    cases
}

#[test]
fn engine_agrees_with_netpol_analyzer_verdict_by_verdict() {
    let mut failures = Vec::new();
    for dir in cases() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let case = load(&dir);
        let r = strict_compare(
            &case,
            &common_engine::read(&dir.join("expected_connlist.txt")),
        );
        eprintln!(
            "{name}: {} verdicts checked, {} disagree, {} lines never hit, {} lines name peers we do not model",
            r.checks,
            r.mismatches.len(),
            r.unhit.len(),
            r.other.len()
        );
        assert!(r.checks > 0);
        failures.extend(r.mismatches.iter().map(|m| format!("{name}: {m}")));
        failures.extend(
            r.unhit
                .iter()
                .map(|u| format!("{name}: expected line never hit on a port it allows: {u}")),
        );
        for o in &r.other {
            assert!(
                o.starts_with("{ingress-controller} => "),
                "{name}: unparsed line {o}"
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn connlist_prints_netpol_analyzers_lines() {
    for dir in cases() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let case = load(&dir);
        let want: Vec<String> = common_engine::read(&dir.join("expected_connlist.txt"))
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("{ingress-controller}"))
            .map(str::to_string)
            .collect();
        let got: Vec<String> = connlist(&case.cluster)
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(got, want, "{name}");
    }
}

/// Each mutation of one expected line (a port moved, a protocol changed, a
/// connection dropped, an external range cut) must be caught.
#[test]
fn strict_comparison_fails_on_a_mutated_line() {
    let mut caught = 0;
    for dir in cases() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let case = load(&dir);
        let text = common_engine::read(&dir.join("expected_connlist.txt"));
        let lines: Vec<&str> = text.lines().collect();
        let mutations: Vec<(usize, String)> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.starts_with('{'))
            .flat_map(|(i, l)| {
                let mut m = Vec::new();
                if l.contains(" : TCP ") {
                    m.push((i, l.replacen(" : TCP ", " : UDP ", 1)));
                }
                if let Some((head, conn)) = l.rsplit_once(" : ")
                    && let Ok(c) = conn.parse::<ConnectionSet>()
                    && !c.is_all()
                {
                    m.push((i, format!("{head} : All Connections")));
                }
                if l.contains("0.0.0.0-255.255.255.255[External]") {
                    m.push((
                        i,
                        l.replace("0.0.0.0-255.255.255.255", "0.0.0.0-127.255.255.255"),
                    ));
                }
                m.push((i, String::new())); // the line dropped
                m
            })
            .take(4)
            .collect();
        assert!(!mutations.is_empty(), "{name}: nothing to mutate");
        for (i, mutated) in mutations {
            let mut ls: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            ls[i] = mutated.clone();
            let r = strict_compare(&case, &ls.join("\n"));
            assert!(
                !r.mismatches.is_empty() || !r.unhit.is_empty(),
                "{name}: line {} mutated to {mutated:?} went unnoticed",
                i + 1
            );
            caught += 1;
        }
    }
    assert!(caught >= 10);
}
