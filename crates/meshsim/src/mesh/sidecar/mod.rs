//! Real Envoy sidecars: one Envoy 1.40 process per sidecar-injected pod.
//!
//! meshsim's sidecars used to be imitated; now every pod with an
//! `istio-proxy` container gets its own Envoy ([`proxy`]), started when the
//! pod runs and stopped when it is deleted, configured through files
//! ([`config`]: bootstrap with static clusters, LDS through `path_config_source`,
//! replaced atomically by write-then-rename when the policies the sidecar
//! received change), with an application behind it ([`appserver`](super::appserver)) and
//! workload certificates from one mesh CA ([`certs`]). A request from a pod
//! reaches the destination's Envoy over loopback ([`client`]): what the
//! client sees is what Envoy answered, and what Envoy logged is the
//! `istio-proxy` container's log.
//!
//! Public API: [`Fleet`] (owned by the mesh), [`locate::find_envoy`],
//! [`config::envoy_config`] (the one place the configuration is made).

pub mod cds;
pub mod certs;
pub mod client;
pub mod config;
pub mod httpc;
pub mod locate;
pub mod loglevel;
pub mod proxy;
pub mod spec;
pub mod waypoint;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use certs::Pki;
pub use locate::{EnvoyNotFound, find_envoy};
pub use proxy::{Addresses, Proxy};

pub use loglevel::log_args;

/// The sidecar's container name.
pub const PROXY_CONTAINER: &str = "istio-proxy";

/// The port Envoy's admin listens on inside the pod (`localhost:15000`),
/// as seen by `curl` and `pilot-agent request` in the pod.
pub const ADMIN_PORT: u16 = 15000;

/// How long a request waits for a starting (or restarting) Envoy.
pub const READY_LIMIT: Duration = Duration::from_secs(10);

/// Why the sidecars could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error(transparent)]
    NotFound(#[from] EnvoyNotFound),
    #[error(transparent)]
    Cert(#[from] certs::CertError),
    #[error("sidecar work directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What was last written for one sidecar.
#[derive(Debug, Default)]
pub struct Written {
    pub version: u64,
    pub listeners: Vec<Value>,
    /// Inbound port -> application loopback port (None: nothing listens).
    pub app_ports: BTreeMap<u16, Option<u16>>,
    /// The CUSTOM provider clusters last waited for (once per change).
    pub ext_authz_clusters: Vec<String>,
}

/// Every sidecar Envoy of one meshsim.
pub struct Fleet {
    envoy: PathBuf,
    root: PathBuf,
    pki: Pki,
    proxies: Mutex<HashMap<(String, String), Arc<Proxy>>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// Clusters given to sidecars after they started (CUSTOM providers).
    cds: Arc<cds::Cds>,
    /// CUSTOM provider (service host, port, gRPC) -> the loopback port answering for it.
    providers: Mutex<HashMap<(String, u16, bool), u16>>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("envoy", &self.envoy)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// Locks `m`, through a poisoning (the guarded maps stay consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Binds 127.0.0.1 on a kernel-chosen port synchronously (so the caller
/// knows the port at once), for a server on the current tokio runtime.
pub(crate) fn bind_loopback() -> std::io::Result<(tokio::net::TcpListener, u16)> {
    let std_listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    std_listener.set_nonblocking(true)?;
    let port = std_listener.local_addr()?.port();
    let handle = tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
    let _guard = handle.enter();
    Ok((tokio::net::TcpListener::from_std(std_listener)?, port))
}

/// Serves `router` on loopback ([`bind_loopback`]) until `stop` fires;
/// returns its port. Needs a tokio runtime.
pub(crate) fn serve_router(router: axum::Router, stop: CancellationToken) -> std::io::Result<u16> {
    let (listener, port) = bind_loopback()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    });
    Ok(port)
}

/// Writes `value` to `path` atomically: a temporary file beside it, then a
/// rename (Envoy watches `path_config_source` files for moves).
pub fn write_atomic(path: &Path, value: &Value) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let body = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, path)
}

/// The files of one sidecar.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
    pub bootstrap: PathBuf,
    pub lds: PathBuf,
    pub admin: PathBuf,
}

impl Paths {
    /// The files under `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Paths {
            bootstrap: dir.join("bootstrap.json"),
            lds: dir.join("lds.json"),
            admin: dir.join("admin-address"),
            dir,
        }
    }
}

impl Fleet {
    /// A fleet running `envoy`, its files under a fresh temporary directory.
    pub fn new(envoy: PathBuf, shutdown: CancellationToken) -> Result<Self, SidecarError> {
        let root = std::env::temp_dir().join(format!(
            "meshsim-{}-{}",
            std::process::id(),
            crate::store::new_uid()
        ));
        std::fs::create_dir_all(&root).map_err(|source| SidecarError::Dir {
            path: root.clone(),
            source,
        })?;
        Ok(Fleet {
            envoy,
            root,
            pki: Pki::new()?,
            proxies: Mutex::new(HashMap::new()),
            shutdown,
            tasks: TaskTracker::new(),
            cds: Arc::default(),
            providers: Mutex::new(HashMap::new()),
        })
    }

    /// The Envoy binary.
    pub fn envoy(&self) -> &Path {
        &self.envoy
    }

    /// The mesh CA.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The sidecar of `namespace/pod`, when one was launched.
    pub fn proxy(&self, namespace: &str, pod: &str) -> Option<Arc<Proxy>> {
        lock(&self.proxies)
            .get(&(namespace.to_string(), pod.to_string()))
            .cloned()
    }

    /// Every launched sidecar.
    pub fn proxies(&self) -> Vec<Arc<Proxy>> {
        lock(&self.proxies).values().cloned().collect()
    }

    /// Registers a new sidecar for `namespace/pod` (replacing and stopping
    /// an older one of the same name); None when one with `uid` exists.
    pub fn register(&self, namespace: &str, pod: &str, uid: &str) -> Option<(Arc<Proxy>, Paths)> {
        let key = (namespace.to_string(), pod.to_string());
        let mut map = lock(&self.proxies);
        if map.get(&key).is_some_and(|p| p.uid == uid) {
            return None;
        }
        if let Some(old) = map.remove(&key) {
            old.stop();
        }
        let dir = self.root.join(format!("{namespace}.{pod}.{uid}"));
        let proxy = Proxy::new(namespace, pod, uid, dir.clone(), &self.shutdown);
        map.insert(key, proxy.clone());
        Some((proxy, Paths::new(dir)))
    }

    /// Stops and forgets the sidecar of `namespace/pod`.
    pub fn stop(&self, namespace: &str, pod: &str) {
        if let Some(p) = lock(&self.proxies).remove(&(namespace.to_string(), pod.to_string())) {
            p.stop();
        }
        self.cds.remove(namespace, pod);
    }

    /// The dynamic clusters of the sidecars.
    pub fn cds(&self) -> &cds::Cds {
        &self.cds
    }

    /// The loopback port sidecars poll their dynamic clusters from (the
    /// server starts on first use; needs a tokio runtime).
    pub fn xds_port(&self) -> Option<u16> {
        self.cds.port(&self.shutdown)
    }

    /// The loopback port answering for the CUSTOM provider service `host` on
    /// `port` (over gRPC or HTTP), started with `start` (given meshsim's
    /// shutdown token) the first time it is asked for.
    pub fn provider_port(
        &self,
        host: &str,
        port: u16,
        grpc: bool,
        start: impl FnOnce(CancellationToken) -> std::io::Result<u16>,
    ) -> Option<u16> {
        let mut map = lock(&self.providers);
        let key = (host.to_string(), port, grpc);
        if let Some(p) = map.get(&key) {
            return Some(*p);
        }
        match start(self.shutdown.clone()) {
            Ok(p) => {
                map.insert(key, p);
                Some(p)
            }
            Err(e) => {
                tracing::error!("meshsim: cannot serve CUSTOM provider {host}:{port}: {e}");
                None
            }
        }
    }

    /// Waits (up to [`READY_LIMIT`]) until the Envoy of `proxy` has every cluster
    /// of `names` (its admin's `/clusters` lists them). False when it has not.
    pub async fn await_clusters(&self, proxy: &Proxy, names: &[String]) -> bool {
        if names.is_empty() {
            return true;
        }
        if self.xds_port().is_none() {
            // No CDS server, so the bootstrap polls none: they cannot come.
            return false;
        }
        let has_all = |body: &[u8]| {
            let text = String::from_utf8_lossy(body);
            let has = |n: &String| text.lines().any(|l| l.starts_with(&format!("{n}::")));
            names.iter().all(has)
        };
        let every = Duration::from_millis(20);
        if poll_admin(proxy, "/clusters", every, has_all).await {
            return true;
        }
        tracing::warn!(
            "meshsim: Envoy of {}/{} did not get clusters {names:?}",
            proxy.namespace,
            proxy.pod
        );
        false
    }

    /// Runs a sidecar task, tracked so [`Fleet::stopped`] can wait for it.
    pub fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(fut);
    }

    /// The token that stops every sidecar (meshsim's shutdown).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops every sidecar and waits until each Envoy has exited.
    pub async fn stopped(&self) {
        for p in self.proxies() {
            p.stop();
        }
        self.tasks.close();
        self.tasks.wait().await;
        let _ = std::fs::remove_dir_all(&self.root);
    }

    /// Writes a new listener file for `proxy` when `listeners` differ from
    /// what it has, then waits (up to [`READY_LIMIT`]) until Envoy's admin shows the
    /// new version active. Returns false when Envoy did not confirm.
    pub async fn apply(&self, proxy: &Proxy, written: &mut Written, listeners: Vec<Value>) -> bool {
        let lds = Paths::new(proxy.dir.clone()).lds;
        if written.listeners == listeners {
            return true;
        }
        let version = written.version + 1;
        if let Err(e) = write_atomic(&lds, &config::resource_file(version, &listeners)) {
            tracing::warn!("meshsim: writing {}: {e}", lds.display());
            return false;
        }
        written.version = version;
        written.listeners = listeners;
        let want = version.to_string();
        let applied = |body: &[u8]| listeners_version(body).as_deref() == Some(want.as_str());
        let every = Duration::from_millis(5);
        if poll_admin(proxy, "/config_dump", every, applied).await {
            return true;
        }
        tracing::warn!(
            "meshsim: Envoy of {}/{} did not apply listener version {version}",
            proxy.namespace,
            proxy.pod
        );
        false
    }
}

/// Polls the admin of `proxy`'s Envoy at `path` every `every` until `done`
/// holds for the body, for at most [`READY_LIMIT`]; false when it never did.
async fn poll_admin(
    proxy: &Proxy,
    path: &str,
    every: Duration,
    done: impl Fn(&[u8]) -> bool,
) -> bool {
    let limit = READY_LIMIT;
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        let Some(addr) = proxy.ready(limit).await else {
            return false;
        };
        if admin_get(addr.admin, path).await.is_some_and(|b| done(&b)) {
            return true;
        }
        tokio::time::sleep(every).await;
    }
    false
}

/// The `version_info` of the last listener update Envoy accepted (the
/// ListenersConfigDump's; a listener updated in place keeps the version it
/// was created with).
fn listeners_version(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v["configs"]
        .as_array()?
        .iter()
        .find(|c| c["@type"] == "type.googleapis.com/envoy.admin.v3.ListenersConfigDump")
        .and_then(|c| c["version_info"].as_str().map(str::to_string))
}

/// GET on an Envoy admin; the body when it answered.
pub async fn admin_get(admin: std::net::SocketAddr, path: &str) -> Option<Vec<u8>> {
    admin_request(admin, "GET", path).await.ok().map(|r| r.body)
}

/// How long an admin request may take.
const ADMIN_LIMIT: Duration = Duration::from_secs(10);

/// One request to an Envoy admin.
pub async fn admin_request(
    admin: std::net::SocketAddr,
    method: &str,
    path: &str,
) -> Result<httpc::Response, httpc::HttpError> {
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let exchange = async {
        let mut s = TcpStream::connect(admin).await?;
        httpc::exchange(&mut s, method, &path, &[], None).await
    };
    tokio::time::timeout(ADMIN_LIMIT, exchange)
        .await
        .unwrap_or(Err(httpc::HttpError::Reset))
}
