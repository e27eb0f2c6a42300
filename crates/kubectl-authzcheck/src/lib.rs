//! kubectl-authzcheck library: `run()` holds the plugin; main.rs only maps its result to an exit code.
//!
//! `kubectl authzcheck [NAMESPACE] [POD]` replaces the walk-through's
//! `istioctl x authz check $(kubectl get pod ...)`: for each pod it shows the
//! NetworkPolicies that isolate it, the AuthorizationPolicies the API says
//! apply (with what each means), what the Envoy sidecar actually loaded
//! (istioctl, or the config dump read through exec or from a file), and
//! findings joining the layers. The flow is: validate the command line
//! ([`cli`]), read the namespace once and each pod's proxy ([`fetch`]), turn
//! the proxy output into rows ([`proxy`]), join ([`analyze`]) into
//! [`report`] data, and render it last ([`render`]; `-o html` in [`html`]).

pub mod ambient;
pub mod analyze;
pub mod cli;
pub mod error;
pub mod fetch;
pub mod html;
pub mod peerauth;
pub mod proxy;
pub mod render;
pub mod report;
pub mod whatif;

use std::io::Write;

use futures::StreamExt;
use kubeplugin::render::Renderer;
use kubeplugin::resources::{phase, pod_name};
use kubeplugin::target::PodTarget;
use kubeplugin::{Exit, Kube, PluginError};

use cli::CheckTarget;
pub use cli::Cli;
use report::{Report, Severity};

/// How many pods are checked at once with `-l`.
const PARALLEL_PODS: usize = 4;

/// Runs the plugin for a parsed command line.
pub async fn run(cli: Cli) -> Result<Exit, PluginError> {
    let target = cli.validate()?;
    kubeplugin::render::refuse_output(
        &cli.output.output,
        &["dot", "mermaid"],
        "authzcheck draws its report as -o html (npexec draws graphs)",
    )?;
    let renderer = Renderer::from_args(&cli.output);
    // A bad manifest is a usage error before anything touches the cluster.
    let overlay = whatif::read(&cli.filenames, &cli.delete_filenames)?;
    let overlay = overlay.as_ref();
    let (reports, many) = match &target {
        CheckTarget::Offline(path) => {
            let dump = fetch::read_dump_file(path)?;
            let view =
                proxy::from_config_dump(&dump, format!("config dump file {}", path.display()));
            (vec![analyze::offline(view)], false)
        }
        CheckTarget::One { namespace, pod } => (
            check(&cli, overlay, namespace.as_deref(), Some(pod), None).await?,
            false,
        ),
        CheckTarget::Many {
            namespace,
            selector,
        } => (
            check(
                &cli,
                overlay,
                namespace.as_deref(),
                None,
                selector.as_deref(),
            )
            .await?,
            true,
        ),
        CheckTarget::NamespaceOrPod(word) => {
            let kube = Kube::from_flags(&cli.kube).await?;
            if namespace_exists(&kube, word).await? {
                (check(&cli, overlay, Some(word), None, None).await?, true)
            } else {
                let pod = PodTarget::parse(word, None)?;
                match check(&cli, overlay, None, Some(&pod), None).await {
                    Err(PluginError::NotFound { namespace, .. }) => {
                        return Err(PluginError::NotFound {
                            kind: "namespace or pod".into(),
                            name: word.clone(),
                            namespace,
                        });
                    }
                    other => (other?, false),
                }
            }
        }
    };
    let mut stdout = std::io::stdout().lock();
    if renderer.picture() == Some(kubeplugin::Picture::Html) {
        let title = "authzcheck: a pod's policy layers";
        let header = kubeplugin::picture::PageHeader::for_this_run(
            title,
            &cli.kube,
            "authzcheck",
            env!("CARGO_PKG_VERSION"),
        );
        kubeplugin::render::write_str(&mut stdout, &html::page(&header, &reports)?)?;
    } else {
        render::write_reports(&renderer, &reports, many, &mut stdout)?;
    }
    stdout
        .flush()
        .map_err(|e| PluginError::io("writing output", e))?;
    Ok(exit_for(&reports, cli.exit_code))
}

/// 1 with `--exit-code` when any report has a warning or worse, else 0
/// (with `-f`, findings the change makes go away do not count).
pub fn exit_for(reports: &[Report], exit_code: bool) -> Exit {
    let bad = reports.iter().any(|r| {
        r.findings
            .iter()
            .any(|f| f.severity >= Severity::Warning && f.change != Some(report::Change::Gone))
    });
    if exit_code && bad {
        Exit::NEGATIVE
    } else {
        Exit::OK
    }
}

/// Whether the model pod is in ambient mode (meshpolicy's rule on its and its namespace's labels).
fn is_ambient(data: &fetch::NamespaceData, pod: &meshpolicy::Pod) -> bool {
    let empty = std::collections::BTreeMap::new();
    meshpolicy::ambient::dataplane_mode(
        &pod.labels,
        pod.has_sidecar,
        data.labels.as_ref().unwrap_or(&empty),
    ) == meshpolicy::ambient::DataplaneMode::Ambient
}

/// Whether a namespace exists; `true` when namespaces cannot be read (403),
/// so a bare word keeps its documented meaning (a namespace) then.
async fn namespace_exists(kube: &Kube, name: &str) -> Result<bool, PluginError> {
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(kube.client.clone());
    match api.get(name).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(true),
        Err(e) => Err(kube.err(
            e,
            &kubeplugin::ApiOp::new("get", "namespaces", name).named(name),
        )),
    }
}

async fn check(
    cli: &Cli,
    overlay: Option<&whatif::Overlay>,
    namespace: Option<&str>,
    pod: Option<&PodTarget>,
    selector: Option<&str>,
) -> Result<Vec<Report>, PluginError> {
    let kube = Kube::from_flags(&cli.kube).await?;
    let namespace = namespace.unwrap_or(&kube.namespace).to_string();
    // Decide the proxy mode first: a bad --config-dump or --istioctl fails before any API call.
    let mode = fetch::proxy_mode(cli.config_dump.as_deref(), cli.native, &cli.istioctl)?;
    let data = fetch::gather(&kube, &namespace, &cli.root_namespace).await?;
    let pods = fetch::select_pods(&kube, &data, pod, selector).await?;
    let after = match overlay {
        Some(o) => Some(whatif::after_cluster(&data.objects, &data.cluster, o)?),
        None => None,
    };
    let models: Vec<Option<&meshpolicy::Pod>> = pods
        .iter()
        .map(|p| data.cluster.pod(&namespace, pod_name(p)))
        .collect();
    // Ambient pods, and waypoints' own pods (their policies are the attached ones).
    let ambient_pods = models
        .iter()
        .flatten()
        .any(|m| is_ambient(&data, m) || meshpolicy::ambient::is_waypoint_pod(&m.labels));
    let ambient_data = if ambient_pods {
        ambient::gather(&kube, &data).await?
    } else {
        fetch::AmbientData::default()
    };
    let views = futures::stream::iter(pods.iter().zip(&models))
        .map(|(p, m)| {
            let ambient_data = &ambient_data;
            let kube = &kube;
            let mode = &mode;
            let data = &data;
            async move {
                match m.filter(|m| is_ambient(data, m)) {
                    Some(m) => {
                        ambient::proxy_view(kube, &cli.kube, mode, data, ambient_data, m).await
                    }
                    None => fetch::proxy_view(kube, &cli.kube, mode, p).await,
                }
            }
        })
        .buffered(PARALLEL_PODS)
        .collect::<Vec<_>>()
        .await;
    let gateways = ambient_data.gateways.clone().unwrap_or_default();
    let mut reports = Vec::with_capacity(pods.len());
    for (p, outcome) in pods.iter().zip(views) {
        let name = pod_name(p);
        let model =
            data.cluster
                .pod(&namespace, name)
                .cloned()
                .ok_or_else(|| PluginError::Api {
                    code: None,
                    message: format!(
                        "pod {namespace}/{name} could not be read into the policy model"
                    ),
                })?;
        let ctx = analyze::PodContext {
            cluster: &data.cluster,
            pod: &model,
            phase: phase(p).to_string(),
            namespace_labels: data.labels.clone(),
            ages: &data.ages,
            invalid: &data.invalid,
            ambient: analyze::AmbientInputs {
                services: &ambient_data.services,
                gateways: &gateways,
                extra_policies: &ambient_data.waypoint_policies,
                ztunnel_config: ambient::ZTUNNEL_CONFIG,
            },
        };
        let mut report = analyze::analyze(&ctx, outcome.view);
        report.findings.extend(outcome.findings);
        report.findings.extend(data.notes.iter().cloned());
        report
            .findings
            .sort_by_key(|f| std::cmp::Reverse(f.severity));
        if let Some(after) = &after {
            let before = analyze::analyze(&ctx, whatif::no_proxy());
            // The pod itself as the overlay has it (a replaced workload's
            // pods are gone from it: the running pod still stands for them).
            let pod_after = after.pod(&namespace, name).unwrap_or(&model);
            let ctx_after = analyze::PodContext {
                cluster: after,
                pod: pod_after,
                ..ctx
            };
            let after_report = analyze::analyze(&ctx_after, whatif::no_proxy());
            report = whatif::mark(&before, after_report, report);
            report
                .findings
                .extend(whatif::peer_auth_findings(&data.cluster, after, &model));
            report
                .findings
                .sort_by_key(|f| std::cmp::Reverse(f.severity));
        }
        reports.push(report);
    }
    Ok(reports)
}
