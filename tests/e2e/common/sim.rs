//! Shared plumbing of the end-to-end tests that drive the BUILT binaries: where
//! cargo put them, a PATH that puts the plugins (and meshsim's istioctl
//! stand-in) in front of the caller's, and `meshsim serve` run as its own
//! process with a kubeconfig in a temporary directory.
//!
//! Each e2e test file used to carry its own copy of these; one copy keeps the
//! isolation rules (own kubeconfig, HOME and cache dir; never ~/.kube) and the
//! bounded startup waits the same everywhere.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// The built `meshsim serve` running as a separate process, as users run it,
/// with its kubeconfig in a temporary directory; killed on drop. The one
/// handle of the e2e tests that drive built binaries: start it with
/// [`Sim::walkthrough`] or [`Sim::builder`], run kubectl (and the plugins,
/// first on its `PATH`) with [`Sim::run`] / [`Sim::cmd`].
pub struct Sim {
    /// None once [`Sim::kill`]ed.
    child: Option<Child>,
    /// The test's own directory: kubeconfig, HOME, kubectl's cache.
    pub dir: tempfile::TempDir,
    /// `PATH` for kubectl: the built plugins (and meshsim's istioctl
    /// stand-in, when asked for) in front of the caller's.
    pub exec_path: OsString,
    /// With [`SimBuilder::watch_holds`]: how many requests meshsim has said
    /// (on stderr) it is holding under a `hang=` fault.
    held: Option<tokio::sync::watch::Receiver<usize>>,
}

/// How to start a [`Sim`]: scenarios, `serve` flags, how many Running pods
/// to wait for, and whether `istioctl` (meshsim's stand-in) is on `PATH`.
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
    /// all), not timed assertions.
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
            child: Some(child),
            dir,
            exec_path: path_with(&[&bins]),
            held,
        };
        if self.istioctl {
            let tools = istioctl_dir(sim.path());
            sim.exec_path = path_with(&[&bins, &tools]);
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
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Sim {
    /// No scenario, `--time-scale 0.05`, no pods to wait for.
    pub fn builder() -> SimBuilder {
        SimBuilder {
            scenarios: Vec::new(),
            flags: vec!["--time-scale".into(), "0.05".into()],
            pods: 0,
            istioctl: false,
            watch_holds: false,
        }
    }

    /// The walk-through scenario, waiting for its 2 pods.
    pub fn walkthrough() -> SimBuilder {
        Self::builder().scenario(walkthrough()).pods(2)
    }

    /// The test's own directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server (a crashing API server).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until meshsim says it is holding a request under a `hang=`
    /// fault, i.e. a client is mid-run; panics after `limit` (needs
    /// [`SimBuilder::watch_holds`]).
    pub async fn wait_held(&mut self, limit: Duration) {
        let held = self.held.as_mut().expect("started with watch_holds()");
        let waited = tokio::time::timeout(limit, held.wait_for(|n| *n > 0)).await;
        assert!(
            matches!(waited, Ok(Ok(_))),
            "meshsim never held a request: the plugin did not reach the faulted call"
        );
    }

    /// The kubeconfig meshsim wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// `kubectl` with this `PATH` and an isolated environment: this cluster's
    /// kubeconfig (KUBECONFIG, as plugins take no flag before their name),
    /// HOME and KUBECACHEDIR in the test's directory, NO_COLOR, no ISTIOCTL.
    pub fn kubectl_cmd(&self, path: &OsString) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.env("PATH", path)
            .env("KUBECONFIG", self.kubeconfig())
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .env("HOME", self.dir.path())
            .env("NO_COLOR", "1")
            .env_remove("ISTIOCTL");
        cmd
    }

    /// kubectl with this cluster's kubeconfig and [`Sim::exec_path`].
    pub fn cmd(&self) -> Command {
        self.kubectl_cmd(&self.exec_path)
    }

    /// Runs kubectl (or a plugin: `["npexec", ...]`) to completion.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        self.cmd().args(args).output().unwrap()
    }
}

/// Transitional: the names tests used before [`Sim`] and its builder, kept
/// only while branches written against them are merged (probes'
/// `tests/e2e/npexec_protocols.rs`); new tests use [`Sim::builder`], and
/// these go once no test names them.
pub type ServeProcess = Sim;

impl Sim {
    /// Transitional: `Sim::builder().flags(flags).scenario(s)... .pods(pods).start()`.
    pub fn start(flags: &[&str], scenarios: &[PathBuf], pods: usize) -> Sim {
        let mut b = Sim::builder().flags(flags).pods(pods);
        for s in scenarios {
            b = b.scenario(s.clone());
        }
        b.start()
    }
}

/// Transitional: a [`Sim`] with its own kubectl `PATH` (see [`ServeProcess`]).
pub struct PluginSim {
    pub sim: Sim,
    pub path: OsString,
}

impl PluginSim {
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        self.sim
            .kubectl_cmd(&self.path)
            .args(args)
            .output()
            .unwrap()
    }
}
