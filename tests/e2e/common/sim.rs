//! The one meshsim handle of the end-to-end tests, [`Sim`], and the one way
//! they run kubectl and the plugins against it.
//!
//! A `Sim` is either the built `meshsim serve` as its own process (as users
//! run it; a test can kill it mid-run) or meshsim started in this process
//! (a test can reach into its store, logs and mesh, or shut it down). Either
//! way it has its own temporary directory holding the kubeconfig, HOME and
//! kubectl's cache (never ~/.kube), and a `PATH` with the built plugins (and,
//! when asked, meshsim's istioctl stand-in) in front of the caller's. Every
//! command a test runs gets that environment from [`Sim::command`]; every
//! startup wait is bounded and waits on something observable (the kubeconfig
//! written, pods listed Running).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{BytesOut, Out};

/// The directory cargo built this test run's binaries in (target/debug: the
/// test executable is target/debug/deps/NAME-HASH).
pub fn target_bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// [`target_bin_dir`], after checking that each of `bins` is built there
/// (the test cannot run otherwise; the message says what to build).
pub fn built(bins: &[&str]) -> PathBuf {
    let dir = target_bin_dir();
    for b in bins {
        assert!(
            dir.join(b).exists(),
            "{b} is not built in {}: run `cargo build --workspace --bins` first",
            dir.display()
        );
    }
    dir
}

/// `dirs` in front of the caller's PATH.
pub fn path_with(dirs: &[&Path]) -> OsString {
    let rest = std::env::var_os("PATH").unwrap_or_default();
    let all = dirs
        .iter()
        .map(|d| d.to_path_buf())
        .chain(std::env::split_paths(&rest));
    std::env::join_paths(all).expect("PATH entries without ':'")
}

/// PATH entries of the caller that do not hold an `istioctl`.
pub fn path_without_istioctl() -> Vec<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .filter(|p| !p.join("istioctl").exists())
        .collect()
}

/// A symbolic link `to` -> `from`.
pub fn link(from: &Path, to: &Path) {
    std::os::unix::fs::symlink(from, to)
        .unwrap_or_else(|e| panic!("link {} -> {}: {e}", to.display(), from.display()));
}

/// Creates `root/tools` holding `istioctl` -> the built meshsim-istioctl
/// (as a user's PATH would hold the real one); returns that directory.
pub fn istioctl_dir(root: &Path) -> PathBuf {
    let bins = built(&["meshsim-istioctl"]);
    let tools = root.join("tools");
    std::fs::create_dir_all(&tools).expect("create tools dir");
    link(&bins.join("meshsim-istioctl"), &tools.join("istioctl"));
    tools
}

/// The walk-through scenario (examples/walkthrough).
pub fn walkthrough() -> PathBuf {
    super::repo_root().join("examples/walkthrough")
}

/// What a [`Sim`] runs: a `meshsim serve` process or an in-process server.
enum Server {
    /// The built `meshsim serve`; None once [`Sim::kill`]ed.
    Process {
        child: Option<Child>,
        /// With [`SimBuilder::watch_holds`]: how many requests meshsim has
        /// said (on stderr) it is holding under a `hang=` fault.
        held: Option<tokio::sync::watch::Receiver<usize>>,
    },
    /// meshsim in this process; None once [`Sim::shutdown`].
    InProcess(Option<meshsim::Handle>),
}

/// A simulated cluster for one test, with its own directory and `PATH`.
/// Start the built `meshsim serve` with [`Sim::walkthrough`] or
/// [`Sim::builder`], or meshsim in this process with [`Sim::in_process`] /
/// [`Sim::in_process_walkthrough`]; run kubectl and the plugins with
/// [`Sim::kubectl`] (async) or [`Sim::run`] (blocking), other programs with
/// [`Sim::command`]. A process is killed on drop.
pub struct Sim {
    server: Server,
    /// The test's own directory: kubeconfig, HOME, kubectl's cache.
    pub dir: tempfile::TempDir,
    /// `PATH` for kubectl: the built plugins (and meshsim's istioctl
    /// stand-in, when asked for) in front of the caller's.
    pub exec_path: OsString,
}

/// How to start a [`Sim`] as a process: scenarios, `serve` flags, how many
/// Running pods to wait for, and whether `istioctl` (meshsim's stand-in) is
/// on `PATH`.
pub struct SimBuilder {
    scenarios: Vec<PathBuf>,
    flags: Vec<String>,
    pods: usize,
    istioctl: bool,
    watch_holds: bool,
}

impl SimBuilder {
    /// One more scenario file or folder.
    pub fn scenario(mut self, path: PathBuf) -> Self {
        self.scenarios.push(path);
        self
    }

    /// The extra `serve` flags (replacing the default `--time-scale 0.05`).
    pub fn flags(mut self, flags: &[&str]) -> Self {
        self.flags = flags.iter().map(|f| f.to_string()).collect();
        self
    }

    /// Wait until at least `n` pods are listed, all Running.
    pub fn pods(mut self, n: usize) -> Self {
        self.pods = n;
        self
    }

    /// Put meshsim's stand-in on `PATH` as `istioctl` (DIR/tools).
    pub fn istioctl(mut self) -> Self {
        self.istioctl = true;
        self
    }

    /// Read meshsim's stderr for `meshsim: fault: holding` lines, so a test
    /// can wait until a client is provably mid-request ([`Sim::wait_held`]).
    pub fn watch_holds(mut self) -> Self {
        self.watch_holds = true;
        self
    }

    /// Runs `meshsim serve --ready-delay 10ms FLAGS --scenario S...
    /// --kubeconfig-out DIR/kubeconfig`, waits for the kubeconfig, then until
    /// the pods are Running. Both waits are bounded startup waits (60 s in
    /// all), not timed assertions. Blocks: from async code use
    /// [`SimBuilder::start_async`].
    pub fn start(self) -> Sim {
        let bins = built(&[
            "meshsim",
            "meshsim-istioctl",
            "kubectl-authzcheck",
            "kubectl-npexec",
            "kubectl-rbaclog",
        ]);
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        let mut cmd = Command::new(bins.join("meshsim"));
        cmd.args(["serve", "--ready-delay", "10ms"])
            .args(&self.flags);
        for s in &self.scenarios {
            cmd.arg("--scenario").arg(s);
        }
        let stderr = if self.watch_holds {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let mut child = cmd
            .arg("--kubeconfig-out")
            .arg(&kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start meshsim serve");
        let held = child.stderr.take().map(|err| {
            let (tx, rx) = tokio::sync::watch::channel(0usize);
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                    if line.contains("meshsim: fault: holding") {
                        tx.send_modify(|n| *n += 1);
                    }
                }
            });
            rx
        });
        let mut sim = Sim {
            server: Server::Process {
                child: Some(child),
                held,
            },
            dir,
            exec_path: path_with(&[&bins]),
        };
        if self.istioctl {
            sim.add_istioctl();
        }
        let start = Instant::now();
        while !kubeconfig.exists() && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(kubeconfig.exists(), "meshsim did not write its kubeconfig");
        // Listing pods may fail on purpose (a test's own fault on that very
        // request): after three failures the test goes on, and the plugin
        // under test meets the fault itself.
        let mut failures = 0;
        while self.pods > 0 && start.elapsed() < Duration::from_secs(60) {
            let out = sim
                .cmd()
                .args(["get", "pods", "-A", "--no-headers", "--request-timeout=2s"])
                .output()
                .expect("kubectl on PATH");
            if !out.status.success() {
                failures += 1;
                if failures >= 3 {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if text.lines().count() >= self.pods && text.lines().all(|l| l.contains("Running")) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        sim
    }

    /// [`SimBuilder::start`] off the async runtime (its waits block), so
    /// cases on one runtime start concurrently.
    pub async fn start_async(self) -> Sim {
        tokio::task::spawn_blocking(move || self.start())
            .await
            .expect("meshsim start")
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Server::Process { child, .. } = &mut self.server
            && let Some(mut c) = child.take()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Sim {
    /// A `meshsim serve` process: no scenario, `--time-scale 0.05`, no pods
    /// to wait for.
    pub fn builder() -> SimBuilder {
        SimBuilder {
            scenarios: Vec::new(),
            flags: vec!["--time-scale".into(), "0.05".into()],
            pods: 0,
            istioctl: false,
            watch_holds: false,
        }
    }

    /// A `meshsim serve` process on the walk-through, waiting for its 2 pods.
    pub fn walkthrough() -> SimBuilder {
        Self::builder().scenario(walkthrough()).pods(2)
    }

    /// meshsim in this process with `config` (its kubeconfig goes to the
    /// test's directory); the plugins' directory is first on `PATH`.
    pub async fn in_process(mut config: meshsim::Config) -> anyhow::Result<Sim> {
        let dir = tempfile::tempdir()?;
        config.kubeconfig_out = Some(dir.path().join("kubeconfig"));
        let handle = meshsim::Server::start(config).await?;
        Ok(Sim {
            server: Server::InProcess(Some(handle)),
            dir,
            exec_path: path_with(&[&target_bin_dir()]),
        })
    }

    /// [`Sim::in_process`] on the walk-through with [`super::fast_config`].
    pub async fn in_process_walkthrough() -> anyhow::Result<Sim> {
        let mut c = super::fast_config();
        c.scenarios = vec![walkthrough()];
        Self::in_process(c).await
    }

    /// Puts meshsim's stand-in on `PATH` as `istioctl` (DIR/tools).
    pub fn add_istioctl(&mut self) -> &mut Self {
        let tools = istioctl_dir(self.path());
        self.exec_path = path_with(&[&target_bin_dir(), &tools]);
        self
    }

    /// The test's own directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The kubeconfig meshsim wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// The in-process server (its store, logs, mesh, URL); panics for a
    /// process.
    pub fn handle(&self) -> &meshsim::Handle {
        match &self.server {
            Server::InProcess(Some(h)) => h,
            Server::InProcess(None) => panic!("meshsim was shut down"),
            Server::Process { .. } => panic!("meshsim runs as a process: no in-process handle"),
        }
    }

    /// Kills a `meshsim serve` process (a crashing API server); panics for
    /// an in-process server (use [`Sim::shutdown`]).
    pub fn kill(&mut self) {
        match &mut self.server {
            Server::Process { child, .. } => {
                if let Some(mut c) = child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
            Server::InProcess(_) => panic!("kill() is for a meshsim process"),
        }
    }

    /// Stops the server: an in-process one closes its streams and sidecars,
    /// a process is killed.
    pub async fn shutdown(mut self) {
        match &mut self.server {
            Server::InProcess(h) => {
                if let Some(h) = h.take() {
                    h.shutdown().await;
                }
            }
            Server::Process { .. } => self.kill(),
        }
    }

    /// Waits until meshsim says it is holding a request under a `hang=`
    /// fault, i.e. a client is mid-run; panics after `limit` (needs
    /// [`SimBuilder::watch_holds`]).
    pub async fn wait_held(&mut self, limit: Duration) {
        let held = match &mut self.server {
            Server::Process {
                held: Some(held), ..
            } => held,
            _ => panic!("started without watch_holds()"),
        };
        let waited = tokio::time::timeout(limit, held.wait_for(|n| *n > 0)).await;
        assert!(
            matches!(waited, Ok(Ok(_))),
            "meshsim never held a request: the plugin did not reach the faulted call"
        );
    }

    /// `program` (found on `path`) with this cluster's environment: its
    /// kubeconfig (KUBECONFIG, as plugins take no flag before their name),
    /// HOME and KUBECACHEDIR in the test's directory, NO_COLOR, no
    /// ISTIOCTL, stdin from /dev/null. The one place a test's command gets
    /// its environment.
    pub fn command_on(&self, program: impl AsRef<OsStr>, path: &OsStr) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("PATH", path)
            .env("KUBECONFIG", self.kubeconfig())
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .env("HOME", self.dir.path())
            .env("NO_COLOR", "1")
            .env_remove("ISTIOCTL")
            .stdin(Stdio::null());
        cmd
    }

    /// [`Sim::command_on`] with [`Sim::exec_path`].
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        self.command_on(program, &self.exec_path)
    }

    /// The same as an async command, killed when dropped.
    pub fn command_async(
        &self,
        program: impl AsRef<OsStr>,
        args: &[&str],
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::from(self.command(program));
        cmd.args(args).kill_on_drop(true);
        cmd
    }

    /// kubectl with this cluster's environment and `PATH` = `path`.
    pub fn kubectl_cmd(&self, path: &OsString) -> Command {
        self.command_on("kubectl", path)
    }

    /// kubectl with this cluster's environment and [`Sim::exec_path`].
    pub fn cmd(&self) -> Command {
        self.command("kubectl")
    }

    /// Runs kubectl (or a plugin: `["npexec", ...]`) to completion; blocks.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        self.cmd().args(args).output().unwrap()
    }

    /// kubectl ARGS as an async command (not yet spawned), killed on drop.
    pub fn kubectl_async(&self, args: &[&str]) -> tokio::process::Command {
        self.command_async("kubectl", args)
    }

    /// Runs kubectl (or a plugin: `["npexec", ...]`) to completion.
    pub async fn kubectl(&self, args: &[&str]) -> anyhow::Result<Out> {
        self.kubectl_stdin(args, None).await
    }

    /// Runs `program ARGS` (a path, or a name looked up on
    /// [`Sim::exec_path`]) with this cluster's environment to completion.
    pub async fn run_program(
        &self,
        program: impl AsRef<OsStr>,
        args: &[&str],
    ) -> anyhow::Result<Out> {
        let mut cmd = self.command_async(program, args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        Ok(output(cmd, Vec::new()).await?.text())
    }

    /// [`Sim::kubectl`] with `stdin` fed to it.
    pub async fn kubectl_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> anyhow::Result<Out> {
        Ok(self
            .kubectl_io(args, stdin.map(<[u8]>::to_vec).unwrap_or_default())
            .await?
            .text())
    }

    /// Runs kubectl and requires success; returns its stdout.
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

    /// Runs kubectl feeding `stdin` while its output is read (large inputs
    /// cannot deadlock on full pipes); stdout comes back as bytes.
    pub async fn kubectl_io(&self, args: &[&str], stdin: Vec<u8>) -> anyhow::Result<BytesOut> {
        let mut cmd = self.kubectl_async(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if !stdin.is_empty() {
            cmd.stdin(Stdio::piped());
        }
        output(cmd, stdin).await
    }

    /// Waits (bounded by attempts, not by wall-clock assertions) until a pod
    /// matching `selector` in `ns` is Ready; returns its name.
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

    /// The walk-through's Ready nginx pod in np-test-1 (waits for it).
    pub async fn walkthrough_pod(&self) -> anyhow::Result<String> {
        self.wait_ready_pod("np-test-1", "app=np-test-nginx-1")
            .await
    }

    /// A kube-rs client for this cluster.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig())?;
        let cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?;
        Ok(kube::Client::try_from(cfg)?)
    }
}

/// Spawns `cmd`, writes `stdin` to it (if piped) while its output is read,
/// and waits for it to end.
pub async fn output(mut cmd: tokio::process::Command, stdin: Vec<u8>) -> anyhow::Result<BytesOut> {
    use tokio::io::AsyncWriteExt;
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
