//! What the API adds to live decisions: the ALLOW policies behind an ALLOW miss,
//! and the pod behind a downstream address.
//!
//! Envoy says `matched policy none` when ALLOW policies exist for the workload but
//! none matched; the log cannot say which. Live, the AuthorizationPolicies of the
//! pods' namespaces (and Istio's root namespace) are read and meshpolicy decides
//! which ALLOW policies apply to each pod: they are the candidates
//! (`allow_policies`), and `--policy NAME` matches such denials too. The pods'
//! IPs let the downstream address name its pod (`from`). A CUSTOM denial seen
//! only in the access log names the pod's CUSTOM policy and provider when one applies.
//!
//! Ambient mode: a ztunnel's `allow policies exist, but none allowed` is about
//! its destination workload, so the candidates are the ALLOW policies ztunnel
//! enforces for that pod (meshpolicy's ztunnel view: selector-bound, the
//! namespace's and the root namespace's); a waypoint's `matched policy none`
//! is about the ALLOW policies attached to that waypoint (`targetRefs` to its
//! Gateway, the waypoint GatewayClass, or the Service the request went to).
//! A waypoint decision's destination is the Service of the request's authority.
//! Everything here is best effort: a failed list leaves the decisions as the
//! log gave them.

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

/// An ALLOW policy attached to a waypoint: `NS/NAME`, and the Service it
/// targets (`NS/NAME`) when that is how it is attached.
pub type WaypointAllow = (String, Option<String>);

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
    /// Ambient pods, `NS/POD` -> the ALLOW policies ztunnel enforces for them.
    pub ztunnel_allow: HashMap<String, Vec<String>>,
    /// Waypoint pods `(namespace, pod)` -> the ALLOW policies attached to the
    /// waypoint: (`NS/NAME`, the Service it targets, `NS/NAME`, if that is how).
    pub waypoint_allow: HashMap<(String, String), Vec<WaypointAllow>>,
}

impl LiveContext {
    /// Adds what the API knows to a decision.
    pub fn enrich(&self, d: &mut DecisionRecord) {
        let is_audit = |id: Option<&str>| {
            id.map(meshpolicy::envoy::PolicyId::parse)
                .and_then(|p| Some(format!("{}/{}", p.namespace?, p.name?)))
                .is_some_and(|n| self.audit_policies.contains(&n))
        };
        if d.decision == crate::record::RbacOutcome::Allowed && is_audit(d.policy_id.as_deref()) {
            d.action = Some(crate::record::Action::Audit);
        }
        for f in &mut d.filters {
            if f.decision == crate::record::RbacOutcome::Allowed && is_audit(f.policy_id.as_deref())
            {
                f.action = Some(crate::record::Action::Audit);
            }
        }
        if d.from.is_none()
            && let Some(ip) = d.downstream.as_deref().and_then(ip_of)
            && let Some(p) = self.pods_by_ip.get(&ip)
        {
            d.from = Some(p.clone());
        }
        // ztunnel without dst.workload: the pod behind dst.addr.
        if d.proxy == Some("ztunnel")
            && let Some(to) = &d.to
            && !to.contains('/')
            && let Some(p) = ip_of(to).and_then(|ip| self.pods_by_ip.get(&ip))
        {
            d.to = Some(p.clone());
        }
        if d.proxy == Some("waypoint") && d.to.is_none() {
            d.to = waypoint_destination(d);
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
        if d.policy_id.as_deref() != Some("none") || !d.allow_policies.is_empty() {
            return;
        }
        let (Some(ns), Some(pod)) = (&d.namespace, &d.pod) else {
            return;
        };
        let key = (ns.clone(), pod.clone());
        match d.proxy {
            Some("ztunnel") => {
                if let Some(p) = d.to.as_ref().and_then(|to| self.ztunnel_allow.get(to)) {
                    d.allow_policies = p.clone();
                }
            }
            Some("waypoint") => {
                if let Some(p) = self.waypoint_allow.get(&key) {
                    d.allow_policies = p
                        .iter()
                        .filter(|(_, svc)| svc.is_none() || *svc == d.to)
                        .map(|(name, _)| name.clone())
                        .collect();
                }
            }
            _ => {
                if let Some(p) = self.allow_policies.get(&key) {
                    d.allow_policies = p.clone();
                }
            }
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

/// The Service a waypoint's request went to, `NS/NAME`, from its authority
/// (`NAME.NS[.svc.cluster.local][:PORT]`; a bare `NAME` is in the waypoint's namespace).
fn waypoint_destination(d: &DecisionRecord) -> Option<String> {
    let authority = d.request.as_ref()?.authority.as_deref()?;
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    if host.parse::<IpAddr>().is_ok() || host.is_empty() {
        return None;
    }
    let mut labels = host.split('.');
    let name = labels.next()?;
    match labels.next() {
        Some(ns) => Some(format!("{ns}/{name}")),
        None => Some(format!("{}/{name}", d.namespace.as_deref()?)),
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

/// A pod the run reads: namespace, name, proxy kind (`sidecar`, `waypoint`, `ztunnel`...).
pub type ReadPod = (String, String, &'static str);

/// Reads the policies and pods the decisions of `targets` may refer to;
/// `destinations`: namespaces whose ambient workloads ztunnels or waypoints are read for
/// (`None`: every namespace, with `-A`).
pub async fn gather(
    kube: &Kube,
    targets: &[ReadPod],
    destinations: Option<&[String]>,
) -> LiveContext {
    // Pods: every namespace when allowed (downstreams come from anywhere), else the targets'.
    let mut pods: Vec<K8sPod> = Vec::new();
    let mut namespaces: Vec<String> = targets.iter().map(|t| t.0.clone()).collect();
    namespaces.push(ROOT_NAMESPACE.to_string());
    let shared = targets
        .iter()
        .any(|t| t.2 == "ztunnel" || t.2 == "waypoint");
    if shared {
        match destinations {
            Some(d) => namespaces.extend(d.iter().cloned()),
            None => {
                // -A: every namespace with a pod may be a destination.
                if let Ok(l) =
                    Api::<k8s_openapi::api::core::v1::Namespace>::all(kube.client.clone())
                        .list(&ListParams::default())
                        .await
                {
                    namespaces.extend(l.items.into_iter().filter_map(|n| n.metadata.name));
                }
            }
        }
    }
    namespaces.sort();
    namespaces.dedup();
    let mut policies = Vec::new();
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
                policies.push(ap);
            }
        }
    }
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
    let ns_labels: HashMap<String, std::collections::BTreeMap<String, String>> = if shared {
        match Api::<k8s_openapi::api::core::v1::Namespace>::all(kube.client.clone())
            .list(&ListParams::default())
            .await
        {
            Ok(l) => l
                .items
                .into_iter()
                .filter_map(|n| Some((n.metadata.name?, n.metadata.labels.unwrap_or_default())))
                .collect(),
            Err(_) => HashMap::new(),
        }
    } else {
        HashMap::new()
    };
    for k in &pods {
        let Ok(p) = Pod::from_k8s(k) else { continue };
        if let Some(ip) = p.ip {
            ctx.pods_by_ip
                .insert(ip, format!("{}/{}", p.namespace, p.name));
        }
        if shared
            && namespaces.contains(&p.namespace)
            && meshpolicy::ambient::dataplane_mode(
                &p.labels,
                p.has_sidecar,
                ns_labels.get(&p.namespace).unwrap_or(&Default::default()),
            ) == meshpolicy::ambient::DataplaneMode::Ambient
        {
            let allow: Vec<String> =
                meshpolicy::ambient::ztunnel_policies(&policies, &p, ROOT_NAMESPACE)
                    .into_iter()
                    .filter(|z| matches!(z.l4.spec.action, None | Some(Action::Allow)))
                    .map(|z| {
                        format!(
                            "{}/{}",
                            z.l4.metadata.namespace.as_deref().unwrap_or("default"),
                            z.l4.metadata.name.as_deref().unwrap_or("")
                        )
                    })
                    .collect();
            ctx.ztunnel_allow
                .insert(format!("{}/{}", p.namespace, p.name), allow);
        }
        let Some((_, _, kind)) = targets
            .iter()
            .find(|(ns, pod, _)| *ns == p.namespace && *pod == p.name)
        else {
            continue;
        };
        if *kind == "waypoint" {
            let gateway = p
                .labels
                .get("gateway.networking.k8s.io/gateway-name")
                .cloned()
                .unwrap_or_default();
            let waypoint = meshpolicy::ambient::Waypoint {
                namespace: p.namespace.clone(),
                name: gateway,
                waypoint_for: meshpolicy::ambient::WaypointFor::Service,
            };
            let attached: Vec<WaypointAllow> = policies
                .iter()
                .filter(|ap| {
                    matches!(ap.spec.action, None | Some(Action::Allow)) && !ap.is_dry_run()
                })
                .filter_map(|ap| {
                    let ns = ap
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into());
                    let name = format!("{ns}/{}", ap.metadata.name.as_deref().unwrap_or(""));
                    if meshpolicy::ambient::waypoint_applies(ap, &waypoint, None, ROOT_NAMESPACE) {
                        return Some((name, None));
                    }
                    meshpolicy::ambient::target_refs(ap)
                        .into_iter()
                        .find(|t| t.kind == "Service")
                        .map(|t| (name, Some(format!("{ns}/{}", t.name))))
                })
                .collect();
            ctx.waypoint_allow
                .insert((p.namespace.clone(), p.name.clone()), attached);
            continue;
        }
        let allow: Vec<String> = compiled
            .iter()
            .filter(|c| {
                c.action() == Action::Allow && !c.is_dry_run() && c.applies_to(&p, ROOT_NAMESPACE)
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
            decision: crate::record::RbacOutcome::Allowed,
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

    #[test]
    fn ambient_misses_name_ztunnels_and_waypoints_allow_policies() {
        let mut ctx = LiveContext::default();
        ctx.ztunnel_allow
            .insert("amb/web-0".into(), vec!["amb/allow-l4".into()]);
        ctx.pods_by_ip
            .insert("10.0.0.9".parse().unwrap(), "amb/web-0".into());
        // ztunnel without dst.workload: the address names the pod.
        let mut z = DecisionRecord {
            namespace: Some("istio-system".into()),
            pod: Some("ztunnel-x".into()),
            proxy: Some("ztunnel"),
            policy_id: Some("none".into()),
            to: Some("10.0.0.9:80".into()),
            ..DecisionRecord::default()
        };
        ctx.enrich(&mut z);
        assert_eq!(z.to.as_deref(), Some("amb/web-0"));
        assert_eq!(z.allow_policies, vec!["amb/allow-l4".to_string()]);
        // A waypoint: the Service from the authority; policies on the Gateway
        // always, on a Service only for that Service.
        ctx.waypoint_allow.insert(
            ("amb".into(), "waypoint-0".into()),
            vec![
                ("amb/on-gateway".into(), None),
                ("amb/on-web".into(), Some("amb/web".into())),
                ("amb/on-other".into(), Some("amb/other".into())),
            ],
        );
        let mut w = DecisionRecord {
            namespace: Some("amb".into()),
            pod: Some("waypoint-0".into()),
            proxy: Some("waypoint"),
            policy_id: Some("none".into()),
            request: Some(crate::record::RequestInfo {
                method: Some("GET".into()),
                path: Some("/".into()),
                authority: Some("web.amb.svc.cluster.local:80".into()),
                response_code: Some(403),
            }),
            ..DecisionRecord::default()
        };
        ctx.enrich(&mut w);
        assert_eq!(w.to.as_deref(), Some("amb/web"));
        assert_eq!(w.destination_namespace().as_deref(), Some("amb"));
        assert_eq!(
            w.allow_policies,
            vec!["amb/on-gateway".to_string(), "amb/on-web".to_string()]
        );
        // A bare name is a Service of the waypoint's namespace.
        let mut bare = w.clone();
        bare.to = None;
        bare.request.as_mut().unwrap().authority = Some("other".into());
        bare.allow_policies.clear();
        ctx.enrich(&mut bare);
        assert_eq!(bare.to.as_deref(), Some("amb/other"));
    }
}
