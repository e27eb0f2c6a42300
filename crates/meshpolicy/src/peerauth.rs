//! Istio PeerAuthentication: which mTLS mode a workload's port accepts, and
//! whether a given client's connection survives it.
//!
//! Before AuthorizationPolicy is even consulted, the destination sidecar's
//! listener decides by transport: a STRICT port closes plain-text connections,
//! a DISABLE port closes TLS ones, a PERMISSIVE port takes both. A plugin that
//! predicts "allowed" while the probe sees a reset is wrong, so the model needs
//! the mode per (pod, port) and the reason for it.
//!
//! The rules follow Istio's own implementation (`pilot/pkg/security/authn`
//! `ComposePeerAuthentication`, `pilot/pkg/model/authentication.go`):
//! - the candidates for a workload are the policies of its own namespace and of
//!   the root namespace whose `selector.matchLabels` are a subset of its labels
//!   (an empty or absent selector matches every workload);
//! - a policy without selector is mesh-wide in the root namespace and
//!   namespace-wide elsewhere; a policy with a selector is workload-level only
//!   outside the root namespace (Istio ignores selector policies in the root
//!   namespace, even for workloads that live there);
//! - within each level the oldest policy wins (creationTimestamp, then name,
//!   then namespace, as Istio sorts configs);
//! - modes resolve mesh -> namespace -> workload, each `UNSET` (or absent
//!   `mtls`) inheriting from the level above; no policy at all is PERMISSIVE;
//! - `portLevelMtls` (workload-level only; Istio's validation rejects it without
//!   a selector, and so does [`PeerAuthentication::from_value`]) is keyed by the
//!   workload's container (target) port; an `UNSET` port entry inherits the
//!   workload's resolved mode.
//!
//! What the client sends follows Istio's auto mTLS: a client sidecar sends
//! mTLS to a sidecar-injected destination reached through a Service, unless the
//! namespace-level (else mesh-level) mode of the destination's namespace is
//! DISABLE (`PushContext::BestEffortInferServiceMTLSMode`). A workload-level
//! DISABLE is not seen by clients, which is why Istio needs a DestinationRule
//! there. Not modelled: DestinationRules (`trafficPolicy.tls` overrides auto
//! mTLS), `meshConfig.enableAutoMtls: false`, headless-Service passthrough
//! inference. Creation timestamps are compared as RFC 3339 strings (the API
//! server writes them in one fixed layout); a policy without one (a manifest not
//! yet applied) counts as the oldest, like Go's zero time.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A mode Istio enforces on an inbound port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum MtlsMode {
    /// Plain text only: a TLS handshake finds no filter chain.
    Disable,
    /// mTLS and plain text.
    Permissive,
    /// mTLS only, with a client certificate signed by the mesh CA.
    Strict,
}

impl MtlsMode {
    /// Istio's spelling (`DISABLE`, `PERMISSIVE`, `STRICT`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "DISABLE",
            Self::Permissive => "PERMISSIVE",
            Self::Strict => "STRICT",
        }
    }
}

impl fmt::Display for MtlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A PeerAuthentication that Istio's validation would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerAuthError {
    #[error("peerauthentication without metadata.name")]
    MissingName,
    #[error("peerauthentication {object}: {reason}")]
    Invalid { object: String, reason: String },
}

/// `namespace/name` of a PeerAuthentication.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PeerAuthRef {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for PeerAuthRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Where a policy applies, from its namespace and selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// No selector, in the root namespace.
    Mesh,
    /// No selector, in another namespace.
    Namespace,
    /// A selector, outside the root namespace.
    Workload,
    /// A selector in the root namespace: Istio ignores it.
    Ignored,
}

/// A validated `security.istio.io` v1/v1beta1 PeerAuthentication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerAuthentication {
    pub namespace: String,
    pub name: String,
    /// `metadata.creationTimestamp` as written (RFC 3339), if any.
    pub creation_timestamp: Option<String>,
    /// `spec.selector.matchLabels`; empty means namespace- or mesh-wide.
    pub selector: BTreeMap<String, String>,
    /// `spec.mtls.mode`; `None` is UNSET (inherit).
    pub mode: Option<MtlsMode>,
    /// `spec.portLevelMtls` by container port; `None` is UNSET.
    pub port_level: BTreeMap<u16, Option<MtlsMode>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMeta {
    name: Option<String>,
    namespace: Option<String>,
    creation_timestamp: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawSpec {
    selector: Option<RawSelector>,
    mtls: Option<RawMtls>,
    port_level_mtls: Option<BTreeMap<String, Option<RawMtls>>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawSelector {
    match_labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct RawMtls {
    mode: Option<String>,
}

fn parse_mode(raw: Option<&RawMtls>, object: &str) -> Result<Option<MtlsMode>, PeerAuthError> {
    match raw.and_then(|m| m.mode.as_deref()) {
        None | Some("UNSET") => Ok(None),
        Some("DISABLE") => Ok(Some(MtlsMode::Disable)),
        Some("PERMISSIVE") => Ok(Some(MtlsMode::Permissive)),
        Some("STRICT") => Ok(Some(MtlsMode::Strict)),
        Some(other) => Err(PeerAuthError::Invalid {
            object: object.to_string(),
            reason: format!("mtls mode {other:?} is not one of UNSET, DISABLE, PERMISSIVE, STRICT"),
        }),
    }
}

impl PeerAuthentication {
    /// Reads and validates a PeerAuthentication object (YAML/JSON as a value).
    /// A missing namespace is `default_namespace`. Rejects what Istio's
    /// validation rejects: unknown modes, port-level settings without a
    /// selector, an empty `portLevelMtls`, ports outside 1-65535.
    pub fn from_value(value: &Value, default_namespace: &str) -> Result<Self, PeerAuthError> {
        let meta: RawMeta = serde_json::from_value(value["metadata"].clone())
            .map_err(|_| PeerAuthError::MissingName)?;
        let name = meta
            .name
            .filter(|n| !n.is_empty())
            .ok_or(PeerAuthError::MissingName)?;
        let namespace = meta
            .namespace
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| default_namespace.to_string());
        let object = format!("{namespace}/{name}");
        let invalid = |reason: String| PeerAuthError::Invalid {
            object: object.clone(),
            reason,
        };
        let spec: RawSpec = match value.get("spec") {
            None | Some(Value::Null) => RawSpec::default(),
            Some(s) => serde_json::from_value(s.clone()).map_err(|e| invalid(e.to_string()))?,
        };
        let selector = spec
            .selector
            .and_then(|s| s.match_labels)
            .unwrap_or_default();
        let mode = parse_mode(spec.mtls.as_ref(), &object)?;
        let mut port_level = BTreeMap::new();
        if let Some(ports) = spec.port_level_mtls {
            if selector.is_empty() {
                return Err(invalid(
                    "mesh/namespace peer authentication cannot have port level mTLS".into(),
                ));
            }
            if ports.is_empty() {
                return Err(invalid(
                    "port level mTLS, if defined, must have at least one element".into(),
                ));
            }
            for (key, m) in ports {
                let port =
                    key.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| {
                        invalid(format!("port {key:?} must be in range 1..65535"))
                    })?;
                port_level.insert(port, parse_mode(m.as_ref(), &object)?);
            }
        }
        Ok(Self {
            namespace,
            name,
            creation_timestamp: meta.creation_timestamp,
            selector,
            mode,
            port_level,
        })
    }

    /// `namespace/name`.
    pub fn reference(&self) -> PeerAuthRef {
        PeerAuthRef {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// The level this policy acts at, given Istio's root namespace.
    pub fn scope(&self, root_namespace: &str) -> Scope {
        match (self.selector.is_empty(), self.namespace == root_namespace) {
            (true, true) => Scope::Mesh,
            (true, false) => Scope::Namespace,
            (false, false) => Scope::Workload,
            (false, true) => Scope::Ignored,
        }
    }

    /// Whether the selector picks a workload with these labels.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    fn age_key(&self) -> (Option<&str>, &str, &str) {
        (
            self.creation_timestamp.as_deref(),
            &self.name,
            &self.namespace,
        )
    }
}

/// The policy (and part of it) that fixed a mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModeSource {
    pub policy: PeerAuthRef,
    pub scope: Scope,
    /// The mode came from `portLevelMtls` for the port asked about.
    pub port_level: bool,
}

/// A resolved mode and what decided it (`None`: no policy set one, the
/// PERMISSIVE default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EffectiveMtls {
    pub mode: MtlsMode,
    pub decided_by: Option<ModeSource>,
}

impl EffectiveMtls {
    const DEFAULT: Self = Self {
        mode: MtlsMode::Permissive,
        decided_by: None,
    };
}

impl fmt::Display for EffectiveMtls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.decided_by {
            None => write!(f, "{} (default, no PeerAuthentication)", self.mode),
            Some(s) => {
                let scope = match s.scope {
                    Scope::Mesh => "mesh-wide",
                    Scope::Namespace => "namespace-wide",
                    Scope::Workload | Scope::Ignored => "workload",
                };
                let port = if s.port_level { ", port-level" } else { "" };
                write!(
                    f,
                    "{} (PeerAuthentication {}, {scope}{port})",
                    self.mode, s.policy
                )
            }
        }
    }
}

/// The merged result for one workload, as Istio's `MergedPeerAuthentication`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MergedPeerAuthentication {
    /// The workload-wide mode.
    pub mode: EffectiveMtls,
    /// Overrides by container port.
    pub per_port: BTreeMap<u16, EffectiveMtls>,
}

impl MergedPeerAuthentication {
    /// The mode of one container (target) port.
    pub fn for_port(&self, port: u16) -> &EffectiveMtls {
        self.per_port.get(&port).unwrap_or(&self.mode)
    }
}

fn oldest<'a>(
    mut it: impl Iterator<Item = &'a PeerAuthentication>,
) -> Option<&'a PeerAuthentication> {
    let first = it.next()?;
    Some(it.fold(first, |best, p| {
        if p.age_key() < best.age_key() {
            p
        } else {
            best
        }
    }))
}

/// The oldest policy without a selector in `namespace`: Istio's pick of the
/// namespace-level policy there (the mesh-level one in the root namespace).
pub(crate) fn oldest_namespace_wide<'a>(
    policies: &'a [PeerAuthentication],
    namespace: &str,
) -> Option<&'a PeerAuthentication> {
    oldest(
        policies
            .iter()
            .filter(|p| p.namespace == namespace && p.selector.is_empty()),
    )
}

/// The policies Istio hands a workload: those of its namespace and of the root
/// namespace whose selector matches its labels.
pub fn candidates<'a>(
    policies: &'a [PeerAuthentication],
    namespace: &str,
    labels: &BTreeMap<String, String>,
    root_namespace: &str,
) -> Vec<&'a PeerAuthentication> {
    policies
        .iter()
        .filter(|p| {
            (p.namespace == namespace || p.namespace == root_namespace) && p.selects(labels)
        })
        .collect()
}

fn level(p: &PeerAuthentication, root: &str, port_level: bool) -> ModeSource {
    ModeSource {
        policy: p.reference(),
        scope: p.scope(root),
        port_level,
    }
}

/// The oldest candidate at `scope`: Istio's tie-break within a level.
fn pick<'a>(
    cands: &[&'a PeerAuthentication],
    scope: Scope,
    root_namespace: &str,
) -> Option<&'a PeerAuthentication> {
    oldest(
        cands
            .iter()
            .copied()
            .filter(|p| p.scope(root_namespace) == scope),
    )
}

/// The mode inherited from the mesh-wide, then the namespace-wide policy
/// (UNSET keeps the level above; PERMISSIVE when neither sets one).
fn inherited(cands: &[&PeerAuthentication], root_namespace: &str) -> EffectiveMtls {
    let mut mode = EffectiveMtls::DEFAULT;
    for p in [
        pick(cands, Scope::Mesh, root_namespace),
        pick(cands, Scope::Namespace, root_namespace),
    ]
    .into_iter()
    .flatten()
    {
        if let Some(m) = p.mode {
            mode = EffectiveMtls {
                mode: m,
                decided_by: Some(level(p, root_namespace, false)),
            };
        }
    }
    mode
}

/// Istio's composition of the policies that apply to a workload in
/// `namespace` with `labels`.
pub fn compose(
    policies: &[PeerAuthentication],
    namespace: &str,
    labels: &BTreeMap<String, String>,
    root_namespace: &str,
) -> MergedPeerAuthentication {
    let cands = candidates(policies, namespace, labels, root_namespace);
    let mut mode = inherited(&cands, root_namespace);
    let mut per_port = BTreeMap::new();
    if let Some(w) = pick(&cands, Scope::Workload, root_namespace) {
        if let Some(m) = w.mode {
            mode = EffectiveMtls {
                mode: m,
                decided_by: Some(level(w, root_namespace, false)),
            };
        }
        for (&port, m) in &w.port_level {
            let e = match m {
                Some(m) => EffectiveMtls {
                    mode: *m,
                    decided_by: Some(level(w, root_namespace, true)),
                },
                None => mode.clone(),
            };
            per_port.insert(port, e);
        }
    }
    MergedPeerAuthentication { mode, per_port }
}

/// The mode a workload's container `port` enforces.
pub fn effective_mode(
    policies: &[PeerAuthentication],
    namespace: &str,
    labels: &BTreeMap<String, String>,
    port: u16,
    root_namespace: &str,
) -> EffectiveMtls {
    compose(policies, namespace, labels, root_namespace)
        .for_port(port)
        .clone()
}

/// The namespace-level (else mesh-level, else PERMISSIVE) mode of a namespace:
/// what client sidecars infer about its services for auto mTLS.
pub fn namespace_mode(
    policies: &[PeerAuthentication],
    namespace: &str,
    root_namespace: &str,
) -> EffectiveMtls {
    let cands: Vec<&PeerAuthentication> = policies
        .iter()
        .filter(|p| p.selector.is_empty())
        .filter(|p| p.namespace == namespace || p.namespace == root_namespace)
        .collect();
    inherited(&cands, root_namespace)
}

/// How the client addressed the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Addressed {
    /// Through a Service (its cluster IP or name): the client sidecar has an
    /// outbound cluster for it and applies auto mTLS.
    Service,
    /// Directly to a pod IP that no Service listener covers: the client
    /// sidecar forwards through its PassthroughCluster, in plain text.
    PodIp,
}

/// What goes on the wire from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientTransport {
    /// Istio mTLS from the client's sidecar.
    Mtls,
    /// Plain text (no client sidecar, or auto mTLS chose plain text).
    Plaintext,
}

/// The transport-level outcome at the destination sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MtlsOutcome {
    /// The connection reaches a filter chain (authorization comes next).
    Ok,
    /// Plain text into a STRICT port: no filter chain matches, the sidecar
    /// closes the connection (curl: "connection reset", exit 56).
    PlaintextIntoStrict,
    /// mTLS into a DISABLE port: the TLS handshake finds no filter chain and
    /// is cut.
    MtlsIntoDisable,
}

impl MtlsOutcome {
    /// Whether the connection fails for mTLS reasons.
    pub fn is_failure(self) -> bool {
        self != Self::Ok
    }
}

/// The destination of a request, as peer authentication sees it.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub has_sidecar: bool,
    /// The container (target) port.
    pub port: u16,
}

/// The predicted fate of one connection, with its reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MtlsPrediction {
    pub client_sends: ClientTransport,
    /// The destination port's mode; `None` when it has no sidecar (nothing enforced).
    pub destination_mode: Option<EffectiveMtls>,
    /// For a client sidecar reaching a Service: the namespace-level mode auto
    /// mTLS looked at.
    pub auto_mtls_basis: Option<EffectiveMtls>,
    pub outcome: MtlsOutcome,
}

/// Predicts whether a connection from a client (with or without sidecar)
/// passes the destination port's peer authentication.
pub fn predict(
    policies: &[PeerAuthentication],
    client_has_sidecar: bool,
    destination: Destination<'_>,
    addressed: Addressed,
    root_namespace: &str,
) -> MtlsPrediction {
    let mut auto_mtls_basis = None;
    let client_sends =
        if !client_has_sidecar || !destination.has_sidecar || addressed == Addressed::PodIp {
            ClientTransport::Plaintext
        } else {
            let basis = namespace_mode(policies, destination.namespace, root_namespace);
            let sends = if basis.mode == MtlsMode::Disable {
                ClientTransport::Plaintext
            } else {
                ClientTransport::Mtls
            };
            auto_mtls_basis = Some(basis);
            sends
        };
    if !destination.has_sidecar {
        return MtlsPrediction {
            client_sends,
            destination_mode: None,
            auto_mtls_basis,
            outcome: MtlsOutcome::Ok,
        };
    }
    let mode = effective_mode(
        policies,
        destination.namespace,
        destination.labels,
        destination.port,
        root_namespace,
    );
    let outcome = match (mode.mode, client_sends) {
        (MtlsMode::Strict, ClientTransport::Plaintext) => MtlsOutcome::PlaintextIntoStrict,
        (MtlsMode::Disable, ClientTransport::Mtls) => MtlsOutcome::MtlsIntoDisable,
        _ => MtlsOutcome::Ok,
    };
    MtlsPrediction {
        client_sends,
        destination_mode: Some(mode),
        auto_mtls_basis,
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ROOT: &str = "istio-system";

    fn pa(v: Value) -> PeerAuthentication {
        PeerAuthentication::from_value(&v, "default").unwrap()
    }

    fn mk(ns: &str, name: &str, ts: &str, spec: Value) -> PeerAuthentication {
        pa(
            json!({"metadata": {"name": name, "namespace": ns, "creationTimestamp": ts}, "spec": spec}),
        )
    }

    fn labels(app: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("app".to_string(), app.to_string())])
    }

    fn mode_of(ps: &[PeerAuthentication], ns: &str, app: &str, port: u16) -> EffectiveMtls {
        effective_mode(ps, ns, &labels(app), port, ROOT)
    }

    #[test]
    fn default_is_permissive_without_policy() {
        let e = mode_of(&[], "a", "web", 80);
        assert_eq!(e.mode, MtlsMode::Permissive);
        assert_eq!(e.decided_by, None);
    }

    #[test]
    fn narrower_levels_override_and_unset_inherits() {
        let t = "2024-01-01T00:00:00Z";
        let ps = vec![
            mk(ROOT, "mesh", t, json!({"mtls": {"mode": "STRICT"}})),
            mk("a", "ns", t, json!({"mtls": {"mode": "UNSET"}})),
            mk(
                "a",
                "w",
                t,
                json!({"selector": {"matchLabels": {"app": "web"}}, "mtls": {"mode": "PERMISSIVE"},
                       "portLevelMtls": {"8080": {"mode": "DISABLE"}, "9090": {"mode": "UNSET"}}}),
            ),
            mk("b", "nsb", t, json!({"mtls": {"mode": "DISABLE"}})),
        ];
        // Namespace UNSET inherits the mesh's STRICT; decided by the mesh policy.
        let e = mode_of(&ps, "a", "db", 80);
        assert_eq!(e.mode, MtlsMode::Strict);
        assert_eq!(e.decided_by.as_ref().unwrap().policy.name, "mesh");
        assert_eq!(e.decided_by.as_ref().unwrap().scope, Scope::Mesh);
        // Workload overrides.
        let e = mode_of(&ps, "a", "web", 80);
        assert_eq!(e.mode, MtlsMode::Permissive);
        assert_eq!(e.decided_by.unwrap().scope, Scope::Workload);
        // Port-level overrides the workload on that port only.
        let e = mode_of(&ps, "a", "web", 8080);
        assert_eq!(e.mode, MtlsMode::Disable);
        assert!(e.decided_by.unwrap().port_level);
        // An UNSET port entry inherits the workload's mode.
        let e = mode_of(&ps, "a", "web", 9090);
        assert_eq!(e.mode, MtlsMode::Permissive);
        assert!(!e.decided_by.unwrap().port_level);
        // Namespace-wide DISABLE overrides the mesh's STRICT.
        assert_eq!(mode_of(&ps, "b", "web", 80).mode, MtlsMode::Disable);
        // The workload policy of namespace a does not reach namespace c.
        assert_eq!(mode_of(&ps, "c", "web", 8080).mode, MtlsMode::Strict);
    }

    #[test]
    fn workload_unset_keeps_namespace_mode_but_applies_ports() {
        let t = "2024-01-01T00:00:00Z";
        let ps = vec![
            mk("a", "ns", t, json!({"mtls": {"mode": "STRICT"}})),
            mk(
                "a",
                "w",
                t,
                json!({"selector": {"matchLabels": {"app": "web"}}, "portLevelMtls": {"80": {"mode": "PERMISSIVE"}}}),
            ),
        ];
        assert_eq!(mode_of(&ps, "a", "web", 81).mode, MtlsMode::Strict);
        assert_eq!(mode_of(&ps, "a", "web", 80).mode, MtlsMode::Permissive);
    }

    #[test]
    fn oldest_wins_within_a_level_then_name() {
        let ps = vec![
            mk(
                "a",
                "newer",
                "2024-02-01T00:00:00Z",
                json!({"mtls": {"mode": "DISABLE"}}),
            ),
            mk(
                "a",
                "older",
                "2024-01-01T00:00:00Z",
                json!({"mtls": {"mode": "STRICT"}}),
            ),
        ];
        let e = mode_of(&ps, "a", "x", 80);
        assert_eq!(
            (e.mode, e.decided_by.unwrap().policy.name.as_str()),
            (MtlsMode::Strict, "older")
        );
        // Same timestamp: the name decides (Istio sorts by time, then name).
        let t = "2024-01-01T00:00:00Z";
        let ps = vec![
            mk(
                "a",
                "b-pol",
                t,
                json!({"selector": {"matchLabels": {"app": "x"}}, "mtls": {"mode": "DISABLE"}}),
            ),
            mk(
                "a",
                "a-pol",
                t,
                json!({"selector": {"matchLabels": {"app": "x"}}, "mtls": {"mode": "STRICT"}}),
            ),
        ];
        assert_eq!(mode_of(&ps, "a", "x", 80).mode, MtlsMode::Strict);
        // The oldest namespace policy wins even when its mode is UNSET: the
        // newer one's STRICT is ignored and the default applies.
        let ps = vec![
            mk("a", "old", "2023-01-01T00:00:00Z", json!({})),
            mk(
                "a",
                "new",
                "2024-01-01T00:00:00Z",
                json!({"mtls": {"mode": "STRICT"}}),
            ),
        ];
        assert_eq!(mode_of(&ps, "a", "x", 80).mode, MtlsMode::Permissive);
    }

    #[test]
    fn selector_policies_in_root_namespace_are_ignored() {
        let t = "2024-01-01T00:00:00Z";
        let ps = vec![mk(
            ROOT,
            "sel",
            t,
            json!({"selector": {"matchLabels": {"app": "web"}}, "mtls": {"mode": "STRICT"}}),
        )];
        assert_eq!(mode_of(&ps, "a", "web", 80).mode, MtlsMode::Permissive);
        assert_eq!(mode_of(&ps, ROOT, "web", 80).mode, MtlsMode::Permissive);
        assert_eq!(ps[0].scope(ROOT), Scope::Ignored);
    }

    #[test]
    fn selector_must_be_a_subset_of_labels() {
        let t = "2024-01-01T00:00:00Z";
        let ps = vec![mk(
            "a",
            "w",
            t,
            json!({"selector": {"matchLabels": {"app": "web", "v": "2"}}, "mtls": {"mode": "STRICT"}}),
        )];
        assert_eq!(mode_of(&ps, "a", "web", 80).mode, MtlsMode::Permissive);
        let mut l = labels("web");
        l.insert("v".into(), "2".into());
        assert_eq!(
            effective_mode(&ps, "a", &l, 80, ROOT).mode,
            MtlsMode::Strict
        );
    }

    #[test]
    fn validation_rejects_what_istio_rejects() {
        let bad = [
            json!({"metadata": {"name": "x"}, "spec": {"portLevelMtls": {"80": {"mode": "STRICT"}}}}),
            json!({"metadata": {"name": "x"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "portLevelMtls": {}}}),
            json!({"metadata": {"name": "x"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "portLevelMtls": {"0": {"mode": "STRICT"}}}}),
            json!({"metadata": {"name": "x"}, "spec": {"mtls": {"mode": "strict"}}}),
            json!({"metadata": {}, "spec": {}}),
        ];
        for b in bad {
            assert!(
                PeerAuthentication::from_value(&b, "default").is_err(),
                "{b}"
            );
        }
        let ok = pa(json!({"metadata": {"name": "x"}}));
        assert_eq!((ok.namespace.as_str(), ok.mode), ("default", None));
    }

    #[test]
    fn prediction_follows_auto_mtls() {
        let t = "2024-01-01T00:00:00Z";
        let ps = vec![
            mk("strict", "ns", t, json!({"mtls": {"mode": "STRICT"}})),
            mk("off", "ns", t, json!({"mtls": {"mode": "DISABLE"}})),
            mk(
                "mixed",
                "w",
                t,
                json!({"selector": {"matchLabels": {"app": "web"}}, "mtls": {"mode": "DISABLE"}}),
            ),
        ];
        let web = labels("web");
        let dest = |ns: &'static str, sidecar: bool| Destination {
            namespace: ns,
            labels: &web,
            has_sidecar: sidecar,
            port: 80,
        };
        let p = |client: bool, d, a| predict(&ps, client, d, a, ROOT);
        // Sidecar to sidecar in STRICT: mTLS, fine.
        let r = p(true, dest("strict", true), Addressed::Service);
        assert_eq!(
            (r.client_sends, r.outcome),
            (ClientTransport::Mtls, MtlsOutcome::Ok)
        );
        // No client sidecar into STRICT: plain text is refused.
        let r = p(false, dest("strict", true), Addressed::Service);
        assert_eq!(r.outcome, MtlsOutcome::PlaintextIntoStrict);
        // Pod IP from a sidecar: passthrough, plain text, refused by STRICT.
        let r = p(true, dest("strict", true), Addressed::PodIp);
        assert_eq!(r.outcome, MtlsOutcome::PlaintextIntoStrict);
        // Namespace DISABLE: auto mTLS sends plain text, accepted.
        let r = p(true, dest("off", true), Addressed::Service);
        assert_eq!(
            (r.client_sends, r.outcome),
            (ClientTransport::Plaintext, MtlsOutcome::Ok)
        );
        // Workload-level DISABLE under a PERMISSIVE namespace: the client still
        // sends mTLS, which the DISABLE port cannot take.
        let r = p(true, dest("mixed", true), Addressed::Service);
        assert_eq!(r.outcome, MtlsOutcome::MtlsIntoDisable);
        // No destination sidecar: nothing enforced, client sends plain text.
        let r = p(true, dest("strict", false), Addressed::Service);
        assert_eq!(
            (r.client_sends, r.outcome, r.destination_mode),
            (ClientTransport::Plaintext, MtlsOutcome::Ok, None)
        );
        // PERMISSIVE default takes plain text.
        let r = p(false, dest("other", true), Addressed::Service);
        assert_eq!(r.outcome, MtlsOutcome::Ok);
    }

    #[test]
    fn explanation_names_the_policy() {
        let ps = vec![mk(
            "a",
            "w",
            "2024-01-01T00:00:00Z",
            json!({"selector": {"matchLabels": {"app": "web"}}, "portLevelMtls": {"80": {"mode": "STRICT"}}}),
        )];
        assert_eq!(
            mode_of(&ps, "a", "web", 80).to_string(),
            "STRICT (PeerAuthentication a/w, workload, port-level)"
        );
        assert_eq!(
            mode_of(&[], "a", "web", 80).to_string(),
            "PERMISSIVE (default, no PeerAuthentication)"
        );
    }
}
