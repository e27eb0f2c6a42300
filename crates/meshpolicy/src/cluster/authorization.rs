//! AuthorizationPolicy evaluation over the model: which policies apply to a
//! pod (its namespace and the root namespace) and what they decide.

use super::Cluster;
use crate::authz::{
    AuthzError, AuthzRequest, AuthzVerdict, CompiledAuthz, EvalOptions, HttpAttributes,
    PathNormalization, TrustDomainBundle, evaluate_policies_with,
};
use crate::workload::{Endpoint, Pod};

impl Cluster {
    /// AuthorizationPolicies that apply to `pod` (its namespace and the root
    /// namespace only), sorted by namespace then name.
    pub fn authorization_policies_for(&self, pod: &Pod) -> Vec<&CompiledAuthz> {
        let root = self.options.root_namespace.as_str();
        let mut namespaces = vec![pod.namespace.as_str()];
        if root != pod.namespace {
            namespaces.push(root);
        }
        let mut v: Vec<&CompiledAuthz> = namespaces
            .into_iter()
            .filter_map(|ns| self.authz_by_ns.get(ns))
            .flatten()
            .map(|&i| &self.authz[i])
            .filter(|p| p.applies_to(pod, root))
            .collect();
        v.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        v
    }

    /// All AuthorizationPolicies of a namespace, sorted by name.
    pub fn authorization_policies_in(&self, namespace: &str) -> Vec<&CompiledAuthz> {
        let mut v: Vec<&CompiledAuthz> = self
            .authz_by_ns
            .get(namespace)
            .into_iter()
            .flatten()
            .map(|&i| &self.authz[i])
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Builds the request the destination sidecar sees when `src` calls
    /// `dst_namespace/dst_pod` on `port`. The source principal is known only
    /// when both ends have a sidecar (mutual TLS).
    pub fn authz_request(
        &self,
        src: &Endpoint,
        dst_namespace: &str,
        dst_pod: &str,
        port: u16,
        http: Option<HttpAttributes>,
    ) -> Result<AuthzRequest, AuthzError> {
        let dst = self
            .pod(dst_namespace, dst_pod)
            .ok_or_else(|| AuthzError::UnknownPod {
                namespace: dst_namespace.into(),
                name: dst_pod.into(),
            })?;
        let (principal, ip) = match src {
            Endpoint::Pod { namespace, name } => {
                let s = self
                    .pod(namespace, name)
                    .ok_or_else(|| AuthzError::UnknownPod {
                        namespace: namespace.clone(),
                        name: name.clone(),
                    })?;
                let p = (s.has_sidecar && dst.has_sidecar)
                    .then(|| s.principal(&self.options.trust_domain));
                (p, s.ip)
            }
            Endpoint::External { ip } => (None, Some(*ip)),
        };
        Ok(AuthzRequest {
            source_principal: principal,
            source_namespace: None,
            source_ip: ip,
            remote_ip: None,
            request_principal: None,
            destination_namespace: dst.namespace.clone(),
            destination_pod: dst.name.clone(),
            destination_ip: dst.ip,
            destination_port: port,
            http,
        })
    }

    /// Evaluates a request against the AuthorizationPolicies that apply to
    /// its destination pod.
    pub fn evaluate_authz(&self, req: &AuthzRequest) -> Result<AuthzVerdict, AuthzError> {
        let dst = self
            .pod(&req.destination_namespace, &req.destination_pod)
            .ok_or_else(|| AuthzError::UnknownPod {
                namespace: req.destination_namespace.clone(),
                name: req.destination_pod.clone(),
            })?;
        let root = self.options.root_namespace.as_str();
        let mut notes = Vec::new();
        for ns in [dst.namespace.as_str(), root] {
            for &i in self.authz_by_ns.get(ns).into_iter().flatten() {
                let p = &self.authz[i];
                if p.has_target_ref {
                    let note = format!(
                        "authorizationpolicy {}/{} uses targetRef (gateway/waypoint) and does not apply to sidecars",
                        p.namespace, p.name
                    );
                    if !notes.contains(&note) {
                        notes.push(note);
                    }
                }
            }
        }
        let policies = self.authorization_policies_for(dst);
        let opts = EvalOptions {
            trust_domains: TrustDomainBundle::new(
                &self.options.trust_domain,
                &self.options.trust_domain_aliases,
            ),
            path_normalization: PathNormalization::ISTIO_DEFAULT,
        };
        Ok(evaluate_policies_with(
            &policies,
            req,
            dst.has_sidecar,
            notes,
            &opts,
        ))
    }
}
