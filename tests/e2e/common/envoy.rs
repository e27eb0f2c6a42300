//! Real Envoy for tests: certificates, bootstrap, process, upstream app, clients.
//!
//! Tests that check our Istio translation against the real proxy need the same
//! plumbing every time: a mesh CA and SPIFFE workload certificates, a bootstrap
//! that loads the generated listener and clusters, an Envoy process that is
//! ready before the first request and gone after the test, an application
//! behind it, and clients that speak plain text or mTLS as a sidecar would.
//! Everything here is blocking std code (threads, `std::net`), so it serves
//! synchronous tests and async ones alike (call it from `spawn_blocking`).
//!
//! - [`MeshCa`] mints a CA and workload certificates whose only SAN is the URI
//!   `spiffe://TRUST_DOMAIN/ns/NS/sa/SA`, like Istio's; [`WorkloadCert::write`]
//!   puts them in files for Envoy.
//! - [`Bootstrap`] renders a bootstrap with static resources or with LDS/CDS
//!   read from files ([`Bootstrap::dynamic`]; [`write_resources`] replaces those
//!   files atomically), admin on 127.0.0.1 with an ephemeral port.
//! - [`Envoy::start`] runs the binary with `--concurrency 1`, Istio's log
//!   format (real TABs) and `--admin-address-path`, reads stdout and stderr
//!   through pipes into one list of lines in arrival order, waits until the
//!   admin `/ready` answers 200 (polling an observable state, no fixed sleep),
//!   and kills the process on drop. [`validate`] runs `--mode validate`.
//! - [`App`] is a tiny upstream on 127.0.0.1: HTTP (answers with its name and
//!   the path it saw) or echo (TCP).
//! - [`http_request`] and [`tcp_exchange`] connect in plain text or with
//!   [`ClientTls`] (a workload certificate, the mesh CA, sidecar ALPN values),
//!   optionally after a PROXY protocol v1 header ([`proxy_v1_header`]) so
//!   Envoy sees a chosen source address and destination port.
//!
//! The binary is `target/envoy/envoy` (installed by `make envoy`), or the
//! path in `MESHDEBUG_ENVOY`.

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use meshpolicy::istio::listener::TlsFiles;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde_json::{Value, json};

/// Istio's proxy log layout, with real TAB characters.
pub const ISTIO_LOG_FORMAT: &str = "%Y-%m-%dT%T.%fZ\t%l\tenvoy %n %g:%#\t%v\tthread=%t";

/// How long any single wait in this harness may take before the test fails.
pub const WAIT_LIMIT: Duration = Duration::from_secs(20);

/// Pause between two looks at a state that offers no notification.
pub const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Socket read/write timeout of the clients and the app.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The Envoy binary. Panics with the command that installs it when missing,
/// so a test never passes or fails for the wrong reason.
pub fn envoy_binary() -> PathBuf {
    let path = std::env::var_os("MESHDEBUG_ENVOY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/envoy/envoy"));
    assert!(
        path.is_file(),
        "real Envoy not found at {}: run `make envoy` (installs Envoy 1.40.0 under target/envoy)",
        path.display()
    );
    path
}

// ---------------------------------------------------------------------------
// Certificates

/// A mesh CA (Istio's root of trust stand-in).
pub struct MeshCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub trust_domain: String,
}

/// A workload's certificate and key, PEM and DER.
#[derive(Clone)]
pub struct WorkloadCert {
    /// The URI SAN, `spiffe://TD/ns/NS/sa/SA`.
    pub spiffe_id: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
    /// The CA's certificate, PEM.
    pub ca_pem: String,
    pub ca_der: CertificateDer<'static>,
}

impl MeshCa {
    /// A fresh self-signed CA for `trust_domain` (ECDSA P-256).
    pub fn new(trust_domain: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::OrganizationName, trust_domain);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Self {
            issuer,
            trust_domain: trust_domain.to_string(),
        })
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A workload certificate for service account `sa` in namespace `ns`.
    pub fn issue(&self, ns: &str, sa: &str) -> anyhow::Result<WorkloadCert> {
        self.issue_uri(&format!("spiffe://{}/ns/{ns}/sa/{sa}", self.trust_domain))
    }

    /// A client/server certificate whose only SAN is `uri`.
    pub fn issue_uri(&self, uri: &str) -> anyhow::Result<WorkloadCert> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = vec![SanType::URI(uri.try_into()?)];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(WorkloadCert {
            spiffe_id: uri.to_string(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
            ca_pem: self.issuer.pem(),
            ca_der: self.issuer.der().clone(),
        })
    }
}

impl WorkloadCert {
    /// Writes `STEM-cert.pem`, `STEM-key.pem` and `STEM-ca.pem` into `dir`.
    pub fn write(&self, dir: &Path, stem: &str) -> anyhow::Result<TlsFiles> {
        let path = |suffix: &str| dir.join(format!("{stem}-{suffix}.pem"));
        std::fs::write(path("cert"), &self.cert_pem)?;
        std::fs::write(path("key"), &self.key_pem)?;
        std::fs::write(path("ca"), &self.ca_pem)?;
        let s = |suffix: &str| path(suffix).display().to_string();
        Ok(TlsFiles {
            cert_chain: s("cert"),
            private_key: s("key"),
            ca: s("ca"),
        })
    }
}

// ---------------------------------------------------------------------------
// Bootstrap and resources

/// An Envoy bootstrap: node identity, admin, and either static resources or
/// LDS/CDS files.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub node_id: String,
    pub node_cluster: String,
    pub listeners: Vec<Value>,
    pub clusters: Vec<Value>,
    /// `Some((lds, cds))`: read listeners and clusters from these files
    /// (`path_config_source`) instead of static resources.
    pub dynamic: Option<(PathBuf, PathBuf)>,
}

/// Resource type URLs for LDS/CDS files.
pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

impl Bootstrap {
    /// A sidecar-like node (`sidecar~IP~POD.NS~NS.svc.cluster.local`, cluster
    /// `APP.NS`) with static resources.
    pub fn sidecar(pod: &str, ns: &str, listeners: Vec<Value>, clusters: Vec<Value>) -> Self {
        Self {
            node_id: format!("sidecar~127.0.0.1~{pod}.{ns}~{ns}.svc.cluster.local"),
            node_cluster: format!("{pod}.{ns}"),
            listeners,
            clusters,
            dynamic: None,
        }
    }

    /// Switches to file-based LDS/CDS under `dir` (`lds.json`, `cds.json`) and
    /// writes the current listeners and clusters there.
    pub fn dynamic(mut self, dir: &Path) -> anyhow::Result<Self> {
        let lds = dir.join("lds.json");
        let cds = dir.join("cds.json");
        write_resources(&lds, LISTENER_TYPE, &self.listeners)?;
        write_resources(&cds, CLUSTER_TYPE, &self.clusters)?;
        self.dynamic = Some((lds, cds));
        Ok(self)
    }

    /// The bootstrap JSON.
    pub fn to_json(&self) -> Value {
        let mut b = json!({
            "node": {"id": self.node_id, "cluster": self.node_cluster},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        });
        match &self.dynamic {
            None => {
                b["static_resources"] = json!({
                    "listeners": self.listeners,
                    "clusters": self.clusters,
                });
            }
            Some((lds, cds)) => {
                let src = |p: &Path| {
                    json!({"path_config_source": {"path": p.display().to_string()},
                           "resource_api_version": "V3"})
                };
                b["dynamic_resources"] = json!({"lds_config": src(lds), "cds_config": src(cds)});
            }
        }
        b
    }

    /// Writes the bootstrap to `dir/bootstrap.json` and returns the path.
    pub fn write(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let path = dir.join("bootstrap.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&self.to_json())?)?;
        Ok(path)
    }
}

/// Writes an xDS file (`{"resources": [...]}` with `@type` on each resource)
/// atomically: a temporary file in the same directory, then a rename, which
/// Envoy's file watch picks up as one change.
pub fn write_resources(path: &Path, type_url: &str, resources: &[Value]) -> anyhow::Result<()> {
    let typed: Vec<Value> = resources
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r["@type"] = json!(type_url);
            r
        })
        .collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(&json!({"resources": typed}))?,
    )?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The result of `envoy --mode validate`.
#[derive(Debug)]
pub struct Validation {
    pub ok: bool,
    pub output: String,
}

/// Runs `envoy --mode validate -c BOOTSTRAP`.
pub fn validate(bootstrap: &Path) -> anyhow::Result<Validation> {
    let out = Command::new(envoy_binary())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(bootstrap)
        .output()
        .context("running envoy --mode validate")?;
    Ok(Validation {
        ok: out.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
}

// ---------------------------------------------------------------------------
// The process

/// Options for [`Envoy::start`].
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    /// `--log-level`.
    pub log_level: String,
    /// `--component-log-level`, e.g. `rbac:debug,http:debug`.
    pub component_log_level: Option<String>,
    /// `--file-flush-interval-msec`: how soon access log lines reach their file.
    pub file_flush_interval_ms: u32,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        Self {
            log_level: "info".into(),
            component_log_level: Some("rbac:debug".into()),
            file_flush_interval_ms: 50,
        }
    }
}

#[derive(Default)]
struct Lines {
    lines: Vec<String>,
    closed_streams: usize,
}

/// Envoy's output, both streams merged in arrival order.
#[derive(Clone, Default)]
pub struct Output {
    inner: Arc<(Mutex<Lines>, Condvar)>,
}

impl Output {
    fn pump(&self, stream: impl Read + Send + 'static) -> JoinHandle<()> {
        let out = self.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stream);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf)
                            .trim_end_matches(['\n', '\r'])
                            .to_string();
                        let (m, cv) = &*out.inner;
                        m.lock().unwrap().lines.push(line);
                        cv.notify_all();
                    }
                }
            }
            let (m, cv) = &*out.inner;
            m.lock().unwrap().closed_streams += 1;
            cv.notify_all();
        })
    }

    /// A copy of every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.inner.0.lock().unwrap().lines.clone()
    }

    /// Waits until a line satisfies `pred` (returns it), or both streams end,
    /// or `limit` passes (returns `None`).
    pub fn wait_for(&self, limit: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + limit;
        let (m, cv) = &*self.inner;
        let mut g = m.lock().unwrap();
        loop {
            if let Some(l) = g.lines.iter().find(|l| pred(l)) {
                return Some(l.clone());
            }
            let now = Instant::now();
            if g.closed_streams == 2 || now >= deadline {
                return None;
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }
}

/// A running Envoy, killed on drop.
pub struct Envoy {
    child: Child,
    pub admin: SocketAddr,
    pub output: Output,
    pub bootstrap: PathBuf,
    pumps: Vec<JoinHandle<()>>,
}

impl Envoy {
    /// Writes the bootstrap into `dir`, starts Envoy and waits until it is ready.
    pub fn start(dir: &Path, bootstrap: &Bootstrap, opts: &EnvoyOptions) -> anyhow::Result<Self> {
        let path = bootstrap.write(dir)?;
        let admin_file = dir.join("admin-address");
        let _ = std::fs::remove_file(&admin_file);
        let mut cmd = Command::new(envoy_binary());
        cmd.arg("-c")
            .arg(&path)
            .args(["--concurrency", "1", "--disable-hot-restart"])
            .args(["--log-format", ISTIO_LOG_FORMAT])
            .args(["--log-level", &opts.log_level])
            .arg("--file-flush-interval-msec")
            .arg(opts.file_flush_interval_ms.to_string())
            .arg("--admin-address-path")
            .arg(&admin_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(c) = &opts.component_log_level {
            cmd.args(["--component-log-level", c]);
        }
        let mut child = cmd.spawn().context("starting envoy")?;
        let output = Output::default();
        let pumps = vec![
            output.pump(child.stdout.take().unwrap()),
            output.pump(child.stderr.take().unwrap()),
        ];
        let mut envoy = Self {
            child,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            output,
            bootstrap: path,
            pumps,
        };
        envoy.admin = envoy.wait_ready(&admin_file)?;
        Ok(envoy)
    }

    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!(
                "envoy exited ({status}) before it was ready:\n{}",
                self.output.lines().join("\n")
            )),
            _ => None,
        }
    }

    /// Polls the admin address file, then `/ready`, while watching the process.
    fn wait_ready(&mut self, admin_file: &Path) -> anyhow::Result<SocketAddr> {
        let deadline = Instant::now() + WAIT_LIMIT;
        let mut admin = None;
        loop {
            if let Some(msg) = self.exited() {
                bail!(msg);
            }
            if admin.is_none() {
                admin = std::fs::read_to_string(admin_file)
                    .ok()
                    .and_then(|s| s.trim().parse::<SocketAddr>().ok());
            }
            if let Some(a) = admin
                && let Ok((200, _)) = admin_get(a, "/ready")
            {
                return Ok(a);
            }
            if Instant::now() >= deadline {
                bail!(
                    "envoy not ready after {WAIT_LIMIT:?}:\n{}",
                    self.output.lines().join("\n")
                );
            }
            // Envoy offers no readiness notification; poll its state.
            std::thread::park_timeout(POLL_INTERVAL);
        }
    }

    /// GET on the admin interface: (status, body).
    pub fn admin_get(&self, path: &str) -> io::Result<(u16, String)> {
        admin_get(self.admin, path)
    }

    /// The address a listener actually bound (useful with port 0).
    pub fn listener_address(&self, name: &str) -> anyhow::Result<SocketAddr> {
        let (_, body) = self.admin_get("/listeners?format=json")?;
        let v: Value = serde_json::from_str(&body)?;
        let l = v["listener_statuses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["name"] == name)
            .with_context(|| format!("listener {name} not in /listeners: {body}"))?;
        let sa = &l["local_address"]["socket_address"];
        Ok(SocketAddr::new(
            sa["address"].as_str().context("address")?.parse()?,
            u16::try_from(sa["port_value"].as_u64().context("port")?)?,
        ))
    }

    /// A counter or gauge from `/stats` (`None` when Envoy has no such stat).
    pub fn stat(&self, name: &str) -> anyhow::Result<Option<u64>> {
        let (_, body) = self.admin_get(&format!("/stats?filter={name}"))?;
        Ok(body.lines().find_map(|l| {
            let (k, v) = l.split_once(": ")?;
            (k == name).then(|| v.trim().parse().ok()).flatten()
        }))
    }

    /// Polls `/stats` until `name` satisfies `pred`; returns the value.
    pub fn wait_stat(&self, name: &str, pred: impl Fn(u64) -> bool) -> anyhow::Result<u64> {
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            if let Some(v) = self.stat(name)?
                && pred(v)
            {
                return Ok(v);
            }
            if Instant::now() >= deadline {
                bail!("stat {name} never satisfied the condition within {WAIT_LIMIT:?}");
            }
            std::thread::park_timeout(POLL_INTERVAL);
        }
    }

    /// Replaces the listeners of a file-based LDS bootstrap and waits until
    /// Envoy accepted the new version (`listener_manager.lds.update_success`
    /// grew) and no listener is still warming.
    pub fn replace_listeners(
        &self,
        bootstrap: &Bootstrap,
        listeners: &[Value],
    ) -> anyhow::Result<()> {
        let Some((lds, _)) = &bootstrap.dynamic else {
            bail!("the bootstrap has static listeners");
        };
        let stat = "listener_manager.lds.update_success";
        let before = self.stat(stat)?.unwrap_or(0);
        write_resources(lds, LISTENER_TYPE, listeners)?;
        self.wait_stat(stat, |v| v > before)?;
        self.wait_stat("listener_manager.total_listeners_warming", |v| v == 0)?;
        Ok(())
    }

    /// The process id (for tests that kill it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for p in self.pumps.drain(..) {
            let _ = p.join();
        }
    }
}

fn admin_get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let resp = read_response(&mut s)?;
    Ok((resp.status, resp.body))
}

// ---------------------------------------------------------------------------
// The application

/// What the upstream app does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    /// Answers one HTTP/1.1 request with 200 and `NAME PATH`, and returns the
    /// request's `x-forwarded-client-cert` in `x-app-saw-xfcc`.
    Http,
    /// Echoes bytes until the peer closes.
    Echo,
}

/// A tiny upstream on 127.0.0.1, served by a thread; stops on drop.
pub struct App {
    pub addr: SocketAddr,
    pub name: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl App {
    pub fn start(name: &str, kind: AppKind) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, name2) = (stop.clone(), name.to_string());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let name = name2.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &name, kind);
                });
            }
        });
        Ok(Self {
            addr,
            name: name.to_string(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut conn: TcpStream, name: &str, kind: AppKind) -> io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    match kind {
        AppKind::Echo => {
            let mut buf = [0u8; 4096];
            loop {
                let n = conn.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                conn.write_all(&buf[..n])?;
            }
        }
        AppKind::Http => {
            let mut r = BufReader::new(conn.try_clone()?);
            let mut first = String::new();
            r.read_line(&mut first)?;
            let mut content_length = 0usize;
            let mut xfcc = String::new();
            loop {
                let mut h = String::new();
                if r.read_line(&mut h)? == 0 || h == "\r\n" {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        content_length = v.trim().parse().unwrap_or(0);
                    } else if k.eq_ignore_ascii_case("x-forwarded-client-cert") {
                        xfcc = v.trim().to_string();
                    }
                }
            }
            let mut body = vec![0u8; content_length];
            r.read_exact(&mut body)?;
            let path = first.split_whitespace().nth(1).unwrap_or("");
            let text = format!("{name} {path}");
            write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nx-app-saw-xfcc: {xfcc}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            )?;
            conn.flush()
        }
    }
}

// ---------------------------------------------------------------------------
// Clients

/// A client's mTLS identity and ALPN offer, as a sidecar would present them.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
}

/// Verifies the server's chain against the mesh CA but not its name: Istio
/// workload certificates carry only a SPIFFE URI SAN, which rustls's name
/// check (DNS/IP) cannot match. (Istio checks the URI against the
/// destination's service accounts; these tests do not need that.)
#[derive(Debug)]
struct MeshServerVerifier(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for MeshServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            // The chain checks come first; a name error means they passed.
            Err(rustls::Error::InvalidCertificate(
                NotValidForName | NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

impl ClientTls {
    /// A client presenting `cert`, trusting its CA, offering `alpn`
    /// (e.g. [`meshpolicy::istio::listener::SIDECAR_HTTP11_ALPNS`]).
    pub fn new(cert: &WorkloadCert, alpn: &[&str]) -> anyhow::Result<Self> {
        Self::custom(Some(cert), &cert.ca_der, alpn)
    }

    /// A client presenting `cert` (or no certificate), verifying the server
    /// against `server_ca`: for tests of what a sidecar must refuse.
    pub fn custom(
        cert: Option<&WorkloadCert>,
        server_ca: &CertificateDer<'static>,
        alpn: &[&str],
    ) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(server_ca.clone())?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()?;
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(MeshServerVerifier(verifier)));
        let mut config = match cert {
            Some(cert) => {
                let key =
                    PrivateKeyDer::try_from(cert.key_der.clone()).map_err(anyhow::Error::msg)?;
                builder.with_client_auth_cert(vec![cert.cert_der.clone()], key)?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

/// `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n` (PROXY protocol v1).
pub fn proxy_v1_header(src: SocketAddr, dst: SocketAddr) -> String {
    let fam = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {fam} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
}

/// How to reach the listener.
#[derive(Clone, Default)]
pub struct Dial {
    /// mTLS as a sidecar; `None`: plain text.
    pub tls: Option<ClientTls>,
    /// Send a PROXY v1 header first with this (source, destination).
    pub proxy: Option<(SocketAddr, SocketAddr)>,
    /// Connect from this local address (a 127.0.0.0/8 address): Envoy's
    /// `direct_remote_ip` (Istio's `source.ip`, `ipBlocks`) is always the
    /// physical peer, even when a PROXY header names another source.
    pub bind: Option<std::net::IpAddr>,
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

fn connect(addr: SocketAddr, dial: &Dial) -> io::Result<Conn> {
    let mut s = match dial.bind {
        None => TcpStream::connect_timeout(&addr, IO_TIMEOUT)?,
        Some(ip) => {
            let sock = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::STREAM,
                None,
            )?;
            sock.bind(&SocketAddr::new(ip, 0).into())?;
            sock.connect_timeout(&addr.into(), IO_TIMEOUT)?;
            sock.into()
        }
    };
    // The PROXY header, the TLS handshake and the request are separate small
    // writes: without NODELAY, Nagle and delayed ACKs add ~40 ms to each.
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    if let Some((src, dst)) = dial.proxy {
        s.write_all(proxy_v1_header(src, dst).as_bytes())?;
    }
    match &dial.tls {
        None => Ok(Conn::Plain(s)),
        Some(t) => {
            let name = ServerName::try_from("outbound.mesh.invalid")
                .map_err(|e| io::Error::other(e.to_string()))?;
            let mut c = rustls::ClientConnection::new(t.config.clone(), name)
                .map_err(|e| io::Error::other(e.to_string()))?;
            // Finish the handshake now so TLS failures surface as errors here.
            while c.is_handshaking() {
                c.complete_io(&mut s)?;
            }
            Ok(Conn::Tls(Box::new(rustls::StreamOwned::new(c, s))))
        }
    }
}

/// An HTTP response as the client saw it.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn read_response(r: &mut impl Read) -> io::Result<HttpResponse> {
    let mut raw = Vec::new();
    // Read until the response is complete: a Content-Length body ends after
    // that many bytes (Envoy keeps a connection it answered with a local reply
    // open for its delayed-close second, waiting for the client to close);
    // otherwise (chunked, or no length) the body ends at EOF. A TLS peer that
    // closes without close_notify is tolerated once bytes arrived.
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(n) = length
                && raw.len() >= end + 4 + n
            {
                break;
            }
        }
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if raw.is_empty() => return Err(e),
            Err(_) => break,
        }
    }
    if raw.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed without a response",
        ));
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other(format!("no header end in {text:?}")))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line in {text:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// Decodes a chunked body (Envoy's admin answers that way).
fn dechunk(mut rest: &str) -> io::Result<String> {
    let bad = || io::Error::other("malformed chunked body");
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or_else(bad)?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad())?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(after.get(..size).ok_or_else(bad)?);
        rest = after.get(size + 2..).ok_or_else(bad)?;
    }
}

/// Sends one HTTP/1.1 request (`Connection: close`) and reads the answer.
/// An `Err` means no HTTP answer: refused, reset, closed, or TLS failure.
pub fn http_request(
    addr: SocketAddr,
    dial: &Dial,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> io::Result<HttpResponse> {
    let mut c = connect(addr, dial)?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    c.write_all(req.as_bytes())?;
    c.flush()?;
    read_response(&mut c)
}

/// What a TCP client saw after sending its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpOutcome {
    /// These bytes came back (an echo upstream answers with the payload).
    Data(Vec<u8>),
    /// The connection was closed (or reset) before any byte came back.
    Closed(String),
}

/// Connects, sends `payload`, reads until as many bytes came back as were
/// sent or the peer closes.
pub fn tcp_exchange(addr: SocketAddr, dial: &Dial, payload: &[u8]) -> TcpOutcome {
    let mut c = match connect(addr, dial) {
        Ok(c) => c,
        Err(e) => return TcpOutcome::Closed(format!("connect/handshake: {e}")),
    };
    if let Err(e) = c.write_all(payload).and_then(|_| c.flush()) {
        return TcpOutcome::Closed(format!("write: {e}"));
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < payload.len() {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if got.is_empty() => return TcpOutcome::Closed(format!("read: {e}")),
            Err(_) => break,
        }
    }
    if let Conn::Plain(s) = &c {
        let _ = s.shutdown(Shutdown::Both);
    }
    if got.is_empty() {
        TcpOutcome::Closed("closed without data".into())
    } else {
        TcpOutcome::Data(got)
    }
}

/// Waits until the file at `path` has a line satisfying `pred` (returns it),
/// or `limit` passes (`None`). For access logs Envoy flushes on its own
/// schedule ([`EnvoyOptions::file_flush_interval_ms`]).
pub fn wait_for_file_line(
    path: &Path,
    limit: Duration,
    pred: impl Fn(&str) -> bool,
) -> Option<String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Some(l) = text.lines().find(|l| pred(l))
        {
            return Some(l.to_string());
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::park_timeout(POLL_INTERVAL);
    }
}
