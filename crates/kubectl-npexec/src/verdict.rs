//! Turning what curl (or wget) reported into one verdict with a detail and a hint.
//!
//! The walk-through's only answer is "Failed"; the point of npexec is to say
//! which layer decided. The signals are curl's exit code, the HTTP status and
//! the body: Envoy answers an AuthorizationPolicy denial with 403 and body
//! `RBAC: access denied`, a NetworkPolicy drop shows as a timeout (or an Envoy
//! 503 `upstream connect error ... connection timeout/failure` when the source
//! has a sidecar), an mTLS mismatch as a reset or a 503 `connection
//! termination`. This module is pure so the table of cases is unit-tested.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use meshpolicy::envoy::stats::{ClusterCounters, UpstreamOutcome, upstream_outcome};

use crate::ports::ProbeKind;

/// One probe's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Allowed,
    DeniedRbac,
    BlockedNetwork,
    Refused,
    DnsFailure,
    MtlsFailure,
    HttpError,
    ExecFailed,
    /// The Service has no ready endpoint: nothing to send the request to
    /// (EndpointSlices before probing, or the sidecar's 503 `no healthy upstream`).
    NoEndpoints,
    /// Only from `--predict`: the engine cannot decide (e.g. a CUSTOM
    /// policy's external authorizer, or a condition on unknown attributes).
    Unknown,
}

impl Verdict {
    /// Every verdict a probe can produce ([`Verdict::Unknown`] is only predicted).
    pub const ALL: [Verdict; 9] = [
        Verdict::Allowed,
        Verdict::DeniedRbac,
        Verdict::BlockedNetwork,
        Verdict::Refused,
        Verdict::DnsFailure,
        Verdict::MtlsFailure,
        Verdict::HttpError,
        Verdict::ExecFailed,
        Verdict::NoEndpoints,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::DeniedRbac => "denied-rbac",
            Verdict::BlockedNetwork => "blocked-network",
            Verdict::Refused => "refused",
            Verdict::DnsFailure => "dns-failure",
            Verdict::MtlsFailure => "mtls-failure",
            Verdict::HttpError => "http-error",
            Verdict::ExecFailed => "exec-failed",
            Verdict::NoEndpoints => "no-endpoints",
            Verdict::Unknown => "unknown",
        }
    }

    /// The one-character symbol used in `--matrix` cells.
    pub fn symbol(self) -> char {
        match self {
            Verdict::Allowed => 'A',
            Verdict::DeniedRbac => 'R',
            Verdict::BlockedNetwork => 'N',
            Verdict::Refused => 'C',
            Verdict::DnsFailure => 'D',
            Verdict::MtlsFailure => 'T',
            Verdict::HttpError => 'H',
            Verdict::ExecFailed => 'E',
            Verdict::NoEndpoints => '0',
            Verdict::Unknown => '?',
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Verdict {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Verdict::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown verdict \"{s}\""))
    }
}

/// What `--expect` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expectation {
    /// `allow`: the verdict is `allowed`.
    Allow,
    /// `deny`: a policy stopped it (`denied-rbac` or `blocked-network`).
    Deny,
    /// `reachable`: the destination application answered, whatever its status
    /// (`allowed` or `http-error`): the mesh let the request through.
    Reachable,
    /// An exact verdict.
    Exactly(Verdict),
}

impl Expectation {
    pub fn met_by(self, v: Verdict) -> bool {
        match self {
            Expectation::Allow => v == Verdict::Allowed,
            Expectation::Deny => matches!(v, Verdict::DeniedRbac | Verdict::BlockedNetwork),
            Expectation::Reachable => matches!(v, Verdict::Allowed | Verdict::HttpError),
            Expectation::Exactly(want) => v == want,
        }
    }
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expectation::Allow => f.write_str("allow"),
            Expectation::Deny => f.write_str("deny"),
            Expectation::Reachable => f.write_str("reachable"),
            Expectation::Exactly(v) => write!(f, "{v}"),
        }
    }
}

impl Serialize for Expectation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for Expectation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" | "allowed" => Ok(Expectation::Allow),
            "deny" | "denied" => Ok(Expectation::Deny),
            "reachable" => Ok(Expectation::Reachable),
            other => other.parse().map(Expectation::Exactly).map_err(|_| {
                let all: Vec<_> = Verdict::ALL.iter().map(|v| v.as_str()).collect();
                format!(
                    "unknown expectation \"{other}\" (use allow, deny, reachable, or one of {})",
                    all.join(", ")
                )
            }),
        }
    }
}

/// Which client made the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tool {
    Curl,
    Wget,
}

/// What a probe observed.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// The client's exit code (None when it never ran).
    pub exit: Option<i32>,
    /// HTTP status, when a response arrived.
    pub http_status: Option<u16>,
    /// The start of the body.
    pub body: Vec<u8>,
    /// The client's stderr (error messages).
    pub stderr: String,
    /// Response headers the client printed (wget `-S`), lower-case names.
    pub headers: Vec<(String, String)>,
    /// For a 403 seen without headers or body (busybox wget): whether the
    /// destination sidecar logged an enforced RBAC denial for it (None: not read).
    pub rbac_logged: Option<bool>,
    /// The source pod runs an Istio sidecar.
    pub source_sidecar: bool,
    /// The client's time limit in seconds (for messages).
    pub timeout_secs: f64,
    pub wget: bool,
    /// The destination pod is in Istio ambient mode (istio-cni's
    /// `ambient.istio.io/redirection: enabled`, or meshpolicy::ambient's rule):
    /// a reset then comes from its node's ztunnel, not from an mTLS mismatch.
    pub destination_ambient: bool,
    /// What the probe spoke (HTTP, HTTP/2, TLS, TCP).
    pub kind: ProbeKind,
    /// How long the client ran, in seconds.
    pub elapsed_secs: f64,
    /// The source sidecar's outbound cluster counters around a TCP probe
    /// (None: not read: no sidecar, not a TCP probe to a Service).
    pub sidecar_stats: Option<SidecarStats>,
}

/// The bytes curl's `gopher://` TCP probe sends (`\r\n`).
pub const TCP_PROBE_BYTES: u64 = 2;

/// What the source sidecar's outbound cluster said before and after a TCP
/// probe (`pilot-agent request GET stats?filter=...` in `istio-proxy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SidecarStats {
    /// Istio's outbound cluster of the Service port (`outbound|PORT||HOST`).
    pub cluster: String,
    /// None when the counters could not be read (see `error`).
    pub before: Option<ClusterCounters>,
    pub after: Option<ClusterCounters>,
    /// Why they could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SidecarStats {
    /// What the change says about the upstream connection of `obs`'s probe
    /// (None: unread). curl's TCP probe sends exactly [`TCP_PROBE_BYTES`];
    /// wget sends an HTTP request of a length not known here.
    pub fn outcome(&self, obs: &Observation) -> Option<UpstreamOutcome> {
        let (before, after) = (self.before.as_ref()?, self.after.as_ref()?);
        let bytes = (!obs.wget).then_some(TCP_PROBE_BYTES);
        Some(upstream_outcome(&after.since(before), bytes))
    }

    /// The change of the counters that matter, as `name +N` (for details).
    fn moved(&self) -> String {
        let (Some(b), Some(a)) = (&self.before, &self.after) else {
            return String::new();
        };
        let d = a.since(b);
        format!(
            "upstream_cx_total +{}, upstream_cx_tx_bytes_total +{}, upstream_cx_connect_fail +{}, upstream_cx_connect_timeout +{}",
            d.upstream_cx_total,
            d.upstream_cx_tx_bytes_total,
            d.upstream_cx_connect_fail,
            d.upstream_cx_connect_timeout
        )
    }
}

/// Istio's default outbound connect timeout: a source sidecar's `tcp_proxy`
/// closes its client's connection after it when the upstream never answers.
pub const SIDECAR_CONNECT_TIMEOUT_SECS: f64 = 10.0;

/// Whether the connection was accepted and then closed with no answer:
/// what Envoy's network RBAC filter does to a denied connection on its first
/// bytes (measured with curl 7.88.1 and GNU Wget 1.21.3 against Envoy 1.40):
/// curl `(52) Empty reply from server` (HTTP), `(35) ... SSL_ERROR_SYSCALL`
/// (TLS), exit 0 and no output (gopher, the TCP probe); GNU wget `No data
/// received.` (HTTP) or `Unable to establish SSL connection.` (TLS);
/// busybox wget `error getting response` without a reason.
pub fn closed_without_answer(obs: &Observation) -> bool {
    if obs.http_status.is_some() {
        return false;
    }
    if obs.wget {
        let e = obs.stderr.to_ascii_lowercase();
        return e.contains("no data received")
            || e.contains("unable to establish ssl connection")
            || e.lines()
                .any(|l| l.trim_end() == "wget: error getting response");
    }
    match obs.exit {
        Some(52) => true,
        Some(35) => obs.stderr.contains("SSL_ERROR_SYSCALL"),
        Some(0) => obs.kind == ProbeKind::Tcp && obs.body.is_empty(),
        _ => false,
    }
}

/// A TCP probe's connection that the server side closed (curl exit 0),
/// whatever came before: Envoy's `tcp_proxy` connects upstream as soon as
/// it accepts, so a server that speaks first (a greeting, as MySQL's) can
/// get it through before the probe's first bytes reach the RBAC filter,
/// which then closes the connection (measured with Envoy 1.40).
pub fn closed_by_server(obs: &Observation) -> bool {
    !obs.wget && obs.kind == ProbeKind::Tcp && obs.exit == Some(0)
}

/// A closed connection: the RBAC log decides; a source sidecar that gave up
/// on its upstream closes too, after its connect timeout.
fn classify_closed(obs: &Observation, ctx: &HintContext) -> Classified {
    let how = if obs.wget {
        "wget".to_string()
    } else {
        format!("curl exit {}", obs.exit.unwrap_or(-1))
    };
    if obs.rbac_logged == Some(true) {
        return Classified {
            verdict: Verdict::DeniedRbac,
            detail: format!(
                "connection closed without an answer ({how}), and the destination sidecar logged an RBAC denial for it (Istio AuthorizationPolicy on a {} port)",
                if obs.kind.speaks_http() {
                    "TCP"
                } else {
                    obs.kind.as_str()
                }
            ),
            hint: Some(rbac_hint(ctx)),
        };
    }
    if obs.source_sidecar && obs.elapsed_secs >= SIDECAR_CONNECT_TIMEOUT_SECS {
        return Classified {
            verdict: Verdict::BlockedNetwork,
            detail: format!(
                "the source sidecar closed the connection after its {}s connect timeout ({how})",
                fmt_secs(SIDECAR_CONNECT_TIMEOUT_SECS)
            ),
            hint: Some(netpol_hint(ctx)),
        };
    }
    Classified {
        verdict: Verdict::MtlsFailure,
        detail: format!(
            "connection closed without an answer ({how}); the destination sidecar's log has no RBAC denial for it"
        ),
        hint: Some(mtls_hint(ctx)),
    }
}

/// A TCP probe through the source's sidecar, decided by that sidecar's
/// outbound cluster counters (measured with Envoy 1.40: see
/// `tests/fixtures/npexec-tcp-sidecar/`): a connect still pending when the
/// client gave up, or one that timed out, is a drop on the way; one that
/// failed at once was refused. None when they do not decide (bytes were
/// forwarded: the destination's answer decides; or unread, or ambiguous).
fn classify_upstream(obs: &Observation, ctx: &HintContext) -> Option<Classified> {
    if obs.kind != ProbeKind::Tcp || obs.http_status.is_some() {
        return None;
    }
    let stats = obs.sidecar_stats.as_ref()?;
    let moved = stats.moved();
    let cluster = &stats.cluster;
    match stats.outcome(obs)? {
        UpstreamOutcome::ConnectPending => Some(Classified {
            verdict: Verdict::BlockedNetwork,
            detail: format!(
                "the source sidecar accepted the connection, but its connect to {cluster} never completed within {}s: no bytes forwarded ({moved})",
                fmt_secs(obs.timeout_secs)
            ),
            hint: Some(netpol_hint(ctx)),
        }),
        UpstreamOutcome::ConnectTimeout => Some(Classified {
            verdict: Verdict::BlockedNetwork,
            detail: format!(
                "the source sidecar's connect to {cluster} hit its {}s connect timeout ({moved})",
                fmt_secs(SIDECAR_CONNECT_TIMEOUT_SECS)
            ),
            hint: Some(netpol_hint(ctx)),
        }),
        UpstreamOutcome::ConnectFailed if obs.rbac_logged != Some(true) => Some(Classified {
            verdict: Verdict::Refused,
            detail: format!(
                "the source sidecar's connect to {cluster} failed at once, before any timeout ({moved})"
            ),
            hint: Some(refused_hint(ctx)),
        }),
        _ => None,
    }
}

/// A TCP (or TLS) probe whose connection was accepted: the server answered,
/// or kept it open waiting for more, which a TCP server does.
fn classify_connected(obs: &Observation) -> Option<Classified> {
    if obs.wget && obs.kind == ProbeKind::Tcp && obs.http_status.is_none() {
        return wget_connected(obs);
    }
    if obs.wget || obs.http_status.is_some() || obs.kind.speaks_http() {
        return None;
    }
    let open = obs.exit == Some(28) && obs.stderr.contains("bytes received");
    let answered = obs.exit == Some(0) && !obs.body.is_empty();
    if !(open || answered) {
        return None;
    }
    let mut detail = if answered {
        format!("the server answered: {}", first_line(&obs.body, 60))
    } else if obs.body.is_empty() {
        format!(
            "connected; the connection stayed open for {}s (the server waits for its client)",
            fmt_secs(obs.timeout_secs)
        )
    } else {
        format!("connected; the server sent {}", first_line(&obs.body, 60))
    };
    let forwarded = obs
        .sidecar_stats
        .as_ref()
        .filter(|s| s.outcome(obs) == Some(UpstreamOutcome::Forwarded));
    if let Some(stats) = forwarded {
        detail.push_str(&format!(
            " (the source sidecar forwarded the probe's {TCP_PROBE_BYTES} bytes to {}: {})",
            stats.cluster,
            stats.moved()
        ));
    } else if open
        && obs.body.is_empty()
        && obs.source_sidecar
        && obs.timeout_secs < SIDECAR_CONNECT_TIMEOUT_SECS
    {
        detail.push_str(&format!(
            " (through the source sidecar, a NetworkPolicy drop looks the same until its {}s connect timeout: use --timeout {} to tell)",
            fmt_secs(SIDECAR_CONNECT_TIMEOUT_SECS),
            fmt_secs(SIDECAR_CONNECT_TIMEOUT_SECS + 1.0)
        ));
    }
    Some(Classified {
        verdict: Verdict::Allowed,
        detail,
        hint: None,
    })
}

/// wget on a TCP port sends an HTTP request, which a TCP server does not
/// answer: wget times out whether the connection stayed open or was dropped.
/// Through a sidecar, its outbound counters tell them apart: bytes forwarded
/// means the connection was made.
fn wget_connected(obs: &Observation) -> Option<Classified> {
    let stats = obs
        .sidecar_stats
        .as_ref()
        .filter(|s| s.outcome(obs) == Some(UpstreamOutcome::Forwarded))?;
    if !obs.stderr.to_ascii_lowercase().contains("timed out") {
        return None;
    }
    Some(Classified {
        verdict: Verdict::Allowed,
        detail: format!(
            "connected; the connection stayed open for {}s (wget's HTTP request got no answer, as from a TCP server); the source sidecar forwarded it to {}: {}",
            fmt_secs(obs.timeout_secs),
            stats.cluster,
            stats.moved()
        ),
        hint: None,
    })
}

/// Names used in hints.
#[derive(Debug, Clone, Default)]
pub struct HintContext {
    pub from_namespace: String,
    pub to_namespace: Option<String>,
    /// The destination workload (service selector `app`, else the service name).
    pub workload: Option<String>,
    pub port: Option<u16>,
    pub host: String,
    pub cluster_domain: String,
    /// The destination namespace is enrolled in Istio's ambient mode
    /// (meshpolicy::ambient's rule on its labels): a reset comes from ztunnel.
    pub destination_ambient: bool,
    /// The waypoint the destination Service's traffic goes through (ambient):
    /// a 403 `RBAC: access denied` then comes from that waypoint's Envoy.
    pub destination_waypoint: Option<meshpolicy::ambient::Waypoint>,
}

/// A verdict with its one-line detail and hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub verdict: Verdict,
    pub detail: String,
    pub hint: Option<String>,
}

fn first_line(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut s: String = line.chars().take(max).collect();
    if line.chars().count() > max {
        s.push('…');
    }
    s
}

fn last_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
        .chars()
        .take(120)
        .collect()
}

fn dest(ctx: &HintContext) -> String {
    match (&ctx.to_namespace, &ctx.workload) {
        (Some(ns), Some(w)) => format!("{ns}/{w}"),
        (Some(ns), None) => ns.clone(),
        _ => ctx.host.clone(),
    }
}

fn netpol_hint(ctx: &HintContext) -> String {
    match &ctx.to_namespace {
        Some(ns) => format!(
            "a NetworkPolicy likely drops it: check `kubectl get networkpolicy -n {ns}` (ingress) and -n {} (egress)",
            ctx.from_namespace
        ),
        None => format!(
            "a NetworkPolicy or firewall likely drops it: check egress policies in {}",
            ctx.from_namespace
        ),
    }
}

/// The hint after a ztunnel denial: ztunnel's own log says which policy.
fn ztunnel_hint(ctx: &HintContext) -> String {
    let filter = match &ctx.to_namespace {
        Some(ns) => format!(" | grep 'dst.namespace=\"{ns}\"'"),
        None => String::new(),
    };
    format!(
        "denied by an L4 AuthorizationPolicy that ztunnel enforces for {}: see kubectl rbaclog -n istio-system -l app=ztunnel (or kubectl logs -n istio-system -l app=ztunnel{filter})",
        dest(ctx)
    )
}

/// A reset from an ambient destination's ztunnel (curl exit 56, wget's
/// `Connection reset by peer`, or the source sidecar's 503 `connection
/// termination`): ztunnel closes a connection an AuthorizationPolicy rejects.
fn ztunnel_reset(obs: &Observation, ctx: &HintContext) -> Option<Classified> {
    if !obs.destination_ambient {
        return None;
    }
    let body = String::from_utf8_lossy(&obs.body).to_ascii_lowercase();
    let stderr = obs.stderr.to_ascii_lowercase();
    let reset = match obs.http_status {
        Some(503) => body.contains("connection termination"),
        Some(_) => false,
        None if obs.wget => stderr.contains("reset"),
        None => obs.exit == Some(56),
    };
    reset.then(|| Classified {
        verdict: Verdict::DeniedRbac,
        detail: "connection reset by ztunnel (Istio ambient: denied by an L4 AuthorizationPolicy)"
            .into(),
        hint: Some(ztunnel_hint(ctx)),
    })
}

/// Classifies one observation.
pub fn classify(obs: &Observation, ctx: &HintContext) -> Classified {
    if let Some(z) = ztunnel_reset(obs, ctx) {
        return z;
    }
    let body = String::from_utf8_lossy(&obs.body);
    let c = |verdict, detail: String, hint: Option<String>| Classified {
        verdict,
        detail,
        hint,
    };
    if let Some(code) = obs.http_status {
        if (200..400).contains(&code) {
            let line = first_line(&obs.body, 60);
            let detail = if line.is_empty() {
                format!("HTTP {code} (empty body)")
            } else {
                line
            };
            return c(Verdict::Allowed, detail, None);
        }
        if code == 403 && obs.rbac_logged == Some(true) && obs.body.is_empty() {
            return c(
                Verdict::DeniedRbac,
                "403 Forbidden, and the destination sidecar logged an RBAC denial for it (busybox wget shows no headers or body)".into(),
                Some(rbac_hint(ctx)),
            );
        }
        if code == 403
            && is_envoy_rbac_reply(&body, &obs.headers)
            && let Some(w) = &ctx.destination_waypoint
        {
            return c(
                Verdict::DeniedRbac,
                format!(
                    "RBAC: access denied by waypoint {}/{} (layer: waypoint, an L7 AuthorizationPolicy attached with targetRefs)",
                    w.namespace, w.name
                ),
                Some(waypoint_hint(w)),
            );
        }
        if code == 403 && is_envoy_rbac_reply(&body, &obs.headers) {
            return c(
                Verdict::DeniedRbac,
                "RBAC: access denied (Istio AuthorizationPolicy)".into(),
                Some(rbac_hint(ctx)),
            );
        }
        if code == 503 && is_envoy_local_reply(&body, &obs.headers, NO_HEALTHY_UPSTREAM) {
            return c(
                Verdict::NoEndpoints,
                "503 no healthy upstream: the Service has no ready endpoint".into(),
                Some(no_endpoints_hint(ctx)),
            );
        }
        if obs.wget && obs.body.is_empty() && obs.headers.is_empty() && matches!(code, 403 | 503) {
            return c(
                Verdict::HttpError,
                format!("HTTP {code} (busybox wget shows no headers or body of an error answer)"),
                Some(format!(
                    "could not tell an Envoy reply from the application's {code}: busybox wget hides headers and body{}; {}",
                    if code == 403 {
                        ", and the destination sidecar's log has no RBAC denial for it"
                    } else {
                        ""
                    },
                    NO_TOOL_HINT
                )),
            );
        }
        if code == 503 && body.contains("upstream connect error") {
            let lower = body.to_ascii_lowercase();
            if lower.contains("connection termination")
                || lower.contains("tls error")
                || lower.contains("certificate")
                || lower.contains("ssl")
            {
                return c(
                    Verdict::MtlsFailure,
                    format!("503 from the sidecar: {}", first_line(&obs.body, 90)),
                    Some(mtls_hint(ctx)),
                );
            }
            // Envoy 1.40's inbound sidecar answers a refused connect to its
            // application with `reset reason: remote connection failure` and no
            // transport failure reason (measured with the real binary).
            if lower.contains("connect error: 111")
                || lower.contains("connection refused")
                || lower.contains("remote connection failure")
            {
                return c(
                    Verdict::Refused,
                    "503 from the sidecar: the destination refused the connection".into(),
                    Some(refused_hint(ctx)),
                );
            }
            if lower.contains("connection timeout") || lower.contains("connection failure") {
                return c(
                    Verdict::BlockedNetwork,
                    format!("503 from the sidecar: {}", first_line(&obs.body, 90)),
                    Some(netpol_hint(ctx)),
                );
            }
        }
        return c(
            Verdict::HttpError,
            format!("HTTP {code}: {}", first_line(&obs.body, 60)),
            Some(format!(
                "the application (or a proxy) answered {code}: not a mesh policy decision"
            )),
        );
    }
    if let Some(c) = classify_upstream(obs, ctx) {
        return c;
    }
    if closed_without_answer(obs) || closed_by_server(obs) && obs.rbac_logged == Some(true) {
        return classify_closed(obs, ctx);
    }
    if let Some(c) = classify_connected(obs) {
        return c;
    }
    if obs.wget {
        return classify_wget(obs, ctx);
    }
    let exit = obs.exit.unwrap_or(-1);
    let err = last_line(&obs.stderr);
    match exit {
        28 => c(
            Verdict::BlockedNetwork,
            format!(
                "no response within {}s (connection dropped or never answered)",
                fmt_secs(obs.timeout_secs)
            ),
            Some(netpol_hint(ctx)),
        ),
        7 => c(
            Verdict::Refused,
            "connection refused: nothing listening".into(),
            Some(refused_hint(ctx)),
        ),
        6 => c(
            Verdict::DnsFailure,
            format!("could not resolve host {}", ctx.host),
            Some(dns_hint(ctx)),
        ),
        35 | 51 | 52 | 53 | 54 | 56 | 58 | 59 | 60 | 64 | 66 | 77 | 80 | 82 | 83 | 90 | 91 => c(
            Verdict::MtlsFailure,
            format!(
                "connection reset or TLS failure (curl exit {exit}){}",
                if err.is_empty() {
                    String::new()
                } else {
                    format!(": {err}")
                }
            ),
            Some(mtls_hint(ctx)),
        ),
        _ => c(
            Verdict::ExecFailed,
            format!(
                "curl exited {exit}{}",
                if err.is_empty() {
                    String::new()
                } else {
                    format!(": {err}")
                }
            ),
            Some("run the probe by hand with kubectl exec to see curl's output".into()),
        ),
    }
}

fn classify_wget(obs: &Observation, ctx: &HintContext) -> Classified {
    // Only the error lines: `Connecting to HOST`, `-S` headers and GNU's
    // progress lines name hosts and values that must not match below.
    let errors: String = obs
        .stderr
        .lines()
        .filter(|l| {
            !(l.starts_with("Connecting to")
                || l.starts_with("Resolving ")
                || l.starts_with("  ")
                || l.starts_with("--"))
        })
        .collect::<Vec<_>>()
        .join("\n");
    let err = errors.to_ascii_lowercase();
    let line = last_line(&errors);
    let c = |verdict, detail: String, hint: Option<String>| Classified {
        verdict,
        detail,
        hint,
    };
    if err.contains("timed out") {
        c(
            Verdict::BlockedNetwork,
            format!("no response within {}s (wget)", fmt_secs(obs.timeout_secs)),
            Some(netpol_hint(ctx)),
        )
    } else if err.contains("refused") {
        c(
            Verdict::Refused,
            "connection refused: nothing listening (wget)".into(),
            Some(refused_hint(ctx)),
        )
    } else if err.contains("bad address")
        || err.contains("resolve")
        || err.contains("name or service not known")
        || err.contains("name resolution")
    {
        c(
            Verdict::DnsFailure,
            format!("could not resolve host {} (wget)", ctx.host),
            Some(dns_hint(ctx)),
        )
    } else if err.contains("reset") || err.contains("ssl") || err.contains("tls") {
        c(
            Verdict::MtlsFailure,
            format!("connection reset or TLS failure (wget): {line}"),
            Some(mtls_hint(ctx)),
        )
    } else {
        c(
            Verdict::ExecFailed,
            format!("wget exited {}: {line}", obs.exit.unwrap_or(-1)),
            Some("run the probe by hand with kubectl exec to see wget's output".into()),
        )
    }
}

/// The hint when the source container has no usable client.
pub const NO_TOOL_HINT: &str = "probe from a pod with curl or wget (--pod POD, or -l SELECTOR), or from an ephemeral container with --debug-image IMAGE (e.g. curlimages/curl)";

/// Envoy's body for an AuthorizationPolicy denial.
pub const RBAC_DENIED: &str = "RBAC: access denied";
/// Envoy's body when a cluster has no healthy (ready) endpoint.
pub const NO_HEALTHY_UPSTREAM: &str = "no healthy upstream";

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// Whether an answer is Envoy's own local reply with `text` as body: the body
/// itself, or (when the client printed headers but no body) Envoy's `server`
/// header (`envoy`, or `istio-envoy` as Istio names it) with the body's exact
/// `content-length`.
pub fn is_envoy_local_reply(body: &str, headers: &[(String, String)], text: &str) -> bool {
    if body.trim_start().starts_with(text) {
        return true;
    }
    if !body.is_empty() {
        return false;
    }
    let envoy = header(headers, "server").is_some_and(|s| s == "envoy" || s == "istio-envoy");
    let length = header(headers, "content-length").and_then(|l| l.parse::<usize>().ok());
    envoy && length == Some(text.len())
}

/// Envoy's 403 local reply for an AuthorizationPolicy denial.
pub fn is_envoy_rbac_reply(body: &str, headers: &[(String, String)]) -> bool {
    is_envoy_local_reply(body, headers, RBAC_DENIED)
}

/// The hint after a waypoint's denial: the waypoint's own log says which policy.
pub fn waypoint_hint(w: &meshpolicy::ambient::Waypoint) -> String {
    format!(
        "denied by waypoint {ns}/{name}: see kubectl rbaclog -n {ns} -l gateway.networking.k8s.io/gateway-name={name}",
        ns = w.namespace,
        name = w.name
    )
}

fn rbac_hint(ctx: &HintContext) -> String {
    match &ctx.to_namespace {
        Some(ns) => format!(
            "denied by an Istio AuthorizationPolicy on {}: see kubectl rbaclog -n {ns}",
            dest(ctx)
        ),
        None => "denied by an Istio AuthorizationPolicy: see kubectl rbaclog".into(),
    }
}

/// The detail and hint of a probe not run because its Service has no ready
/// endpoint (read from EndpointSlices before probing).
pub fn no_endpoints(ctx: &HintContext) -> (String, String) {
    (
        "the Service has no ready endpoint (EndpointSlices): nothing would answer".into(),
        no_endpoints_hint(ctx),
    )
}

fn no_endpoints_hint(ctx: &HintContext) -> String {
    match &ctx.to_namespace {
        Some(ns) => format!(
            "no ready pod behind the Service: check `kubectl get endpointslices -n {ns}` and the pods' readiness"
        ),
        None => "no ready endpoint behind the address: check the pods' readiness".into(),
    }
}

fn refused_hint(ctx: &HintContext) -> String {
    match ctx.port {
        Some(p) => format!(
            "nothing listens on port {p}: check the Service's targetPort and the pods' containerPort"
        ),
        None => "nothing listens there: check the port".into(),
    }
}

fn dns_hint(ctx: &HintContext) -> String {
    format!(
        "check the Service name and --cluster-domain (now {}), and that DNS egress is allowed from {}",
        ctx.cluster_domain, ctx.from_namespace
    )
}

fn mtls_hint(ctx: &HintContext) -> String {
    format!(
        "mTLS mismatch: does the source in {} have a sidecar, and what do PeerAuthentication/DestinationRule in {} say?",
        ctx.from_namespace,
        ctx.to_namespace.as_deref().unwrap_or("the destination")
    )
}

/// Seconds as `3` or `0.5`.
pub fn fmt_secs(secs: f64) -> String {
    let s = format!("{secs:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// The headers of the last response wget printed with `-S` (two-space
/// indented `name: value` lines after an `  HTTP/` status line), names in
/// lower case.
pub fn wget_headers(stderr: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in stderr.lines() {
        let Some(rest) = line.strip_prefix("  ") else {
            inside = false;
            continue;
        };
        if rest.starts_with("HTTP/") {
            out.clear();
            inside = true;
            continue;
        }
        if inside && let Some((k, v)) = rest.split_once(':') {
            out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    out
}

/// Parses wget's `-S` headers (`  HTTP/1.1 200 OK`) or busybox's
/// `server returned error: HTTP/1.1 403 Forbidden`: the last status seen.
pub fn wget_status(stderr: &str) -> Option<u16> {
    let mut status = None;
    for line in stderr.lines() {
        if let Some(idx) = line.find("HTTP/") {
            let rest = &line[idx..];
            if let Some(code) = rest.split_whitespace().nth(1)
                && let Ok(c) = code.parse::<u16>()
                && (100..600).contains(&c)
            {
                status = Some(c);
            }
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> HintContext {
        HintContext {
            from_namespace: "np-test-1".into(),
            to_namespace: Some("np-test-2".into()),
            workload: Some("np-test-nginx-2".into()),
            port: Some(80),
            host: "svc-np-test-nginx-2.np-test-2.svc.cluster.local".into(),
            cluster_domain: "cluster.local".into(),
            destination_ambient: false,
            destination_waypoint: None,
        }
    }

    #[test]
    fn a_403_through_a_waypoint_names_the_waypoint_and_its_log() {
        let mut c = ctx();
        c.destination_ambient = true;
        c.destination_waypoint = Some(meshpolicy::ambient::Waypoint {
            namespace: "np-test-2".into(),
            name: "waypoint".into(),
            waypoint_for: meshpolicy::ambient::WaypointFor::Service,
        });
        let got = classify(&obs(0, Some(403), "RBAC: access denied", "", false), &c);
        assert_eq!(got.verdict, Verdict::DeniedRbac);
        assert!(
            got.detail.contains("waypoint np-test-2/waypoint"),
            "{}",
            got.detail
        );
        assert_eq!(
            got.hint.as_deref(),
            Some(
                "denied by waypoint np-test-2/waypoint: see kubectl rbaclog -n np-test-2 -l gateway.networking.k8s.io/gateway-name=waypoint"
            )
        );
        // A ztunnel reset keeps its own reading.
        let reset = Observation {
            destination_ambient: true,
            ..obs(
                56,
                None,
                "",
                "Recv failure: Connection reset by peer",
                false,
            )
        };
        let got = classify(&reset, &c);
        assert_eq!(got.verdict, Verdict::DeniedRbac);
        assert!(got.detail.contains("ztunnel"), "{}", got.detail);
    }

    fn obs(exit: i32, status: Option<u16>, body: &str, stderr: &str, sidecar: bool) -> Observation {
        Observation {
            exit: Some(exit),
            http_status: status,
            body: body.as_bytes().to_vec(),
            stderr: stderr.into(),
            source_sidecar: sidecar,
            timeout_secs: 3.0,
            wget: false,
            destination_ambient: false,
            ..Default::default()
        }
    }

    #[test]
    fn ambient_resets_name_ztunnel_and_the_next_command() {
        let reset = Observation {
            destination_ambient: true,
            ..obs(
                56,
                None,
                "",
                "curl: (56) Recv failure: Connection reset by peer",
                false,
            )
        };
        let c = classify(&reset, &ctx());
        assert_eq!(c.verdict, Verdict::DeniedRbac);
        assert!(c.detail.contains("ztunnel"), "{}", c.detail);
        let hint = c.hint.unwrap_or_default();
        assert!(
            hint.contains("kubectl rbaclog -n istio-system -l app=ztunnel"),
            "{hint}"
        );
        assert!(hint.contains("np-test-2/np-test-nginx-2"), "{hint}");
        // The source's sidecar relays ztunnel's close as a 503.
        let relayed = Observation {
            destination_ambient: true,
            ..obs(
                0,
                Some(503),
                "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
                "",
                true,
            )
        };
        assert_eq!(classify(&relayed, &ctx()).verdict, Verdict::DeniedRbac);
        let wget = Observation {
            destination_ambient: true,
            wget: true,
            ..obs(
                1,
                None,
                "",
                "wget: error getting response: Connection reset by peer",
                false,
            )
        };
        assert!(classify(&wget, &ctx()).detail.contains("ztunnel"));
        // Not ambient: the same reset stays an mTLS failure; ambient timeouts stay network.
        let plain = obs(
            56,
            None,
            "",
            "curl: (56) Recv failure: Connection reset by peer",
            false,
        );
        assert_eq!(classify(&plain, &ctx()).verdict, Verdict::MtlsFailure);
        let dropped = Observation {
            destination_ambient: true,
            ..obs(28, None, "", "curl: (28) Operation timed out", false)
        };
        assert_eq!(classify(&dropped, &ctx()).verdict, Verdict::BlockedNetwork);
    }

    #[test]
    fn classification_table() {
        use Verdict::*;
        let cases: Vec<(Observation, Verdict)> = vec![
            (
                obs(0, Some(200), "Hello world - np-test-nginx-2!", "", true),
                Allowed,
            ),
            (obs(0, Some(301), "", "", false), Allowed),
            (
                obs(0, Some(403), "RBAC: access denied", "", true),
                DeniedRbac,
            ),
            (
                obs(0, Some(403), "Forbidden by the app", "", true),
                HttpError,
            ),
            (obs(0, Some(404), "not found", "", false), HttpError),
            (obs(0, Some(500), "", "", false), HttpError),
            (
                obs(
                    0,
                    Some(503),
                    "upstream connect error or disconnect/reset before headers. reset reason: connection timeout",
                    "",
                    true,
                ),
                BlockedNetwork,
            ),
            (
                obs(
                    0,
                    Some(503),
                    "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
                    "",
                    true,
                ),
                BlockedNetwork,
            ),
            (
                obs(
                    0,
                    Some(503),
                    "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure",
                    "",
                    true,
                ),
                Refused,
            ),
            (
                obs(
                    0,
                    Some(503),
                    "upstream connect error or disconnect/reset before headers. reset reason: connection failure, transport failure reason: delayed connect error: 111",
                    "",
                    true,
                ),
                Refused,
            ),
            (
                obs(
                    0,
                    Some(503),
                    "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
                    "",
                    true,
                ),
                MtlsFailure,
            ),
            (
                obs(
                    0,
                    Some(503),
                    "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure, transport failure reason: TLS error: 268435581:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED",
                    "",
                    true,
                ),
                MtlsFailure,
            ),
            (
                obs(0, Some(503), "no healthy upstream", "", true),
                NoEndpoints,
            ),
            (
                obs(
                    28,
                    None,
                    "",
                    "curl: (28) Connection timed out after 3001 milliseconds",
                    false,
                ),
                BlockedNetwork,
            ),
            (
                obs(
                    7,
                    None,
                    "",
                    "curl: (7) Failed to connect to x port 80: Connection refused",
                    false,
                ),
                Refused,
            ),
            (
                obs(6, None, "", "curl: (6) Could not resolve host: x", false),
                DnsFailure,
            ),
            (
                obs(
                    56,
                    None,
                    "",
                    "curl: (56) Recv failure: Connection reset by peer",
                    false,
                ),
                MtlsFailure,
            ),
            (
                obs(52, None, "", "curl: (52) Empty reply from server", false),
                MtlsFailure,
            ),
            (
                obs(35, None, "", "curl: (35) OpenSSL SSL_connect", false),
                MtlsFailure,
            ),
            (
                obs(3, None, "", "curl: (3) URL using bad/illegal format", false),
                ExecFailed,
            ),
        ];
        for (i, (o, want)) in cases.iter().enumerate() {
            let got = classify(o, &ctx());
            assert_eq!(got.verdict, *want, "case {i}: {o:?} -> {got:?}");
            assert!(!got.detail.is_empty(), "case {i} has no detail");
            if *want != Allowed {
                assert!(got.hint.is_some(), "case {i} has no hint");
            }
        }
    }

    #[test]
    fn allowed_detail_is_the_body() {
        let got = classify(
            &obs(0, Some(200), "Hello world - np-test-nginx-2!", "", true),
            &ctx(),
        );
        assert_eq!(got.detail, "Hello world - np-test-nginx-2!");
    }

    #[test]
    fn rbac_hint_names_the_workload_and_rbaclog() {
        let got = classify(&obs(0, Some(403), "RBAC: access denied", "", true), &ctx());
        assert_eq!(
            got.hint.as_deref(),
            Some(
                "denied by an Istio AuthorizationPolicy on np-test-2/np-test-nginx-2: see kubectl rbaclog -n np-test-2"
            )
        );
    }

    #[test]
    fn wget_cases() {
        let mut o = Observation {
            wget: true,
            exit: Some(1),
            timeout_secs: 3.0,
            ..Default::default()
        };
        for (stderr, want) in [
            ("wget: download timed out", Verdict::BlockedNetwork),
            (
                "wget: can't connect to remote host (10.0.0.1): Connection refused",
                Verdict::Refused,
            ),
            ("wget: bad address 'x'", Verdict::DnsFailure),
            (
                "wget: error getting response: Connection reset by peer",
                Verdict::MtlsFailure,
            ),
            ("wget: something odd", Verdict::ExecFailed),
        ] {
            o.stderr = stderr.into();
            assert_eq!(classify(&o, &ctx()).verdict, want, "{stderr}");
        }
        assert_eq!(
            wget_status("  HTTP/1.1 301 Moved\n  HTTP/1.1 200 OK\n"),
            Some(200)
        );
        assert_eq!(
            wget_status("wget: server returned error: HTTP/1.1 403 Forbidden"),
            Some(403)
        );
        assert_eq!(wget_status("nothing"), None);
    }

    /// The same Envoy replies through each client: curl's body, GNU wget's
    /// `-S` headers (and `--content-on-error` body), busybox's bare status
    /// line plus the sidecar log: one verdict.
    #[test]
    fn every_client_gives_one_verdict() {
        let gnu_stderr = "  HTTP/1.1 403 Forbidden\n  content-length: 19\n  content-type: text/plain\n  server: istio-envoy\nhttp://svc/:\n2026-12-05 07:30:00 ERROR 403: Forbidden.\n";
        let wget = |stderr: &str, body: &str, logged: Option<bool>| {
            let mut o = obs(8, wget_status(stderr), body, stderr, false);
            o.wget = true;
            o.headers = wget_headers(stderr);
            o.rbac_logged = logged;
            o
        };
        let curl = obs(0, Some(403), "RBAC: access denied", "", false);
        let gnu_body = wget(gnu_stderr, "RBAC: access denied", None);
        let gnu_headers_only = wget(gnu_stderr, "", None);
        let busybox = "Connecting to svc (10.96.0.1:80)\n  HTTP/1.1 403 Forbidden\nwget: server returned error: HTTP/1.1 403 Forbidden\n";
        let busybox_logged = wget(busybox, "", Some(true));
        for o in [&curl, &gnu_body, &gnu_headers_only, &busybox_logged] {
            assert_eq!(classify(o, &ctx()).verdict, Verdict::DeniedRbac, "{o:?}");
        }
        assert_eq!(gnu_headers_only.headers.len(), 3);
        // Without the log, busybox's bare 403 is not called a policy decision.
        let unknown = classify(&wget(busybox, "", Some(false)), &ctx());
        assert_eq!(unknown.verdict, Verdict::HttpError);
        assert!(unknown.hint.unwrap().contains("--debug-image"));
        // The application's own 403 through a sidecar is not Envoy's.
        let app = "  HTTP/1.1 403 Forbidden\n  content-length: 9\n  server: istio-envoy\n";
        assert_eq!(
            classify(&wget(app, "", None), &ctx()).verdict,
            Verdict::HttpError
        );
        let nhu = "  HTTP/1.1 503 Service Unavailable\n  content-length: 19\n  server: envoy\n";
        assert_eq!(
            classify(&wget(nhu, "", None), &ctx()).verdict,
            Verdict::NoEndpoints
        );
        // A host name in the chatter does not decide.
        let mut o = wget(
            "Connecting to tls-reset (10.96.0.1:443)\nwget: download timed out\n",
            "",
            None,
        );
        o.http_status = None;
        assert_eq!(classify(&o, &ctx()).verdict, Verdict::BlockedNetwork);
    }

    /// TCP and TLS probes as curl 7.88.1, GNU Wget 1.21.3 and BusyBox wget
    /// report them through Envoy's network RBAC (see `closed_without_answer`).
    #[test]
    fn tcp_and_tls_probes() {
        use Verdict::*;
        let probe = |kind, exit, body: &str, stderr: &str, logged, sidecar, elapsed| Observation {
            kind,
            rbac_logged: logged,
            elapsed_secs: elapsed,
            ..obs(exit, None, body, stderr, sidecar)
        };
        let tls_closed =
            "curl: (35) OpenSSL SSL_connect: SSL_ERROR_SYSCALL in connection to h:443 ";
        let open = "curl: (28) Operation timed out after 3001 milliseconds with 0 bytes received";
        let cases = [
            // Closed after the first bytes, and the sidecar logged the denial.
            (
                probe(ProbeKind::Tcp, 0, "", "", Some(true), true, 0.1),
                DeniedRbac,
            ),
            (
                probe(ProbeKind::Tls, 35, "", tls_closed, Some(true), false, 0.1),
                DeniedRbac,
            ),
            (
                probe(
                    ProbeKind::Http,
                    52,
                    "",
                    "curl: (52) Empty reply from server",
                    Some(true),
                    false,
                    0.1,
                ),
                DeniedRbac,
            ),
            // Closed, no denial logged: not called a policy decision.
            (
                probe(ProbeKind::Tcp, 0, "", "", Some(false), false, 0.1),
                MtlsFailure,
            ),
            // Closed by the source sidecar after its connect timeout.
            (
                probe(ProbeKind::Tcp, 0, "", "", Some(false), true, 10.01),
                BlockedNetwork,
            ),
            // Open and silent, or answered: connected.
            (
                probe(ProbeKind::Tcp, 28, "", open, None, false, 3.0),
                Allowed,
            ),
            (
                probe(ProbeKind::Tcp, 0, "+OK\r\n", "", None, false, 0.1),
                Allowed,
            ),
            // A greeting that came through before the denial closed it.
            (
                probe(ProbeKind::Tcp, 0, "+OK\r\n", "", Some(true), false, 0.1),
                DeniedRbac,
            ),
            (
                probe(ProbeKind::Tcp, 0, "+OK\r\n", "", Some(false), false, 0.1),
                Allowed,
            ),
            (
                probe(ProbeKind::Tls, 28, "", open, None, true, 3.0),
                Allowed,
            ),
            // A connect that never completes; refused.
            (
                probe(
                    ProbeKind::Tcp,
                    28,
                    "",
                    "curl: (28) Connection timed out after 3001 milliseconds",
                    None,
                    false,
                    3.0,
                ),
                BlockedNetwork,
            ),
            (
                probe(
                    ProbeKind::Tcp,
                    7,
                    "",
                    "curl: (7) Failed to connect",
                    None,
                    false,
                    0.0,
                ),
                Refused,
            ),
            // An HTTP probe that times out after connecting is no TCP success.
            (
                probe(ProbeKind::Http, 28, "", open, None, false, 3.0),
                BlockedNetwork,
            ),
        ];
        for (i, (o, want)) in cases.iter().enumerate() {
            assert_eq!(classify(o, &ctx()).verdict, *want, "case {i}: {o:?}");
        }
        // The silent-through-a-sidecar case says how to tell it from a drop.
        let c = classify(
            &probe(ProbeKind::Tcp, 28, "", open, None, true, 3.0),
            &ctx(),
        );
        assert!(c.detail.contains("--timeout 11"), "{}", c.detail);
        // wget: GNU's `No data received.`, busybox's bare `error getting response`.
        for stderr in [
            "GnuTLS: The TLS connection was non-properly terminated.\nUnable to establish SSL connection.\n",
            "No data received.\n",
            "Connecting to h (10.0.0.1:6379)\nwget: error getting response\n",
        ] {
            let mut o = probe(ProbeKind::Tcp, 1, "", stderr, Some(true), true, 0.1);
            o.wget = true;
            assert!(closed_without_answer(&o), "{stderr}");
            assert_eq!(classify(&o, &ctx()).verdict, DeniedRbac, "{stderr}");
        }
        let mut reset = probe(
            ProbeKind::Tcp,
            1,
            "",
            "wget: error getting response: Connection reset by peer\n",
            None,
            false,
            0.1,
        );
        reset.wget = true;
        assert!(!closed_without_answer(&reset));
    }

    /// The measured before/after counters of one case of
    /// `tests/fixtures/npexec-tcp-sidecar/`.
    fn measured(case: &str) -> SidecarStats {
        let cluster = "outbound|6379||redis.ns.svc.cluster.local";
        let path = format!(
            "{}/../../tests/fixtures/npexec-tcp-sidecar/{case}.txt",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let section = |title: &str| {
            let rest = &text[text.find(title).unwrap()..];
            let end = rest[1..].find("\n### ").map_or(rest.len(), |e| e + 1);
            meshpolicy::envoy::stats::cluster_counters(&rest[..end], cluster)
        };
        SidecarStats {
            cluster: cluster.into(),
            before: section("### before"),
            after: section("### after (immediately)"),
            error: None,
        }
    }

    #[test]
    fn wget_on_a_tcp_port_through_a_sidecar_reads_its_counters() {
        // wget sends an HTTP request, which a TCP server leaves unanswered:
        // it times out whether the connection was made or dropped. The
        // source sidecar's counters tell them apart (any byte forwarded:
        // connected), as for curl.
        let timed_out = |stats| Observation {
            wget: true,
            kind: ProbeKind::Tcp,
            exit: Some(1),
            timeout_secs: 3.0,
            stderr: "Connecting to redis.ns (10.96.0.9:6379)\nwget: download timed out\n".into(),
            sidecar_stats: stats,
            ..Default::default()
        };
        let mut forwarded = measured("a-silent");
        if let Some(a) = forwarded.after.as_mut() {
            a.upstream_cx_tx_bytes_total += 120;
        }
        let c = classify(&timed_out(Some(forwarded)), &ctx());
        assert_eq!(c.verdict, Verdict::Allowed, "{c:?}");
        assert!(c.detail.contains("forwarded"), "{}", c.detail);
        let c = classify(&timed_out(Some(measured("b-noconnect"))), &ctx());
        assert_eq!(c.verdict, Verdict::BlockedNetwork, "{c:?}");
        assert!(c.detail.contains("upstream_cx_total +1"), "{}", c.detail);
        // No counters: a timeout is all wget shows.
        let c = classify(&timed_out(None), &ctx());
        assert_eq!(c.verdict, Verdict::BlockedNetwork, "{c:?}");
    }

    #[test]
    fn tcp_through_a_sidecar_reads_its_counters() {
        use Verdict::*;
        let open = "curl: (28) Operation timed out after 3001 milliseconds with 0 bytes received";
        let through = |exit, stderr: &str, elapsed, stats| Observation {
            kind: ProbeKind::Tcp,
            elapsed_secs: elapsed,
            sidecar_stats: stats,
            ..obs(exit, None, "", stderr, true)
        };
        // Silent server: bytes forwarded, allowed, no --timeout hint.
        let c = classify(&through(28, open, 3.0, Some(measured("a-silent"))), &ctx());
        assert_eq!(c.verdict, Allowed, "{c:?}");
        assert!(!c.detail.contains("--timeout 11"), "{}", c.detail);
        assert!(
            c.detail.contains("upstream_cx_tx_bytes_total +2"),
            "{}",
            c.detail
        );
        // A drop: the connect never completed within the probe's timeout.
        let c = classify(
            &through(28, open, 3.0, Some(measured("b-noconnect"))),
            &ctx(),
        );
        assert_eq!(c.verdict, BlockedNetwork, "{c:?}");
        assert!(c.detail.contains("upstream_cx_total +1"), "{}", c.detail);
        assert!(c.detail.contains("outbound|6379||redis"), "{}", c.detail);
        // The same drop seen past the connect timeout (curl exit 56, reset).
        let reset = "curl: (56) Recv failure: Connection reset by peer";
        let c = classify(
            &through(56, reset, 10.0, Some(measured("b-noconnect-12s"))),
            &ctx(),
        );
        assert_eq!(c.verdict, BlockedNetwork, "{c:?}");
        // Refused behind the sidecar: curl exit 0 with nothing, at once.
        let c = classify(&through(0, "", 0.0, Some(measured("c-refused"))), &ctx());
        assert_eq!(c.verdict, Refused, "{c:?}");
        // Unread or ambiguous counters: today's answer and its hint.
        let unread = SidecarStats {
            before: None,
            error: Some("forbidden".into()),
            ..measured("b-noconnect")
        };
        let mut busy = measured("b-noconnect");
        if let Some(a) = busy.after.as_mut() {
            a.upstream_cx_total += 1;
        }
        for stats in [None, Some(unread), Some(busy)] {
            let c = classify(&through(28, open, 3.0, stats), &ctx());
            assert_eq!(c.verdict, Allowed, "{c:?}");
            assert!(c.detail.contains("--timeout 11"), "{}", c.detail);
        }
    }

    #[test]
    fn expectations() {
        assert!(Expectation::Allow.met_by(Verdict::Allowed));
        assert!(!Expectation::Allow.met_by(Verdict::DeniedRbac));
        assert!(Expectation::Deny.met_by(Verdict::DeniedRbac));
        assert!(Expectation::Deny.met_by(Verdict::BlockedNetwork));
        assert!(!Expectation::Deny.met_by(Verdict::ExecFailed));
        assert!(!Expectation::Deny.met_by(Verdict::DnsFailure));
        assert!(Expectation::Reachable.met_by(Verdict::HttpError));
        assert!(Expectation::Reachable.met_by(Verdict::Allowed));
        assert!(!Expectation::Reachable.met_by(Verdict::DeniedRbac));
        assert!(!Expectation::Reachable.met_by(Verdict::MtlsFailure));
        assert_eq!(
            "reachable".parse::<Expectation>(),
            Ok(Expectation::Reachable)
        );
        let e: Expectation = "dns-failure".parse().unwrap();
        assert!(e.met_by(Verdict::DnsFailure));
        assert!("maybe".parse::<Expectation>().is_err());
        for v in Verdict::ALL {
            assert_eq!(v.as_str().parse::<Verdict>().unwrap(), v);
        }
    }

    #[test]
    fn secs_formatting() {
        assert_eq!(fmt_secs(3.0), "3");
        assert_eq!(fmt_secs(0.5), "0.5");
        assert_eq!(fmt_secs(1.25), "1.25");
    }
}
