//! Resolving the command line into concrete probes: which pod and container
//! each probe runs from, and which URL it requests.
//!
//! Errors that make the whole request meaningless (namespace not found, no pod
//! matches, no Service in TO, container not found) stop here with their own
//! message and exit 3 before any probe runs. In `--matrix` mode a namespace
//! without a usable pod does not sink the other 89 pairs: its probes become
//! `exec-failed` rows saying why.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubeplugin::resources::{ensure_namespace, namespaces_by_selector};
use kubeplugin::target::PodQuery;
use kubeplugin::{Kube, PluginError};

use crate::cli::{Cli, Mode, url_port};
use crate::ports::{PortSpec, ProbeKind};
use crate::probe::{Request, Source, ToolCache, is_systemic};
use crate::record::{FromRef, ToRef};
use crate::verdict::HintContext;
use meshpolicy::protocol::PortProtocol;

/// Why a source could not be used (matrix mode only).
#[derive(Debug, Clone)]
pub struct SourceFailure {
    pub detail: String,
    pub hint: Option<String>,
}

/// One probe to run.
#[derive(Debug, Clone)]
pub struct PlannedProbe {
    pub source: Result<Source, SourceFailure>,
    pub from: FromRef,
    pub to: ToRef,
    pub request: Request,
    pub ctx: HintContext,
    /// The Service port requested (None for `--url`): what `--explain` and
    /// `--predict` evaluate against the policies.
    pub target: Option<ServiceTarget>,
    /// Ready endpoints of the Service, read before probing (None: unknown or
    /// `--url`); 0 makes the probe `no-endpoints` without running it.
    pub ready_endpoints: Option<usize>,
}

/// Every probe, plus the namespaces (matrix order).
#[derive(Debug, Clone, Default)]
pub struct ProbePlan {
    pub probes: Vec<PlannedProbe>,
    pub namespaces: Vec<String>,
}

/// A Service port to request.
#[derive(Debug, Clone)]
pub struct ServiceTarget {
    pub namespace: String,
    pub service: String,
    pub port: u16,
    pub workload: String,
    /// The Service's pod selector (None: a Service without selector).
    pub selector: Option<BTreeMap<String, String>>,
    /// The Service port's `targetPort` (None: same as `port`).
    pub target_port: Option<IntOrString>,
    /// What the probe speaks to the port ([`ProbeKind::for_port`]).
    pub kind: ProbeKind,
}

/// Resolves the source pod and container in `namespace` ([`crate::source`]).
pub async fn resolve_source(
    kube: &Kube,
    namespace: &str,
    query: &PodQuery,
    container: Option<&str>,
    look: &Look,
) -> Result<Source, PluginError> {
    let s =
        crate::source::choose(kube, namespace, query, container, &look.tools, look.enabled).await?;
    match &look.debug_image {
        Some(image) if s.looked && s.client.is_none() => {
            crate::source::debug_container(kube, &s, image, &look.tools).await
        }
        _ => Ok(s),
    }
}

/// Whether sources are looked at (not for `--predict`), with one cache per run.
#[derive(Debug, Clone, Default)]
pub struct Look {
    pub enabled: bool,
    pub tools: ToolCache,
    /// `--debug-image`: an ephemeral container when no pod has a client.
    pub debug_image: Option<String>,
}

/// The TCP ports of `services` (only `port`, by number or name, if given),
/// each with its probe (`force_http`: `--http`).
pub fn targets_of(
    namespace: &str,
    services: &[Service],
    port: Option<&PortSpec>,
    force_http: bool,
) -> Vec<ServiceTarget> {
    let mut out = Vec::new();
    for svc in services {
        let name = svc.metadata.name.clone().unwrap_or_default();
        let Some(spec) = &svc.spec else { continue };
        let workload = spec
            .selector
            .as_ref()
            .and_then(|s| s.get("app").cloned())
            .unwrap_or_else(|| name.clone());
        // A headless Service's name resolves to its pods' addresses, so any
        // port of theirs is reachable through it: `--port N` that the Service
        // does not declare (headless Services often declare none) still
        // probes N there.
        let headless = spec.cluster_ip.as_deref() == Some("None");
        if headless
            && let Some(PortSpec::Number(n)) = port
            && !spec
                .ports
                .iter()
                .flatten()
                .any(|p| u16::try_from(p.port).ok() == Some(*n))
        {
            out.push(ServiceTarget {
                namespace: namespace.to_string(),
                service: name.clone(),
                port: *n,
                workload: workload.clone(),
                selector: spec.selector.clone(),
                target_port: None,
                kind: ProbeKind::for_port(PortProtocol::Unknown, *n, force_http),
            });
            continue;
        }
        for p in spec.ports.iter().flatten() {
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            if proto != "TCP" {
                continue;
            }
            let Ok(number) = u16::try_from(p.port) else {
                continue;
            };
            if port.is_some_and(|want| !want.matches(number, p.name.as_deref())) {
                continue;
            }
            out.push(ServiceTarget {
                namespace: namespace.to_string(),
                service: name.clone(),
                port: number,
                workload: workload.clone(),
                selector: spec.selector.clone(),
                target_port: p.target_port.clone(),
                kind: ProbeKind::for_port(
                    PortProtocol::of_service_port(p.name.as_deref(), p.app_protocol.as_deref()),
                    number,
                    force_http,
                ),
            });
        }
    }
    out
}

async fn resolve_targets(
    kube: &Kube,
    cli: &Cli,
    namespace: &str,
    names: &[String],
) -> Result<Vec<ServiceTarget>, PluginError> {
    let port = cli.port.as_ref();
    let services = kubeplugin::resources::find_services(kube, namespace, names).await?;
    let targets = targets_of(namespace, &services, port, cli.http);
    if targets.is_empty() {
        return Err(match port {
            Some(p) => PluginError::usage(
                format!("no Service in namespace {namespace} has TCP port {p}"),
                Some("drop --port, or probe an address directly with --url".to_string()),
            ),
            None => PluginError::NoServices {
                namespace: namespace.to_string(),
            },
        });
    }
    Ok(targets)
}

fn request_for(cli: &Cli, url: String, kind: ProbeKind) -> Request {
    Request {
        kind,
        url,
        method: cli.method.to_ascii_uppercase(),
        headers: cli.headers.clone(),
        timeout: cli.timeout,
        outbound_cluster: None,
    }
}

/// The URL of a Service port, with the scheme of its probe (a TCP probe
/// sends an empty gopher selector: just `\r\n`).
fn service_url(t: &ServiceTarget, cli: &Cli) -> String {
    let path = if t.kind == ProbeKind::Tcp {
        "/"
    } else {
        &cli.path
    };
    format!(
        "{}://{}.{}.svc.{}:{}{path}",
        t.kind.scheme(),
        t.service,
        t.namespace,
        cli.cluster_domain,
        t.port
    )
}

fn from_ref(source: &Result<Source, SourceFailure>, namespace: &str) -> FromRef {
    match source {
        Ok(s) => FromRef {
            namespace: s.namespace.clone(),
            pod: Some(s.pod.clone()),
            container: Some(s.container.clone()),
            tool: s
                .looked
                .then(|| s.client.map_or("none", |c| c.label()).to_string()),
            sidecar: Some(s.sidecar),
        },
        Err(_) => FromRef {
            namespace: namespace.to_string(),
            ..Default::default()
        },
    }
}

fn probe_to(
    cli: &Cli,
    source: &Result<Source, SourceFailure>,
    from_ns: &str,
    t: &ServiceTarget,
) -> PlannedProbe {
    let url = service_url(t, cli);
    PlannedProbe {
        source: source.clone(),
        from: from_ref(source, from_ns),
        to: ToRef {
            namespace: Some(t.namespace.clone()),
            service: Some(t.service.clone()),
            port: Some(t.port),
            url: url.clone(),
        },
        ctx: HintContext {
            from_namespace: from_ns.to_string(),
            to_namespace: Some(t.namespace.clone()),
            workload: Some(t.workload.clone()),
            port: Some(t.port),
            host: format!("{}.{}.svc.{}", t.service, t.namespace, cli.cluster_domain),
            cluster_domain: cli.cluster_domain.clone(),
            destination_ambient: false,
            destination_waypoint: None,
        },
        request: Request {
            outbound_cluster: (t.kind == ProbeKind::Tcp).then(|| {
                meshpolicy::envoy::stats::outbound_cluster_name(
                    &t.service,
                    &t.namespace,
                    &cli.cluster_domain,
                    t.port,
                )
            }),
            ..request_for(cli, url, t.kind)
        },
        target: Some(t.clone()),
        ready_endpoints: None,
    }
}

/// Builds the plan for a validated mode.
pub async fn build(kube: &Kube, cli: &Cli, mode: &Mode) -> Result<ProbePlan, PluginError> {
    let query = PodQuery {
        pod: cli.pod.clone(),
        selector: cli.selector.clone(),
    };
    let mut plan = ProbePlan::default();
    let look = Look {
        enabled: !cli.predict,
        tools: ToolCache::default(),
        debug_image: cli.debug_image.clone(),
    };
    match mode {
        Mode::Url { from, url } => {
            let source =
                Ok(resolve_source(kube, from, &query, cli.container.as_deref(), &look).await?);
            let host = url
                .split("://")
                .nth(1)
                .and_then(|r| r.split(['/', '?', '#']).next())
                .unwrap_or("")
                .to_string();
            plan.probes.push(PlannedProbe {
                from: from_ref(&source, from),
                source,
                to: ToRef {
                    namespace: None,
                    service: None,
                    port: url_port(url),
                    url: url.clone(),
                },
                ctx: HintContext {
                    from_namespace: from.clone(),
                    to_namespace: None,
                    workload: None,
                    port: url_port(url),
                    host,
                    cluster_domain: cli.cluster_domain.clone(),
                    destination_ambient: false,
                    destination_waypoint: None,
                },
                request: request_for(cli, url.clone(), ProbeKind::of_url(url)),
                target: None,
                ready_endpoints: None,
            });
            plan.namespaces = vec![from.clone()];
        }
        Mode::Pairs { from, to } => {
            let source =
                Ok(resolve_source(kube, from, &query, cli.container.as_deref(), &look).await?);
            // Each TO namespace once, in the order given.
            let mut to_namespaces: Vec<&String> = Vec::new();
            for t in to {
                if !to_namespaces.contains(&&t.namespace) {
                    to_namespaces.push(&t.namespace);
                }
            }
            for t in to {
                let only = match &t.service {
                    Some(s) => std::slice::from_ref(s),
                    None => &cli.services[..],
                };
                for target in resolve_targets(kube, cli, &t.namespace, only).await? {
                    plan.probes.push(probe_to(cli, &source, from, &target));
                }
            }
            if cli.both {
                let back = resolve_targets(kube, cli, from, &[]).await?;
                for ns in &to_namespaces {
                    let rev =
                        Ok(resolve_source(kube, ns, &PodQuery::default(), None, &look).await?);
                    for t in &back {
                        plan.probes.push(probe_to(cli, &rev, ns, t));
                    }
                }
            }
            plan.namespaces = std::iter::once(from.clone())
                .chain(to_namespaces.into_iter().cloned())
                .collect();
        }
        Mode::Matrix {
            namespaces,
            namespace_selector,
            pod_selector,
        } => {
            let mut names = namespaces.clone();
            if let Some(sel) = namespace_selector {
                names = namespaces_by_selector(kube, sel).await?;
                if names.len() < 2 {
                    return Err(PluginError::usage(
                        format!(
                            "--matrix needs at least two namespaces; selector {sel} matches {}",
                            names.len()
                        ),
                        Some("check with `kubectl get namespaces --show-labels`".to_string()),
                    ));
                }
            }
            let query = PodQuery {
                pod: cli.pod.clone(),
                selector: pod_selector.clone(),
            };
            let mut sources = Vec::new();
            let mut targets = Vec::new();
            for ns in &names {
                ensure_namespace(kube, ns).await?;
                let source = match resolve_source(kube, ns, &query, cli.container.as_deref(), &look)
                    .await
                {
                    Ok(s) => Ok(s),
                    Err(e) if is_systemic(&e) => return Err(e),
                    // -l is the user's choice of source pods: one that picks
                    // nothing is a mistake in the command, not a failed probe.
                    Err(PluginError::NoPodMatches { namespace, .. }) if pod_selector.is_some() => {
                        return Err(PluginError::usage(
                            format!(
                                "-l {} selects no pod in namespace {namespace}",
                                pod_selector.as_deref().unwrap_or_default()
                            ),
                            Some(
                                "-l selects the source pod in every --matrix namespace; check `kubectl get pods -A --show-labels`, or leave the namespace out".to_string(),
                            ),
                        ));
                    }
                    Err(e) => Err(SourceFailure {
                        detail: e.to_string(),
                        hint: e.hint(),
                    }),
                };
                sources.push(source);
                let t = match resolve_targets(kube, cli, ns, &[]).await {
                    Ok(t) => t,
                    Err(e) if is_systemic(&e) => return Err(e),
                    Err(e) => {
                        tracing::info!(namespace = %ns, error = %e, "no targets");
                        Vec::new()
                    }
                };
                targets.push(t);
            }
            for (i, from) in names.iter().enumerate() {
                for (j, _) in names.iter().enumerate() {
                    if i == j && cli.no_same_namespace {
                        continue;
                    }
                    for t in &targets[j] {
                        plan.probes.push(probe_to(cli, &sources[i], from, t));
                    }
                }
            }
            plan.namespaces = names;
        }
    }
    count_endpoints(kube, &mut plan).await;
    mark_ambient(kube, &mut plan).await;
    Ok(plan)
}

/// Marks probes whose destination namespace is in ambient mode (read once per
/// namespace), so a reset is read as ztunnel's L4 denial, and, for those,
/// the waypoint the destination Service uses (meshpolicy's binding rules over
/// the Service's and namespace's labels and the Gateways), so a 403 is read
/// as that waypoint's. A pod's own `istio.io/dataplane-mode` label is not
/// read here; an unreadable namespace counts as not ambient, an unreadable
/// Service or Gateway list as no waypoint.
async fn mark_ambient(kube: &Kube, plan: &mut ProbePlan) {
    use k8s_openapi::api::core::v1::{Namespace, Service};
    use meshpolicy::ambient::{DataplaneMode, Waypoint, WaypointUse, dataplane_mode};
    use meshpolicy::ambient_audit::{GatewayInfo, ServiceInfo, service_waypoint};
    let mut labels_of: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut gateways: Option<Vec<GatewayInfo>> = None;
    let mut waypoints: BTreeMap<(String, String), Option<Waypoint>> = BTreeMap::new();
    for p in &mut plan.probes {
        let Some(ns) = p.ctx.to_namespace.clone() else {
            continue;
        };
        if !labels_of.contains_key(&ns) {
            let api: kube::Api<Namespace> = kube::Api::all(kube.client.clone());
            let labels = match api.get(&ns).await {
                Ok(n) => n.metadata.labels.unwrap_or_default(),
                Err(_) => BTreeMap::new(),
            };
            labels_of.insert(ns.clone(), labels);
        }
        let ns_labels = &labels_of[&ns];
        p.ctx.destination_ambient =
            dataplane_mode(&BTreeMap::new(), false, ns_labels) == DataplaneMode::Ambient;
        let Some(t) = p.target.as_ref().filter(|_| p.ctx.destination_ambient) else {
            continue;
        };
        let key = (t.namespace.clone(), t.service.clone());
        if !waypoints.contains_key(&key) {
            if gateways.is_none() {
                let listed = kubeplugin::policy_model::list_gateways(kube, &ns).await;
                gateways = Some(
                    listed
                        .ok()
                        .flatten()
                        .unwrap_or_default()
                        .iter()
                        .filter_map(GatewayInfo::from_value)
                        .collect(),
                );
            }
            let api: kube::Api<Service> = kube::Api::namespaced(kube.client.clone(), &t.namespace);
            let svc_labels = match api.get(&t.service).await {
                Ok(s) => s.metadata.labels.unwrap_or_default(),
                Err(_) => BTreeMap::new(),
            };
            let svc = ServiceInfo {
                namespace: t.namespace.clone(),
                name: t.service.clone(),
                labels: svc_labels,
                selector: t.selector.clone().unwrap_or_default(),
            };
            let w = match service_waypoint(&svc, ns_labels, gateways.as_deref().unwrap_or(&[])) {
                WaypointUse::Uses { waypoint, .. } => Some(waypoint),
                _ => None,
            };
            waypoints.insert(key.clone(), w);
        }
        p.ctx.destination_waypoint = waypoints[&key].clone();
    }
}

/// Reads, once per Service with a selector, how many ready endpoints it has.
async fn count_endpoints(kube: &Kube, plan: &mut ProbePlan) {
    let mut counts: BTreeMap<(String, String), Option<usize>> = BTreeMap::new();
    for p in &mut plan.probes {
        let Some(t) = p.target.as_ref().filter(|t| t.selector.is_some()) else {
            continue;
        };
        let key = (t.namespace.clone(), t.service.clone());
        if !counts.contains_key(&key) {
            let n = crate::endpoints::ready_count(kube, &t.namespace, &t.service).await;
            counts.insert(key.clone(), n);
        }
        p.ready_endpoints = counts[&key];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_take_tcp_ports_and_the_app_label() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "svc-np-test-nginx-2", "namespace": "np-test-2"},
            "spec": {
                "selector": {"app": "np-test-nginx-2"},
                "ports": [
                    {"name": "http-web", "port": 80, "targetPort": 80},
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"name": "alt", "port": 8080, "protocol": "TCP"}
                ]
            }
        }))
        .unwrap();
        let t = targets_of("np-test-2", std::slice::from_ref(&svc), None, false);
        assert_eq!(t.iter().map(|t| t.port).collect::<Vec<_>>(), [80, 8080]);
        assert_eq!(t[0].workload, "np-test-nginx-2");
        assert_eq!((t[0].kind, t[1].kind), (ProbeKind::Http, ProbeKind::Tcp));
        assert_eq!(t[0].target_port, Some(IntOrString::Int(80)));
        assert_eq!(
            t[0].selector
                .as_ref()
                .and_then(|s| s.get("app"))
                .map(String::as_str),
            Some("np-test-nginx-2")
        );
        let t = targets_of(
            "np-test-2",
            std::slice::from_ref(&svc),
            Some(&PortSpec::Number(8080)),
            false,
        );
        assert_eq!(t.len(), 1);
        let t = targets_of(
            "np-test-2",
            &[svc],
            Some(&PortSpec::Name("http-web".into())),
            false,
        );
        assert_eq!(t.iter().map(|t| t.port).collect::<Vec<_>>(), [80]);
    }
}
