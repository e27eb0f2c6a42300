//! authzcheck's own failures, and how they become the shared [`PluginError`]
//! (and so the documented exit codes).
//!
//! Most failures are already described by kubeplugin (not found, forbidden,
//! unreachable). What is specific here: istioctl too old for `x authz check`,
//! istioctl printing something that is not its table, a config dump that is
//! not one, and the sidecar's config dump not being readable.

use std::path::PathBuf;

use kubeplugin::PluginError;

/// The oldest istioctl whose `x authz check` prints the table we read.
pub const MIN_ISTIOCTL: &str = "1.7.1";

/// A failure specific to authzcheck.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// istioctl does not know `x authz check` (or prints the pre-1.7.1 table).
    #[error("istioctl is too old for `istioctl x authz check`: {detail}; istioctl {min} or newer is needed", min = MIN_ISTIOCTL)]
    IstioctlTooOld { detail: String },
    /// istioctl succeeded but its output is not the authz check table.
    #[error("cannot read istioctl's output: {0}")]
    IstioctlOutput(String),
    /// A `--config-dump` file that cannot be read.
    #[error("cannot read config dump {path}: {source}")]
    ReadDump {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A config dump (file or from the sidecar) that is not one.
    #[error("{origin}: {reason}")]
    BadDump { origin: String, reason: String },
    /// The sidecar's config dump could not be fetched through exec.
    #[error(
        "cannot read the config dump of {namespace}/{pod} (pilot-agent in istio-proxy): {reason}"
    )]
    DumpExec {
        namespace: String,
        pod: String,
        reason: String,
    },
    /// Several pods matched where one was asked for.
    #[error("{what} matches {} pods where one was asked for: {}", pods.len(), pods.join(", "))]
    SeveralPods { what: String, pods: Vec<String> },
}

impl From<CheckError> for PluginError {
    fn from(e: CheckError) -> Self {
        match &e {
            CheckError::IstioctlTooOld { .. } => PluginError::Tool {
                tool: "istioctl".into(),
                code: None,
                stderr: format!(
                    "{e} (install a newer istioctl, point --istioctl at one, or use --native)"
                ),
            },
            CheckError::IstioctlOutput(_) => PluginError::Tool {
                tool: "istioctl".into(),
                code: None,
                stderr: e.to_string(),
            },
            CheckError::ReadDump { .. } => PluginError::usage(
                e.to_string(),
                Some("pass the path of an Envoy /config_dump JSON file".to_string()),
            ),
            CheckError::BadDump { .. } => PluginError::usage(
                e.to_string(),
                Some("save one with `kubectl exec POD -c istio-proxy -- pilot-agent request GET config_dump > dump.json`".to_string()),
            ),
            CheckError::DumpExec { .. } => PluginError::Tool {
                tool: "pilot-agent".into(),
                code: None,
                stderr: e.to_string(),
            },
            CheckError::SeveralPods { .. } => PluginError::usage(
                e.to_string(),
                Some("name one pod, or check each with -l SELECTOR".to_string()),
            ),
        }
    }
}
