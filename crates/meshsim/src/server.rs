//! Server lifecycle: configuration, the listener on 127.0.0.1 (plain HTTP or
//! TLS with a generated CA), bearer-token and client-certificate
//! authentication, the kubeconfig it writes, a background ticker that makes
//! pods Ready, and a [`Handle`] for in-process use by tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use base64::Engine;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::faults::Fault;
use crate::store::{Store, Timing};
use crate::traffic::Network;

pub use crate::app::{App, Auth, ConnInfo, EXEC_LOG_LIMIT, ExecRecord};
pub use crate::kubelet::podexec::Services;
use crate::shared::{NoNetwork, Shared};

/// Server settings.
pub struct Config {
    /// Scenario files or folders applied at start, in order.
    pub scenarios: Vec<PathBuf>,
    /// Port on 127.0.0.1 (0 = random).
    pub port: u16,
    pub tls: bool,
    /// Require this bearer token.
    pub token: Option<String>,
    /// Accept client certificates signed by the generated CA (implies TLS); the kubeconfig gets one.
    pub client_ca: bool,
    /// Test-only: serve a server certificate whose validity ended in 2001
    /// (implies TLS), to check how clients report an expired certificate.
    pub expired_server_cert: bool,
    pub time_scale: f64,
    pub ready_delay: Duration,
    pub faults: Vec<Fault>,
    /// Where to write the kubeconfig, if anywhere.
    pub kubeconfig_out: Option<PathBuf>,
    /// Traffic decisions for exec'd clients; None = the mesh simulation ([`crate::mesh`]).
    pub network: Option<Arc<dyn Network>>,
    /// How long (simulated time) AuthorizationPolicy/PeerAuthentication changes take to reach sidecars.
    pub propagation_delay: Duration,
    /// Whether the simulated CNI enforces NetworkPolicy. Many clusters run a CNI
    /// that ignores it (the walk-through warns of this); `false` simulates one.
    pub cni_enforces_network_policy: bool,
    /// The Envoy binary for the sidecars (`--envoy`); None looks it up
    /// ([`crate::mesh::sidecar::find_envoy`]). Unused when `network` is set.
    pub envoy: Option<PathBuf>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("scenarios", &self.scenarios)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("time_scale", &self.time_scale)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            scenarios: Vec::new(),
            port: 0,
            tls: false,
            token: None,
            client_ca: false,
            expired_server_cert: false,
            time_scale: 1.0,
            ready_delay: crate::store::controllers::DEFAULT_READY_DELAY,
            faults: Vec::new(),
            kubeconfig_out: None,
            network: None,
            propagation_delay: crate::mesh::DEFAULT_PROPAGATION_DELAY,
            cni_enforces_network_policy: true,
            envoy: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("binding 127.0.0.1:{port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error("{0}")]
    Scenario(#[from] crate::scenario::ScenarioError),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error(transparent)]
    Sidecar(#[from] crate::mesh::sidecar::SidecarError),
    #[error("writing kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The state of a running simulation as seen from this process (its store,
/// container logs, mesh and exec log), for in-process tests. Named for what
/// it is: not `meshpolicy::Cluster`, the policy model.
#[derive(Clone, Debug)]
pub struct SimState(pub Arc<App>);

impl SimState {
    /// Run `f` with the store locked.
    pub fn with_store<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        let mut g = match self.0.store.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut g)
    }
    /// Container logs (part 2 appends Envoy lines here).
    pub fn logs(&self) -> &crate::logs::LogStore {
        &self.0.logs
    }
    /// The mesh simulation (None when a custom network was configured).
    pub fn mesh(&self) -> Option<&Arc<crate::mesh::Mesh>> {
        self.0.mesh.get()
    }
    /// The exec requests received so far (at most the last
    /// [`EXEC_LOG_LIMIT`]), oldest first, argv exactly as received.
    pub fn exec_log(&self) -> Vec<ExecRecord> {
        match self.0.exec_log.lock() {
            Ok(g) => g.iter().cloned().collect(),
            Err(p) => p.into_inner().iter().cloned().collect(),
        }
    }
}

/// A running server.
#[derive(Debug)]
pub struct Handle {
    pub url: String,
    pub addr: SocketAddr,
    /// Kubeconfig contents (YAML).
    pub kubeconfig: String,
    pub kubeconfig_path: Option<PathBuf>,
    pub cluster: SimState,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Handle {
    /// Stop accepting, end open streams and wait for the server task.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.task.await;
        if let Some(m) = self.cluster.0.mesh.get() {
            m.stop_sidecars().await;
        }
    }
    /// Wait until the server stops.
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

struct TlsMaterial {
    ca_pem: String,
    acceptor: tokio_rustls::TlsAcceptor,
    client_cert_pem: Option<(String, String)>,
}

fn tls_material(client_ca: bool, expired: bool) -> Result<TlsMaterial, ServerError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose, date_time_ymd,
    };
    let e = |x: rcgen::Error| ServerError::Tls(x.to_string());
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "meshsim-ca");
    ca_params.distinguished_name = dn;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(e)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let srv_key = KeyPair::generate().map_err(e)?;
    let mut srv_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .map_err(e)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "meshsim-apiserver");
    srv_params.distinguished_name = dn;
    srv_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    if expired {
        srv_params.not_before = date_time_ymd(2000, 1, 1);
        srv_params.not_after = date_time_ymd(2001, 1, 1);
    }
    let srv_cert = srv_params.signed_by(&srv_key, &issuer).map_err(e)?;

    let client_cert_pem = if client_ca {
        let key = KeyPair::generate().map_err(e)?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "meshsim-admin");
        dn.push(DnType::OrganizationName, "system:masters");
        p.distinguished_name = dn;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let c = p.signed_by(&key, &issuer).map_err(e)?;
        Some((c.pem(), key.serialize_pem()))
    } else {
        None
    };

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let te = |x: rustls::Error| ServerError::Tls(x.to_string());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(te)?;
    let builder = if client_ca {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_cert.der().clone()).map_err(te)?;
        let v =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|x| ServerError::Tls(x.to_string()))?;
        builder.with_client_cert_verifier(v)
    } else {
        builder.with_no_client_auth()
    };
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(srv_key.serialize_der().into());
    let mut cfg = builder
        .with_single_cert(vec![srv_cert.der().clone(), ca_cert.der().clone()], key_der)
        .map_err(te)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsMaterial {
        ca_pem: ca_cert.pem(),
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(cfg)),
        client_cert_pem,
    })
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Render a kubeconfig for this server.
fn kubeconfig(
    url: &str,
    ca_pem: Option<&str>,
    token: Option<&str>,
    client: Option<&(String, String)>,
) -> String {
    let mut cluster = format!("    server: {url}\n");
    if let Some(ca) = ca_pem {
        cluster.push_str(&format!("    certificate-authority-data: {}\n", b64(ca)));
    }
    let mut user = String::new();
    if let Some(t) = token {
        user.push_str(&format!("    token: {t}\n"));
    }
    if let Some((c, k)) = client {
        user.push_str(&format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(c),
            b64(k)
        ));
    }
    let user = if user.is_empty() {
        "  user: {}\n".to_string()
    } else {
        format!("  user:\n{user}")
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: meshsim\n  cluster:\n{cluster}contexts:\n- name: meshsim\n  context:\n    cluster: meshsim\n    user: meshsim\ncurrent-context: meshsim\nusers:\n- name: meshsim\n{user}preferences: {{}}\n"
    )
}

/// Entry point for starting a server.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Start serving in the background (needs a tokio runtime).
    pub async fn start(config: Config) -> Result<Handle, ServerError> {
        let envoy = match config.network {
            Some(_) => None,
            None => Some(
                crate::mesh::sidecar::find_envoy(config.envoy.as_deref())
                    .map_err(crate::mesh::sidecar::SidecarError::from)?,
            ),
        };
        let tls = config.tls || config.client_ca || config.expired_server_cert;
        let listener = TcpListener::bind(("127.0.0.1", config.port))
            .await
            .map_err(|source| ServerError::Bind {
                port: config.port,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            port: config.port,
            source,
        })?;
        let material = if tls {
            Some(tls_material(config.client_ca, config.expired_server_cert)?)
        } else {
            None
        };
        let scheme = if tls { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{}", addr.port());
        let kc = kubeconfig(
            &url,
            material.as_ref().map(|m| m.ca_pem.as_str()),
            config.token.as_deref(),
            material.as_ref().and_then(|m| m.client_cert_pem.as_ref()),
        );
        let mut store = Store::new(Timing {
            ready_delay: config.ready_delay,
            time_scale: config.time_scale,
        });
        crate::scenario::load_into(&mut store, &config.scenarios)?;
        if let Some(p) = &config.kubeconfig_out {
            // Written beside its destination, then renamed: whoever waits for the file
            // (scripts, tests) never reads a half-written kubeconfig.
            let mut tmp = p.clone().into_os_string();
            tmp.push(format!(".{}.tmp", std::process::id()));
            std::fs::write(&tmp, &kc)
                .and_then(|()| std::fs::rename(&tmp, p))
                .map_err(|source| ServerError::Kubeconfig {
                    path: p.clone(),
                    source,
                })?;
        }
        let cancel = CancellationToken::new();
        let app = Arc::new(App {
            shared: Arc::new(Shared {
                store: Mutex::new(store),
                cancel: cancel.clone(),
                logs: crate::logs::LogStore::default(),
                network: RwLock::new(
                    config
                        .network
                        .clone()
                        .unwrap_or_else(|| Arc::new(NoNetwork)),
                ),
                time_scale: config.time_scale,
            }),
            addr,
            auth: Auth {
                token: config.token.clone(),
                client_cert: config.client_ca,
            },
            faults: config.faults,
            mesh: std::sync::OnceLock::new(),
            exec_log: Mutex::new(std::collections::VecDeque::new()),
        });
        if let Some(envoy) = envoy {
            let mesh = crate::mesh::Mesh::install_with_envoy(
                &app.shared,
                crate::mesh::MeshOptions {
                    propagation_delay: config.propagation_delay,
                    time_scale: config.time_scale,
                    cni_enforces_network_policy: config.cni_enforces_network_policy,
                },
                envoy,
            )?;
            let _ = app.mesh.set(mesh);
        }
        let router = Router::new()
            .fallback(crate::api::dispatch)
            .with_state(app.clone());
        let ticker = tokio::spawn(tick_loop(app.clone()));
        let acceptor = material.map(|m| m.acceptor);
        let c2 = cancel.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = c2.cancelled() => break,
                    r = listener.accept() => {
                        let Ok((tcp, _)) = r else { continue };
                        let _ = tcp.set_nodelay(true);
                        conns.spawn(serve_conn(tcp, acceptor.clone(), router.clone(), c2.clone()));
                    }
                }
            }
            drop(listener);
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while conns.join_next().await.is_some() {}
            })
            .await;
            conns.abort_all();
            ticker.abort();
        });
        Ok(Handle {
            url,
            addr,
            kubeconfig: kc,
            kubeconfig_path: config.kubeconfig_out,
            cluster: SimState(app),
            cancel,
            task,
        })
    }
}

async fn serve_conn(
    tcp: tokio::net::TcpStream,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    cancel: CancellationToken,
) {
    match acceptor {
        Some(acc) => {
            let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acc.accept(tcp)).await
            else {
                return;
            };
            let client_cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|c| !c.is_empty());
            serve_io(TokioIo::new(tls), ConnInfo { client_cert }, router, cancel).await;
        }
        None => {
            serve_io(
                TokioIo::new(tcp),
                ConnInfo { client_cert: false },
                router,
                cancel,
            )
            .await
        }
    }
}

async fn serve_io<I>(io: I, info: ConnInfo, router: Router, cancel: CancellationToken)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(info);
        let r = router.clone();
        async move { r.oneshot(req.map(axum::body::Body::new)).await }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, svc)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}

async fn tick_loop(app: Arc<App>) {
    loop {
        let next = app.store.lock().ok().and_then(|s| s.next_wakeup());
        let wait = next
            .map(|t| {
                t.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(50))
            })
            .unwrap_or(Duration::from_millis(50));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = app.cancel.cancelled() => return,
        }
        let started = match app.store.lock() {
            Ok(mut s) => {
                let started = s.tick(Instant::now());
                s.trim_cache(crate::store::CACHE_LIMIT);
                started
            }
            Err(_) => return,
        };
        app.forget_removed_pods();
        for p in started {
            crate::kubelet::podexec::seed_logs(&app, &p);
        }
    }
}
