//! End-to-end tests of `kubectl npexec` through the real kubectl against
//! meshsim serving the walk-through scenario (examples/walkthrough).
//!
//! Uses a small local harness (start `meshsim serve`, wait for its kubeconfig,
//! kill it on drop) until tests/common offers the shared one. Traffic verdicts
//! need meshsim's simulated traffic (issue 5) and are marked ignored.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf();
    for b in ["kubectl-npexec", "meshsim"] {
        assert!(
            dir.join(b).exists(),
            "{b} is not built in {}: run `cargo build -p kubectl-npexec -p meshsim` first",
            dir.display()
        );
    }
    dir
}

struct Sim {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sim {
    fn start() -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/walkthrough");
        let child = Command::new(bin_dir().join("meshsim"))
            .args([
                "serve",
                "--time-scale",
                "0.05",
                "--ready-delay",
                "10ms",
                "--scenario",
            ])
            .arg(&scenario)
            .arg("--kubeconfig-out")
            .arg(&kubeconfig)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let sim = Sim { child, dir };
        // Startup wait, not a timed assertion: give up after a generous bound.
        let start = Instant::now();
        while !kubeconfig.exists() && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(kubeconfig.exists(), "meshsim did not write its kubeconfig");
        // Wait for the walk-through pods to be Running.
        while start.elapsed() < Duration::from_secs(60) {
            let out = sim.kubectl(&["get", "pods", "-A", "--no-headers"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if text.lines().count() >= 2 && text.lines().all(|l| l.contains("Running")) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        sim
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        let path = format!(
            "{}:{}",
            bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("kubectl")
            .args(args)
            .env("PATH", path)
            .env("HOME", self.dir.path())
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    }

    fn npexec(&self, args: &[&str]) -> Output {
        let mut v = vec!["npexec"];
        v.extend_from_slice(args);
        self.kubectl(&v)
    }
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_input_against_the_walkthrough() {
    let sim = Sim::start();
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["np-test-9", "np-test-2"],
            3,
            "error: namespace \"np-test-9\" not found",
        ),
        (
            &["np-test-1", "np-test-9"],
            3,
            "error: namespace \"np-test-9\" not found",
        ),
        (
            &["np-test-1", "np-test-2", "-l", "app=nope"],
            3,
            "selector app=nope",
        ),
        (
            &["np-test-1", "np-test-2", "--pod", "nope"],
            3,
            "pod \"nope\" not found",
        ),
        (
            &["np-test-1", "np-test-2", "-c", "nope"],
            3,
            "np-test-nginx-1, istio-proxy",
        ),
        (
            &["np-test-1", "np-test-2", "-c", "istio-proxy"],
            2,
            "istio-proxy",
        ),
        (
            &["np-test-1", "np-test-2", "--service", "nope"],
            3,
            "service \"nope\" not found",
        ),
        (&["np-test-1", "np-test-2", "--port", "81"], 2, "port 81"),
    ];
    for (args, code, needle) in cases {
        let out = sim.npexec(args);
        let e = err(&out);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {e}");
        assert!(e.contains(needle), "{args:?}: {e}");
        assert_eq!(
            e.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{e}"
        );
    }
}

#[test]
fn json_output_has_the_documented_fields() {
    let sim = Sim::start();
    let out = sim.npexec(&["np-test-1", "np-test-2", "--both", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", err(&out)));
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2, "one probe each way");
    for p in arr {
        for key in [
            "verdict",
            "http_status",
            "curl_exit",
            "body",
            "duration_ms",
            "expected",
            "met",
            "hint",
        ] {
            assert!(p.get(key).is_some(), "missing {key}: {p}");
        }
        let ns = p["from"]["namespace"].as_str().unwrap();
        let workload = ns.replace("np-test-", "np-test-nginx-");
        assert!(
            p["from"]["pod"].as_str().unwrap().starts_with(&workload),
            "{p}"
        );
        // The default container, never istio-proxy.
        assert_eq!(p["from"]["container"], workload.as_str());
        assert!(
            p["to"]["url"]
                .as_str()
                .unwrap()
                .contains(".svc.cluster.local:80/")
        );
    }
}

#[test]
#[ignore = "needs meshsim traffic (issue 5)"]
fn walkthrough_allowed_then_denied_rbac() {
    let sim = Sim::start();
    let out = sim.npexec(&["np-test-1", "np-test-2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    assert!(
        text.contains("allowed")
            && text.contains("200")
            && text.contains("Hello world - np-test-nginx-2!"),
        "{text}"
    );
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/walkthrough/policies");
    let apply = sim.kubectl(&[
        "apply",
        "-f",
        policy
            .join("block-istio-ingress-np-test-2.yaml")
            .to_str()
            .unwrap(),
    ]);
    assert!(apply.status.success(), "{}", err(&apply));
    let out = sim.npexec(&[
        "np-test-1",
        "np-test-2",
        "--both",
        "--expect",
        "deny",
        "--wait",
        "10s",
        "-o",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["verdict"], "denied-rbac");
    assert_eq!(v[1]["verdict"], "allowed");
    assert_eq!(
        out.status.code(),
        Some(1),
        "the reverse direction is allowed, so --expect deny is not met"
    );
    let out = sim.npexec(&["np-test-1", "np-test-2", "--expect", "allow"]);
    assert_eq!(out.status.code(), Some(1));
}
