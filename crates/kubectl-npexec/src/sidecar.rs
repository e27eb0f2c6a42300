//! What the destination's Envoy said about a probe (`--explain`).
//!
//! The engine's answer is a model; the sidecar's RBAC log lines are what
//! really decided. With `rbac:debug` logging (the walk-through turns it on
//! with `sidecar.istio.io/proxyLogLevel`), Envoy prints `enforced
//! allowed|denied, matched policy ID` per request, and a local reply line or
//! an access log line carries the same id on a denial. This module reads the
//! istio-proxy log of each destination pod once, from just before the first
//! probe, with the kubelet's timestamps, parses it with meshpolicy's parsers,
//! and attributes lines to a probe by time window (and source address, when
//! the line has one) and by outcome (a denial line to a 403, an allow line to
//! a 2xx), so concurrent probes to one pod are not mixed up across outcomes.

use std::net::IpAddr;
use std::time::Duration;

use jiff::Timestamp;
use kubeplugin::logs::{LogQuery, logs, split_timestamp};
use kubeplugin::resources::ISTIO_PROXY;
use kubeplugin::{Kube, PluginError};
use meshpolicy::envoy::{
    AccessVerdict, CheckedRequest, Engine, LogLine, NoteKind, Scope, classify_line, rbac_log,
};

use crate::verdict::Verdict;

/// Enforcing or dry-run (shadow) engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EnvoyEngine {
    Enforced,
    Shadow,
}

/// One RBAC decision Envoy logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvoyDecision {
    /// The pod whose sidecar logged it.
    pub pod: String,
    pub engine: EnvoyEngine,
    pub denied: bool,
    /// The matched policy id (`none` included); None on legacy lines.
    pub policy_id: Option<String>,
}

/// A decision with the time the kubelet stamped on its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedDecision {
    pub at: Timestamp,
    /// The downstream (client) address, when the log says: an access log
    /// line, or the `sourceIP:` of the `checking request`/`checking
    /// connection` entry before a debug decision line.
    pub source_ip: Option<IpAddr>,
    pub decision: EnvoyDecision,
    /// What the `checking request` entry before a debug decision line said
    /// (path, authority, request id), to tell concurrent requests apart.
    pub request: Option<CheckedRequest>,
}

impl TimedDecision {
    /// Whether the request this decision was for could be the one with
    /// `path` and `authority`: a value the log does not give does not rule
    /// it out.
    pub fn could_be(&self, path: &str, authority: &str) -> bool {
        let Some(r) = &self.request else {
            return true;
        };
        r.path.as_deref().is_none_or(|p| p == path)
            && r.authority
                .as_deref()
                .is_none_or(|a| a.eq_ignore_ascii_case(authority))
    }
}

/// How far a line may lie outside a probe's own start..end and still count
/// (log timestamps are taken by the kubelet on another clock).
pub const SLACK: Duration = Duration::from_secs(1);

fn ip_of(addr: &str) -> Option<IpAddr> {
    if let Ok(ip) = addr.parse() {
        return Some(ip);
    }
    let host = addr.rsplit_once(':').map(|(h, _)| h)?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Parses a `timestamps=true` istio-proxy log into the RBAC decisions it holds.
///
/// Envoy writes a `checking request:` (HTTP) or `checking connection:`
/// (network) entry before each debug decision, the HTTP one over several
/// lines (one header per line); what it says is kept with the decision.
pub fn parse_log(pod: &str, text: &str) -> Vec<TimedDecision> {
    let mut out = Vec::new();
    let mut checking: Option<CheckedRequest> = None;
    for line in text.lines() {
        let Some((at, rest)) = split_timestamp(line) else {
            continue;
        };
        if let Some(r) = checking.as_mut()
            && rbac_log::is_continuation(rest.as_bytes())
        {
            r.absorb(rest.as_bytes());
            continue;
        }
        let request = checking.clone();
        let mk = |engine, denied, policy_id: Option<String>, source_ip| TimedDecision {
            request: request.clone(),
            at,
            source_ip,
            decision: EnvoyDecision {
                pod: pod.to_string(),
                engine,
                denied,
                policy_id,
            },
        };
        match classify_line(rest.as_bytes(), Scope::RbacOnly) {
            LogLine::RbacNote(n) => {
                checking = match n.kind {
                    NoteKind::CheckingRequest => n.request.clone(),
                    NoteKind::CheckingConnection => {
                        let mut r = CheckedRequest::default();
                        r.absorb(rest.as_bytes());
                        Some(r)
                    }
                    NoteKind::AllowedByDefaultOrPolicy => None,
                };
            }
            LogLine::RbacDecision(d) => {
                checking = None;
                let engine = match d.engine {
                    Engine::Enforced => EnvoyEngine::Enforced,
                    Engine::Shadow => EnvoyEngine::Shadow,
                    Engine::None => continue,
                };
                let denied = d.decision == rbac_log::Decision::Denied;
                let ip = request
                    .as_ref()
                    .and_then(|r| r.source_ip.as_deref())
                    .and_then(ip_of);
                out.push(mk(engine, denied, d.policy.map(|p| p.raw), ip));
            }
            LogLine::LocalReply(r) => {
                if let Some(p) = r.policy {
                    out.push(mk(EnvoyEngine::Enforced, true, Some(p.raw), None));
                }
            }
            LogLine::AccessLog(a) => {
                if let AccessVerdict::RbacDenied { policy, .. } = &a.verdict {
                    let ip = a.downstream_remote_address.as_deref().and_then(ip_of);
                    out.push(mk(
                        EnvoyEngine::Enforced,
                        true,
                        Some(policy.raw.clone()),
                        ip,
                    ));
                }
            }
            _ => {}
        }
    }
    out
}

/// Whether a probe with this verdict reached the destination sidecar's RBAC filter.
pub fn reaches_rbac(v: Verdict) -> bool {
    matches!(
        v,
        Verdict::Allowed | Verdict::DeniedRbac | Verdict::HttpError
    )
}

/// The decisions attributable to one probe: within its time window (with
/// [`SLACK`]), from its source address when the line says, and consistent
/// with what the probe saw. Duplicates (debug line plus local reply) are merged.
pub fn attribute(
    lines: &[TimedDecision],
    start: Timestamp,
    end: Timestamp,
    source_ip: Option<IpAddr>,
    observed: Verdict,
) -> Vec<EnvoyDecision> {
    if !reaches_rbac(observed) {
        return Vec::new();
    }
    let slack = jiff::SignedDuration::try_from(SLACK).unwrap_or_default();
    let from = start.checked_sub(slack).unwrap_or(start);
    let to = end.checked_add(slack).unwrap_or(end);
    let denied = observed == Verdict::DeniedRbac;
    let mut out: Vec<EnvoyDecision> = Vec::new();
    for l in lines {
        if l.at < from || l.at > to {
            continue;
        }
        if let (Some(a), Some(b)) = (l.source_ip, source_ip)
            && a != b
        {
            continue;
        }
        let d = &l.decision;
        if d.engine == EnvoyEngine::Enforced && d.denied != denied {
            continue;
        }
        if !out.contains(d) {
            out.push(d.clone());
        }
    }
    out
}

/// Reads the istio-proxy log of `namespace/pod` from `since` on.
pub async fn fetch(
    kube: &Kube,
    namespace: &str,
    pod: &str,
    since: Timestamp,
) -> Result<Vec<TimedDecision>, PluginError> {
    let query = LogQuery {
        container: Some(ISTIO_PROXY.to_string()),
        since_time: Some(since),
        timestamps: true,
        ..Default::default()
    };
    let text = logs(kube, namespace, pod, &query).await?;
    Ok(parse_log(pod, &text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshpolicy::envoy::{
        Engine, FilterKind, format_local_reply_line, format_rbac_debug_line,
        format_rbac_denied_details, rbac_log::Decision,
    };

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const DENY_ID: &str =
        "ns[np-test-2]-policy[deny-all-ingress-using-authorizationpolicy]-rule[0]";

    fn log() -> String {
        let deny = format_rbac_debug_line(
            "2026-11-26T08:00:01.100Z",
            FilterKind::Http,
            Engine::Enforced,
            Decision::Denied,
            Some(DENY_ID),
            7,
        );
        let reply = format_local_reply_line(
            "2026-11-26T08:00:01.101Z",
            3,
            0,
            &format_rbac_denied_details(Some(DENY_ID)),
            7,
        );
        let allow = format_rbac_debug_line(
            "2026-11-26T08:00:09.000Z",
            FilterKind::Http,
            Engine::Enforced,
            Decision::Allowed,
            Some("ns[np-test-2]-policy[allow-1]-rule[0]"),
            7,
        );
        let shadow = format_rbac_debug_line(
            "2026-11-26T08:00:09.000Z",
            FilterKind::Http,
            Engine::Shadow,
            Decision::Denied,
            Some("ns[np-test-2]-policy[dry]-rule[0]"),
            7,
        );
        format!(
            "2026-11-26T08:00:01.100000Z {deny}\n2026-11-26T08:00:01.101000Z {reply}\n2026-11-26T08:00:05Z unrelated nginx line\nnot timestamped at all\n2026-11-26T08:00:09.000001Z {allow}\n2026-11-26T08:00:09.000002Z {shadow}\n"
        )
    }

    #[test]
    fn parses_debug_and_local_reply_lines() {
        let lines = parse_log("np-test-nginx-2-x", &log());
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines[0].decision.denied);
        assert_eq!(lines[0].decision.policy_id.as_deref(), Some(DENY_ID));
        assert_eq!(lines[1].decision.policy_id.as_deref(), Some(DENY_ID));
        assert_eq!(lines[3].decision.engine, EnvoyEngine::Shadow);
        assert_eq!(lines[0].decision.pod, "np-test-nginx-2-x");
    }

    #[test]
    fn attributes_by_window_and_outcome() {
        let lines = parse_log("p", &log());
        // The denied probe around 08:00:01: one merged decision.
        let d = attribute(
            &lines,
            ts("2026-11-26T08:00:01Z"),
            ts("2026-11-26T08:00:01.2Z"),
            None,
            Verdict::DeniedRbac,
        );
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].denied);
        // An allowed probe at the same time does not take the denial.
        let a = attribute(
            &lines,
            ts("2026-11-26T08:00:01Z"),
            ts("2026-11-26T08:00:01.2Z"),
            None,
            Verdict::Allowed,
        );
        assert!(a.is_empty(), "{a:?}");
        // The allowed probe at 08:00:09 gets the allow and the shadow line.
        let a = attribute(
            &lines,
            ts("2026-11-26T08:00:08.9Z"),
            ts("2026-11-26T08:00:09Z"),
            None,
            Verdict::Allowed,
        );
        assert_eq!(a.len(), 2, "{a:?}");
        // Outside the window (slack included): nothing.
        let n = attribute(
            &lines,
            ts("2026-11-26T08:00:03Z"),
            ts("2026-11-26T08:00:04Z"),
            None,
            Verdict::DeniedRbac,
        );
        assert!(n.is_empty());
        // A probe that never reached the sidecar gets nothing.
        let n = attribute(
            &lines,
            ts("2026-11-26T08:00:00Z"),
            ts("2026-11-26T08:00:10Z"),
            None,
            Verdict::BlockedNetwork,
        );
        assert!(n.is_empty());
    }

    #[test]
    fn source_address_separates_clients() {
        let line = TimedDecision {
            at: ts("2026-11-26T08:00:01Z"),
            source_ip: Some("10.0.0.1".parse().unwrap()),
            decision: EnvoyDecision {
                pod: "p".into(),
                engine: EnvoyEngine::Enforced,
                denied: true,
                policy_id: Some("none".into()),
            },
            request: None,
        };
        let lines = [line];
        let w = (ts("2026-11-26T08:00:00.5Z"), ts("2026-11-26T08:00:01.5Z"));
        let mine = attribute(
            &lines,
            w.0,
            w.1,
            "10.0.0.1".parse().ok(),
            Verdict::DeniedRbac,
        );
        assert_eq!(mine.len(), 1);
        let other = attribute(
            &lines,
            w.0,
            w.1,
            "10.0.0.9".parse().ok(),
            Verdict::DeniedRbac,
        );
        assert!(other.is_empty());
    }

    #[test]
    fn checking_entries_name_the_request_of_the_next_decision() {
        let t = "2026-11-26T08:00:01.1Z";
        let text = format!(
            "{t} 2026-11-26T08:00:01.100Z\tdebug\tenvoy rbac external/envoy/source/extensions/filters/http/rbac/rbac_filter.cc:130\tchecking request: requestedServerName: , sourceIP: 10.0.0.7:41234, directRemoteIP: 10.0.0.7:41234, remoteIP: 10.0.0.7:41234,localAddress: 10.0.0.9:8080, ssl: none, headers: ':authority', 'svc.ns.svc.cluster.local:8080'\n{t} ':path', '/admin'\n{t} ':method', 'GET'\n{t} , dynamicMetadata: \tthread=21\n{t} 2026-11-26T08:00:01.100Z\tdebug\tenvoy rbac external/envoy/source/extensions/filters/http/rbac/rbac_filter.cc:224\tenforced denied, matched policy {DENY_ID}\tthread=21\n"
        );
        let lines = parse_log("p", &text);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0].source_ip, "10.0.0.7".parse().ok());
        assert!(lines[0].could_be("/admin", "svc.ns.svc.cluster.local:8080"));
        assert!(!lines[0].could_be("/", "svc.ns.svc.cluster.local:8080"));
        assert!(!lines[0].could_be("/admin", "other.ns.svc.cluster.local:8080"));
    }

    #[test]
    fn addresses() {
        assert_eq!(ip_of("10.1.2.3:4567"), "10.1.2.3".parse().ok());
        assert_eq!(ip_of("[::1]:80"), "::1".parse().ok());
        assert_eq!(ip_of("10.1.2.3"), "10.1.2.3".parse().ok());
        assert_eq!(ip_of("junk"), None);
    }
}
