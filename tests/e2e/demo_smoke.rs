//! `make demo` smoke test: scripts/demo.sh with a fast time scale prints the
//! walk-through's key outputs, and leaves no meshsim process and no
//! temporary directory behind, also when interrupted (SIGINT, as Ctrl-C).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::sim::built;
use tokio::io::{AsyncBufReadExt, BufReader};

fn demo(tmp: &Path) -> tokio::process::Command {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg(root.join("scripts/demo.sh"))
        .env("DEMO_TIME_SCALE", "0.05")
        .env("MESHDEBUG_BIN_DIR", built(&["meshsim", "meshsim-istioctl"]))
        .env("TMPDIR", tmp)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Processes whose command line mentions `needle` (the demo's temp dir).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(needle) {
                found.push(text);
            }
        }
    }
    found
}

/// The demo's temporary directories under `tmp`.
fn demo_dirs(tmp: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("meshdebug-demo."))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_the_walkthrough_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let out = demo(tmp.path()).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for expected in [
        "$ kubectl exec $(kubectl get pod -n np-test-1 -l app=np-test-nginx-1",
        "Hello world - np-test-nginx-2!",
        "Hello world - np-test-nginx-1!",
        "Failed calling np-test-nginx-2",
        "enforced denied, matched policy ns[np-test-2]-policy[deny-all-ingress-using-authorizationpolicy]-rule[0]",
        "$ istioctl x authz check $(kubectl get pod -n np-test-2",
        "DENY     deny-all-ingress-using-authorizationpolicy.np-test-2   1\n",
        "  rbac: debug\n",
        "networkpolicy.networking.k8s.io/deny-all-ingress-using-networkpolicy created",
        // The second act: ambient mode, ztunnel's L4 deny, then the waypoint's L7 deny.
        "== Second act: the same two namespaces in ambient mode",
        "error=\"connection closed due to policy rejection: explicitly denied by: np-test-2/deny-np-test-1-l4\"",
        "policy[deny-private-l7]-rule[0]",
        "RBAC: access denied by waypoint np-test-2/waypoint",
        "np-test-2/deny-private-l7 (Gateway waypoint)",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    // Each step's command comes before its output.
    // curl's own message goes to stderr, as it does on a real cluster.
    assert!(
        stderr.contains("curl: (56) Recv failure: Connection reset by peer"),
        "no reset on stderr:\n{stderr}"
    );
    // rbaclog names the waypoint's denial and ztunnel's, each with its proxy.
    for (proxy, policy) in [
        ("(waypoint)", "np-test-2/deny-private-l7"),
        ("(ztunnel)", "np-test-2/deny-np-test-1-l4"),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(proxy) && l.contains("denied") && l.contains(policy)),
            "no rbaclog row for {policy} from a {proxy} proxy in:\n{stdout}"
        );
    }
    let cmd = stdout.find("$ istioctl x authz check").unwrap();
    let table = stdout.find("DENY     deny-all-ingress").unwrap();
    assert!(cmd < table);
    assert!(
        demo_dirs(tmp.path()).is_empty(),
        "temporary directory left behind"
    );
    let tmp_name = tmp.path().to_string_lossy().to_string();
    assert_eq!(processes_mentioning(&tmp_name), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_interrupted_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    // Its own process group, so the interrupt reaches it as a terminal's Ctrl-C
    // does: to the script and to the command it is waiting for. (Signalling bash
    // alone while it waits for a child that then exits normally makes bash
    // assume the child handled the interrupt, and it carries on.)
    let mut child = demo(tmp.path()).process_group(0).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    // Interrupt once meshsim serves (bounded by the demo's own output).
    let mut seen = false;
    while let Ok(Some(line)) = lines.next_line().await {
        if line.starts_with("meshsim is serving") {
            seen = true;
            break;
        }
    }
    assert!(seen, "the demo never reported meshsim serving");
    let tmp_name = tmp.path().to_string_lossy().to_string();
    assert!(
        processes_mentioning(&tmp_name)
            .iter()
            .any(|p| p.contains("meshsim serve")),
        "meshsim should be running before the interrupt"
    );
    let group = format!("-{}", child.id().unwrap());
    let st = std::process::Command::new("kill")
        .args(["-INT", "--", &group])
        .status()
        .unwrap();
    assert!(st.success());
    // Drain the rest of the output so the script never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(130));
    // Cleanup ran in the script's EXIT trap before it exited.
    for _ in 0..50 {
        if processes_mentioning(&tmp_name).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(processes_mentioning(&tmp_name), Vec::<String>::new());
    assert!(
        demo_dirs(tmp.path()).is_empty(),
        "temporary directory left behind"
    );
}

/// The real kubectl binaries of each minor version, beside the `kubectl` on PATH
/// (`kubectl.1.27` ... `kubectl.1.33`), that exist here.
fn versioned_kubectls() -> Vec<(u32, PathBuf)> {
    let Some(dir) = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("kubectl"))
        .find(|k| k.exists())
        .and_then(|k| std::fs::canonicalize(k).ok())
        .and_then(|k| k.parent().map(Path::to_path_buf))
    else {
        return Vec::new();
    };
    (27..=33)
        .map(|m| (m, dir.join(format!("kubectl.1.{m}"))))
        .filter(|(_, p)| p.exists())
        .collect()
}

/// kubectl 1.27 and 1.28 (exec over SPDY only) are refused up front with the
/// supported range; 1.29 (WebSocket exec behind its switch, which the demo
/// sets) to 1.33 run the walk-through's `kubectl exec` steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_says_which_kubectl_versions_work() {
    let versions = versioned_kubectls();
    assert!(
        !versions.is_empty(),
        "no kubectl.1.NN binaries beside kubectl"
    );
    for (minor, kubectl) in versions {
        let tmp = tempfile::tempdir().unwrap();
        let out = demo(tmp.path())
            .env("KUBECTL", &kubectl)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if minor < 29 {
            assert_eq!(out.status.code(), Some(2), "1.{minor}: {stderr}");
            assert!(
                stderr.contains("use kubectl 1.29 to 1.33"),
                "1.{minor}: {stderr}"
            );
            assert!(stdout.is_empty(), "1.{minor}: {stdout}");
        } else {
            assert_eq!(out.status.code(), Some(0), "1.{minor}: {stdout}\n{stderr}");
            assert!(
                stdout.contains("Hello world - np-test-nginx-2!"),
                "1.{minor}: {stdout}"
            );
            assert!(
                !stdout.contains("Upgrade request required")
                    && !stderr.contains("Upgrade request required"),
                "1.{minor}: {stdout}\n{stderr}"
            );
        }
    }
}
