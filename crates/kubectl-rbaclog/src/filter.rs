//! `--decision`, `--policy`, `--engine`, `--from-namespace`, `--to-namespace` and
//! explicit time bounds, applied to decisions.
//!
//! Filters run on finished decisions (after pairing), so a paired request is kept
//! or dropped as a whole, and `--exit-code` counts exactly what would be printed.

use clap::ValueEnum;
use jiff::Timestamp;

use crate::record::{DecisionRecord, EngineKind, RbacOutcome};

/// `--decision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum DecisionFilter {
    /// Only denials (default)
    #[default]
    Denied,
    /// Only allowed requests (needs RBAC debug lines: access logs only name denials)
    Allowed,
    /// Both
    All,
}

/// `--engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineFilter {
    /// Decisions that were enforced
    Enforced,
    /// Dry-run and CUSTOM shadow decisions (logged only)
    Shadow,
}

/// All filters of a run.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub decision: DecisionFilter,
    pub engine: Option<EngineFilter>,
    /// `--policy`: a name, `NAME.NS`, `NS/NAME`, or a raw policy id (`none` too).
    pub policies: Vec<String>,
    /// `--from-namespace`: only decisions whose source workload is in one of these.
    pub source_namespaces: Vec<String>,
    /// `--to-namespace`: only decisions whose destination is in one of these.
    pub destination_namespaces: Vec<String>,
    /// Only decisions at or after this time.
    pub after: Option<Timestamp>,
    /// Live runs: what the API adds to each decision before it is matched.
    pub live: Option<std::sync::Arc<crate::live::LiveContext>>,
}

impl Filters {
    /// Adds what the live context knows (ALLOW candidates, the source pod).
    pub fn enrich(&self, d: &mut DecisionRecord) {
        if let Some(l) = &self.live {
            l.enrich(d);
        }
    }

    pub fn matches(&self, d: &DecisionRecord) -> bool {
        let decision_ok = match self.decision {
            DecisionFilter::Denied => d.decision == RbacOutcome::Denied,
            DecisionFilter::Allowed => d.decision == RbacOutcome::Allowed,
            DecisionFilter::All => true,
        };
        let engine_ok = match self.engine {
            None => true,
            Some(EngineFilter::Enforced) => d.engine == EngineKind::Enforced,
            Some(EngineFilter::Shadow) => d.engine == EngineKind::Shadow,
        };
        let policy_ok =
            self.policies.is_empty() || self.policies.iter().any(|p| policy_matches(p, d));
        let time_ok = match (self.after, d.ts) {
            (Some(after), Some(ts)) => ts >= after,
            _ => true,
        };
        let in_list = |list: &[String], ns: Option<String>| {
            list.is_empty() || ns.is_some_and(|ns| list.contains(&ns))
        };
        let from_ok = in_list(&self.source_namespaces, d.source_namespace());
        let to_ok = in_list(&self.destination_namespaces, d.destination_namespace());
        decision_ok && engine_ok && policy_ok && time_ok && from_ok && to_ok
    }
}

fn policy_matches(wanted: &str, d: &DecisionRecord) -> bool {
    if d.policy_id.as_deref() == Some(wanted) {
        return true;
    }
    // An ALLOW miss is about every ALLOW policy that applies (live runs).
    if d.allow_policies.iter().any(|p| {
        let (ns, name) = p.split_once('/').unwrap_or(("", p));
        wanted == p || wanted == name || wanted == format!("{name}.{ns}")
    }) {
        return true;
    }
    let Some(p) = &d.policy else { return false };
    let (Some(name), ns) = (&p.name, p.namespace.as_deref().unwrap_or("")) else {
        return false;
    };
    wanted == name || wanted == format!("{name}.{ns}") || wanted == format!("{ns}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Origin, PolicyRef};

    fn rec(
        decision: RbacOutcome,
        engine: EngineKind,
        id: Option<&str>,
        time: &str,
    ) -> DecisionRecord {
        let pid = id.map(meshpolicy::envoy::PolicyId::parse);
        DecisionRecord {
            time: Some(time.into()),
            namespace: None,
            pod: None,
            origin: Origin::RbacDebug,
            engine,
            decision,
            policy_id: id.map(str::to_string),
            policy: pid.as_ref().and_then(PolicyRef::from_id),
            request: None,
            downstream: None,
            connection_id: None,
            stream_id: None,
            line: String::new(),
            paired: vec![],
            file: None,
            ts: time.parse().ok(),
            ..DecisionRecord::default()
        }
    }

    const ID: &str = "ns[np-test-2]-policy[deny-all]-rule[0]";
    const T: &str = "2025-07-06T19:33:00Z";

    #[test]
    fn decision_filter() {
        let denied = rec(RbacOutcome::Denied, EngineKind::Enforced, Some(ID), T);
        let allowed = rec(RbacOutcome::Allowed, EngineKind::None, None, T);
        let f = Filters::default();
        assert!(f.matches(&denied) && !f.matches(&allowed));
        let f = Filters {
            decision: DecisionFilter::Allowed,
            ..Default::default()
        };
        assert!(!f.matches(&denied) && f.matches(&allowed));
        let f = Filters {
            decision: DecisionFilter::All,
            ..Default::default()
        };
        assert!(f.matches(&denied) && f.matches(&allowed));
    }

    #[test]
    fn engine_filter() {
        let enforced = rec(RbacOutcome::Denied, EngineKind::Enforced, Some(ID), T);
        let shadow = rec(RbacOutcome::Denied, EngineKind::Shadow, Some(ID), T);
        let f = Filters {
            engine: Some(EngineFilter::Shadow),
            ..Default::default()
        };
        assert!(f.matches(&shadow) && !f.matches(&enforced));
        let f = Filters {
            engine: Some(EngineFilter::Enforced),
            ..Default::default()
        };
        assert!(!f.matches(&shadow) && f.matches(&enforced));
    }

    #[test]
    fn policy_filter_accepts_every_spelling() {
        let d = rec(RbacOutcome::Denied, EngineKind::Enforced, Some(ID), T);
        for wanted in ["deny-all", "deny-all.np-test-2", "np-test-2/deny-all", ID] {
            let f = Filters {
                policies: vec![wanted.into()],
                ..Default::default()
            };
            assert!(f.matches(&d), "{wanted}");
        }
        for wanted in ["deny", "deny-all.other", "none"] {
            let f = Filters {
                policies: vec![wanted.into()],
                ..Default::default()
            };
            assert!(!f.matches(&d), "{wanted}");
        }
        let none = rec(RbacOutcome::Denied, EngineKind::Enforced, Some("none"), T);
        let f = Filters {
            policies: vec!["none".into()],
            ..Default::default()
        };
        assert!(f.matches(&none));
    }

    #[test]
    fn source_and_destination_namespaces() {
        let mut z = rec(RbacOutcome::Denied, EngineKind::Enforced, Some("none"), T);
        z.proxy = Some("ztunnel");
        z.namespace = Some("istio-system".into());
        z.pod = Some("ztunnel-abc".into());
        z.from = Some("spiffe://cluster.local/ns/shop/sa/default".into());
        z.to = Some("web/web-0".into());
        let f = |from: &[&str], to: &[&str]| Filters {
            source_namespaces: from.iter().map(|s| s.to_string()).collect(),
            destination_namespaces: to.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        assert!(f(&["shop"], &["web"]).matches(&z));
        assert!(!f(&["web"], &[]).matches(&z));
        assert!(
            !f(&[], &["istio-system"]).matches(&z),
            "not the ztunnel's own namespace"
        );
        // A sidecar's destination is its own pod; FROM as NS/POD.
        let mut s = rec(RbacOutcome::Denied, EngineKind::Enforced, Some(ID), T);
        s.proxy = Some("sidecar");
        s.namespace = Some("np-test-2".into());
        s.pod = Some("web".into());
        s.from = Some("np-test-1/client".into());
        assert!(f(&["np-test-1"], &["np-test-2"]).matches(&s));
        assert!(!f(&["np-test-2"], &[]).matches(&s));
        // Unknown source: not kept when a source namespace is asked for.
        s.from = None;
        assert!(!f(&["np-test-1"], &[]).matches(&s) && f(&[], &[]).matches(&s));
    }

    #[test]
    fn time_bound() {
        let d = rec(RbacOutcome::Denied, EngineKind::Enforced, Some(ID), T);
        let f = Filters {
            after: Some("2025-07-06T19:34:00Z".parse().unwrap()),
            ..Default::default()
        };
        assert!(!f.matches(&d));
        let f = Filters {
            after: Some("2025-07-06T19:33:00Z".parse().unwrap()),
            ..Default::default()
        };
        assert!(f.matches(&d));
    }
}
