//! Everything authzcheck reads from outside: the API (namespace, pods,
//! NetworkPolicies, AuthorizationPolicies, Deployments), istioctl, the
//! sidecar's config dump through exec, and `--config-dump` files.
//!
//! The namespace is read once (one list per kind) and turned into the
//! meshpolicy model; each pod then only needs its proxy view. istioctl runs
//! as a subprocess with an argv vector (kubeplugin), the config dump comes
//! from `pilot-agent request GET config_dump` in `istio-proxy`, exactly what
//! istioctl itself runs, so both paths need the same `pods/exec` permission.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod as K8sPod;
use kubeplugin::exec::{ExecLimits, ExecTarget, exec};
use kubeplugin::istioctl::{Istioctl, IstioctlArgs, ToolOutput};
use kubeplugin::policy_model::{
    NamespaceLabels, list_authorization_objects, list_gateways, list_peer_authentications,
    namespace_labels, pods_and_network_policies,
};
use kubeplugin::resources::{ISTIO_PROXY, is_running, phase, pod_name, sort_pods};
use kubeplugin::target::{PodTarget, Selection};
use kubeplugin::{Kube, KubeFlags, PluginError};
use meshpolicy::ambient_audit::{GatewayInfo, ServiceInfo};
use meshpolicy::envoy::{AuthzReport, analyze_config_dump_all};
use meshpolicy::{Cluster, ClusterOptions, Selector};

use crate::error::CheckError;
use crate::proxy;
use crate::report::{Finding, ProxyView, Severity};

/// Largest config dump read through exec.
pub const MAX_DUMP_BYTES: usize = 256 << 20;

/// One namespace, read once, as the model and the raw pods.
#[derive(Debug)]
pub struct NamespaceData {
    pub namespace: String,
    /// `None` when the namespace could not be read (forbidden).
    pub labels: Option<BTreeMap<String, String>>,
    /// Pods, Running and Ready first, then by name.
    pub pods: Vec<K8sPod>,
    pub cluster: Cluster,
    pub ages: HashMap<(String, String), i64>,
    pub invalid: Vec<String>,
    /// Findings about the cluster itself (e.g. no AuthorizationPolicy CRD).
    pub notes: Vec<Finding>,
    /// The objects `cluster` was built from (those the model accepted), for
    /// the `-f` / `--delete-f` overlay.
    pub objects: meshpolicy::Objects,
    /// What ambient pods need: the namespace's Services and every Gateway.
    pub ambient: AmbientData,
}

/// The objects that decide ambient enforcement besides policies: Services
/// (`istio.io/use-waypoint`) and Gateway API Gateways (waypoints).
#[derive(Debug, Default, Clone)]
pub struct AmbientData {
    pub services: Vec<ServiceInfo>,
    /// `None` when the cluster does not serve Gateways.
    pub gateways: Option<Vec<GatewayInfo>>,
    /// AuthorizationPolicies of waypoint namespaces other than the pod's and
    /// the root namespace (policies there attach to those waypoints).
    pub waypoint_policies: Vec<meshpolicy::AuthorizationPolicy>,
}

/// Reads the Services of `namespace` (empty when forbidden) and every Gateway.
pub async fn gather_ambient(kube: &Kube, namespace: &str) -> Result<AmbientData, PluginError> {
    use k8s_openapi::api::core::v1::Service;
    let api: kube::Api<Service> = kube::Api::namespaced(kube.client.clone(), namespace);
    let lp = kube::api::ListParams::default();
    let (services, gateways) = futures::join!(api.list(&lp), list_gateways(kube, namespace));
    let services = match services {
        Ok(l) => l.items,
        Err(kube::Error::Api(s)) if s.code == 403 => Vec::new(),
        Err(e) => {
            return Err(kube.err(e, &kubeplugin::ApiOp::new("list", "services", namespace)));
        }
    };
    let services = services
        .iter()
        .map(|s| ServiceInfo {
            namespace: namespace.to_string(),
            name: s.metadata.name.clone().unwrap_or_default(),
            labels: s.metadata.labels.clone().unwrap_or_default(),
            selector: s
                .spec
                .as_ref()
                .and_then(|sp| sp.selector.clone())
                .unwrap_or_default(),
        })
        .collect();
    let gateways = gateways?.map(|gs| gs.iter().filter_map(GatewayInfo::from_value).collect());
    Ok(AmbientData {
        services,
        gateways,
        waypoint_policies: Vec::new(),
    })
}

/// The AuthorizationPolicies of `namespace` (a waypoint's), skipping invalid ones.
pub async fn policies_of(
    kube: &Kube,
    namespace: &str,
) -> Result<Vec<meshpolicy::AuthorizationPolicy>, PluginError> {
    Ok(
        kubeplugin::policy_model::list_authorization_policies(kube, namespace)
            .await?
            .unwrap_or_default(),
    )
}

/// The running pod of waypoint `namespace/name` (label
/// `gateway.networking.k8s.io/gateway-name`), Ready first.
pub async fn waypoint_pod(
    kube: &Kube,
    namespace: &str,
    name: &str,
) -> Result<Option<K8sPod>, PluginError> {
    let api: kube::Api<K8sPod> = kube::Api::namespaced(kube.client.clone(), namespace);
    let lp = kube::api::ListParams::default().labels(&format!("{GATEWAY_NAME_LABEL}={name}"));
    let mut pods = match api.list(&lp).await {
        Ok(l) => l.items,
        Err(kube::Error::Api(s)) if s.code == 403 => return Ok(None),
        Err(e) => return Err(kube.err(e, &kubeplugin::ApiOp::new("list", "pods", namespace))),
    };
    sort_pods(&mut pods);
    Ok(pods.into_iter().find(is_running))
}

pub use meshpolicy::ambient::GATEWAY_NAME_LABEL;

fn age_seconds(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<i64> {
    let created = meta.creation_timestamp.as_ref()?;
    let now = k8s_openapi::jiff::Timestamp::now();
    Some(now.duration_since(created.0).as_secs().max(0))
}

/// Reads a namespace (and the root namespace's AuthorizationPolicies) into the model.
pub async fn gather(
    kube: &Kube,
    namespace: &str,
    root: &str,
) -> Result<NamespaceData, PluginError> {
    let labels = match namespace_labels(kube, namespace).await? {
        NamespaceLabels::Found(l) => Some(l),
        NamespaceLabels::Forbidden => None,
        NamespaceLabels::NotFound => {
            return Err(PluginError::NamespaceNotFound(namespace.to_string()));
        }
    };
    let (workloads, authz, root_authz, pas, root_pas) = futures::join!(
        pods_and_network_policies(kube, namespace),
        list_authorization_objects(kube, namespace),
        async {
            if root == namespace {
                Ok(Some(Vec::new()))
            } else {
                list_authorization_objects(kube, root).await
            }
        },
        list_peer_authentications(kube, namespace),
        async {
            if root == namespace {
                Ok(Some(Default::default()))
            } else {
                list_peer_authentications(kube, root).await
            }
        }
    );
    let (mut pods, netpols) = workloads?;
    sort_pods(&mut pods);
    let authz = authz?;
    let root_authz = root_authz?;
    let (pas, root_pas) = (pas?, root_pas?);

    let mut notes = Vec::new();
    let mut invalid = Vec::new();
    let mut cluster = Cluster::with_options(ClusterOptions {
        root_namespace: root.to_string(),
        ..ClusterOptions::default()
    });
    let mut objects = meshpolicy::Objects::default();
    if let Some(l) = &labels {
        let ns = meshpolicy::Namespace::new(namespace, l.clone());
        objects.namespaces.push(ns.clone());
        cluster.add_namespace(ns);
    }
    for p in &pods {
        match meshpolicy::Pod::from_k8s(p) {
            Ok(m) => {
                objects.pods.push(m.clone());
                cluster.add_pod(m);
            }
            Err(e) => invalid.push(e.to_string()),
        }
    }
    for np in &netpols {
        match cluster.add_network_policy(np) {
            Ok(_) => objects.network_policies.push(np.clone()),
            Err(e) => invalid.push(e.to_string()),
        }
    }
    for pa in pas.into_iter().chain(root_pas) {
        invalid.extend(pa.invalid);
        for p in pa.policies {
            cluster.add_peer_authentication(p);
        }
    }
    let mut ages = HashMap::new();
    if authz.is_none() {
        notes.push(Finding::new(
            Severity::Info,
            "no-authz-crd",
            "the cluster does not serve security.istio.io AuthorizationPolicy: is Istio installed?",
        ));
    }
    for obj in authz
        .into_iter()
        .flatten()
        .chain(root_authz.into_iter().flatten())
    {
        let ns = obj.metadata.namespace.clone().unwrap_or_default();
        let name = obj.metadata.name.clone().unwrap_or_default();
        if let Some(a) = age_seconds(&obj.metadata) {
            ages.insert((ns.clone(), name.clone()), a);
        }
        let parsed = serde_json::to_value(&obj)
            .and_then(serde_json::from_value::<meshpolicy::AuthorizationPolicy>);
        match parsed {
            Ok(ap) => {
                let ap = ap.with_default_namespace(&ns);
                match cluster.add_authorization_policy(&ap) {
                    Ok(_) => objects.authorization_policies.push(ap),
                    Err(e) => invalid.push(e.to_string()),
                }
            }
            Err(e) => invalid.push(format!("authorizationpolicy {ns}/{name}: {e}")),
        }
    }
    Ok(NamespaceData {
        namespace: namespace.to_string(),
        labels,
        pods,
        cluster,
        ages,
        invalid,
        notes,
        objects,
        ambient: AmbientData::default(),
    })
}

/// The pods to check, from the data already read: the one pod a target
/// means (kubeplugin's target resolution), or every pod matching `-l`.
pub async fn select_pods(
    kube: &Kube,
    data: &NamespaceData,
    pod: Option<&PodTarget>,
    selector: Option<&str>,
) -> Result<Vec<K8sPod>, PluginError> {
    let ns = &data.namespace;
    match pod {
        Some(target) => {
            let selection = target.selection(kube, ns).await?;
            let pods: Vec<K8sPod> = selection.filter(&data.pods).into_iter().cloned().collect();
            match pods.len() {
                0 => Err(selection.nothing(ns)),
                1 => Ok(pods),
                _ => Err(CheckError::SeveralPods {
                    what: match &selection {
                        Selection::Labels { describe, .. } => describe.clone(),
                        Selection::Name(n) => format!("pod/{n}"),
                    },
                    pods: pods.iter().map(|p| pod_name(p).to_string()).collect(),
                }
                .into()),
            }
        }
        None => {
            let sel = match selector {
                Some(s) => {
                    Selector::parse(s).map_err(|e| PluginError::usage(e.to_string(), None))?
                }
                None => Selector::everything(),
            };
            let pods: Vec<K8sPod> = data
                .pods
                .iter()
                .filter(|p| sel.matches(p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new())))
                .cloned()
                .collect();
            if pods.is_empty() {
                return Err(PluginError::NoPodMatches {
                    namespace: ns.clone(),
                    selector: selector
                        .map(|s| format!("selector {s}"))
                        .unwrap_or_else(|| "any pod".into()),
                });
            }
            Ok(pods)
        }
    }
}

/// How the proxy view is obtained.
#[derive(Debug, Clone)]
pub enum ProxyMode {
    /// Run istioctl (and read the config dump for what it hides, when possible).
    Istioctl(Istioctl),
    /// Read the config dump through exec. `istioctl_failed` holds why the
    /// istioctl the user named could not be used (it becomes a finding).
    Native {
        why: String,
        istioctl_failed: Option<String>,
    },
    /// A config dump file, already analysed.
    File { path: PathBuf, report: AuthzReport },
}

/// Reads and analyses a `--config-dump` file.
pub fn read_dump_file(path: &Path) -> Result<AuthzReport, CheckError> {
    let bytes = std::fs::read(path).map_err(|source| CheckError::ReadDump {
        path: path.to_path_buf(),
        source,
    })?;
    analyze_config_dump_all(&bytes).map_err(|e| CheckError::BadDump {
        origin: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Decides the mode: `--config-dump`, `--native`, else istioctl if found, else native.
pub fn proxy_mode(
    config_dump: Option<&Path>,
    native: bool,
    istioctl: &IstioctlArgs,
) -> Result<ProxyMode, PluginError> {
    if let Some(path) = config_dump {
        let report = read_dump_file(path)?;
        return Ok(ProxyMode::File {
            path: path.to_path_buf(),
            report,
        });
    }
    if native {
        return Ok(ProxyMode::Native {
            why: "--native".into(),
            istioctl_failed: None,
        });
    }
    match Istioctl::locate(istioctl) {
        Ok(tool) => Ok(ProxyMode::Istioctl(tool)),
        // An explicit --istioctl/ISTIOCTL that is missing is the user's
        // mistake: said in a warning finding, never silently replaced, but the
        // report is still made from the config dump.
        Err(e) if istioctl.istioctl.is_some() => Ok(ProxyMode::Native {
            why: "the istioctl named by --istioctl/ISTIOCTL was not found".into(),
            istioctl_failed: Some(e.to_string()),
        }),
        Err(_) => {
            tracing::info!("istioctl not found on PATH: reading the config dump through exec");
            Ok(ProxyMode::Native {
                why: "istioctl not found".into(),
                istioctl_failed: None,
            })
        }
    }
}

/// How long the config dump exec may take: a stalled or half-closed exec
/// stream must end the run with an error, not hang it.
pub const DUMP_EXEC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Fetches the sidecar's config dump through exec and analyses it.
pub async fn dump_through_exec(
    kube: &Kube,
    namespace: &str,
    pod: &str,
) -> Result<AuthzReport, PluginError> {
    let target = ExecTarget {
        namespace: namespace.to_string(),
        pod: pod.to_string(),
        container: ISTIO_PROXY.to_string(),
    };
    let argv: Vec<String> = ["pilot-agent", "request", "GET", "config_dump"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let fail = |reason: String| -> PluginError {
        CheckError::DumpExec {
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            reason,
        }
        .into()
    };
    let limits = ExecLimits {
        head: MAX_DUMP_BYTES,
        tail: 0,
    };
    let out = tokio::time::timeout(DUMP_EXEC_TIMEOUT, exec(kube, &target, &argv, limits))
        .await
        .map_err(|_| {
            fail(format!(
                "the exec stream gave no status within {}s (stalled or cut connection)",
                DUMP_EXEC_TIMEOUT.as_secs()
            ))
        })??;
    if out.command_not_found() {
        return Err(fail(
            "pilot-agent is not in the istio-proxy container".into(),
        ));
    }
    if out.exit_code != Some(0) {
        let stderr = String::from_utf8_lossy(&out.stderr.head).trim().to_string();
        let status = out.status_message.clone().unwrap_or_default();
        return Err(fail(if stderr.is_empty() { status } else { stderr }));
    }
    if out.stdout.truncated() {
        return Err(fail(format!(
            "the config dump is larger than {} MiB",
            MAX_DUMP_BYTES >> 20
        )));
    }
    analyze_config_dump_all(&out.stdout.head)
        .map_err(|e| fail(format!("its output is not a config dump: {e}")))
}

/// The proxy view of one pod, and the findings about how it was obtained.
///
/// Never fails: a source that fails (istioctl, the config dump through exec)
/// becomes a warning finding naming the cause and what was used instead, so
/// the API sections and whatever the other source gave are still reported.
#[derive(Debug, Clone)]
pub struct ProxyOutcome {
    pub view: ProxyView,
    pub findings: Vec<Finding>,
}

impl ProxyOutcome {
    fn clean(view: ProxyView) -> Self {
        ProxyOutcome {
            view,
            findings: Vec::new(),
        }
    }
}

/// The finding for an istioctl that could not be used, saying what was done instead.
fn istioctl_failed(cause: &str, fallback: &Result<AuthzReport, PluginError>) -> Finding {
    let instead = match fallback {
        Ok(_) => "used the config dump through exec instead".to_string(),
        Err(e) => format!(
            "the config dump through exec failed too ({e}), so what the sidecar loaded is unknown"
        ),
    };
    Finding::new(
        Severity::Warning,
        "istioctl-failed",
        format!("istioctl failed: {cause}; {instead}"),
    )
}

/// The view from the config dump through exec, or an unavailable view saying why.
fn dump_view(dump: Result<AuthzReport, PluginError>, detail: String) -> ProxyView {
    match dump {
        Ok(report) => proxy::from_config_dump(&report, detail),
        Err(e) => proxy::unavailable(format!("the config dump through exec failed: {e}")),
    }
}

/// Why istioctl's run could not be used, in one phrase (its own words quoted).
fn istioctl_cause(
    tool: &Istioctl,
    ran: Result<ToolOutput, PluginError>,
    name: &str,
    ns: &str,
) -> Result<ProxyView, String> {
    let out = match ran {
        Ok(o) => o,
        Err(PluginError::Tool { stderr, .. }) if proxy::is_unknown_command(&stderr) => {
            return Err(CheckError::IstioctlTooOld {
                detail: format!("{} says: {}", tool.path.display(), first_line(&stderr)),
            }
            .to_string());
        }
        Err(PluginError::Tool { code, stderr, .. }) => {
            let status = match code {
                Some(c) => format!("exit {c}"),
                None => "no exit status".to_string(),
            };
            let said = first_line(&stderr);
            return Err(if said.is_empty() {
                format!("{} ({status}, no message)", tool.path.display())
            } else {
                format!("{} ({status}): {said}", tool.path.display())
            });
        }
        Err(e) => return Err(e.to_string()),
    };
    proxy::from_istioctl(
        &out.stdout,
        format!("{} x authz check {name}.{ns}", tool.path.display()),
    )
    .map_err(|e| {
        format!(
            "{} printed something else than its table: {e}",
            tool.path.display()
        )
    })
}

/// The proxy view of one pod.
pub async fn proxy_view(
    kube: &Kube,
    flags: &KubeFlags,
    mode: &ProxyMode,
    pod: &K8sPod,
) -> ProxyOutcome {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod_name(pod).to_string();
    if let ProxyMode::File { path, report } = mode {
        return ProxyOutcome::clean(proxy::from_config_dump(
            report,
            format!("config dump file {}", path.display()),
        ));
    }
    if !kubeplugin::resources::has_sidecar(pod) {
        return ProxyOutcome::clean(proxy::unavailable(
            "the pod has no istio-proxy sidecar: no Envoy enforces AuthorizationPolicy for it",
        ));
    }
    if !is_running(pod) {
        return ProxyOutcome::clean(proxy::unavailable(format!(
            "the pod is {}: its sidecar is not running",
            phase(pod)
        )));
    }
    let dump_detail = |why: &str| {
        format!(
            "config dump through exec: pilot-agent request GET config_dump in istio-proxy ({why})"
        )
    };
    match mode {
        ProxyMode::File { .. } => unreachable!("handled above"),
        ProxyMode::Native {
            why,
            istioctl_failed: failed,
        } => {
            let dump = dump_through_exec(kube, &ns, &name).await;
            let findings = failed
                .iter()
                .map(|cause| istioctl_failed(cause, &dump))
                .collect();
            ProxyOutcome {
                view: dump_view(dump, dump_detail(why)),
                findings,
            }
        }
        ProxyMode::Istioctl(tool) => {
            let mut args: Vec<String> = vec![
                "x".into(),
                "authz".into(),
                "check".into(),
                format!("{name}.{ns}"),
            ];
            args.extend(Istioctl::connection_args(flags));
            let (ran, dump) = futures::join!(tool.run(&args), dump_through_exec(kube, &ns, &name));
            match istioctl_cause(tool, ran, &name, &ns) {
                Ok(view) => ProxyOutcome::clean(match dump {
                    Ok(d) => proxy::enrich(view, &d),
                    Err(e) => {
                        tracing::info!("config dump for the details istioctl hides: {e}");
                        view
                    }
                }),
                Err(cause) => {
                    tracing::info!("istioctl failed for {ns}/{name}: {cause}");
                    let finding = istioctl_failed(&cause, &dump);
                    ProxyOutcome {
                        view: dump_view(dump, dump_detail("istioctl failed")),
                        findings: vec![finding],
                    }
                }
            }
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}
