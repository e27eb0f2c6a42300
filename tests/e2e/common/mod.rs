//! End-to-end harness: each test starts its own in-process meshsim, writes a
//! fresh kubeconfig into a temporary directory and runs the real `kubectl`
//! with that kubeconfig, its own `--cache-dir`, and HOME/KUBECONFIG pointing
//! into the temporary directory (never ~/.kube).

#![allow(dead_code)]

pub mod envoy;
pub mod policygen;
pub mod rbacdiff;
pub mod sim;

use std::path::{Path, PathBuf};
use std::time::Duration;

use meshsim::{Config, Handle, Server};

/// Root of the repository (for examples/).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running simulated cluster plus a kubectl wrapper.
pub struct Cluster {
    pub handle: Handle,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

/// Output of one kubectl run.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Fast defaults for tests: pods are ready almost at once.
pub fn fast_config() -> Config {
    Config {
        time_scale: 0.01,
        ready_delay: Duration::from_secs(1),
        ..Config::default()
    }
}

impl Cluster {
    pub async fn start(mut config: Config) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        config.kubeconfig_out = Some(kubeconfig.clone());
        let handle = Server::start(config).await?;
        Ok(Self {
            handle,
            dir,
            kubeconfig,
        })
    }

    pub async fn with_scenario(paths: &[&str]) -> anyhow::Result<Self> {
        let mut c = fast_config();
        c.scenarios = paths.iter().map(|p| repo_root().join(p)).collect();
        Self::start(c).await
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A kubectl command with an isolated environment.
    pub fn kubectl_cmd(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .kill_on_drop(true);
        cmd
    }

    pub async fn kubectl(&self, args: &[&str]) -> anyhow::Result<Out> {
        self.kubectl_stdin(args, None).await
    }

    pub async fn kubectl_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> anyhow::Result<Out> {
        use tokio::io::AsyncWriteExt;
        let mut cmd = self.kubectl_cmd(args);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd.stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        });
        let mut child = cmd.spawn()?;
        if let (Some(data), Some(mut w)) = (stdin, child.stdin.take()) {
            w.write_all(data).await?;
            drop(w);
        }
        let o = child.wait_with_output().await?;
        Ok(Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        })
    }

    /// Run kubectl and require success.
    pub async fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let o = self.kubectl(args).await?;
        anyhow::ensure!(
            o.code == 0,
            "kubectl {args:?} failed ({}): {}{}",
            o.code,
            o.stdout,
            o.stderr
        );
        Ok(o.stdout)
    }

    /// Wait (bounded by attempts, not by wall-clock assertions) until a pod matching `selector` in `ns` is Ready; returns its name.
    pub async fn wait_ready_pod(&self, ns: &str, selector: &str) -> anyhow::Result<String> {
        for _ in 0..200 {
            let out = self
                .kubectl(&["get", "pods", "-n", ns, "-l", selector, "-o", "jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}"])
                .await?;
            if let Some(line) = out.stdout.lines().find(|l| l.ends_with(" True")) {
                return Ok(line.split(' ').next().unwrap_or_default().to_string());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("no ready pod for {selector} in {ns}")
    }

    /// A kube-rs client for this cluster.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig)?;
        let cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?;
        Ok(kube::Client::try_from(cfg)?)
    }
}

/// Output of one kubectl run, stdout as raw bytes.
#[derive(Debug)]
pub struct BytesOut {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Cluster {
    /// Run kubectl feeding `stdin` while its output is read (large inputs
    /// cannot deadlock on full pipes); stdout comes back as bytes.
    pub async fn kubectl_io(&self, args: &[&str], stdin: Vec<u8>) -> anyhow::Result<BytesOut> {
        use tokio::io::AsyncWriteExt;
        let mut cmd = self.kubectl_cmd(args);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .stdin(std::process::Stdio::piped());
        let mut child = cmd.spawn()?;
        let writer = child.stdin.take().map(|mut w| {
            tokio::spawn(async move {
                let _ = w.write_all(&stdin).await;
                let _ = w.shutdown().await;
            })
        });
        let o = child.wait_with_output().await?;
        if let Some(w) = writer {
            let _ = w.await;
        }
        Ok(BytesOut {
            code: o.status.code().unwrap_or(-1),
            stdout: o.stdout,
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        })
    }

    /// A walk-through cluster with one Ready nginx pod in np-test-1; returns the pod's name.
    pub async fn walkthrough_pod(&self) -> anyhow::Result<String> {
        self.wait_ready_pod("np-test-1", "app=np-test-nginx-1")
            .await
    }
}
