//! kubectl-rbaclog library: `run()` holds the plugin; main.rs only maps its result to an exit code.
//!
//! `kubectl rbaclog` replaces the walk-through's `kubectl logs $(kubectl get pod
//! ...) -c istio-proxy | grep rbac | grep denied`, one pod at a time, with one
//! command over every sidecar in scope that names the AuthorizationPolicy and
//! rule behind each decision. The flow: validate the command line ([`cli`]);
//! find the pods with a sidecar and read their istio-proxy logs concurrently,
//! following them if asked ([`cluster`]), or read saved logs ([`files`]); turn
//! each stream's lines into decisions, pairing the lines of one request
//! ([`pairing`], using meshpolicy's parsers); keep those the filters match
//! ([`filter`]); print them, or a [`summary`], last ([`output`]). With
//! `--enable-debug` the sidecars' rbac loggers are raised for the run and put back
//! afterwards, also on errors and interrupts ([`debug`]).

pub mod cli;
pub mod cluster;
pub mod debug;
pub mod document;
pub mod error;
pub mod files;
pub mod filter;
pub mod lines;
pub mod live;
pub mod output;
pub mod pairing;
pub mod prefix;
pub mod record;
pub mod reorder;
pub mod stream;
pub mod summary;
pub mod table;

use kubeplugin::istioctl::Istioctl;
use kubeplugin::render::Renderer;
use kubeplugin::run::run_until_signal;
use kubeplugin::{Exit, Kube, PluginError};

pub use cli::Cli;
use cli::{ReadPlan, Source};
use cluster::{Scope, Window};
use debug::DebugGuard;
pub use error::RbaclogError;
use output::{FollowPrinter, note};
use pairing::Stats;
use record::DecisionRecord;
use summary::Summary;

/// Runs the plugin for a parsed command line.
pub async fn run(cli: Cli) -> Result<Exit, RbaclogError> {
    let plan = cli.validate()?;
    let renderer = Renderer::from_args(&cli.output);
    match &plan.source {
        Source::Files(paths) => {
            let paths = paths.clone();
            run_until_signal(run_files(&cli, &plan, &renderer, &paths)).await
        }
        Source::Cluster {
            namespace,
            more,
            all,
        } => {
            let (namespace, more, all) = (namespace.clone(), more.clone(), *all);
            run_cluster(&cli, &plan, &renderer, namespace, more, all).await
        }
    }
}

/// Collects a batch run's decisions (or only their summary).
///
/// Memory: a summary keeps one counter per group and `-o jsonl` writes each
/// decision at once, so both are bounded however much matched; tables stream
/// rows in time order or keep only their cells ([`table::TableSink`]); `-o json`
/// and `-o yaml` stream the array in time order or keep only each decision's
/// text ([`document::DocumentSink`]); the other transforms (jsonpath,
/// custom-columns, name) keep the matched decisions to sort them.
#[derive(Debug, Default)]
struct Batch {
    summary: Option<Summary>,
    decisions: Vec<DecisionRecord>,
    table: Option<table::TableSink>,
    document: Option<document::DocumentSink>,
    matched: u64,
    stream_jsonl: bool,
    error: Option<PluginError>,
}

impl Batch {
    /// `one_log`: the decisions come from one log (one file), so in time order.
    fn new(summary: bool, renderer: &Renderer, one_log: bool) -> Self {
        let table = matches!(
            renderer.format,
            kubeplugin::OutputFormat::Table | kubeplugin::OutputFormat::Wide
        );
        Batch {
            summary: summary.then(Summary::default),
            stream_jsonl: !summary && renderer.format == kubeplugin::OutputFormat::Jsonl,
            table: (!summary && table).then(|| table::TableSink::new(*renderer, one_log)),
            document: if summary {
                None
            } else {
                document::DocumentSink::for_renderer(renderer, one_log)
            },
            ..Batch::default()
        }
    }

    fn add(&mut self, d: DecisionRecord) {
        self.matched += 1;
        match (&mut self.summary, &mut self.table) {
            (Some(s), _) => s.add(&d),
            (None, Some(t)) => {
                if self.error.is_none()
                    && let Err(e) = t.add(&d)
                {
                    self.error = Some(e);
                }
            }
            (None, None) if self.document.is_some() => {
                if self.error.is_none()
                    && let Some(doc) = &mut self.document
                    && let Err(e) = doc.add(&d)
                {
                    self.error = Some(e);
                }
            }
            (None, None) if self.stream_jsonl => {
                if self.error.is_none()
                    && let Err(e) = output::write_jsonl(&d)
                {
                    self.error = Some(e);
                }
            }
            (None, None) => self.decisions.push(d),
        }
    }

    fn finish(
        mut self,
        cli: &Cli,
        renderer: &Renderer,
        stats: &Stats,
        what: &str,
        scope: &str,
        proxies: &output::ReadProxies,
    ) -> Result<Exit, RbaclogError> {
        if let Some(e) = self.error.take() {
            return Err(e.into());
        }
        if let Some(t) = self.table.take() {
            let late = t.finish()?;
            if late > 0 {
                note(&format!(
                    "note: the input is not in time order: the last {late} rows of the table came after later ones had been printed"
                ));
            }
        }
        let document = self.document.is_some();
        if let Some(doc) = self.document.take() {
            let (late, _) = doc.finish()?;
            if late > 0 {
                note(&format!(
                    "note: the input is not in time order: the last {late} decisions of the output came after later ones had been printed"
                ));
            }
        }
        match &self.summary {
            Some(s) => output::write_summary(renderer, s)?,
            None if self.stream_jsonl
                || document
                || self.decisions.is_empty() && self.matched > 0 => {}
            None => {
                self.decisions.sort_by(|a, b| {
                    (a.ts, &a.namespace, &a.pod, &a.file).cmp(&(
                        b.ts,
                        &b.namespace,
                        &b.pod,
                        &b.file,
                    ))
                });
                output::write_decisions(renderer, &self.decisions)?;
            }
        }
        if self.matched == 0 {
            let decision = match cli.decision {
                filter::DecisionFilter::Denied => "denied",
                filter::DecisionFilter::Allowed => "allowed",
                filter::DecisionFilter::All => "RBAC",
            };
            for line in output::nothing_found_in(what, scope, stats, decision, proxies) {
                note(&line);
            }
        }
        Ok(if cli.exit_code && self.matched > 0 {
            Exit::NEGATIVE
        } else {
            Exit::OK
        })
    }
}

async fn run_files(
    cli: &Cli,
    plan: &ReadPlan,
    renderer: &Renderer,
    paths: &[std::path::PathBuf],
) -> Result<Exit, RbaclogError> {
    let mut batch = Batch::new(cli.summary, renderer, paths.len() == 1);
    let mut total = Stats::default();
    for path in paths {
        // Blocking reads, told to the runtime so other tasks (signals) keep running.
        let stats = tokio::task::block_in_place(|| {
            files::read_file(path, &plan.filters, &mut |d| batch.add(d))
        })?;
        let odd = stats.foreign + stats.unparsed + stats.rbac_other;
        if stats.lines > 0 && odd > 0 && stats.foreign < stats.lines {
            let name = path.display().to_string();
            note(&format!(
                "note: {name}: {odd} of {} lines could not be read as Envoy/istio-proxy/ztunnel log lines{}",
                stats.lines,
                stats
                    .first_unknown
                    .as_ref()
                    .or(stats.first_foreign.as_ref())
                    .map(|l| format!(" (first: {l})"))
                    .unwrap_or_default()
            ));
        }
        total.add(&stats);
    }
    let what = if paths.len() == 1 {
        let p = paths[0].display().to_string();
        if p == "-" { "stdin".to_string() } else { p }
    } else {
        format!("{} files", paths.len())
    };
    batch.finish(
        cli,
        renderer,
        &total,
        &what,
        "",
        &output::ReadProxies::default(),
    )
}

async fn run_cluster(
    cli: &Cli,
    plan: &ReadPlan,
    renderer: &Renderer,
    namespace: Option<String>,
    more: Vec<String>,
    all: bool,
) -> Result<Exit, RbaclogError> {
    // istioctl first: when it is missing, nothing has been changed.
    let istioctl = if cli.enable_debug {
        Some(Istioctl::locate(&cli.istioctl)?)
    } else {
        None
    };
    let kube = Kube::from_flags(&cli.kube).await?;
    let scope = Scope {
        namespace: if all {
            None
        } else {
            Some(namespace.unwrap_or_else(|| kube.namespace.clone()))
        },
        more_namespaces: if all { Vec::new() } else { more },
        selector: cli.selector.clone(),
        pods: cli.pods.clone(),
    };
    let guard = DebugGuard::default();
    let work = cluster_work(
        cli,
        plan,
        renderer,
        &kube,
        &scope,
        istioctl.as_ref(),
        &guard,
    );
    let result = run_until_signal(work).await;
    if let Some(istioctl) = &istioctl {
        if cli.keep_debug {
            for c in guard.changed() {
                note(&format!(
                    "note: {}/{} left with rbac logger at debug (was {}); restore with: istioctl proxy-config log {}.{} --level rbac:{}",
                    c.namespace, c.pod, c.previous, c.pod, c.namespace, c.previous
                ));
            }
        } else {
            for e in guard.restore(istioctl, &cli.kube).await {
                note(&format!(
                    "warning: could not restore a sidecar's rbac log level: {e}"
                ));
            }
        }
    }
    result
}

async fn cluster_work(
    cli: &Cli,
    plan: &ReadPlan,
    renderer: &Renderer,
    kube: &Kube,
    scope: &Scope,
    istioctl: Option<&Istioctl>,
    guard: &DebugGuard,
) -> Result<Exit, RbaclogError> {
    let targets = cluster::require_targets(kube, scope).await?;
    tracing::info!(pods = targets.len(), "reading istio-proxy logs");
    if let Some(istioctl) = istioctl {
        // ztunnel logs every rejection at error level: nothing to raise there.
        let pods: Vec<(String, String)> = targets
            .iter()
            .filter(|t| t.proxy != "ztunnel")
            .map(|t| (t.namespace.clone(), t.pod.clone()))
            .collect();
        guard.enable(istioctl, &cli.kube, &pods).await?;
        if !cli.follow {
            note(
                "note: --enable-debug raised the rbac logger just now: only requests made from now on get RBAC debug lines, and this run reads the logs once without waiting for them; add -f to follow new requests",
            );
        }
    }
    // What the API adds: ALLOW candidates of `matched policy none`, source pods.
    let pods: Vec<live::ReadPod> = targets
        .iter()
        .map(|t| (t.namespace.clone(), t.pod.clone(), t.proxy))
        .collect();
    let in_scope: Option<Vec<String>> = scope.namespace.as_ref().map(|ns| {
        std::iter::once(ns)
            .chain(&scope.more_namespaces)
            .cloned()
            .collect()
    });
    let live = live::gather(kube, &pods, in_scope.as_deref()).await;
    for p in &cli.policies {
        let raw_id = p == "none" || p.contains('[');
        if !raw_id && !live.knows(p) {
            note(&format!(
                "warning: --policy {p}: no AuthorizationPolicy of that name in the namespaces read (or {})",
                live::ROOT_NAMESPACE
            ));
        }
    }
    let filters = filter::Filters {
        live: Some(std::sync::Arc::new(live)),
        ..plan.filters.clone()
    };
    let window = Window {
        since: plan.since,
        since_time: plan.since_time,
        tail: cli.tail,
    };
    if cli.follow {
        let mut printer = FollowPrinter::new(*renderer);
        printer.start()?;
        let mut on = |d: DecisionRecord| printer.print(&d).map_err(RbaclogError::from);
        cluster::follow_all(
            kube,
            scope,
            targets,
            &window,
            &filters,
            cli.poll_interval,
            &mut on,
        )
        .await?;
        return Ok(Exit::OK);
    }
    // Many pods' decisions interleave: the table keeps cells and sorts at the end.
    let mut batch = Batch::new(cli.summary, renderer, false);
    let (stats, warnings) = cluster::read_all(
        kube,
        &targets,
        &window,
        &filters,
        cli.concurrency as usize,
        &mut |d| batch.add(d),
    )
    .await?;
    for w in &warnings {
        note(&format!("warning: {w}"));
    }
    let what = read_what(&targets);
    let proxies = output::ReadProxies {
        ztunnel_only: targets.iter().all(|t| t.proxy == "ztunnel"),
        waypoints: targets
            .iter()
            .filter(|t| t.proxy == "waypoint")
            .map(|t| format!("{}/{}", t.namespace, t.pod))
            .collect(),
    };
    let window_text = match (plan.since, &plan.since_time, cli.tail) {
        (Some(d), _, _) => format!(" in the last {}", human(d)),
        (None, Some(t), _) => format!(" since {t}"),
        (None, None, Some(n)) => format!(" in their last {n} lines"),
        _ => String::new(),
    };
    batch.finish(cli, renderer, &stats, &what, &window_text, &proxies)
}

/// `the istio-proxy logs of 3 pods`, naming the kinds when not all are sidecars
/// (`... of 3 pods (1 sidecar, 1 waypoint, 1 ztunnel)`).
fn read_what(targets: &[cluster::ProxyPod]) -> String {
    let n = targets.len();
    let mut text = format!(
        "the istio-proxy logs of {n} pod{}",
        if n == 1 { "" } else { "s" }
    );
    if targets.iter().any(|t| t.proxy != "sidecar") {
        let mut kinds: Vec<&str> = targets.iter().map(|t| t.proxy).collect();
        kinds.sort();
        kinds.dedup();
        let counts: Vec<String> = kinds
            .iter()
            .map(|k| format!("{} {k}", targets.iter().filter(|t| t.proxy == *k).count()))
            .collect();
        text.push_str(&format!(" ({})", counts.join(", ")));
    }
    text
}

fn human(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s > 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s > 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}
