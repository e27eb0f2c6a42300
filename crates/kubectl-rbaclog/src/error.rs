//! rbaclog's own failures on top of kubeplugin's, with their exit codes and hints.
//!
//! kubeplugin's [`PluginError`] covers the API, tools and usage; rbaclog adds the
//! cases the issue names: no pod with a sidecar in scope, a `--pod` without an
//! istio-proxy container (listing its containers), and unreadable `--file`s.
//! Every variant prints as one `error: ...; hint: ...` line.

use kubeplugin::PluginError;
use kubeplugin::error::{EXIT_FAILED, EXIT_USAGE};

/// Everything `kubectl rbaclog` can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RbaclogError {
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// No pod with an istio-proxy container in scope (exit 3).
    #[error("no pod with an istio-proxy sidecar in {scope}")]
    NoSidecars {
        scope: String,
        namespace: Option<String>,
        /// What the namespace says, when it could be read: the advice differs.
        injection: Option<Injection>,
    },
    /// `--pod` named a pod without istio-proxy (exit 3).
    #[error(
        "pod {namespace}/{pod} has no istio-proxy container; its containers: {}",
        containers.join(", ")
    )]
    NoSidecar {
        namespace: String,
        pod: String,
        containers: Vec<String>,
    },
    /// Not one pod's log could be read (exit 3); `first` says why for the first.
    #[error("no istio-proxy log could be read ({pods} pods): {first}")]
    NoLogRead { pods: usize, first: String },
    /// A `--file` could not be opened (exit 2).
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A `--file` failed while being read (exit 3).
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Why a namespace has no sidecar, for the advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Injection {
    /// Labelled `istio-injection=enabled` or `istio.io/rev`.
    pub labelled: bool,
    /// Pods in scope (with or without a sidecar).
    pub pods: usize,
    /// Labelled `istio.io/dataplane-mode=ambient`: ztunnels, not sidecars, log its decisions.
    pub ambient: bool,
}

impl RbaclogError {
    pub fn exit_code(&self) -> u8 {
        match self {
            RbaclogError::Plugin(e) => e.exit_code(),
            RbaclogError::Open { .. } => EXIT_USAGE,
            RbaclogError::Read { source, .. }
                if source.kind() == std::io::ErrorKind::BrokenPipe =>
            {
                0
            }
            _ => EXIT_FAILED,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            RbaclogError::Plugin(e) => e.hint(),
            RbaclogError::NoSidecars {
                namespace,
                injection,
                ..
            } => Some(match (namespace, injection) {
                (Some(ns), Some(Injection { ambient: true, .. })) => format!(
                    "namespace {ns} is in ambient mode: its pods have no sidecar, and no ztunnel pod was found to read (`kubectl get pods -n {} -l {}`)",
                    crate::live::ROOT_NAMESPACE,
                    meshpolicy::ambient::ZTUNNEL_SELECTOR
                ),
                (Some(ns), Some(Injection { labelled: true, pods: 0, .. })) => format!(
                    "namespace {ns} is labelled for injection but has no pod yet: pods created from now on get a sidecar"
                ),
                (Some(ns), Some(Injection { labelled: true, .. })) => format!(
                    "namespace {ns} is labelled for injection, but its pods were created before: restart them (`kubectl rollout restart deployment -n {ns}`) to get sidecars"
                ),
                (Some(ns), _) => format!(
                    "label the namespace for injection (`kubectl label namespace {ns} istio-injection=enabled`) and restart its pods; see `kubectl get pods -n {ns}`"
                ),
                (None, _) => "check sidecar injection with `kubectl get pods -A`".into(),
            }),
            RbaclogError::NoSidecar { .. } => {
                Some("rbaclog reads the istio-proxy container; pick a pod with a sidecar".into())
            }
            RbaclogError::NoLogRead { .. } => Some(
                "check that the pods are running (`kubectl get pods`); `-v` shows each pod's failure".into(),
            ),
            RbaclogError::Open { .. } => Some("check the path given to --file".into()),
            RbaclogError::Read { .. } => None,
        }
    }

    /// The single stderr line.
    pub fn one_line(&self) -> String {
        if let RbaclogError::Plugin(e) = self {
            return e.one_line();
        }
        let mut line = format!("error: {}", kubeplugin::error::flatten(&self.to_string()));
        if let Some(h) = self.hint() {
            line.push_str("; hint: ");
            line.push_str(&kubeplugin::error::flatten(&h));
        }
        line
    }
}

impl kubeplugin::run::Failure for RbaclogError {
    fn exit_code(&self) -> u8 {
        RbaclogError::exit_code(self)
    }
    /// A closed pipe and Ctrl-C are the user's doing, not errors to report:
    /// the exit code (0, 130) says what happened.
    fn error_line(&self) -> Option<String> {
        let quiet = matches!(
            self,
            RbaclogError::Plugin(PluginError::BrokenPipe | PluginError::Interrupted)
        );
        (!quiet).then(|| self.one_line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_lines() {
        let e = RbaclogError::NoSidecar {
            namespace: "ns".into(),
            pod: "p".into(),
            containers: vec!["app".into(), "db".into()],
        };
        assert_eq!(e.exit_code(), 3);
        assert!(
            e.one_line().contains("its containers: app, db"),
            "{}",
            e.one_line()
        );
        let no_sidecars = |injection| RbaclogError::NoSidecars {
            scope: "namespace x".into(),
            namespace: Some("x".into()),
            injection,
        };
        let e = no_sidecars(None);
        assert_eq!(e.exit_code(), 3);
        assert!(e.one_line().contains("istio-injection=enabled"));
        // Labelled already: never the advice to label it.
        for pods in [0, 3] {
            let line = no_sidecars(Some(Injection {
                labelled: true,
                pods,
                ambient: false,
            }))
            .one_line();
            assert!(!line.contains("kubectl label"), "{line}");
            assert!(line.contains("is labelled for injection"), "{line}");
        }
        let line = no_sidecars(Some(Injection {
            labelled: false,
            pods: 0,
            ambient: false,
        }))
        .one_line();
        assert!(line.contains("kubectl label namespace x"), "{line}");
        // Ambient: no injection advice; the ztunnels are what is missing.
        let line = no_sidecars(Some(Injection {
            labelled: false,
            pods: 2,
            ambient: true,
        }))
        .one_line();
        assert!(
            !line.contains("kubectl label") && line.contains("-l app=ztunnel"),
            "{line}"
        );
        let e: RbaclogError = PluginError::usage("bad", None).into();
        assert_eq!(e.exit_code(), 2);
        let e = RbaclogError::Open {
            path: "x\ny".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(e.exit_code(), 2);
        assert!(!e.one_line().contains('\n'));
    }
}
