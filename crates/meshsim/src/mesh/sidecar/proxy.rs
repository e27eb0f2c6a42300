//! One sidecar's Envoy process: started, watched, restarted, stopped.
//!
//! Envoy runs with `--concurrency 1`, hot restart off, its admin on
//! 127.0.0.1 with a kernel-chosen port (read from `--admin-address-path`),
//! Istio's log layout (`--log-format` with real TAB characters) and the
//! log levels pilot-agent would pass from the pod's annotations. Its stdout
//! (access log) and stderr (Envoy's own log) are read through pipes and
//! appended, line by line in arrival order, to the pod's `istio-proxy`
//! container log. When the process dies while the pod still runs, it is
//! started again and the container's `restartCount` goes up, as a kubelet
//! would do; stopping kills it (each Envoy is its own process group leader,
//! so a terminal's Ctrl-C reaches meshsim only, which then stops them).
//!
//! No Envoy may outlive meshsim, even when meshsim is killed with SIGKILL
//! and has no chance to clean up. Envoy therefore runs under a small fixed
//! `sh` watchdog ([`WATCHDOG`]) whose standard input is a pipe from meshsim:
//! when that pipe closes (meshsim stopped the sidecar, or died), the
//! watchdog kills Envoy; when Envoy exits, the watchdog exits with its
//! status.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::PROXY_CONTAINER;
use crate::logs::LogStore;

/// Istio's proxy log layout (pilot-agent's `--log-format`), real TABs.
pub const ISTIO_LOG_FORMAT: &str = "%Y-%m-%dT%T.%fZ\t%l\tenvoy %n %g:%#\t%v\tthread=%t";

/// The watchdog: runs `"$@"` (Envoy and its arguments, never interpolated)
/// and kills it when standard input reaches end of file.
pub const WATCHDOG: &str = r#"exec 3<&0
"$@" </dev/null 3<&- & p=$!
{ read -r _ <&3; kill -KILL "$p" 2>/dev/null; } &
w=$!
wait "$p"; s=$?
kill "$w" 2>/dev/null
exit "$s""#;

/// Where a running Envoy listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    pub admin: SocketAddr,
    /// The inbound listener (PROXY protocol first).
    pub inbound: SocketAddr,
}

/// How to start one Envoy.
#[derive(Debug, Clone)]
pub struct Launch {
    pub envoy: PathBuf,
    pub bootstrap: PathBuf,
    pub admin_path: PathBuf,
    /// `-l` level.
    pub level: String,
    /// `--component-log-level`.
    pub component_levels: String,
}

impl Launch {
    fn args(&self) -> Vec<String> {
        vec![
            "-c".into(),
            self.bootstrap.to_string_lossy().into_owned(),
            "--concurrency".into(),
            "1".into(),
            "--disable-hot-restart".into(),
            "--drain-time-s".into(),
            "1".into(),
            // Istio passes 1000; access log lines here reach the pipe (and
            // the istio-proxy log) within a few milliseconds instead.
            "--file-flush-interval-msec".into(),
            "5".into(),
            "--admin-address-path".into(),
            self.admin_path.to_string_lossy().into_owned(),
            "--log-format".into(),
            ISTIO_LOG_FORMAT.into(),
            "-l".into(),
            self.level.clone(),
            "--component-log-level".into(),
            self.component_levels.clone(),
        ]
    }
}

/// A running (or restarting) sidecar Envoy.
#[derive(Debug)]
pub struct Proxy {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    pub dir: PathBuf,
    addresses: watch::Sender<Option<Addresses>>,
    pid: Mutex<Option<u32>>,
    stop: CancellationToken,
    /// Serializes configuration writes.
    pub config: tokio::sync::Mutex<super::Written>,
}

impl Proxy {
    pub(super) fn new(
        namespace: &str,
        pod: &str,
        uid: &str,
        dir: PathBuf,
        parent: &CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Proxy {
            namespace: namespace.into(),
            pod: pod.into(),
            uid: uid.into(),
            dir,
            addresses: watch::channel(None).0,
            pid: Mutex::new(None),
            stop: parent.child_token(),
            config: tokio::sync::Mutex::new(super::Written::default()),
        })
    }

    /// The process id of the current Envoy's watchdog (Envoy is its only
    /// child), if one runs.
    pub fn pid(&self) -> Option<u32> {
        *self.pid.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The addresses once Envoy is ready, waiting up to `limit`.
    pub async fn ready(&self, limit: Duration) -> Option<Addresses> {
        let mut rx = self.addresses.subscribe();
        let wait = rx.wait_for(Option::is_some);
        match tokio::time::timeout(limit, wait).await {
            Ok(Ok(a)) => *a,
            _ => None,
        }
    }

    /// The addresses now (None while starting or restarting).
    pub fn addresses(&self) -> Option<Addresses> {
        *self.addresses.borrow()
    }

    /// Cancelled when this sidecar stops (its application servers stop with it).
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Stops the process for good.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

async fn pump<R: AsyncRead + Unpin>(r: R, logs: LogStore, ns: String, pod: String) {
    let mut r = BufReader::new(r);
    let mut line = Vec::new();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                if text.contains("inotify_fd_ >= 0") {
                    tracing::error!(
                        "meshsim: the Envoy of {ns}/{pod} cannot watch its listener file: this user has no inotify instance left (each sidecar needs one; see /proc/sys/fs/inotify/max_user_instances, often 128, and raise it with sysctl for more sidecars)"
                    );
                }
                logs.append(
                    &ns,
                    &pod,
                    PROXY_CONTAINER,
                    text.trim_end_matches(['\n', '\r']),
                );
            }
        }
    }
}

/// Asks Envoy's admin for the inbound listener's bound address.
async fn inbound_address(admin: SocketAddr) -> Option<SocketAddr> {
    let body = super::admin_get(admin, "/listeners?format=json").await?;
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    v["listener_statuses"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == super::config::INBOUND_LISTENER)
        .and_then(|l| {
            let sa = &l["local_address"]["socket_address"];
            let port = u16::try_from(sa["port_value"].as_u64()?).ok()?;
            (port != 0).then(|| SocketAddr::from(([127, 0, 0, 1], port)))
        })
}

async fn wait_ready(admin_path: &Path, stop: &CancellationToken) -> Option<Addresses> {
    // Envoy writes the admin address file once the admin listens, and binds
    // the inbound listener once LDS is applied: both are polled (Envoy
    // announces neither on a channel meshsim could wait on).
    for _ in 0..2000 {
        if stop.is_cancelled() {
            return None;
        }
        if let Some(admin) = std::fs::read_to_string(admin_path)
            .ok()
            .and_then(|s| s.trim().parse::<SocketAddr>().ok())
            && let Some(inbound) = inbound_address(admin).await
        {
            return Some(Addresses { admin, inbound });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// Runs Envoy until `proxy` is stopped or `shutdown` fires, restarting it
/// when it dies; `restarted` is told about each restart.
pub async fn supervise(
    proxy: Arc<Proxy>,
    launch: Launch,
    logs: LogStore,
    shutdown: CancellationToken,
    restarted: Arc<dyn Fn(&Proxy) + Send + Sync>,
) {
    let mut failures_in_a_row = 0u32;
    loop {
        let _ = std::fs::remove_file(&launch.admin_path);
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(WATCHDOG)
            .arg("meshsim-envoy-watchdog")
            .arg(&launch.envoy)
            .args(launch.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(
                    "meshsim: starting Envoy {} for {}/{}: {e}",
                    launch.envoy.display(),
                    proxy.namespace,
                    proxy.pod
                );
                return;
            }
        };
        // Held while Envoy should run: closing it makes the watchdog kill Envoy.
        let lifeline = child.stdin.take();
        *proxy.pid.lock().unwrap_or_else(|p| p.into_inner()) = child.id();
        let (ns, pod) = (&proxy.namespace, &proxy.pod);
        let out = child
            .stdout
            .take()
            .map(|o| pump(o, logs.clone(), ns.clone(), pod.clone()));
        let err = child
            .stderr
            .take()
            .map(|e| pump(e, logs.clone(), ns.clone(), pod.clone()));
        let pumps = [out.map(tokio::spawn), err.map(tokio::spawn)];
        let ready = async {
            if let Some(a) = wait_ready(&launch.admin_path, &proxy.stop).await {
                proxy.addresses.send_replace(Some(a));
            }
            std::future::pending::<()>().await;
        };
        let stopped = tokio::select! {
            _ = proxy.stop.cancelled() => true,
            _ = shutdown.cancelled() => true,
            _ = ready => false,
            status = child.wait() => {
                tracing::warn!("meshsim: Envoy of {}/{} exited ({status:?})", proxy.namespace, proxy.pod);
                false
            }
        };
        proxy.addresses.send_replace(None);
        drop(lifeline);
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_err()
        {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        *proxy.pid.lock().unwrap_or_else(|p| p.into_inner()) = None;
        for p in pumps.into_iter().flatten() {
            let _ = p.await;
        }
        if stopped || proxy.stop.is_cancelled() || shutdown.is_cancelled() {
            return;
        }
        restarted(&proxy);
        failures_in_a_row += 1;
        // A kubelet backs off a crashing container; a few quick restarts,
        // then slower ones, keep a broken configuration from spinning.
        if failures_in_a_row > 3 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = proxy.stop.cancelled() => return,
                _ = shutdown.cancelled() => return,
            }
        }
    }
}
