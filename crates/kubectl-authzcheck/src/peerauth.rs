//! The PeerAuthentication section of a pod's report: which policies apply
//! (mesh, namespace, workload, port-level) and the mTLS mode each port ends
//! up with, plus the findings a reader would otherwise miss.
//!
//! Before any AuthorizationPolicy runs, the sidecar's inbound listener
//! accepts or closes a connection by transport (STRICT: mTLS only, DISABLE:
//! plain text only), so "why is this connection reset?" is answered here. The
//! rules (levels, inheritance, oldest wins, port-level keyed by container
//! port) are meshpolicy's `peerauth`; this module only lays them out for one
//! pod. Pure, so the findings are unit-tested on hand-built models.

use std::collections::BTreeSet;

use meshpolicy::peerauth::{EffectiveMtls, MtlsMode, Scope};
use meshpolicy::{Cluster, Pod};
use serde::Serialize;

/// A finding about PeerAuthentication (all warnings); `analyze` turns it
/// into the report's finding, so this module depends on none of the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAuthFinding {
    pub code: &'static str,
    pub message: String,
}

impl PeerAuthFinding {
    fn new(code: &'static str, message: String) -> Self {
        PeerAuthFinding { code, message }
    }
}

/// Ports Istio's sidecar uses itself (istio.io "Ports used by Istio"): the
/// istio-proxy container declares some (15090), but they are not the workload's.
pub const ISTIO_PORTS: [u16; 10] = [
    15000, 15001, 15004, 15006, 15008, 15009, 15020, 15021, 15053, 15090,
];

/// `peer_authentication` in `-o json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerAuthSection {
    /// A sidecar enforces the modes; without one, plain text is always accepted.
    pub enforced: bool,
    /// The PeerAuthentications that apply to the pod (the candidates Istio
    /// hands its sidecar), in the order they were listed.
    pub policies: Vec<PeerAuthEntry>,
    /// The workload-wide mode (ports without a port-level setting).
    pub mode: String,
    /// `namespace/name` of the policy that decided it; None: the default.
    pub decided_by: Option<String>,
    /// The effective mode per port: the pod's declared ports and every port
    /// a port-level setting names.
    pub ports: Vec<PortMode>,
}

/// One PeerAuthentication that applies to the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerAuthEntry {
    pub namespace: String,
    pub name: String,
    /// `mesh`, `namespace`, `workload`, or `ignored` (a selector in the root namespace).
    pub scope: String,
    /// `app=x,...` for workload policies.
    pub selector: Option<String>,
    /// STRICT, PERMISSIVE, DISABLE or UNSET (inherit).
    pub mode: String,
    /// `PORT=MODE` port-level settings.
    pub port_level: Vec<String>,
    /// It decides at least one of the pod's modes.
    pub decides: bool,
}

/// The effective mode of one port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortMode {
    pub port: u16,
    /// The container port's name, when the pod declares it.
    pub name: Option<String>,
    /// The pod declares this port.
    pub declared: bool,
    pub mode: String,
    pub decided_by: Option<String>,
    /// The mode comes from a port-level setting.
    pub port_level: bool,
}

fn scope_word(s: Scope) -> &'static str {
    match s {
        Scope::Mesh => "mesh",
        Scope::Namespace => "namespace",
        Scope::Workload => "workload",
        Scope::Ignored => "ignored",
    }
}

fn decided(e: &EffectiveMtls) -> Option<String> {
    e.decided_by.as_ref().map(|s| s.policy.to_string())
}

/// The section and its findings for one pod.
pub fn section(cluster: &Cluster, pod: &Pod) -> (PeerAuthSection, Vec<PeerAuthFinding>) {
    let root = cluster.options().root_namespace.clone();
    let merged = cluster.merged_peer_authentication(pod);
    let mut findings = Vec::new();

    let declared: Vec<(u16, Option<String>)> = pod
        .ports
        .iter()
        .filter(|p| !ISTIO_PORTS.contains(&p.port))
        .map(|p| (p.port, p.name.clone()))
        .collect();
    let mut ports: BTreeSet<u16> = declared.iter().map(|(p, _)| *p).collect();
    ports.extend(merged.per_port.keys().copied());
    let port_modes: Vec<PortMode> = ports
        .into_iter()
        .map(|port| {
            let e = merged.for_port(port);
            let decl = declared.iter().find(|(p, _)| *p == port);
            PortMode {
                port,
                name: decl.and_then(|(_, n)| n.clone()),
                declared: decl.is_some(),
                mode: e.mode.to_string(),
                decided_by: decided(e),
                port_level: e.decided_by.as_ref().is_some_and(|s| s.port_level)
                    || merged.per_port.contains_key(&port),
            }
        })
        .collect();

    let mut deciders: BTreeSet<String> = port_modes
        .iter()
        .filter_map(|p| p.decided_by.clone())
        .collect();
    deciders.extend(decided(&merged.mode));
    let policies: Vec<PeerAuthEntry> = cluster
        .peer_authentications_for(pod)
        .into_iter()
        .map(|p| {
            let r = p.reference().to_string();
            PeerAuthEntry {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                scope: scope_word(p.scope(&root)).to_string(),
                selector: (!p.selector.is_empty()).then(|| {
                    p.selector
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                }),
                mode: p.mode.map(|m| m.to_string()).unwrap_or("UNSET".into()),
                port_level: p
                    .port_level
                    .iter()
                    .map(|(port, m)| format!("{port}={}", m.map(|m| m.as_str()).unwrap_or("UNSET")))
                    .collect(),
                decides: deciders.contains(&r),
            }
        })
        .collect();

    for p in policies.iter().filter(|p| p.scope == "ignored") {
        findings.push(PeerAuthFinding::new(
            "peerauth-ignored",
            format!(
                "PeerAuthentication {}/{} has a selector in the root namespace {root}: Istio ignores it (move it to the workload's namespace)",
                p.namespace, p.name
            ),
        ));
    }
    for p in port_modes.iter().filter(|p| !p.declared) {
        findings.push(PeerAuthFinding::new(
            "peerauth-unknown-port",
            format!(
                "PeerAuthentication {} sets port {} to {}, but the pod declares no container port {}: portLevelMtls is keyed by the container (target) port, not the Service port",
                p.decided_by.as_deref().unwrap_or("?"),
                p.port,
                p.mode,
                p.port
            ),
        ));
    }
    // DISABLE where the mesh or namespace asks for STRICT.
    let outer =
        meshpolicy::peerauth::namespace_mode(cluster.peer_authentications(), &pod.namespace, &root);
    if outer.mode == MtlsMode::Strict {
        let disabled: Vec<String> = if merged.mode.mode == MtlsMode::Disable {
            vec!["all ports".to_string()]
        } else {
            port_modes
                .iter()
                .filter(|p| p.mode == MtlsMode::Disable.as_str())
                .map(|p| format!("port {}", p.port))
                .collect()
        };
        if !disabled.is_empty() {
            findings.push(PeerAuthFinding::new(
                "mtls-disabled-in-strict",
                format!(
                    "{} sets DISABLE on {} although {} makes the namespace STRICT: sidecar clients still send mTLS there (auto mTLS follows the namespace), and those connections fail unless a DestinationRule disables TLS",
                    decided(&merged.mode)
                        .filter(|_| merged.mode.mode == MtlsMode::Disable)
                        .or_else(|| port_modes
                            .iter()
                            .find(|p| p.mode == MtlsMode::Disable.as_str())
                            .and_then(|p| p.decided_by.clone()))
                        .map(|p| format!("PeerAuthentication {p}"))
                        .unwrap_or_else(|| "a PeerAuthentication".into()),
                    disabled.join(", "),
                    decided(&outer)
                        .map(|p| format!("PeerAuthentication {p}"))
                        .unwrap_or_else(|| "the mesh".into()),
                ),
            ));
        }
    }
    if !pod.has_sidecar && !policies.is_empty() {
        findings.push(PeerAuthFinding::new(
            "peerauth-not-enforced",
            format!(
                "{} PeerAuthentication(s) apply, but the pod has no sidecar: nothing enforces mTLS, plain text is accepted",
                policies.len()
            ),
        ));
    }
    let section = PeerAuthSection {
        enforced: pod.has_sidecar,
        policies,
        mode: merged.mode.mode.to_string(),
        decided_by: decided(&merged.mode),
        ports: port_modes,
    };
    (section, findings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshpolicy::ClusterOptions;

    const BASE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: a}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a, labels: {app: web}}
spec:
  containers:
  - {name: web, ports: [{containerPort: 8080, name: http}]}
  - {name: istio-proxy, ports: [{containerPort: 15090}]}
status: {podIP: 10.0.0.1}
"#;

    fn pa(ns: &str, name: &str, spec: &str) -> String {
        format!(
            "\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
        )
    }

    fn run(extra: &str) -> (PeerAuthSection, Vec<PeerAuthFinding>) {
        let c =
            Cluster::from_manifests(&format!("{BASE}{extra}"), ClusterOptions::default()).unwrap();
        let pod = c.pod("a", "web").unwrap().clone();
        section(&c, &pod)
    }

    #[test]
    fn no_policy_is_permissive_by_default() {
        let (s, f) = run("");
        assert_eq!(s.mode, "PERMISSIVE");
        assert_eq!(s.decided_by, None);
        assert_eq!(s.ports.len(), 1, "istio ports left out: {:?}", s.ports);
        assert_eq!(s.ports[0].port, 8080);
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn levels_resolve_and_port_level_overrides() {
        let mesh = pa("istio-system", "default", "{mtls: {mode: STRICT}}");
        let wl = pa(
            "a",
            "web",
            "{selector: {matchLabels: {app: web}}, portLevelMtls: {'8080': {mode: PERMISSIVE}, '9999': {mode: DISABLE}}}",
        );
        let (s, f) = run(&format!("{mesh}{wl}"));
        assert_eq!(s.mode, "STRICT");
        assert_eq!(s.decided_by.as_deref(), Some("istio-system/default"));
        assert_eq!(s.policies.len(), 2);
        assert!(s.policies.iter().all(|p| p.decides), "{:?}", s.policies);
        let p8080 = s.ports.iter().find(|p| p.port == 8080).unwrap();
        assert_eq!(
            (p8080.mode.as_str(), p8080.port_level),
            ("PERMISSIVE", true)
        );
        let codes: Vec<&str> = f.iter().map(|f| f.code).collect();
        assert!(codes.contains(&"peerauth-unknown-port"), "{codes:?}");
        assert!(codes.contains(&"mtls-disabled-in-strict"), "{codes:?}");
    }

    #[test]
    fn workload_disable_in_a_strict_namespace_is_flagged() {
        let ns = pa("a", "ns", "{mtls: {mode: STRICT}}");
        let wl = pa(
            "a",
            "off",
            "{selector: {matchLabels: {app: web}}, mtls: {mode: DISABLE}}",
        );
        let (s, f) = run(&format!("{ns}{wl}"));
        assert_eq!(s.mode, "DISABLE");
        assert_eq!(s.decided_by.as_deref(), Some("a/off"));
        let w = f
            .iter()
            .find(|f| f.code == "mtls-disabled-in-strict")
            .unwrap();
        assert!(
            w.message.contains("a/off") && w.message.contains("a/ns"),
            "{}",
            w.message
        );
    }
}
