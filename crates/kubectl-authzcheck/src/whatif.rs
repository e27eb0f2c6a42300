//! `kubectl authzcheck -f PATH` / `--delete-f PATH`: what would apply to a
//! pod once a change is applied, before it reaches the cluster.
//!
//! A reviewer of a policy pull request asks "what does this pod get after
//! the merge?". This module overlays the manifests (read by
//! [`kubeplugin::manifests`], merged by [`meshpolicy::whatif`] with npexec's
//! semantics: same kind/namespace/name replaces, new objects are added,
//! `--delete-f` removes) on the namespace authzcheck already read, analyses
//! the pod on both sides without the proxy, and marks each NetworkPolicy and
//! AuthorizationPolicy row and each finding `new`, `gone`, `changed` or
//! `unchanged`. The Envoy section cannot be predicted: it and the findings
//! drawn from it describe the cluster as it is, and the report says so.

use meshpolicy::connectivity::WorkloadRef;
use meshpolicy::whatif::{apply_objects, peer_auth_changes, remove_objects};
use meshpolicy::{Cluster, ClusterOptions, Objects, Pod};

use kubeplugin::PluginError;
use kubeplugin::manifests::read_manifests;

use crate::report::{Change, Finding, ProxySource, ProxyView, Report, Severity};

/// The change to evaluate: objects to apply over the cluster and to delete.
#[derive(Debug, Clone, Default)]
pub struct Overlay {
    pub apply: Objects,
    pub delete: Objects,
}

/// What the report says about the Envoy section when an overlay is given.
pub const NOTE: &str = "with -f/--delete-f: the NetworkPolicy and AuthorizationPolicy sections show the cluster with the change; \"What Envoy loaded\" and the findings drawn from it describe the cluster as it is";

/// Reads the overlay of the command line (`None` without -f / --delete-f).
pub fn read(apply: &[String], delete: &[String]) -> Result<Option<Overlay>, PluginError> {
    if apply.is_empty() && delete.is_empty() {
        return Ok(None);
    }
    Ok(Some(Overlay {
        apply: read_manifests(apply)?,
        delete: read_manifests(delete)?,
    }))
}

/// The model with the overlay applied to the cluster as read: `objects` (what
/// the model accepted of it) and the PeerAuthentications `cluster` holds.
pub fn after_cluster(
    objects: &Objects,
    cluster: &Cluster,
    overlay: &Overlay,
) -> Result<Cluster, PluginError> {
    let options: ClusterOptions = cluster.options().clone();
    let live = Objects {
        peer_authentications: cluster.peer_authentications().to_vec(),
        ..objects.clone()
    };
    let mut objects = apply_objects(&live, &overlay.apply);
    remove_objects(&mut objects, &overlay.delete);
    Cluster::from_objects(objects, options)
        .map_err(|e| PluginError::usage(format!("-f: {e}"), None))
}

/// What the change does to the pod's mTLS: each client whose connection to
/// one of the pod's ports the overlay's PeerAuthentications newly reject
/// (`mtls-change`, warning) or newly accept (info), by meshpolicy's
/// [`meshpolicy::whatif::peer_auth_changes`], marked `new`.
pub fn peer_auth_findings(before: &Cluster, after: &Cluster, pod: &Pod) -> Vec<Finding> {
    let me = WorkloadRef::of(pod).to_string();
    peer_auth_changes(before, after)
        .into_iter()
        .filter(|c| c.to == me)
        .map(|c| {
            let port = c.port.map(|p| format!(" port {p}")).unwrap_or_default();
            let by = match (c.policies.before.is_empty(), c.policies.after.is_empty()) {
                (_, false) => format!(" ({})", c.policies.after.join(", ")),
                (false, true) => format!(" (no longer {})", c.policies.before.join(", ")),
                (true, true) => String::new(),
            };
            let mut f = Finding::new(
                if c.newly_denied {
                    Severity::Warning
                } else {
                    Severity::Info
                },
                "mtls-change",
                format!(
                    "PeerAuthentication change: {} ->{port}: {} -> {}{by}",
                    c.from, c.before, c.after
                ),
            );
            f.change = Some(Change::New);
            f
        })
        .collect()
}

/// A proxy view that says nothing: the policy-only analysis of each side.
pub fn no_proxy() -> ProxyView {
    ProxyView {
        source: ProxySource::Unavailable,
        detail: "not consulted for the overlay".into(),
        rows: Vec::new(),
        hidden: None,
        anonymous: Vec::new(),
    }
}

fn policy_findings(r: &Report) -> Vec<Finding> {
    r.findings
        .iter()
        .filter(|f| f.code != "proxy-unavailable")
        .cloned()
        .collect()
}

fn same_finding(a: &Finding, b: &Finding) -> bool {
    a.code == b.code && a.message == b.message
}

/// Joins three analyses of one pod: `before` and `after` without the proxy
/// (the cluster without and with the overlay) and `live`, the ordinary report
/// (with the proxy). Rows and findings of `after` are marked against
/// `before`; rows only `before` has come back marked `gone`; the proxy view
/// and findings only the proxy explains come from `live`, `unchanged`.
pub fn mark(before: &Report, after: Report, live: Report) -> Report {
    let mut out = after;
    let key = |ns: &str, name: &str| (ns.to_string(), name.to_string());

    for e in &mut out.network_policies {
        e.change = Some(
            match before
                .network_policies
                .iter()
                .find(|b| key(&b.namespace, &b.name) == key(&e.namespace, &e.name))
            {
                None => Change::New,
                Some(b) if *b == *e => Change::Unchanged,
                Some(_) => Change::Changed,
            },
        );
    }
    for b in &before.network_policies {
        if !out
            .network_policies
            .iter()
            .any(|e| key(&b.namespace, &b.name) == key(&e.namespace, &e.name))
        {
            let mut g = b.clone();
            g.change = Some(Change::Gone);
            out.network_policies.push(g);
        }
    }

    let live_loaded = |ns: &str, name: &str| {
        live.authorization_policies
            .iter()
            .find(|l| l.namespace == ns && l.name == name)
            .and_then(|l| l.loaded)
    };
    for e in &mut out.authorization_policies {
        let b = before
            .authorization_policies
            .iter()
            .find(|b| key(&b.namespace, &b.name) == key(&e.namespace, &e.name));
        let change = match b {
            None => Change::New,
            Some(b) => {
                // Envoy's view and the age are not part of the policy.
                let mut x = b.clone();
                x.loaded = e.loaded;
                x.age_seconds = e.age_seconds;
                if x == *e {
                    Change::Unchanged
                } else {
                    Change::Changed
                }
            }
        };
        // Envoy has only seen what the cluster holds now.
        e.loaded = match change {
            Change::Unchanged => live_loaded(&e.namespace, &e.name),
            _ => None,
        };
        e.change = Some(change);
    }
    for b in &before.authorization_policies {
        if !out
            .authorization_policies
            .iter()
            .any(|e| key(&b.namespace, &b.name) == key(&e.namespace, &e.name))
        {
            let mut g = b.clone();
            g.loaded = live_loaded(&b.namespace, &b.name);
            g.change = Some(Change::Gone);
            out.authorization_policies.push(g);
        }
    }

    let before_f = policy_findings(before);
    let mut findings: Vec<Finding> = policy_findings(&out)
        .into_iter()
        .map(|mut f| {
            let seen = before_f.iter().any(|b| same_finding(b, &f));
            f.change = Some(if seen { Change::Unchanged } else { Change::New });
            f
        })
        .collect();
    for b in &before_f {
        if !findings.iter().any(|f| same_finding(b, f)) {
            let mut g = b.clone();
            g.change = Some(Change::Gone);
            findings.push(g);
        }
    }
    // What only the proxy (or the cluster as it is) explains.
    for mut l in live.findings {
        if !before_f.iter().any(|b| same_finding(b, &l))
            && !findings.iter().any(|f| same_finding(f, &l))
        {
            l.change = Some(Change::Unchanged);
            findings.push(l);
        }
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out.findings = findings;
    out.proxy = live.proxy;
    out.what_if = Some(NOTE.to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::AuthzEntry;

    fn authz(name: &str, action: &str, loaded: Option<bool>) -> AuthzEntry {
        AuthzEntry {
            namespace: "ns".into(),
            name: name.into(),
            action: action.into(),
            rules: 1,
            scope: "namespace".into(),
            selector: None,
            dry_run: false,
            provider: None,
            envoy_names: vec![],
            meaning: format!("{action} something"),
            details: vec![],
            loaded,
            age_seconds: Some(100),
            change: None,
        }
    }

    fn report(aps: Vec<AuthzEntry>, findings: Vec<Finding>) -> Report {
        Report {
            pod: None,
            network_isolation: None,
            network_policies: vec![],
            authorization_policies: aps,
            proxy: no_proxy(),
            peer_authentication: None,
            findings,
            what_if: None,
            ambient: None,
        }
    }

    #[test]
    fn rows_and_findings_are_marked() {
        let before = report(
            vec![
                authz("kept", "ALLOW", None),
                authz("edited", "ALLOW", None),
                authz("deleted", "DENY", None),
            ],
            vec![
                Finding::new(Severity::Info, "a", "stays"),
                Finding::new(Severity::Info, "b", "goes"),
            ],
        );
        let mut edited = authz("edited", "DENY", None);
        edited.age_seconds = None;
        let after = report(
            vec![
                authz("kept", "ALLOW", None),
                edited,
                authz("added", "DENY", None),
            ],
            vec![
                Finding::new(Severity::Info, "a", "stays"),
                Finding::new(Severity::Warning, "c", "comes"),
            ],
        );
        let mut live = report(
            vec![
                authz("kept", "ALLOW", Some(true)),
                authz("edited", "ALLOW", Some(true)),
                authz("deleted", "DENY", Some(false)),
            ],
            vec![
                Finding::new(Severity::Info, "a", "stays"),
                Finding::new(Severity::Warning, "not-loaded", "from envoy"),
            ],
        );
        live.proxy.detail = "live".into();
        let m = mark(&before, after, live);
        let row = |n: &str| {
            m.authorization_policies
                .iter()
                .find(|a| a.name == n)
                .map(|a| (a.change.unwrap(), a.loaded))
                .unwrap()
        };
        assert_eq!(row("kept"), (Change::Unchanged, Some(true)));
        assert_eq!(row("edited"), (Change::Changed, None));
        assert_eq!(row("added"), (Change::New, None));
        assert_eq!(row("deleted"), (Change::Gone, Some(false)));
        let f = |c: &str| {
            m.findings
                .iter()
                .find(|f| f.code == c)
                .and_then(|f| f.change)
        };
        assert_eq!(f("a"), Some(Change::Unchanged));
        assert_eq!(f("b"), Some(Change::Gone));
        assert_eq!(f("c"), Some(Change::New));
        assert_eq!(f("not-loaded"), Some(Change::Unchanged));
        assert_eq!(m.proxy.detail, "live");
        assert_eq!(m.what_if.as_deref(), Some(NOTE));
        assert_eq!(m.findings[0].severity, Severity::Warning);
    }

    #[test]
    fn a_strict_overlay_is_a_warning_for_plain_text_clients() {
        let live = meshpolicy::parse_manifests(
            r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {containers: [{name: c, image: x, ports: [{containerPort: 8080}]}, {name: istio-proxy, image: proxyv2}]}
"#,
        )
        .unwrap();
        let before = Cluster::from_objects(live.clone(), ClusterOptions::default()).unwrap();
        let overlay = Overlay {
            apply: meshpolicy::parse_manifests(
                "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: strict, namespace: shop}\nspec: {mtls: {mode: STRICT}}\n",
            )
            .unwrap(),
            delete: Objects::default(),
        };
        let after = after_cluster(&live, &before, &overlay).unwrap();
        assert_eq!(after.peer_authentications().len(), 1);
        let pod = before.pod("shop", "web").unwrap();
        let f = peer_auth_findings(&before, &after, pod);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].severity, Severity::Warning);
        assert_eq!(f[0].change, Some(Change::New));
        assert!(
            f[0].message
                .contains("rejected: plain text into STRICT (shop/strict (STRICT))"),
            "{}",
            f[0].message
        );
        // Deleting it again: the live PeerAuthentication (held by the cluster) goes.
        let mut with = before.clone();
        with.add_peer_authentication(after.peer_authentications()[0].clone());
        let undo = Overlay {
            apply: Objects::default(),
            delete: overlay.apply.clone(),
        };
        let back = after_cluster(&live, &with, &undo).unwrap();
        assert!(back.peer_authentications().is_empty());
        let f = peer_auth_findings(&with, &back, pod);
        assert_eq!((f.len(), f[0].severity), (1, Severity::Info));
    }
}
