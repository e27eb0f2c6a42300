//! npexec's command line and its validation.
//!
//! clap parses; [`Cli::validate`] then checks what clap cannot (FROM/TO vs
//! `--url`/`--matrix`, URL and path characters, header syntax, selectors,
//! namespace names) so every bad input is a one-line usage error with exit 2,
//! before anything touches the cluster.

use std::time::Duration;

use clap::Parser;
use kubeplugin::duration::clap_duration;
use kubeplugin::error::usage;
pub use kubeplugin::names::is_dns_label;
use kubeplugin::selector::validate_selector;
use kubeplugin::target::PodTarget;
use kubeplugin::{KubeFlags, OutputArgs, PluginCli, PluginError};

use crate::verdict::{Expectation, Verdict};

/// `--expect` values, declared to clap so shell completion can offer them; the
/// parsing itself stays in [`Expectation`]'s `FromStr`.
fn expectation_parser() -> impl clap::builder::TypedValueParser<Value = Expectation> {
    use clap::builder::{PossibleValue, TypedValueParser};
    let mut values = vec![
        PossibleValue::new("allow").alias("allowed"),
        PossibleValue::new("deny").alias("denied"),
        PossibleValue::new("reachable"),
    ];
    values.extend(
        Verdict::ALL
            .iter()
            .filter(|v| **v != Verdict::Allowed)
            .map(|v| PossibleValue::new(v.as_str())),
    );
    clap::builder::PossibleValuesParser::new(values).try_map(|s| s.parse::<Expectation>())
}

const EXAMPLES: &str = "\
Examples:
  # From a pod in np-test-1, request every Service port in np-test-2
  kubectl npexec np-test-1 np-test-2

  # Both directions, choosing the source pod by label
  kubectl npexec np-test-1 np-test-2 --both -l app=np-test-nginx-1

  # One Service (NAMESPACE/SERVICE, or --service) and port, a path and a header
  kubectl npexec np-test-1 np-test-2/svc-np-test-nginx-2 --port 80 \\
      --path /healthz -H 'X-Debug: 1'

  # Any URL
  kubectl npexec np-test-1 --url http://example.internal:8080/

  # Assert a deny, re-probing for up to 10s while the policy propagates (exit 1 if not met)
  kubectl npexec np-test-1 np-test-2 --expect deny --wait 10s

  # Every ordered pair of namespaces, as a matrix
  kubectl npexec --matrix team-a team-b team-c
  kubectl npexec --matrix --namespace-selector mesh=enabled

  # Compare the matrix with a truth table (rows FROM, columns TO; . allowed, X denied); exit 1 on a difference
  kubectl npexec --matrix team-a team-b team-c --expect-matrix expected.txt

  # Name the policies behind each verdict (NetworkPolicy rules, AuthorizationPolicy ids
  # from the engine and the destination's Envoy log) and flag contradictions
  kubectl npexec np-test-1 np-test-2 --both --explain

  # Predict from the policies alone, without running anything in a pod
  kubectl npexec --matrix team-a team-b team-c --predict

  # What-if, offline (CI): what a change to manifests opens or cuts; exit 1 if it cuts traffic
  kubectl npexec --offline --before base/ --after pr/ --diff

  # What-if against the live cluster: the effect of applying or deleting manifests
  kubectl npexec --diff -f new-policy.yaml
  kubectl npexec --predict -f new-policy.yaml --delete-f old-policy.yaml

  # Machine-readable
  kubectl npexec np-test-1 np-test-2 -o json

Verdicts: allowed, denied-rbac, blocked-network, refused, dns-failure, mtls-failure, http-error, exec-failed.
Exit codes: 0 ok (or all expectations met), 1 an expectation not met, 2 usage error, 3 cluster failure or probes could not run, 130 interrupted.";

/// kubectl npexec: probe from a pod in FROM to the Services in TO and name the layer that decided.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kubectl npexec",
    bin_name = "kubectl npexec",
    version,
    about = "Probe from a pod in FROM to the Services in each TO namespace (HTTP) and say which layer decided: Istio AuthorizationPolicy, NetworkPolicy, DNS, mTLS or the application.",
    after_help = EXAMPLES,
    group(clap::ArgGroup::new("expectations").args(["expect", "expect_matrix"]).multiple(true))
)]
pub struct Cli {
    /// FROM namespace, then TO namespaces; a TO may be NAMESPACE/SERVICE (only that Service).
    /// With -n, -n is FROM and every argument is a TO; with --matrix: the namespaces
    #[arg(value_name = "NAMESPACE")]
    pub namespaces: Vec<String>,

    /// Source pod label selector, in every mode (namespaces of --matrix: --namespace-selector)
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Source pod: POD, pod/POD, deployment/, statefulset/ (sts/), daemonset/ (ds/),
    /// replicaset/ (rs/) or service/ (svc/) NAME, in FROM
    #[arg(long, value_name = "TARGET", conflicts_with = "selector")]
    pub pod: Option<String>,
    /// Source container (default: the pod's default container, never istio-proxy)
    #[arg(short = 'c', long, value_name = "NAME")]
    pub container: Option<String>,

    /// When no pod in FROM has curl or wget: probe from an ephemeral container
    /// with this image (e.g. curlimages/curl) added to the chosen pod, sharing
    /// its network namespace and so its sidecar (as `kubectl debug` does)
    #[arg(long, value_name = "IMAGE")]
    pub debug_image: Option<String>,

    /// Only this Service in TO (repeatable)
    #[arg(long = "service", value_name = "NAME")]
    pub services: Vec<String>,
    /// Only this port of each Service: a number or a port name (e.g. http-web)
    #[arg(long, value_name = "PORT")]
    pub port: Option<crate::ports::PortSpec>,
    /// Probe ports whose protocol Istio sniffs (no known port name or
    /// appProtocol) with HTTP; by default only port 80 is, others get a TCP probe
    #[arg(long)]
    pub http: bool,
    /// Request path
    #[arg(long, default_value = "/", value_name = "PATH")]
    pub path: String,
    /// Request this URL instead of Services in TO
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// HTTP method
    #[arg(long, default_value = "GET", value_name = "METHOD")]
    pub method: String,
    /// Request header "Name: value" (repeatable)
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// Time limit per request (curl --max-time)
    #[arg(long, default_value = "3s", value_parser = clap_duration, value_name = "DURATION")]
    pub timeout: Duration,
    /// Cluster DNS domain
    #[arg(long, default_value = "cluster.local", value_name = "DOMAIN")]
    pub cluster_domain: String,

    /// Also probe each TO -> FROM (from the first ready pod of TO)
    #[arg(long)]
    pub both: bool,
    /// Probe every ordered pair of the namespaces; print a matrix
    #[arg(long)]
    pub matrix: bool,
    /// With --matrix: select the namespaces by label
    #[arg(long, value_name = "SELECTOR")]
    pub namespace_selector: Option<String>,
    /// With --matrix: leave out same-namespace pairs (the diagonal)
    #[arg(long, requires = "matrix")]
    pub no_same_namespace: bool,
    /// With --matrix: the expected matrix, a truth table file (see README); exit 1 when a cell differs
    #[arg(
        long,
        value_name = "FILE",
        requires = "matrix",
        conflicts_with = "expect"
    )]
    pub expect_matrix: Option<std::path::PathBuf>,
    /// Probes run at once
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=512))]
    pub parallel: u16,

    /// Expected result: allow (verdict allowed), deny (denied-rbac or blocked-network),
    /// reachable (the application answered, any status: allowed or http-error) or a verdict
    #[arg(long, value_name = "EXPECT", value_parser = expectation_parser(), hide_possible_values = true)]
    pub expect: Option<Expectation>,
    /// With --expect or --expect-matrix: re-probe until every expectation holds or this time is up
    #[arg(long, value_parser = clap_duration, value_name = "DURATION", requires = "expectations")]
    pub wait: Option<Duration>,

    /// After probing, name the policies that decided (NetworkPolicy and AuthorizationPolicy)
    #[arg(long)]
    pub explain: bool,
    /// Analyse the policies without probing (static prediction)
    #[arg(long, conflicts_with = "explain")]
    pub predict: bool,

    /// What-if: evaluate with these manifests applied over the model (files, directories, - for stdin; repeatable)
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub filenames: Vec<String>,
    /// What-if: evaluate as if the objects in these manifests were deleted (repeatable)
    #[arg(long = "delete-f", value_name = "PATH")]
    pub delete_filenames: Vec<String>,
    /// What-if: print only the connections that change (before -> after)
    #[arg(long)]
    pub diff: bool,
    /// What-if without a cluster: the model comes from manifests only
    #[arg(long)]
    pub offline: bool,
    /// With --offline: manifests of the state before the change
    #[arg(long, value_name = "PATH", requires = "after")]
    pub before: Option<String>,
    /// With --offline: manifests of the state after the change
    #[arg(long, value_name = "PATH", requires = "before")]
    pub after: Option<String>,
    /// With --diff: exit 1 when a change of this kind exists
    #[arg(long, value_enum, default_value_t = FailOnArg::NewlyDenied, value_name = "CHANGE")]
    pub fail_on: FailOnArg,

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

/// A TO argument: a namespace, or `NAMESPACE/SERVICE` for one Service of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct To {
    pub namespace: String,
    /// `NAMESPACE/SERVICE`: only this Service (else `--service`, else all).
    pub service: Option<String>,
}

impl To {
    /// Reads `NAMESPACE` or `NAMESPACE/SERVICE` (also `NAMESPACE/svc/SERVICE`).
    pub fn parse(s: &str) -> Result<To, PluginError> {
        let (ns, svc) = match s.split_once('/') {
            None => (s, None),
            Some((ns, rest)) => {
                let rest = rest
                    .strip_prefix("svc/")
                    .or_else(|| rest.strip_prefix("service/"))
                    .unwrap_or(rest);
                (ns, Some(rest))
            }
        };
        if !is_dns_label(ns) {
            return Err(usage(
                format!(
                    "invalid namespace name {:?}",
                    kubeplugin::render::escape_control(ns)
                ),
                Some(
                    "namespace names are lowercase letters, digits and '-' (a TO may be NAMESPACE/SERVICE)",
                ),
            ));
        }
        if let Some(svc) = svc
            && !is_dns_label(svc)
        {
            return Err(usage(
                format!(
                    "invalid service name {:?} in {:?}",
                    kubeplugin::render::escape_control(svc),
                    kubeplugin::render::escape_control(s)
                ),
                Some("a TO is NAMESPACE or NAMESPACE/SERVICE"),
            ));
        }
        Ok(To {
            namespace: ns.to_string(),
            service: svc.map(str::to_string),
        })
    }
}

/// `--fail-on`: which what-if changes fail a CI gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOnArg {
    /// A connection allowed before is denied after
    NewlyDenied,
    /// A connection denied before is allowed after
    NewlyAllowed,
    /// Any change
    Any,
}

/// What to probe, once the command line is understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// FROM -> each TO (and back with `--both`).
    Pairs { from: String, to: Vec<To> },
    /// FROM -> a URL.
    Url { from: String, url: String },
    /// Every ordered pair of these namespaces (or of those the selector picks).
    Matrix {
        namespaces: Vec<String>,
        namespace_selector: Option<String>,
        pod_selector: Option<String>,
    },
}

fn has_bad_chars(s: &str) -> bool {
    s.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// Checks `--url`: http(s), a host, no spaces or control characters.
pub fn validate_url(url: &str) -> Result<(), PluginError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            usage(
                format!("invalid --url \"{url}\": must start with http:// or https://"),
                None,
            )
        })?;
    if has_bad_chars(url) {
        return Err(usage(
            format!("invalid --url {url:?}: contains spaces or control characters"),
            Some("percent-encode them (%20)"),
        ));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err(usage(format!("invalid --url \"{url}\": no host"), None));
    }
    Ok(())
}

/// The port in a URL (explicit, else 80/443 by scheme).
pub fn url_port(url: &str) -> Option<u16> {
    let (rest, default) = if let Some(r) = url.strip_prefix("https://") {
        (r, 443)
    } else {
        (url.strip_prefix("http://")?, 80)
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority.rsplit('@').next()?;
    if hostport.ends_with(']') {
        return Some(default);
    }
    match hostport.rsplit_once(':') {
        Some((_, p)) => p.parse().ok(),
        None => Some(default),
    }
}

impl Cli {
    /// Validates and decides the mode. Every error here is exit 2.
    pub fn validate(&self) -> Result<Mode, PluginError> {
        kubeplugin::render::refuse_output(
            &self.output.output,
            &["name"],
            "npexec's rows are probes, not Kubernetes objects",
        )?;
        for ns in &self.namespaces {
            // NAMESPACE/SERVICE is read (and checked) as a TO below.
            if !is_dns_label(ns) && (!ns.contains('/') || self.matrix) {
                return Err(usage(
                    format!(
                        "invalid namespace name {:?}",
                        kubeplugin::render::escape_control(ns)
                    ),
                    Some("namespace names are lowercase letters, digits and '-'"),
                ));
            }
        }
        if let Some(pod) = &self.pod {
            // Syntax only here; the namespace suffix is read against FROM when resolving.
            PodTarget::parse(pod, Some(self.kube.namespace.as_deref().unwrap_or("-")))?;
        }
        for svc in &self.services {
            if !is_dns_label(svc) {
                return Err(usage(
                    format!("invalid service name {svc:?}"),
                    Some("Service names are lowercase letters, digits and '-'"),
                ));
            }
        }
        for sel in [&self.selector, &self.namespace_selector]
            .into_iter()
            .flatten()
        {
            validate_selector(sel).map_err(|e| usage(e.to_string(), None))?;
        }
        if !self.path.starts_with('/') {
            return Err(usage(
                format!("invalid --path \"{}\": must start with /", self.path),
                None,
            ));
        }
        if has_bad_chars(&self.path) {
            return Err(usage(
                format!(
                    "invalid --path {:?}: contains spaces or control characters",
                    self.path
                ),
                Some("percent-encode them (%20)"),
            ));
        }
        if self.method.is_empty()
            || !self
                .method
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(usage(
                format!("invalid --method \"{}\"", self.method),
                Some("use an HTTP method such as GET, POST, HEAD"),
            ));
        }
        for h in &self.headers {
            let ok = h.split_once(':').is_some_and(|(name, value)| {
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
                    && !value.chars().any(|c| c.is_control() && c != '\t')
            });
            if !ok {
                return Err(usage(
                    format!("invalid --header {h:?}"),
                    Some("use \"Name: value\" without newlines"),
                ));
            }
        }
        if self.timeout.is_zero() {
            return Err(usage("--timeout must be greater than 0", None));
        }
        if !self.cluster_domain.split('.').all(is_dns_label) {
            return Err(usage(
                format!("invalid --cluster-domain \"{}\"", self.cluster_domain),
                None,
            ));
        }
        if let Some(u) = &self.url {
            validate_url(u)?;
        }

        if self.matrix {
            if self.output.no_headers
                && self.output.output == kubeplugin::Output::Format(kubeplugin::OutputFormat::Table)
            {
                return Err(usage(
                    "--no-headers does not apply to the --matrix table: its headers are the namespaces",
                    Some("use -o wide --no-headers for one row per probe, or -o json"),
                ));
            }
            if self.kube.namespace.is_some() {
                return Err(usage(
                    "-n does not apply to --matrix: name the namespaces as arguments",
                    Some("kubectl npexec --matrix NS1 NS2 [NS...]"),
                ));
            }
            if self.url.is_some() || self.both {
                return Err(usage(
                    "--matrix cannot be combined with --url or --both",
                    None,
                ));
            }
            // -l always selects source pods; namespaces come from arguments
            // or --namespace-selector.
            if !self.namespaces.is_empty() && self.namespace_selector.is_some() {
                return Err(usage(
                    "give either namespaces or --namespace-selector with --matrix",
                    None,
                ));
            }
            if self.namespace_selector.is_none() && self.namespaces.len() < 2 {
                let hint = if self.selector.is_some() && self.namespaces.is_empty() {
                    "-l selects the source pods in each namespace; select namespaces with --namespace-selector LABEL=VALUE"
                } else {
                    "kubectl npexec --matrix NS1 NS2 [NS...] or --matrix --namespace-selector LABEL=VALUE"
                };
                return Err(usage("--matrix needs at least two namespaces", Some(hint)));
            }
            let (namespace_selector, pod_selector) =
                (self.namespace_selector.clone(), self.selector.clone());
            return Ok(Mode::Matrix {
                namespaces: self.namespaces.clone(),
                namespace_selector,
                pod_selector,
            });
        }
        if self.namespace_selector.is_some() {
            return Err(usage("--namespace-selector only works with --matrix", None));
        }

        let mut positional = self.namespaces.clone();
        let from = match &self.kube.namespace {
            // -n is FROM (where the source pod runs, as with `kubectl exec -n`), so
            // every argument is a TO. The same namespace again as the first argument
            // is almost always FROM typed twice: refused rather than probed as a TO.
            Some(ns) => {
                if positional.first() == Some(ns) {
                    return Err(usage(
                        format!(
                            "namespace {ns} given both as -n (FROM) and as the first TO: with -n, every NAMESPACE argument is a TO"
                        ),
                        Some(
                            "drop -n (kubectl npexec FROM TO...), or drop the repeated name (kubectl npexec -n FROM TO...)",
                        ),
                    ));
                }
                ns.clone()
            }
            None => {
                if positional.is_empty() {
                    return Err(usage(
                        "missing FROM namespace",
                        Some("kubectl npexec FROM TO [TO...] (see --help)"),
                    ));
                }
                positional.remove(0)
            }
        };
        if !is_dns_label(&from) {
            return Err(usage(
                format!(
                    "invalid FROM namespace {:?}",
                    kubeplugin::render::escape_control(&from)
                ),
                Some("FROM is a namespace; choose its pod with --pod or -l"),
            ));
        }
        if let Some(url) = &self.url {
            if !positional.is_empty() {
                return Err(usage("give either TO namespaces or --url, not both", None));
            }
            if self.both {
                return Err(usage("--both needs TO namespaces, not --url", None));
            }
            if !self.services.is_empty() || self.port.is_some() {
                return Err(usage("--service and --port do not apply to --url", None));
            }
            return Ok(Mode::Url {
                from,
                url: url.clone(),
            });
        }
        if positional.is_empty() {
            return Err(usage(
                "missing TO namespace",
                Some("kubectl npexec FROM TO [TO...], or --url URL"),
            ));
        }
        let to = positional
            .iter()
            .map(|t| To::parse(t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Mode::Pairs { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let mut v = vec!["kubectl-npexec"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v)
    }

    fn mode(args: &[&str]) -> Result<Mode, PluginError> {
        parse(args).unwrap().validate()
    }

    #[test]
    fn from_and_to() {
        let to = |ns: &str, svc: Option<&str>| To {
            namespace: ns.into(),
            service: svc.map(str::to_string),
        };
        assert_eq!(
            mode(&["np-test-1", "np-test-2", "np-test-3"]).unwrap(),
            Mode::Pairs {
                from: "np-test-1".into(),
                to: vec![to("np-test-2", None), to("np-test-3", None)]
            }
        );
        assert_eq!(
            mode(&["-n", "np-test-1", "np-test-2"]).unwrap(),
            Mode::Pairs {
                from: "np-test-1".into(),
                to: vec![to("np-test-2", None)]
            }
        );
        // NAMESPACE/SERVICE where a TO namespace is.
        for arg in [
            "np-test-2/svc-np-test-nginx-2",
            "np-test-2/svc/svc-np-test-nginx-2",
        ] {
            assert_eq!(
                mode(&["np-test-1", arg, "np-test-3"]).unwrap(),
                Mode::Pairs {
                    from: "np-test-1".into(),
                    to: vec![
                        to("np-test-2", Some("svc-np-test-nginx-2")),
                        to("np-test-3", None)
                    ]
                }
            );
        }
        // -n is FROM; the same namespace again as the first argument is refused.
        let e = mode(&["-n", "np-test-1", "np-test-1", "np-test-2"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("both as -n (FROM)"), "{e}");
        // --pod takes every target form.
        for pod in [
            "web-1",
            "pod/web-1",
            "deployment/web",
            "sts/db",
            "ds/a",
            "rs/x",
            "svc/web",
        ] {
            assert!(mode(&["a", "b", "--pod", pod]).is_ok(), "{pod}");
        }
        assert_eq!(
            mode(&["np-test-1", "--url", "http://x:8080/"]).unwrap(),
            Mode::Url {
                from: "np-test-1".into(),
                url: "http://x:8080/".into()
            }
        );
    }

    #[test]
    fn service_names_must_be_dns_labels() {
        assert!(mode(&["a", "b", "--service", "svc-1"]).is_ok());
        for bad in ["svc;id", "Svc", "svc name", "../x", "a\u{7}b", "x-", ""] {
            let err = mode(&["a", "b", "--service", bad]).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}: {err}");
            assert!(err.to_string().contains("invalid service name"), "{err}");
        }
    }

    #[test]
    fn matrix_forms() {
        assert!(
            matches!(mode(&["--matrix", "a", "b", "c"]).unwrap(), Mode::Matrix { namespaces, .. } if namespaces.len() == 3)
        );
        match mode(&["--matrix", "--namespace-selector", "mesh=on", "-l", "app=x"]).unwrap() {
            Mode::Matrix {
                namespace_selector,
                pod_selector,
                ..
            } => {
                assert_eq!(namespace_selector.as_deref(), Some("mesh=on"));
                assert_eq!(pod_selector.as_deref(), Some("app=x"));
            }
            m => panic!("{m:?}"),
        }
        // -l means source pods everywhere: alone it names no namespace.
        let e = mode(&["--matrix", "-l", "mesh=on"]).unwrap_err();
        assert!(
            e.hint()
                .unwrap_or_default()
                .contains("--namespace-selector"),
            "{e}"
        );
    }

    #[test]
    fn bad_input_is_usage_error() {
        let bad: &[&[&str]] = &[
            &["np-test-1"],
            &[],
            &["np-test-1", "np-test-2", "--url", "http://x/"],
            &["np-test-1", "--url", "ftp://x/"],
            &["np-test-1", "--url", "http://x/a b"],
            &["np-test-1", "np-test-2", "--path", "noslash"],
            &["np-test-1", "np-test-2", "--path", "/a\nb"],
            &["np-test-1", "np-test-2", "-H", "NoColon"],
            &["np-test-1", "np-test-2", "-H", "X: a\r\nInjected: 1"],
            &["np-test-1", "np-test-2", "--method", "GET /x"],
            &["np-test-1", "np-test-2", "-l", "app=$(x)"],
            &["NP_TEST", "np-test-2"],
            &["--matrix", "a"],
            &["--matrix", "a", "b", "--both"],
            &["np-test-1", "np-test-2", "--timeout", "0s"],
            &["np-test-1", "--url", "http://x/", "--both"],
            &["np-test-1", "np-test-2/Bad"],
            &["np-test-1", "np-test-2/a/b"],
            &["np-test-1/svc", "np-test-2"],
            &["--matrix", "a/x", "b"],
            &["--matrix", "-n", "a", "b", "c"],
            &["a", "b", "--pod", "job/x"],
            &["--matrix", "a", "b", "--no-headers"],
            &["--matrix", "-l", "app=x"],
        ];
        for args in bad {
            let e = mode(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        }
    }

    #[test]
    fn clap_rejects_with_exit_2() {
        for args in [
            &["a", "b", "--timeout", "soon"][..],
            &["a", "b", "-o", "xml"],
            &["a", "b", "--expect", "maybe"],
            &["a", "b", "--wait", "5s"],
            &["a", "b", "--parallel", "0"],
            &["a", "b", "--pod", "p", "-l", "a=b"],
            &["a", "b", "--explain", "--predict"],
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
        examples_fit(EXAMPLES);
        insta::assert_snapshot!("help", help);
    }

    /// Every example fits 80 columns, so no terminal wraps a flag away from
    /// its value (`-H` and `'X-Debug: 1'`); and -H's value stays beside it.
    pub(crate) fn examples_fit(examples: &str) {
        for line in examples
            .lines()
            .filter(|l| l.starts_with("  ") && !l.trim_start().starts_with('#'))
        {
            assert!(line.chars().count() <= 80, "example wider than 80: {line}");
            if let Some(i) = line.find(" -H") {
                assert!(line[i + 3..].starts_with(" '"), "{line}");
            }
        }
    }

    #[test]
    fn literal_path_is_accepted() {
        assert!(mode(&["np-test-1", "np-test-2", "--path", "/$(reboot);x"]).is_ok());
    }

    #[test]
    fn url_ports() {
        assert_eq!(url_port("http://x/"), Some(80));
        assert_eq!(url_port("https://x/"), Some(443));
        assert_eq!(url_port("http://x:8080/a"), Some(8080));
        assert_eq!(url_port("http://u:p@x:81"), Some(81));
        assert_eq!(url_port("http://[::1]/"), Some(80));
    }
}
