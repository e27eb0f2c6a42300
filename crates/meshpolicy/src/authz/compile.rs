//! Validation of a policy into [`CompiledAuthz`]: what Istio's validation
//! rejects is an error here, and what is left is what every later step
//! (evaluation, translation to Envoy, description) can rely on.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::schema::{Action, AuthorizationPolicy, AuthzError, Operation, Rule, Source};
use crate::netpol::PolicyRef;
use crate::workload::Pod;

/// A validated AuthorizationPolicy.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledAuthz {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) action: Action,
    pub(crate) provider: Option<String>,
    pub(crate) selector: Option<BTreeMap<String, String>>,
    pub(crate) dry_run: bool,
    pub(crate) has_target_ref: bool,
    pub(crate) rules: Vec<Rule>,
    pub(crate) original: AuthorizationPolicy,
}

fn check_ip_list(values: &[String], field: &str, at: &str) -> Result<(), String> {
    for v in values {
        if parse_ip_or_cidr(v).is_none() {
            return Err(format!("{at}.{field}: {v:?} is not an IP address or CIDR"));
        }
    }
    Ok(())
}

pub(super) fn parse_ip_or_cidr(v: &str) -> Option<IpNet> {
    let v = v.trim();
    if let Ok(n) = v.parse::<IpNet>() {
        return Some(n.trunc());
    }
    v.parse::<IpAddr>().ok().map(IpNet::from)
}

fn check_ports(values: &[String], field: &str, at: &str) -> Result<(), String> {
    for v in values {
        if v.parse::<u16>().is_err() {
            return Err(format!("{at}.{field}: {v:?} is not a port number"));
        }
    }
    Ok(())
}

impl CompiledAuthz {
    /// Validates an AuthorizationPolicy. A missing namespace means `default`.
    pub fn compile(ap: &AuthorizationPolicy) -> Result<Self, AuthzError> {
        let (namespace, name) =
            crate::workload::namespaced_name(&ap.metadata).ok_or(AuthzError::MissingName)?;
        let object = format!("{namespace}/{name}");
        let invalid = |reason: String| AuthzError::Invalid {
            object: object.clone(),
            reason,
        };
        let action = ap.action();
        let provider = ap.spec.provider.as_ref().map(|p| p.name.clone());
        match (action, &provider) {
            (Action::Custom, None) => {
                return Err(invalid("action CUSTOM requires provider.name".into()));
            }
            (Action::Custom, Some(p)) if p.is_empty() => {
                return Err(invalid("action CUSTOM requires provider.name".into()));
            }
            (Action::Custom, _) => {}
            (other, Some(_)) => {
                return Err(invalid(format!(
                    "provider is only allowed with action CUSTOM, not {other}"
                )));
            }
            _ => {}
        }
        if let Some(sel) = &ap.spec.selector {
            crate::selector::Selector::from_labels(&sel.match_labels)
                .map_err(|e| invalid(format!("selector.matchLabels: {e}")))?;
        }
        for (i, rule) in ap.spec.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            for (j, f) in rule.from.iter().enumerate() {
                let at = format!("{at}.from[{j}]");
                let Some(s) = &f.source else {
                    return Err(invalid(format!("{at}.source is required")));
                };
                if *s == Source::default() {
                    return Err(invalid(format!("{at}.source must not be empty")));
                }
                let at = format!("{at}.source");
                check_ip_list(&s.ip_blocks, "ipBlocks", &at).map_err(&invalid)?;
                check_ip_list(&s.not_ip_blocks, "notIpBlocks", &at).map_err(&invalid)?;
                check_ip_list(&s.remote_ip_blocks, "remoteIpBlocks", &at).map_err(&invalid)?;
                check_ip_list(&s.not_remote_ip_blocks, "notRemoteIpBlocks", &at)
                    .map_err(&invalid)?;
            }
            for (j, t) in rule.to.iter().enumerate() {
                let at = format!("{at}.to[{j}]");
                let Some(o) = &t.operation else {
                    return Err(invalid(format!("{at}.operation is required")));
                };
                if *o == Operation::default() {
                    return Err(invalid(format!("{at}.operation must not be empty")));
                }
                let at = format!("{at}.operation");
                check_ports(&o.ports, "ports", &at).map_err(&invalid)?;
                check_ports(&o.not_ports, "notPorts", &at).map_err(&invalid)?;
            }
            for (j, c) in rule.when.iter().enumerate() {
                let at = format!("{at}.when[{j}]");
                if c.key.is_empty() {
                    return Err(invalid(format!("{at}.key is required")));
                }
                if c.values.is_empty() && c.not_values.is_empty() {
                    return Err(invalid(format!(
                        "{at}: condition on {:?} needs values or notValues",
                        c.key
                    )));
                }
                match c.key.as_str() {
                    "source.ip" | "remote.ip" | "destination.ip" => {
                        check_ip_list(&c.values, "values", &at).map_err(&invalid)?;
                        check_ip_list(&c.not_values, "notValues", &at).map_err(&invalid)?;
                    }
                    "destination.port" => {
                        check_ports(&c.values, "values", &at).map_err(&invalid)?;
                        check_ports(&c.not_values, "notValues", &at).map_err(&invalid)?;
                    }
                    _ => {}
                }
            }
        }
        Ok(Self {
            namespace,
            name,
            action,
            provider,
            selector: ap.spec.selector.as_ref().map(|s| s.match_labels.clone()),
            dry_run: ap.is_dry_run(),
            has_target_ref: ap.spec.target_ref.is_some() || !ap.spec.target_refs.is_empty(),
            rules: ap.spec.rules.clone(),
            original: ap.clone().with_default_namespace("default"),
        })
    }

    /// `namespace/name`.
    pub fn policy_ref(&self) -> PolicyRef {
        PolicyRef {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// The policy as it was given (namespace defaulted).
    pub fn policy(&self) -> &AuthorizationPolicy {
        &self.original
    }

    /// The action.
    pub fn action(&self) -> Action {
        self.action
    }

    /// Whether this is a dry-run (shadow) policy.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// The ext-authz provider of a CUSTOM policy.
    pub fn provider(&self) -> Option<&str> {
        self.provider.as_deref()
    }

    /// Whether the policy applies to a sidecar workload with these labels in
    /// this namespace, given the mesh root namespace.
    pub fn applies_to(&self, pod: &Pod, root_namespace: &str) -> bool {
        if self.has_target_ref {
            return false;
        }
        if self.namespace != pod.namespace && self.namespace != root_namespace {
            return false;
        }
        match &self.selector {
            None => true,
            Some(ml) => ml.iter().all(|(k, v)| pod.labels.get(k) == Some(v)),
        }
    }
}
