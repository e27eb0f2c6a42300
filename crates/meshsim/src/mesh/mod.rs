//! The mesh: traffic between pods, Istio sidecars (real Envoys) and their logs.
//!
//! When `curl` or `wget` runs in a container, [`Mesh`] (the cluster's
//! [`Network`]) carries the request the way a cluster with Calico and Istio
//! would: DNS and kube-proxy ([`flow`]), NetworkPolicy (evaluated with
//! crates/meshpolicy, [`decide`]), then, when the destination has a sidecar,
//! that pod's real Envoy ([`sidecar`]): PeerAuthentication, RBAC, the
//! router to the application ([`app`]) all happen in Envoy, which writes the
//! `istio-proxy` log itself (RBAC debug lines, local replies, access log).
//! Destinations without a sidecar answer from [`app`] directly, after their
//! node's ztunnel when they are in ambient mode (L4 AuthorizationPolicy,
//! STRICT PeerAuthentication, [`decide`]). A Service (or pod) bound to a
//! waypoint is reached through the waypoint pod's real Envoy (its
//! listener from [`crate::mesh::sidecar::waypoint`], the policies attached to it by
//! `targetRefs`), then [`relay`] plays the destination's ztunnel (deciding on
//! the waypoint's identity) and the application. The source
//! pod's sidecar stays simulated: its outbound access log line and its local
//! replies (connect timeout, no healthy upstream) are written by meshsim.
//! Envoy's log levels start from the pod's annotations ([`sidecar::loglevel`]) and are
//! changed through Envoy's own `/logging`.
//!
//! Propagation: AuthorizationPolicy and PeerAuthentication changes reach a
//! sidecar `--propagation-delay` (scaled by `--time-scale`) after they are
//! written; until then the sidecar decides with what it had ([`timeline`]).
//! A sidecar that starts later gets the state of its start time. NetworkPolicy
//! is enforced by the CNI on the node, which programs it well within a
//! second on real clusters; meshsim applies it at once. Pod and namespace
//! label changes also apply at once.
//!
//! Public API: [`Mesh::send_request`] (what a client in a pod gets),
//! [`Mesh::sync_sidecar`] / [`Mesh::admin_address`] (a sidecar's Envoy,
//! brought up to date), [`Mesh::sidecar_policies`], [`Mesh::fleet`].

pub mod app;
pub mod appserver;
pub mod decide;
pub mod flow;
pub mod grpcauthz;
pub mod outbound;
pub mod relay;
pub mod sidecar;
pub mod timeline;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use meshpolicy::AuthorizationPolicy;
use rand::Rng;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use crate::shared::Shared;
use crate::store::Event;
use crate::store::resources;
use crate::traffic::{Container, NetOutcome, NetRequest, Network};
use sidecar::{Fleet, lock};

pub use decide::{DecidingLayer, PathDecision};
use timeline::{DelayedKind, ObjectKey, Timeline};

/// Default `--propagation-delay` (simulated time).
pub const DEFAULT_PROPAGATION_DELAY: Duration = Duration::from_secs(2);

/// The sidecar's container name.
pub use crate::mesh::sidecar::PROXY_CONTAINER;

/// Settings of the mesh simulation.
#[derive(Debug, Clone, Copy)]
pub struct MeshOptions {
    /// How long (simulated time) policy changes take to reach sidecars.
    pub propagation_delay: Duration,
    /// Multiplier applied to simulated waits.
    pub time_scale: f64,
    /// Whether NetworkPolicy is enforced (a CNI without NetworkPolicy support: false).
    pub cni_enforces_network_policy: bool,
}

impl Default for MeshOptions {
    fn default() -> Self {
        Self {
            propagation_delay: DEFAULT_PROPAGATION_DELAY,
            time_scale: 1.0,
            cni_enforces_network_policy: true,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    timeline: Timeline,
    /// Extra time added to the clock (tests move time forward with it).
    clock_offset: Duration,
    /// When each pod (ns, name) became Ready: (uid, time; None = before watching).
    ready_at: HashMap<(String, String), (String, Option<Instant>)>,
}

/// The mesh simulation of one cluster.
pub struct Mesh {
    app: Weak<Shared>,
    options: MeshOptions,
    state: Mutex<State>,
    /// resourceVersion of the last store event observed.
    observed: AtomicU64,
    /// The real Envoy sidecars (and waypoints).
    fleet: Arc<Fleet>,
    /// The relay behind each waypoint's Envoy, by waypoint pod (ns, name).
    relays: Mutex<HashMap<(String, String), Arc<relay::Relay>>>,
    /// The simulated outbound side's upstream connections, per source pod.
    outbound: outbound::Ledger,
    /// Itself, for tasks it spawns.
    me: Weak<Mesh>,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The store's resources whose changes reach sidecars with a delay.
const DELAYED: [(resources::ResKey, DelayedKind); 2] = [
    (
        flow::AUTHORIZATIONPOLICIES,
        DelayedKind::AuthorizationPolicy,
    ),
    (flow::PEERAUTHENTICATIONS, DelayedKind::PeerAuthentication),
];

/// (namespace, name) of a store object.
fn name_of(obj: &Value) -> (String, String) {
    let meta = &obj["metadata"];
    let field = |k: &str| meta[k].as_str().unwrap_or("").to_string();
    (field("namespace"), field("name"))
}

fn object_key(kind: DelayedKind, obj: &Value) -> ObjectKey {
    let (ns, name) = name_of(obj);
    (kind, ns, name)
}

fn has_sidecar(p: &Value) -> bool {
    decide::model_pod(p).has_sidecar
}

/// Time as Envoy's access log prints it (`2025-07-22T17:55:52.085Z`).
fn access_time() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

impl Mesh {
    /// Creates the mesh for `app`, with a real Envoy (`envoy`) in every
    /// sidecar-injected pod and waypoint, makes it the cluster's network and
    /// starts watching policy and pod changes (needs a tokio runtime).
    pub fn install_with_envoy(
        app: &Arc<Shared>,
        options: MeshOptions,
        envoy: std::path::PathBuf,
    ) -> Result<Arc<Mesh>, sidecar::SidecarError> {
        let fleet = Arc::new(Fleet::new(envoy, app.cancel.clone())?);
        let mesh = Arc::new_cyclic(|me| Mesh {
            app: Arc::downgrade(app),
            options,
            state: Mutex::new(State::default()),
            observed: AtomicU64::new(0),
            fleet,
            relays: Mutex::new(HashMap::new()),
            outbound: outbound::Ledger::default(),
            me: me.clone(),
        });
        let mut launch = Vec::new();
        let rx = {
            let store = lock(&app.store);
            let mut st = lock(&mesh.state);
            for (key, kind) in DELAYED {
                for o in store.list(key, None) {
                    st.timeline.seed(object_key(kind, o), o.clone());
                }
            }
            for p in store
                .list(resources::PODS, None)
                .filter(|p| flow::pod_ready(p))
            {
                if has_sidecar(p) {
                    launch.push(p.clone());
                }
                let uid = p["metadata"]["uid"].as_str().unwrap_or("").to_string();
                st.ready_at.insert(name_of(p), (uid, None));
            }
            mesh.observed
                .store(store.resource_version(), Ordering::SeqCst);
            store.subscribe()
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(watch(Arc::downgrade(&mesh), rx, app.cancel.clone()));
        } else {
            tracing::warn!("meshsim: no async runtime; policy changes will not be observed");
        }
        if let Ok(mut n) = app.network.write() {
            *n = mesh.clone();
        }
        for p in launch {
            mesh.launch(p);
        }
        Ok(mesh)
    }

    /// The real sidecars.
    pub fn fleet(&self) -> &Arc<Fleet> {
        &self.fleet
    }

    /// Stops every sidecar Envoy and waits for them to exit.
    pub async fn stop_sidecars(&self) {
        self.fleet.stopped().await;
    }

    /// The propagation delay in real time (scaled).
    pub fn real_propagation_delay(&self) -> Duration {
        self.real(self.options.propagation_delay)
    }

    /// A simulated duration in real time (`--time-scale`).
    fn real(&self, simulated: Duration) -> Duration {
        let s = self.options.time_scale;
        if s.is_finite() && s > 0.0 {
            simulated.mul_f64(s)
        } else {
            Duration::ZERO
        }
    }

    /// Moves the mesh's clock forward (tests: observe propagation without waiting).
    pub fn advance_clock(&self, by: Duration) {
        lock(&self.state).clock_offset += by;
    }

    fn now(&self, st: &State) -> Instant {
        Instant::now() + st.clock_offset
    }

    /// Waits until every change written to the store so far has been
    /// observed (recorded with its time), then returns true; false if that
    /// did not happen within `max_polls` polls of 5 ms. Tests call it before
    /// [`Mesh::advance_clock`] so a change is never stamped after the jump.
    pub async fn settle(&self, max_polls: u32) -> bool {
        for _ in 0..max_polls {
            let Some(app) = self.app.upgrade() else {
                return false;
            };
            let target = lock(&app.store).resource_version();
            if self.observed.load(Ordering::SeqCst) >= target {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    fn observe(&self, ev: &Event) {
        let mut st = lock(&self.state);
        self.observed.fetch_max(ev.rv, Ordering::SeqCst);
        let now = self.now(&st);
        if let Some((_, kind)) = DELAYED.iter().find(|(k, _)| *k == ev.key) {
            let key = object_key(*kind, &ev.object);
            let obj = (ev.kind != "DELETED").then(|| (*ev.object).clone());
            let window = self.real_propagation_delay() + Duration::from_secs(1);
            st.timeline.record(key, now, obj, window);
            drop(st);
            self.refresh_later();
        } else if ev.key == resources::PODS {
            let p = &ev.object;
            let id = name_of(p);
            let uid = p["metadata"]["uid"].as_str().unwrap_or("").to_string();
            if ev.kind == "DELETED" {
                self.fleet.stop(&id.0, &id.1);
                lock(&self.relays).remove(&id);
                st.ready_at.remove(&id);
            } else if flow::pod_ready(p) && st.ready_at.get(&id).is_none_or(|(u, _)| *u != uid) {
                st.ready_at.insert(id, (uid, Some(now)));
                if has_sidecar(p) {
                    drop(st);
                    self.launch((**p).clone());
                }
            }
        }
    }

    /// Re-reads every policy after the watch feed lagged.
    fn resync(&self) {
        let Some(app) = self.app.upgrade() else {
            return;
        };
        let store = lock(&app.store);
        self.observed
            .fetch_max(store.resource_version(), Ordering::SeqCst);
        let mut st = lock(&self.state);
        let now = self.now(&st);
        let window = self.real_propagation_delay() + Duration::from_secs(1);
        let mut seen = std::collections::HashSet::new();
        for (key, kind) in DELAYED {
            for o in store.list(key, None) {
                let k = object_key(kind, o);
                seen.insert(k.clone());
                if st.timeline.latest(&k).as_deref() != Some(o) {
                    st.timeline.record(k, now, Some(o.clone()), window);
                }
            }
        }
        for k in st.timeline.keys() {
            if !seen.contains(&k) && st.timeline.latest(&k).is_some() {
                st.timeline.record(k, now, None, window);
            }
        }
    }

    /// The time whose policy state the sidecar of `ns/pod` decides with.
    fn view_time(&self, st: &State, ns: &str, pod: &str) -> Option<Instant> {
        let lagged = self.now(st).checked_sub(self.real_propagation_delay());
        let started = st
            .ready_at
            .get(&(ns.to_string(), pod.to_string()))
            .and_then(|(_, t)| *t);
        match (lagged, started) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// The AuthorizationPolicies and PeerAuthentications the proxy of
    /// `ns/pod` (None: ztunnel) has received by now.
    fn received(&self, proxy: Option<(&str, &str)>) -> (Vec<Arc<Value>>, Vec<Arc<Value>>) {
        let st = lock(&self.state);
        let at = match proxy {
            Some((ns, pod)) => self.view_time(&st, ns, pod),
            None => self.now(&st).checked_sub(self.real_propagation_delay()),
        };
        (
            st.timeline.view(DelayedKind::AuthorizationPolicy, at),
            st.timeline.view(DelayedKind::PeerAuthentication, at),
        )
    }

    fn pod(&self, ns: &str, pod: &str) -> Option<Value> {
        let app = self.app.upgrade()?;
        let store = lock(&app.store);
        store.get(resources::PODS, ns, pod).cloned()
    }

    /// The AuthorizationPolicies the sidecar of `ns/pod` has received by now
    /// (after the propagation delay) and that apply to that pod (its
    /// namespace and the root namespace, selector matching its labels),
    /// sorted by namespace and name. Empty when the pod has no sidecar.
    pub fn sidecar_policies(&self, ns: &str, pod: &str) -> Vec<AuthorizationPolicy> {
        let Some(p) = self.pod(ns, pod) else {
            return Vec::new();
        };
        if !has_sidecar(&p) {
            return Vec::new();
        }
        let model = decide::model_pod(&p);
        let (authz, _) = self.received(Some((ns, pod)));
        authorization_policies(&authz)
            .into_iter()
            .filter(|ap| {
                meshpolicy::CompiledAuthz::compile(ap)
                    .is_ok_and(|c| c.applies_to(&model, decide::ROOT_NAMESPACE))
            })
            .collect()
    }

    /// The AuthorizationPolicies the waypoint whose pod is `ns/pod` has
    /// received by now (after the propagation delay) and enforces for
    /// traffic to `service` (meshpolicy::ambient::waypoint_policies).
    pub fn waypoint_policies(
        &self,
        ns: &str,
        pod: &str,
        service: Option<(&str, &str)>,
    ) -> Vec<AuthorizationPolicy> {
        let Some(p) = self.pod(ns, pod) else {
            return Vec::new();
        };
        let Some(name) = p["metadata"]["labels"][meshpolicy::ambient::GATEWAY_NAME_LABEL].as_str()
        else {
            return Vec::new();
        };
        let waypoint = meshpolicy::ambient::Waypoint {
            namespace: ns.to_string(),
            name: name.to_string(),
            waypoint_for: meshpolicy::ambient::WaypointFor::Service,
        };
        let (authz, _) = self.received(Some((ns, pod)));
        let all = authorization_policies(&authz);
        meshpolicy::ambient::waypoint_policies(&all, &waypoint, service, decide::ROOT_NAMESPACE)
    }

    /// Decides a request without writing any log (tests, explanations).
    pub fn evaluate(&self, from: &Container, request: &NetRequest) -> Option<PathDecision> {
        self.run(from, request).map(|(_, v)| v)
    }

    /// The facts of a request and the decision on it, nothing logged yet.
    fn run(&self, from: &Container, request: &NetRequest) -> Option<(flow::Facts, PathDecision)> {
        let app = self.app.upgrade()?;
        let facts = {
            let store = lock(&app.store);
            let (host, port) = (&request.host, request.port);
            flow::gather(&store, &from.namespace, &from.pod, host, port)?
        };
        let mut rng = rand::rng();
        let ids = decide::Ids {
            request_id: crate::store::new_uid(),
            client_port: rng.random_range(32768..61000),
            upstream_port: rng.random_range(32768..61000),
            start_time: access_time(),
        };
        // The policies ztunnel has received (after the propagation delay,
        // as sidecars get them).
        let (authz, ztunnel_peer_authentications) = if may_be_ambient(&facts) {
            self.received(None)
        } else {
            Default::default()
        };
        let input = decide::DecisionInput {
            ztunnel_policies: &authorization_policies(&authz),
            ztunnel_peer_authentications: &ztunnel_peer_authentications,
            facts: &facts,
            container: &from.container,
            request,
            enforce_network_policy: self.options.cni_enforces_network_policy,
            ids,
        };
        let v = decide::decide(&input);
        tracing::debug!(
            "meshsim: {}/{} -> {}:{}: {}",
            from.namespace,
            from.pod,
            request.host,
            request.port,
            v.reason
        );
        Some((facts, v))
    }

    /// Writes the simulated source sidecar's outbound access log line (the
    /// destination's lines come from its real Envoy) and the application's.
    fn emit(&self, facts: &flow::Facts, v: &PathDecision) {
        let Some(app) = self.app.upgrade() else {
            return;
        };
        if let Some(ev) = v.source.as_ref()
            && let Some(entry) = &ev.access
            && facts.access_log
        {
            let line = entry.format_text();
            let delay = self.real(ev.access_after);
            let handle = tokio::runtime::Handle::try_current()
                .ok()
                .filter(|_| !delay.is_zero());
            match handle {
                Some(h) => {
                    let logs = app.logs.clone();
                    let (ns, pod) = (ev.namespace.clone(), ev.pod.clone());
                    let cancel = app.cancel.clone();
                    h.spawn(async move {
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => logs.append(&ns, &pod, PROXY_CONTAINER, &line),
                            _ = cancel.cancelled() => {}
                        }
                    });
                }
                None => app
                    .logs
                    .append(&ev.namespace, &ev.pod, PROXY_CONTAINER, &line),
            }
        }
        if let Some((ns, pod, container, line)) = &v.app_log {
            app.logs.append(ns, pod, container, line);
        }
        if let Some((ns, pod, line)) = &v.ztunnel_log {
            app.logs.append(ns, pod, PROXY_CONTAINER, line);
        }
    }
}

/// The real sidecars: launching, configuring and sending traffic through them.
impl Mesh {
    /// Starts the Envoy of a pod that just became Ready (once per pod uid).
    fn launch(&self, pod: Value) {
        let fleet = &self.fleet;
        let Some(mesh) = self.me.upgrade() else {
            return;
        };
        let Ok(_rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("meshsim: no async runtime; sidecars cannot start");
            return;
        };
        let (ns, name) = name_of(&pod);
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
        let Some((proxy, paths)) = fleet.register(&ns, &name, &uid) else {
            return;
        };
        let app = self.app.clone();
        let f2 = fleet.clone();
        fleet.spawn(async move {
            if let Err(e) = std::fs::create_dir_all(&paths.dir) {
                tracing::error!("meshsim: {}: {e}", paths.dir.display());
                return;
            }
            let waypoint = crate::store::controllers::is_waypoint_pod(&pod);
            if waypoint {
                match relay::Relay::start(app.clone(), proxy.stop_token()).await {
                    Ok(r) => {
                        lock(&mesh.relays).insert((ns.clone(), name.clone()), r);
                    }
                    Err(e) => {
                        tracing::error!("meshsim: waypoint relay for {ns}/{name}: {e}");
                        return;
                    }
                }
            }
            // A waypoint has no application behind it.
            let (mut ports, listening) = if waypoint {
                (Vec::new(), Vec::new())
            } else {
                (decide::tcp_ports(&pod), decide::listening_ports(&pod))
            };
            ports.extend(&listening);
            ports.retain(|p| !decide::SIDECAR_PORTS.contains(p));
            let mut app_ports = std::collections::BTreeMap::new();
            for port in ports {
                let local = if listening.contains(&port) {
                    let stop = proxy.stop_token();
                    appserver::serve(app.clone(), ns.clone(), name.clone(), port, stop).ok()
                } else {
                    None
                };
                app_ports.insert(port, local);
            }
            let Some(cfg) = mesh.sidecar_config(&pod, &app_ports, &paths) else {
                return;
            };
            f2.cds()
                .set(&ns, &name, mesh.provider_clusters(&f2, &cfg.ext_authz));
            let written = sidecar::write_atomic(&paths.bootstrap, &cfg.bootstrap).and_then(|()| {
                sidecar::write_atomic(
                    &paths.lds,
                    &sidecar::config::resource_file(1, &cfg.listeners),
                )
            });
            if let Err(e) = written {
                tracing::error!("meshsim: writing {}: {e}", paths.dir.display());
                return;
            }
            {
                let mut w = proxy.config.lock().await;
                w.version = 1;
                w.listeners = cfg.listeners;
                w.app_ports = app_ports;
            }
            let (level, component_levels) = sidecar::log_args(&pod["metadata"]["annotations"]);
            let launch = sidecar::proxy::Launch {
                envoy: f2.envoy().to_path_buf(),
                bootstrap: paths.bootstrap.clone(),
                admin_path: paths.admin.clone(),
                level,
                component_levels,
            };
            let Some(logs) = app.upgrade().map(|a| a.logs.clone()) else {
                return;
            };
            let app2 = app.clone();
            let restarted: Arc<dyn Fn(&sidecar::Proxy) + Send + Sync> =
                Arc::new(move |p: &sidecar::Proxy| {
                    if let Some(a) = app2.upgrade() {
                        bump_restart_count(&a, &p.namespace, &p.pod, &p.uid);
                    }
                });
            drop(mesh);
            sidecar::proxy::supervise(proxy, launch, logs, f2.shutdown_token(), restarted).await;
            let _ = std::fs::remove_dir_all(&paths.dir);
        });
    }

    /// The configuration the sidecar of `pod` should have now.
    fn sidecar_config(
        &self,
        pod: &Value,
        app_ports: &std::collections::BTreeMap<u16, Option<u16>>,
        paths: &sidecar::Paths,
    ) -> Option<sidecar::config::EnvoyConfig> {
        if crate::store::controllers::is_waypoint_pod(pod) {
            return self.waypoint_config(pod, paths, None);
        }
        let fleet = &self.fleet;
        let app = self.app.upgrade()?;
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
        let name = pod["metadata"]["name"].as_str().unwrap_or("");
        let (services, access_log, ext_authz) = {
            let store = lock(&app.store);
            let services: Vec<Value> = store.list(resources::SERVICES, Some(ns)).cloned().collect();
            (
                services,
                flow::access_log_enabled(&store),
                sidecar::config::ext_authz_options(&store),
            )
        };
        let policies = self.sidecar_policies(ns, name);
        let (_, peer_authentications) = self.received(Some((ns, name)));
        let identity = identity(fleet, pod)?;
        Some(sidecar::config::envoy_config(
            &sidecar::config::SidecarInput {
                pod,
                model: &decide::model_pod(pod),
                services: &services,
                policies: &policies,
                peer_authentications: &peer_authentications,
                app_ports,
                identity: &identity,
                ca_pem: fleet.pki().ca_pem(),
                access_log,
                lds_path: &paths.lds,
                ext_authz: &ext_authz,
                xds_port: fleet.xds_port(),
            },
        ))
    }

    /// The configuration the waypoint Envoy of `pod` should have now for
    /// traffic to `service` (None: the policies attached to the waypoint
    /// itself and its class, what its admin shows between requests).
    fn waypoint_config(
        &self,
        pod: &Value,
        paths: &sidecar::Paths,
        service: Option<(&str, &str)>,
    ) -> Option<sidecar::config::EnvoyConfig> {
        let fleet = &self.fleet;
        let app = self.app.upgrade()?;
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
        let name = pod["metadata"]["name"].as_str().unwrap_or("");
        let access_log = flow::access_log_enabled(&lock(&app.store));
        let relay = lock(&self.relays)
            .get(&(ns.to_string(), name.to_string()))?
            .port;
        let policies = self.waypoint_policies(ns, name, service);
        let identity = identity(fleet, pod)?;
        Some(sidecar::waypoint::waypoint_config(
            &sidecar::waypoint::WaypointInput {
                pod,
                policies: &policies,
                identity: &identity,
                ca_pem: fleet.pki().ca_pem(),
                access_log,
                lds_path: &paths.lds,
                relay: std::net::SocketAddr::from(([127, 0, 0, 1], relay)),
            },
        ))
    }

    /// Sends a request through a waypoint's real Envoy: its listener brought
    /// up to date for the request's Service, its relay set to play the rest
    /// of the path; one request at a time per waypoint.
    async fn through_waypoint(
        &self,
        fw: &decide::Forward,
        hop: &decide::WaypointHop,
        dial: impl FnOnce(std::net::SocketAddr) -> sidecar::client::Dial,
        request: &NetRequest,
    ) -> Option<(sidecar::client::Dial, Sent)> {
        let fleet = &self.fleet;
        let (proxy, pod_json, paths) = self.running_proxy(fleet, &fw.namespace, &fw.pod).await?;
        let mut w = proxy.config.lock().await;
        let service = hop.service.as_ref().map(|(n, s)| (n.as_str(), s.as_str()));
        if let Some(cfg) = self.waypoint_config(&pod_json, &paths, service) {
            fleet.apply(&proxy, &mut w, cfg.listeners).await;
        }
        let addr = proxy.addresses()?;
        let relay = lock(&self.relays)
            .get(&(fw.namespace.clone(), fw.pod.clone()))
            .cloned()?;
        relay.set(Some(hop.clone()));
        let d = dial(addr.inbound);
        // A waypoint that does not answer in time is reset by the client.
        let out = send_on(&d, request)
            .await
            .or(Ok(Err(sidecar::httpc::HttpError::Reset)));
        relay.set(None);
        drop(w);
        Some((d, out))
    }

    /// The clusters of CUSTOM providers' services, each leading to where
    /// meshsim answers for that service ([`appserver::serve_provider`]).
    fn provider_clusters(
        &self,
        fleet: &Fleet,
        ups: &[meshpolicy::istio::listener::ExtAuthzUpstream],
    ) -> Vec<Value> {
        ups.iter()
            .filter_map(|up| {
                let (app, host) = (self.app.clone(), up.host.clone());
                let port = fleet.provider_port(&up.host, up.port, up.grpc, |stop| {
                    if up.grpc {
                        grpcauthz::serve(app, host, up.port, stop)
                    } else {
                        appserver::serve_provider(app, host, up.port, stop)
                    }
                })?;
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                Some(sidecar::config::provider_cluster(up, addr))
            })
            .collect()
    }

    /// The running proxy of `ns/pod`, its pod and its files.
    async fn running_proxy(
        &self,
        fleet: &Fleet,
        ns: &str,
        pod: &str,
    ) -> Option<(Arc<sidecar::Proxy>, Value, sidecar::Paths)> {
        let proxy = match fleet.proxy(ns, pod) {
            Some(p) => p,
            // The pod may have turned Ready in the store a moment before the
            // mesh saw it (and launched its Envoy): catch up first.
            None => {
                self.settle(400).await;
                fleet.proxy(ns, pod)?
            }
        };
        proxy.ready(sidecar::READY_LIMIT).await?;
        let pod_json = self.pod(ns, pod)?;
        let paths = sidecar::Paths::new(proxy.dir.clone());
        Some((proxy, pod_json, paths))
    }

    /// Brings the sidecar of `ns/pod` up to date with what it has received
    /// by now and returns its addresses once Envoy runs the new listener.
    pub async fn sync_sidecar(&self, ns: &str, pod: &str) -> Option<sidecar::Addresses> {
        let fleet = &self.fleet;
        let (proxy, pod_json, paths) = self.running_proxy(fleet, ns, pod).await?;
        let mut w = proxy.config.lock().await;
        if let Some(cfg) = self.sidecar_config(&pod_json, &w.app_ports, &paths) {
            // CUSTOM providers' clusters first, so the listener calling them
            // finds them.
            let clusters = self.provider_clusters(fleet, &cfg.ext_authz);
            let names: Vec<String> = cfg.ext_authz.iter().map(|u| u.cluster.clone()).collect();
            fleet.cds().set(ns, pod, clusters);
            fleet.apply(&proxy, &mut w, cfg.listeners).await;
            if w.ext_authz_clusters != names {
                // Once per change: a sidecar that never gets them was warned
                // about and fails closed (403, `UAEX`) rather than stalling
                // every request.
                fleet.await_clusters(&proxy, &names).await;
                w.ext_authz_clusters = names;
            }
        }
        drop(w);
        proxy.addresses()
    }

    /// The admin address of the Envoy of `ns/pod`, its configuration
    /// brought up to date first (an admin reader sees what the sidecar has
    /// received by now, as it would with istiod pushing).
    pub async fn admin_address(&self, ns: &str, pod: &str) -> Option<std::net::SocketAddr> {
        self.sync_sidecar(ns, pod).await.map(|a| a.admin)
    }

    /// After the propagation delay, brings every sidecar up to date (so its
    /// admin shows the change even when no request arrives).
    fn refresh_later(&self) {
        let Some(mesh) = self.me.upgrade() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let delay = self.real_propagation_delay() + Duration::from_millis(20);
        let cancel = self.app.upgrade().map(|a| a.cancel.clone());
        let Some(cancel) = cancel else { return };
        let weak = Arc::downgrade(&mesh);
        drop(mesh);
        rt.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = cancel.cancelled() => return,
            }
            let Some(m) = weak.upgrade() else { return };
            for p in m.fleet.proxies() {
                let _ = m.sync_sidecar(&p.namespace, &p.pod).await;
            }
        });
    }

    /// Sends a request through the destination's real Envoy.
    async fn forward(&self, fw: &decide::Forward, request: &NetRequest) -> NetOutcome {
        let captured = fw.mtls.is_some();
        let failed = |body: &str| {
            if captured {
                NetOutcome::Http {
                    after: fw.latency,
                    status: 503,
                    headers: vec![
                        ("content-length".into(), body.len().to_string()),
                        ("content-type".into(), "text/plain".into()),
                        ("date".into(), app::http_date()),
                        ("server".into(), "envoy".into()),
                    ],
                    body: body.as_bytes().to_vec(),
                }
            } else {
                NetOutcome::Reset { after: fw.latency }
            }
        };
        let mtls = fw.mtls.as_ref().and_then(|(ns, sa)| {
            let id = self.fleet.pki().identity(ns, sa).ok()?;
            Some((id, fw.sni.clone()))
        });
        let unspecified = std::net::IpAddr::from([0, 0, 0, 0]);
        let make_dial = |inbound| sidecar::client::Dial {
            inbound,
            source_ip: fw.source_ip.unwrap_or(unspecified),
            source_port: rand::rng().random_range(32768..61000),
            destination_ip: fw.destination_ip.unwrap_or(unspecified),
            destination_port: fw.port,
            mtls,
        };
        let (dial, outcome) = if let Some(hop) = &fw.waypoint {
            match self.through_waypoint(fw, hop, make_dial, request).await {
                Some(sent) => sent,
                None => return failed(decide::CONNECT_TERMINATION_BODY),
            }
        } else {
            let Some(addr) = self.sync_sidecar(&fw.namespace, &fw.pod).await else {
                return failed(decide::CONNECT_FAILURE_BODY);
            };
            let dial = make_dial(addr.inbound);
            let outcome = send_on(&dial, request).await;
            (dial, outcome)
        };
        // The request is over for the client once Envoy has logged it (the
        // access log line names the client's address and port): readers of
        // the istio-proxy log right after the request find it, as with a
        // real sidecar a moment later.
        if fw.access_log
            && let Some(app) = self.app.upgrade()
        {
            let needle = format!(" {}:{} ", dial.source_ip, dial.source_port);
            let found = app
                .logs
                .wait_for_line(
                    &fw.namespace,
                    &fw.pod,
                    PROXY_CONTAINER,
                    400,
                    |l| l.starts_with('[') && l.contains(&needle),
                    Duration::from_secs(2),
                )
                .await;
            if !found {
                tracing::debug!(
                    "meshsim: no access log line from {}/{}",
                    fw.namespace,
                    fw.pod
                );
            }
        }
        match outcome {
            // A TCP probe's bytes reached the application: a TCP server
            // keeps the connection open for more.
            Ok(Ok(_)) if decide::client_protocol(request) == decide::ClientProtocol::Tcp => {
                NetOutcome::Silent
            }
            Ok(Ok(r)) => NetOutcome::Http {
                after: fw.latency,
                status: r.status,
                headers: r.headers,
                body: r.body,
            },
            // Closed in order by the destination (network RBAC): a client
            // without a sidecar, or behind a `tcp_proxy`, sees the close.
            Ok(Err(sidecar::httpc::HttpError::Closed)) if !captured || fw.relays_tcp => {
                NetOutcome::Closed { after: fw.latency }
            }
            Ok(Err(e)) => {
                tracing::debug!("meshsim: {}/{}: {e}", fw.namespace, fw.pod);
                failed(decide::CONNECT_TERMINATION_BODY)
            }
            Err(_) => failed(decide::CONNECT_TIMEOUT_BODY),
        }
    }

    /// Records the source sidecar's upstream connection for `request`
    /// (when it relays it with `tcp_proxy`), `out` being what came back.
    fn record_outbound(
        &self,
        from: &Container,
        request: &NetRequest,
        v: &PathDecision,
        out: &NetOutcome,
    ) {
        let Some(cluster) = v.tcp_upstream.clone() else {
            return;
        };
        let connect = match v.connect_failure {
            Some(decide::ConnectFailure::NoHealthyUpstream) => return,
            Some(decide::ConnectFailure::Refused) => outbound::Connect::Refused,
            Some(decide::ConnectFailure::Timeout) => outbound::Connect::TimesOut {
                at: self.now(&lock(&self.state)) + self.real(decide::CONNECT_TIMEOUT),
            },
            None => outbound::Connect::Established {
                tx: outbound::bytes_sent(request),
                rx: outbound::bytes_received(out),
            },
        };
        self.outbound
            .record(&from.namespace, &from.pod, cluster, connect);
    }

    /// The `/stats` answer of `ns/pod`'s sidecar: `real` (its real Envoy's
    /// answer for `filter`, inbound side) with the simulated outbound
    /// clusters' counters that `filter` selects: one cluster per Service
    /// port in the cluster (as Istio gives every sidecar by default), with
    /// the connections this pod made ([`outbound`]).
    pub fn stats_with_outbound(&self, ns: &str, pod: &str, filter: &str, real: &str) -> String {
        let mut clusters = std::collections::BTreeMap::new();
        if let Some(app) = self.app.upgrade() {
            let store = lock(&app.store);
            for svc in store.list(resources::SERVICES, None) {
                let (svc_ns, name) = name_of(svc);
                let ports = svc["spec"]["ports"].as_array().cloned().unwrap_or_default();
                for p in ports {
                    let Some(port) = p["port"].as_u64().and_then(|n| u16::try_from(n).ok()) else {
                        continue;
                    };
                    let cluster = meshpolicy::envoy::stats::outbound_cluster_name(
                        &name,
                        &svc_ns,
                        flow::CLUSTER_DOMAIN,
                        port,
                    );
                    clusters.insert(cluster, Default::default());
                }
            }
        }
        let now = self.now(&lock(&self.state));
        clusters.extend(self.outbound.counters(ns, pod, now));
        outbound::merge_stats(real, outbound::stats_lines(&clusters, filter))
    }

    /// A request to the pod's own Envoy admin (`localhost:15000`).
    async fn own_admin(&self, from: &Container, request: &NetRequest) -> Option<NetOutcome> {
        let admin = self.admin_address(&from.namespace, &from.pod).await?;
        let mut s = tokio::net::TcpStream::connect(admin).await.ok()?;
        let r = sidecar::httpc::exchange(
            &mut s,
            &request.method,
            &request.path,
            &request.headers,
            request.body.as_deref(),
        )
        .await
        .ok()?;
        Some(NetOutcome::Http {
            after: Duration::ZERO,
            status: r.status,
            headers: r.headers,
            body: r.body,
        })
    }

    /// What a client in `from` gets for `request`, with real sidecars.
    pub async fn send_request(&self, from: &Container, request: &NetRequest) -> NetOutcome {
        let loopback = {
            let h = request.host.trim_end_matches('.').to_ascii_lowercase();
            h == "localhost" || h.starts_with("127.") || h == "::1" || h == "[::1]"
        };
        if loopback
            && request.port == crate::mesh::sidecar::ADMIN_PORT
            && request.scheme == "http"
            && let Some(out) = self.own_admin(from, request).await
        {
            return out;
        }
        if loopback {
            return self.decide(from, request);
        }
        let Some((facts, mut v)) = self.run(from, request) else {
            return NetOutcome::DnsFailure;
        };
        let Some(fw) = v.forward.take() else {
            self.record_outbound(from, request, &v, &v.outcome);
            self.emit(&facts, &v);
            return v.outcome;
        };
        let out = self.forward(&fw, request).await;
        self.record_outbound(from, request, &v, &out);
        // The source sidecar's outbound line, with what came back.
        if let Some(e) = v.source.as_mut().and_then(|ev| ev.access.as_mut()) {
            decide::relayed_answer(e, &out);
            self.emit(&facts, &v);
        }
        out
    }
}

/// An answer through a real Envoy, or why none came (in time).
type Sent = Result<
    Result<sidecar::httpc::Response, sidecar::httpc::HttpError>,
    tokio::time::error::Elapsed,
>;

/// Sends `request` through a proxy's inbound listener, waiting at most 30 s.
async fn send_on(dial: &sidecar::client::Dial, request: &NetRequest) -> Sent {
    let (method, path, headers) = (&request.method, &request.path, &request.headers);
    let sent = sidecar::client::send(dial, method, path, headers, request.body.as_deref());
    tokio::time::timeout(Duration::from_secs(30), sent).await
}

/// The workload certificate of `pod`'s ServiceAccount.
fn identity(fleet: &Fleet, pod: &Value) -> Option<Arc<sidecar::certs::Identity>> {
    let (ns, _) = name_of(pod);
    let sa = decide::model_pod(pod).service_account;
    let id = fleet.pki().identity(&ns, &sa);
    id.map_err(|e| tracing::error!("meshsim: {e}")).ok()
}

/// The AuthorizationPolicies among store objects (those that do not parse
/// are left out, as the API server would not hold them).
fn authorization_policies(values: &[Arc<Value>]) -> Vec<AuthorizationPolicy> {
    values
        .iter()
        .filter_map(|v| serde_json::from_value((**v).clone()).ok())
        .collect()
}

/// Whether the destination may be in ambient mode (so the policies ztunnel
/// holds are worth reading for this request).
fn may_be_ambient(facts: &flow::Facts) -> bool {
    let label = meshpolicy::ambient::DATAPLANE_MODE_LABEL;
    match &facts.route {
        flow::Route::Endpoint { pod, .. } => {
            pod["metadata"]["labels"].get(label).is_some()
                || facts
                    .namespaces
                    .iter()
                    .any(|n| n["metadata"]["labels"].get(label).is_some())
        }
        _ => false,
    }
}

/// A kubelet restarting a container: `restartCount` + 1, the previous run
/// as `lastState`.
fn bump_restart_count(app: &Shared, ns: &str, pod: &str, uid: &str) {
    let mut store = lock(&app.store);
    let Some(mut p) = store.get(resources::PODS, ns, pod).cloned() else {
        return;
    };
    if p["metadata"]["uid"].as_str() != Some(uid) {
        return;
    }
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    for c in p["status"]["containerStatuses"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        if c["name"] != PROXY_CONTAINER {
            continue;
        }
        let n = c["restartCount"].as_u64().unwrap_or(0) + 1;
        let started = c["state"]["running"]["startedAt"].clone();
        c["restartCount"] = serde_json::json!(n);
        c["lastState"] = serde_json::json!({"terminated": {"exitCode": 137, "reason": "Error", "startedAt": started, "finishedAt": now}});
        c["state"] = serde_json::json!({"running": {"startedAt": now}});
    }
    store.put(resources::PODS, p, false);
}

impl Network for Mesh {
    /// The synchronous answer, without I/O: right for everything decided
    /// before a destination sidecar; a request a sidecar's Envoy must decide
    /// needs [`Network::send`] ([`Mesh::send_request`]) and is answered here
    /// as a reset.
    fn decide(&self, from: &Container, request: &NetRequest) -> NetOutcome {
        match self.run(from, request) {
            Some((facts, v)) => {
                self.emit(&facts, &v);
                v.outcome
            }
            None => NetOutcome::DnsFailure,
        }
    }

    fn send<'a>(
        &'a self,
        from: &'a Container,
        request: &'a NetRequest,
    ) -> futures::future::BoxFuture<'a, NetOutcome> {
        Box::pin(self.send_request(from, request))
    }

    fn resolve(&self, from: &Container, host: &str) -> Option<String> {
        let app = self.app.upgrade()?;
        let store = lock(&app.store);
        flow::resolve(&store, &from.namespace, host, 80).1
    }
}

/// Follows store events until the server stops.
async fn watch(
    mesh: Weak<Mesh>,
    mut rx: tokio::sync::broadcast::Receiver<Event>,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = rx.recv() => ev,
        };
        let Some(m) = mesh.upgrade() else { return };
        match ev {
            Ok(ev) => m.observe(&ev),
            Err(RecvError::Lagged(_)) => m.resync(),
            Err(RecvError::Closed) => return,
        }
    }
}
