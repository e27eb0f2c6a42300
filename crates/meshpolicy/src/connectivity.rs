//! Connectivity in np-guard/netpol-analyzer's notation, so that our results
//! compare line for line with that independent tool.
//!
//! netpol-analyzer reports, per ordered pair of peers, the whole set of
//! connections NetworkPolicy allows. A peer is a workload named
//! `namespace/name[Kind]` after the controller that owns its pods (`[Pod]` for
//! a pod without one; a static pod, owned by its Node, is its own workload),
//! or an address range outside the cluster, `A.B.C.D-E.F.G.H[External]`. The
//! ranges come from cutting the IPv4 space at every edge of every ipBlock the
//! policies name (ingress rules cut the sources, egress rules the
//! destinations), so all addresses of one range are treated alike. A
//! connection set prints as `All Connections`, `No Connections`, or
//! protocols with ascending ports and ranges, `SCTP 1-79,TCP 8080,UDP 53`
//! (protocols sorted by name, as netpol-analyzer sorts them). This module
//! computes that data ([`ConnectionSet`], [`Peer`], [`connlist`]); rendering
//! is `Display`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use crate::cluster::Cluster;
use crate::netpol::Direction;
use crate::workload::{Endpoint, Pod, Protocol};

/// The protocols NetworkPolicy knows, in netpol-analyzer's printing order.
pub const PROTOCOLS: [Protocol; 3] = [Protocol::Sctp, Protocol::Tcp, Protocol::Udp];

/// A set of ports of one protocol: sorted, disjoint, non-touching ranges within 1-65535.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortSet(Vec<(u16, u16)>);

impl PortSet {
    /// Every port, 1-65535.
    pub fn full() -> Self {
        Self(vec![(1, 65535)])
    }

    /// The ranges, ascending.
    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.0 == [(1, 65535)]
    }

    pub fn contains(&self, port: u16) -> bool {
        self.0.iter().any(|&(a, b)| (a..=b).contains(&port))
    }

    /// Adds `lo..=hi` (clamped to 1-65535), merging touching ranges.
    pub fn add(&mut self, lo: u16, hi: u16) {
        let lo = lo.max(1);
        if hi < lo {
            return;
        }
        self.0.push((lo, hi));
        self.0.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(self.0.len());
        for &(a, b) in &self.0 {
            match merged.last_mut() {
                Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        self.0 = merged;
    }

    pub fn union(&self, other: &Self) -> Self {
        let mut out = self.clone();
        for &(a, b) in &other.0 {
            out.add(a, b);
        }
        out
    }

    pub fn intersect(&self, other: &Self) -> Self {
        let mut out = Self::default();
        for &(a, b) in &self.0 {
            for &(c, d) in &other.0 {
                let (lo, hi) = (a.max(c), b.min(d));
                if lo <= hi {
                    out.add(lo, hi);
                }
            }
        }
        out
    }
}

impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(a, b)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if a == b {
                write!(f, "{a}")?;
            } else {
                write!(f, "{a}-{b}")?;
            }
        }
        Ok(())
    }
}

/// The connections allowed between two peers: ports per protocol. It is
/// `All Connections` exactly when every protocol has every port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionSet {
    /// Indexed like [`PROTOCOLS`].
    ports: [PortSet; 3],
}

fn index(p: Protocol) -> usize {
    match p {
        Protocol::Sctp => 0,
        Protocol::Tcp => 1,
        Protocol::Udp => 2,
    }
}

impl ConnectionSet {
    /// No connections.
    pub fn none() -> Self {
        Self::default()
    }

    /// Every port of every protocol.
    pub fn all() -> Self {
        Self {
            ports: [PortSet::full(), PortSet::full(), PortSet::full()],
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ports.iter().all(PortSet::is_empty)
    }

    pub fn is_all(&self) -> bool {
        self.ports.iter().all(PortSet::is_full)
    }

    /// The ports of one protocol.
    pub fn ports(&self, p: Protocol) -> &PortSet {
        &self.ports[index(p)]
    }

    pub fn contains(&self, p: Protocol, port: u16) -> bool {
        self.ports[index(p)].contains(port)
    }

    /// Adds `lo..=hi` of protocol `p`.
    pub fn add(&mut self, p: Protocol, lo: u16, hi: u16) {
        self.ports[index(p)].add(lo, hi);
    }

    /// Adds every port of protocol `p`.
    pub fn add_protocol(&mut self, p: Protocol) {
        self.add(p, 1, 65535);
    }

    pub fn union(&self, other: &Self) -> Self {
        Self {
            ports: std::array::from_fn(|i| self.ports[i].union(&other.ports[i])),
        }
    }

    pub fn intersect(&self, other: &Self) -> Self {
        Self {
            ports: std::array::from_fn(|i| self.ports[i].intersect(&other.ports[i])),
        }
    }
}

impl fmt::Display for ConnectionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_all() {
            return f.write_str("All Connections");
        }
        if self.is_empty() {
            return f.write_str("No Connections");
        }
        let mut first = true;
        for p in PROTOCOLS {
            let ports = self.ports(p);
            if ports.is_empty() {
                continue;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{p} {ports}")?;
        }
        Ok(())
    }
}

/// A connection set that is not in netpol-analyzer's notation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("connection set {text:?}: {reason}")]
pub struct ConnectionSetError {
    pub text: String,
    pub reason: String,
}

impl FromStr for ConnectionSet {
    type Err = ConnectionSetError;

    /// Reads `All Connections`, `No Connections` or `TCP 80,443,UDP 53,SCTP 1-9`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let err = |reason: String| ConnectionSetError {
            text: s.to_string(),
            reason,
        };
        match s {
            "All Connections" => return Ok(Self::all()),
            "No Connections" => return Ok(Self::none()),
            _ => {}
        }
        let mut out = Self::none();
        let mut proto: Option<Protocol> = None;
        for tok in s.split(',') {
            let mut tok = tok.trim();
            if let Some((head, rest)) = tok.split_once(' ') {
                proto = Some(
                    head.parse::<Protocol>()
                        .map_err(|e| err(format!("{e} before {rest:?}")))?,
                );
                tok = rest.trim();
            }
            let p = proto.ok_or_else(|| err(format!("no protocol before {tok:?}")))?;
            let num = |t: &str| {
                t.parse::<u16>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| err(format!("{t:?} is not a port in 1-65535")))
            };
            let (a, b) = match tok.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => {
                    let n = num(tok)?;
                    (n, n)
                }
            };
            if b < a {
                return Err(err(format!("range {a}-{b} is reversed")));
            }
            out.add(p, a, b);
        }
        Ok(out)
    }
}

/// A workload as netpol-analyzer names it: `namespace/name[Kind]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadRef {
    pub namespace: String,
    pub name: String,
    pub kind: String,
}

impl WorkloadRef {
    /// The workload of a pod: its owner (a Node owning a static pod does not
    /// count), or the pod itself as `[Pod]`.
    pub fn of(pod: &Pod) -> Self {
        match &pod.owner {
            Some(o) if o.kind != "Node" => Self {
                namespace: pod.namespace.clone(),
                name: o.name.clone(),
                kind: o.kind.clone(),
            },
            _ => Self {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                kind: "Pod".into(),
            },
        }
    }
}

impl fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}[{}]", self.namespace, self.name, self.kind)
    }
}

/// Either end of a connection line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    Workload(WorkloadRef),
    /// An inclusive IPv4 range outside the cluster.
    External {
        start: Ipv4Addr,
        end: Ipv4Addr,
    },
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Workload(w) => w.fmt(f),
            Self::External { start, end } => write!(f, "{start}-{end}[External]"),
        }
    }
}

/// A peer string that is not in netpol-analyzer's notation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("peer {0:?} is neither `namespace/name[Kind]` nor `A.B.C.D-E.F.G.H[External]`")]
pub struct PeerError(pub String);

impl FromStr for Peer {
    type Err = PeerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || PeerError(s.to_string());
        if let Some(range) = s.strip_suffix("[External]") {
            let (a, b) = range.split_once('-').ok_or_else(bad)?;
            return Ok(Self::External {
                start: a.parse().map_err(|_| bad())?,
                end: b.parse().map_err(|_| bad())?,
            });
        }
        let (head, kind) = s
            .strip_suffix(']')
            .and_then(|h| h.rsplit_once('['))
            .ok_or_else(bad)?;
        let (namespace, name) = head.split_once('/').ok_or_else(bad)?;
        if namespace.is_empty() || name.is_empty() || kind.is_empty() {
            return Err(bad());
        }
        Ok(Self::Workload(WorkloadRef {
            namespace: namespace.into(),
            name: name.into(),
            kind: kind.into(),
        }))
    }
}

/// One line of a connectivity list: `src => dst : conns`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Connection {
    pub src: Peer,
    pub dst: Peer,
    pub conns: ConnectionSet,
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} => {} : {}", self.src, self.dst, self.conns)
    }
}

/// The workloads of a model, each with the pod that stands for it (the first
/// one added), sorted by name.
pub fn workloads(cluster: &Cluster) -> BTreeMap<WorkloadRef, &Pod> {
    let mut out = BTreeMap::new();
    for p in cluster.pods() {
        out.entry(WorkloadRef::of(p)).or_insert(p);
    }
    out
}

/// The inclusive IPv4 ranges the policies' ipBlocks cut the address space
/// into, for sources (`Ingress`: ipBlocks of ingress rules) or destinations
/// (`Egress`), ascending and covering 0.0.0.0-255.255.255.255.
pub fn external_ranges(cluster: &Cluster, dir: Direction) -> Vec<(Ipv4Addr, Ipv4Addr)> {
    ranges_from_cuts(&cuts(cluster, dir))
}

/// Where ranges start: 0 and every first address after an edge of an ipBlock range.
fn cuts(cluster: &Cluster, dir: Direction) -> BTreeSet<u32> {
    let mut cuts = BTreeSet::from([0u32]);
    for p in &cluster.netpols {
        for (lo, hi) in p.ipv4_block_ranges(dir) {
            cuts.insert(lo);
            if let Some(next) = hi.checked_add(1) {
                cuts.insert(next);
            }
        }
    }
    cuts
}

fn ranges_from_cuts(cuts: &BTreeSet<u32>) -> Vec<(Ipv4Addr, Ipv4Addr)> {
    let starts: Vec<u32> = cuts.iter().copied().collect();
    starts
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let end = starts.get(i + 1).map_or(u32::MAX, |n| n - 1);
            (Ipv4Addr::from(s), Ipv4Addr::from(end))
        })
        .collect()
}

fn pod_endpoint(p: &Pod) -> Endpoint {
    Endpoint::pod(&p.namespace, &p.name)
}

fn external(ip: Ipv4Addr) -> Endpoint {
    Endpoint::External { ip: IpAddr::V4(ip) }
}

/// What NetworkPolicy allows from `src` to `dst` (a pair of the model's
/// endpoints) as one connection set. Unknown pods allow nothing.
fn conns(cluster: &Cluster, src: &Endpoint, dst: &Endpoint) -> ConnectionSet {
    let Ok(sides) = cluster.network_port_ranges(src, dst) else {
        return ConnectionSet::none();
    };
    let mut out = ConnectionSet::all();
    for side in sides {
        if let Some(ranges) = side.allowed {
            let mut allowed = ConnectionSet::none();
            for (p, a, b) in ranges {
                allowed.add(p, a, b);
            }
            out = out.intersect(&allowed);
        }
    }
    out
}

/// What NetworkPolicy allows from `src` to `dst` as one connection set
/// (unknown pods allow nothing).
pub fn allowed_connections(cluster: &Cluster, src: &Endpoint, dst: &Endpoint) -> ConnectionSet {
    conns(cluster, src, dst)
}

/// The model's allowed connectivity as netpol-analyzer lists it: every
/// ordered pair of distinct workloads, and every workload with every external
/// range, that has some allowed connection, sorted by source then destination.
pub fn connlist(cluster: &Cluster) -> Vec<Connection> {
    let wls = workloads(cluster);
    let mut out = Vec::new();
    for (sw, sp) in &wls {
        for (dw, dp) in &wls {
            if sw == dw {
                continue;
            }
            let c = conns(cluster, &pod_endpoint(sp), &pod_endpoint(dp));
            if !c.is_empty() {
                out.push(Connection {
                    src: Peer::Workload(sw.clone()),
                    dst: Peer::Workload(dw.clone()),
                    conns: c,
                });
            }
        }
    }
    for (start, end) in external_ranges(cluster, Direction::Ingress) {
        for (w, p) in &wls {
            let c = conns(cluster, &external(start), &pod_endpoint(p));
            if !c.is_empty() {
                out.push(Connection {
                    src: Peer::External { start, end },
                    dst: Peer::Workload(w.clone()),
                    conns: c,
                });
            }
        }
    }
    for (start, end) in external_ranges(cluster, Direction::Egress) {
        for (w, p) in &wls {
            let c = conns(cluster, &pod_endpoint(p), &external(start));
            if !c.is_empty() {
                out.push(Connection {
                    src: Peer::Workload(w.clone()),
                    dst: Peer::External { start, end },
                    conns: c,
                });
            }
        }
    }
    out.sort_by_key(|c| (c.src.to_string(), c.dst.to_string()));
    out
}

/// Kind of change between two connectivity lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiffKind {
    Changed,
    Added,
    Removed,
}

impl fmt::Display for DiffKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Changed => "changed",
            Self::Added => "added",
            Self::Removed => "removed",
        })
    }
}

/// One pair whose allowed connections differ between BEFORE and AFTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionDiff {
    pub kind: DiffKind,
    pub src: Peer,
    pub dst: Peer,
    pub before: ConnectionSet,
    pub after: ConnectionSet,
    /// Workloads of this pair that exist only on one side (added with an
    /// `added` line, removed with a `removed` line).
    pub new_or_lost: Vec<WorkloadRef>,
}

impl ConnectionDiff {
    /// netpol-analyzer's text line (`diff-type: ..., ref1: ..., ref2: ...`).
    pub fn np_guard_line(&self) -> String {
        let mut line = format!(
            "diff-type: {}, source: {}, destination: {}, ref1: {}, ref2: {}",
            self.kind, self.src, self.dst, self.before, self.after
        );
        if !self.new_or_lost.is_empty() {
            let names: Vec<String> = self.new_or_lost.iter().map(|w| w.to_string()).collect();
            line.push_str(&format!(
                ", workloads-diff-info: workload {} {}",
                names.join(" and "),
                self.kind
            ));
        }
        line
    }
}

fn classify(before: &ConnectionSet, after: &ConnectionSet) -> Option<DiffKind> {
    match (before.is_empty(), after.is_empty()) {
        _ if before == after => None,
        (true, _) => Some(DiffKind::Added),
        (_, true) => Some(DiffKind::Removed),
        _ => Some(DiffKind::Changed),
    }
}

/// The semantic difference between two models, as netpol-analyzer's `diff`
/// computes it: every pair whose allowed connections differ. External ranges
/// are the maximal runs of addresses over which (before, after) stays the
/// same, on the cuts of both models. Sorted as netpol-analyzer prints them:
/// changed, added, removed, each by its text line.
pub fn diff(before: &Cluster, after: &Cluster) -> Vec<ConnectionDiff> {
    let wb = workloads(before);
    let wa = workloads(after);
    let all: BTreeSet<&WorkloadRef> = wb.keys().chain(wa.keys()).collect();
    let side = |m: &BTreeMap<WorkloadRef, &Pod>, w: &WorkloadRef| m.get(w).map(|p| pod_endpoint(p));
    let new_or_lost = |kind: DiffKind, ws: &[&WorkloadRef]| -> Vec<WorkloadRef> {
        let other = match kind {
            DiffKind::Added => &wb,
            DiffKind::Removed => &wa,
            DiffKind::Changed => return Vec::new(),
        };
        ws.iter()
            .filter(|w| !other.contains_key(**w))
            .map(|w| (*w).clone())
            .collect()
    };
    let mut out = Vec::new();
    for s in &all {
        for d in &all {
            if s == d {
                continue;
            }
            let pair_conns =
                |m: &BTreeMap<WorkloadRef, &Pod>, c: &Cluster| match (side(m, s), side(m, d)) {
                    (Some(a), Some(b)) => conns(c, &a, &b),
                    _ => ConnectionSet::none(),
                };
            let b = pair_conns(&wb, before);
            let a = pair_conns(&wa, after);
            if let Some(kind) = classify(&b, &a) {
                out.push(ConnectionDiff {
                    kind,
                    src: Peer::Workload((*s).clone()),
                    dst: Peer::Workload((*d).clone()),
                    new_or_lost: new_or_lost(kind, &[s, d]),
                    before: b,
                    after: a,
                });
            }
        }
    }
    for dir in [Direction::Ingress, Direction::Egress] {
        let mut cut = cuts(before, dir);
        cut.extend(cuts(after, dir));
        let ranges = ranges_from_cuts(&cut);
        for w in &all {
            let at = |m: &BTreeMap<WorkloadRef, &Pod>, c: &Cluster, ip: Ipv4Addr| match side(m, w) {
                None => ConnectionSet::none(),
                Some(p) if dir == Direction::Ingress => conns(c, &external(ip), &p),
                Some(p) => conns(c, &p, &external(ip)),
            };
            // Maximal runs of equal (before, after).
            let mut runs: Vec<(Ipv4Addr, Ipv4Addr, ConnectionSet, ConnectionSet)> = Vec::new();
            for &(start, end) in &ranges {
                let b = at(&wb, before, start);
                let a = at(&wa, after, start);
                match runs.last_mut() {
                    Some(last) if last.2 == b && last.3 == a => last.1 = end,
                    _ => runs.push((start, end, b, a)),
                }
            }
            for (start, end, b, a) in runs {
                let Some(kind) = classify(&b, &a) else {
                    continue;
                };
                let ext = Peer::External { start, end };
                let wl = Peer::Workload((*w).clone());
                let (src, dst) = if dir == Direction::Ingress {
                    (ext, wl)
                } else {
                    (wl, ext)
                };
                out.push(ConnectionDiff {
                    kind,
                    src,
                    dst,
                    new_or_lost: new_or_lost(kind, &[w]),
                    before: b,
                    after: a,
                });
            }
        }
    }
    out.sort_by_cached_key(|d| (d.kind, d.np_guard_line()));
    out
}

/// netpol-analyzer's text output of a diff: a `Connectivity diff:` header and
/// one line per change; empty when nothing changed.
pub fn render_np_guard_diff(diffs: &[ConnectionDiff]) -> String {
    if diffs.is_empty() {
        return String::new();
    }
    let mut out = String::from("Connectivity diff:\n");
    for d in diffs {
        out.push_str(&d.np_guard_line());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notation_round_trips_and_merges() {
        let c: ConnectionSet = "TCP 8080,9090,UDP 53".parse().unwrap();
        assert_eq!(c.to_string(), "TCP 8080,9090,UDP 53");
        let mut c = ConnectionSet::none();
        c.add(Protocol::Udp, 53, 53);
        c.add(Protocol::Tcp, 81, 65535);
        c.add(Protocol::Tcp, 1, 79);
        c.add(Protocol::Sctp, 7070, 7070);
        assert_eq!(c.to_string(), "SCTP 7070,TCP 1-79,81-65535,UDP 53");
        c.add(Protocol::Tcp, 80, 80);
        assert_eq!(c.ports(Protocol::Tcp).ranges(), &[(1, 65535)]);
        for p in PROTOCOLS {
            c.add_protocol(p);
        }
        assert_eq!(c.to_string(), "All Connections");
        assert_eq!(ConnectionSet::none().to_string(), "No Connections");
        assert!("TCP 0".parse::<ConnectionSet>().is_err());
        assert!("8080".parse::<ConnectionSet>().is_err());
    }

    #[test]
    fn intersection_of_port_sets() {
        let a: ConnectionSet = "TCP 1-100,UDP 53".parse().unwrap();
        let b: ConnectionSet = "TCP 50-60,90-200".parse().unwrap();
        assert_eq!(a.intersect(&b).to_string(), "TCP 50-60,90-100");
    }

    #[test]
    fn workloads_are_named_after_their_owner() {
        use crate::workload::Owner;
        let mut p = Pod::new("ns", "web-7d4-x2", Default::default());
        assert_eq!(WorkloadRef::of(&p).to_string(), "ns/web-7d4-x2[Pod]");
        p.owner = Some(Owner {
            kind: "ReplicaSet".into(),
            name: "web-7d4".into(),
        });
        assert_eq!(WorkloadRef::of(&p).to_string(), "ns/web-7d4[ReplicaSet]");
        p.owner = Some(Owner {
            kind: "Node".into(),
            name: "node-1".into(),
        });
        assert_eq!(WorkloadRef::of(&p).to_string(), "ns/web-7d4-x2[Pod]");
    }

    #[test]
    fn peers_parse() {
        let p: Peer = "0.0.0.0-127.255.255.255[External]".parse().unwrap();
        assert_eq!(p.to_string(), "0.0.0.0-127.255.255.255[External]");
        let w: Peer = "ns/a-b[Deployment]".parse().unwrap();
        assert_eq!(w.to_string(), "ns/a-b[Deployment]");
        assert!("{ingress-controller}".parse::<Peer>().is_err());
    }
}
