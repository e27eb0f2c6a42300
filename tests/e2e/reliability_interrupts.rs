//! Interrupts (issue 10, part 2): SIGINT and SIGTERM in the middle of
//! `npexec --matrix`, `rbaclog -f` and `rbaclog --enable-debug` end with 130
//! (143 for TERM), every sidecar's `rbac` logger is back at its level (read
//! through the istioctl stand-in's `proxy-config log`), and no process the
//! plugin started survives it. Orphans are found through the process table:
//! each run carries a unique environment marker that every child inherits,
//! and after the plugin exits no process in /proc may still carry it. The
//! signal goes out only once meshsim says it holds the plugin's request
//! under a `hang=` fault, so every case is provably mid-run.

use crate::reliability;

use std::time::Duration;

use futures::future::join_all;
use reliability::Sim;

#[derive(Clone, Copy, Debug)]
enum Sig {
    Int,
    Term,
}

impl Sig {
    fn name(self) -> &'static str {
        match self {
            Sig::Int => "-INT",
            Sig::Term => "-TERM",
        }
    }
    fn code(self) -> i32 {
        match self {
            Sig::Int => 130,
            Sig::Term => 143,
        }
    }
}

/// Pids of live processes whose environment holds `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let needle = format!("RELIABILITY_RUN={marker}");
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // Zombies (already exited, not yet reaped) are not orphans at work.
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        if stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        {
            continue;
        }
        if let Ok(env) = std::fs::read(e.path().join("environ"))
            && env.split(|b| *b == 0).any(|v| v == needle.as_bytes())
        {
            found.push(name);
        }
    }
    found
}

async fn pod(sim: &Sim, ns: &str) -> String {
    let o = sim
        .plugin_cmd("kubectl", &["get", "pods", "-n", ns, "-o", "name"])
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("pod/"))
        .expect("a pod")
        .to_string()
}

async fn rbac_level(sim: &Sim, ns: &str, pod: &str) -> String {
    let o = sim
        .run_bounded("istioctl", &["proxy-config", "log", &format!("{pod}.{ns}")])
        .await;
    assert_eq!(o.code, 0, "{o:?}");
    o.stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("rbac: ").map(str::to_string))
        .unwrap_or_else(|| panic!("no rbac logger in {}", o.stdout))
}

/// Runs `plugin args` on a fresh meshsim with `fault`, signals it mid-run,
/// and checks exit code, restored levels and orphans.
async fn case(
    plugin: &'static str,
    args: &'static [&'static str],
    fault: &'static str,
    sig: Sig,
    debug: bool,
) -> Result<(), String> {
    let mut sim = Sim::case(&["--fault", fault]).await;
    let p2 = pod(&sim, "np-test-2").await;
    let before = rbac_level(&sim, "np-test-2", &p2).await;
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let marker = format!("{plugin}-{n}-{sig:?}-{}", std::process::id());
    let child = sim
        .plugin_cmd(plugin, args)
        .env("RELIABILITY_RUN", &marker)
        .spawn()
        .map_err(|e| e.to_string())?;
    let pid = child.id().ok_or("no pid")?.to_string();
    if debug {
        // Wait (bounded by attempts) until the plugin raised the level.
        let mut raised = false;
        for _ in 0..100 {
            if rbac_level(&sim, "np-test-2", &p2).await == "debug" {
                raised = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !raised {
            return Err(format!("{plugin} {args:?}: the level was never raised"));
        }
    }
    // Signal only once meshsim holds the plugin's faulted request: the plugin
    // is provably mid-run (waiting on its exec, or on the log stream it follows).
    sim.wait_held(reliability::RUN_LIMIT).await;
    let k = std::process::Command::new("kill")
        .args([sig.name(), &pid])
        .status()
        .map_err(|e| e.to_string())?;
    if !k.success() {
        return Err(format!("{plugin} {args:?}: already gone before the signal"));
    }
    let out = reliability::finish(child).await;
    let ctx = format!("{plugin} {args:?} {sig:?}: {out:?}");
    if out.code != sig.code() {
        return Err(format!(
            "exit {} instead of {}: {ctx}",
            out.code,
            sig.code()
        ));
    }
    let after = rbac_level(&sim, "np-test-2", &p2).await;
    if after != before {
        return Err(format!(
            "rbac level {after} after the run, was {before}: {ctx}"
        ));
    }
    let left = processes_with(&marker);
    if !left.is_empty() {
        return Err(format!("orphan processes {left:?}: {ctx}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_mid_run_end_cleanly() {
    const MATRIX: &[&str] = &["--matrix", "np-test-1", "np-test-2", "--timeout", "30s"];
    const FOLLOW: &[&str] = &["np-test-2", "-f"];
    const DEBUG: &[&str] = &["np-test-2", "--enable-debug"];
    let mut runs = Vec::new();
    for sig in [Sig::Int, Sig::Term] {
        runs.push(case(
            "kubectl-npexec",
            MATRIX,
            "verb=exec,namespace=np-test-1,hang=60s",
            sig,
            false,
        ));
        runs.push(case(
            "kubectl-rbaclog",
            FOLLOW,
            "verb=log,hang=60s",
            sig,
            false,
        ));
        runs.push(case(
            "kubectl-rbaclog",
            DEBUG,
            "verb=log,hang=60s",
            sig,
            true,
        ));
    }
    let n = runs.len();
    let failures: Vec<String> = join_all(runs)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {n} interrupt cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
