//! Reading istio-proxy logs from the cluster: which pods, how many at once, and
//! following them.
//!
//! Pods in scope are those with an `istio-proxy` container (regular or native
//! sidecar, waypoint, ztunnel) in the namespace, or every namespace with `-A`,
//! narrowed by `-l` or `--pod`; pods not started yet have no log and are
//! skipped. Ambient pods have no proxy of their own: when the namespaces in
//! scope hold ambient workloads (meshpolicy's dataplane mode), the ztunnel pods
//! of the root namespace (`app=ztunnel`, one per node) and the waypoint pods of
//! other namespaces are read too, keeping only the decisions whose destination
//! is in scope ([`Destinations`]). Without `-f`, at
//! most `--concurrency` logs are read at once and each is streamed line by line
//! through a [`Pairer`](crate::pairing::Pairer), so memory depends on the concurrency, not on log sizes.
//! With `-f`, every pod streams at once; the pod list is polled to start
//! streams for new pods and let streams of deleted pods end. Every request asks
//! for `timestamps=true`, and a stream that is cut is reopened from where it
//! stopped with `sinceTime` (see [`Resume`](crate::lines::Resume)), so no line is lost or repeated.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};
use kubeplugin::error::ApiOp;
use kubeplugin::resources::{
    ISTIO_PROXY, container_names, ensure_namespace, has_sidecar, pod_name,
};
use kubeplugin::{Kube, PluginError};

use crate::error::RbaclogError;
use crate::filter::Filters;
use crate::lines::{ReadLine, read_line_async};
use crate::pairing::{Stats, StreamId};
use crate::record::DecisionRecord;
use crate::stream::PodStream;

/// One pod whose istio-proxy log is read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProxyPod {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    /// `sidecar`, `gateway`, `waypoint` or `ztunnel`, from the pod's labels.
    pub proxy: &'static str,
    /// Set for a ztunnel or waypoint read on behalf of the namespaces in scope:
    /// only decisions about those destinations are kept. `None`: all of them.
    pub only_to: Option<Destinations>,
}

/// The destinations a shared proxy (ztunnel, a waypoint elsewhere) is read for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Destinations {
    pub namespaces: Vec<String>,
    /// With `-l`/`--pod`: only these pods (`NS/POD`); empty: any in `namespaces`.
    pub pods: Vec<String>,
}

impl Destinations {
    /// Whether a decision's destination (`NS/NAME`, see
    /// [`DecisionRecord::destination`]) is one of these; an unknown destination is not.
    pub fn keeps(&self, d: &DecisionRecord) -> bool {
        let Some(to) = d.destination() else {
            return false;
        };
        let ns = to.split_once('/').map_or(to.as_str(), |(ns, _)| ns);
        if !self.namespaces.iter().any(|n| n == ns) {
            return false;
        }
        self.pods.is_empty() || self.pods.contains(&to)
    }
}

/// The proxy kind of a pod with an istio-proxy container, from Istio's labels.
fn proxy_kind(p: &Pod) -> &'static str {
    let labels = p.metadata.labels.as_ref();
    let get = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    if get("app") == Some("ztunnel") {
        "ztunnel"
    } else if get("gateway.istio.io/managed") == Some("istio.io-mesh-controller")
        || get("istio.io/waypoint-for").is_some()
        || get("gateway.networking.k8s.io/gateway-class-name")
            == Some(meshpolicy::ambient::WAYPOINT_CLASS)
    {
        "waypoint"
    } else if get("gateway.networking.k8s.io/gateway-name").is_some()
        || matches!(get("istio"), Some("ingressgateway" | "egressgateway"))
    {
        "gateway"
    } else {
        "sidecar"
    }
}

/// What to select.
#[derive(Debug, Clone)]
pub struct Scope {
    /// None with -A.
    pub namespace: Option<String>,
    /// More namespaces, read like `namespace` (`kubectl rbaclog ns1 ns2`).
    pub more_namespaces: Vec<String>,
    pub selector: Option<String>,
    pub pods: Vec<String>,
}

impl Scope {
    fn describe(&self) -> String {
        let mut s = match &self.namespace {
            Some(ns) if self.more_namespaces.is_empty() => format!("namespace {ns}"),
            Some(ns) => format!("namespaces {ns}, {}", self.more_namespaces.join(", ")),
            None => "any namespace".to_string(),
        };
        if let Some(sel) = &self.selector {
            s.push_str(&format!(" matching {sel}"));
        }
        s
    }
}

/// What to ask the API for on the first connection of each stream.
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub since: Option<Duration>,
    pub since_time: Option<Timestamp>,
    pub tail: Option<i64>,
}

fn started(p: &Pod) -> bool {
    let phase = kubeplugin::resources::phase(p);
    phase != "Pending" && phase != "Unknown"
}

fn target_of(p: &Pod) -> ProxyPod {
    ProxyPod {
        namespace: p.metadata.namespace.clone().unwrap_or_default(),
        pod: pod_name(p).to_string(),
        uid: p.metadata.uid.clone().unwrap_or_default(),
        proxy: proxy_kind(p),
        only_to: None,
    }
}

/// Lists the pods in scope with a sidecar (started ones only).
pub async fn list_targets(kube: &Kube, scope: &Scope) -> Result<Vec<ProxyPod>, RbaclogError> {
    let mut out = list_in(kube, scope, scope.namespace.clone()).await?;
    for ns in &scope.more_namespaces {
        out.extend(list_in(kube, scope, Some(ns.clone())).await?);
    }
    if scope.namespace.is_some() {
        out.extend(shared_proxies(kube, scope, &out).await);
    }
    out.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
    Ok(out)
}

/// The ambient pods in scope (`NS/POD`): pods without a sidecar that
/// meshpolicy's dataplane mode puts in ambient, by their or their namespace's label.
async fn ambient_pods(kube: &Kube, scope: &Scope) -> Vec<String> {
    let mut out = Vec::new();
    let ns_api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(kube.client.clone());
    for ns in scope.namespace.iter().chain(&scope.more_namespaces) {
        let ns_labels = match ns_api.get(ns).await {
            Ok(n) => n.metadata.labels.unwrap_or_default(),
            Err(e) => {
                tracing::info!(namespace = %ns, error = %e, "cannot read the namespace's labels");
                Default::default()
            }
        };
        let pods: Vec<Pod> = if scope.pods.is_empty() {
            let mut lp = ListParams::default();
            if let Some(sel) = &scope.selector {
                lp = lp.labels(sel);
            }
            match Api::<Pod>::namespaced(kube.client.clone(), ns)
                .list(&lp)
                .await
            {
                Ok(l) => l.items,
                Err(_) => continue,
            }
        } else {
            let mut pods = Vec::new();
            for name in &scope.pods {
                if let Ok(t) = kubeplugin::target::PodTarget::parse(name, Some(ns))
                    && let Ok(p) = kubeplugin::target::resolve_pods(kube, ns, &t).await
                {
                    pods.extend(p);
                }
            }
            pods
        };
        for p in &pods {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            if meshpolicy::ambient::dataplane_mode(&labels, has_sidecar(p), &ns_labels)
                == meshpolicy::ambient::DataplaneMode::Ambient
            {
                out.push(format!("{ns}/{}", pod_name(p)));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The ztunnels (root namespace, `app=ztunnel`) and the waypoints of other
/// namespaces, when the namespaces in scope hold ambient workloads; each keeps
/// only decisions about destinations in scope. Best effort: what cannot be
/// listed is left out (logged at info).
async fn shared_proxies(kube: &Kube, scope: &Scope, read: &[ProxyPod]) -> Vec<ProxyPod> {
    let ambient = ambient_pods(kube, scope).await;
    if ambient.is_empty() {
        return Vec::new();
    }
    let only_to = Destinations {
        namespaces: scope
            .namespace
            .iter()
            .chain(&scope.more_namespaces)
            .cloned()
            .collect(),
        pods: if scope.selector.is_some() || !scope.pods.is_empty() {
            ambient
        } else {
            Vec::new()
        },
    };
    let mut found: Vec<Pod> = Vec::new();
    let ztunnels = Api::<Pod>::namespaced(kube.client.clone(), crate::live::ROOT_NAMESPACE)
        .list(&ListParams::default().labels(meshpolicy::ambient::ZTUNNEL_SELECTOR))
        .await;
    match ztunnels {
        Ok(l) => found.extend(l.items),
        Err(e) => tracing::info!(error = %e, "cannot list the ztunnel pods"),
    }
    match Api::<Pod>::all(kube.client.clone())
        .list(&ListParams::default().labels("gateway.networking.k8s.io/gateway-name"))
        .await
    {
        Ok(l) => found.extend(l.items.into_iter().filter(|p| proxy_kind(p) == "waypoint")),
        Err(e) => tracing::info!(error = %e, "cannot list waypoint pods"),
    }
    found
        .iter()
        .filter(|p| has_sidecar(p) && started(p) && p.metadata.deletion_timestamp.is_none())
        .map(|p| ProxyPod {
            only_to: Some(only_to.clone()),
            ..target_of(p)
        })
        .filter(|t| {
            !read
                .iter()
                .any(|r| r.namespace == t.namespace && r.pod == t.pod)
        })
        .collect()
}

/// The pods with a sidecar in one namespace (`None`: every namespace).
async fn list_in(
    kube: &Kube,
    scope: &Scope,
    namespace: Option<String>,
) -> Result<Vec<ProxyPod>, RbaclogError> {
    let ns_label = namespace.clone().unwrap_or_else(|| "(all)".into());
    if !scope.pods.is_empty() {
        let ns = namespace.clone().unwrap_or_else(|| kube.namespace.clone());
        let mut out: Vec<ProxyPod> = Vec::new();
        // `--pod` takes every target form (pod/, deployment/, svc/, ...): kubeplugin resolves it.
        let mut pods = Vec::new();
        for name in &scope.pods {
            let target =
                kubeplugin::target::PodTarget::parse(name, Some(&ns)).map_err(PluginError::from)?;
            pods.extend(kubeplugin::target::resolve_pods(kube, &ns, &target).await?);
        }
        for p in pods {
            let name = pod_name(&p).to_string();
            if out.iter().any(|t| t.pod == name) {
                continue;
            }
            if !has_sidecar(&p) {
                let mut containers = container_names(&p);
                if let Some(init) = p.spec.as_ref().and_then(|s| s.init_containers.as_ref()) {
                    containers.extend(init.iter().map(|c| format!("{} (init)", c.name)));
                }
                return Err(RbaclogError::NoSidecar {
                    namespace: ns,
                    pod: name.clone(),
                    containers,
                });
            }
            out.push(target_of(&p));
        }
        return Ok(out);
    }
    let api: Api<Pod> = match &namespace {
        Some(ns) => Api::namespaced(kube.client.clone(), ns),
        None => Api::all(kube.client.clone()),
    };
    let mut lp = ListParams::default();
    if let Some(sel) = &scope.selector {
        lp = lp.labels(sel);
    }
    let pods = api
        .list(&lp)
        .await
        .map_err(|e| kube.err(e, &ApiOp::new("list", "pods", &ns_label)))?
        .items;
    let mut out: Vec<ProxyPod> = pods
        .iter()
        .filter(|p| has_sidecar(p) && started(p) && p.metadata.deletion_timestamp.is_none())
        .map(target_of)
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
    Ok(out)
}

/// Like [`list_targets`], but an empty result is an error (after checking the namespace).
pub async fn require_targets(kube: &Kube, scope: &Scope) -> Result<Vec<ProxyPod>, RbaclogError> {
    let targets = list_targets(kube, scope).await?;
    if targets.is_empty() {
        let mut injection = None;
        for ns in scope.namespace.iter().chain(&scope.more_namespaces) {
            ensure_namespace(kube, ns).await?;
            injection = injection_of(kube, ns, scope.selector.as_deref()).await;
        }
        return Err(RbaclogError::NoSidecars {
            scope: scope.describe(),
            namespace: scope.namespace.clone(),
            injection,
        });
    }
    Ok(targets)
}

/// Whether the namespace is labelled for injection and how many pods are in
/// scope, for the advice of [`RbaclogError::NoSidecars`]; `None` when either
/// cannot be read (the advice is then the general one).
async fn injection_of(
    kube: &Kube,
    namespace: &str,
    selector: Option<&str>,
) -> Option<crate::error::Injection> {
    let ns_api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(kube.client.clone());
    let labels = ns_api.get(namespace).await.ok()?.metadata.labels?;
    let ambient = labels
        .get(meshpolicy::ambient::DATAPLANE_MODE_LABEL)
        .is_some_and(|m| m == "ambient");
    let labelled = meshpolicy::Namespace::new(namespace, labels).injection_enabled();
    let mut lp = ListParams::default();
    if let Some(sel) = selector {
        lp = lp.labels(sel);
    }
    let pods = Api::<Pod>::namespaced(kube.client.clone(), namespace)
        .list(&lp)
        .await
        .ok()?
        .items
        .len();
    Some(crate::error::Injection {
        labelled,
        pods,
        ambient,
    })
}

/// How one pod's reading ended.
#[derive(Debug, Default)]
pub struct PodResult {
    pub stats: Stats,
    /// Set when the pod could not be read (it went away, or kept failing).
    pub warning: Option<String>,
}

/// Consecutive failed connections before a non-followed pod is given up.
const MAX_RETRIES: u32 = 5;

fn backoff(failures: u32) -> Duration {
    Duration::from_millis((100u64 << failures.min(6)).min(5000))
}

/// Whether the pod still exists as the same pod (not deleted, not replaced).
async fn still_there(kube: &Kube, t: &ProxyPod) -> Result<bool, PluginError> {
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), &t.namespace);
    match api.get(&t.pod).await {
        Ok(p) => Ok(p.metadata.uid.as_deref().unwrap_or_default() == t.uid
            && p.metadata.deletion_timestamp.is_none()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(kube.err(e, &ApiOp::new("get", "pods", &t.namespace).named(&t.pod))),
    }
}

/// Reads one pod's istio-proxy log through a [`Pairer`](crate::pairing::Pairer), handing matching
/// decisions to `sink`. With `follow`, keeps reading until the pod goes away;
/// a cut stream is reopened from where it stopped in both modes.
pub async fn read_pod(
    kube: &Kube,
    t: &ProxyPod,
    window: &Window,
    follow: bool,
    filters: &Filters,
    sink: &mut (dyn FnMut(DecisionRecord) + Send),
) -> Result<PodResult, RbaclogError> {
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), &t.namespace);
    let mut stream = PodStream::new(StreamId {
        namespace: Some(t.namespace.clone()),
        pod: Some(t.pod.clone()),
        file: None,
        proxy: Some(t.proxy),
    });
    let mut out = Vec::new();
    let mut failures = 0u32;
    let mut buf = Vec::with_capacity(4096);
    let mut result = PodResult::default();
    let idle = Duration::from_millis(1500);
    let emit = |out: &mut Vec<DecisionRecord>, sink: &mut (dyn FnMut(DecisionRecord) + Send)| {
        for mut d in out.drain(..) {
            filters.enrich(&mut d);
            if filters.matches(&d) && t.only_to.as_ref().is_none_or(|o| o.keeps(&d)) {
                sink(d);
            }
        }
    };
    loop {
        let mut lp = LogParams {
            container: Some(ISTIO_PROXY.to_string()),
            follow,
            timestamps: true,
            ..LogParams::default()
        };
        match stream.since_time() {
            Some(since) => lp.since_time = Some(since),
            None => {
                lp.since_seconds = window.since.map(|d| d.as_secs().max(1) as i64);
                lp.since_time = window.since_time;
                lp.tail_lines = window.tail;
            }
        }
        stream.reconnected();
        let op = ApiOp::new("get", "pods/log", &t.namespace).named(&t.pod);
        let mut reader = match api.log_stream(&t.pod, &lp).await {
            Ok(r) => r,
            Err(e) => {
                let err = kube.err(e, &op);
                match err {
                    PluginError::Forbidden { .. } | PluginError::Unreachable { .. } => {
                        return Err(err.into());
                    }
                    PluginError::NotFound { .. } | PluginError::NamespaceNotFound(_) => {
                        result.warning = Some(format!("pod {}/{} is gone", t.namespace, t.pod));
                        break;
                    }
                    other => {
                        failures += 1;
                        if (!follow && failures > MAX_RETRIES)
                            || (follow && !still_there(kube, t).await.unwrap_or(true))
                        {
                            result.warning = Some(format!(
                                "could not read the istio-proxy log of {}/{}: {other}",
                                t.namespace, t.pod
                            ));
                            break;
                        }
                        tokio::time::sleep(backoff(failures)).await;
                        continue;
                    }
                }
            }
        };
        let mut progressed = false;
        let clean = loop {
            let r = if follow {
                tokio::select! {
                    r = read_line_async(&mut reader, &mut buf) => r,
                    _ = tokio::time::sleep(idle) => {
                        stream.flush_idle(idle, &mut out);
                        emit(&mut out, sink);
                        continue;
                    }
                }
            } else {
                read_line_async(&mut reader, &mut buf).await
            };
            match r {
                Ok(ReadLine::Complete) => {
                    progressed |= stream.line(&buf, &mut out);
                    buf.clear();
                    if !out.is_empty() {
                        emit(&mut out, sink);
                    }
                }
                // A line without its newline was cut: it comes again after reconnecting.
                Ok(ReadLine::Partial) => {
                    buf.clear();
                    break false;
                }
                Ok(ReadLine::Eof) => break true,
                Err(e) => {
                    tracing::info!(pod = %t.pod, error = %e, "log stream cut; reconnecting");
                    buf.clear();
                    break false;
                }
            }
        };
        if progressed {
            failures = 0;
        }
        if clean && !follow {
            break;
        }
        if clean {
            // A followed stream ended: the pod went away, or the server closed it.
            match still_there(kube, t).await {
                Ok(false) => break,
                Ok(true) => {}
                Err(e @ PluginError::Forbidden { .. }) => return Err(e.into()),
                Err(_) => {}
            }
        } else {
            failures += 1;
            if !follow && failures > MAX_RETRIES {
                result.warning = Some(format!(
                    "the istio-proxy log of {}/{} kept being cut; results may be incomplete",
                    t.namespace, t.pod
                ));
                break;
            }
        }
        tokio::time::sleep(backoff(failures)).await;
    }
    result.stats = stream.finish(&mut out);
    emit(&mut out, sink);
    Ok(result)
}

/// Reads every target once (no follow), `concurrency` at a time; returns the
/// matching decisions, the summed stats and per-pod warnings.
pub async fn read_all(
    kube: &Kube,
    targets: &[ProxyPod],
    window: &Window,
    filters: &Filters,
    concurrency: usize,
    on_decision: &mut dyn FnMut(DecisionRecord),
) -> Result<(Stats, Vec<String>), RbaclogError> {
    let mut results = futures::stream::iter(targets.iter())
        .map(|t| async move {
            let mut found = Vec::new();
            let mut sink = |d: DecisionRecord| found.push(d);
            let r = read_pod(kube, t, window, false, filters, &mut sink).await;
            r.map(|r| (r, found))
        })
        .buffer_unordered(concurrency.max(1));
    let mut stats = Stats::default();
    let mut warnings = Vec::new();
    let mut failed = 0usize;
    while let Some(r) = results.next().await {
        let (r, found) = r?;
        stats.add(&r.stats);
        if let Some(w) = r.warning {
            failed += 1;
            warnings.push(w);
        }
        for d in found {
            on_decision(d);
        }
    }
    if failed == targets.len() && !targets.is_empty() {
        return Err(RbaclogError::NoLogRead {
            pods: targets.len(),
            first: warnings.first().cloned().unwrap_or_default(),
        });
    }
    Ok((stats, warnings))
}

/// Follows every pod in scope until interrupted, starting streams for pods that
/// appear and letting streams of gone pods end; `on_decision` sees each
/// matching decision as soon as it is complete.
pub async fn follow_all(
    kube: &Kube,
    scope: &Scope,
    initial: Vec<ProxyPod>,
    window: &Window,
    filters: &Filters,
    poll: Duration,
    on_decision: &mut dyn FnMut(DecisionRecord) -> Result<(), RbaclogError>,
) -> Result<(), RbaclogError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<DecisionRecord>();
    let (err_tx, mut err_rx) = tokio::sync::mpsc::unbounded_channel::<RbaclogError>();
    let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let spawn = |t: ProxyPod, w: Window| {
        let kube = kube.clone();
        let filters = filters.clone();
        let tx = tx.clone();
        let err_tx = err_tx.clone();
        tokio::spawn(async move {
            let mut sink = move |d: DecisionRecord| {
                let _ = tx.send(d);
            };
            match read_pod(&kube, &t, &w, true, &filters, &mut sink).await {
                Ok(r) => {
                    if let Some(w) = r.warning {
                        tracing::info!("{w}");
                    }
                    tracing::info!(pod = %t.pod, "stopped following (pod gone)");
                }
                Err(e) => {
                    let _ = err_tx.send(e);
                }
            }
        })
    };
    for t in initial {
        running.insert(t.uid.clone(), spawn(t, window.clone()));
    }
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let result = loop {
        tokio::select! {
            Some(d) = rx.recv() => {
                if let Err(e) = on_decision(d) {
                    break Err(e);
                }
            }
            Some(e) = err_rx.recv() => break Err(e),
            _ = ticker.tick() => {
                running.retain(|_, h| !h.is_finished());
                match list_targets(kube, scope).await {
                    Ok(now) => {
                        for t in now {
                            if !running.contains_key(&t.uid) {
                                tracing::info!(pod = %t.pod, namespace = %t.namespace, "following new pod");
                                // A new pod's log is read from its start.
                                running.insert(t.uid.clone(), spawn(t, Window::default()));
                            }
                        }
                    }
                    Err(e) => tracing::info!(error = %e, "listing pods failed; will retry"),
                }
            }
        }
    };
    for (_, h) in running {
        h.abort();
    }
    result
}

#[cfg(test)]
mod proxy_tests {
    use super::*;

    fn pod(labels: &[(&str, &str)]) -> Pod {
        let mut p = Pod::default();
        p.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        p
    }

    #[test]
    fn proxy_kind_from_istio_labels() {
        assert_eq!(proxy_kind(&pod(&[("app", "web")])), "sidecar");
        assert_eq!(proxy_kind(&pod(&[("istio", "ingressgateway")])), "gateway");
        assert_eq!(
            proxy_kind(&pod(&[("gateway.networking.k8s.io/gateway-name", "gw")])),
            "gateway"
        );
        assert_eq!(
            proxy_kind(&pod(&[
                ("gateway.istio.io/managed", "istio.io-mesh-controller"),
                ("gateway.networking.k8s.io/gateway-name", "waypoint")
            ])),
            "waypoint"
        );
        assert_eq!(
            proxy_kind(&pod(&[
                (
                    "gateway.networking.k8s.io/gateway-class-name",
                    "istio-waypoint"
                ),
                ("gateway.networking.k8s.io/gateway-name", "waypoint")
            ])),
            "waypoint"
        );
        assert_eq!(proxy_kind(&pod(&[("app", "ztunnel")])), "ztunnel");
    }

    #[test]
    fn a_shared_proxy_keeps_only_destinations_in_scope() {
        let d = |to: Option<&str>| DecisionRecord {
            namespace: Some("istio-system".into()),
            pod: Some("ztunnel-x".into()),
            proxy: Some("ztunnel"),
            to: to.map(str::to_string),
            ..DecisionRecord::default()
        };
        let ns = Destinations {
            namespaces: vec!["amb-2".into()],
            pods: vec![],
        };
        assert!(ns.keeps(&d(Some("amb-2/web-0"))));
        assert!(!ns.keeps(&d(Some("amb-1/client-0"))));
        // An address the API could not resolve says nothing about the namespace.
        assert!(!ns.keeps(&d(Some("10.0.0.9:80"))));
        assert!(!ns.keeps(&d(None)));
        let pods = Destinations {
            namespaces: vec!["amb-2".into()],
            pods: vec!["amb-2/web-0".into()],
        };
        assert!(pods.keeps(&d(Some("amb-2/web-0"))));
        assert!(!pods.keeps(&d(Some("amb-2/web-1"))));
    }
}
