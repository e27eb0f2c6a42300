//! authzcheck's command line and its validation.
//!
//! clap parses; [`Cli::validate`] then decides what the user asked for (one
//! pod, a Deployment's pod, every pod matching `-l`, every pod of a
//! namespace, or only a config dump file with no cluster at all) and rejects
//! what clap cannot (bad namespace or pod names, selectors, `--native` with
//! `--config-dump`) as one-line usage errors with exit 2, before anything
//! touches the cluster.

use std::path::PathBuf;

use clap::Parser;
use kubeplugin::error::usage;
use kubeplugin::istioctl::IstioctlArgs;
pub use kubeplugin::names::is_dns_label;
use kubeplugin::selector::validate_selector;
use kubeplugin::target::PodTarget;
use kubeplugin::{KubeFlags, OutputArgs, PluginCli, PluginError};

const EXAMPLES: &str = "\
Examples:
  # Everything that applies to the walk-through's pod in np-test-2
  kubectl authzcheck np-test-2 deployment/np-test-nginx-2

  # A pod: istioctl's POD.NAMESPACE, or POD with -n (or the context's namespace)
  kubectl authzcheck np-test-nginx-2-5d9c7b8f6-x2x7q.np-test-2
  kubectl authzcheck np-test-nginx-2-5d9c7b8f6-x2x7q -n np-test-2

  # The pod of a Service (svc/), StatefulSet (sts/), DaemonSet (ds/), rs/...
  kubectl authzcheck -n np-test-2 svc/svc-np-test-nginx-2

  # Every pod matching a label, or of a namespace (one section each)
  kubectl authzcheck np-test-2 -l app=np-test-nginx-2

  # Read the sidecar's config dump through exec instead of running istioctl
  kubectl authzcheck np-test-2 deployment/np-test-nginx-2 --native

  # No cluster at all: what a saved Envoy config dump enforces
  kubectl authzcheck --config-dump config_dump.json -o json

  # Before merging a policy change: what would apply, marked new/gone/changed
  kubectl authzcheck np-test-2 deployment/np-test-nginx-2 -f pr/policies/
  kubectl authzcheck np-test-2 deployment/np-test-nginx-2 --delete-f old.yaml

  # In scripts: exit 1 when a finding of severity warning or worse exists
  kubectl authzcheck np-test-2 deployment/np-test-nginx-2 --exit-code

  # Only the findings' codes, as kubectl's JSONPath
  kubectl authzcheck np-test-2 deployment/np-test-nginx-2 \\
      -o jsonpath='{range .findings[*]}{.severity} {.code}{\"\\n\"}{end}'

Sections: NetworkPolicy (Kubernetes, enforced by the CNI), AuthorizationPolicy (Istio API),
Envoy (what the sidecar loaded: istioctl x authz check, or its config dump), findings.
With -f/--delete-f (kubectl's meaning; multi-document YAML and List), the policy rows and
findings carry a CHANGE mark (new, gone, changed, unchanged; `change` in JSON) against the
cluster with those manifests applied or deleted; the Envoy section shows the cluster as it is.
-o json prints one object per pod (an array with -l or a namespace); -o yaml, name,
jsonpath=TEMPLATE and custom-columns=SPEC work over that same JSON.
If istioctl fails, the config dump through exec is used and a warning says why.
Exit codes: 0 ok, 1 a warning or worse with --exit-code, 2 usage error, 3 cluster or tool failure, 130 interrupted.";

/// kubectl authzcheck: every policy that applies to a pod, from the API and from Envoy, side by side.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kubectl authzcheck",
    bin_name = "kubectl authzcheck",
    version,
    about = "Show every policy layer that applies to a pod: Kubernetes NetworkPolicies, Istio AuthorizationPolicies from the API, what its Envoy sidecar actually loaded, and findings joining them.",
    after_help = EXAMPLES
)]
pub struct Cli {
    // `[NAMESPACE] [POD]` is usage text for --help, not a doc link.
    #[allow(rustdoc::broken_intra_doc_links)]
    /// [NAMESPACE] [POD]; POD is POD, POD.NAMESPACE, pod/, deployment/, statefulset/ (sts/),
    /// daemonset/ (ds/), replicaset/ (rs/) or service/ (svc/) NAME; with -n: only POD

    #[arg(value_name = "ARGS", num_args = 0..=2)]
    pub args: Vec<String>,

    /// Check every pod matching this label selector (one section each)
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,

    /// Istio root namespace (its AuthorizationPolicies apply mesh-wide)
    #[arg(long, default_value = "istio-system", value_name = "NS")]
    pub root_namespace: String,

    /// Read the sidecar's config dump through exec (pilot-agent in istio-proxy) instead of running istioctl
    #[arg(long)]
    pub native: bool,

    /// Analyse this Envoy config dump (JSON) instead of asking the sidecar; with no pod, no cluster is needed
    #[arg(long, value_name = "FILE", conflicts_with = "native")]
    pub config_dump: Option<PathBuf>,

    /// Exit 1 when a finding of severity warning or worse exists
    #[arg(long)]
    pub exit_code: bool,

    /// What-if: show what would apply with these manifests applied (files, directories, - for stdin; repeatable)
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub filenames: Vec<String>,

    /// What-if: show what would apply with the objects in these manifests deleted (repeatable)
    #[arg(long = "delete-f", value_name = "PATH")]
    pub delete_filenames: Vec<String>,

    #[command(flatten)]
    pub istioctl: IstioctlArgs,
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

/// What to check, once the command line is understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckTarget {
    /// Only a config dump file: no cluster.
    Offline(PathBuf),
    /// One pod (named, or the one pod of a workload or Service) in a
    /// namespace (`None`: the context's).
    One {
        namespace: Option<String>,
        pod: PodTarget,
    },
    /// Every pod matching a selector (or every pod) of a namespace.
    Many {
        namespace: Option<String>,
        selector: Option<String>,
    },
    /// One bare word and no `-n`: the namespace of that name when it exists
    /// (every pod of it), else the pod of that name in the context's namespace.
    NamespaceOrPod(String),
}

fn check_namespace(ns: &str) -> Result<(), PluginError> {
    if is_dns_label(ns) {
        Ok(())
    } else {
        Err(usage(
            format!("invalid namespace name {ns:?}"),
            Some("namespace names are lowercase letters, digits and '-'"),
        ))
    }
}

impl Cli {
    /// Validates and decides the target. Every error here is exit 2.
    pub fn validate(&self) -> Result<CheckTarget, PluginError> {
        if let Some(sel) = &self.selector {
            validate_selector(sel).map_err(|e| usage(e.to_string(), None))?;
        }
        check_namespace(&self.root_namespace)?;
        if let Some(ns) = &self.kube.namespace {
            check_namespace(ns)?;
        }
        let flag_ns = self.kube.namespace.as_deref();
        let (namespace, pod) = match (flag_ns, self.args.as_slice()) {
            (_, []) => (self.kube.namespace.clone(), None),
            (Some(_), [pod]) => {
                let t = PodTarget::parse(pod, flag_ns)?;
                (t.namespace.clone().or(self.kube.namespace.clone()), Some(t))
            }
            (Some(_), [_, _]) => {
                return Err(usage(
                    "too many arguments: with -n give only POD",
                    Some(
                        "kubectl authzcheck -n NAMESPACE POD, or kubectl authzcheck NAMESPACE POD",
                    ),
                ));
            }
            (None, [word]) => {
                let t = PodTarget::parse(word, None)?;
                if !t.is_bare() {
                    (t.namespace.clone(), Some(t))
                } else if self.selector.is_some() || self.config_dump.is_some() {
                    // `NS -l SEL`, `--config-dump F NS`: the word is a namespace.
                    check_namespace(word)?;
                    (Some(word.clone()), None)
                } else {
                    check_namespace(word)?;
                    return Ok(CheckTarget::NamespaceOrPod(word.clone()));
                }
            }
            (None, [ns, pod]) => {
                check_namespace(ns)?;
                let t = PodTarget::parse(pod, Some(ns))?;
                (Some(ns.clone()), Some(t))
            }
            (_, _) => return Err(usage("too many arguments", None)),
        };
        if let Some(path) = &self.config_dump
            && pod.is_none()
            && self.selector.is_none()
            && namespace.is_none()
        {
            if !self.filenames.is_empty() || !self.delete_filenames.is_empty() {
                return Err(usage(
                    "-f and --delete-f change the cluster's policies: name the pod to check",
                    Some("kubectl authzcheck NAMESPACE POD -f change.yaml"),
                ));
            }
            return Ok(CheckTarget::Offline(path.clone()));
        }
        match pod {
            Some(p) => {
                if self.selector.is_some() {
                    return Err(usage(
                        "give either POD or -l SELECTOR, not both",
                        Some(
                            "kubectl authzcheck NAMESPACE POD, or kubectl authzcheck NAMESPACE -l KEY=VALUE",
                        ),
                    ));
                }
                Ok(CheckTarget::One { namespace, pod: p })
            }
            None => {
                if self.config_dump.is_some() {
                    return Err(usage(
                        "--config-dump describes one sidecar: name the pod it came from, or give no namespace, pod or -l",
                        Some("kubectl authzcheck --config-dump FILE [NAMESPACE POD]"),
                    ));
                }
                Ok(CheckTarget::Many {
                    namespace,
                    selector: self.selector.clone(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let mut v = vec!["kubectl-authzcheck"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v)
    }

    fn target(args: &[&str]) -> Result<CheckTarget, PluginError> {
        parse(args).unwrap().validate()
    }

    #[test]
    fn positional_forms() {
        // (namespace, kubectl form of the target) of a One.
        let one = |ns: &str, t: &str| (Some(ns.to_string()), t.to_string());
        let target = |args: &[&str]| match target(args).unwrap() {
            CheckTarget::One { namespace, pod } => (namespace, pod.to_string()),
            other => panic!("{args:?}: {other:?}"),
        };
        assert_eq!(
            target(&["np-test-2", "deployment/np-test-nginx-2"]),
            one("np-test-2", "deployment/np-test-nginx-2")
        );
        assert_eq!(
            target(&["-n", "np-test-2", "p-1"]),
            one("np-test-2", "pod/p-1")
        );
        // istioctl's POD.NS, alone or with a matching -n; sts/ds/svc targets.
        assert_eq!(target(&["p-1.np-test-2"]), one("np-test-2", "pod/p-1"));
        assert_eq!(
            target(&["p-1.np-test-2", "-n", "np-test-2"]),
            one("np-test-2", "pod/p-1")
        );
        assert_eq!(target(&["svc/web.shop"]), one("shop", "service/web"));
        for (t, want) in [
            ("sts/db", "statefulset/db"),
            ("ds/agent", "daemonset/agent"),
            ("rs/web-1", "replicaset/web-1"),
            ("svc/web", "service/web"),
            ("pod/p", "pod/p"),
        ] {
            assert_eq!(target(&["-n", "x", t]), one("x", want), "{t}");
        }
        let target = |args: &[&str]| super::tests::target(args).unwrap();
        // A bare word: a namespace if one exists, else a pod (decided against the API).
        assert_eq!(
            target(&["np-test-2"]),
            CheckTarget::NamespaceOrPod("np-test-2".into())
        );
        assert_eq!(
            target(&["np-test-2", "-l", "app=x"]),
            CheckTarget::Many {
                namespace: Some("np-test-2".into()),
                selector: Some("app=x".into())
            }
        );
        assert_eq!(
            target(&[]),
            CheckTarget::Many {
                namespace: None,
                selector: None
            }
        );
        assert_eq!(
            target(&["--config-dump", "d.json"]),
            CheckTarget::Offline("d.json".into())
        );
        assert!(matches!(
            target(&["--config-dump", "d.json", "ns", "pod/p"]),
            CheckTarget::One { .. }
        ));
    }

    #[test]
    fn bad_input_is_usage_error() {
        let bad: &[&[&str]] = &[
            &["NS", "p"],
            &["ns", "p", "-l", "a=b"],
            &["ns", "-l", "a=$(x)"],
            &["-n", "ns", "a", "b"],
            &["ns", "job/x"],
            &["p.ns", "-n", "other", "x"],
            &["ns", "deployment/"],
            &["ns", "p q"],
            &["--root-namespace", "Istio_System"],
            &["ns", "--config-dump", "x.json"],
            &["--config-dump", "x.json", "-f", "p.yaml"],
        ];
        for args in bad {
            let e = target(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        }
    }

    #[test]
    fn clap_rejects_with_exit_2() {
        for args in [
            &["a", "b", "c"][..],
            &["--native", "--config-dump", "x"],
            &["a", "-o", "xml"],
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
            .to_string()
            .lines()
            // The env value shown depends on the caller's environment.
            .map(|l| {
                if l.contains("[env: ISTIOCTL=") {
                    "          [env: ISTIOCTL]"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
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
