//! What `--explain` and `--predict` say about one probe, as data: the layers
//! (NetworkPolicy, PeerAuthentication, AuthorizationPolicy), each policy's
//! note and the engine's verdict. The explanation logic (`explain`) builds
//! these and the report carries them; keeping the types here lets the report
//! and the renderers use them without depending on the logic.

use serde::Serialize;

use crate::verdict::Verdict;

/// Which analysis the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnalysisMode {
    /// After probing: name the policies and flag contradictions.
    Explain,
    /// Instead of probing: predict the verdict from the policies.
    Predict,
}

/// Which kind of policy a note is about.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    NetworkPolicy,
    AuthorizationPolicy,
    PeerAuthentication,
}

impl PolicyKind {
    fn as_str(self) -> &'static str {
        match self {
            PolicyKind::NetworkPolicy => "networkpolicy",
            PolicyKind::AuthorizationPolicy => "authorizationpolicy",
            PolicyKind::PeerAuthentication => "peerauthentication",
        }
    }
}

/// What a policy did to the probe.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    /// A rule of this policy admitted the traffic (or the policy decided ALLOW).
    Allowed,
    /// This policy denied it (DENY matched, or it isolates the pod and no rule admits).
    Denied,
    /// The policy applies but none of its rules matched; another decided.
    NoMatch,
    /// A dry-run policy: logged by Envoy's shadow engine, not enforced.
    DryRun,
    /// A CUSTOM policy matched: the external authorizer decides.
    Delegated,
    /// An AUDIT policy matched (logged only).
    Audited,
    /// The destination has no sidecar: AuthorizationPolicy is not enforced.
    NotEnforced,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allowed => "allowed",
            Effect::Denied => "denied",
            Effect::NoMatch => "no-match",
            Effect::DryRun => "dry-run",
            Effect::Delegated => "delegated",
            Effect::Audited => "audited",
            Effect::NotEnforced => "not-enforced",
        }
    }
}

/// Where a note comes from.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum NoteSource {
    /// meshpolicy's evaluation of the objects read from the API.
    Engine,
    /// The destination sidecar's istio-proxy log (Envoy RBAC lines).
    EnvoyLog,
}

/// One policy that bears on a probe (`policies` in `-o json`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PolicyNote {
    pub kind: PolicyKind,
    /// Namespace and name; None for Envoy's `none` (no ALLOW policy matched).
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// NetworkPolicy: `egress` (of the source) or `ingress` (of the destination).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// The rule index that decided, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
    /// AuthorizationPolicy action (ALLOW, DENY, AUDIT, CUSTOM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// For AuthorizationPolicy: the Envoy policy id (`ns[NS]-policy[NAME]-rule[N]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<String>,
    pub effect: Effect,
    /// What this policy did to the probe, in words.
    pub detail: String,
    pub source: NoteSource,
}

impl PolicyNote {
    /// `networkpolicy np-test-2/deny-all`.
    pub fn label(&self) -> String {
        match (&self.namespace, &self.name) {
            (Some(ns), Some(n)) => format!("{} {ns}/{n}", self.kind.as_str()),
            _ => format!(
                "{} {}",
                self.kind.as_str(),
                self.policy_id.as_deref().unwrap_or("?")
            ),
        }
    }
}

/// The NetworkPolicy layer's answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NetworkLayer {
    pub allowed: bool,
    /// The pod port evaluated (the Service's targetPort).
    pub port: u16,
    pub egress: String,
    pub ingress: String,
}

/// The AuthorizationPolicy layer's answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuthzLayer {
    /// ALLOW, DENY or CANNOT_EVALUATE.
    pub decision: String,
    /// False when the destination has no sidecar.
    pub enforced: bool,
    /// The deciding Envoy policy id (`none`: ALLOW policies apply and none matched).
    pub policy_id: Option<String>,
    pub reason: String,
}

/// The PeerAuthentication layer's answer: what the destination sidecar's
/// port accepts and what the client sends (Istio auto mTLS).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MtlsLayer {
    /// The destination container port.
    pub port: u16,
    /// STRICT, PERMISSIVE or DISABLE.
    pub mode: String,
    /// `namespace/name` of the PeerAuthentication that decided the mode;
    /// None: no PeerAuthentication applies (PERMISSIVE by default).
    pub decided_by: Option<String>,
    /// mesh, namespace or workload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The mode comes from the policy's `portLevelMtls`.
    pub port_level: bool,
    /// `mtls` or `plaintext`.
    pub client_sends: String,
    /// The connection fails the handshake.
    pub fails: bool,
}

/// The analysis of one probe (`analysis` in `-o json`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct Analysis {
    /// The pod evaluated as the destination (the first Ready pod the Service selects).
    pub destination_pod: Option<String>,
    pub network: Option<NetworkLayer>,
    /// Only when the destination has a sidecar.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MtlsLayer>,
    pub authorization: Option<AuthzLayer>,
    /// The verdict the engine expects (`--predict` reports it as the verdict).
    pub engine_verdict: Option<Verdict>,
    /// Policy ids the destination's Envoy logged for this probe (`--explain`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub envoy_policy_ids: Vec<String>,
    /// Where the engine, Envoy and the probe disagree.
    pub contradictions: Vec<String>,
    /// What limited the analysis.
    pub notes: Vec<String>,
}
