//! The probe record: the JSON contract of npexec (`from`, `to`, `verdict`,
//! `http_status`, `curl_exit`, `body`, `duration_ms`, `expected`, `met`,
//! `hint`, `policies`, ...), one per probe. Data only: the views that print it
//! are in the report module.

use serde::Serialize;

use crate::analysis::{Analysis, PolicyNote};
use crate::verdict::{Expectation, Tool, Verdict};

/// Where a probe ran.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct FromRef {
    pub namespace: String,
    pub pod: Option<String>,
    pub container: Option<String>,
    /// The client the container has (`curl`, `wget (GNU)`, `wget (busybox)`),
    /// when looked at (see crates/kubectl-npexec/src/source.rs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Whether the source pod runs an Istio sidecar.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<bool>,
}

/// What a probe requested.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ToRef {
    pub namespace: Option<String>,
    pub service: Option<String>,
    pub port: Option<u16>,
    pub url: String,
}

/// One probe, as printed.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeRecord {
    pub from: FromRef,
    pub to: ToRef,
    pub verdict: Verdict,
    pub detail: String,
    pub http_status: Option<u16>,
    pub curl_exit: Option<i32>,
    pub tool: Option<Tool>,
    /// The first 256 bytes of the body (lossy UTF-8).
    pub body: String,
    pub duration_ms: u64,
    pub expected: Option<Expectation>,
    pub met: Option<bool>,
    pub hint: Option<String>,
    /// Present with `--explain` / `--predict`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<PolicyNote>>,
    /// The engine's view of both layers, contradictions and notes
    /// (`--explain` / `--predict`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
    /// `true` with `--predict` (no probe ran).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub predicted: bool,
    /// The source sidecar's outbound cluster counters before and after a
    /// TCP probe (what decided it, or why they could not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sidecar_stats: Option<crate::verdict::SidecarStats>,
    /// When the probe started (to find its lines in the sidecar's log).
    #[serde(skip)]
    pub started_at: Option<jiff::Timestamp>,
}

/// Truncates a body to 256 bytes on a character boundary.
pub fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut end = text.len().min(256);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

impl ProbeRecord {
    pub fn from_label(&self) -> String {
        match &self.from.pod {
            Some(p) => format!("{}/{p}", self.from.namespace),
            None => self.from.namespace.clone(),
        }
    }

    pub fn to_label(&self) -> String {
        match (&self.to.namespace, &self.to.service, self.to.port) {
            (Some(ns), Some(s), Some(p)) => format!("{ns}/{s}:{p}"),
            _ => self.to.url.clone(),
        }
    }
}

impl ProbeRecord {
    /// The policy that decided, in short (`authorizationpolicy np-test-2/deny`),
    /// from Envoy's log first, then the engine; None without analysis.
    pub fn deciding_policy(&self) -> Option<String> {
        use crate::analysis::{Effect, NoteSource, PolicyKind};
        let policies = self.policies.as_ref()?;
        // When NetworkPolicy drops the connection, the sidecar never decides.
        let net_blocks = self
            .analysis
            .as_ref()
            .and_then(|a| a.network.as_ref())
            .is_some_and(|n| !n.allowed);
        // When the mTLS handshake fails, RBAC never runs.
        let mtls_fails = !net_blocks
            && self
                .analysis
                .as_ref()
                .and_then(|a| a.mtls.as_ref())
                .is_some_and(|m| m.fails);
        let from = |src: NoteSource| -> Vec<String> {
            let mut v: Vec<String> = policies
                .iter()
                .filter(|p| p.source == src)
                .filter(|p| matches!(p.effect, Effect::Denied | Effect::Allowed))
                .filter(|p| {
                    src == NoteSource::EnvoyLog
                        || !net_blocks
                        || p.kind == PolicyKind::NetworkPolicy
                })
                .filter(|p| !mtls_fails || p.kind == PolicyKind::PeerAuthentication)
                .map(PolicyNote::label)
                .collect();
            v.dedup();
            v
        };
        let mut names = from(NoteSource::EnvoyLog);
        if names.is_empty() {
            names = from(NoteSource::Engine);
        }
        (!names.is_empty()).then(|| names.join(", "))
    }
}
