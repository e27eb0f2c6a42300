//! Typed errors shared by all plugins, and their mapping to exit codes.
//!
//! The README fixes one exit-code table for every plugin (0 ok, 1 negative
//! result asked for, 2 usage/config, 3 cluster or tool failure, 130/143
//! interrupted). Keeping the mapping next to the error type means no plugin can
//! invent its own codes, and translating Kubernetes API errors here gives every
//! plugin the same one-line messages (`namespace "x" not found`,
//! `cannot create pods/exec in namespace y`, the unreachable server's URL).

use std::fmt;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: a negative result the user asked to be told about.
pub const EXIT_NEGATIVE: u8 = 1;
/// Exit code: usage or configuration error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the cluster or a tool failed.
pub const EXIT_FAILED: u8 = 3;
/// Exit code: interrupted by SIGINT.
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit code: terminated by SIGTERM.
pub const EXIT_TERMINATED: u8 = 143;

/// Every failure a plugin reports. Each variant knows its exit code and hint.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// A flag or argument is invalid (exit 2).
    #[error("{message}")]
    Usage {
        message: String,
        hint: Option<String>,
    },
    /// The kubeconfig could not be read or used (exit 2).
    #[error("{message}")]
    Config {
        message: String,
        hint: Option<String>,
    },
    /// The namespace does not exist (exit 3).
    #[error("namespace \"{0}\" not found")]
    NamespaceNotFound(String),
    /// A named object does not exist (exit 3).
    #[error("{kind} \"{name}\" not found in namespace {namespace}")]
    NotFound {
        kind: String,
        name: String,
        namespace: String,
    },
    /// No pod matched the selector (exit 3).
    #[error("no pod in namespace {namespace} matches {selector}")]
    NoPodMatches { namespace: String, selector: String },
    /// The namespace exists but holds no pod at all (exit 3).
    #[error("namespace {namespace} has no pods")]
    NoPods { namespace: String },
    /// The chosen pod is not running (exit 3).
    #[error("pod {namespace}/{pod} is not running (phase {phase})")]
    PodNotRunning {
        namespace: String,
        pod: String,
        phase: String,
    },
    /// The container asked for is not in the pod (exit 3).
    #[error(
        "container \"{container}\" not found in pod {namespace}/{pod}; its containers: {}",
        containers.join(", ")
    )]
    ContainerNotFound {
        namespace: String,
        pod: String,
        container: String,
        containers: Vec<String>,
    },
    /// The namespace holds no Service to probe (exit 3).
    #[error("no Service in namespace {namespace}")]
    NoServices { namespace: String },
    /// The API refused the operation (exit 3).
    #[error("cannot {verb} {resource} in namespace {namespace}")]
    Forbidden {
        verb: String,
        resource: String,
        namespace: String,
        message: String,
    },
    /// The API server could not be reached (exit 3).
    #[error("cannot reach the Kubernetes API at {server}: {detail}")]
    Unreachable { server: String, detail: String },
    /// The API server accepted the connection but did not answer within
    /// `--request-timeout` (exit 3).
    #[error("the Kubernetes API at {server} did not answer within --request-timeout")]
    NoAnswer { server: String },
    /// The API server rejected the kubeconfig's credentials: 401 (exit 3).
    #[error("credentials rejected by the Kubernetes API at {server} (401 Unauthorized)")]
    Unauthorized { server: String },
    /// Any other API failure (exit 3).
    #[error("Kubernetes API error{}: {message}", code.map(|c| format!(" {c}")).unwrap_or_default())]
    Api { code: Option<u16>, message: String },
    /// An exec into a container failed (exit 3).
    #[error("exec in {namespace}/{pod} ({container}) failed: {message}")]
    Exec {
        namespace: String,
        pod: String,
        container: String,
        message: String,
    },
    /// An external tool is not installed (exit 3).
    #[error("{tool} not found")]
    ToolNotFound { tool: String, hint: String },
    /// An external tool ran and failed (exit 3); `stderr` is quoted.
    #[error("{tool} failed{}: {stderr}", code.map(|c| format!(" (exit {c})")).unwrap_or_default())]
    Tool {
        tool: String,
        code: Option<i32>,
        stderr: String,
    },
    /// Local I/O failed (exit 3).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Writing output failed because the reader went away (`| head`): quiet exit.
    #[error("broken pipe")]
    BrokenPipe,
    /// SIGINT (exit 130).
    #[error("interrupted")]
    Interrupted,
    /// SIGTERM (exit 143).
    #[error("terminated")]
    Terminated,
}

/// A usage error (exit 2) from a message and an optional literal hint: the
/// form every plugin's command-line validation uses.
pub fn usage(message: impl Into<String>, hint: Option<&str>) -> PluginError {
    PluginError::usage(message, hint.map(str::to_string))
}

impl PluginError {
    /// A usage error with a hint.
    pub fn usage(message: impl Into<String>, hint: impl Into<Option<String>>) -> Self {
        PluginError::Usage {
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// Wraps an I/O error; a broken pipe becomes [`PluginError::BrokenPipe`].
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::BrokenPipe {
            PluginError::BrokenPipe
        } else {
            PluginError::Io {
                context: context.into(),
                source,
            }
        }
    }

    /// The exit code the README assigns to this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            PluginError::Usage { .. } | PluginError::Config { .. } => EXIT_USAGE,
            PluginError::BrokenPipe => EXIT_OK,
            PluginError::Interrupted => EXIT_INTERRUPTED,
            PluginError::Terminated => EXIT_TERMINATED,
            _ => EXIT_FAILED,
        }
    }

    /// What the user can do about it, if we know.
    pub fn hint(&self) -> Option<String> {
        match self {
            PluginError::Usage { hint, .. } | PluginError::Config { hint, .. } => hint.clone(),
            PluginError::NamespaceNotFound(_) => {
                Some("list namespaces with `kubectl get namespaces`".into())
            }
            PluginError::NotFound {
                kind, namespace, ..
            } => Some(format!(
                "list them with `kubectl get {} -n {namespace}`",
                kind.to_lowercase()
            )),
            PluginError::NoPodMatches { namespace, .. } => Some(format!(
                "check the labels with `kubectl get pods -n {namespace} --show-labels`"
            )),
            PluginError::NoPods { namespace } => Some(format!(
                "nothing to run from in {namespace}: deploy a client pod there, or name another namespace"
            )),
            PluginError::PodNotRunning { namespace, pod, .. } => Some(format!(
                "see `kubectl describe pod {pod} -n {namespace}`, or pick another with --pod/-l"
            )),
            PluginError::ContainerNotFound { .. } => Some("choose one with -c".into()),
            PluginError::NoServices { .. } => Some("probe an address directly with --url".into()),
            PluginError::Forbidden { verb, resource, .. } => Some(format!(
                "ask for RBAC permission to {verb} {resource} (check with `kubectl auth can-i {verb} {resource}`)"
            )),
            PluginError::Unreachable { .. } => {
                Some("check the kubeconfig's server, --context, and that the cluster is up".into())
            }
            PluginError::NoAnswer { .. } => Some(
                "the server is overloaded or a request hangs; retry, or raise --request-timeout"
                    .into(),
            ),
            PluginError::Unauthorized { .. } => Some(
                "the token or client certificate of the kubeconfig's user is invalid or expired; check `kubectl config view --minify`".into(),
            ),
            PluginError::ToolNotFound { hint, .. } => Some(hint.clone()),
            _ => None,
        }
    }

    /// The single line printed on stderr: `error: MESSAGE (hint: HINT)`.
    /// Newlines and control characters in messages coming from elsewhere are
    /// escaped so the line stays one line.
    pub fn one_line(&self) -> String {
        let mut line = format!("error: {}", flatten(&self.to_string()));
        if let Some(hint) = self.hint() {
            line.push_str("; hint: ");
            line.push_str(&flatten(&hint));
        }
        line
    }
}

/// A multi-line message (a tool's stderr, a parser's report) as one line:
/// its lines joined with "; ", other control characters escaped, so the
/// line reads as prose rather than showing literal `\n`.
pub fn flatten(s: &str) -> String {
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    crate::text::escape_control(&lines.join("; "))
}

/// The API operation that failed, so errors can name verb, resource and namespace.
#[derive(Debug, Clone)]
pub struct ApiOp {
    pub verb: &'static str,
    pub resource: &'static str,
    pub namespace: String,
    pub name: Option<String>,
}

impl ApiOp {
    pub fn new(verb: &'static str, resource: &'static str, namespace: &str) -> Self {
        ApiOp {
            verb,
            resource,
            namespace: namespace.to_string(),
            name: None,
        }
    }

    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
}

impl fmt::Display for ApiOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} in {}", self.verb, self.resource, self.namespace)
    }
}

/// Translates a kube error into a [`PluginError`] naming what was attempted.
/// `server` is the API server URL, quoted when it cannot be reached.
pub fn from_kube(err: kube::Error, op: &ApiOp, server: &str) -> PluginError {
    match err {
        kube::Error::Api(status) if status.code == 401 => PluginError::Unauthorized {
            server: server.to_string(),
        },
        kube::Error::UpgradeConnection(kube::client::UpgradeConnectionError::ProtocolSwitch(
            code,
        )) if code.as_u16() == 401 => PluginError::Unauthorized {
            server: server.to_string(),
        },
        kube::Error::Api(status) => from_status(status.code, &status.reason, &status.message, op),
        kube::Error::UpgradeConnection(kube::client::UpgradeConnectionError::ProtocolSwitch(
            code,
        )) => from_status(code.as_u16(), "", &code.to_string(), op),
        kube::Error::HyperError(e) => transport(&e, server),
        kube::Error::Service(e) => transport(e.as_ref(), server),
        other => PluginError::Api {
            code: None,
            message: root_cause(&other),
        },
    }
}

/// A transport failure: a timeout after the connection was made is
/// [`PluginError::NoAnswer`] (the server is there but silent); anything else,
/// connect timeouts included, is [`PluginError::Unreachable`].
fn transport(err: &(dyn std::error::Error + 'static), server: &str) -> PluginError {
    let mut timed_out = false;
    let mut connecting = false;
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            timed_out |= io.kind() == std::io::ErrorKind::TimedOut;
        }
        if let Some(h) = e.downcast_ref::<hyper_util::client::legacy::Error>() {
            connecting |= h.is_connect();
        }
        cur = e.source();
    }
    if timed_out && !connecting {
        PluginError::NoAnswer {
            server: server.to_string(),
        }
    } else {
        PluginError::Unreachable {
            server: server.to_string(),
            detail: root_cause(err),
        }
    }
}

fn from_status(code: u16, reason: &str, message: &str, op: &ApiOp) -> PluginError {
    match code {
        403 => PluginError::Forbidden {
            verb: op.verb.to_string(),
            resource: op.resource.to_string(),
            namespace: op.namespace.clone(),
            message: message.to_string(),
        },
        404 => {
            // A 404 naming the namespace (the API says `namespaces "x" not found`)
            // means the namespace itself is missing.
            if op.resource == "namespaces" || message.contains("namespaces \"") {
                PluginError::NamespaceNotFound(op.namespace.clone())
            } else {
                PluginError::NotFound {
                    kind: kind_of(op.resource),
                    name: op.name.clone().unwrap_or_default(),
                    namespace: op.namespace.clone(),
                }
            }
        }
        400 | 422 => PluginError::Usage {
            message: format!("the API rejected {op}: {message}"),
            hint: None,
        },
        _ => PluginError::Api {
            code: Some(code),
            message: if reason.is_empty() {
                format!("{op}: {message}")
            } else {
                format!("{op}: {reason}: {message}")
            },
        },
    }
}

fn kind_of(resource: &str) -> String {
    let base = resource.split('/').next().unwrap_or(resource);
    match base {
        "pods" => "pod".into(),
        "services" => "service".into(),
        "namespaces" => "namespace".into(),
        other => other.trim_end_matches('s').to_string(),
    }
}

/// The innermost message of an error chain, which is usually the telling one
/// (`Connection refused`, `dns error`), joined with its context.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.last().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_timeout_is_no_answer_and_a_refused_connection_unreachable() {
        let op = ApiOp::new("list", "pods", "ns");
        let timeout: Box<dyn std::error::Error + Send + Sync> = Box::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "timed out",
        ));
        let e = from_kube(kube::Error::Service(timeout), &op, "https://x");
        assert!(matches!(e, PluginError::NoAnswer { .. }), "{e:?}");
        assert!(
            e.to_string()
                .contains("did not answer within --request-timeout")
        );
        let refused: Box<dyn std::error::Error + Send + Sync> = Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused",
        ));
        let e = from_kube(kube::Error::Service(refused), &op, "https://x");
        assert!(
            matches!(&e, PluginError::Unreachable { detail, .. } if detail == "Connection refused"),
            "{e:?}"
        );
    }

    #[test]
    fn exit_codes_follow_the_readme() {
        assert_eq!(PluginError::usage("x", None).exit_code(), 2);
        assert_eq!(PluginError::NamespaceNotFound("a".into()).exit_code(), 3);
        assert_eq!(PluginError::Interrupted.exit_code(), 130);
        assert_eq!(PluginError::Terminated.exit_code(), 143);
        assert_eq!(PluginError::BrokenPipe.exit_code(), 0);
    }

    #[test]
    fn namespace_404_names_the_namespace() {
        let op = ApiOp::new("get", "namespaces", "np-test-9").named("np-test-9");
        let e = from_status(404, "NotFound", "namespaces \"np-test-9\" not found", &op);
        assert!(
            e.one_line()
                .starts_with("error: namespace \"np-test-9\" not found")
        );
    }

    #[test]
    fn forbidden_names_verb_and_resource() {
        let op = ApiOp::new("create", "pods/exec", "np-test-1").named("p");
        let e = from_status(403, "Forbidden", "pods \"p\" is forbidden", &op);
        assert!(
            e.to_string()
                .contains("cannot create pods/exec in namespace np-test-1"),
            "{e}"
        );
        assert_eq!(e.exit_code(), 3);
    }

    #[test]
    fn one_line_escapes_newlines() {
        let e = PluginError::Tool {
            tool: "istioctl".into(),
            code: Some(1),
            stderr: "line1\nline2".into(),
        };
        let line = e.one_line();
        assert!(!line.contains('\n'), "{line}");
        assert!(!line.contains("\\n"), "{line}");
        assert!(line.contains("line1; line2"), "{line}");
        let e = PluginError::usage("a\r\n\n  b\u{1b}[31m", None);
        assert_eq!(e.one_line(), "error: a; b\\u{1b}[31m");
    }

    #[test]
    fn broken_pipe_is_recognised() {
        let e = PluginError::io(
            "write",
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "x"),
        );
        assert!(matches!(e, PluginError::BrokenPipe));
    }
}
