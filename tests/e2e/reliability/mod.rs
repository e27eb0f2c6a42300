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

/// Output of one plugin run.
#[derive(Debug)]
pub struct Out {
    /// Exit code; -1 when killed by a signal, -2 when it outlived [`RUN_LIMIT`].
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// stderr lines that are not empty.
    /// Non-empty stderr lines, without npexec's informational `probing from
    /// NS/POD (...)` line (it says where the probes run, on every run).
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("probing from "))
            .collect()
    }
}

/// The common meshsim process handle ([`crate::common::sim::Sim`]: the
/// walk-through, the istioctl stand-in in DIR/tools, meshsim's `holding`
/// lines watched) with this suite's async plugin runner.
pub struct Sim {
    pub sim: crate::common::sim::Sim,
    pub kubeconfig: PathBuf,
}

impl Sim {
    /// Starts `meshsim serve` on the walk-through with `extra` flags and
    /// waits (bounded) until its kubeconfig exists and the two walk-through
    /// pods run.
    pub async fn start(extra: &[&str]) -> Sim {
        Sim::start_scenarios(&[walkthrough()], extra, 2).await
    }

    pub async fn start_scenarios(scenarios: &[PathBuf], extra: &[&str], pods: usize) -> Sim {
        let mut flags = vec!["--time-scale".to_string(), "0.05".to_string()];
        flags.extend(extra.iter().map(|f| f.to_string()));
        let scenarios = scenarios.to_vec();
        // The startup waits block: off the runtime, so cases start concurrently.
        let sim = tokio::task::spawn_blocking(move || {
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            let mut b = crate::common::sim::Sim::builder()
                .flags(&flags)
                .pods(pods)
                .istioctl()
                .watch_holds();
            for s in scenarios {
                b = b.scenario(s);
            }
            b.start()
        })
        .await
        .expect("meshsim start");
        let kubeconfig = sim.kubeconfig();
        Sim { sim, kubeconfig }
    }

    /// Waits until meshsim says it is holding a request under a `hang=`
    /// fault, i.e. a client is mid-run; panics after [`RUN_LIMIT`].
    pub async fn wait_held(&mut self) {
        self.sim.wait_held(RUN_LIMIT).await;
    }

    /// Kills the server (a crashing API server).
    pub async fn kill(&mut self) {
        self.sim.kill();
    }

    pub fn path(&self) -> &Path {
        self.sim.path()
    }

    /// `program args` with this cluster's environment (not yet spawned).
    pub fn command(&self, program: &str, args: &[&str]) -> tokio::process::Command {
        let program = if program.starts_with("kubectl-") {
            bin_dir().join(program)
        } else {
            PathBuf::from(program)
        };
        let path = format!(
            "{}:{}:{}",
            self.path().join("tools").display(),
            bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.path())
            .env("PATH", path)
            .env("NO_COLOR", "1")
            .env_remove("ISTIOCTL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs a plugin binary to completion, bounded by [`RUN_LIMIT`].
    pub async fn run(&self, program: &str, args: &[&str]) -> Out {
        let child = self.command(program, args).spawn().expect("spawn plugin");
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
