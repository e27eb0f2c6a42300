//! meshsim-istioctl: a test double for the external `istioctl` program.
//!
//! The plugins call istioctl (found on PATH) to ask what a sidecar's Envoy
//! loaded, and the walk-through runs it by hand. Tests and `make demo` link
//! this binary as `istioctl` in a PATH directory of their own, so that those
//! calls work against meshsim without a real Istio. It implements the few
//! commands the project uses (`x authz check`, `proxy-config log`,
//! `version --remote=false`, and for ambient mode `ztunnel-config
//! workloads|policies` and `waypoint list|status`, computed from the API
//! objects with meshpolicy's ambient rules) with istioctl 1.25's output and error texts,
//! reading the cluster through the same kubeconfig flags and environment and
//! reaching the sidecar's admin API through the API server's exec endpoint
//! (`pilot-agent request ...` in `istio-proxy`). Anything else is refused.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use meshsim::store::labels_of;

const VERSION: &str = "1.25.0";

const HELP: &str = "meshsim-istioctl: a TEST DOUBLE for the external istioctl program (Istio's
command line), shipped with meshsim for demos and end-to-end tests. It is not
istioctl: it answers a few istioctl 1.25 commands against a meshsim cluster
(reading the simulated sidecars' Envoy admin API through kubectl-style exec),
with the same output and error texts. Install the real istioctl for real
clusters.

Usage:
  istioctl [command]

Available Commands:
  experimental (x)  authz check POD[.NAMESPACE] | -f CONFIG_DUMP_FILE
  proxy-config (pc) log POD[.NAMESPACE] [--level LOGGER:LEVEL,...] [-r|--reset]
  ztunnel-config (zc) workloads [--workload-namespace NS] | policies [--policy-namespace NS]
  waypoint          generate [-n NAMESPACE] [--for service|workload|all|none] [--name NAME]
                    | list [-n NAMESPACE | -A] | status [-n NAMESPACE]
  version           --remote=false prints the client version

Flags:
  -c, --kubeconfig string   Kubernetes configuration file
      --context string      Kubernetes configuration context
  -n, --namespace string    Kubernetes namespace
  -i, --istioNamespace string  Istio system namespace (default \"istio-system\")
  -h, --help                help for istioctl
";

/// An error as istioctl reports it (`Error: ...` on stderr, exit 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct CliError(String);

fn err(msg: impl Into<String>) -> CliError {
    CliError(msg.into())
}

/// Flags every command accepts, and the positional arguments left.
#[derive(Debug, Default)]
struct Parsed {
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    namespace: Option<String>,
    file: Option<String>,
    level: Option<String>,
    reset: bool,
    remote: Option<bool>,
    all_namespaces: bool,
    workload_namespace: Option<String>,
    policy_namespace: Option<String>,
    traffic_for: Option<String>,
    waypoint_name: Option<String>,
    help: bool,
    positional: Vec<String>,
}

fn parse(args: &[String]) -> Result<Parsed, CliError> {
    let mut p = Parsed::default();
    let mut i = 0;
    let value = |i: &mut usize, flag: &str, inline: Option<&str>| -> Result<String, CliError> {
        if let Some(v) = inline {
            return Ok(v.to_string());
        }
        *i += 1;
        args.get(*i)
            .cloned()
            .ok_or_else(|| err(format!("flag needs an argument: {flag}")))
    };
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--" {
            p.positional.extend(args[i + 1..].iter().cloned());
            break;
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with('-') => (n, Some(v)),
            _ => (a, None),
        };
        match name {
            "-h" | "--help" => p.help = true,
            "-c" | "--kubeconfig" => p.kubeconfig = Some(value(&mut i, name, inline)?.into()),
            "--context" => p.context = Some(value(&mut i, name, inline)?),
            "-n" | "--namespace" => p.namespace = Some(value(&mut i, name, inline)?),
            "-i" | "--istioNamespace" | "--istio-namespace" => {
                value(&mut i, name, inline)?;
            }
            "-f" | "--file" => p.file = Some(value(&mut i, name, inline)?),
            "--level" => p.level = Some(value(&mut i, name, inline)?),
            "-r" | "--reset" => p.reset = inline.is_none_or(|v| v == "true"),
            "--remote" => {
                p.remote = Some(match inline {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some(v) => {
                        return Err(err(format!(
                            "invalid argument \"{v}\" for \"--remote\" flag: strconv.ParseBool: parsing \"{v}\": invalid syntax"
                        )));
                    }
                })
            }
            "-A" | "--all-namespaces" => p.all_namespaces = inline.is_none_or(|v| v == "true"),
            "--workload-namespace" => p.workload_namespace = Some(value(&mut i, name, inline)?),
            "--policy-namespace" => p.policy_namespace = Some(value(&mut i, name, inline)?),
            "--for" => p.traffic_for = Some(value(&mut i, name, inline)?),
            "--name" => p.waypoint_name = Some(value(&mut i, name, inline)?),
            "--short" | "-s" | "--vklog" => {}
            "-o" | "--output" => {
                value(&mut i, name, inline)?;
            }
            _ if a.starts_with("--") => return Err(err(format!("unknown flag: {name}"))),
            _ if a.starts_with('-') && a.len() > 1 => {
                return Err(err(format!(
                    "unknown shorthand flag: '{}' in {a}",
                    &a[1..2]
                )));
            }
            _ => p.positional.push(a.to_string()),
        }
        i += 1;
    }
    Ok(p)
}

/// `NAME[.NS]` (or `pod/NAME[.NS]`) as istioctl splits it: at the last dot.
fn pod_and_namespace(arg: &str, default_ns: &str) -> (String, String) {
    let arg = arg
        .strip_prefix("pod/")
        .or_else(|| arg.strip_prefix("pods/"))
        .unwrap_or(arg);
    match arg.rsplit_once('.') {
        Some((pod, ns)) => (pod.to_string(), ns.to_string()),
        None => (arg.to_string(), default_ns.to_string()),
    }
}

/// A client for the kubeconfig and context the flags and KUBECONFIG select.
async fn client(p: &Parsed) -> Result<(kube::Client, String), CliError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = match &p.kubeconfig {
        Some(path) => Kubeconfig::read_from(path),
        None => Kubeconfig::read(),
    }
    .map_err(|e| err(format!("failed to create k8s client: {e}")))?;
    let options = KubeConfigOptions {
        context: p.context.clone(),
        ..KubeConfigOptions::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| err(format!("failed to create k8s client: {e}")))?;
    // client-go (so the real istioctl) trims the token file; kube sends it
    // verbatim, so a file ending in a newline would be an invalid header.
    if config.auth_info.token.is_none()
        && let Some(path) = config.auth_info.token_file.take()
    {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| err(format!("failed to create k8s client: reading {path}: {e}")))?;
        config.auth_info.token = Some(text.trim().to_string().into());
    }
    let ns = p
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config)
        .map_err(|e| err(format!("failed to create k8s client: {e}")))?;
    Ok((client, ns))
}

/// Runs `pilot-agent request METHOD PATH` in the pod's `istio-proxy` and
/// returns the admin's body (pilot-agent's trailing newline removed).
async fn envoy_do(
    client: &kube::Client,
    pod: &str,
    ns: &str,
    method: &str,
    path: &str,
) -> Result<Vec<u8>, String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let found = api.get(pod).await.map_err(|e| e.to_string())?;
    let has_sidecar = found
        .spec
        .as_ref()
        .is_some_and(|s| s.containers.iter().any(|c| c.name == "istio-proxy"));
    if !has_sidecar {
        return Err(format!("pod {pod}.{ns} has no istio-proxy container"));
    }
    let params = AttachParams::default()
        .container("istio-proxy")
        .stdin(false)
        .stdout(true)
        .stderr(true)
        .tty(false);
    let argv = ["pilot-agent", "request", method, path];
    let mut proc = api
        .exec(pod, argv, &params)
        .await
        .map_err(|e| e.to_string())?;
    let stdout = proc.stdout();
    let stderr = proc.stderr();
    let status = proc.take_status();
    let read = |r: Option<_>| async move {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _: Result<usize, std::io::Error> =
                tokio::io::AsyncReadExt::read_to_end(&mut r, &mut buf).await;
        }
        buf
    };
    let (mut out, errout, status) = futures::join!(read(stdout), read(stderr), async move {
        match status {
            Some(s) => s.await,
            None => None,
        }
    });
    let _ = proc.join().await;
    match status {
        Some(s) if s.status.as_deref() == Some("Success") => {
            if out.last() == Some(&b'\n') {
                out.pop();
            }
            Ok(out)
        }
        Some(s) => Err(format!(
            "{}{}",
            String::from_utf8_lossy(&errout),
            s.message.unwrap_or_default()
        )),
        None => Err("the exec stream closed before the command's status arrived".into()),
    }
}

async fn authz_check(p: &Parsed, args: &[String]) -> Result<String, CliError> {
    let dump = if let Some(file) = &p.file {
        std::fs::read(file).map_err(|e| {
            let reason = match e.kind() {
                std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
                std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                _ => e.to_string(),
            };
            err(format!(
                "failed to get config dump from file {file}: open {file}: {reason}"
            ))
        })?
    } else if args.len() == 1 {
        let (client, default_ns) = client(p).await?;
        let (pod, ns) = pod_and_namespace(&args[0], &default_ns);
        envoy_do(&client, &pod, &ns, "GET", "config_dump")
            .await
            .map_err(|_| err(format!("failed to get config dump from pod {pod} in {ns}")))?
    } else {
        return Err(err(format!(
            "expecting pod name or config dump, found: {}",
            args.len()
        )));
    };
    let report = meshpolicy::envoy::analyze_config_dump(&dump).map_err(|e| match &p.file {
        Some(file) => err(format!("failed to get config dump from file {file}: {e}")),
        None => err(e.to_string()),
    })?;
    Ok(report.render())
}

fn istio_warn(msg: &str) {
    let t = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    eprintln!("{t}\twarn\t{msg}");
}

const LEVELS: &[&str] = &[
    "trace", "debug", "info", "warning", "error", "critical", "off",
];

fn level_name(s: &str) -> Option<&'static str> {
    LEVELS.iter().copied().find(|l| *l == s)
}

async fn proxy_config_log(p: &Parsed, args: &[String]) -> Result<String, CliError> {
    if args.is_empty() {
        return Err(err("pod name or --selector is required"));
    }
    // "level" is istioctl's name for "every logger".
    let mut dest: BTreeMap<String, &'static str> = BTreeMap::new();
    if p.reset {
        istio_warn(
            "unable to get logLevel from ConfigMap istio-sidecar-injector, using default value \"warning\" for envoy proxies",
        );
        dest.insert("level".into(), "warning");
    } else if let Some(spec) = p.level.as_deref().filter(|s| !s.is_empty()) {
        for ol in spec.split(',') {
            if !ol.contains(':') && !ol.contains('=') {
                let l = level_name(ol)
                    .ok_or_else(|| err(format!("unrecognized logging level: {ol}")))?;
                dest = BTreeMap::from([("level".to_string(), l)]);
            } else {
                let last = ol.rsplit("::").next().unwrap_or(ol);
                let parts: Vec<&str> = last.split(':').collect();
                if parts.len() != 2 {
                    return Err(err(format!("unrecognized logging level: {ol}")));
                }
                let l = level_name(parts[1])
                    .ok_or_else(|| err(format!("unrecognized logging level: {}", parts[1])))?;
                dest.insert(parts[0].to_string(), l);
            }
        }
    }
    let (client, default_ns) = client(p).await?;
    let mut out = String::new();
    let mut errors = Vec::new();
    for arg in args {
        let (pod, ns) = pod_and_namespace(arg, &default_ns);
        let mut requests: Vec<String> = Vec::new();
        if dest.is_empty() {
            requests.push("logging".into());
        } else {
            if let Some(l) = dest.get("level") {
                requests.push(format!("logging?level={l}"));
            }
            for (logger, l) in dest.iter().filter(|(k, _)| *k != "level") {
                requests.push(format!("logging?{logger}={l}"));
            }
        }
        let mut resp = Ok(Vec::new());
        for path in &requests {
            resp = envoy_do(&client, &pod, &ns, "POST", path).await;
            if resp.is_err() {
                break;
            }
        }
        match resp {
            Ok(body) => {
                out.push_str(&format!("{pod}.{ns}:\n{}", String::from_utf8_lossy(&body)));
            }
            Err(e) => errors.push(format!(
                "error configuring log level for {pod}.{ns}: failed to execute command on Envoy: {e}"
            )),
        }
    }
    if !errors.is_empty() {
        let _ = std::io::stdout().write_all(out.as_bytes());
        return Err(err(errors.join("; ")));
    }
    Ok(out)
}

/// Go's `text/tabwriter` as istioctl uses it (padding `pad`, blanks): every
/// cell but a line's last is padded to its column's widest cell plus `pad`.
fn tabwrite(rows: &[Vec<String>], pad: usize) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate().take(r.len().saturating_sub(1)) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                out.push_str(&format!("{c:<w$}", w = widths[i] + pad));
            } else {
                out.push_str(c);
            }
        }
        out.push('\n');
    }
    out
}

/// Every object of one API resource, as JSON (`namespace` None: all namespaces).
async fn list_json(
    client: &kube::Client,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespace: Option<&str>,
) -> Result<Vec<serde_json::Value>, CliError> {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| err(e.to_string()))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect())
}

fn meta<'a>(v: &'a serde_json::Value, field: &str) -> &'a str {
    v["metadata"][field].as_str().unwrap_or("")
}

/// `istioctl waypoint generate`: the Gateway `istioctl waypoint apply` would
/// apply, as YAML (keys in the order istioctl's YAML marshalling gives).
fn waypoint_generate(p: &Parsed) -> Result<String, CliError> {
    let name = p.waypoint_name.as_deref().unwrap_or("waypoint");
    let name = if name.is_empty() { "waypoint" } else { name };
    if name == "none" {
        return Err(err(
            "failed to create gateway: invalid name provided for waypoint, 'none' is a reserved value",
        ));
    }
    let mut out =
        String::from("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n");
    if let Some(t) = &p.traffic_for {
        if !["all", "none", "service", "workload"].contains(&t.as_str()) {
            return Err(err(format!(
                "failed to create gateway: invalid traffic type: {t}. Valid options are: [all none service workload]"
            )));
        }
        out.push_str(&format!("  labels:\n    istio.io/waypoint-for: {t}\n"));
    }
    out.push_str(&format!("  name: {name}\n"));
    if let Some(ns) = &p.namespace {
        out.push_str(&format!("  namespace: {ns}\n"));
    }
    out.push_str("spec:\n  gatewayClassName: istio-waypoint\n  listeners:\n  - name: mesh\n    port: 15008\n    protocol: HBONE\n");
    Ok(out)
}

/// `istioctl waypoint list [-n NS | -A]`: the Gateways of class
/// `istio-waypoint`, with istioctl's columns.
async fn waypoint_list(p: &Parsed) -> Result<String, CliError> {
    let (client, ns) = client(p).await?;
    let scope = (!p.all_namespaces).then_some(ns.as_str());
    let mut gws: Vec<serde_json::Value> = list_json(
        &client,
        "gateway.networking.k8s.io",
        "v1",
        "Gateway",
        "gateways",
        scope,
    )
    .await?;
    if gws.is_empty() {
        return Ok("No waypoints found.\n".into());
    }
    gws.retain(|g| meshpolicy::ambient::waypoint_of_gateway(g).is_some());
    gws.sort_by(|a, b| {
        (meta(a, "namespace"), meta(a, "name")).cmp(&(meta(b, "namespace"), meta(b, "name")))
    });
    let mut rows = vec![];
    let head = ["NAME", "REVISION", "TRAFFIC TYPE", "PROGRAMMED"];
    let mut h: Vec<String> = head.iter().map(|s| s.to_string()).collect();
    if p.all_namespaces {
        h.insert(0, "NAMESPACE".into());
    }
    rows.push(h);
    for g in &gws {
        let labels = labels_of(g);
        let rev = labels
            .get("istio.io/rev")
            .cloned()
            .unwrap_or_else(|| "default".into());
        let traffic = labels
            .get(meshpolicy::ambient::WAYPOINT_FOR_LABEL)
            .cloned()
            .unwrap_or_else(|| "none".into());
        let programmed = g["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["type"] == "Programmed")
            .filter_map(|c| c["status"].as_str())
            .next_back()
            .unwrap_or("False")
            .to_string();
        let mut r = vec![meta(g, "name").to_string(), rev, traffic, programmed];
        if p.all_namespaces {
            r.insert(0, meta(g, "namespace").to_string());
        }
        rows.push(r);
    }
    Ok(tabwrite(&rows, 5))
}

/// `istioctl waypoint status [-n NS]`: each waypoint's Programmed condition.
async fn waypoint_status(p: &Parsed) -> Result<String, CliError> {
    let (client, ns) = client(p).await?;
    let mut gws = list_json(
        &client,
        "gateway.networking.k8s.io",
        "v1",
        "Gateway",
        "gateways",
        Some(&ns),
    )
    .await?;
    if gws.is_empty() {
        return Ok("No waypoints found.\n".into());
    }
    gws.retain(|g| meshpolicy::ambient::waypoint_of_gateway(g).is_some());
    gws.sort_by(|a, b| meta(a, "name").cmp(meta(b, "name")));
    let mut rows = vec![
        ["NAME", "STATUS", "TYPE", "REASON", "MESSAGE"]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
    ];
    for g in &gws {
        let conds: Vec<&serde_json::Value> = g["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        // istioctl prints the Programmed condition, or the last one it saw.
        let c = conds
            .iter()
            .find(|c| c["type"] == "Programmed" && c["status"] == "True")
            .or(conds.last())
            .copied()
            .cloned()
            .unwrap_or_default();
        let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
        rows.push(vec![
            meta(g, "name").to_string(),
            s("status"),
            s("type"),
            s("reason"),
            s("message"),
        ]);
    }
    Ok(tabwrite(&rows, 5))
}

/// The ztunnel pods (DaemonSet `ztunnel` in istio-system, label `app=ztunnel`).
async fn ztunnel_pods(client: &kube::Client) -> Result<Vec<serde_json::Value>, CliError> {
    let pods = list_json(client, "", "v1", "Pod", "pods", Some("istio-system")).await?;
    let z: Vec<serde_json::Value> = pods
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["app"] == "ztunnel")
        .collect();
    if z.is_empty() {
        return Err(err("no ztunnel pods found in namespace istio-system"));
    }
    Ok(z)
}

/// `istioctl ztunnel-config workloads`: every workload ztunnel knows (each
/// pod with an IP), its waypoint (for workload-addressed traffic, by
/// meshpolicy's binding rules) and protocol (HBONE in the mesh, TCP outside).
async fn ztunnel_workloads(p: &Parsed) -> Result<String, CliError> {
    use meshpolicy::ambient::{
        Addressed, Binder, DataplaneMode, WaypointUse, dataplane_mode, resolve_waypoint,
        waypoint_of_gateway,
    };
    let (client, _) = client(p).await?;
    ztunnel_pods(&client).await?;
    let pods = list_json(&client, "", "v1", "Pod", "pods", None).await?;
    let namespaces = list_json(&client, "", "v1", "Namespace", "namespaces", None).await?;
    let gws = list_json(
        &client,
        "gateway.networking.k8s.io",
        "v1",
        "Gateway",
        "gateways",
        None,
    )
    .await?;
    let waypoints: Vec<_> = gws.iter().filter_map(waypoint_of_gateway).collect();
    let ns_labels: BTreeMap<String, BTreeMap<String, String>> = namespaces
        .iter()
        .map(|n| (meta(n, "name").to_string(), labels_of(n)))
        .collect();
    let empty = BTreeMap::new();
    let mut rows = Vec::new();
    for pod in &pods {
        let Some(ip) = pod["status"]["podIP"].as_str() else {
            continue;
        };
        if pod["spec"]["hostNetwork"] == true {
            continue;
        }
        let ns = meta(pod, "namespace");
        if let Some(f) = &p.workload_namespace
            && f != ns
        {
            continue;
        }
        let labels = labels_of(pod);
        let nsl = ns_labels.get(ns).unwrap_or(&empty);
        let waypoint_pod = labels.contains_key("gateway.istio.io/managed");
        let ztunnel =
            ns == "istio-system" && labels.get("app").map(String::as_str) == Some("ztunnel");
        let sidecar = !waypoint_pod
            && !ztunnel
            && pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["name"] == "istio-proxy");
        let mode = dataplane_mode(&labels, sidecar, nsl);
        let protocol = if mode == DataplaneMode::Ambient || waypoint_pod {
            "HBONE"
        } else {
            "TCP"
        };
        let waypoint = match resolve_waypoint(
            Binder {
                kind: "namespace",
                namespace: ns,
                labels: nsl,
            },
            None,
            Some(Binder {
                kind: "pod",
                namespace: ns,
                labels: &labels,
            }),
            Addressed::Workload,
            &waypoints,
        ) {
            WaypointUse::Uses { waypoint, .. } if mode == DataplaneMode::Ambient => waypoint.name,
            _ => "None".to_string(),
        };
        rows.push(vec![
            ns.to_string(),
            meta(pod, "name").to_string(),
            String::new(),
            ip.to_string(),
            pod["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
            waypoint,
            protocol.to_string(),
        ]);
    }
    rows.sort_by(|a, b| {
        (format!("{}.{}", a[0], a[1]), &a[4]).cmp(&(format!("{}.{}", b[0], b[1]), &b[4]))
    });
    let head = [
        "NAMESPACE",
        "NAME",
        "NETWORK",
        "IP",
        "NODE",
        "WAYPOINT",
        "PROTOCOL",
    ];
    rows.insert(0, head.iter().map(|s| s.to_string()).collect());
    Ok(tabwrite(&rows, 1))
}

/// `istioctl ztunnel-config policies`: the Authorizations istiod sends
/// ztunnel (meshpolicy::ambient::ztunnel_authorizations: from
/// AuthorizationPolicies and PeerAuthentications); `ACTION` and `SCOPE` as
/// ztunnel names them.
async fn ztunnel_policies(p: &Parsed) -> Result<String, CliError> {
    let (client, _) = client(p).await?;
    ztunnel_pods(&client).await?;
    let aps = list_json(
        &client,
        "security.istio.io",
        "v1",
        "AuthorizationPolicy",
        "authorizationpolicies",
        None,
    )
    .await?;
    let pas = list_json(
        &client,
        "security.istio.io",
        "v1",
        "PeerAuthentication",
        "peerauthentications",
        None,
    )
    .await?;
    let aps: Vec<meshpolicy::AuthorizationPolicy> = aps
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    let pas: Vec<meshpolicy::peerauth::PeerAuthentication> = pas
        .iter()
        .filter_map(|v| meshpolicy::peerauth::PeerAuthentication::from_value(v, "default").ok())
        .collect();
    let mut rows: Vec<Vec<String>> =
        meshpolicy::ambient::ztunnel_authorizations(&aps, &pas, "istio-system")
            .into_iter()
            .map(|z| {
                vec![
                    z.namespace,
                    z.name,
                    if z.deny { "Deny" } else { "Allow" }.to_string(),
                    z.scope.as_str().to_string(),
                ]
            })
            .collect();
    if let Some(f) = &p.policy_namespace {
        rows.retain(|r| &r[0] == f);
    }
    rows.sort();
    rows.insert(
        0,
        ["NAMESPACE", "NAME", "ACTION", "SCOPE"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    Ok(tabwrite(&rows, 1))
}

async fn run(args: &[String]) -> Result<String, CliError> {
    let p = parse(args)?;
    let pos: Vec<&str> = p.positional.iter().map(String::as_str).collect();
    if p.help || pos.is_empty() || pos[0] == "help" {
        return Ok(HELP.to_string());
    }
    match pos.as_slice() {
        ["x" | "experimental", "authz", "check", rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            authz_check(&p, &rest).await
        }
        ["x" | "experimental", "authz", ..] | ["x" | "experimental", ..] => Err(err(
            "meshsim-istioctl (a test double for istioctl) implements only `x authz check`",
        )),
        ["proxy-config" | "pc", "log", rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            proxy_config_log(&p, &rest).await
        }
        ["ztunnel-config" | "zc", "workload" | "workloads" | "w"] => ztunnel_workloads(&p).await,
        ["ztunnel-config" | "zc", "policy" | "policies" | "p" | "pol"] => {
            ztunnel_policies(&p).await
        }
        ["ztunnel-config" | "zc", ..] => Err(err(
            "meshsim-istioctl (a test double for istioctl) implements only `ztunnel-config workloads|policies`",
        )),
        ["waypoint", "generate"] => waypoint_generate(&p),
        ["waypoint", "list"] => waypoint_list(&p).await,
        ["waypoint", "status"] => waypoint_status(&p).await,
        ["waypoint", ..] => Err(err(
            "meshsim-istioctl (a test double for istioctl) implements only `waypoint list|status`",
        )),
        ["proxy-config" | "pc", ..] => Err(err(
            "meshsim-istioctl (a test double for istioctl) implements only `proxy-config log`",
        )),
        ["version"] => {
            if p.remote == Some(false) {
                Ok(format!("client version: {VERSION}\n"))
            } else {
                Ok(format!(
                    "client version: {VERSION}\nno running Istio pods in \"istio-system\"\n"
                ))
            }
        }
        [other, ..] => Err(err(format!(
            "unknown command \"{other}\" for \"istioctl\"\nRun 'istioctl --help' for usage."
        ))),
        [] => Ok(HELP.to_string()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: starting runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(&args)) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            if stdout
                .write_all(out.as_bytes())
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn flags_anywhere() {
        let p = parse(&argv(
            "x authz check pod-1.ns -n other --kubeconfig=/k --context c",
        ))
        .unwrap();
        assert_eq!(p.positional, argv("x authz check pod-1.ns"));
        assert_eq!(p.namespace.as_deref(), Some("other"));
        assert_eq!(p.kubeconfig, Some(PathBuf::from("/k")));
        assert_eq!(p.context.as_deref(), Some("c"));
        let p = parse(&argv("version --remote=false")).unwrap();
        assert_eq!(p.remote, Some(false));
        assert!(parse(&argv("version --remote=maybe")).is_err());
        assert!(parse(&argv("x authz check --bogus")).is_err());
        assert!(parse(&argv("x authz check -n")).is_err());
    }

    #[test]
    fn tables_pad_like_go_tabwriter() {
        // istioctl's own expectation for `waypoint list` (padding 5).
        let rows = vec![
            argv("NAME REVISION PROGRAMMED"),
            argv("waypoint default True"),
        ];
        assert_eq!(
            tabwrite(&rows, 5),
            "NAME         REVISION     PROGRAMMED\nwaypoint     default      True\n"
        );
    }

    #[test]
    fn waypoint_generate_prints_istioctls_gateway() {
        let p = parse(&argv("waypoint generate -n ns --for workload --name wp")).unwrap();
        assert_eq!(
            waypoint_generate(&p).unwrap(),
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  labels:\n    istio.io/waypoint-for: workload\n  name: wp\n  namespace: ns\nspec:\n  gatewayClassName: istio-waypoint\n  listeners:\n  - name: mesh\n    port: 15008\n    protocol: HBONE\n"
        );
        let bad = parse(&argv("waypoint generate --for nobody")).unwrap();
        assert!(waypoint_generate(&bad).is_err());
    }

    #[test]
    fn pod_names_split_at_last_dot() {
        assert_eq!(
            pod_and_namespace("np-test-nginx-2-abc.np-test-2", "default"),
            ("np-test-nginx-2-abc".into(), "np-test-2".into())
        );
        assert_eq!(pod_and_namespace("pod/p", "ns"), ("p".into(), "ns".into()));
    }
}
