//! Naming pods as users type them to kubectl and istioctl, resolved one way
//! for every plugin.
//!
//! Users name the pods to act on the way other tools taught them: a bare pod
//! name, istioctl's `POD.NS`, or kubectl's `TYPE/NAME` for a pod, a workload
//! (`deployment/`, `statefulset/`/`sts/`, `daemonset/`/`ds/`,
//! `replicaset/`/`rs/`) or a Service (`service/`/`svc/`: the pods it
//! selects). Parsing ([`PodTarget::parse`]) is pure, so a bad target is a
//! usage error before any API call; [`PodTarget::selection`] turns a target
//! into either one pod name or a label selector read from the owning object,
//! and [`resolve_pods`] lists the pods. Keeping this in one place is what
//! makes `authzcheck`, `npexec --pod` and `rbaclog --pod` accept the same
//! words with the same meaning.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ListParams};
use meshpolicy::Selector;

use crate::client::Kube;
use crate::error::{ApiOp, PluginError};
use crate::names::{is_dns_label, is_dns_subdomain};
use crate::resources::{ensure_namespace, is_running, phase, pod_name, sort_pods};
use crate::selector::validate_selector;

/// What kind of object a target names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    Pod,
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Service,
}

impl TargetKind {
    /// kubectl's resource name, as in `kubectl get deployment/x`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Pod => "pod",
            TargetKind::Deployment => "deployment",
            TargetKind::StatefulSet => "statefulset",
            TargetKind::DaemonSet => "daemonset",
            TargetKind::ReplicaSet => "replicaset",
            TargetKind::Service => "service",
        }
    }

    /// The API resource (plural), for error messages naming the failed call.
    fn resource(self) -> &'static str {
        match self {
            TargetKind::Pod => "pods",
            TargetKind::Deployment => "deployments",
            TargetKind::StatefulSet => "statefulsets",
            TargetKind::DaemonSet => "daemonsets",
            TargetKind::ReplicaSet => "replicasets",
            TargetKind::Service => "services",
        }
    }

    /// Reads `TYPE` of `TYPE/NAME` with kubectl's names, short names and plurals.
    pub fn from_type(s: &str) -> Option<TargetKind> {
        Some(match s.to_ascii_lowercase().as_str() {
            "pod" | "pods" | "po" => TargetKind::Pod,
            "deployment" | "deployments" | "deploy" => TargetKind::Deployment,
            "statefulset" | "statefulsets" | "sts" => TargetKind::StatefulSet,
            "daemonset" | "daemonsets" | "ds" => TargetKind::DaemonSet,
            "replicaset" | "replicasets" | "rs" => TargetKind::ReplicaSet,
            "service" | "services" | "svc" => TargetKind::Service,
            _ => return None,
        })
    }
}

/// The forms accepted, for hints and help texts.
pub const TARGET_FORMS: &str = "POD, POD.NAMESPACE, pod/POD, deployment/NAME, statefulset/NAME (sts/), daemonset/NAME (ds/), replicaset/NAME (rs/), service/NAME (svc/)";

/// A target as typed, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTarget {
    pub kind: TargetKind,
    pub name: String,
    /// The namespace named in the target itself (`NAME.NS`), if any.
    pub namespace: Option<String>,
}

impl fmt::Display for PodTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == TargetKind::Pod {
            write!(f, "pod/{}", self.name)
        } else {
            write!(f, "{}/{}", self.kind.as_str(), self.name)
        }
    }
}

/// Why a target could not be understood (a usage error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("cannot act on {kind:?} in {target:?}: not a kind of pod owner")]
    UnknownKind { target: String, kind: String },
    #[error("invalid name {name:?} in {target:?}")]
    BadName { target: String, name: String },
    #[error("invalid namespace {namespace:?} in {target:?}")]
    BadNamespace { target: String, namespace: String },
    #[error("namespace given twice: {target:?} names {named:?} but -n says {flag:?}")]
    TwoNamespaces {
        target: String,
        named: String,
        flag: String,
    },
}

impl From<TargetError> for PluginError {
    fn from(e: TargetError) -> Self {
        let hint = match &e {
            TargetError::TwoNamespaces { .. } => {
                "give the namespace once: POD.NAMESPACE, or -n NAMESPACE POD".to_string()
            }
            _ => format!("name pods as {TARGET_FORMS}"),
        };
        PluginError::usage(crate::render::escape_control(&e.to_string()), Some(hint))
    }
}

impl PodTarget {
    /// Parses a target. `flag_namespace` is `-n` when the user gave it: the
    /// `NAME.NS` suffix (istioctl's form, split at the last dot as istioctl
    /// does) is read as a namespace when there is no `-n`, or when it equals
    /// `-n`; with another `-n`, a dotted name is a name (pods may have dots).
    pub fn parse(s: &str, flag_namespace: Option<&str>) -> Result<PodTarget, TargetError> {
        let (kind, rest) = match s.split_once('/') {
            Some((k, n)) => (
                TargetKind::from_type(k).ok_or_else(|| TargetError::UnknownKind {
                    target: s.to_string(),
                    kind: k.to_string(),
                })?,
                n,
            ),
            None => (TargetKind::Pod, s),
        };
        let (name, namespace) = match rest.rsplit_once('.') {
            Some((n, ns)) if flag_namespace.is_none_or(|f| f == ns) => {
                (n.to_string(), Some(ns.to_string()))
            }
            _ => (rest.to_string(), None),
        };
        if let Some(ns) = &namespace
            && !is_dns_label(ns)
        {
            return Err(TargetError::BadNamespace {
                target: s.to_string(),
                namespace: ns.clone(),
            });
        }
        if !is_dns_subdomain(&name) {
            return Err(TargetError::BadName {
                target: s.to_string(),
                name,
            });
        }
        Ok(PodTarget {
            kind,
            name,
            namespace,
        })
    }

    /// The namespace to look in: the target's own, else `-n`, else `default_ns`
    /// (the kubeconfig context's).
    pub fn namespace_or<'a>(&'a self, flag: Option<&'a str>, default_ns: &'a str) -> &'a str {
        self.namespace.as_deref().or(flag).unwrap_or(default_ns)
    }

    /// Whether this is a bare word (no `TYPE/`, no `.NS`), which some plugins
    /// also accept as a namespace.
    pub fn is_bare(&self) -> bool {
        self.kind == TargetKind::Pod && self.namespace.is_none()
    }

    /// Which pods the target means: a name, or the owner's label selector.
    pub async fn selection(&self, kube: &Kube, namespace: &str) -> Result<Selection, PluginError> {
        let not_found = |kube: &Kube, e: kube::Error| -> PluginError {
            match e {
                kube::Error::Api(s) if s.code == 404 => PluginError::NotFound {
                    kind: self.kind.as_str().into(),
                    name: self.name.clone(),
                    namespace: namespace.into(),
                },
                e => kube.err(
                    e,
                    &ApiOp::new("get", self.kind.resource(), namespace).named(&self.name),
                ),
            }
        };
        let client = kube.client.clone();
        let selector: Option<LabelSelector> = match self.kind {
            TargetKind::Pod => return Ok(Selection::Name(self.name.clone())),
            TargetKind::Deployment => Api::<Deployment>::namespaced(client, namespace)
                .get(&self.name)
                .await
                .map_err(|e| not_found(kube, e))?
                .spec
                .map(|s| s.selector),
            TargetKind::StatefulSet => Api::<StatefulSet>::namespaced(client, namespace)
                .get(&self.name)
                .await
                .map_err(|e| not_found(kube, e))?
                .spec
                .map(|s| s.selector),
            TargetKind::DaemonSet => Api::<DaemonSet>::namespaced(client, namespace)
                .get(&self.name)
                .await
                .map_err(|e| not_found(kube, e))?
                .spec
                .map(|s| s.selector),
            TargetKind::ReplicaSet => Api::<ReplicaSet>::namespaced(client, namespace)
                .get(&self.name)
                .await
                .map_err(|e| not_found(kube, e))?
                .spec
                .map(|s| s.selector),
            TargetKind::Service => {
                let svc = Api::<Service>::namespaced(client, namespace)
                    .get(&self.name)
                    .await
                    .map_err(|e| not_found(kube, e))?;
                let labels: BTreeMap<String, String> =
                    svc.spec.and_then(|s| s.selector).unwrap_or_default();
                if labels.is_empty() {
                    return Err(PluginError::Api {
                        code: None,
                        message: format!(
                            "service {namespace}/{} has no selector: its endpoints are not pods Kubernetes picks, so it names no pod",
                            self.name
                        ),
                    });
                }
                Some(LabelSelector {
                    match_labels: Some(labels),
                    match_expressions: None,
                })
            }
        };
        let selector = selector
            .map(|s| Selector::from_label_selector(&s))
            .transpose()
            .map_err(|e| PluginError::Api {
                code: None,
                message: format!(
                    "{} {namespace}/{} has an invalid selector: {e}",
                    self.kind.as_str(),
                    self.name
                ),
            })?
            .unwrap_or_default();
        Ok(Selection::Labels {
            describe: format!("{self} ({selector})"),
            selector,
        })
    }
}

/// Which pods a target means.
#[derive(Debug, Clone)]
pub enum Selection {
    /// One pod by name.
    Name(String),
    /// The pods an owner selects; `describe` says which owner, for messages.
    Labels {
        selector: Selector,
        describe: String,
    },
}

impl Selection {
    /// The pods of `pods` this selection means (terminating pods left out,
    /// unless named).
    pub fn filter<'a>(&self, pods: &'a [Pod]) -> Vec<&'a Pod> {
        let empty = BTreeMap::new();
        pods.iter()
            .filter(|p| {
                matches!(self, Selection::Name(_)) || p.metadata.deletion_timestamp.is_none()
            })
            .filter(|p| match self {
                Selection::Name(n) => p.metadata.name.as_deref() == Some(n),
                Selection::Labels { selector, .. } => {
                    selector.matches(p.metadata.labels.as_ref().unwrap_or(&empty))
                }
            })
            .collect()
    }

    /// The error for a selection that matched no pod.
    pub fn nothing(&self, namespace: &str) -> PluginError {
        match self {
            Selection::Name(n) => PluginError::NotFound {
                kind: "pod".into(),
                name: n.clone(),
                namespace: namespace.into(),
            },
            Selection::Labels { describe, .. } => PluginError::NoPodMatches {
                namespace: namespace.into(),
                selector: describe.clone(),
            },
        }
    }
}

/// The pods a target means in `namespace`, Running and Ready first, then by
/// name; an error naming the target when there are none (or the namespace
/// does not exist).
pub async fn resolve_pods(
    kube: &Kube,
    namespace: &str,
    target: &PodTarget,
) -> Result<Vec<Pod>, PluginError> {
    let selection = match target.selection(kube, namespace).await {
        Err(e @ PluginError::NotFound { .. }) => {
            ensure_namespace(kube, namespace).await?;
            return Err(e);
        }
        other => other?,
    };
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), namespace);
    let pods = match &selection {
        Selection::Name(name) => match api.get(name).await {
            Ok(p) => vec![p],
            Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
            Err(e) => return Err(kube.err(e, &ApiOp::new("get", "pods", namespace).named(name))),
        },
        Selection::Labels { .. } => {
            api.list(&ListParams::default())
                .await
                .map_err(|e| kube.err(e, &ApiOp::new("list", "pods", namespace)))?
                .items
        }
    };
    let mut pods: Vec<Pod> = selection.filter(&pods).into_iter().cloned().collect();
    if pods.is_empty() {
        ensure_namespace(kube, namespace).await?;
        return Err(selection.nothing(namespace));
    }
    sort_pods(&mut pods);
    Ok(pods)
}

/// How the user named pods: `--pod TARGET` (any form of [`PodTarget`])
/// or `-l SELECTOR` (or neither: any pod).
#[derive(Debug, Clone, Default)]
pub struct PodQuery {
    pub pod: Option<String>,
    pub selector: Option<String>,
}

impl PodQuery {
    fn describe(&self) -> String {
        match (&self.pod, &self.selector) {
            (Some(p), _) => format!("pod name {p}"),
            (None, Some(s)) => format!("selector {s}"),
            (None, None) => "any pod".into(),
        }
    }
}

/// Pods matching the query, Running and Ready first, then by name.
/// Errors when nothing matches (naming the selector).
pub async fn find_pods(
    kube: &Kube,
    namespace: &str,
    query: &PodQuery,
) -> Result<Vec<Pod>, PluginError> {
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), namespace);
    let mut pods = if let Some(name) = &query.pod {
        // `--pod` takes every target form (pod/, deployment/, svc/, ...).
        let target = PodTarget::parse(name, Some(namespace))?;
        return resolve_pods(kube, namespace, &target).await;
    } else {
        let mut lp = ListParams::default();
        if let Some(sel) = &query.selector {
            validate_selector(sel).map_err(|e| PluginError::usage(e.to_string(), None))?;
            lp = lp.labels(sel);
        }
        api.list(&lp)
            .await
            .map_err(|e| kube.err(e, &ApiOp::new("list", "pods", namespace)))?
            .items
    };
    if pods.is_empty() {
        ensure_namespace(kube, namespace).await?;
        return Err(PluginError::NoPodMatches {
            namespace: namespace.into(),
            selector: query.describe(),
        });
    }
    sort_pods(&mut pods);
    Ok(pods)
}

/// Picks the one pod to act from: the first Running pod of [`find_pods`].
pub async fn pick_running_pod(
    kube: &Kube,
    namespace: &str,
    query: &PodQuery,
) -> Result<Pod, PluginError> {
    let pods = find_pods(kube, namespace, query).await?;
    let first = pods
        .into_iter()
        .next()
        .ok_or_else(|| PluginError::NoPodMatches {
            namespace: namespace.into(),
            selector: query.describe(),
        })?;
    if !is_running(&first) {
        return Err(PluginError::PodNotRunning {
            namespace: namespace.into(),
            pod: pod_name(&first).into(),
            phase: phase(&first).into(),
        });
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(kind: TargetKind, name: &str, ns: Option<&str>) -> PodTarget {
        PodTarget {
            kind,
            name: name.into(),
            namespace: ns.map(str::to_string),
        }
    }

    #[test]
    fn every_form_parses() {
        use TargetKind::*;
        let cases: &[(&str, PodTarget)] = &[
            ("web-1", t(Pod, "web-1", None)),
            ("web-1.shop", t(Pod, "web-1", Some("shop"))),
            ("pod/web-1", t(Pod, "web-1", None)),
            ("po/web-1", t(Pod, "web-1", None)),
            ("pods/web-1.shop", t(Pod, "web-1", Some("shop"))),
            ("deployment/web", t(Deployment, "web", None)),
            ("deploy/web", t(Deployment, "web", None)),
            ("deployments/web.shop", t(Deployment, "web", Some("shop"))),
            ("statefulset/db", t(StatefulSet, "db", None)),
            ("sts/db", t(StatefulSet, "db", None)),
            ("daemonset/agent", t(DaemonSet, "agent", None)),
            ("ds/agent", t(DaemonSet, "agent", None)),
            ("replicaset/web-5d9c", t(ReplicaSet, "web-5d9c", None)),
            ("rs/web-5d9c", t(ReplicaSet, "web-5d9c", None)),
            ("service/web", t(Service, "web", None)),
            ("svc/web", t(Service, "web", None)),
            ("Deployment/web", t(Deployment, "web", None)),
        ];
        for (s, want) in cases {
            assert_eq!(&PodTarget::parse(s, None).unwrap(), want, "{s}");
        }
    }

    #[test]
    fn the_dot_is_a_namespace_unless_n_says_otherwise() {
        // -n equal to the suffix: the suffix is the namespace.
        assert_eq!(
            PodTarget::parse("web-1.shop", Some("shop")).unwrap(),
            t(TargetKind::Pod, "web-1", Some("shop"))
        );
        // Another -n: the whole word is the (dotted) pod name.
        assert_eq!(
            PodTarget::parse("web-1.shop", Some("other")).unwrap(),
            t(TargetKind::Pod, "web-1.shop", None)
        );
        assert!(PodTarget::parse("web-1", None).unwrap().is_bare());
        assert!(!PodTarget::parse("web-1.x", None).unwrap().is_bare());
        assert!(!PodTarget::parse("pod/web-1.x", None).unwrap().is_bare());
    }

    #[test]
    fn bad_targets_are_usage_errors() {
        for s in [
            "job/x",
            "cronjob/x",
            "deployment/",
            "Web",
            "a b",
            "pod/x.Bad_NS",
            "svc/a\u{1b}b",
            "",
        ] {
            let e: PluginError = PodTarget::parse(s, None).unwrap_err().into();
            assert_eq!(e.exit_code(), 2, "{s:?}");
            assert!(!e.one_line().contains('\u{1b}'), "{s:?}");
        }
    }

    #[test]
    fn display_is_kubectl_form() {
        assert_eq!(
            PodTarget::parse("sts/db.ns", None).unwrap().to_string(),
            "statefulset/db"
        );
        assert_eq!(
            PodTarget::parse("web", None).unwrap().to_string(),
            "pod/web"
        );
    }
}
