//! meshsim binary: `meshsim serve` runs the simulated cluster until SIGINT or
//! SIGTERM; `meshsim generate` writes large scenarios for benchmarks.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use meshsim::faults::{Fault, parse_duration};
use meshsim::{Config, Server};

/// mimalloc gives memory freed after transient peaks (scenario loading, a
/// burst of pods becoming ready) back to the OS; glibc's malloc kept it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "meshsim",
    version,
    about = "A simulated Kubernetes API server with Istio-like sidecars, for demos and end-to-end tests"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve the simulated cluster on 127.0.0.1 and write a kubeconfig for it.
    Serve {
        /// Scenario file or folder (Kubernetes YAML); repeatable, applied in order.
        #[arg(long)]
        scenario: Vec<PathBuf>,
        /// Where to write the kubeconfig (context "meshsim").
        #[arg(long)]
        kubeconfig_out: PathBuf,
        /// Port on 127.0.0.1 (0 = random).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Serve HTTPS with a generated CA (written into the kubeconfig).
        #[arg(long)]
        tls: bool,
        /// Require this bearer token (written into the kubeconfig).
        #[arg(long)]
        token: Option<String>,
        /// Accept client certificates signed by the generated CA (implies --tls; the kubeconfig gets one).
        #[arg(long)]
        client_ca: bool,
        /// Test-only: serve a server certificate that expired in 2001 (implies --tls).
        #[arg(long, hide = true)]
        expired_server_cert: bool,
        /// Multiplier for simulated waits (0.01 = a hundred times faster).
        #[arg(long, default_value_t = 1.0)]
        time_scale: f64,
        /// Delay before a new pod is Running and Ready (simulated time, e.g. 2s, 500ms).
        #[arg(long, default_value = "2s", value_parser = parse_delay)]
        ready_delay: Duration,
        /// How long AuthorizationPolicy and PeerAuthentication changes take to reach
        /// each sidecar (simulated time, scaled by --time-scale); NetworkPolicy applies at once.
        #[arg(long, default_value = "2s", value_parser = parse_delay)]
        propagation_delay: Duration,
        /// Simulate a CNI that ignores NetworkPolicy (as many clusters' CNIs do): policies
        /// are stored and listed, but traffic is never dropped because of them.
        #[arg(long)]
        cni_ignores_network_policy: bool,
        /// Inject a fault (repeatable). Comma-separated key=value pairs. Match keys
        /// (absent = any): verb (get, list, watch, create, update, patch, delete,
        /// deletecollection, exec, log), resource (pods, pods/exec, services, ...),
        /// namespace, name, container (exec/attach/log naming it). One action: status=CODE [retry-after=SECONDS] (e.g. 500,
        /// 403, 429), hang=DURATION (then 504), cut-exec-after=BYTES, cut-log-after=BYTES.
        /// Example: --fault verb=get,resource=pods,namespace=x,status=500
        #[arg(long, value_parser = parse_fault)]
        fault: Vec<Fault>,
        /// The Envoy binary the sidecars run (default: $MESHSIM_ENVOY, then the
        /// workspace's target/envoy/envoy from `make envoy`, then envoy on PATH).
        #[arg(long)]
        envoy: Option<PathBuf>,
    },
    /// Write a generated scenario for benchmarks.
    Generate {
        #[arg(long)]
        namespaces: usize,
        #[arg(long)]
        pods_per_namespace: usize,
        /// AuthorizationPolicies per namespace.
        #[arg(long, default_value_t = 0)]
        policies: usize,
        /// Output folder.
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// Enrol the namespaces in Istio ambient mode (no sidecars) and add the
        /// ztunnel DaemonSet in istio-system.
        #[arg(long)]
        ambient: bool,
        /// With --ambient: give every namespace a waypoint (Gateway `waypoint`,
        /// class istio-waypoint) and bind its Services to it (istio.io/use-waypoint).
        #[arg(long, requires = "ambient")]
        waypoint: bool,
    },
}

fn parse_delay(s: &str) -> Result<Duration, String> {
    parse_duration(s).ok_or_else(|| format!("invalid duration {s:?} (use e.g. 2s or 500ms)"))
}

fn parse_fault(s: &str) -> Result<Fault, String> {
    Fault::parse(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MESHSIM_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match cli.cmd {
        Cmd::Generate {
            namespaces,
            pods_per_namespace,
            policies,
            output,
            ambient,
            waypoint,
        } => match meshsim::scenario::generate_ambient(
            &output,
            namespaces,
            pods_per_namespace,
            policies,
            ambient,
            waypoint,
        ) {
            Ok(()) => {
                eprintln!(
                    "meshsim: wrote {namespaces} namespaces x {pods_per_namespace} pods to {}",
                    output.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: writing {}: {e}", output.display());
                ExitCode::from(3)
            }
        },
        Cmd::Serve {
            scenario,
            kubeconfig_out,
            port,
            tls,
            token,
            client_ca,
            expired_server_cert,
            time_scale,
            ready_delay,
            propagation_delay,
            cni_ignores_network_policy,
            fault,
            envoy,
        } => {
            if !(time_scale.is_finite() && time_scale >= 0.0) {
                eprintln!("error: --time-scale must be a non-negative number");
                return ExitCode::from(2);
            }
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: starting runtime: {e}");
                    return ExitCode::from(3);
                }
            };
            rt.block_on(async move {
                let config = Config {
                    scenarios: scenario,
                    port,
                    tls,
                    token,
                    client_ca,
                    expired_server_cert,
                    time_scale,
                    ready_delay,
                    faults: fault,
                    kubeconfig_out: Some(kubeconfig_out.clone()),
                    network: None,
                    propagation_delay,
                    cni_enforces_network_policy: !cni_ignores_network_policy,
                    envoy,
                };
                let handle = match Server::start(config).await {
                    Ok(h) => h,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                };
                eprintln!(
                    "meshsim: serving {} (kubeconfig written to {})",
                    handle.url,
                    kubeconfig_out.display()
                );
                eprintln!(
                    "meshsim: try: kubectl --kubeconfig {} get pods -A",
                    kubeconfig_out.display()
                );
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(s) => s,
                        Err(e) => {
                            eprintln!("error: installing signal handler: {e}");
                            return ExitCode::from(3);
                        }
                    };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                eprintln!("meshsim: stopping");
                handle.shutdown().await;
                ExitCode::SUCCESS
            })
        }
    }
}
