//! rbaclog's command line and its validation.
//!
//! clap parses; [`Cli::validate`] then checks what clap cannot (positional
//! NAMESPACE vs `-n`/`-A`/`--file`, `-` for stdin, selectors, time bounds, flag
//! combinations that make no sense when following), so every bad input is a
//! one-line usage error with exit 2 before anything touches the cluster.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use jiff::Timestamp;
use kubeplugin::duration::clap_duration;
use kubeplugin::error::usage;
use kubeplugin::flags::AllNamespacesFlag;
use kubeplugin::istioctl::IstioctlArgs;
use kubeplugin::names::is_dns_label;
use kubeplugin::selector::validate_selector;
use kubeplugin::{KubeFlags, OutputArgs, PluginCli, PluginError};

use crate::filter::{DecisionFilter, EngineFilter, Filters};

const EXAMPLES: &str = "\
Examples:
  # Denials in np-test-2 in the last hour, naming the policy and rule
  kubectl rbaclog np-test-2

  # Every decision (allowed too) in all namespaces, last 10 minutes
  kubectl rbaclog -A --decision all --since 10m

  # Follow denials of pods labelled app=web, new pods included
  kubectl rbaclog -n shop -l app=web -f

  # Turn on RBAC debug logs for the run, restore each sidecar's level afterwards
  kubectl rbaclog np-test-2 --enable-debug -f

  # Counts per policy and rule, per pod and per log line kind; two namespaces
  kubectl rbaclog shop payments --summary

  # A script's assertion: exit 1 if anything was denied in the last 5 minutes
  kubectl rbaclog np-test-2 --since 5m --exit-code

  # A saved log, no cluster needed
  kubectl logs deploy/web -c istio-proxy | kubectl rbaclog -
  kubectl rbaclog --file proxy-1.log --file proxy-2.log -o jsonl

Sources: RBAC debug lines (logger rbac at debug, Envoy 1.40's multi-line `checking
request` entries included), local replies (`Preparing`/`Sending local reply`),
access log lines (TEXT or JSON; rbac_access_denied_matched_policy[...], UAEX for
CUSTOM), ztunnel's policy rejections; any istio-proxy/Envoy layout, behind
`kubectl logs --prefix`/`--timestamps` or stern. Lines of one request are one
decision: the RBAC filters of one request (same thread, same x-request-id), its
local reply (same thread, same policy) and its access line (same x-request-id,
else downstream, else closest start time within 1s).

Exit codes: 0 ok, 1 with --exit-code when a decision matched, 2 usage error,
3 cluster or tool failure, 130 interrupted.";

/// kubectl rbaclog: Envoy RBAC decisions across pods, with the policy and rule that made them.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kubectl rbaclog",
    bin_name = "kubectl rbaclog",
    version,
    about = "Show Envoy RBAC decisions (Istio AuthorizationPolicy) from the istio-proxy logs of many pods at once, naming the policy and rule, paired with the request.",
    after_help = EXAMPLES
)]
pub struct Cli {
    /// Namespaces to read (like -n, several allowed); `-` reads a log from stdin
    #[arg(value_name = "NAMESPACE")]
    pub targets: Vec<String>,

    #[command(flatten)]
    pub all: AllNamespacesFlag,
    /// Pod label selector
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Only these pods (repeatable): POD, pod/POD, deployment/, statefulset/ (sts/),
    /// daemonset/ (ds/), replicaset/ (rs/) or service/ (svc/) NAME
    #[arg(long = "pod", value_name = "TARGET")]
    pub pods: Vec<String>,

    /// Only lines newer than this (default 1h unless --since-time or --tail)
    #[arg(long, value_parser = clap_duration, value_name = "DURATION", conflicts_with = "since_time")]
    pub since: Option<Duration>,
    /// Only lines at or after this RFC 3339 time
    #[arg(long, value_name = "TIME")]
    pub since_time: Option<String>,
    /// Only the last N lines of each pod's log
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
    pub tail: Option<i64>,
    /// Keep streaming from every pod, picking up new pods and reconnecting cut streams
    #[arg(short = 'f', long)]
    pub follow: bool,

    /// Which decisions to show
    #[arg(long, value_enum, default_value_t = DecisionFilter::Denied, value_name = "WHICH")]
    pub decision: DecisionFilter,
    /// Only decisions of this policy: NAME, NAME.NS, NS/NAME or a raw policy id (repeatable)
    #[arg(long = "policy", value_name = "NAME")]
    pub policies: Vec<String>,
    /// Only enforced decisions, or only shadow (dry-run, CUSTOM) ones
    #[arg(long, value_enum, value_name = "ENGINE")]
    pub engine: Option<EngineFilter>,
    /// Only decisions whose source workload (FROM) is in this namespace (repeatable)
    #[arg(long = "from-namespace", value_name = "NAMESPACE")]
    pub from_namespaces: Vec<String>,
    /// Only decisions whose destination is in this namespace (repeatable): the
    /// sidecar's own, ztunnel's dst.namespace, a waypoint's Service
    #[arg(long = "to-namespace", value_name = "NAMESPACE")]
    pub to_namespaces: Vec<String>,

    /// Print counts per policy and rule, per pod, per proxy kind and per source instead of each decision
    #[arg(long)]
    pub summary: bool,
    /// Exit 1 when at least one decision matched the filters
    #[arg(long)]
    pub exit_code: bool,

    /// Set each selected sidecar's rbac logger to debug (istioctl proxy-config log) for the run
    #[arg(long)]
    pub enable_debug: bool,
    /// With --enable-debug: leave the sidecars at debug instead of restoring their level
    #[arg(long, requires = "enable_debug")]
    pub keep_debug: bool,
    #[command(flatten)]
    pub istioctl: IstioctlArgs,

    /// Read a saved log instead of the cluster (repeatable; `-` is stdin)
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<PathBuf>,

    /// Pods read at once
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256), value_name = "N")]
    pub concurrency: u16,
    /// With -f: how often to look for new and gone pods
    #[arg(long, default_value = "2s", value_parser = clap_duration, value_name = "DURATION")]
    pub poll_interval: Duration,

    #[command(flatten)]
    pub kube: KubeFlags,
    #[command(flatten)]
    pub output: OutputArgs,
}

impl PluginCli for Cli {
    fn verbosity(&self) -> u8 {
        self.kube.verbose
    }
}

/// Where the logs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Saved logs (`-` = stdin).
    Files(Vec<PathBuf>),
    /// The cluster: one namespace (None = the context's) and maybe more, or all.
    Cluster {
        namespace: Option<String>,
        /// Further namespaces given as positionals.
        more: Vec<String>,
        all: bool,
    },
}

/// The validated plan of a run.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    pub source: Source,
    pub filters: Filters,
    /// `--since` to send to the API (None with --since-time or --tail only).
    pub since: Option<Duration>,
    pub since_time: Option<Timestamp>,
}

/// Default `--since` when neither it, `--since-time` nor `--tail` is given.
pub const DEFAULT_SINCE: Duration = Duration::from_secs(3600);

impl Cli {
    /// Checks the command line; returns what to do.
    pub fn validate(&self) -> Result<ReadPlan, PluginError> {
        kubeplugin::render::refuse_output(
            &self.output.output,
            &["name"],
            "rbaclog's rows are decisions, not Kubernetes objects",
        )?;
        kubeplugin::render::refuse_output(
            &self.output.output,
            &["dot", "mermaid", "html"],
            "rbaclog draws no pictures (npexec and authzcheck do)",
        )?;
        if self.follow {
            kubeplugin::render::refuse_output(
                &self.output.output,
                &["yaml", "jsonpath", "custom-columns"],
                "-f streams one decision at a time; use -o jsonl",
            )?;
        }
        let mut files = self.files.clone();
        let mut namespace = self.kube.namespace.clone();
        let mut more = Vec::new();
        if self.targets.iter().any(|t| t == "-") {
            if self.targets.len() > 1 {
                return Err(usage(
                    "`-` (stdin) cannot be combined with namespaces",
                    None,
                ));
            }
            files.push(PathBuf::from("-"));
        } else if let Some((first, rest)) = self.targets.split_first() {
            if let Some(n) = &namespace
                && !self.targets.contains(n)
            {
                return Err(usage(
                    format!("namespace given twice: \"{first}\" and -n \"{n}\""),
                    Some("give the namespaces as NAMESPACE... or with -n"),
                ));
            }
            namespace = Some(first.to_string());
            for ns in rest {
                if ns != first && !more.contains(ns) {
                    more.push(ns.clone());
                }
            }
        }
        for ns in namespace
            .iter()
            .chain(&more)
            .chain(&self.from_namespaces)
            .chain(&self.to_namespaces)
        {
            if !is_dns_label(ns) {
                return Err(usage(
                    format!(
                        "invalid namespace \"{}\"",
                        kubeplugin::render::escape_control(ns)
                    ),
                    Some("namespaces are lowercase letters, digits and '-'"),
                ));
            }
        }
        if !more.is_empty() && !self.pods.is_empty() {
            return Err(usage(
                "--pod needs one namespace",
                Some("use -n NAMESPACE --pod NAME"),
            ));
        }
        if let Some(sel) = &self.selector {
            validate_selector(sel).map_err(|e| usage(e.to_string(), None))?;
        }
        for p in &self.pods {
            // Syntax only; resolved in the namespace when the pods are listed.
            kubeplugin::target::PodTarget::parse(p, Some(namespace.as_deref().unwrap_or("-")))?;
        }
        if !self.pods.is_empty() && self.selector.is_some() {
            return Err(usage(
                "--pod and -l cannot be combined",
                Some("use one of them"),
            ));
        }
        if !self.pods.is_empty() && self.all.all_namespaces {
            return Err(usage(
                "--pod needs one namespace, not -A",
                Some("use -n NAMESPACE --pod NAME"),
            ));
        }
        if self.all.all_namespaces && namespace.is_some() {
            return Err(usage("-A and a namespace cannot be combined", None));
        }
        let since_time = match &self.since_time {
            Some(s) => Some(s.parse::<Timestamp>().map_err(|_| {
                usage(
                    format!(
                        "invalid --since-time \"{}\"",
                        kubeplugin::render::escape_control(s)
                    ),
                    Some("use RFC 3339, e.g. 2025-07-06T19:33:00Z"),
                )
            })?),
            None => None,
        };
        if self.since.is_some_and(|d| d.is_zero()) {
            return Err(usage(
                "--since must be more than 0",
                Some("e.g. --since 5m"),
            ));
        }
        if self.follow && self.summary {
            return Err(usage(
                "--summary cannot be combined with --follow",
                Some("run --summary without -f over a time range, e.g. --since 10m"),
            ));
        }
        if self.follow && self.exit_code {
            return Err(usage(
                "--exit-code cannot be combined with --follow (a followed stream never ends)",
                None,
            ));
        }
        let filters = Filters {
            decision: self.decision,
            engine: self.engine,
            policies: self.policies.clone(),
            source_namespaces: self.from_namespaces.clone(),
            destination_namespaces: self.to_namespaces.clone(),
            after: None,
            live: None,
        };
        if !files.is_empty() {
            let cluster_flags = self.all.all_namespaces
                || namespace.is_some()
                || self.selector.is_some()
                || !self.pods.is_empty()
                || self.follow
                || self.enable_debug
                || self.tail.is_some();
            if cluster_flags {
                return Err(usage(
                    "--file/- reads saved logs: -n/NAMESPACE, -A, -l, --pod, -f, --tail and --enable-debug do not apply",
                    None,
                ));
            }
            // Saved logs: time bounds only when given explicitly.
            let after = match (since_time, self.since) {
                (Some(t), _) => Some(t),
                (None, Some(d)) => jiff::SignedDuration::try_from(d)
                    .ok()
                    .and_then(|d| Timestamp::now().checked_sub(d).ok()),
                _ => None,
            };
            return Ok(ReadPlan {
                source: Source::Files(files),
                filters: Filters { after, ..filters },
                since: None,
                since_time: None,
            });
        }
        let since = match (self.since, since_time, self.tail) {
            (Some(d), _, _) => Some(d),
            (None, None, None) => Some(DEFAULT_SINCE),
            _ => None,
        };
        Ok(ReadPlan {
            source: Source::Cluster {
                namespace,
                more,
                all: self.all.all_namespaces,
            },
            filters,
            since,
            since_time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let mut v = vec!["kubectl-rbaclog"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v)
    }

    fn plan(args: &[&str]) -> Result<ReadPlan, PluginError> {
        parse(args)
            .map_err(|e| usage(e.to_string(), None))?
            .validate()
    }

    #[test]
    fn namespace_forms() {
        let p = plan(&["np-test-2"]).unwrap();
        assert_eq!(
            p.source,
            Source::Cluster {
                namespace: Some("np-test-2".into()),
                more: vec![],
                all: false
            }
        );
        assert_eq!(p.since, Some(DEFAULT_SINCE));
        let p = plan(&["-n", "np-test-2"]).unwrap();
        assert_eq!(
            p.source,
            Source::Cluster {
                namespace: Some("np-test-2".into()),
                more: vec![],
                all: false
            }
        );
        let p = plan(&["-A"]).unwrap();
        assert_eq!(
            p.source,
            Source::Cluster {
                namespace: None,
                more: vec![],
                all: true
            }
        );
        let p = plan(&["a", "b", "a", "c"]).unwrap();
        assert_eq!(
            p.source,
            Source::Cluster {
                namespace: Some("a".into()),
                more: vec!["b".into(), "c".into()],
                all: false
            }
        );
        assert!(plan(&["a", "-"]).is_err());
        assert!(plan(&["a", "b", "--pod", "x"]).is_err());
        assert!(plan(&["a", "B"]).is_err());
        let p = plan(&["np-test-2", "-n", "np-test-2"]).unwrap();
        assert!(matches!(p.source, Source::Cluster { .. }));
    }

    #[test]
    fn stdin_and_files() {
        let p = plan(&["-"]).unwrap();
        assert_eq!(p.source, Source::Files(vec!["-".into()]));
        let p = plan(&["--file", "a.log", "--file", "b.log"]).unwrap();
        assert_eq!(
            p.source,
            Source::Files(vec!["a.log".into(), "b.log".into()])
        );
        assert!(p.filters.after.is_none());
        let p = plan(&["--file", "a.log", "--since-time", "2025-01-01T00:00:00Z"]).unwrap();
        assert!(p.filters.after.is_some());
    }

    #[test]
    fn time_defaults() {
        assert_eq!(plan(&["x", "--tail", "10"]).unwrap().since, None);
        assert_eq!(
            plan(&["x", "--since", "5m"]).unwrap().since,
            Some(Duration::from_secs(300))
        );
        let p = plan(&["x", "--since-time", "2025-07-06T19:33:00Z"]).unwrap();
        assert_eq!(p.since, None);
        assert!(p.since_time.is_some());
    }

    #[test]
    fn bad_input_is_usage_error() {
        let bad: &[&[&str]] = &[
            &["a", "-n", "b"],
            &["NP_TEST"],
            &["-A", "-n", "x"],
            &["x", "--pod", "p", "-l", "a=b"],
            &["-A", "--pod", "p"],
            &["x", "-l", "app=$(x)"],
            &["x", "--since-time", "yesterday"],
            &["x", "--since", "0s"],
            &["x", "-f", "--summary"],
            &["x", "-f", "--exit-code"],
            &["-", "-n", "x"],
            &["--file", "a", "-f"],
            &["--file", "a", "--enable-debug"],
            &["x", "--pod", "a b"],
        ];
        for args in bad {
            let e = plan(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        }
    }

    #[test]
    fn clap_rejects_with_exit_2() {
        for args in [
            &["x", "--decision", "maybe"][..],
            &["x", "--engine", "dry"],
            &["x", "--since", "soon"],
            &["x", "--keep-debug"],
            &["x", "-o", "xml"],
            &["x", "--concurrency", "0"],
            &["x", "--since", "1m", "--since-time", "2025-01-01T00:00:00Z"],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn help_snapshot() {
        use clap::CommandFactory;
        let help = Cli::command()
            .term_width(100)
            .render_long_help()
            .to_string();
        assert!(help.contains("Examples:"));
        for line in EXAMPLES
            .lines()
            .filter(|l| l.starts_with("  ") && !l.trim_start().starts_with('#'))
        {
            // No terminal of 80 columns wraps an example.
            assert!(line.chars().count() <= 80, "example wider than 80: {line}");
        }
        insta::assert_snapshot!("help", help);
    }
}
