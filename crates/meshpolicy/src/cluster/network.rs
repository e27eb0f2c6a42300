//! NetworkPolicy evaluation over the model: both sides of a connection (egress
//! of the source, ingress of the destination), the policies and rules that
//! decide, and the port ranges each side allows.

use super::Cluster;
use crate::netpol::{
    CompiledNetworkPolicy, Direction, NetVerdict, NetpolError, PeerScope, PolicyRef, PortSide,
    Resolved, RuleRef, SidePorts, SideVerdict,
};
use crate::workload::{Endpoint, Pod, Protocol};

impl Cluster {
    fn peer_scope(&self) -> PeerScope<'_> {
        PeerScope {
            namespaces: &self.namespaces,
            ip_block_matches_pods: self.options.ip_block_matches_pods,
        }
    }

    fn resolve(&self, e: &Endpoint) -> Result<Resolved<'_>, NetpolError> {
        match e {
            Endpoint::Pod { namespace, name } => self
                .pod(namespace, name)
                .map(Resolved::Pod)
                .ok_or_else(|| NetpolError::UnknownPod {
                    namespace: namespace.clone(),
                    name: name.clone(),
                }),
            Endpoint::External { ip } => Ok(Resolved::External(*ip)),
        }
    }

    /// NetworkPolicies that select `pod`, sorted by name, with the directions
    /// each isolates. Only the pod's namespace is consulted (index).
    pub fn network_policies_selecting(&self, pod: &Pod) -> Vec<&CompiledNetworkPolicy> {
        let mut v: Vec<&CompiledNetworkPolicy> = self
            .netpols_by_ns
            .get(&pod.namespace)
            .into_iter()
            .flatten()
            .map(|&i| &self.netpols[i])
            .filter(|p| p.selects(pod))
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// All NetworkPolicies of a namespace, sorted by name.
    pub fn network_policies_in(&self, namespace: &str) -> Vec<&CompiledNetworkPolicy> {
        let mut v: Vec<&CompiledNetworkPolicy> = self
            .netpols_by_ns
            .get(namespace)
            .into_iter()
            .flatten()
            .map(|&i| &self.netpols[i])
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn side(
        &self,
        dir: Direction,
        owner: Resolved<'_>,
        peer: Resolved<'_>,
        target: &PortSide<'_>,
    ) -> SideVerdict {
        let pod = match owner {
            Resolved::Pod(p) => p,
            Resolved::External(ip) => {
                return SideVerdict {
                    direction: dir,
                    pod: None,
                    selecting: Vec::new(),
                    allowed: true,
                    allowed_by: Vec::new(),
                    reason: format!(
                        "{dir}: {ip} is outside the cluster, not subject to NetworkPolicy"
                    ),
                };
            }
        };
        let pod_ref = PolicyRef {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
        };
        let mut selecting = Vec::new();
        let mut allowed_by = Vec::new();
        for p in self.network_policies_selecting(pod) {
            let Some(rules) = p.rules(dir) else {
                continue;
            };
            selecting.push(p.policy_ref());
            for (i, r) in rules.iter().enumerate() {
                if r.admits(&self.peer_scope(), &p.namespace, peer, target) {
                    allowed_by.push(RuleRef {
                        policy: p.policy_ref(),
                        direction: dir,
                        rule_index: i,
                    });
                }
            }
        }
        let peer_desc = match peer {
            Resolved::Pod(p) => format!("pod {}/{}", p.namespace, p.name),
            Resolved::External(ip) => ip.to_string(),
        };
        let (allowed, reason) = if selecting.is_empty() {
            (
                true,
                format!("{dir} of pod {pod_ref} is open: no NetworkPolicy selects it for {dir}"),
            )
        } else if let Some(first) = allowed_by.first() {
            (true, format!("{dir} of pod {pod_ref} allowed by {first}"))
        } else {
            let names: Vec<String> = selecting.iter().map(|p| p.to_string()).collect();
            (
                false,
                format!(
                    "{dir} of pod {pod_ref} denied: selected by {} and no rule allows {peer_desc} on {} {}",
                    names.join(", "),
                    target.protocol,
                    target.port
                ),
            )
        };
        SideVerdict {
            direction: dir,
            pod: Some(pod_ref),
            selecting,
            allowed,
            allowed_by,
            reason,
        }
    }

    /// Every port NetworkPolicy allows from `src` to `dst`, per side: the
    /// egress side of the source, then the ingress side of the destination.
    /// A connection is allowed on the ports both sides allow
    /// (the `connectivity` module combines them). Errors only when an endpoint
    /// names a pod the model does not hold.
    pub fn network_port_ranges(
        &self,
        src: &Endpoint,
        dst: &Endpoint,
    ) -> Result<[SidePorts; 2], NetpolError> {
        let s = self.resolve(src)?;
        let d = self.resolve(dst)?;
        Ok([
            self.side_ports(Direction::Egress, s, d, d),
            self.side_ports(Direction::Ingress, d, s, d),
        ])
    }

    fn side_ports(
        &self,
        direction: Direction,
        owner: Resolved<'_>,
        peer: Resolved<'_>,
        dst: Resolved<'_>,
    ) -> SidePorts {
        let Resolved::Pod(pod) = owner else {
            return SidePorts {
                direction,
                allowed: None,
            };
        };
        let mut isolated = false;
        let mut out = Vec::new();
        for p in self.network_policies_selecting(pod) {
            let Some(rules) = p.rules(direction) else {
                continue;
            };
            isolated = true;
            for r in rules {
                if r.admits_peer(&self.peer_scope(), &p.namespace, peer) {
                    r.port_ranges(dst, &mut out);
                }
            }
        }
        SidePorts {
            direction,
            allowed: isolated.then_some(out),
        }
    }

    /// Would NetworkPolicy let `src` open a connection to `dst` on `port`/`protocol`?
    /// Errors only when an endpoint names a pod the model does not hold.
    pub fn evaluate_network(
        &self,
        src: &Endpoint,
        dst: &Endpoint,
        port: u16,
        protocol: Protocol,
    ) -> Result<NetVerdict, NetpolError> {
        let s = self.resolve(src)?;
        let d = self.resolve(dst)?;
        let target = PortSide {
            endpoint: d,
            port,
            protocol,
        };
        let mut egress = self.side(Direction::Egress, s, d, &target);
        let mut ingress = self.side(Direction::Ingress, d, s, &target);
        // A pod reaching itself (its own IP, or its Service back to it) is
        // loopback, which no NetworkPolicy governs: Kubernetes' own network
        // policy e2e expects it allowed whatever the policies say.
        if matches!(src, Endpoint::Pod { .. }) && src == dst {
            for side in [&mut egress, &mut ingress] {
                side.selecting.clear();
                side.allowed_by.clear();
                side.allowed = true;
                side.reason = format!(
                    "{}: {src} connects to itself: loopback follows no NetworkPolicy",
                    side.direction
                );
            }
        }
        let allowed = egress.allowed && ingress.allowed;
        let explanation = if allowed {
            format!(
                "allowed {protocol} {port}: {}; {}",
                egress.reason, ingress.reason
            )
        } else {
            let deny: Vec<&str> = [&egress, &ingress]
                .iter()
                .filter(|s| !s.allowed)
                .map(|s| s.reason.as_str())
                .collect();
            format!("denied {protocol} {port}: {}", deny.join("; "))
        };
        Ok(NetVerdict {
            source: src.clone(),
            destination: dst.clone(),
            port,
            protocol,
            allowed,
            egress,
            ingress,
            explanation,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::{Cluster, ClusterOptions, Endpoint, Protocol};

    #[test]
    fn a_pod_reaching_itself_is_loopback_whatever_the_policies() {
        let c = Cluster::from_manifests(
            r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a, labels: {app: web}}
spec: {containers: [{name: web}]}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: a, labels: {app: other}}
spec: {containers: [{name: other}]}
status: {podIP: 10.0.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: a}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
"#,
            ClusterOptions::default(),
        )
        .unwrap();
        let web = Endpoint::pod("a", "web");
        let v = c.evaluate_network(&web, &web, 80, Protocol::Tcp).unwrap();
        assert!(v.allowed, "{v:?}");
        assert!(v.ingress.selecting.is_empty() && v.egress.selecting.is_empty());
        assert!(
            v.ingress.reason.contains("loopback"),
            "{}",
            v.ingress.reason
        );
        let other = Endpoint::pod("a", "other");
        assert!(
            !c.evaluate_network(&other, &web, 80, Protocol::Tcp)
                .unwrap()
                .allowed
        );
    }
}
