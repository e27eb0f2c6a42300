//! kubectl-npexec library: `run()` holds the plugin; main.rs only maps its result to an exit code.
//!
//! `kubectl npexec FROM TO...` replaces the walk-through's
//! `kubectl exec $(kubectl get pod ...) -- bash -c "curl ... || echo Failed"`:
//! one process, no shell, every Service port in TO probed concurrently, and a
//! verdict per probe naming the layer that decided. The flow is: validate the
//! command line ([`cli`]), resolve sources and targets into a plan ([`plan`]),
//! run the probes with bounded concurrency ([`probe`]), classify
//! ([`verdict`]), and render the records ([`report`]).

pub mod cli;
pub mod explain;
pub mod plan;
pub mod probe;
pub mod report;
pub mod verdict;

use std::io::Write;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kubeplugin::render::{Progress, Renderer, write_json_line};
use kubeplugin::{Exit, Kube, OutputFormat, PluginError};

pub use cli::Cli;
use cli::Mode;
use plan::PlannedProbe;
use probe::{ToolCache, new_marker, run_probe};
use report::{ProbeRecord, body_excerpt};
use verdict::{Expectation, Verdict};

/// Runs the plugin for a parsed command line.
pub async fn run(cli: Cli) -> Result<Exit, PluginError> {
    let mode = cli.validate()?;
    if cli.explain {
        explain::ensure_available(explain::Analysis::Explain)?;
    }
    if cli.predict {
        explain::ensure_available(explain::Analysis::Predict)?;
    }
    let renderer = Renderer::from_args(&cli.output);
    let kube = Kube::from_flags(&cli.kube).await?;
    let plan = plan::build(&kube, &cli, &mode).await?;
    tracing::info!(probes = plan.probes.len(), "plan ready");

    let stream_jsonl = renderer.format == OutputFormat::Jsonl && cli.wait.is_none();
    let mut records = execute(&kube, &cli, &plan.probes, stream_jsonl).await?;
    if let (Some(wait), Some(_)) = (cli.wait, cli.expect) {
        let deadline = Instant::now() + wait;
        while !all_met(&records) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let pause = (deadline - now).min(Duration::from_secs(1));
            tracing::info!(
                unmet = records.iter().filter(|r| r.met == Some(false)).count(),
                "expectations not met yet; re-probing"
            );
            tokio::time::sleep(pause).await;
            records = execute(&kube, &cli, &plan.probes, false).await?;
        }
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
        report::print_hints(&records);
    }
    Ok(exit_for(&records, cli.expect))
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

async fn probe_one(
    kube: &Kube,
    p: &PlannedProbe,
    expect: Option<Expectation>,
    marker: &str,
    tools: &ToolCache,
) -> Result<ProbeRecord, PluginError> {
    let (verdict, detail, hint, http_status, curl_exit, tool, body, duration) = match &p.source {
        Ok(source) => {
            let run = run_probe(kube, source, &p.request, &p.ctx, marker, tools).await?;
            (
                run.classified.verdict,
                run.classified.detail,
                run.classified.hint,
                run.http_status,
                run.exit,
                run.tool,
                body_excerpt(&run.body),
                run.duration,
            )
        }
        Err(failure) => (
            Verdict::ExecFailed,
            failure.detail.clone(),
            failure.hint.clone(),
            None,
            None,
            None,
            String::new(),
            Duration::ZERO,
        ),
    };
    Ok(ProbeRecord {
        from: p.from.clone(),
        to: p.to.clone(),
        verdict,
        detail,
        http_status,
        curl_exit,
        tool,
        body,
        duration_ms: duration.as_millis() as u64,
        expected: expect,
        met: expect.map(|e| e.met_by(verdict)),
        hint,
        policies: None,
        predicted: false,
    })
}
