//! kubectl-npexec library: `run()` holds the plugin; main.rs only maps its result to an exit code.
//!
//! `kubectl npexec FROM TO...` replaces the walk-through's
//! `kubectl exec $(kubectl get pod ...) -- bash -c "curl ... || echo Failed"`:
//! one process, no shell, every Service port in TO probed concurrently, and a
//! verdict per probe naming the layer that decided. The flow is: validate the
//! command line ([`cli`]), resolve sources and targets into a plan ([`plan`]),
//! run the probes with bounded concurrency ([`probe`]), classify
//! ([`verdict`]), and render the records ([`report`]; pictures in [`graph`]
//! and [`html`]). `--explain` then reads
//! the policies ([`model`]) and the destination sidecars' logs ([`sidecar`])
//! and names what decided ([`explain`]); `--predict` does the policy analysis
//! instead of probing. `-f`, `--delete-f`, `--diff` and `--offline` ask what a
//! policy change would do, against the live cluster or manifests alone
//! ([`whatif`]).

pub mod analysis;
pub mod cli;
pub mod endpoints;
pub mod explain;
pub mod graph;
pub mod html;
pub mod model;
pub mod plan;
pub mod ports;
pub mod probe;
pub mod record;
pub mod report;
pub mod sidecar;
pub mod source;
pub mod truth;
pub mod verdict;
pub mod whatif;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kubeplugin::picture::PageHeader;
use kubeplugin::render::{Progress, Renderer, write_json_line};
use kubeplugin::{Exit, Kube, OutputFormat, Picture, PluginError};

pub use cli::Cli;
use cli::Mode;
use plan::PlannedProbe;
use probe::{ToolCache, new_marker, run_probe};
use record::{ProbeRecord, body_excerpt};
use verdict::{Expectation, Verdict};

/// Runs the plugin for a parsed command line.
pub async fn run(cli: Cli) -> Result<Exit, PluginError> {
    if whatif::requested(&cli) {
        kubeplugin::render::refuse_output(
            &cli.output.output,
            &["dot", "mermaid", "html"],
            "what-if runs (-f, --delete-f, --diff, --offline) print changes, not probes",
        )?;
        return whatif::run(&cli).await;
    }
    let mode = cli.validate()?;
    if cli.predict && cli.wait.is_some() {
        return Err(PluginError::usage(
            "--wait re-probes until expectations hold; --predict does not probe",
            Some("drop --wait, or use --explain to probe and analyse".to_string()),
        ));
    }
    let truth = cli.expect_matrix.as_deref().map(truth::read).transpose()?;
    let renderer = Renderer::from_args(&cli.output);
    let kube = Kube::from_flags(&cli.kube).await?;
    let plan = plan::build(&kube, &cli, &mode).await?;
    if let Some(t) = &truth {
        t.check_namespaces(&plan.namespaces)?;
    }
    tracing::info!(probes = plan.probes.len(), "plan ready");
    if !cli.predict {
        announce_sources(&plan)?;
    }

    let analysing = cli.explain || cli.predict;
    let stream_jsonl = renderer.format == OutputFormat::Jsonl && cli.wait.is_none() && !analysing;
    let mut records = if cli.predict {
        predict(&kube, &plan, cli.expect).await?
    } else {
        execute(&kube, &cli, &plan.probes, stream_jsonl).await?
    };
    let mark = |records: &mut Vec<ProbeRecord>| {
        if let Some(t) = &truth {
            t.apply(records);
        }
    };
    mark(&mut records);
    let expecting = cli.expect.is_some() || truth.is_some();
    if let (Some(wait), true, false) = (cli.wait, expecting, cli.predict) {
        let deadline = Instant::now() + wait;
        let mut progress = report::WaitProgress::new();
        let mut attempt = 1;
        while !all_met(&records) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let unmet = records.iter().filter(|r| r.met == Some(false)).count();
            progress.attempt(attempt, unmet, records.len(), deadline - now);
            let pause = (deadline - now).min(Duration::from_secs(1));
            tracing::info!(unmet, attempt, "expectations not met yet; re-probing");
            tokio::time::sleep(pause).await;
            records = execute(&kube, &cli, &plan.probes, false).await?;
            mark(&mut records);
            attempt += 1;
        }
        progress.finish();
    }
    if cli.explain {
        explain_records(&kube, &plan, &mut records).await?;
    }
    let truth_diff = truth.as_ref().map(|t| {
        let diffs = t.apply(&mut records);
        (diffs.len(), truth::render_diff(t, &diffs))
    });

    if let Some(picture) = renderer.picture() {
        let matrix = matches!(mode, Mode::Matrix { .. });
        let text = match picture {
            Picture::Dot => graph::dot(&plan.namespaces, &records),
            Picture::Mermaid => graph::mermaid(&plan.namespaces, &records),
            Picture::Html => {
                let title = match (matrix, cli.predict) {
                    (true, true) => "npexec connectivity matrix (predicted)",
                    (true, false) => "npexec connectivity matrix",
                    (false, true) => "npexec probes (predicted)",
                    (false, false) => "npexec probes",
                };
                let header =
                    PageHeader::for_this_run(title, &cli.kube, "npexec", env!("CARGO_PKG_VERSION"));
                html::page(&header, &plan.namespaces, matrix, &records)
            }
        };
        let mut stdout = std::io::stdout().lock();
        kubeplugin::render::write_str(&mut stdout, &text)?;
        stdout
            .flush()
            .map_err(|e| PluginError::io("writing output", e))?;
        return Ok(exit_for(&records, cli.expect));
    }
    let mut stdout = std::io::stdout().lock();
    match (&mode, renderer.format) {
        (_, OutputFormat::Jsonl) if stream_jsonl => {}
        (Mode::Matrix { .. }, OutputFormat::Table) => {
            kubeplugin::render::write_str(
                &mut stdout,
                &report::matrix(&plan.namespaces, &records, &renderer),
            )?;
        }
        _ => renderer.write_all(&records, &mut stdout)?,
    }
    stdout
        .flush()
        .map_err(|e| PluginError::io("writing output", e))?;
    drop(stdout);
    if matches!(renderer.format, OutputFormat::Table | OutputFormat::Wide) {
        if let Some((_, diff)) = &truth_diff {
            let mut stdout = std::io::stdout().lock();
            kubeplugin::render::write_str(&mut stdout, diff)?;
        }
        if analysing {
            let text = match mode {
                Mode::Matrix { .. } => report::matrix_explanation(&records),
                _ => report::explanation(&records),
            };
            let mut stdout = std::io::stdout().lock();
            kubeplugin::render::write_str(&mut stdout, &text)?;
            stdout
                .flush()
                .map_err(|e| PluginError::io("writing output", e))?;
        }
        report::print_hints(&records, matches!(mode, Mode::Matrix { .. }));
    }
    report::print_unmet(&records);
    if let Some((n, diff)) = &truth_diff
        && *n > 0
    {
        if !matches!(renderer.format, OutputFormat::Table | OutputFormat::Wide) {
            // JSON on stdout stays parseable; the diff goes beside it.
            let mut stderr = std::io::stderr().lock();
            kubeplugin::render::write_str(&mut stderr, diff)?;
        }
        let exit = exit_for(&records, None);
        return Ok(if exit == Exit::OK {
            Exit::NEGATIVE
        } else {
            exit
        });
    }
    Ok(exit_for(&records, cli.expect))
}

/// One stderr line per distinct source pod: where the probes come from.
fn announce_sources(plan: &plan::ProbePlan) -> Result<(), PluginError> {
    let mut seen: Vec<(&str, &str, &str)> = Vec::new();
    let mut text = String::new();
    for s in plan.probes.iter().filter_map(|p| p.source.as_ref().ok()) {
        let key = (s.namespace.as_str(), s.pod.as_str(), s.container.as_str());
        if !seen.contains(&key) {
            seen.push(key);
            text.push_str(&source::describe(s));
            text.push('\n');
        }
    }
    kubeplugin::render::write_str(&mut std::io::stderr().lock(), &text)
}

fn all_met(records: &[ProbeRecord]) -> bool {
    records.iter().all(|r| r.met != Some(false))
}

/// 3 when a probe could not run (unless that was expected), else 1 when an
/// expectation is not met, else 0.
pub fn exit_for(records: &[ProbeRecord], expect: Option<Expectation>) -> Exit {
    let exec_failed_expected = expect == Some(Expectation::Exactly(Verdict::ExecFailed));
    if !exec_failed_expected && records.iter().any(|r| r.verdict == Verdict::ExecFailed) {
        return Exit::FAILED;
    }
    if records.iter().any(|r| r.met == Some(false)) {
        return Exit::NEGATIVE;
    }
    Exit::OK
}

/// Runs every planned probe, at most `--parallel` at once, in plan order.
async fn execute(
    kube: &Kube,
    cli: &Cli,
    probes: &[PlannedProbe],
    stream_jsonl: bool,
) -> Result<Vec<ProbeRecord>, PluginError> {
    let marker = new_marker();
    let tools = ToolCache::default();
    let mut progress = Progress::new(probes.len());
    let mut results = futures::stream::iter(probes.iter().enumerate())
        .map(|(i, p)| {
            let marker = &marker;
            let tools = &tools;
            async move { (i, probe_one(kube, p, cli.expect, marker, tools).await) }
        })
        .buffer_unordered(cli.parallel as usize);
    let mut out: Vec<(usize, ProbeRecord)> = Vec::with_capacity(probes.len());
    while let Some((i, rec)) = results.next().await {
        let rec = rec?;
        progress.tick(&format!("{} -> {}", rec.from_label(), rec.to_label()));
        if stream_jsonl {
            let mut stdout = std::io::stdout().lock();
            write_json_line(&rec, &mut stdout)?;
        }
        out.push((i, rec));
    }
    progress.finish();
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, r)| r).collect())
}

/// `--predict`: one record per planned probe, its verdict from the engine.
async fn predict(
    kube: &Kube,
    plan: &plan::ProbePlan,
    expect: Option<Expectation>,
) -> Result<Vec<ProbeRecord>, PluginError> {
    let (_, evaluated) = explain::analyse(kube, plan).await?;
    Ok(plan
        .probes
        .iter()
        .zip(evaluated)
        .map(|(p, e)| predicted_record(p, e, expect))
        .collect())
}

/// The record `--predict` prints for one planned probe.
pub fn predicted_record(
    p: &PlannedProbe,
    e: explain::Evaluated,
    expect: Option<Expectation>,
) -> ProbeRecord {
    let (verdict, detail, hint) = match (&p.source, e.analysis.engine_verdict) {
        (Err(failure), _) => (
            Verdict::ExecFailed,
            failure.detail.clone(),
            failure.hint.clone(),
        ),
        (Ok(_), Some(v)) => (v, predicted_detail(&e), None),
        (Ok(_), None) => (
            Verdict::Unknown,
            e.analysis
                .notes
                .first()
                .cloned()
                .unwrap_or_else(|| "the engine could not decide".into()),
            None,
        ),
    };
    ProbeRecord {
        from: p.from.clone(),
        to: p.to.clone(),
        verdict,
        detail,
        http_status: None,
        curl_exit: None,
        tool: None,
        body: String::new(),
        duration_ms: 0,
        expected: expect,
        met: expect.map(|x| x.met_by(verdict)),
        hint,
        policies: Some(e.policies),
        analysis: Some(e.analysis),
        predicted: true,
        sidecar_stats: None,
        started_at: None,
    }
}

fn predicted_detail(e: &explain::Evaluated) -> String {
    let a = &e.analysis;
    match (&a.network, &a.authorization) {
        (Some(n), _) if !n.allowed => {
            let blocking: Vec<&str> = [&n.egress, &n.ingress]
                .into_iter()
                .filter(|s| s.contains("denied"))
                .map(String::as_str)
                .collect();
            format!("NetworkPolicy: {}", blocking.join("; "))
        }
        _ if a.mtls.as_ref().is_some_and(|m| m.fails) => {
            let m = a.mtls.as_ref().expect("checked");
            let by = m
                .decided_by
                .as_deref()
                .map(|p| format!(" (PeerAuthentication {p})"))
                .unwrap_or_default();
            format!(
                "PeerAuthentication: port {} is {}{by}; the client sends {}",
                m.port, m.mode, m.client_sends
            )
        }
        (_, Some(_))
            if !e.policies.iter().any(|p| {
                p.kind == explain::PolicyKind::AuthorizationPolicy
                    || p.kind == explain::PolicyKind::NetworkPolicy
            }) =>
        {
            "no policy applies".to_string()
        }
        (_, Some(z)) => format!("AuthorizationPolicy {}: {}", z.decision, z.reason),
        _ => a.notes.first().cloned().unwrap_or_default(),
    }
}

/// (namespace, pod).
type PodKey = (String, String);
/// The RBAC decisions read from one sidecar's log, or why they could not be read.
type SidecarLog = Result<Vec<sidecar::TimedDecision>, PluginError>;

/// `--explain`: attaches the engine's analysis, Envoy's log evidence and the
/// contradictions to each probed record.
async fn explain_records(
    kube: &Kube,
    plan: &plan::ProbePlan,
    records: &mut [ProbeRecord],
) -> Result<(), PluginError> {
    let (cluster, evaluated) = explain::analyse(kube, plan).await?;
    // One log read per destination pod that some probe reached, from its earliest probe.
    let mut wanted: BTreeMap<(String, String), jiff::Timestamp> = BTreeMap::new();
    for ((p, r), e) in plan.probes.iter().zip(records.iter()).zip(&evaluated) {
        let (Some(t), Some(pod), Some(start)) =
            (&p.target, &e.analysis.destination_pod, r.started_at)
        else {
            continue;
        };
        let sidecar = cluster
            .pod(&t.namespace, pod)
            .is_some_and(|p| p.has_sidecar);
        if sidecar && sidecar::reaches_rbac(r.verdict) {
            let since = start
                .checked_sub(jiff::SignedDuration::try_from(sidecar::SLACK).unwrap_or_default())
                .unwrap_or(start);
            wanted
                .entry((t.namespace.clone(), pod.clone()))
                .and_modify(|s| *s = (*s).min(since))
                .or_insert(since);
        }
    }
    let logs: BTreeMap<PodKey, SidecarLog> = futures::stream::iter(wanted)
        .map(|((ns, pod), since)| async move {
            let r = sidecar::fetch(kube, &ns, &pod, since).await;
            ((ns, pod), r)
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for ((p, r), mut e) in plan.probes.iter().zip(records.iter_mut()).zip(evaluated) {
        let mut decisions = Vec::new();
        if let (Some(t), Some(pod), Some(start)) =
            (&p.target, e.analysis.destination_pod.clone(), r.started_at)
        {
            match logs.get(&(t.namespace.clone(), pod.clone())) {
                Some(Ok(lines)) => {
                    let end = start
                        .checked_add(jiff::SignedDuration::from_millis(r.duration_ms as i64))
                        .unwrap_or(start);
                    let source_ip = r
                        .from
                        .pod
                        .as_deref()
                        .and_then(|sp| cluster.pod(&r.from.namespace, sp))
                        .and_then(|sp| sp.ip);
                    decisions = sidecar::attribute(lines, start, end, source_ip, r.verdict);
                    let applies = e
                        .policies
                        .iter()
                        .any(|n| n.kind == explain::PolicyKind::AuthorizationPolicy);
                    if decisions.is_empty() && applies {
                        e.analysis.notes.push(format!(
                            "no RBAC decision for this probe in the istio-proxy log of {}/{pod}: RBAC debug logging may be off (istioctl proxy-config log {pod} -n {} --level rbac:debug), or the sidecar has no policy yet",
                            t.namespace, t.namespace
                        ));
                    }
                }
                Some(Err(err)) => e.analysis.notes.push(format!(
                    "could not read the istio-proxy log of {}/{pod}: {err}",
                    t.namespace
                )),
                None => {}
            }
        }
        e.analysis.envoy_policy_ids =
            decisions
                .iter()
                .filter_map(|d| d.policy_id.clone())
                .fold(Vec::new(), |mut v, id| {
                    if !v.contains(&id) {
                        v.push(id);
                    }
                    v
                });
        e.analysis.contradictions = explain::contradictions(r.verdict, &e, &decisions);
        e.policies.extend(explain::envoy_notes(&decisions));
        r.policies = Some(e.policies);
        r.analysis = Some(e.analysis);
    }
    Ok(())
}

async fn probe_one(
    kube: &Kube,
    p: &PlannedProbe,
    expect: Option<Expectation>,
    marker: &str,
    tools: &ToolCache,
) -> Result<ProbeRecord, PluginError> {
    let started_at = jiff::Timestamp::now();
    let run = match &p.source {
        Ok(_) if p.ready_endpoints == Some(0) => {
            let (detail, hint) = verdict::no_endpoints(&p.ctx);
            probe::ProbeRun::not_run(Verdict::NoEndpoints, detail, Some(hint))
        }
        Ok(source) => {
            let destination = p.target.as_ref().and_then(|t| {
                Some(probe::Destination {
                    namespace: t.namespace.clone(),
                    selector: t.selector.clone()?,
                })
            });
            run_probe(
                kube,
                source,
                &p.request,
                &p.ctx,
                marker,
                tools,
                destination.as_ref(),
            )
            .await?
        }
        Err(failure) => probe::ProbeRun::not_run(
            Verdict::ExecFailed,
            failure.detail.clone(),
            failure.hint.clone(),
        ),
    };
    let verdict = run.classified.verdict;
    Ok(ProbeRecord {
        from: p.from.clone(),
        to: p.to.clone(),
        verdict,
        detail: run.classified.detail,
        http_status: run.http_status,
        curl_exit: run.exit,
        tool: run.tool,
        body: body_excerpt(&run.body),
        duration_ms: run.duration.as_millis() as u64,
        expected: expect,
        met: expect.map(|e| e.met_by(verdict)),
        hint: run.classified.hint,
        policies: None,
        analysis: None,
        predicted: false,
        sidecar_stats: run.sidecar_stats,
        started_at: Some(started_at),
    })
}
