//! The lookups behind completion candidates: kubeconfig contexts, and
//! namespaces, pods, Deployments and Services from the API server.
//!
//! They read the cluster through the same kubeconfig flags the user typed on
//! the line (`--kubeconfig`, `--context`, `-n`...), so candidates come from the
//! cluster the command will talk to. A shell waits for these answers, so the
//! whole lookup is bounded (see [`LOOKUP_LIMIT`]); any failure or a slow
//! server gives no candidates rather than an error.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{Api, ListParams};

use crate::client::{Kube, load_kubeconfig};
use crate::complete::line::{Candidate, Want};
use crate::error::{ApiOp, PluginError};
use crate::flags::KubeFlags;

/// How long a completion may take before it gives up and offers nothing.
pub const LOOKUP_LIMIT: Duration = Duration::from_secs(1);

/// Builds the connection flags from the values typed on the line.
pub fn kube_flags(typed: &BTreeMap<String, Vec<String>>) -> KubeFlags {
    let last = |k: &str| typed.get(k).and_then(|v| v.last().cloned());
    KubeFlags {
        kubeconfig: last("kubeconfig").map(Into::into),
        context: last("context"),
        cluster: last("cluster"),
        user: last("user"),
        namespace: last("namespace"),
        request_timeout: Some(LOOKUP_LIMIT),
        as_user: last("as"),
        as_group: typed.get("as-group").cloned().unwrap_or_default(),
        verbose: 0,
    }
}

fn sorted(mut v: Vec<Candidate>) -> Vec<Candidate> {
    v.sort_by(|a, b| a.value.cmp(&b.value));
    v.dedup_by(|a, b| a.value == b.value);
    v
}

/// Contexts, clusters or users of the kubeconfig (no API call).
pub fn from_kubeconfig(want: &Want, flags: &KubeFlags) -> Result<Vec<Candidate>, PluginError> {
    let kc = load_kubeconfig(flags)?;
    let current = kc.current_context.clone().unwrap_or_default();
    let out = match want {
        Want::Contexts => kc
            .contexts
            .iter()
            .map(|c| {
                let ctx = c.context.as_ref();
                let mut desc =
                    format!("cluster {}", ctx.map(|x| x.cluster.as_str()).unwrap_or("?"));
                if let Some(ns) = ctx.and_then(|x| x.namespace.as_deref()) {
                    desc.push_str(&format!(", namespace {ns}"));
                }
                if c.name == current {
                    desc.push_str(" (current)");
                }
                Candidate::described(c.name.clone(), desc)
            })
            .collect(),
        Want::Clusters => kc
            .clusters
            .iter()
            .map(|c| {
                let server = c
                    .cluster
                    .as_ref()
                    .and_then(|x| x.server.clone())
                    .unwrap_or_default();
                Candidate::described(c.name.clone(), server)
            })
            .collect(),
        Want::Users => kc
            .auth_infos
            .iter()
            .map(|u| Candidate::new(u.name.clone()))
            .collect(),
        _ => Vec::new(),
    };
    Ok(sorted(out))
}

fn phase(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

async fn pods(kube: &Kube, ns: &str) -> Result<Vec<Candidate>, PluginError> {
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), ns);
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(|e| kube.err(e, &ApiOp::new("list", "pods", ns)))?
        .items
        .into_iter()
        .filter_map(|p| {
            let desc = phase(&p);
            p.metadata.name.map(|n| Candidate::described(n, desc))
        })
        .collect())
}

async fn deployments(kube: &Kube, ns: &str) -> Result<Vec<Candidate>, PluginError> {
    let api: Api<Deployment> = Api::namespaced(kube.client.clone(), ns);
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(|e| kube.err(e, &ApiOp::new("list", "deployments", ns)))?
        .items
        .into_iter()
        .filter_map(|d| d.metadata.name)
        .map(|n| Candidate::described(format!("deployment/{n}"), "Deployment"))
        .collect())
}

/// Looks up what `want` asks for in the cluster the flags name.
pub async fn from_cluster(want: &Want, flags: &KubeFlags) -> Result<Vec<Candidate>, PluginError> {
    let kube = Kube::from_flags(flags).await?;
    let lp = ListParams::default();
    let list_err = |e, what: &'static str, ns: &str| kube.err(e, &ApiOp::new("list", what, ns));
    let out = match want {
        Want::Namespaces => {
            let api: Api<Namespace> = Api::all(kube.client.clone());
            api.list(&lp)
                .await
                .map_err(|e| list_err(e, "namespaces", "(cluster)"))?
                .items
                .into_iter()
                .filter_map(|n| n.metadata.name)
                .map(Candidate::new)
                .collect()
        }
        Want::Pods { namespace } => {
            let ns = namespace.clone().unwrap_or_else(|| kube.namespace.clone());
            pods(&kube, &ns).await?
        }
        Want::Deployments { namespace } => {
            let ns = namespace.clone().unwrap_or_else(|| kube.namespace.clone());
            deployments(&kube, &ns).await?
        }
        Want::PodsOrDeployments { namespace } => {
            let ns = namespace.clone().unwrap_or_else(|| kube.namespace.clone());
            let mut out = pods(&kube, &ns).await?;
            // Listing Deployments may be forbidden where pods are not.
            out.extend(deployments(&kube, &ns).await.unwrap_or_default());
            out
        }
        Want::Services { namespaces } => {
            let namespaces = if namespaces.is_empty() {
                vec![kube.namespace.clone()]
            } else {
                namespaces.clone()
            };
            let mut out = Vec::new();
            for ns in &namespaces {
                let api: Api<Service> = Api::namespaced(kube.client.clone(), ns);
                let list = api
                    .list(&lp)
                    .await
                    .map_err(|e| list_err(e, "services", ns))?;
                for s in list.items {
                    let ports: Vec<String> = s
                        .spec
                        .as_ref()
                        .and_then(|sp| sp.ports.as_ref())
                        .map(|ps| ps.iter().map(|p| p.port.to_string()).collect())
                        .unwrap_or_default();
                    if let Some(name) = s.metadata.name {
                        let mut desc = format!("in {ns}");
                        if !ports.is_empty() {
                            desc.push_str(&format!(", port {}", ports.join(",")));
                        }
                        out.push(Candidate::described(name, desc));
                    }
                }
            }
            out
        }
        _ => Vec::new(),
    };
    Ok(sorted(out))
}

/// Runs the lookup for `want`, bounded by `limit`; nothing on error or time-out.
pub async fn lookup(want: &Want, flags: &KubeFlags, limit: Duration) -> Vec<Candidate> {
    let fut = async {
        match want {
            Want::Fixed(c) => Ok(c.clone()),
            Want::Contexts | Want::Clusters | Want::Users => from_kubeconfig(want, flags),
            Want::Namespaces
            | Want::Pods { .. }
            | Want::Deployments { .. }
            | Want::PodsOrDeployments { .. }
            | Want::Services { .. } => from_cluster(want, flags).await,
            Want::Files | Want::Nothing => Ok(Vec::new()),
        }
    };
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!("completion lookup failed: {e}");
            Vec::new()
        }
        Err(_) => {
            tracing::debug!("completion lookup took longer than {limit:?}");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECONFIG: &str = r#"
apiVersion: v1
kind: Config
current-context: one
clusters:
- name: c1
  cluster: {server: "https://127.0.0.1:1"}
contexts:
- name: one
  context: {cluster: c1, user: u1, namespace: np-test-1}
- name: two
  context: {cluster: c1, user: u2}
users:
- name: u1
  user: {token: t}
- name: u2
  user: {token: t}
"#;

    fn flags_for(path: &std::path::Path) -> KubeFlags {
        let mut typed = BTreeMap::new();
        typed.insert("kubeconfig".to_string(), vec![path.display().to_string()]);
        kube_flags(&typed)
    }

    #[tokio::test]
    async fn contexts_clusters_users_from_the_typed_kubeconfig() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), KUBECONFIG).unwrap();
        let flags = flags_for(f.path());
        let c = lookup(&Want::Contexts, &flags, LOOKUP_LIMIT).await;
        let names: Vec<&str> = c.iter().map(|c| c.value.as_str()).collect();
        assert_eq!(names, ["one", "two"]);
        let d = c[0].description.as_deref().unwrap();
        assert!(
            d.contains("namespace np-test-1") && d.contains("(current)"),
            "{d}"
        );
        let u = lookup(&Want::Users, &flags, LOOKUP_LIMIT).await;
        assert_eq!(u.len(), 2);
        let cl = lookup(&Want::Clusters, &flags, LOOKUP_LIMIT).await;
        assert_eq!(cl[0].description.as_deref(), Some("https://127.0.0.1:1"));
    }

    #[tokio::test]
    async fn missing_kubeconfig_gives_nothing() {
        let flags = flags_for(std::path::Path::new("/nonexistent/kubeconfig"));
        assert!(
            lookup(&Want::Contexts, &flags, LOOKUP_LIMIT)
                .await
                .is_empty()
        );
        assert!(
            lookup(&Want::Namespaces, &flags, LOOKUP_LIMIT)
                .await
                .is_empty()
        );
    }

    /// A server that accepts connections and never answers: the lookup gives
    /// up at the limit and offers nothing (no timing is asserted).
    #[tokio::test]
    async fn silent_server_gives_nothing() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            f.path(),
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: x\nclusters:\n- name: x\n  cluster: {{server: \"http://{addr}\"}}\ncontexts:\n- name: x\n  context: {{cluster: x, user: x}}\nusers:\n- name: x\n  user: {{}}\n"
            ),
        )
        .unwrap();
        let flags = flags_for(f.path());
        let got = lookup(&Want::Namespaces, &flags, Duration::from_millis(200)).await;
        assert!(got.is_empty());
        accept.abort();
    }
}
