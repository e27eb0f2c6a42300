//! Shared harness of the reliability suite (tests/reliability_*.rs): a
//! meshsim *process* per case (so a case can kill the server mid-run, like a
//! crashing API server), the built plugin binaries run directly with an
//! isolated KUBECONFIG/HOME, the istioctl stand-in first on PATH, and every
//! run bounded by a generous limit so that a hang fails the test instead of
//! blocking CI. Cases run concurrently on one tokio runtime.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The generous bound every plugin run must end within (not a speed assertion).
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// target/debug, where cargo put the plugin binaries and meshsim (checked built).
pub fn bin_dir() -> PathBuf {
    crate::common::sim::built(&[
        "kubectl-npexec",
        "kubectl-rbaclog",
        "kubectl-authzcheck",
        "meshsim",
        "meshsim-istioctl",
    ])
}

pub use crate::common::sim::walkthrough;

pub use crate::common::{Out, Sim};

impl Out {
    /// Non-empty stderr lines, without npexec's informational `probing from
    /// NS/POD (...)` line (it says where the probes run, on every run).
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("probing from "))
            .collect()
    }
}

/// This suite's cases: the common [`Sim`] as a `meshsim serve` process (the
/// istioctl stand-in in DIR/tools, meshsim's `holding` lines watched), and
/// plugin runs bounded by [`RUN_LIMIT`].
impl Sim {
    /// Starts `meshsim serve` on the walk-through with `extra` flags and
    /// waits (bounded) until its kubeconfig exists and the two walk-through
    /// pods run.
    pub async fn case(extra: &[&str]) -> Sim {
        Sim::case_scenarios(&[walkthrough()], extra, 2).await
    }

    /// Starts `meshsim serve` on `scenarios` with `extra` flags, waiting for
    /// `pods` Running pods.
    pub async fn case_scenarios(scenarios: &[PathBuf], extra: &[&str], pods: usize) -> Sim {
        let mut flags = vec!["--time-scale", "0.05"];
        flags.extend_from_slice(extra);
        let mut b = Sim::builder()
            .flags(&flags)
            .pods(pods)
            .istioctl()
            .watch_holds();
        for s in scenarios {
            b = b.scenario(s.clone());
        }
        b.start_async().await
    }

    /// `program args` with this cluster's environment (not yet spawned), its
    /// output piped; a `kubectl-*` plugin is run from where cargo built it.
    pub fn plugin_cmd(&self, program: &str, args: &[&str]) -> tokio::process::Command {
        let program = if program.starts_with("kubectl-") {
            bin_dir().join(program)
        } else {
            PathBuf::from(program)
        };
        let mut cmd = self.command_async(program, args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }

    /// Runs a plugin binary to completion, bounded by [`RUN_LIMIT`].
    pub async fn run_bounded(&self, program: &str, args: &[&str]) -> Out {
        let child = self
            .plugin_cmd(program, args)
            .spawn()
            .expect("spawn plugin");
        finish(child).await
    }
}

/// Waits for a spawned child (bounded by [`RUN_LIMIT`]; killed after it).
pub async fn finish(child: tokio::process::Child) -> Out {
    match tokio::time::timeout(RUN_LIMIT, child.wait_with_output()).await {
        Ok(Ok(o)) => Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        },
        Ok(Err(e)) => panic!("waiting for the plugin: {e}"),
        // The child is killed when the future holding it is dropped (kill_on_drop).
        Err(_) => Out {
            code: -2,
            stdout: String::new(),
            stderr: format!("did not end within {RUN_LIMIT:?}"),
        },
    }
}

/// Rewrites the kubeconfig's `server:` line.
pub fn set_server(kubeconfig: &Path, server: &str) {
    let text = std::fs::read_to_string(kubeconfig).expect("kubeconfig");
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("server:") {
                let indent = &l[..l.len() - l.trim_start().len()];
                format!("{indent}server: {server}")
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(kubeconfig, out.join("\n") + "\n").expect("write kubeconfig");
}

/// The value of the first `key:` line of a kubeconfig.
pub fn kubeconfig_value(kubeconfig: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(kubeconfig).ok()?;
    text.lines().find_map(|l| {
        let t = l.trim_start().trim_start_matches("- ");
        t.strip_prefix(&format!("{key}:"))
            .map(|v| v.trim().trim_matches('"').to_string())
    })
}

/// Replaces the value of every `key:` line of a kubeconfig.
pub fn set_kubeconfig_value(kubeconfig: &Path, key: &str, value: &str) {
    let text = std::fs::read_to_string(kubeconfig).expect("kubeconfig");
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            let indent = &l[..l.len() - l.trim_start().len()];
            if l.trim_start().starts_with(&format!("{key}:")) {
                format!("{indent}{key}: {value}")
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(kubeconfig, out.join("\n") + "\n").expect("write kubeconfig");
}
