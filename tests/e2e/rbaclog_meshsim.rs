//! End-to-end tests of `kubectl rbaclog` through the real kubectl against an
//! in-process meshsim serving the walk-through (examples/walkthrough), with
//! meshsim's istioctl stand-in linked as `istioctl` on a PATH entry of the
//! test's own.
//!
//! Needs the binaries built first: `cargo build -p kubectl-rbaclog -p meshsim --bins`.
//! Waits are bounded by attempts (a test fails when what it waits for never
//! comes), never assertions on durations.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::sim::built;
use common::{Out, Sim, fast_config, repo_root};
use tokio::io::{AsyncBufReadExt, BufReader};

const POLICY: &str = "examples/walkthrough/policies/block-istio-ingress-np-test-2.yaml";

struct Env {
    c: Sim,
}

impl Env {
    async fn start(faults: &[&str]) -> Env {
        let mut config = fast_config();
        config.scenarios = vec![repo_root().join("examples/walkthrough")];
        config.faults = faults
            .iter()
            .map(|f| meshsim::faults::Fault::parse(f).unwrap())
            .collect();
        let mut c = Sim::in_process(config).await.unwrap();
        built(&["kubectl-rbaclog", "meshsim-istioctl"]);
        c.add_istioctl();
        let env = Env { c };
        env.c
            .wait_ready_pod("np-test-1", "app=np-test-nginx-1")
            .await
            .unwrap();
        env.c
            .wait_ready_pod("np-test-2", "app=np-test-nginx-2")
            .await
            .unwrap();
        env
    }

    /// `PROGRAM ARGS` (kubectl, plugins included) with this cluster's environment.
    fn cmd(&self, program: &str, args: &[&str]) -> tokio::process::Command {
        self.c.command_async(program, args)
    }

    async fn run(&self, program: &str, args: &[&str]) -> Out {
        self.c.run_program(program, args).await.unwrap()
    }

    async fn rbaclog(&self, args: &[&str]) -> Out {
        let mut v = vec!["rbaclog"];
        v.extend_from_slice(args);
        self.run("kubectl", &v).await
    }

    async fn pod(&self, ns: &str, app: &str) -> String {
        self.c
            .wait_ready_pod(ns, &format!("app={app}"))
            .await
            .unwrap()
    }

    /// The walk-through's probe from np-test-1 to SERVICE.NS; true when it failed.
    async fn probe_denied(&self, ns: &str, service: &str) -> bool {
        let p1 = self.pod("np-test-1", "np-test-nginx-1").await;
        let script = format!(
            "curl -sf --max-time 3 {service}.{ns}.svc.cluster.local || echo 'Failed calling {service}'"
        );
        let o = self
            .c
            .kubectl(&["exec", &p1, "-n", "np-test-1", "--", "bash", "-c", &script])
            .await
            .unwrap();
        assert_eq!(o.code, 0, "{o:?}");
        o.stdout.contains("Failed calling")
    }

    /// Applies the walk-through's DENY policy and probes until a probe is denied
    /// (the policy reaches the sidecar after meshsim's propagation delay). Exactly
    /// one denied probe has been made when this returns.
    async fn deny_and_probe_once(&self, ns: &str, service: &str, policy: &Path) {
        self.c
            .ok(&["apply", "-n", ns, "-f", &policy.display().to_string()])
            .await
            .unwrap();
        for _ in 0..200 {
            if self.probe_denied(ns, service).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the probe to {service}.{ns} was never denied");
    }

    /// The stand-in istioctl's view of a sidecar's rbac logger level.
    async fn rbac_level(&self, pod: &str, ns: &str) -> String {
        let o = self
            .run("istioctl", &["proxy-config", "log", &format!("{pod}.{ns}")])
            .await;
        assert_eq!(o.code, 0, "{o:?}");
        o.stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("rbac: ").map(str::to_string))
            .unwrap_or_else(|| panic!("no rbac logger in {}", o.stdout))
    }
}

/// A running `kubectl rbaclog ...`: its stdout on `lines`, stderr lines on
/// `errs` (read as they come, so the pipe never fills).
struct Following {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    errs: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// The stderr lines read so far.
    stderr: String,
}

impl Env {
    /// `kubectl rbaclog NS -f -o jsonl -v`, polling for pods every 200 ms.
    fn follow_jsonl(&self, ns: &str) -> Following {
        self.spawn_rbaclog(&[ns, "-f", "-o", "jsonl", "--poll-interval", "200ms", "-v"])
    }

    /// `kubectl rbaclog ARGS`, running.
    fn spawn_rbaclog(&self, args: &[&str]) -> Following {
        let mut argv = vec!["rbaclog"];
        argv.extend_from_slice(args);
        let mut child = self
            .cmd("kubectl", &argv)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut errs = BufReader::new(child.stderr.take().unwrap()).lines();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(l)) = errs.next_line().await {
                let _ = tx.send(l);
            }
        });
        Following {
            child,
            lines,
            errs: rx,
            stderr: String::new(),
        }
    }
}

impl Following {
    fn take(&mut self, line: String) {
        self.stderr.push_str(&line);
        self.stderr.push('\n');
    }

    /// Waits (bounded) for a stderr line holding every one of `words`.
    async fn wait_stderr(&mut self, words: &[&str]) {
        let has = |l: &str| words.iter().all(|w| l.contains(w));
        if self.stderr.lines().any(has) {
            return;
        }
        loop {
            let next = tokio::time::timeout(Duration::from_secs(60), self.errs.recv()).await;
            let Ok(Some(line)) = next else {
                panic!("no stderr line with {words:?} in:\n{}", self.stderr)
            };
            let found = has(&line);
            self.take(line);
            if found {
                return;
            }
        }
    }

    /// Stops the plugin; returns all it wrote to stderr.
    async fn stop(mut self) -> String {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        while let Some(line) = self.errs.recv().await {
            self.take(line);
        }
        self.stderr
    }
}

fn json(out: &Out) -> Vec<serde_json::Value> {
    assert_eq!(out.code, 0, "{out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[tokio::test(flavor = "multi_thread")]
async fn one_denied_probe_shows_one_denial_with_policy_and_rule() {
    let env = Env::start(&[]).await;
    // Before any policy: nothing denied, and --exit-code says so with 0.
    assert!(!env.probe_denied("np-test-2", "svc-np-test-nginx-2").await);
    let o = env.rbaclog(&["np-test-2", "--exit-code"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.is_empty(), "{o:?}");
    assert!(o.stderr.contains("No denied decisions found"), "{o:?}");

    env.deny_and_probe_once(
        "np-test-2",
        "svc-np-test-nginx-2",
        &repo_root().join(POLICY),
    )
    .await;

    let o = env.rbaclog(&["np-test-2"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    let rows: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(rows.len(), 2, "header and one denial: {}", o.stdout);
    assert!(rows[0].starts_with("TIME") && rows[0].contains("POLICY") && rows[0].contains("RULE"));
    let row = rows[1];
    assert!(row.contains("np-test-2/np-test-nginx-2-"), "{row}");
    assert!(
        row.contains("np-test-2/deny-all-ingress-using-authorizationpolicy"),
        "{row}"
    );
    assert!(row.contains("   0   "), "rule 0: {row}");
    assert!(row.contains("denied"), "{row}");

    let v = json(&env.rbaclog(&["np-test-2", "-o", "json"]).await);
    assert_eq!(v.len(), 1, "{v:#?}");
    let d = &v[0];
    assert_eq!(d["namespace"], "np-test-2");
    assert!(d["pod"].as_str().unwrap().starts_with("np-test-nginx-2-"));
    assert_eq!(d["decision"], "denied");
    assert_eq!(d["engine"], "enforced");
    assert_eq!(
        d["policy_id"],
        "ns[np-test-2]-policy[deny-all-ingress-using-authorizationpolicy]-rule[0]"
    );
    assert_eq!(
        d["policy"]["name"],
        "deny-all-ingress-using-authorizationpolicy"
    );
    assert_eq!(d["policy"]["rule"], "0");
    // The walk-through's pods log RBAC at debug (annotation): the debug line, the
    // local reply and the access log line are one decision.
    assert_eq!(d["origin"], "rbac-debug");
    let paired: Vec<&str> = d["paired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["origin"].as_str().unwrap())
        .collect();
    assert_eq!(paired, ["local-reply", "access-log"]);
    assert_eq!(d["request"]["response_code"], 403);
    assert!(d["connection_id"].is_u64() && d["stream_id"].is_u64());
    // Which filter decided, and in which kind of proxy (the pod's Istio labels).
    assert_eq!(d["filter"], "http-rbac", "{d:#}");
    assert_eq!(d["proxy"], "sidecar", "{d:#}");

    // --exit-code: 1 when a decision matched, 0 where none did.
    let o = env.rbaclog(&["np-test-2", "--exit-code"]).await;
    assert_eq!(o.code, 1, "{o:?}");
    let o = env.rbaclog(&["-n", "np-test-1", "--exit-code"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    // Filters: no shadow decisions; another policy name matches nothing.
    assert!(
        json(
            &env.rbaclog(&["np-test-2", "--engine", "shadow", "-o", "json"])
                .await
        )
        .is_empty()
    );
    assert!(
        json(
            &env.rbaclog(&["np-test-2", "--policy", "other", "-o", "json"])
                .await
        )
        .is_empty()
    );
    assert_eq!(
        json(
            &env.rbaclog(&[
                "-A",
                "--policy",
                "np-test-2/deny-all-ingress-using-authorizationpolicy",
                "-o",
                "json"
            ])
            .await
        )
        .len(),
        1
    );

    // The saved log through a pipe gives the same decision, with no cluster at all.
    let p2 = env.pod("np-test-2", "np-test-nginx-2").await;
    let log = env
        .c
        .ok(&["logs", &p2, "-c", "istio-proxy", "-n", "np-test-2"])
        .await
        .unwrap();
    let mut cmd = env.cmd("kubectl", &["rbaclog", "-", "-o", "json"]);
    cmd.env("KUBECONFIG", "/nonexistent/kubeconfig")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(log.as_bytes()).await.unwrap();
    }
    let o = child.wait_with_output().await.unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(
        v[0]["policy"]["name"],
        "deny-all-ingress-using-authorizationpolicy"
    );
    assert_eq!(v[0]["pod"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn summary_counts_n_denials_after_n_probes() {
    let env = Env::start(&[]).await;
    env.deny_and_probe_once(
        "np-test-2",
        "svc-np-test-nginx-2",
        &repo_root().join(POLICY),
    )
    .await;
    const N: usize = 4;
    for _ in 1..N {
        assert!(env.probe_denied("np-test-2", "svc-np-test-nginx-2").await);
    }
    // Envoy flushes its access log on its own schedule: read until every denial
    // has its access line too (or 20 s pass), then check the summary.
    let full = |v: &serde_json::Value| {
        v["by_log"][0]["log"] == "rbac-debug+local-reply+access-log"
            && v["by_log"][0]["count"] == N as u64
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let v = loop {
        let o = env.rbaclog(&["np-test-2", "--summary", "-o", "json"]).await;
        assert_eq!(o.code, 0, "{o:?}");
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        if full(&v) || std::time::Instant::now() > deadline {
            break v;
        }
    };
    assert_eq!(v["total"], N as u64);
    let by_policy = v["by_policy"].as_array().unwrap();
    assert_eq!(by_policy.len(), 1, "{v:#}");
    assert_eq!(
        by_policy[0]["policy"],
        "np-test-2/deny-all-ingress-using-authorizationpolicy"
    );
    assert_eq!(by_policy[0]["rule"], "0");
    assert_eq!(by_policy[0]["count"], N as u64);
    assert!(
        by_policy[0]["first_seen"].as_str().unwrap() <= by_policy[0]["last_seen"].as_str().unwrap()
    );
    let by_pod = v["by_pod"].as_array().unwrap();
    assert_eq!(by_pod.len(), 1);
    assert!(
        by_pod[0]["pod"]
            .as_str()
            .unwrap()
            .starts_with("np-test-2/np-test-nginx-2-")
    );
    assert_eq!(v["by_log"][0]["log"], "rbac-debug+local-reply+access-log");
    assert_eq!(v["by_log"][0]["count"], N as u64, "{v:#}");
    // The table form names the same counts.
    let o = env.rbaclog(&["np-test-2", "--summary"]).await;
    assert!(o.stdout.contains("COUNT"), "{o:?}");
    let line = o
        .stdout
        .lines()
        .find(|l| l.starts_with("np-test-2/deny-all-ingress-using-authorizationpolicy"))
        .unwrap();
    assert!(
        line.split_whitespace().any(|w| w == N.to_string()),
        "{line}"
    );
}

/// A copy of the walk-through's np-test-2 in np-test-3, without the debug annotations.
fn plain_namespace(dir: &Path) -> (PathBuf, PathBuf) {
    let app = std::fs::read_to_string(repo_root().join("examples/walkthrough/istio-np-2.yaml"))
        .unwrap()
        .lines()
        .filter(|l| {
            !l.contains("sidecar.istio.io/logLevel")
                && !l.contains("sidecar.istio.io/proxyLogLevel")
        })
        .collect::<Vec<_>>()
        .join("\n")
        .replace("np-test-nginx-2", "np-test-nginx-3")
        .replace("np-test-2", "np-test-3");
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: np-test-3\n  labels:\n    istio-injection: enabled\n---\n";
    let app_path = dir.join("np-test-3.yaml");
    std::fs::write(&app_path, format!("{ns}{app}\n")).unwrap();
    let policy = std::fs::read_to_string(repo_root().join(POLICY))
        .unwrap()
        .replace("np-test-2", "np-test-3");
    let policy_path = dir.join("policy-3.yaml");
    std::fs::write(&policy_path, policy).unwrap();
    (app_path, policy_path)
}

#[tokio::test(flavor = "multi_thread")]
async fn enable_debug_shows_the_next_denial_and_restores_the_level() {
    let env = Env::start(&[]).await;
    let (app, policy) = plain_namespace(env.c.path());
    env.c
        .ok(&["apply", "-f", &app.display().to_string()])
        .await
        .unwrap();
    let p3 = env.pod("np-test-3", "np-test-nginx-3").await;
    let before = env.rbac_level(&p3, "np-test-3").await;
    assert!(before != "debug" && before != "trace", "{before}");

    // Debug off: a denial is known from the access log only.
    env.deny_and_probe_once("np-test-3", "svc-np-test-nginx-3", &policy)
        .await;
    let v = json(&env.rbaclog(&["np-test-3", "-o", "json"]).await);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["origin"], "access-log");

    // Follow with --enable-debug: the next denial comes with its RBAC debug line.
    let mut f = env.spawn_rbaclog(&[
        "np-test-3",
        "--enable-debug",
        "-f",
        "-o",
        "jsonl",
        "--since",
        "1s",
    ]);
    let mut raised = false;
    for _ in 0..200 {
        if env.rbac_level(&p3, "np-test-3").await == "debug" {
            raised = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(raised, "--enable-debug never set the rbac logger to debug");
    assert!(env.probe_denied("np-test-3", "svc-np-test-nginx-3").await);
    let mut seen_debug = false;
    for _ in 0..20 {
        let next = tokio::time::timeout(Duration::from_secs(30), f.lines.next_line()).await;
        let Ok(Ok(Some(line))) = next else { break };
        let d: serde_json::Value = serde_json::from_str(&line).unwrap();
        if d["origin"] == "rbac-debug" {
            assert_eq!(
                d["policy"]["name"],
                "deny-all-ingress-using-authorizationpolicy"
            );
            seen_debug = true;
            break;
        }
    }
    assert!(seen_debug, "no RBAC debug decision arrived while following");

    // Ctrl-C: the run ends with 130 and the sidecar is back at its old level.
    let pid = f.child.id().unwrap().to_string();
    let k = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(k.success());
    let status = f.child.wait().await.unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(env.rbac_level(&p3, "np-test-3").await, before);
    // Ctrl-C is the user's doing: the exit code says so, no `error: interrupted`.
    let mut errs = Vec::new();
    while let Some(l) = f.errs.recv().await {
        errs.push(l);
    }
    assert!(
        !errs
            .iter()
            .any(|l| l.starts_with("error:") || l.contains("interrupted")),
        "{errs:?}"
    );

    // A plain run restores too, and says that only requests made after the
    // level change get debug lines; --keep-debug leaves debug on (and says so).
    let o = env.rbaclog(&["np-test-3", "--enable-debug"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stderr
            .contains("only requests made from now on get RBAC debug lines")
            && o.stderr.contains("add -f"),
        "{o:?}"
    );
    assert_eq!(env.rbac_level(&p3, "np-test-3").await, before);
    let o = env
        .rbaclog(&["np-test-3", "--enable-debug", "--keep-debug"])
        .await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("left with rbac logger at debug"), "{o:?}");
    assert_eq!(env.rbac_level(&p3, "np-test-3").await, "debug");
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_sees_later_denials_once_each_across_cut_streams() {
    // Every log stream is cut after 128 KiB: following must reconnect from where
    // it stopped, without repeating or losing a decision. (sinceTime has
    // one-second resolution, so one second of log must stay under the cut size
    // for a reconnect to make progress: the probes are spaced by a second. The
    // walk-through's sidecars are real Envoys logging every logger at debug:
    // about 86 KiB in their first second, 6-8 KiB per request after that, so
    // the stream is cut during the probes.)
    let env = Env::start(&["resource=pods/log,cut-log-after=131072"]).await;
    // Not a wait for an event: the sleeps here ARE the behaviour under test.
    // sinceTime has one-second resolution, so the sidecars' start-up second
    // (most of their log) must be over before the denials, and each probe
    // falls in a second of its own.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    env.c
        .ok(&[
            "apply",
            "-n",
            "np-test-2",
            "-f",
            &repo_root().join(POLICY).display().to_string(),
        ])
        .await
        .unwrap();
    let mut f = env.follow_jsonl("np-test-2");
    // Wait until the policy is in force; denials made before are read too.
    let mut made = 0usize;
    for _ in 0..200 {
        if env.probe_denied("np-test-2", "svc-np-test-nginx-2").await {
            made += 1;
            break;
        }
    }
    assert_eq!(made, 1, "the policy never took effect");
    let mut seen: Vec<serde_json::Value> = Vec::new();
    const K: usize = 10;
    while made < K {
        // Space the probes so that one second of log stays well under the cut size.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(env.probe_denied("np-test-2", "svc-np-test-nginx-2").await);
        made += 1;
    }
    while seen.len() < K {
        let next = tokio::time::timeout(Duration::from_secs(60), f.lines.next_line()).await;
        let Ok(Ok(Some(line))) = next else {
            panic!("only {} of {K} denials arrived: {seen:#?}", seen.len())
        };
        seen.push(serde_json::from_str(&line).unwrap());
    }
    // Every request once: distinct connection ids, all paired from the debug line.
    let mut ids: Vec<u64> = seen
        .iter()
        .map(|d| d["connection_id"].as_u64().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), K, "{seen:#?}");
    for d in &seen {
        assert_eq!(d["origin"], "rbac-debug");
        assert_eq!(d["paired"].as_array().unwrap().len(), 2, "{d:#}");
    }
    // Nothing more arrives (no duplicate) after one more poll of every stream.
    let extra = tokio::time::timeout(Duration::from_secs(3), f.lines.next_line()).await;
    assert!(
        !matches!(extra, Ok(Ok(Some(_)))),
        "unexpected extra line: {extra:?}"
    );
    let stderr = f.stop().await;
    assert!(
        stderr.contains("log stream cut; reconnecting"),
        "the stream was never cut: {stderr}"
    );
}

/// The names of the np-test-nginx-2 pods that exist (terminating ones included).
async fn nginx2_pods(env: &Env) -> Vec<String> {
    let names = env
        .c
        .ok(&[
            "get",
            "pods",
            "-n",
            "np-test-2",
            "-l",
            "app=np-test-nginx-2",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .await
        .unwrap();
    names.split_whitespace().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_picks_up_a_new_pod_and_lets_the_deleted_one_go() {
    let env = Env::start(&[]).await;
    let old = env.pod("np-test-2", "np-test-nginx-2").await;
    env.deny_and_probe_once(
        "np-test-2",
        "svc-np-test-nginx-2",
        &repo_root().join(POLICY),
    )
    .await;
    let mut f = env.follow_jsonl("np-test-2");
    // The denial made before following started is read from the old pod's log.
    let first = tokio::time::timeout(Duration::from_secs(60), f.lines.next_line())
        .await
        .expect("the earlier denial never arrived")
        .unwrap()
        .unwrap();
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["pod"], old.as_str(), "{first:#}");

    // Replace the pod: its ReplicaSet makes a new one, with a new name and log.
    env.c
        .ok(&["delete", "pod", &old, "-n", "np-test-2", "--wait=false"])
        .await
        .unwrap();
    let mut new = None;
    for _ in 0..600 {
        let pods = nginx2_pods(&env).await;
        if let [only] = pods.as_slice()
            && *only != old
        {
            new = Some(only.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let new = new.expect("the deleted pod was never replaced by exactly one new pod");
    env.c
        .wait_ready_pod("np-test-2", "app=np-test-nginx-2")
        .await
        .unwrap();
    // The old pod's stream ends with the pod, and the poll starts the new pod's.
    f.wait_stderr(&["stopped following", &old]).await;
    f.wait_stderr(&["following new pod", &new]).await;

    // A denial made by the new pod's sidecar arrives, named after the new pod.
    let mut denied = false;
    for _ in 0..200 {
        if env.probe_denied("np-test-2", "svc-np-test-nginx-2").await {
            denied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(denied, "the new pod never denied the probe");
    let next = tokio::time::timeout(Duration::from_secs(60), f.lines.next_line())
        .await
        .expect("the new pod's denial never arrived")
        .unwrap()
        .unwrap();
    let d: serde_json::Value = serde_json::from_str(&next).unwrap();
    assert_eq!(d["pod"], new.as_str(), "{d:#}");
    assert_eq!(d["decision"], "denied");
    assert_eq!(
        d["policy"]["name"],
        "deny-all-ingress-using-authorizationpolicy"
    );
    // Still running: following does not end when a pod goes.
    assert!(f.child.try_wait().unwrap().is_none(), "rbaclog -f exited");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_one_line_with_the_documented_exit_code() {
    let env = Env::start(&["verb=log,resource=pods/log,namespace=np-test-1,status=403"]).await;
    // A namespace without sidecars.
    env.c.ok(&["create", "namespace", "plain"]).await.unwrap();
    env.c
        .ok(&["run", "web", "--image=nginx", "-n", "plain"])
        .await
        .unwrap();
    env.c.wait_ready_pod("plain", "run=web").await.unwrap();
    let o = env.rbaclog(&["plain"]).await;
    assert_eq!(o.code, 3, "{o:?}");
    assert!(
        o.stderr
            .starts_with("error: no pod with an istio-proxy sidecar in namespace plain"),
        "{o:?}"
    );
    assert_eq!(o.stderr.lines().count(), 1, "{o:?}");
    // --pod naming a pod without istio-proxy lists its containers.
    let o = env.rbaclog(&["plain", "--pod", "web"]).await;
    assert_eq!(o.code, 3, "{o:?}");
    assert!(
        o.stderr
            .contains("has no istio-proxy container; its containers: web"),
        "{o:?}"
    );
    // Unknown namespace and pod.
    let o = env.rbaclog(&["np-test-9"]).await;
    assert_eq!(o.code, 3, "{o:?}");
    assert!(
        o.stderr
            .starts_with("error: namespace \"np-test-9\" not found"),
        "{o:?}"
    );
    let o = env.rbaclog(&["np-test-2", "--pod", "nope"]).await;
    assert_eq!(o.code, 3, "{o:?}");
    assert!(o.stderr.contains("pod \"nope\" not found"), "{o:?}");
    // Logs forbidden: the permission is named.
    let o = env.rbaclog(&["np-test-1"]).await;
    assert_eq!(o.code, 3, "{o:?}");
    assert!(
        o.stderr
            .contains("cannot get pods/log in namespace np-test-1"),
        "{o:?}"
    );
    // istioctl missing: install hint, and nothing was changed.
    let p2 = env.pod("np-test-2", "np-test-nginx-2").await;
    let before = env.rbac_level(&p2, "np-test-2").await;
    let mut cmd = env.cmd(
        "kubectl",
        &[
            "rbaclog",
            "np-test-2",
            "--enable-debug",
            "--istioctl",
            "/nonexistent/istioctl",
        ],
    );
    let o = cmd.output().await.unwrap();
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("istioctl") && err.contains("not found") && err.contains("hint"),
        "{err}"
    );
    assert_eq!(env.rbac_level(&p2, "np-test-2").await, before);
    // Usage errors exit 2.
    let o = env.rbaclog(&["np-test-2", "--decision", "maybe"]).await;
    assert_eq!(o.code, 2, "{o:?}");
    let o = env.rbaclog(&["np-test-2", "-f", "--summary"]).await;
    assert_eq!(o.code, 2, "{o:?}");
    // A file that is not a log: a note with the count, exit 0.
    let f = env.c.path().join("not-a-log.txt");
    std::fs::write(&f, "hello\nworld\n").unwrap();
    let o = env.rbaclog(&["--file", &f.display().to_string()]).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stderr.contains("2 of 2 lines are in no known log layout")
            && o.stderr.contains("the first: hello"),
        "{o:?}"
    );
    assert!(!o.stderr.contains("enable one of"), "{o:?}");
}

/// An ALLOW policy that the walk-through's probe does not match: the denial says
/// `matched policy none`, and live rbaclog names the ALLOW policy as the candidate,
/// matches it with `--policy`, warns about an unknown `--policy`, resolves the
/// downstream to the probing pod and reads several namespaces given as positionals.
#[tokio::test(flavor = "multi_thread")]
async fn allow_miss_is_attributed_to_the_allow_policies_of_the_workload() {
    let env = Env::start(&[]).await;
    let policy = env.c.path().join("allow-only-admin.yaml");
    std::fs::write(
        &policy,
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: allow-only-admin\n  namespace: np-test-2\nspec:\n  action: ALLOW\n  rules:\n  - to:\n    - operation:\n        paths: [\"/admin-only\"]\n",
    )
    .unwrap();
    env.deny_and_probe_once("np-test-2", "svc-np-test-nginx-2", &policy)
        .await;

    let v = json(&env.rbaclog(&["np-test-2", "-o", "json"]).await);
    assert_eq!(v.len(), 1, "{v:#?}");
    let d = &v[0];
    assert_eq!(d["policy_id"], "none");
    assert_eq!(d["because"], "no ALLOW rule matched");
    assert_eq!(
        d["allow_policies"],
        serde_json::json!(["np-test-2/allow-only-admin"])
    );
    let p1 = env.pod("np-test-1", "np-test-nginx-1").await;
    // The sidecar's access log names the downstream address (the source pod's
    // IP, carried to the real Envoy): FROM resolves it to the pod.
    assert!(d["downstream"].is_string(), "{d:#}");
    assert_eq!(d["from"], format!("np-test-1/{p1}"), "{d:#}");

    // --policy names the ALLOW policy behind the miss.
    let o = env
        .rbaclog(&["np-test-2", "--policy", "allow-only-admin", "-o", "json"])
        .await;
    assert_eq!(json(&o).len(), 1, "{o:?}");
    assert!(!o.stderr.contains("warning"), "{o:?}");
    // An unknown name: nothing, and a warning saying so.
    let o = env
        .rbaclog(&["np-test-2", "--policy", "no-such-policy", "-o", "json"])
        .await;
    assert_eq!(json(&o).len(), 0, "{o:?}");
    assert!(
        o.stderr.contains("warning: --policy no-such-policy"),
        "{o:?}"
    );
    // Several namespaces as positionals, like -n repeated.
    let v = json(&env.rbaclog(&["np-test-1", "np-test-2", "-o", "json"]).await);
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_eq!(v[0]["namespace"], "np-test-2");
    // The table shows the candidates.
    let o = env.rbaclog(&["np-test-2"]).await;
    assert!(
        o.stdout
            .contains("none (allow: np-test-2/allow-only-admin)"),
        "{o:?}"
    );

    // The same log saved by real kubectl with --prefix and --timestamps: the
    // prefix names the pod, and the decision is the same one.
    let p2 = env.pod("np-test-2", "np-test-nginx-2").await;
    let saved = env
        .run(
            "kubectl",
            &[
                "logs",
                "-n",
                "np-test-2",
                &p2,
                "-c",
                "istio-proxy",
                "--prefix",
                "--timestamps",
            ],
        )
        .await;
    assert_eq!(saved.code, 0, "{saved:?}");
    assert!(
        saved
            .stdout
            .starts_with(&format!("[pod/{p2}/istio-proxy] ")),
        "{saved:?}"
    );
    let f = env.c.path().join("prefixed.log");
    std::fs::write(&f, &saved.stdout).unwrap();
    let v = json(
        &env.rbaclog(&["--file", &f.display().to_string(), "-o", "json"])
            .await,
    );
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_eq!(v[0]["pod"], p2.as_str());
    assert_eq!(v[0]["policy_id"], "none");
    assert_eq!(v[0]["because"], "no ALLOW rule matched");
}
