//! The decision record: the JSON contract of `kubectl rbaclog` and its table row.
//!
//! Whatever log line a decision came from (an RBAC debug line, a `Preparing local
//! reply` line, a server-side access log line, or several of them paired), it is
//! printed as one [`DecisionRecord`] with the documented fields (`time`,
//! `namespace`, `pod`, `origin`, `engine`, `decision`, `policy_id`, `policy`,
//! `request`, `downstream`, `connection_id`, `stream_id`, `line`). Keeping the
//! record plain data lets pairing, filters and the summary work on it, and leaves
//! rendering (table, wide, JSON, JSON Lines) to the last step.

use jiff::Timestamp;
use kubeplugin::render::{Cell, Column, Tabular, Tone};
use meshpolicy::envoy::PolicyId;
use serde::Serialize;

/// Which kind of log line a decision was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// An Envoy RBAC filter debug line (`enforced denied, matched policy ...`).
    #[default]
    RbacDebug,
    /// A server-side access log line carrying `rbac_access_denied_matched_policy[...]`.
    AccessLog,
    /// A `Preparing local reply with details rbac_access_denied_matched_policy[...]` line.
    LocalReply,
    /// A ztunnel (ambient mode) access or RBAC line.
    Ztunnel,
}

impl Origin {
    /// Where Envoy writes this line in one request's life: the RBAC filter decides,
    /// the HTTP connection manager prepares the local reply, the access log is
    /// written when the stream ends. ztunnel lines come from another proxy.
    pub fn rank(self) -> u8 {
        match self {
            Origin::RbacDebug => 0,
            Origin::LocalReply => 1,
            Origin::AccessLog => 2,
            Origin::Ztunnel => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Origin::RbacDebug => "rbac-debug",
            Origin::AccessLog => "access-log",
            Origin::LocalReply => "local-reply",
            Origin::Ztunnel => "ztunnel",
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which RBAC engine decided: enforced rules, shadow rules (dry-run, CUSTOM), or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    #[default]
    Enforced,
    Shadow,
    None,
}

impl EngineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Enforced => "enforced",
            EngineKind::Shadow => "shadow",
            EngineKind::None => "none",
        }
    }
}

impl From<meshpolicy::envoy::Engine> for EngineKind {
    fn from(e: meshpolicy::envoy::Engine) -> Self {
        match e {
            meshpolicy::envoy::Engine::Enforced => EngineKind::Enforced,
            meshpolicy::envoy::Engine::Shadow => EngineKind::Shadow,
            meshpolicy::envoy::Engine::None => EngineKind::None,
        }
    }
}

/// Allowed or denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RbacOutcome {
    #[default]
    Denied,
    Allowed,
}

impl RbacOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RbacOutcome::Denied => "denied",
            RbacOutcome::Allowed => "allowed",
        }
    }
}

/// The AuthorizationPolicy action behind a decision, where it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    Allow,
    Deny,
    /// An external authorizer (ext_authz) decided, or was asked to.
    Custom,
    /// Logged only; never changes the outcome.
    Audit,
}

/// Which filter (or proxy component) wrote the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FilterName {
    /// Envoy's HTTP RBAC filter (`envoy.filters.http.rbac`).
    HttpRbac,
    /// Envoy's network (TCP) RBAC filter (`envoy.filters.network.rbac`).
    NetworkRbac,
    /// Envoy's ext_authz filter (CUSTOM policies).
    ExtAuthz,
    /// ztunnel's L4 authorization (ambient mode).
    Ztunnel,
}

impl From<meshpolicy::envoy::FilterKind> for FilterName {
    fn from(f: meshpolicy::envoy::FilterKind) -> Self {
        match f {
            meshpolicy::envoy::FilterKind::Http => FilterName::HttpRbac,
            meshpolicy::envoy::FilterKind::Network => FilterName::NetworkRbac,
        }
    }
}

/// Another RBAC filter that ran on the same request without deciding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilterDecision {
    pub filter: Option<FilterName>,
    pub engine: EngineKind,
    pub decision: RbacOutcome,
    pub policy_id: Option<String>,
    /// `AUDIT` when this filter's match was an AUDIT policy's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
}

/// The AuthorizationPolicy behind a policy id, when the id follows Istio's naming.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyRef {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub rule: Option<String>,
    /// The CUSTOM (ext_authz) provider, when the id names one.
    pub provider: Option<String>,
}

impl PolicyRef {
    /// `None` for `none` and for ids that do not follow `ns[NS]-policy[NAME]-rule[N]`.
    pub fn from_id(id: &PolicyId) -> Option<PolicyRef> {
        if id.none || id.name.is_none() {
            return None;
        }
        Some(PolicyRef {
            namespace: id.namespace.clone(),
            name: id.name.clone(),
            rule: id.rule.clone(),
            provider: id.provider.clone(),
        })
    }
}

/// The HTTP request a decision was about (from the access log line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestInfo {
    pub method: Option<String>,
    pub path: Option<String>,
    pub authority: Option<String>,
    pub response_code: Option<u16>,
}

/// Another line that was paired into this decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PairedLine {
    pub origin: Origin,
    pub line: String,
}

/// One RBAC decision, as printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct DecisionRecord {
    /// RFC 3339 time of the decision (the log line's own time, else the kubelet's).
    pub time: Option<String>,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    /// The line the decision was first read from.
    pub origin: Origin,
    pub engine: EngineKind,
    pub decision: RbacOutcome,
    /// The policy id exactly as Envoy printed it (`none` included); null when the line had none.
    pub policy_id: Option<String>,
    pub policy: Option<PolicyRef>,
    pub request: Option<RequestInfo>,
    /// The downstream (source) address, from the access log line.
    pub downstream: Option<String>,
    pub connection_id: Option<u64>,
    pub stream_id: Option<u64>,
    /// The raw line of `origin`.
    pub line: String,
    /// Lines of the same request paired into this decision (local reply, access log).
    pub paired: Vec<PairedLine>,
    /// The file the line was read from (`-` for stdin), with `--file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// `unknown` when the log printed its time without a zone (`time` is then the
    /// text as written, the container's local time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<&'static str>,
    /// The policy's action where known: CUSTOM for ext_authz, AUDIT, ALLOW/DENY.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Why, in words, when the policy alone does not say (`no ALLOW rule matched`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub because: Option<String>,
    /// For ALLOW misses, live: the ALLOW policies that apply to the workload (`NS/NAME`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_policies: Vec<String>,
    /// The filter that decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterName>,
    /// The proxy kind that wrote the line (`sidecar`, `gateway`, `waypoint`, `ztunnel`), where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<&'static str>,
    /// Other RBAC filters that ran on the same request (not deciding it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<FilterDecision>,
    /// The request's `x-request-id`, when a line gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The downstream resolved to a workload (`NS/POD`, or ztunnel's `src.workload`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The destination workload, when the line names it (ztunnel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Envoy's response code details for CUSTOM denials (`ext_authz_denied`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// Parsed `time`, for ordering and pairing windows.
    #[serde(skip)]
    pub ts: Option<Timestamp>,
}

impl DecisionRecord {
    /// Every origin that contributed, the record's own first.
    pub fn origins(&self) -> Vec<Origin> {
        let mut v = vec![self.origin];
        v.extend(self.paired.iter().map(|p| p.origin));
        v
    }

    /// Pairs another line of the same request into this decision. Paired lines
    /// are kept in the order Envoy writes them for one request ([`Origin::rank`]),
    /// not in the order the log stream delivered them: Envoy's access log
    /// (stdout) and debug log (stderr) interleave in the container log, and the
    /// same evidence must read the same way every time.
    pub fn add_paired(&mut self, line: PairedLine) {
        let at = self
            .paired
            .partition_point(|p| p.origin.rank() <= line.origin.rank());
        self.paired.insert(at, line);
    }

    /// `NS/NAME` as kubectl prints it, else the raw id, else `-`; an ALLOW miss
    /// with known candidates lists them (`none (allow: NS/A, NS/B)`); a CUSTOM policy
    /// carries its provider (`NS/NAME (ext_authz PROVIDER)`).
    pub fn policy_label(&self) -> String {
        let base = match (&self.policy, &self.policy_id) {
            (
                Some(PolicyRef {
                    name: Some(name),
                    namespace: Some(ns),
                    ..
                }),
                _,
            ) => format!("{ns}/{name}"),
            (
                Some(PolicyRef {
                    name: Some(name), ..
                }),
                _,
            ) => name.clone(),
            (_, Some(raw)) => raw.clone(),
            _ => "-".into(),
        };
        if !self.allow_policies.is_empty() {
            return format!("{base} (allow: {})", self.allow_policies.join(", "));
        }
        match self.policy.as_ref().and_then(|p| p.provider.as_deref()) {
            Some(provider) => format!("{base} (ext_authz {provider})"),
            None => base,
        }
    }

    /// `GET /path (authority) 403`, `tcp to NS/WORKLOAD` (ztunnel), or `-`.
    pub fn request_label(&self) -> String {
        let Some(r) = &self.request else {
            return match (&self.to, self.proxy) {
                (Some(to), Some("ztunnel")) => format!("tcp to {to}"),
                _ => "-".into(),
            };
        };
        let mut parts = Vec::new();
        match (&r.method, &r.path) {
            (Some(m), Some(p)) => parts.push(format!("{m} {p}")),
            (Some(m), None) => parts.push(m.clone()),
            (None, Some(p)) => parts.push(p.clone()),
            (None, None) => parts.push("tcp".into()),
        }
        if let Some(a) = &r.authority {
            parts.push(format!("({a})"));
        }
        if let Some(c) = r.response_code {
            parts.push(c.to_string());
        }
        parts.join(" ")
    }

    /// `denied`, `allowed`, `denied (shadow)`, `allowed (no engine)`, `denied (CUSTOM)`,
    /// `sent to ext_authz` (a CUSTOM policy's trigger), `audit`.
    pub fn decision_label(&self) -> String {
        match (self.action, self.engine) {
            (Some(Action::Custom), EngineKind::Shadow) => return "sent to ext_authz".into(),
            (Some(Action::Custom), _) => return format!("{} (CUSTOM)", self.decision.as_str()),
            (Some(Action::Audit), _) => return "audit".into(),
            _ => {}
        }
        if self.filters.iter().any(|f| f.action == Some(Action::Audit)) {
            return format!("{} +audit", self.decision.as_str());
        }
        match self.engine {
            EngineKind::Enforced => self.decision.as_str().to_string(),
            EngineKind::Shadow => format!("{} (shadow)", self.decision.as_str()),
            EngineKind::None => format!("{} (no engine)", self.decision.as_str()),
        }
    }

    /// The destination as `NS/NAME` when the line says where the connection or
    /// request went: ztunnel's `dst.namespace/dst.workload` (or the pod behind
    /// `dst.addr`, resolved live), a waypoint's Service from the request's
    /// authority (live). A sidecar's destination is its own pod.
    pub fn destination(&self) -> Option<String> {
        match self.proxy {
            Some("ztunnel" | "waypoint") => self.to.clone().filter(|t| t.contains('/')),
            _ => match (&self.namespace, &self.pod) {
                (Some(ns), Some(pod)) => Some(format!("{ns}/{pod}")),
                _ => None,
            },
        }
    }

    /// The namespace of [`DecisionRecord::destination`].
    pub fn destination_namespace(&self) -> Option<String> {
        let d = self.destination()?;
        d.split_once('/').map(|(ns, _)| ns.to_string())
    }

    /// The source workload's namespace: from `from` (`NS/POD`, or a SPIFFE
    /// identity `spiffe://TD/ns/NS/sa/SA`).
    pub fn source_namespace(&self) -> Option<String> {
        let from = self.from.as_deref()?;
        if let Some(rest) = from.strip_prefix("spiffe://") {
            let mut parts = rest.split('/').skip(1);
            return match (parts.next(), parts.next()) {
                (Some("ns"), Some(ns)) => Some(ns.to_string()),
                _ => None,
            };
        }
        from.split_once('/').map(|(ns, _)| ns.to_string())
    }

    /// Pod label: `NS/POD`, else the file, else `-`; a live ztunnel's or
    /// waypoint's pod is followed by its kind (`NS/POD (ztunnel)`).
    pub fn pod_label(&self) -> String {
        match (&self.namespace, &self.pod, &self.file) {
            (Some(ns), Some(p), _) => match self.proxy {
                Some(kind @ ("ztunnel" | "waypoint")) => format!("{ns}/{p} ({kind})"),
                _ => format!("{ns}/{p}"),
            },
            (None, Some(p), _) => p.clone(),
            (_, None, Some(f)) => f.clone(),
            _ => "-".into(),
        }
    }
}

fn opt(v: &Option<impl ToString>) -> String {
    v.as_ref()
        .map(|x| x.to_string())
        .unwrap_or_else(|| "-".into())
}

impl Tabular for DecisionRecord {
    fn columns() -> Vec<Column> {
        vec![
            Column::new("TIME"),
            Column::new("POD"),
            Column::new("DECISION"),
            Column::new("POLICY"),
            Column::new("RULE"),
            Column::new("REQUEST"),
            Column::new("FROM"),
            Column::new("LOG"),
            Column::wide("CONNECTION"),
            Column::wide("STREAM"),
            Column::wide("DOWNSTREAM"),
        ]
    }

    fn cells(&self) -> Vec<Cell> {
        let tone = match (self.decision, self.engine) {
            (RbacOutcome::Denied, EngineKind::Enforced) => Tone::Bad,
            (RbacOutcome::Denied, _) => Tone::Warn,
            (RbacOutcome::Allowed, _) => Tone::Good,
        };
        let origins: Vec<&str> = self.origins().into_iter().map(Origin::as_str).collect();
        vec![
            Cell::new(opt(&self.time)),
            Cell::new(self.pod_label()),
            Cell::new(self.decision_label()).tone(tone),
            Cell::new(self.policy_label()),
            Cell::new(opt(&self.policy.as_ref().and_then(|p| p.rule.clone()))),
            Cell::new(self.request_label()),
            Cell::new(opt(&self.from)),
            Cell::new(origins.join("+")),
            Cell::new(opt(&self.connection_id)),
            Cell::new(opt(&self.stream_id)),
            Cell::new(opt(&self.downstream)),
        ]
    }
}
