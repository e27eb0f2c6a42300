//! One probe: the curl (or wget) argv, running it in the source container, and
//! reading back status, body and exit code.
//!
//! The argv is a vector handed to exec, never a shell string, so a path like
//! `/$(reboot);x` reaches curl literally. curl writes the body to stdout and,
//! with `-w`, a line carrying a per-process random marker and the status code
//! after it; the marker separates body and code reliably even when the body
//! has no trailing newline or contains digits. `--globoff` stops curl from
//! expanding `[]{}` in URLs. Which client a container has (curl, GNU wget,
//! busybox wget) is looked at once per container before its first probe
//! ([`ToolCache`]); the verdict never depends on it: busybox wget shows only
//! the status line of an error answer, so a bare 403 from it is checked
//! against the destination sidecar's RBAC log.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kubeplugin::Kube;
use kubeplugin::PluginError;
use kubeplugin::exec::{ExecLimits, ExecOutput, ExecTarget, exec};
use kubeplugin::resources::ISTIO_PROXY;
use meshpolicy::envoy::stats::{self, ClusterCounters};

use serde::Serialize;

use crate::ports::ProbeKind;
use crate::verdict::{
    Classified, HintContext, NO_TOOL_HINT, Observation, SidecarStats, Tool, Verdict, classify,
    wget_headers, wget_status,
};

/// The request a probe makes.
#[derive(Debug, Clone)]
pub struct Request {
    /// What it speaks to the port.
    pub kind: ProbeKind,
    pub url: String,
    pub method: String,
    pub headers: Vec<String>,
    pub timeout: Duration,
    /// Istio's outbound cluster of the Service port (TCP probes to a
    /// Service): whose counters the source sidecar is asked for.
    pub outbound_cluster: Option<String>,
}

/// The marker curl prints before the status code. Random per process, so a
/// body cannot forge it.
pub fn new_marker() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    format!("__npexec_{:016x}__", h.finish())
}

/// curl's `--max-time` argument.
pub fn max_time_arg(timeout: Duration) -> String {
    crate::verdict::fmt_secs(timeout.as_secs_f64())
}

/// `curl -sS --globoff --max-time T [-X M] [-H h]... -w '\nMARKER%{http_code} %{time_total}\n' URL`
/// (curl's own clock says how long a connection lasted: a source sidecar
/// closes a TCP connection after its connect timeout),
/// by the probe's kind: `--http2-prior-knowledge` for HTTP/2 (gRPC) ports,
/// `-k` for TLS (an `https://` URL: curl sends the Service host as SNI), and
/// for TCP a `gopher://` URL with no method or headers: curl connects,
/// sends `\r\n` (the first bytes, which Envoy's network RBAC decides on)
/// and prints what comes back until the server closes or `--max-time`.
pub fn curl_argv(req: &Request, marker: &str) -> Vec<String> {
    let mut argv: Vec<String> = vec![
        "curl".into(),
        "-sS".into(),
        "--globoff".into(),
        "--max-time".into(),
        max_time_arg(req.timeout),
    ];
    match req.kind {
        ProbeKind::Http2 => argv.push("--http2-prior-knowledge".into()),
        ProbeKind::Tls => argv.push("-k".into()),
        ProbeKind::Http => {}
        ProbeKind::Tcp => {
            argv.push("-w".into());
            argv.push(format!("\n{marker}%{{http_code}} %{{time_total}}\n"));
            argv.push(req.url.clone());
            return argv;
        }
    }
    if req.method != "GET" {
        argv.push("-X".into());
        argv.push(req.method.clone());
    }
    for h in &req.headers {
        argv.push("-H".into());
        argv.push(h.clone());
    }
    argv.push("-w".into());
    argv.push(format!("\n{marker}%{{http_code}} %{{time_total}}\n"));
    argv.push(req.url.clone());
    argv
}

/// `wget -nv -S [--content-on-error] -O - -T SECS -t 1 [--header h]... URL`:
/// wget speaks HTTP/1.1 only, so an HTTP/2 port gets HTTP/1.1 (Envoy's
/// HTTP filters decide it alike), a TLS port `https://` (GNU wget with
/// `--no-check-certificate`; busybox does not check), and a TCP port an
/// HTTP request as its first bytes (`http://`).
/// the same argv for busybox and GNU wget (busybox accepts and ignores `-nv`
/// and `-t`), plus `--content-on-error` for GNU wget (busybox refuses it) so
/// the body of an error answer reaches stdout. `-S` puts the status line and
/// headers on stderr; `-q` would hide them with GNU wget. GET only for busybox;
/// GNU wget takes `--method`.
pub fn wget_argv(req: &Request, client: Client) -> Vec<String> {
    let secs = req.timeout.as_secs_f64().ceil().max(1.0) as u64;
    let mut argv: Vec<String> = vec!["wget".into(), "-nv".into(), "-S".into()];
    if client == Client::GnuWget {
        argv.push("--content-on-error".into());
        if req.kind == ProbeKind::Tls {
            argv.push("--no-check-certificate".into());
        }
        if req.method != "GET" {
            argv.push("--method".into());
            argv.push(req.method.clone());
        }
    }
    argv.extend([
        "-O".into(),
        "-".into(),
        "-T".into(),
        secs.to_string(),
        "-t".into(),
        "1".into(),
    ]);
    for h in &req.headers {
        argv.push("--header".into());
        argv.push(h.clone());
    }
    argv.push(match req.url.split_once("://") {
        Some((_, rest)) if req.kind == ProbeKind::Tcp => format!("http://{rest}"),
        _ => req.url.clone(),
    });
    argv
}

/// Splits curl's stdout into body and status using the marker.
/// Returns (body, status) where status is None for `000` or a missing marker.
pub fn parse_curl_stdout(head: &[u8], end: &[u8], marker: &str) -> (Vec<u8>, Option<u16>) {
    let needle = format!("\n{marker}");
    let find = |hay: &[u8]| -> Option<usize> {
        hay.windows(needle.len())
            .rposition(|w| w == needle.as_bytes())
    };
    let status_after = |hay: &[u8], pos: usize| -> Option<u16> {
        let digits: String = hay[pos + needle.len()..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .map(|&b| b as char)
            .collect();
        digits.parse::<u16>().ok().filter(|&c| c != 0)
    };
    if let Some(pos) = find(head) {
        return (head[..pos].to_vec(), status_after(head, pos));
    }
    // Long body: the marker sits in the end of the stream; the body is the head.
    if let Some(pos) = find(end) {
        return (head.to_vec(), status_after(end, pos));
    }
    (head.to_vec(), None)
}

/// The `time_total` after the status code on curl's marker line (TCP probes).
pub fn curl_time_total(head: &[u8], end: &[u8], marker: &str) -> Option<f64> {
    let needle = format!("\n{marker}");
    let after = |hay: &[u8]| -> Option<f64> {
        let pos = hay
            .windows(needle.len())
            .rposition(|w| w == needle.as_bytes())?;
        let text = String::from_utf8_lossy(&hay[pos + needle.len()..]);
        let line = text.lines().next()?;
        line.split_once(' ')?.1.trim().parse().ok()
    };
    after(head).or_else(|| after(end))
}

/// Where a probe runs from.
#[derive(Debug, Clone)]
pub struct Source {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub sidecar: bool,
    /// The client the container has (None: neither curl nor wget, when
    /// `looked`).
    pub client: Option<Client>,
    /// Whether `client` was looked at (else the first probe looks).
    pub looked: bool,
}

/// The HTTP client in a container. The two wgets differ in what they show of
/// an error answer (busybox: only the status line), so the probe's argv and
/// its reading differ; the verdict must not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Client {
    Curl,
    GnuWget,
    BusyboxWget,
}

impl Client {
    /// The executable.
    pub fn tool(self) -> Tool {
        match self {
            Client::Curl => Tool::Curl,
            Client::GnuWget | Client::BusyboxWget => Tool::Wget,
        }
    }

    /// `curl`, `wget (GNU)`, `wget (busybox)`.
    pub fn label(self) -> &'static str {
        match self {
            Client::Curl => "curl",
            Client::GnuWget => "wget (GNU)",
            Client::BusyboxWget => "wget (busybox)",
        }
    }
}

/// The destination of a Service probe: where its sidecars' RBAC logs are,
/// to corroborate a 403 that busybox wget shows without headers or body.
#[derive(Debug, Clone)]
pub struct Destination {
    pub namespace: String,
    pub selector: BTreeMap<String, String>,
}

/// The raw facts of a finished probe.
#[derive(Debug, Clone)]
pub struct ProbeRun {
    pub classified: Classified,
    pub tool: Option<Tool>,
    pub http_status: Option<u16>,
    pub exit: Option<i32>,
    pub body: Vec<u8>,
    pub duration: Duration,
    /// The source sidecar's counters around the probe, when read.
    pub sidecar_stats: Option<SidecarStats>,
}

impl ProbeRun {
    /// A probe decided without running a client (no ready endpoint, no
    /// usable source pod, the exec failing): the verdict and nothing seen.
    pub fn not_run(verdict: Verdict, detail: String, hint: Option<String>) -> Self {
        Self {
            classified: Classified {
                verdict,
                detail,
                hint,
            },
            tool: None,
            http_status: None,
            exit: None,
            body: Vec::new(),
            duration: Duration::ZERO,
            sidecar_stats: None,
        }
    }
}

/// Remembers which client each container has (None: neither), so each
/// container is looked at once per run.
#[derive(Debug, Clone, Default)]
pub struct ToolCache(Arc<Mutex<HashMap<ContainerKey, Option<Client>>>>);

/// (namespace, pod, container).
type ContainerKey = (String, String, String);

impl ToolCache {
    fn key(t: &ExecTarget) -> ContainerKey {
        (t.namespace.clone(), t.pod.clone(), t.container.clone())
    }
    fn get(&self, t: &ExecTarget) -> Option<Option<Client>> {
        self.0.lock().ok()?.get(&Self::key(t)).copied()
    }
    fn set(&self, t: &ExecTarget, c: Option<Client>) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(Self::key(t), c);
        }
    }

    /// The client of `target`, looked at once: `curl --version`, else
    /// `wget --version` (GNU wget prints `GNU Wget ...`; busybox's has no
    /// `--version` but exists).
    pub async fn client(
        &self,
        kube: &Kube,
        target: &ExecTarget,
    ) -> Result<Option<Client>, PluginError> {
        if let Some(c) = self.get(target) {
            return Ok(c);
        }
        let c = detect_client(kube, target).await?;
        self.set(target, c);
        Ok(c)
    }
}

/// How long looking at a container's tools may take.
const LOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// See [`ToolCache::client`].
pub async fn detect_client(
    kube: &Kube,
    target: &ExecTarget,
) -> Result<Option<Client>, PluginError> {
    let argv = |tool: &str| vec![tool.to_string(), "--version".to_string()];
    // An exec that ends without a status (cut stream) says nothing about the
    // tools: it is an exec failure, not "no tool".
    let cut = |out: &ExecOutput| PluginError::Exec {
        namespace: target.namespace.clone(),
        pod: target.pod.clone(),
        container: target.container.clone(),
        message: status_text(out),
    };
    let out = exec_bounded(kube, target, &argv("curl"), LOOK_TIMEOUT).await?;
    if !out.command_not_found() {
        return match out.exit_code {
            Some(_) => Ok(Some(Client::Curl)),
            None => Err(cut(&out)),
        };
    }
    let out = exec_bounded(kube, target, &argv("wget"), LOOK_TIMEOUT).await?;
    if out.command_not_found() {
        return Ok(None);
    }
    if out.exit_code.is_none() {
        return Err(cut(&out));
    }
    let text = String::from_utf8_lossy(&out.stdout.head);
    Ok(Some(if text.starts_with("GNU Wget") {
        Client::GnuWget
    } else {
        Client::BusyboxWget
    }))
}

/// Errors that are the same for every probe and end the run (exit 3).
pub fn is_systemic(e: &PluginError) -> bool {
    matches!(
        e,
        PluginError::Forbidden { .. }
            | PluginError::Unreachable { .. }
            | PluginError::Config { .. }
    )
}

const LIMITS: ExecLimits = ExecLimits {
    head: 64 * 1024,
    tail: 4096,
};

/// How long after the probe's own timeout (curl --max-time, wget -T) an exec
/// may still run before it is given up: a stalled or half-closed exec stream
/// must end in `exec-failed`, not hang the run.
pub const EXEC_GRACE: Duration = Duration::from_secs(5);

/// [`exec`] bounded by `timeout` + [`EXEC_GRACE`].
async fn exec_bounded(
    kube: &Kube,
    target: &ExecTarget,
    argv: &[String],
    timeout: Duration,
) -> Result<ExecOutput, PluginError> {
    let deadline = timeout.saturating_add(EXEC_GRACE);
    match tokio::time::timeout(deadline, exec(kube, target, argv, LIMITS)).await {
        Ok(r) => r,
        Err(_) => Err(PluginError::Exec {
            namespace: target.namespace.clone(),
            pod: target.pod.clone(),
            container: target.container.clone(),
            message: format!(
                "the exec stream gave no status within {}s (stalled or cut connection)",
                deadline.as_secs()
            ),
        }),
    }
}

/// Runs one probe. Exec-level failures that concern only this probe become
/// an `exec-failed` verdict; systemic ones (forbidden, unreachable) are errors.
pub async fn run_probe(
    kube: &Kube,
    source: &Source,
    req: &Request,
    ctx: &HintContext,
    marker: &str,
    tools: &ToolCache,
    destination: Option<&Destination>,
) -> Result<ProbeRun, PluginError> {
    let start = Instant::now();
    let started_at = jiff::Timestamp::now();
    let target = ExecTarget {
        namespace: source.namespace.clone(),
        pod: source.pod.clone(),
        container: source.container.clone(),
    };
    let exec_failed = |detail: String, hint: Option<String>, tool| ProbeRun {
        tool,
        duration: start.elapsed(),
        ..ProbeRun::not_run(Verdict::ExecFailed, detail, hint)
    };
    let base_obs = Observation {
        kind: req.kind,
        source_sidecar: source.sidecar,
        destination_ambient: ctx.destination_ambient,
        timeout_secs: req.timeout.as_secs_f64(),
        ..Default::default()
    };
    let client = match (source.client, source.looked) {
        (c, true) => c,
        (_, false) => match tools.client(kube, &target).await {
            Ok(c) => c,
            Err(e) if is_systemic(&e) => return Err(e),
            Err(e) => return Ok(exec_failed(e.to_string(), e.hint(), None)),
        },
    };
    let Some(client) = client else {
        return Ok(exec_failed(
            format!(
                "container {} of pod {}/{} has neither curl nor wget",
                source.container, source.namespace, source.pod
            ),
            Some(NO_TOOL_HINT.into()),
            None,
        ));
    };

    if req.method != "GET" && client == Client::BusyboxWget {
        return Ok(exec_failed(
            format!(
                "container {} has busybox wget, which only does GET (asked {})",
                source.container, req.method
            ),
            Some(NO_TOOL_HINT.into()),
            Some(Tool::Wget),
        ));
    }
    // A TCP probe through the source's sidecar: that sidecar accepts every
    // connection, so its outbound cluster's counters say whether this one
    // got anywhere (read before and after, whatever the client).
    let stats_cluster = req
        .outbound_cluster
        .as_deref()
        .filter(|_| req.kind == ProbeKind::Tcp && source.sidecar);
    let before = match stats_cluster {
        Some(c) => Some(sidecar_counters(kube, source, c).await),
        None => None,
    };
    if client == Client::Curl {
        let out = match exec_bounded(kube, &target, &curl_argv(req, marker), req.timeout).await {
            Ok(o) => o,
            Err(e) if is_systemic(&e) => return Err(e),
            Err(e) => return Ok(exec_failed(e.to_string(), e.hint(), Some(Tool::Curl))),
        };
        let sidecar_stats = stats_after(kube, source, stats_cluster, before).await;
        let (body, status) = parse_curl_stdout(&out.stdout.head, &out.stdout.end(), marker);
        let mut obs = Observation {
            exit: out.exit_code,
            http_status: status,
            body: body.clone(),
            stderr: String::from_utf8_lossy(&out.stderr.head).into_owned(),
            elapsed_secs: curl_time_total(&out.stdout.head, &out.stdout.end(), marker)
                .unwrap_or_else(|| start.elapsed().as_secs_f64()),
            sidecar_stats: sidecar_stats.clone(),
            ..base_obs.clone()
        };
        if needs_rbac_log(&obs)
            && let Some(dest) = destination
        {
            obs.rbac_logged = Some(rbac_denial_logged(kube, source, req, dest, started_at).await);
        }
        if out.exit_code.is_none() {
            return Ok(exec_failed(
                status_text(&out),
                Some("the command did not run to completion; check the pod".into()),
                Some(Tool::Curl),
            ));
        }
        return Ok(ProbeRun {
            classified: classify(&obs, ctx),
            tool: Some(Tool::Curl),
            http_status: status,
            exit: out.exit_code,
            body,
            duration: start.elapsed(),
            sidecar_stats,
        });
    }

    let out = match exec_bounded(kube, &target, &wget_argv(req, client), req.timeout).await {
        Ok(o) => o,
        Err(e) if is_systemic(&e) => return Err(e),
        Err(e) => return Ok(exec_failed(e.to_string(), e.hint(), Some(Tool::Wget))),
    };
    if out.exit_code.is_none() {
        return Ok(exec_failed(
            status_text(&out),
            Some("the command did not run to completion; check the pod".into()),
            Some(Tool::Wget),
        ));
    }
    let sidecar_stats = stats_after(kube, source, stats_cluster, before).await;
    let stderr = String::from_utf8_lossy(&out.stderr.head).into_owned();
    let status = wget_status(&stderr);
    let headers = wget_headers(&stderr);
    let body = out.stdout.head.clone();
    let mut obs = Observation {
        exit: out.exit_code,
        http_status: status,
        body: body.clone(),
        headers,
        stderr,
        wget: true,
        elapsed_secs: start.elapsed().as_secs_f64(),
        sidecar_stats: sidecar_stats.clone(),
        ..base_obs
    };
    if needs_rbac_log(&obs)
        && let Some(dest) = destination
    {
        obs.rbac_logged = Some(rbac_denial_logged(kube, source, req, dest, started_at).await);
    }
    Ok(ProbeRun {
        classified: classify(&obs, ctx),
        tool: Some(Tool::Wget),
        http_status: status,
        exit: out.exit_code,
        body,
        duration: start.elapsed(),
        sidecar_stats,
    })
}

/// The counters after a probe, with those read before it (None: not read).
async fn stats_after(
    kube: &Kube,
    source: &Source,
    cluster: Option<&str>,
    before: Option<Result<ClusterCounters, String>>,
) -> Option<SidecarStats> {
    let (cluster, before) = (cluster?, before?);
    let after = match &before {
        Ok(_) => sidecar_counters(kube, source, cluster).await,
        Err(e) => Err(e.clone()),
    };
    Some(SidecarStats {
        cluster: cluster.to_string(),
        error: after.as_ref().err().cloned(),
        before: before.ok(),
        after: after.ok(),
    })
}

/// How long reading the sidecar's counters may take.
const STATS_TIMEOUT: Duration = Duration::from_secs(5);

/// The counters of `cluster` in the source pod's sidecar, read with
/// `pilot-agent request GET stats?filter=...` in its `istio-proxy`
/// container (an argv vector; the filter is meshpolicy's escaped regex);
/// why not when they cannot be read.
async fn sidecar_counters(
    kube: &Kube,
    source: &Source,
    cluster: &str,
) -> Result<ClusterCounters, String> {
    let target = ExecTarget {
        namespace: source.namespace.clone(),
        pod: source.pod.clone(),
        container: ISTIO_PROXY.to_string(),
    };
    let argv: Vec<String> = ["pilot-agent", "request", "GET"]
        .into_iter()
        .map(String::from)
        .chain([stats::cluster_stats_path(cluster)])
        .collect();
    let out = exec_bounded(kube, &target, &argv, STATS_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    if out.command_not_found() {
        return Err("istio-proxy has no pilot-agent".into());
    }
    if out.exit_code != Some(0) {
        return Err(format!(
            "pilot-agent request exited {}: {}",
            out.exit_code
                .map_or("without a status".into(), |c| c.to_string()),
            String::from_utf8_lossy(&out.stderr.head).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout.head);
    stats::cluster_counters(&text, cluster)
        .ok_or_else(|| format!("the sidecar has no counters for cluster {cluster}"))
}

/// Whether the destination sidecar's log decides this observation: a 403
/// seen without headers or body (busybox wget), or a connection closed
/// without an answer (network RBAC, or an mTLS mismatch).
fn needs_rbac_log(obs: &Observation) -> bool {
    (obs.http_status == Some(403) && obs.headers.is_empty() && obs.body.is_empty())
        || crate::verdict::closed_without_answer(obs)
        || crate::verdict::closed_by_server(obs)
}

/// The request's path and authority as curl and wget send them (`Host`
/// carries the port unless it is the scheme's default).
fn path_and_authority(url: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let path = match tail.split('#').next().unwrap_or("") {
        "" => "/".to_string(),
        t if t.starts_with('?') => format!("/{t}"),
        t => t.to_string(),
    };
    let default = if scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else {
        ":80"
    };
    let authority = authority.strip_suffix(default).unwrap_or(authority);
    (path, authority.to_string())
}

/// Whether a sidecar of `dest` logged an enforced RBAC denial for this
/// probe: since `since` (less [`crate::sidecar::SLACK`]), from the source
/// pod's address when the log gives one (`sourceIP:` of the checking entry,
/// or the access log's client), and for an HTTP probe for its path and
/// authority when the checking entry names them. Concurrent probes from
/// one pod to the same URL are still told apart by time only (the probe
/// sends no id of its own). The log is read a few times for a short while:
/// the kubelet may not have the line yet when the client has exited.
async fn rbac_denial_logged(
    kube: &Kube,
    source: &Source,
    req: &Request,
    dest: &Destination,
    since: jiff::Timestamp,
) -> bool {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, ListParams};
    let source_ip = Api::<Pod>::namespaced(kube.client.clone(), &source.namespace)
        .get(&source.pod)
        .await
        .ok()
        .and_then(|p| p.status?.pod_ip)
        .and_then(|ip| ip.parse().ok());
    let (path, authority) = path_and_authority(&req.url);
    let selector: Vec<String> = dest
        .selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if selector.is_empty() {
        return false;
    }
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), &dest.namespace);
    let Ok(pods) = api
        .list(&ListParams::default().labels(&selector.join(",")))
        .await
    else {
        return false;
    };
    let slack = jiff::SignedDuration::try_from(crate::sidecar::SLACK).unwrap_or_default();
    let from = since.checked_sub(slack).unwrap_or(since);
    for attempt in 0..5 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let now = jiff::Timestamp::now();
        for pod in pods
            .items
            .iter()
            .filter(|p| kubeplugin::resources::has_sidecar(p))
        {
            let name = kubeplugin::resources::pod_name(pod);
            let Ok(mut lines) = crate::sidecar::fetch(kube, &dest.namespace, name, from).await
            else {
                continue;
            };
            if req.kind.speaks_http() {
                lines.retain(|l| l.could_be(&path, &authority));
            }
            let found =
                crate::sidecar::attribute(&lines, since, now, source_ip, Verdict::DeniedRbac)
                    .iter()
                    .any(|d| d.denied && d.engine == crate::sidecar::EnvoyEngine::Enforced);
            if found {
                return true;
            }
        }
    }
    false
}

fn status_text(out: &ExecOutput) -> String {
    out.status_message
        .clone()
        .unwrap_or_else(|| "exec ended without an exit code".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> Request {
        Request {
            kind: ProbeKind::Http,
            url: "http://svc.ns.svc.cluster.local:80/$(reboot);x".into(),
            method: "GET".into(),
            headers: vec!["X-Test: a b".into()],
            timeout: Duration::from_millis(2500),
            outbound_cluster: None,
        }
    }

    #[test]
    fn curl_argv_is_a_vector_with_the_url_literal() {
        let argv = curl_argv(&req(), "__m__");
        assert_eq!(argv[0], "curl");
        assert_eq!(
            argv.last().unwrap(),
            "http://svc.ns.svc.cluster.local:80/$(reboot);x"
        );
        let i = argv.iter().position(|a| a == "--max-time").unwrap();
        assert_eq!(argv[i + 1], "2.5");
        assert!(argv.contains(&"--globoff".to_string()));
        assert!(argv.contains(&"X-Test: a b".to_string()));
        assert!(argv.contains(&"\n__m__%{http_code} %{time_total}\n".to_string()));
        assert!(!argv.contains(&"-X".to_string()));
        let mut r = req();
        r.method = "POST".into();
        let argv = curl_argv(&r, "__m__");
        let i = argv.iter().position(|a| a == "-X").unwrap();
        assert_eq!(argv[i + 1], "POST");
    }

    #[test]
    fn wget_argv_rounds_timeout_up() {
        let argv = wget_argv(&req(), Client::BusyboxWget);
        assert_eq!(argv[..3], ["wget", "-nv", "-S"]);
        let i = argv.iter().position(|a| a == "-T").unwrap();
        assert_eq!(argv[i + 1], "3");
        assert!(argv.windows(2).any(|w| w == ["-t", "1"]));
        assert!(!argv.contains(&"--content-on-error".to_string()));
        assert_eq!(argv.last().unwrap(), &req().url);
        let argv = wget_argv(&req(), Client::GnuWget);
        assert!(argv.contains(&"--content-on-error".to_string()));
    }

    #[test]
    fn parses_body_and_status() {
        let m = "__npexec_1__";
        let out = format!("Hello world - np-test-nginx-2!\n{m}200\n");
        let (body, status) = parse_curl_stdout(out.as_bytes(), out.as_bytes(), m);
        assert_eq!(body, b"Hello world - np-test-nginx-2!");
        assert_eq!(status, Some(200));

        // A body without newline that ends in digits, and one that fakes a status line.
        let out = format!("12345\n__other__404\n{m}403\n");
        let (body, status) = parse_curl_stdout(out.as_bytes(), out.as_bytes(), m);
        assert_eq!(body, b"12345\n__other__404");
        assert_eq!(status, Some(403));

        // No response: 000.
        let out = format!("\n{m}000\n");
        let (body, status) = parse_curl_stdout(out.as_bytes(), out.as_bytes(), m);
        assert!(body.is_empty());
        assert_eq!(status, None);

        // Marker only in the tail (long body).
        let head = b"aaaa".to_vec();
        let end = format!("zzzz\n{m}204\n");
        let (body, status) = parse_curl_stdout(&head, end.as_bytes(), m);
        assert_eq!(body, head);
        assert_eq!(status, Some(204));

        // No marker at all.
        let (_, status) = parse_curl_stdout(b"junk", b"junk", m);
        assert_eq!(status, None);

        // A TCP probe's line: status then curl's time_total.
        let out = format!("\n{m}000 10.002345\n");
        let (body, status) = parse_curl_stdout(out.as_bytes(), out.as_bytes(), m);
        assert_eq!((body.is_empty(), status), (true, None));
        assert_eq!(
            curl_time_total(out.as_bytes(), out.as_bytes(), m),
            Some(10.002345)
        );
        assert_eq!(curl_time_total(b"x", b"x", m), None);
    }

    #[test]
    fn path_and_authority_as_sent() {
        let pa = |u: &str| path_and_authority(u);
        assert_eq!(
            pa("http://svc.ns.svc.cluster.local:80/a?b"),
            ("/a?b".into(), "svc.ns.svc.cluster.local".into())
        );
        assert_eq!(
            pa("http://svc.ns.svc.cluster.local:8080"),
            ("/".into(), "svc.ns.svc.cluster.local:8080".into())
        );
        assert_eq!(pa("https://h:443/x#f"), ("/x".into(), "h".into()));
    }

    #[test]
    fn markers_differ_per_call() {
        assert_ne!(new_marker(), new_marker());
    }
}
