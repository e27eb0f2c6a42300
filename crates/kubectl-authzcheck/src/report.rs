//! The report for one pod, as data: what `-o json` prints and what the
//! tables are rendered from.
//!
//! Keeping the result as plain serde structs (built by the `analyze`
//! module, rendered last by `render`) means the JSON and the tables can never
//! disagree, and tests can check facts rather than text.

use serde::Serialize;

pub use meshpolicy::ambient_audit::ZtunnelBinding;

pub use crate::peerauth::{PeerAuthEntry, PeerAuthSection, PortMode};

/// Everything authzcheck knows about one pod.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The pod; `None` when only a config dump file was analysed.
    pub pod: Option<PodInfo>,
    /// Whether the pod is isolated per direction (some NetworkPolicy selects it).
    pub network_isolation: Option<Isolation>,
    /// NetworkPolicies selecting the pod.
    pub network_policies: Vec<NetpolEntry>,
    /// AuthorizationPolicies from the API that apply to the pod.
    pub authorization_policies: Vec<AuthzEntry>,
    /// PeerAuthentications that apply and the mTLS mode per port (None:
    /// no cluster, a config dump file only).
    pub peer_authentication: Option<PeerAuthSection>,
    /// For a pod in Istio ambient mode (no sidecar): what ztunnel and the
    /// waypoints enforce. Absent for every other pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ambient: Option<AmbientSection>,
    /// What the sidecar's Envoy loaded (for an ambient pod: its waypoint's).
    pub proxy: ProxyView,
    /// Conclusions joining the layers.
    pub findings: Vec<Finding>,
    /// With `-f` / `--delete-f`: what the policy sections show, and that the
    /// Envoy section still describes the cluster as it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub what_if: Option<String>,
}

/// An ambient pod's enforcement: ztunnel (L4, node-wide) and the waypoints
/// its Services use (L7), from meshpolicy::ambient_audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AmbientSection {
    /// The policies ztunnel enforces for the pod (bound by selector,
    /// namespace-wide or from the root namespace), as ztunnel sees them.
    pub ztunnel: Vec<ZtunnelBinding>,
    /// Where ztunnel's own configuration came from (or why it was not read).
    pub ztunnel_config: String,
    /// One entry per Service selecting the pod.
    pub waypoints: Vec<WaypointEntry>,
}

/// A Service of an ambient pod and the waypoint its traffic goes through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaypointEntry {
    pub service: String,
    /// `NS/NAME` of the waypoint, when one is named.
    pub waypoint: Option<String>,
    /// `uses`, `none`, `missing` or `not-for-services`.
    pub state: String,
    /// Which object's `istio.io/use-waypoint` bound it (`namespace`, `service`).
    pub bound_by: Option<String>,
    /// The policies attached to the waypoint for this Service (full L7).
    pub policies: Vec<WaypointPolicyEntry>,
}

/// A policy attached to a waypoint through `targetRefs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaypointPolicyEntry {
    pub namespace: String,
    pub name: String,
    pub action: String,
    pub rules: usize,
    /// The targetRef that attaches it (`Gateway waypoint`, `Service web`, ...).
    pub via: String,
    pub dry_run: bool,
    pub meaning: String,
    /// Whether the waypoint's Envoy holds it (`None`: its config was not read).
    pub loaded: Option<bool>,
}

/// How a policy row or finding differs with the `-f` / `--delete-f` overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Only with the overlay.
    New,
    /// Only without it (the overlay deletes or replaces it).
    Gone,
    /// On both sides, different.
    Changed,
    /// On both sides, the same (or about the cluster as it is).
    Unchanged,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::New => "new",
            Change::Gone => "gone",
            Change::Changed => "changed",
            Change::Unchanged => "unchanged",
        }
    }
}

impl Report {
    /// The most severe finding, if any.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

/// The pod and the facts about it that decide which layers apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    /// An istio-proxy sidecar runs in the pod (so AuthorizationPolicy is enforced).
    pub sidecar: bool,
    pub phase: String,
    /// `key=value` labels, sorted.
    pub labels: Vec<String>,
    /// The namespace's `istio-injection` label (or `istio.io/rev=REV`), if any.
    pub namespace_injection: Option<String>,
}

/// Isolation per direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Isolation {
    pub ingress: bool,
    pub egress: bool,
}

/// A NetworkPolicy selecting the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetpolEntry {
    pub namespace: String,
    pub name: String,
    /// `ingress`, `egress`: the directions it isolates.
    pub directions: Vec<String>,
    /// Which pods it selects, in words.
    pub selects: String,
    /// Ingress rules in words (`ingress: denies all (no rules)`, ...).
    pub ingress: Vec<String>,
    /// Egress rules in words.
    pub egress: Vec<String>,
    /// With `-f` / `--delete-f` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
}

/// An AuthorizationPolicy from the API that applies to the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthzEntry {
    pub namespace: String,
    pub name: String,
    /// ALLOW, DENY, AUDIT or CUSTOM.
    pub action: String,
    /// Rules in the spec.
    pub rules: usize,
    /// `mesh` (root namespace), `namespace` or `selector`.
    pub scope: String,
    /// The selector (`app=x`), for scope `selector`.
    pub selector: Option<String>,
    /// `istio.io/dry-run: "true"`: evaluated as shadow, never enforced.
    pub dry_run: bool,
    /// The ext-authz provider of a CUSTOM policy.
    pub provider: Option<String>,
    /// The Envoy RBAC policy names it becomes.
    pub envoy_names: Vec<String>,
    /// What it means, in one line.
    pub meaning: String,
    /// One line per rule, in words.
    pub details: Vec<String>,
    /// Whether the sidecar has loaded it (`None` when the proxy could not be read
    /// or dry-run policies whose shadow rules could not be seen).
    pub loaded: Option<bool>,
    /// Seconds since creation, when known.
    pub age_seconds: Option<i64>,
    /// With `-f` / `--delete-f` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
}

/// Where the Envoy view came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProxySource {
    /// `istioctl x authz check` output.
    Istioctl,
    /// An Envoy config dump (through exec, or a file).
    ConfigDump,
    /// No view: no sidecar, or it could not be read.
    Unavailable,
}

impl ProxySource {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxySource::Istioctl => "istioctl",
            ProxySource::ConfigDump => "config-dump",
            ProxySource::Unavailable => "unavailable",
        }
    }
}

/// What the sidecar's Envoy loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxyView {
    pub source: ProxySource,
    /// How it was obtained (`istioctl x authz check POD.NS`, a file path, or why unavailable).
    pub detail: String,
    /// Exactly istioctl's rows, in its order.
    pub rows: Vec<ProxyRow>,
    /// What istioctl's table hides: dry-run (shadow) policies and CUSTOM providers.
    /// `None` when the config dump was not read.
    pub hidden: Option<Vec<HiddenPolicy>>,
    /// Each `_anonymous_match_nothing_` and why it exists (config dump only).
    pub anonymous: Vec<AnonymousEntry>,
}

/// One row of istioctl's table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxyRow {
    /// DENY, ALLOW, LOG or CUSTOM.
    pub action: String,
    /// The AuthorizationPolicy name, or `_anonymous_match_nothing_`.
    pub policy: String,
    /// Its namespace (`None` for `_anonymous_match_nothing_`).
    pub namespace: Option<String>,
    /// Distinct rules Envoy holds for it.
    pub rules: u32,
}

/// A policy Envoy holds that istioctl's table does not show (or shows without its provider).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HiddenPolicy {
    /// DENY, ALLOW, LOG or CUSTOM.
    pub action: String,
    pub policy: String,
    pub namespace: Option<String>,
    /// `dry-run` or `custom`.
    pub kind: String,
    pub provider: Option<String>,
    /// Distinct rule indices seen.
    pub rules: u32,
    /// `http` or `network` RBAC filter(s), listener:port.
    #[serde(rename = "where")]
    pub where_: Vec<String>,
}

/// An `_anonymous_match_nothing_` entry and its origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnonymousEntry {
    pub action: String,
    /// `empty_rule_set`, `dry_run_only`, `custom_only`, `no_rules`, or `unknown` (istioctl only).
    pub origin: String,
    /// Listener:port and filter chain, when known.
    pub location: Option<String>,
    pub explanation: String,
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// A conclusion joining the layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Stable short name (`not-loaded`, `no-sidecar`, ...), for scripts.
    pub code: String,
    pub message: String,
    /// With `-f` / `--delete-f` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
}

impl Finding {
    pub fn new(severity: Severity, code: &str, message: impl Into<String>) -> Self {
        Finding {
            severity,
            code: code.to_string(),
            message: message.into(),
            change: None,
        }
    }
}
