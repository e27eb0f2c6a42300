//! Kubernetes NetworkPolicy (networking.k8s.io/v1) evaluation with explanations.
//!
//! The CNI enforces NetworkPolicy before any sidecar sees a packet, so "which
//! layer blocked this?" starts here. A policy is validated and compiled once
//! ([`CompiledNetworkPolicy`]): selectors, peers, CIDRs, ports and protocols
//! are checked and bad input becomes a [`NetpolError`] naming the object,
//! never a silent allow. Evaluation (`Cluster::evaluate_network`) follows
//! the Kubernetes semantics: a pod is isolated in a direction when some policy
//! of its namespace selects it for that direction (policyTypes defaulting to
//! Ingress, plus Egress when egress rules exist); the connection is allowed in
//! that direction when any rule of any selecting policy admits the peer on the
//! port (union); egress of the source and ingress of the destination must both
//! allow. The verdict says which policies selected each side and which rule
//! allowed, or that none did.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use crate::selector::{Operator, Selector, SelectorError};
use crate::workload::{Endpoint, NAMESPACE_NAME_LABEL, Namespace, Pod, Protocol};

/// What matching a peer needs from the model: the namespaces' labels and
/// whether ipBlocks also match pod addresses (an option of the model).
pub(crate) struct PeerScope<'a> {
    pub(crate) namespaces: &'a std::collections::HashMap<String, Namespace>,
    pub(crate) ip_block_matches_pods: bool,
}

/// Errors from compiling NetworkPolicies or from evaluating against unknown endpoints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetpolError {
    /// The policy is malformed; `object` is `namespace/name`.
    #[error("networkpolicy {object}: {reason}")]
    Invalid { object: String, reason: String },
    /// A selector in the policy is invalid.
    #[error("networkpolicy {object}: {at}: {source}")]
    Selector {
        object: String,
        at: String,
        source: SelectorError,
    },
    /// The policy lacks metadata.name.
    #[error("networkpolicy without metadata.name")]
    MissingName,
    /// An endpoint names a pod the model does not have.
    #[error("pod {namespace}/{name} not found")]
    UnknownPod { namespace: String, name: String },
}

/// Traffic direction as NetworkPolicy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        })
    }
}

/// A policy by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PolicyRef {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One rule of one policy: `policy`, `direction`, index in that direction's list.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RuleRef {
    pub policy: PolicyRef,
    pub direction: Direction,
    pub rule_index: usize,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} rule {}",
            self.policy, self.direction, self.rule_index
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NsMatch {
    /// The policy's own namespace.
    Same,
    Selected(Selector),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Peer {
    Pods { namespaces: NsMatch, pods: Selector },
    IpBlock { cidr: IpNet, except: Vec<IpNet> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortSel {
    Any,
    Range(u16, u16),
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PortRule {
    protocol: Protocol,
    port: PortSel,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    /// Empty: every peer (including outside the cluster).
    peers: Vec<Peer>,
    /// Empty: every port and protocol.
    ports: Vec<PortRule>,
}

/// A validated NetworkPolicy, ready to evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledNetworkPolicy {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pod_selector: Selector,
    /// Some when the policy isolates selected pods for ingress.
    ingress: Option<Vec<Rule>>,
    /// Some when the policy isolates selected pods for egress.
    egress: Option<Vec<Rule>>,
}

/// The side of the destination port a rule is checked against.
pub(crate) struct PortSide<'a> {
    pub(crate) endpoint: Resolved<'a>,
    pub(crate) port: u16,
    pub(crate) protocol: Protocol,
}

#[derive(Clone, Copy)]
pub(crate) enum Resolved<'a> {
    Pod(&'a Pod),
    External(IpAddr),
}

impl CompiledNetworkPolicy {
    /// Validates and compiles a NetworkPolicy. A missing namespace means `default`.
    pub fn compile(np: &NetworkPolicy) -> Result<Self, NetpolError> {
        let (namespace, name) =
            crate::workload::namespaced_name(&np.metadata).ok_or(NetpolError::MissingName)?;
        let object = format!("{namespace}/{name}");
        let invalid = |reason: String| NetpolError::Invalid {
            object: object.clone(),
            reason,
        };
        let sel_err = |at: String, source: SelectorError| NetpolError::Selector {
            object: object.clone(),
            at,
            source,
        };
        let spec = np
            .spec
            .as_ref()
            .ok_or_else(|| invalid("missing required field spec".into()))?;
        let pod_selector = match &spec.pod_selector {
            Some(s) => Selector::from_label_selector(s)
                .map_err(|e| sel_err("spec.podSelector".into(), e))?,
            None => Selector::everything(),
        };
        let (mut has_ingress, mut has_egress) = (false, false);
        match &spec.policy_types {
            Some(types) if !types.is_empty() => {
                for t in types {
                    match t.as_str() {
                        "Ingress" => has_ingress = true,
                        "Egress" => has_egress = true,
                        other => {
                            return Err(invalid(format!(
                                "policyTypes entry {other:?} is not Ingress or Egress"
                            )));
                        }
                    }
                }
            }
            _ => {
                has_ingress = true;
                has_egress = spec.egress.as_ref().is_some_and(|e| !e.is_empty());
            }
        }
        let mut ingress = Vec::new();
        for (i, r) in spec.ingress.iter().flatten().enumerate() {
            let at = format!("ingress[{i}]");
            ingress.push(compile_rule(
                r.from.as_deref(),
                r.ports.as_deref(),
                &at,
                "from",
                &invalid,
                &sel_err,
            )?);
        }
        let mut egress = Vec::new();
        for (i, r) in spec.egress.iter().flatten().enumerate() {
            let at = format!("egress[{i}]");
            egress.push(compile_rule(
                r.to.as_deref(),
                r.ports.as_deref(),
                &at,
                "to",
                &invalid,
                &sel_err,
            )?);
        }
        Ok(Self {
            namespace,
            name,
            pod_selector,
            ingress: has_ingress.then_some(ingress),
            egress: has_egress.then_some(egress),
        })
    }

    /// `namespace/name` of the policy.
    pub fn policy_ref(&self) -> PolicyRef {
        PolicyRef {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// Whether the policy selects this pod (same namespace, podSelector matches).
    pub fn selects(&self, pod: &Pod) -> bool {
        pod.namespace == self.namespace && self.pod_selector.matches(&pod.labels)
    }

    /// The directions the policy isolates (its effective policyTypes).
    pub fn directions(&self) -> Vec<Direction> {
        let mut d = Vec::new();
        if self.ingress.is_some() {
            d.push(Direction::Ingress);
        }
        if self.egress.is_some() {
            d.push(Direction::Egress);
        }
        d
    }

    /// The IPv4 ranges (inclusive, as numbers) that the ipBlocks of this
    /// policy's rules in `dir` cover: each `cidr` minus its `except`s, split
    /// into contiguous ranges. Used to cut the space outside the cluster as
    /// netpol-analyzer does (the `connectivity` module).
    pub fn ipv4_block_ranges(&self, dir: Direction) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        for rule in self.rules(dir).unwrap_or_default() {
            for peer in &rule.peers {
                let Peer::IpBlock {
                    cidr: IpNet::V4(net),
                    except,
                } = peer
                else {
                    continue;
                };
                let mut parts = vec![(u32::from(net.network()), u32::from(net.broadcast()))];
                for e in except {
                    let IpNet::V4(e) = e else { continue };
                    let (elo, ehi) = (u32::from(e.network()), u32::from(e.broadcast()));
                    parts = parts
                        .into_iter()
                        .flat_map(|(lo, hi)| {
                            let mut keep = Vec::new();
                            if ehi < lo || elo > hi {
                                keep.push((lo, hi));
                            } else {
                                if elo > lo {
                                    keep.push((lo, elo - 1));
                                }
                                if ehi < hi {
                                    keep.push((ehi + 1, hi));
                                }
                            }
                            keep
                        })
                        .collect();
                }
                out.extend(parts);
            }
        }
        out
    }

    pub(crate) fn rules(&self, dir: Direction) -> Option<&[Rule]> {
        match dir {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }

    /// What the policy says, as data: the pods it selects, and for each
    /// direction it governs one line per rule (`ingress from namespace
    /// np-test-1 pods app=x on TCP 80`), or `ingress: denies all (no rules)`.
    pub fn describe(&self) -> NetpolDescription {
        let selects = if self.pod_selector.is_everything() {
            format!("all pods in namespace {}", self.namespace)
        } else {
            format!("pods {} in namespace {}", self.pod_selector, self.namespace)
        };
        let lines = |dir: Direction| -> Option<Vec<String>> {
            let rules = self.rules(dir)?;
            let mut out = Vec::new();
            if rules.is_empty() {
                out.push(format!("{dir}: denies all (no rules)"));
            }
            let word = if dir == Direction::Ingress {
                "from"
            } else {
                "to"
            };
            for r in rules {
                let peers = if r.peers.is_empty() {
                    "anywhere".to_string()
                } else {
                    r.peers
                        .iter()
                        .map(|p| describe_peer(p, &self.namespace))
                        .collect::<Vec<_>>()
                        .join(" or ")
                };
                out.push(format!("{dir} {word} {peers} {}", describe_ports(&r.ports)));
            }
            Some(out)
        };
        NetpolDescription {
            selects,
            directions: self.directions(),
            ingress: lines(Direction::Ingress),
            egress: lines(Direction::Egress),
        }
    }

    /// Human one-line summaries: `networkpolicy NS/NAME: selects PODS for
    /// DIRECTIONS`, then the rule lines of [`Self::describe`].
    pub fn summary(&self) -> Vec<String> {
        let d = self.describe();
        let dirs: Vec<String> = d.directions.iter().map(|d| d.to_string()).collect();
        let mut out = vec![format!(
            "networkpolicy {}/{}: selects {} for {}",
            self.namespace,
            self.name,
            d.selects,
            dirs.join(" and ")
        )];
        out.extend(d.ingress.into_iter().flatten());
        out.extend(d.egress.into_iter().flatten());
        out
    }
}

/// A NetworkPolicy described for people, as data the plugins render.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetpolDescription {
    /// The pods it selects (`pods app=x in namespace ns`).
    pub selects: String,
    /// The directions it governs (policyTypes).
    pub directions: Vec<Direction>,
    /// One line per ingress rule; None when ingress is not governed.
    pub ingress: Option<Vec<String>>,
    /// One line per egress rule; None when egress is not governed.
    pub egress: Option<Vec<String>>,
}

/// One-line summaries of a NetworkPolicy's rules (see [`CompiledNetworkPolicy::summary`]).
pub fn summarize_network_policy(np: &NetworkPolicy) -> Result<Vec<String>, NetpolError> {
    Ok(CompiledNetworkPolicy::compile(np)?.summary())
}

fn describe_peer(p: &Peer, own_ns: &str) -> String {
    match p {
        Peer::IpBlock { cidr, except } => {
            if except.is_empty() {
                format!("ipBlock {cidr}")
            } else {
                let ex: Vec<String> = except.iter().map(|e| e.to_string()).collect();
                format!("ipBlock {cidr} except {}", ex.join(","))
            }
        }
        Peer::Pods { namespaces, pods } => {
            let ns = match namespaces {
                NsMatch::Same => format!("namespace {own_ns}"),
                NsMatch::Selected(s) if s.is_everything() => "all namespaces".to_string(),
                NsMatch::Selected(s) => match s.requirements() {
                    [r] if r.key == NAMESPACE_NAME_LABEL
                        && r.operator == Operator::In
                        && r.values.len() == 1 =>
                    {
                        format!("namespace {}", r.values[0])
                    }
                    _ => format!("namespaces {s}"),
                },
            };
            if pods.is_everything() {
                format!("{ns} all pods")
            } else {
                format!("{ns} pods {pods}")
            }
        }
    }
}

fn describe_ports(ports: &[PortRule]) -> String {
    if ports.is_empty() {
        return "on all ports".to_string();
    }
    let parts: Vec<String> = ports
        .iter()
        .map(|p| match &p.port {
            PortSel::Any => format!("all {} ports", p.protocol),
            PortSel::Range(a, b) if a == b => format!("{} {a}", p.protocol),
            PortSel::Range(a, b) => format!("{} {a}-{b}", p.protocol),
            PortSel::Named(n) => format!("{} port named {n}", p.protocol),
        })
        .collect();
    format!("on {}", parts.join(", "))
}

fn compile_rule(
    peers: Option<&[NetworkPolicyPeer]>,
    ports: Option<&[NetworkPolicyPort]>,
    at: &str,
    peer_field: &str,
    invalid: &dyn Fn(String) -> NetpolError,
    sel_err: &dyn Fn(String, SelectorError) -> NetpolError,
) -> Result<Rule, NetpolError> {
    let mut out_peers = Vec::new();
    for (j, p) in peers.unwrap_or_default().iter().enumerate() {
        let pat = format!("{at}.{peer_field}[{j}]");
        if let Some(ib) = &p.ip_block {
            if p.pod_selector.is_some() || p.namespace_selector.is_some() {
                return Err(invalid(format!(
                    "{pat}: ipBlock cannot be combined with podSelector or namespaceSelector"
                )));
            }
            let cidr = parse_cidr(&ib.cidr).ok_or_else(|| {
                invalid(format!(
                    "ipBlock.cidr {:?} is not a CIDR (in {pat})",
                    ib.cidr
                ))
            })?;
            let mut except = Vec::new();
            for e in ib.except.iter().flatten() {
                let en = parse_cidr(e).ok_or_else(|| {
                    invalid(format!("ipBlock.except {e:?} is not a CIDR (in {pat})"))
                })?;
                if !cidr.contains(&en) || en == cidr {
                    return Err(invalid(format!(
                        "ipBlock.except {e:?} is not strictly inside cidr {:?} (in {pat})",
                        ib.cidr
                    )));
                }
                except.push(en);
            }
            out_peers.push(Peer::IpBlock { cidr, except });
            continue;
        }
        let namespaces = match &p.namespace_selector {
            Some(s) => NsMatch::Selected(
                Selector::from_label_selector(s)
                    .map_err(|e| sel_err(format!("{pat}.namespaceSelector"), e))?,
            ),
            None => NsMatch::Same,
        };
        let pods = match &p.pod_selector {
            Some(s) => Selector::from_label_selector(s)
                .map_err(|e| sel_err(format!("{pat}.podSelector"), e))?,
            None if p.namespace_selector.is_some() => Selector::everything(),
            None => {
                return Err(invalid(format!(
                    "{pat}: peer needs podSelector, namespaceSelector or ipBlock"
                )));
            }
        };
        out_peers.push(Peer::Pods { namespaces, pods });
    }
    let mut out_ports = Vec::new();
    for (j, p) in ports.unwrap_or_default().iter().enumerate() {
        let pat = format!("{at}.ports[{j}]");
        let protocol = match p.protocol.as_deref() {
            None => Protocol::Tcp,
            Some(s) => s
                .parse::<Protocol>()
                .map_err(|e| invalid(format!("{pat}: {e}")))?,
        };
        let check = |n: i32, what: &str| {
            u16::try_from(n)
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| invalid(format!("{pat}: {what} {n} is not in 1-65535")))
        };
        let port = match (&p.port, p.end_port) {
            (None, None) => PortSel::Any,
            (None, Some(_)) => {
                return Err(invalid(format!("{pat}: endPort requires port")));
            }
            (Some(IntOrString::Int(n)), end) => {
                let a = check(*n, "port")?;
                let b = match end {
                    Some(e) => check(e, "endPort")?,
                    None => a,
                };
                if b < a {
                    return Err(invalid(format!(
                        "{pat}: endPort {b} is smaller than port {a}"
                    )));
                }
                PortSel::Range(a, b)
            }
            (Some(IntOrString::String(s)), end) => {
                if end.is_some() {
                    return Err(invalid(format!(
                        "{pat}: endPort cannot be used with named port {s:?}"
                    )));
                }
                if let Ok(n) = s.parse::<i32>() {
                    let a = check(n, "port")?;
                    PortSel::Range(a, a)
                } else if is_port_name(s) {
                    PortSel::Named(s.clone())
                } else {
                    return Err(invalid(format!(
                        "{pat}: port {s:?} is not a valid port name"
                    )));
                }
            }
        };
        out_ports.push(PortRule { protocol, port });
    }
    Ok(Rule {
        peers: out_peers,
        ports: out_ports,
    })
}

/// IANA_SVC_NAME: 1-15 lowercase alphanumerics or '-', at least one letter,
/// no leading/trailing/double '-'.
fn is_port_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

fn parse_cidr(s: &str) -> Option<IpNet> {
    s.trim().parse::<IpNet>().ok().map(|n| n.trunc())
}

impl Rule {
    /// The port ranges this rule allows towards `dst`, as `(protocol, first,
    /// last)`; no ports means every port of every protocol. Named ports
    /// resolve on the destination pod; unresolved ones allow nothing.
    pub(crate) fn port_ranges(&self, dst: Resolved<'_>, out: &mut Vec<(Protocol, u16, u16)>) {
        if self.ports.is_empty() {
            for p in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
                out.push((p, 1, u16::MAX));
            }
            return;
        }
        for p in &self.ports {
            match &p.port {
                PortSel::Any => out.push((p.protocol, 1, u16::MAX)),
                PortSel::Range(a, b) => out.push((p.protocol, *a, *b)),
                PortSel::Named(n) => {
                    if let Resolved::Pod(pod) = dst
                        && let Some(port) = pod.named_port(n, p.protocol)
                    {
                        out.push((p.protocol, port, port));
                    }
                }
            }
        }
    }

    pub(crate) fn admits_peer(
        &self,
        cluster: &PeerScope<'_>,
        policy_ns: &str,
        peer: Resolved<'_>,
    ) -> bool {
        self.peers.is_empty()
            || self
                .peers
                .iter()
                .any(|p| peer_matches(cluster, policy_ns, p, peer))
    }

    pub(crate) fn admits(
        &self,
        cluster: &PeerScope<'_>,
        policy_ns: &str,
        peer: Resolved<'_>,
        t: &PortSide<'_>,
    ) -> bool {
        let port_ok = self.ports.is_empty()
            || self.ports.iter().any(|p| {
                p.protocol == t.protocol
                    && match &p.port {
                        PortSel::Any => true,
                        PortSel::Range(a, b) => (*a..=*b).contains(&t.port),
                        PortSel::Named(n) => match t.endpoint {
                            Resolved::Pod(pod) => pod.named_port(n, t.protocol) == Some(t.port),
                            Resolved::External(_) => false,
                        },
                    }
            });
        if !port_ok {
            return false;
        }
        self.peers.is_empty()
            || self
                .peers
                .iter()
                .any(|p| peer_matches(cluster, policy_ns, p, peer))
    }
}

fn peer_matches(cluster: &PeerScope<'_>, policy_ns: &str, p: &Peer, who: Resolved<'_>) -> bool {
    match (p, who) {
        (Peer::Pods { namespaces, pods }, Resolved::Pod(pod)) => {
            let ns_ok = match namespaces {
                NsMatch::Same => pod.namespace == policy_ns,
                NsMatch::Selected(sel) => {
                    sel.is_everything()
                        || cluster
                            .namespaces
                            .get(&pod.namespace)
                            .is_some_and(|ns| sel.matches(&ns.labels))
                }
            };
            ns_ok && pods.matches(&pod.labels)
        }
        (Peer::Pods { .. }, Resolved::External(_)) => false,
        (Peer::IpBlock { cidr, except }, who) => {
            let ip = match who {
                Resolved::External(ip) => ip,
                Resolved::Pod(pod) if cluster.ip_block_matches_pods => match pod.ip {
                    Some(ip) => ip,
                    None => return false,
                },
                Resolved::Pod(_) => return false,
            };
            cidr.contains(&ip) && !except.iter().any(|e| e.contains(&ip))
        }
    }
}

/// The decision for one side of a connection (egress of the source, or
/// ingress of the destination).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SideVerdict {
    pub direction: Direction,
    /// The pod whose policies decide this side; None when that end is outside
    /// the cluster (not policed by NetworkPolicy).
    pub pod: Option<PolicyRef>,
    /// Policies selecting that pod for this direction (sorted). Empty: open.
    pub selecting: Vec<PolicyRef>,
    pub allowed: bool,
    /// Every rule that admits the connection (empty when open or denied).
    pub allowed_by: Vec<RuleRef>,
    /// One-line explanation of this side.
    pub reason: String,
}

/// The ports one side of a connection allows (see `Cluster::network_port_ranges`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SidePorts {
    pub direction: Direction,
    /// `(protocol, first, last)` ranges the rules of the policies selecting
    /// that side's pod allow (possibly overlapping); `None` when no policy
    /// isolates that side (everything allowed).
    pub allowed: Option<Vec<(Protocol, u16, u16)>>,
}

/// The NetworkPolicy verdict for one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetVerdict {
    pub source: Endpoint,
    pub destination: Endpoint,
    pub port: u16,
    pub protocol: Protocol,
    /// Both egress of the source and ingress of the destination allow.
    pub allowed: bool,
    pub egress: SideVerdict,
    pub ingress: SideVerdict,
    /// One-line explanation of the whole verdict.
    pub explanation: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn np(yaml: &str) -> NetworkPolicy {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn bad_cidr_names_object() {
        let p = np(r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: np-test-2}
spec:
  podSelector: {}
  ingress:
  - from:
    - ipBlock: {cidr: 10.0.0/8}
"#);
        let e = CompiledNetworkPolicy::compile(&p).unwrap_err().to_string();
        assert!(
            e.starts_with(
                r#"networkpolicy np-test-2/deny-all: ipBlock.cidr "10.0.0/8" is not a CIDR"#
            ),
            "{e}"
        );
    }

    #[test]
    fn unknown_protocol_and_bad_operator_rejected() {
        let p = np(r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {}
  ingress:
  - ports: [{port: 80, protocol: ICMP}]
"#);
        assert!(
            CompiledNetworkPolicy::compile(&p)
                .unwrap_err()
                .to_string()
                .contains("ICMP")
        );
        let p = np(r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector:
    matchExpressions: [{key: app, operator: Equals, values: [x]}]
"#);
        assert!(matches!(
            CompiledNetworkPolicy::compile(&p),
            Err(NetpolError::Selector { .. })
        ));
    }

    #[test]
    fn policy_types_default() {
        let p = CompiledNetworkPolicy::compile(&np(r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {}
  egress: [{}]
"#))
        .unwrap();
        assert_eq!(p.directions(), vec![Direction::Ingress, Direction::Egress]);
        let p = CompiledNetworkPolicy::compile(&np(r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {}
"#))
        .unwrap();
        assert_eq!(p.directions(), vec![Direction::Ingress]);
        assert_eq!(p.summary()[1], "ingress: denies all (no rules)");
    }
}
