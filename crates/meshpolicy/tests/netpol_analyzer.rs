//! The NetworkPolicy engine against np-guard/netpol-analyzer's expected
//! connectivity, an independent implementation: every case folder under
//! `tests/fixtures/netpol-analyzer/` is loaded from its own files, and for
//! every ordered pair of workloads, every port the destination declares plus
//! one it does not, the engine must agree with `expected_connlist.txt`
//! (listed => allowed on that port, absent => denied). External peers
//! (`A-B[External]`) are checked with sample addresses in and out of range.

mod common_engine;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use meshpolicy::{Cluster, ClusterOptions, Endpoint, Pod, Protocol, parse_manifests};

/// Allowed connections of one line.
#[derive(Debug, Clone, Default)]
struct ConnSet {
    all: bool,
    ranges: Vec<(Protocol, u16, u16)>,
}

impl ConnSet {
    fn parse(s: &str) -> Self {
        let s = s.trim();
        if s == "All Connections" {
            return Self {
                all: true,
                ranges: Vec::new(),
            };
        }
        let mut ranges = Vec::new();
        let mut proto: Option<Protocol> = None;
        for tok in s.split([',', ';']) {
            let mut tok = tok.trim();
            if let Some((head, rest)) = tok.split_once(' ')
                && let Ok(p) = head.parse::<Protocol>()
            {
                proto = Some(p);
                tok = rest.trim();
            }
            let p = proto.unwrap_or_else(|| panic!("no protocol before {tok:?} in {s:?}"));
            let (a, b) = match tok.split_once('-') {
                Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                None => {
                    let n: u16 = tok
                        .parse()
                        .unwrap_or_else(|_| panic!("port {tok:?} in {s:?}"));
                    (n, n)
                }
            };
            ranges.push((p, a, b));
        }
        Self { all: false, ranges }
    }

    fn allows(&self, proto: Protocol, port: u16) -> bool {
        self.all
            || self
                .ranges
                .iter()
                .any(|&(p, a, b)| p == proto && (a..=b).contains(&port))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Peer {
    Workload(String),
    External(Ipv4Addr, Ipv4Addr),
    Other(String),
}

fn parse_peer(s: &str) -> Peer {
    let s = s.trim();
    if let Some(range) = s.strip_suffix("[External]") {
        let (a, b) = range.split_once('-').expect("external range");
        return Peer::External(a.parse().unwrap(), b.parse().unwrap());
    }
    if s.starts_with('{') {
        return Peer::Other(s.to_string());
    }
    Peer::Workload(s.to_string())
}

fn workload_id(p: &Pod) -> String {
    match &p.owner {
        Some(o) => format!("{}/{}[{}]", p.namespace, o.name, o.kind),
        None => format!("{}/{}[Pod]", p.namespace, p.name),
    }
}

const EXTERNAL_SAMPLES: [Ipv4Addr; 3] = [
    Ipv4Addr::new(8, 8, 8, 8),
    Ipv4Addr::new(192, 0, 2, 10),
    Ipv4Addr::new(10, 200, 3, 4),
];
const EXTERNAL_PORTS: [(Protocol, u16); 4] = [
    (Protocol::Tcp, 80),
    (Protocol::Tcp, 443),
    (Protocol::Udp, 53),
    (Protocol::Tcp, 8080),
];

struct CaseResult {
    checks: usize,
    mismatches: Vec<String>,
    unused_lines: Vec<String>,
}

fn run_case(dir: &std::path::Path) -> CaseResult {
    let mut objects = meshpolicy::workload::Objects::default();
    for f in common_engine::files_with_ext(dir, &["yaml", "yml", "json"]) {
        let fname = f.file_name().unwrap().to_string_lossy().to_string();
        if fname.contains("connlist") {
            continue; // expected output of the other tool, not input
        }
        let o = parse_manifests(&common_engine::read(&f))
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        objects.namespaces.extend(o.namespaces);
        objects.pods.extend(o.pods);
        objects.template_pods.extend(o.template_pods);
        objects.network_policies.extend(o.network_policies);
        objects
            .authorization_policies
            .extend(o.authorization_policies);
    }
    let cluster = Cluster::from_objects(objects, ClusterOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));

    let expected_text = common_engine::read(&dir.join("expected_connlist.txt"));
    let mut expected: BTreeMap<(Peer, Peer), ConnSet> = BTreeMap::new();
    for line in expected_text.lines().filter(|l| !l.trim().is_empty()) {
        let (pair, conn) = line.split_once(" : ").expect("`SRC => DST : CONN`");
        let (src, dst) = pair.split_once(" => ").expect("`SRC => DST`");
        expected.insert((parse_peer(src), parse_peer(dst)), ConnSet::parse(conn));
    }

    let mut workloads: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for p in cluster.pods() {
        workloads.entry(workload_id(p)).or_default().push(p);
    }
    assert!(!workloads.is_empty(), "{}: no workloads", dir.display());

    let mut used: BTreeSet<(Peer, Peer)> = BTreeSet::new();
    let mut checks = 0;
    let mut mismatches = Vec::new();
    let mut check = |src: &Endpoint,
                     dst: &Endpoint,
                     key: &(Peer, Peer),
                     proto: Protocol,
                     port: u16,
                     expected: &BTreeMap<(Peer, Peer), ConnSet>,
                     used: &mut BTreeSet<(Peer, Peer)>| {
        let want = expected.get(key).is_some_and(|c| c.allows(proto, port));
        if expected.contains_key(key) {
            used.insert(key.clone());
        }
        let v = cluster
            .evaluate_network(src, dst, port, proto)
            .expect("endpoints exist");
        checks += 1;
        if v.allowed != want {
            mismatches.push(format!(
                "{:?} => {:?} {proto} {port}: expected {}, engine says {} ({})",
                key.0,
                key.1,
                if want { "allowed" } else { "denied" },
                if v.allowed { "allowed" } else { "denied" },
                v.explanation
            ));
        }
    };

    let ids: Vec<&String> = workloads.keys().collect();
    for s in &ids {
        for d in &ids {
            if s == d {
                continue;
            }
            let dst_pods = &workloads[*d];
            let mut ports: BTreeSet<(Protocol, u16)> = dst_pods
                .iter()
                .flat_map(|p| p.ports.iter().map(|cp| (cp.protocol, cp.port)))
                .collect();
            let undeclared = [9999u16, 12345, 31337]
                .into_iter()
                .find(|n| !ports.contains(&(Protocol::Tcp, *n)))
                .expect("some undeclared port");
            ports.insert((Protocol::Tcp, undeclared));
            let key = (Peer::Workload((*s).clone()), Peer::Workload((*d).clone()));
            for sp in &workloads[*s] {
                for dp in dst_pods {
                    let se = Endpoint::pod(&sp.namespace, &sp.name);
                    let de = Endpoint::pod(&dp.namespace, &dp.name);
                    for &(proto, port) in &ports {
                        check(&se, &de, &key, proto, port, &expected, &mut used);
                    }
                }
            }
        }
    }

    // External peers: sample addresses, each checked against every external line's range.
    let external_ranges: BTreeSet<(Ipv4Addr, Ipv4Addr)> = expected
        .keys()
        .flat_map(|(a, b)| [a, b])
        .filter_map(|p| match p {
            Peer::External(a, b) => Some((*a, *b)),
            _ => None,
        })
        .collect();
    let key_for_ip = |ip: Ipv4Addr, wl: &str, outbound: bool| {
        let range = external_ranges
            .iter()
            .find(|(a, b)| (*a..=*b).contains(&ip))
            .copied()
            .unwrap_or((ip, ip));
        let ext = Peer::External(range.0, range.1);
        let w = Peer::Workload(wl.to_string());
        if outbound { (w, ext) } else { (ext, w) }
    };
    for (wl, pods) in &workloads {
        for pod in pods {
            let pe = Endpoint::pod(&pod.namespace, &pod.name);
            let mut inbound_ports: BTreeSet<(Protocol, u16)> =
                pod.ports.iter().map(|cp| (cp.protocol, cp.port)).collect();
            inbound_ports.insert((Protocol::Tcp, 9999));
            for ip in EXTERNAL_SAMPLES {
                let ee = Endpoint::External { ip: IpAddr::V4(ip) };
                let k_in = key_for_ip(ip, wl, false);
                for &(proto, port) in &inbound_ports {
                    check(&ee, &pe, &k_in, proto, port, &expected, &mut used);
                }
                let k_out = key_for_ip(ip, wl, true);
                for (proto, port) in EXTERNAL_PORTS {
                    check(&pe, &ee, &k_out, proto, port, &expected, &mut used);
                }
            }
        }
    }

    let unused_lines = expected
        .keys()
        .filter(|k| !used.contains(*k))
        .map(|k| format!("{k:?}"))
        .collect();
    CaseResult {
        checks,
        mismatches,
        unused_lines,
    }
}

#[test]
fn engine_agrees_with_netpol_analyzer_on_every_case() {
    let root = common_engine::fixture("netpol-analyzer");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected_connlist.txt").is_file())
        .collect();
    cases.sort();
    assert!(
        !cases.is_empty(),
        "no netpol-analyzer cases under {}",
        root.display()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let r = run_case(case);
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        eprintln!(
            "{name}: {} verdicts checked, {} disagree, {} expected lines not exercised",
            r.checks,
            r.mismatches.len(),
            r.unused_lines.len()
        );
        for m in &r.mismatches {
            failures.push(format!("{name}: {m}"));
        }
        for u in &r.unused_lines {
            // Lines naming peers the model has no workload for (e.g. netpol-analyzer's
            // `{ingress-controller}` pseudo-peer) cannot be exercised; anything else
            // means the test lost track of a workload.
            if !u.contains("Other(") {
                failures.push(format!("{name}: expected line never exercised: {u}"));
            } else {
                eprintln!("{name}: not a modelled peer, skipped: {u}");
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
