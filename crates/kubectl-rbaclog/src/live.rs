//! What the API adds to live decisions: the ALLOW policies behind an ALLOW miss,
//! and the pod behind a downstream address.
//!
//! Envoy says `matched policy none` when ALLOW policies exist for the workload but
//! none matched; the log cannot say which. Live, the AuthorizationPolicies of the
//! pods' namespaces (and Istio's root namespace) are read and meshpolicy decides
//! which ALLOW policies apply to each pod: they are the candidates
//! (`allow_policies`), and `--policy NAME` matches such denials too. The pods'
//! IPs let the downstream address name its pod (`from`). A CUSTOM denial seen
//! only in the access log names the pod's CUSTOM policy and provider when one applies. Everything here is
//! best effort: a failed list leaves the decisions as the log gave them.

use std::collections::HashMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod as K8sPod;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kubeplugin::Kube;
use meshpolicy::authz::{Action, AuthorizationPolicy, CompiledAuthz};
use meshpolicy::workload::Pod;

use crate::record::DecisionRecord;

/// Istio's default root namespace (mesh-wide policies).
pub const ROOT_NAMESPACE: &str = "istio-system";

/// A CUSTOM policy: (`NS`, `NAME`, provider).
pub type CustomPolicy = (String, String, String);

/// The live context of a run.
#[derive(Debug, Default, Clone)]
pub struct LiveContext {
    /// `(namespace, pod)` -> the ALLOW policies applying to it, as `NS/NAME`.
    pub allow_policies: HashMap<(String, String), Vec<String>>,
    /// Pod IP -> `NS/POD`.
    pub pods_by_ip: HashMap<IpAddr, String>,
    /// Every AuthorizationPolicy read, as `NS/NAME`.
    pub known_policies: Vec<String>,
    /// The AUDIT policies among them (`NS/NAME`): Envoy logs their matches as
    /// `enforced allowed`, indistinguishable from an ALLOW match in the line.
    pub audit_policies: Vec<String>,
    /// `(namespace, pod)` -> the CUSTOM policies applying to it.
    pub custom_policies: HashMap<(String, String), Vec<CustomPolicy>>,
}

impl LiveContext {
    /// Adds what the API knows to a decision.
    pub fn enrich(&self, d: &mut DecisionRecord) {
        let is_audit = |id: Option<&str>| {
            id.map(meshpolicy::envoy::PolicyId::parse)
                .and_then(|p| Some(format!("{}/{}", p.namespace?, p.name?)))
                .is_some_and(|n| self.audit_policies.contains(&n))
        };
        if d.decision == crate::record::Verdict::Allowed && is_audit(d.policy_id.as_deref()) {
            d.action = Some(crate::record::Action::Audit);
        }
        for f in &mut d.filters {
            if f.decision == crate::record::Verdict::Allowed && is_audit(f.policy_id.as_deref()) {
                f.action = Some(crate::record::Action::Audit);
            }
        }
        if d.from.is_none()
            && let Some(ip) = d.downstream.as_deref().and_then(ip_of)
            && let Some(p) = self.pods_by_ip.get(&ip)
        {
            d.from = Some(p.clone());
        }
        // A CUSTOM denial known from the access log only (`UAEX`) names no
        // policy: when one CUSTOM policy applies to the pod, it is that one.
        if d.action == Some(crate::record::Action::Custom)
            && d.policy.is_none()
            && let (Some(ns), Some(pod)) = (&d.namespace, &d.pod)
            && let Some([(pns, name, provider)]) = self
                .custom_policies
                .get(&(ns.clone(), pod.clone()))
                .map(Vec::as_slice)
        {
            d.policy = Some(crate::record::PolicyRef {
                namespace: Some(pns.clone()),
                name: Some(name.clone()),
                rule: None,
                provider: Some(provider.clone()),
            });
        }
        if d.policy_id.as_deref() == Some("none")
            && d.allow_policies.is_empty()
            && let (Some(ns), Some(pod)) = (&d.namespace, &d.pod)
            && let Some(p) = self.allow_policies.get(&(ns.clone(), pod.clone()))
        {
            d.allow_policies = p.clone();
        }
    }

    /// Whether `wanted` (NAME, NS/NAME, NAME.NS) names a policy that was read.
    pub fn knows(&self, wanted: &str) -> bool {
        self.known_policies.iter().any(|p| {
            let (ns, name) = p.split_once('/').unwrap_or(("", p));
            wanted == p || wanted == name || wanted == format!("{name}.{ns}")
        })
    }
}

fn ip_of(addr: &str) -> Option<IpAddr> {
    if let Ok(ip) = addr.parse() {
        return Some(ip);
    }
    let (host, _) = addr.rsplit_once(':')?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

async fn list_authz(kube: &Kube, namespace: &str) -> Vec<AuthorizationPolicy> {
    for version in ["v1", "v1beta1"] {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("security.istio.io", version, "AuthorizationPolicy"),
            "authorizationpolicies",
        );
        let api: Api<DynamicObject> = Api::namespaced_with(kube.client.clone(), namespace, &ar);
        match api.list(&ListParams::default()).await {
            Ok(list) => {
                return list
                    .items
                    .into_iter()
                    .filter_map(|o| serde_json::to_value(o).ok())
                    .filter_map(|v| serde_json::from_value(v).ok())
                    .collect();
            }
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => {
                tracing::info!(namespace, error = %e, "cannot list AuthorizationPolicies");
                return Vec::new();
            }
        }
    }
    Vec::new()
}

/// Reads the policies and pods the decisions of `targets` (namespace, pod) may refer to.
pub async fn gather(kube: &Kube, targets: &[(String, String)]) -> LiveContext {
    let mut namespaces: Vec<String> = targets.iter().map(|t| t.0.clone()).collect();
    namespaces.push(ROOT_NAMESPACE.to_string());
    namespaces.sort();
    namespaces.dedup();
    let mut compiled = Vec::new();
    let mut ctx = LiveContext::default();
    for ns in &namespaces {
        for ap in list_authz(kube, ns).await {
            if let Ok(c) = CompiledAuthz::compile(&ap) {
                let r = c.policy_ref();
                ctx.known_policies
                    .push(format!("{}/{}", r.namespace, r.name));
                if c.action() == Action::Audit {
                    ctx.audit_policies
                        .push(format!("{}/{}", r.namespace, r.name));
                }
                compiled.push(c);
            }
        }
    }
    // Pods: every namespace when allowed (downstreams come from anywhere), else the targets'.
    let mut pods: Vec<K8sPod> = Vec::new();
    match Api::<K8sPod>::all(kube.client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(l) => pods = l.items,
        Err(_) => {
            for ns in &namespaces {
                if let Ok(l) = Api::<K8sPod>::namespaced(kube.client.clone(), ns)
                    .list(&ListParams::default())
                    .await
                {
                    pods.extend(l.items);
                }
            }
        }
    }
    for k in &pods {
        let Ok(p) = Pod::from_k8s(k) else { continue };
        if let Some(ip) = p.ip {
            ctx.pods_by_ip
                .insert(ip, format!("{}/{}", p.namespace, p.name));
        }
        if targets
            .iter()
            .any(|(ns, pod)| *ns == p.namespace && *pod == p.name)
        {
            let allow: Vec<String> = compiled
                .iter()
                .filter(|c| {
                    c.action() == Action::Allow
                        && !c.is_dry_run()
                        && c.applies_to(&p, ROOT_NAMESPACE)
                })
                .map(|c| {
                    let r = c.policy_ref();
                    format!("{}/{}", r.namespace, r.name)
                })
                .collect();
            ctx.allow_policies
                .insert((p.namespace.clone(), p.name.clone()), allow);
            let custom: Vec<CustomPolicy> = compiled
                .iter()
                .filter(|c| c.action() == Action::Custom && c.applies_to(&p, ROOT_NAMESPACE))
                .filter_map(|c| {
                    let r = c.policy_ref();
                    Some((r.namespace, r.name, c.provider()?.to_string()))
                })
                .collect();
            ctx.custom_policies
                .insert((p.namespace.clone(), p.name.clone()), custom);
        }
    }
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrich_names_candidates_and_the_source_pod() {
        let mut ctx = LiveContext::default();
        ctx.allow_policies.insert(
            ("ns".into(), "web".into()),
            vec!["ns/allow-frontend".into()],
        );
        ctx.pods_by_ip
            .insert("10.0.0.7".parse().unwrap(), "shop/client".into());
        ctx.known_policies.push("ns/allow-frontend".into());
        let mut d = DecisionRecord {
            namespace: Some("ns".into()),
            pod: Some("web".into()),
            policy_id: Some("none".into()),
            downstream: Some("10.0.0.7:4321".into()),
            ..DecisionRecord::default()
        };
        ctx.enrich(&mut d);
        assert_eq!(d.allow_policies, vec!["ns/allow-frontend".to_string()]);
        assert_eq!(d.from.as_deref(), Some("shop/client"));
        assert!(ctx.knows("allow-frontend") && ctx.knows("allow-frontend.ns"));
        assert!(!ctx.knows("deny-all"));
        // A named policy keeps no candidates.
        let mut named = DecisionRecord {
            namespace: Some("ns".into()),
            pod: Some("web".into()),
            policy_id: Some("ns[ns]-policy[x]-rule[0]".into()),
            ..DecisionRecord::default()
        };
        ctx.enrich(&mut named);
        assert!(named.allow_policies.is_empty());
        // An AUDIT policy's match is shown as AUDIT, not as an ALLOW.
        ctx.audit_policies.push("ns/log-admin".into());
        let mut audit = DecisionRecord {
            decision: crate::record::Verdict::Allowed,
            policy_id: Some("ns[ns]-policy[log-admin]-rule[0]".into()),
            ..DecisionRecord::default()
        };
        ctx.enrich(&mut audit);
        assert_eq!(audit.action, Some(crate::record::Action::Audit));
        assert_eq!(audit.decision_label(), "audit");
        // A CUSTOM denial from the access log names the one CUSTOM policy of the pod.
        ctx.custom_policies.insert(
            ("ns".into(), "web".into()),
            vec![("ns".into(), "ext-authz".into(), "opa".into())],
        );
        let mut custom = DecisionRecord {
            namespace: Some("ns".into()),
            pod: Some("web".into()),
            action: Some(crate::record::Action::Custom),
            ..DecisionRecord::default()
        };
        ctx.enrich(&mut custom);
        assert_eq!(custom.policy_label(), "ns/ext-authz (ext_authz opa)");
        // Two CUSTOM policies: the log cannot say which, so none is named.
        ctx.custom_policies
            .get_mut(&("ns".to_string(), "web".to_string()))
            .unwrap()
            .push(("ns".into(), "other".into(), "opa".into()));
        let mut two = DecisionRecord {
            namespace: Some("ns".into()),
            pod: Some("web".into()),
            action: Some(crate::record::Action::Custom),
            ..DecisionRecord::default()
        };
        ctx.enrich(&mut two);
        assert_eq!(two.policy, None);
    }
}
