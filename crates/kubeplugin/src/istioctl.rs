//! Locating and running `istioctl` as a subprocess.
//!
//! authzcheck and rbaclog call istioctl (`x authz check`, `proxy-config log`).
//! The binary is found with `--istioctl PATH`, else `ISTIOCTL`, else `which`;
//! it runs with an argv vector (no shell), the same kubeconfig/context as the
//! plugin, output captured, killed if the plugin is interrupted, and a failure
//! quotes its stderr so the user sees istioctl's own reason.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use clap::Args;

use crate::error::PluginError;
use crate::flags::KubeFlags;

/// `--istioctl PATH` (also `ISTIOCTL`).
#[derive(Debug, Clone, Default, Args)]
pub struct IstioctlArgs {
    /// istioctl binary to use (default: ISTIOCTL, then istioctl on PATH)
    #[arg(long = "istioctl", value_name = "PATH", env = "ISTIOCTL")]
    pub istioctl: Option<PathBuf>,
}

/// A located istioctl.
#[derive(Debug, Clone)]
pub struct Istioctl {
    pub path: PathBuf,
}

/// Captured result of a successful run.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    pub stdout: String,
    pub stderr: String,
}

impl Istioctl {
    /// Finds istioctl from the flag/env, else on PATH.
    pub fn locate(args: &IstioctlArgs) -> Result<Istioctl, PluginError> {
        if let Some(p) = &args.istioctl {
            return which::which(p).map(|path| Istioctl { path }).map_err(|_| {
                PluginError::ToolNotFound {
                    tool: format!("istioctl at {}", p.display()),
                    hint: "check --istioctl / ISTIOCTL".into(),
                }
            });
        }
        which::which("istioctl")
            .map(|path| Istioctl { path })
            .map_err(|_| PluginError::ToolNotFound {
                tool: "istioctl".into(),
                hint: "install it (https://istio.io/latest/docs/setup/getting-started/#download) or pass --istioctl PATH".into(),
            })
    }

    /// The kubeconfig flags istioctl understands, taken from the plugin's flags.
    pub fn connection_args(flags: &KubeFlags) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(k) = &flags.kubeconfig {
            args.push("--kubeconfig".into());
            args.push(k.display().to_string());
        }
        if let Some(c) = &flags.context {
            args.push("--context".into());
            args.push(c.clone());
        }
        args
    }

    /// Runs istioctl with `args`; non-zero exit is [`PluginError::Tool`] quoting stderr.
    pub async fn run(&self, args: &[String]) -> Result<ToolOutput, PluginError> {
        run_tool("istioctl", &self.path, args).await
    }
}

/// Runs a tool (argv vector, no shell), capturing output; killed when dropped.
pub async fn run_tool(name: &str, path: &Path, args: &[String]) -> Result<ToolOutput, PluginError> {
    tracing::debug!(tool = name, ?args, "running");
    let out = tokio::process::Command::new(path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| PluginError::Tool {
            tool: name.into(),
            code: None,
            stderr: format!("cannot run {}: {e}", path.display()),
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        let quoted = stderr.trim();
        let mut said = if quoted.is_empty() {
            stdout.trim().to_string()
        } else {
            quoted.to_string()
        };
        // No exit code: a signal ended it (killed, crashed); say which.
        if out.status.code().is_none() {
            use std::os::unix::process::ExitStatusExt;
            let killed = match out.status.signal() {
                Some(sig) => format!("killed by signal {sig}"),
                None => "ended without an exit status".to_string(),
            };
            said = if said.is_empty() {
                killed
            } else {
                format!("{killed}; it said: {said}")
            };
        }
        return Err(PluginError::Tool {
            tool: name.into(),
            code: out.status.code(),
            stderr: said,
        });
    }
    Ok(ToolOutput { stdout, stderr })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failure_quotes_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("fake-istioctl");
        std::fs::write(&script, "#!/bin/sh\necho \"bad thing: $1\" >&2\nexit 4\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let tool = Istioctl::locate(&IstioctlArgs {
            istioctl: Some(script.clone()),
        })
        .unwrap();
        let e = tool.run(&["x".into()]).await.unwrap_err();
        let line = e.one_line();
        assert!(line.contains("bad thing: x"), "{line}");
        assert!(line.contains("exit 4"), "{line}");
        assert_eq!(e.exit_code(), 3);
    }

    #[tokio::test]
    async fn a_signal_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("fake-istioctl");
        std::fs::write(&script, "#!/bin/sh\nkill -9 $$\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let tool = Istioctl::locate(&IstioctlArgs {
            istioctl: Some(script.clone()),
        })
        .unwrap();
        let e = tool.run(&["x".into()]).await.unwrap_err();
        assert!(
            e.one_line().contains("killed by signal 9"),
            "{}",
            e.one_line()
        );
    }

    #[test]
    fn missing_binary_is_tool_not_found() {
        let e = Istioctl::locate(&IstioctlArgs {
            istioctl: Some("/nonexistent/istioctl".into()),
        })
        .unwrap_err();
        assert!(matches!(e, PluginError::ToolNotFound { .. }));
    }
}
