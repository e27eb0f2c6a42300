//! `--predict -f`, `--delete-f`, `--diff` and `--offline`: what a policy
//! change will do, before it is applied.
//!
//! The engine (meshpolicy) already evaluates NetworkPolicy without I/O; this
//! module feeds it. It reads manifests (files, directories, `-` for stdin),
//! builds the BEFORE model (the live cluster's namespaces in scope, or with
//! `--offline` the `--before` manifests) and the AFTER model (the overlay, or
//! `--after`), and prints either the whole predicted connectivity or only
//! what changes, in np-guard's notation. With `--diff`, `--fail-on` turns
//! the changes into the exit code a CI job gates a pull request on.

use std::collections::BTreeSet;
use std::io::Write;

use kubeplugin::error::usage;
use kubeplugin::manifests::read_manifests;
use kubeplugin::render::{Cell, Renderer, Tone, json_err, write_json_line, write_str};
use kubeplugin::{Exit, Kube, OutputFormat, PluginError};
use meshpolicy::manifests::Objects;
use meshpolicy::whatif::{self, Allowed, Change, FailOn, apply_objects, remove_objects};
use meshpolicy::{Cluster, ClusterOptions};

use crate::cli::{Cli, FailOnArg, is_dns_label};
use crate::model;

/// Whether the command line asks for a what-if run rather than probes.
pub fn requested(cli: &Cli) -> bool {
    cli.offline
        || cli.diff
        || cli.before.is_some()
        || cli.after.is_some()
        || !cli.filenames.is_empty()
        || !cli.delete_filenames.is_empty()
}

/// What the what-if run computes, once the command line is understood.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Job {
    OfflineDiff { before: String, after: String },
    OfflinePredict { files: Vec<String> },
    Live { diff: bool },
}

fn job(cli: &Cli) -> Result<Job, PluginError> {
    for ns in &cli.namespaces {
        if !is_dns_label(ns) {
            return Err(usage(format!("invalid namespace name \"{ns}\""), None));
        }
    }
    if cli.explain || cli.matrix || cli.url.is_some() || cli.expect.is_some() {
        return Err(usage(
            "-f, --delete-f, --diff and --offline do not probe: they cannot be combined with --explain, --matrix, --url or --expect",
            None,
        ));
    }
    if cli.offline {
        if !cli.delete_filenames.is_empty() {
            return Err(usage(
                "--delete-f needs a live cluster",
                Some("offline, give the state after the deletion as --after"),
            ));
        }
        return match (&cli.before, &cli.after) {
            (Some(b), Some(a)) => {
                if !cli.filenames.is_empty() {
                    return Err(usage(
                        "give either --before/--after or -f with --offline",
                        None,
                    ));
                }
                Ok(Job::OfflineDiff {
                    before: b.clone(),
                    after: a.clone(),
                })
            }
            _ if cli.diff => Err(usage(
                "--offline --diff needs --before PATH and --after PATH",
                None,
            )),
            _ if !cli.filenames.is_empty() => Ok(Job::OfflinePredict {
                files: cli.filenames.clone(),
            }),
            _ => Err(usage(
                "--offline needs --before and --after (with --diff), or -f (with --predict)",
                Some("kubectl npexec --offline --before base/ --after pr/ --diff"),
            )),
        };
    }
    if cli.before.is_some() || cli.after.is_some() {
        return Err(usage(
            "--before and --after are for --offline",
            Some("against the live cluster, give the change with -f / --delete-f"),
        ));
    }
    if cli.filenames.is_empty() && cli.delete_filenames.is_empty() {
        return Err(usage(
            "--diff needs the change: -f PATH and/or --delete-f PATH",
            None,
        ));
    }
    if !cli.diff && !cli.predict {
        return Err(usage(
            "-f and --delete-f need --predict or --diff",
            Some("kubectl npexec --diff -f new-policy.yaml"),
        ));
    }
    Ok(Job::Live { diff: cli.diff })
}

fn model(objects: Objects, what: &str) -> Result<Cluster, PluginError> {
    Cluster::from_objects(objects, ClusterOptions::default())
        .map_err(|e| usage(format!("{what}: {e}"), None))
}

/// Namespaces the manifests name (their objects' namespaces, and Namespace objects).
fn touched(o: &Objects) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = o.namespaces.iter().map(|n| n.name.clone()).collect();
    out.extend(o.pods.iter().map(|p| p.namespace.clone()));
    out.extend(o.template_pods.iter().map(|p| p.namespace.clone()));
    let ns_of = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        m.namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into())
    };
    out.extend(o.network_policies.iter().map(|p| ns_of(&p.metadata)));
    out.extend(o.authorization_policies.iter().map(|p| ns_of(&p.metadata)));
    out.extend(o.peer_authentications.iter().map(|p| p.namespace.clone()));
    out
}

/// Every namespace's name; none (with a warning) when listing is forbidden.
async fn all_namespaces(kube: &Kube) -> Result<Vec<String>, PluginError> {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, ListParams};
    let api: Api<Namespace> = Api::all(kube.client.clone());
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect()),
        Err(kube::Error::Api(e)) if e.code == 403 => {
            tracing::warn!(
                "cannot list namespaces: only the namespaces the manifests touch are compared"
            );
            Ok(Vec::new())
        }
        Err(e) => Err(kube.err(e, &kubeplugin::ApiOp::new("list", "namespaces", ""))),
    }
}

fn fail_on(a: FailOnArg) -> FailOn {
    match a {
        FailOnArg::NewlyDenied => FailOn::NewlyDenied,
        FailOnArg::NewlyAllowed => FailOn::NewlyAllowed,
        FailOnArg::Any => FailOn::Any,
    }
}

/// Runs a what-if command line.
pub async fn run(cli: &Cli) -> Result<Exit, PluginError> {
    let job = job(cli)?;
    let renderer = Renderer::from_args(&cli.output);
    let (before, after, diff) = match job {
        Job::OfflineDiff { before, after } => (
            model(read_manifests(&[before])?, "--before")?,
            model(read_manifests(&[after])?, "--after")?,
            true,
        ),
        Job::OfflinePredict { files } => {
            let c = model(read_manifests(&files)?, "-f")?;
            (c.clone(), c, false)
        }
        Job::Live { diff } => {
            let apply = read_manifests(&cli.filenames)?;
            let delete = read_manifests(&cli.delete_filenames)?;
            let kube = Kube::from_flags(&cli.kube).await?;
            let scope: BTreeSet<String> = if cli.namespaces.is_empty() {
                // The namespaces the manifests touch and their peers: any
                // namespace may hold a peer, so every one we may list.
                let mut s: BTreeSet<String> = touched(&apply)
                    .into_iter()
                    .chain(touched(&delete))
                    .collect();
                s.extend(all_namespaces(&kube).await?);
                s
            } else {
                cli.namespaces.iter().cloned().collect()
            };
            let (mut live, notes) =
                model::load_objects(&kube, &scope, &ClusterOptions::default()).await?;
            // A Deployment in the manifests and its running pods are one workload.
            whatif::name_pods_after_deployments(&mut live);
            for n in notes {
                tracing::warn!("{n}");
            }
            let mut overlaid = apply_objects(&live, &apply);
            remove_objects(&mut overlaid, &delete);
            (model(live, "cluster")?, model(overlaid, "-f")?, diff)
        }
    };
    let mut stdout = std::io::stdout().lock();
    let exit = if diff {
        let changes = whatif::changes(&before, &after);
        write_changes(&renderer, &changes, &mut stdout)?;
        let gate = fail_on(cli.fail_on);
        if changes.iter().any(|c| gate.trips(c)) {
            Exit::NEGATIVE
        } else {
            Exit::OK
        }
    } else {
        write_allowed(&renderer, &whatif::predict(&after), &mut stdout)?;
        Exit::OK
    };
    stdout
        .flush()
        .map_err(|e| PluginError::io("writing output", e))?;
    Ok(exit)
}

fn write_json<T: serde::Serialize>(
    renderer: &Renderer,
    items: &[T],
    out: &mut dyn Write,
) -> Result<(), PluginError> {
    if renderer.format == OutputFormat::Jsonl {
        for it in items {
            write_json_line(it, out)?;
        }
        return Ok(());
    }
    let mut s = serde_json::to_string_pretty(items).map_err(json_err)?;
    s.push('\n');
    write_str(out, &s)
}

/// The changes as a table (`-o wide` adds the policies on each side) or JSON.
pub fn write_changes(
    renderer: &Renderer,
    changes: &[Change],
    out: &mut dyn Write,
) -> Result<(), PluginError> {
    let wide = match renderer.format {
        OutputFormat::Json | OutputFormat::Jsonl => return write_json(renderer, changes, out),
        OutputFormat::Wide => true,
        OutputFormat::Table => false,
    };
    if changes.is_empty() {
        return write_str(out, "no connectivity changes\n");
    }
    let mut headers: Vec<String> = ["CHANGE", "FROM", "TO", "BEFORE", "AFTER", "LAYER"]
        .map(String::from)
        .to_vec();
    if wide {
        headers.extend(["POLICIES BEFORE", "POLICIES AFTER"].map(String::from));
    }
    let rows: Vec<Vec<Cell>> = changes
        .iter()
        .map(|c| {
            let tone = if c.newly_denied {
                Tone::Bad
            } else {
                Tone::Good
            };
            let mut row = vec![
                Cell::new(c.kind.to_string()).tone(tone),
                Cell::new(&c.from),
                Cell::new(match c.port {
                    Some(port) => format!("{} TCP {port}", c.to),
                    None => c.to.clone(),
                }),
                Cell::new(&c.before),
                Cell::new(&c.after),
                Cell::new(c.layer.to_string()),
            ];
            if wide {
                let j = |v: &[String]| {
                    if v.is_empty() {
                        "(none: open)".to_string()
                    } else {
                        v.join(", ")
                    }
                };
                row.push(Cell::new(j(&c.policies.before)));
                row.push(Cell::new(j(&c.policies.after)));
            }
            row
        })
        .collect();
    let denied = changes.iter().filter(|c| c.newly_denied).count();
    let allowed = changes.iter().filter(|c| c.newly_allowed).count();
    write_str(out, &renderer.grid(&headers, &rows))?;
    write_str(
        out,
        &format!(
            "{} change(s): {denied} cut connections (newly denied), {allowed} open new ones (newly allowed)\n",
            changes.len()
        ),
    )
}

/// The predicted connectivity as a table or JSON.
pub fn write_allowed(
    renderer: &Renderer,
    allowed: &[Allowed],
    out: &mut dyn Write,
) -> Result<(), PluginError> {
    if matches!(renderer.format, OutputFormat::Json | OutputFormat::Jsonl) {
        return write_json(renderer, allowed, out);
    }
    let headers: Vec<String> = ["FROM", "TO", "CONNECTIONS", "LAYER"]
        .map(String::from)
        .to_vec();
    let rows: Vec<Vec<Cell>> = allowed
        .iter()
        .map(|a| {
            vec![
                Cell::new(&a.from),
                Cell::new(&a.to),
                Cell::new(&a.connections),
                Cell::new(a.layer.to_string()),
            ]
        })
        .collect();
    write_str(out, &renderer.grid(&headers, &rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn job_of(args: &[&str]) -> Result<Job, PluginError> {
        let mut v = vec!["kubectl-npexec"];
        v.extend_from_slice(args);
        job(&Cli::try_parse_from(v).unwrap())
    }

    #[test]
    fn command_lines() {
        assert_eq!(
            job_of(&["--offline", "--before", "a", "--after", "b", "--diff"]).unwrap(),
            Job::OfflineDiff {
                before: "a".into(),
                after: "b".into()
            }
        );
        assert_eq!(
            job_of(&["--offline", "-f", "x", "--predict"]).unwrap(),
            Job::OfflinePredict {
                files: vec!["x".into()]
            }
        );
        assert_eq!(
            job_of(&["--diff", "-f", "x"]).unwrap(),
            Job::Live { diff: true }
        );
        assert_eq!(
            job_of(&["--predict", "--delete-f", "x"]).unwrap(),
            Job::Live { diff: false }
        );
        for bad in [
            &["--diff"][..],
            &["-f", "x"],
            &["--offline", "--diff", "-f", "x"],
            &["--offline"],
            &["--offline", "--delete-f", "x", "--predict"],
            &["--diff", "-f", "x", "--explain"],
        ] {
            let e = job_of(bad).unwrap_err();
            assert!(matches!(e, PluginError::Usage { .. }), "{bad:?}: {e}");
        }
    }
}
