//! Human summaries of a policy (its target, action and rules), as data the
//! plugins render: one line for the policy, one per rule.

use super::compile::CompiledAuthz;
use super::schema::{Action, AuthorizationPolicy, AuthzError, Rule, envoy_policy_id};

impl CompiledAuthz {
    /// Human one-line summaries of the policy: its target and action, then one
    /// line per rule (`ALLOW with no rules: allows nothing, so every request is denied`).
    pub fn summary(&self, root_namespace: &str) -> Vec<String> {
        let target = match (&self.selector, self.namespace == root_namespace) {
            _ if self.has_target_ref => {
                "targetRef (gateway/waypoint; not applied to sidecars)".to_string()
            }
            (None, true) => "all workloads in the mesh (root namespace)".to_string(),
            (None, false) => format!("all workloads in namespace {}", self.namespace),
            (Some(ml), root) => {
                let sel: Vec<String> = ml.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let scope = if root {
                    "in every namespace (root namespace)".to_string()
                } else {
                    format!("in namespace {}", self.namespace)
                };
                format!("workloads {} {scope}", sel.join(","))
            }
        };
        let mut head = format!(
            "authorizationpolicy {}/{}: {} for {target}",
            self.namespace, self.name, self.action
        );
        if let Some(p) = &self.provider {
            head.push_str(&format!(" (delegated to ext-authz provider {p})"));
        }
        if self.dry_run {
            head.push_str(" [dry-run: evaluated as shadow, not enforced]");
        }
        let mut out = vec![head];
        if self.rules.is_empty() {
            out.push(match self.action {
                Action::Allow => {
                    "ALLOW with no rules: allows nothing, so every request is denied".to_string()
                }
                Action::Deny => "DENY with no rules: matches nothing, so it denies nothing".into(),
                Action::Audit => "AUDIT with no rules: audits nothing".into(),
                Action::Custom => "CUSTOM with no rules: delegates nothing".into(),
            });
        }
        for (i, r) in self.rules.iter().enumerate() {
            out.push(format!(
                "{} {}: {}",
                self.action,
                envoy_policy_id(&self.namespace, &self.name, i),
                describe_rule(r)
            ));
        }
        out
    }
}

fn list(field: &str, v: &[String], out: &mut Vec<String>) {
    if !v.is_empty() {
        out.push(format!("{field} [{}]", v.join(", ")));
    }
}

fn describe_rule(r: &Rule) -> String {
    if r.from.is_empty() && r.to.is_empty() && r.when.is_empty() {
        return "matches every request".to_string();
    }
    let mut parts = Vec::new();
    if !r.from.is_empty() {
        let alts: Vec<String> = r
            .from
            .iter()
            .filter_map(|f| f.source.as_ref())
            .map(|s| {
                let mut p = Vec::new();
                list("principals", &s.principals, &mut p);
                list("notPrincipals", &s.not_principals, &mut p);
                list("requestPrincipals", &s.request_principals, &mut p);
                list("notRequestPrincipals", &s.not_request_principals, &mut p);
                list("namespaces", &s.namespaces, &mut p);
                list("notNamespaces", &s.not_namespaces, &mut p);
                list("ipBlocks", &s.ip_blocks, &mut p);
                list("notIpBlocks", &s.not_ip_blocks, &mut p);
                list("remoteIpBlocks", &s.remote_ip_blocks, &mut p);
                list("notRemoteIpBlocks", &s.not_remote_ip_blocks, &mut p);
                p.join(" and ")
            })
            .collect();
        parts.push(format!("from {}", alts.join(" or ")));
    }
    if !r.to.is_empty() {
        let alts: Vec<String> =
            r.to.iter()
                .filter_map(|t| t.operation.as_ref())
                .map(|o| {
                    let mut p = Vec::new();
                    list("hosts", &o.hosts, &mut p);
                    list("notHosts", &o.not_hosts, &mut p);
                    list("ports", &o.ports, &mut p);
                    list("notPorts", &o.not_ports, &mut p);
                    list("methods", &o.methods, &mut p);
                    list("notMethods", &o.not_methods, &mut p);
                    list("paths", &o.paths, &mut p);
                    list("notPaths", &o.not_paths, &mut p);
                    p.join(" and ")
                })
                .collect();
        parts.push(format!("to {}", alts.join(" or ")));
    }
    for c in &r.when {
        let mut s = format!("when {}", c.key);
        if !c.values.is_empty() {
            s.push_str(&format!(" in [{}]", c.values.join(", ")));
        }
        if !c.not_values.is_empty() {
            if !c.values.is_empty() {
                s.push_str(" and");
            }
            s.push_str(&format!(" not in [{}]", c.not_values.join(", ")));
        }
        parts.push(s);
    }
    parts.join("; ")
}

/// One-line summaries of an AuthorizationPolicy (see [`CompiledAuthz::summary`]).
pub fn summarize_authorization_policy(
    ap: &AuthorizationPolicy,
    root_namespace: &str,
) -> Result<Vec<String>, AuthzError> {
    Ok(CompiledAuthz::compile(ap)?.summary(root_namespace))
}
