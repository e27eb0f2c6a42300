//! Hostile input (issue 10, part 3), end to end:
//! - `npexec --path/--header/--url` values full of shell metacharacters reach
//!   the container's curl verbatim (exec argv is a vector, no shell): an
//!   in-process meshsim with a recording network keeps each request curl made;
//!   a fixed budget of generated values (deterministic, seeded); the argv
//!   meshsim recorded for each exec is checked byte for byte too, and so are
//!   odd-but-valid namespace and Service names, while invalid ones are
//!   refused (exit 2) before any exec;
//! - terminal control sequences in pod names' neighbours (annotations), log
//!   lines and istioctl output are escaped in tables and kept as data in JSON;
//!   end to end too: annotations, label values and HTTP bodies from meshsim
//!   and a hostile `istioctl` on PATH, through all three plugins;
//! - very long lines and invalid UTF-8 in logs (rbaclog --file);
//! - a 50 MB config dump through `authzcheck --config-dump`;
//! - a YAML bomb as a meshsim scenario ends (error or bounded), never expands.

use crate::common;
use crate::reliability;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use meshsim::traffic::{Container, NetOutcome, NetRequest, Network};

/// Answers 200 to every request and remembers it.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<NetRequest>>,
}

impl Network for Recorder {
    fn decide(&self, _from: &Container, request: &NetRequest) -> NetOutcome {
        if let Ok(mut s) = self.seen.lock() {
            s.push(request.clone());
        }
        NetOutcome::Http {
            after: Duration::from_millis(1),
            status: 200,
            headers: vec![],
            body: b"ok".to_vec(),
        }
    }
}

/// A small deterministic generator (xorshift): the case budget and values are
/// the same on every run, so a failure reproduces.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A value built from shell metacharacters, quotes, spaces and non-ASCII.
    fn hostile(&mut self, len: usize) -> String {
        const POOL: &[&str] = &[
            "$",
            "(",
            ")",
            "`",
            ";",
            "|",
            "&",
            "'",
            "\"",
            "\\",
            "*",
            "?",
            "~",
            "{",
            "}",
            "[",
            "]",
            "<",
            ">",
            "!",
            "#",
            "%",
            " ",
            "$(reboot)",
            "`id`",
            "${IFS}",
            "a",
            "Z",
            "9",
            "é",
            "日本",
            "-",
            "--",
            "=",
            ",",
            "%0a",
            "+",
        ];
        (0..len)
            .map(|_| POOL[(self.next() % POOL.len() as u64) as usize])
            .collect()
    }
}

const CASES: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_values_reach_the_container_verbatim() {
    let recorder = Arc::new(Recorder::default());
    let mut config = common::fast_config();
    config.scenarios = vec![reliability::walkthrough()];
    config.network = Some(recorder.clone());
    let cluster = common::Sim::in_process(config).await.unwrap();
    cluster
        .wait_ready_pod("np-test-1", "app=np-test-nginx-1")
        .await
        .unwrap();
    reliability::bin_dir();
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    let mut cases = Vec::new();
    for i in 0..CASES {
        let len = 1 + (g.next() % 12) as usize;
        let value = g.hostile(len);
        // Each case carries a unique marker so its request can be found.
        let marker = format!("m{i}x");
        let (args, want_path, want_header): (Vec<String>, Option<String>, Option<String>) = match i
            % 3
        {
            0 => {
                let path = format!("/{marker}/{value}");
                (vec!["--path".into(), path.clone()], Some(path), None)
            }
            1 => {
                let header = format!("X-Probe: {marker} {value}");
                (
                    vec![
                        "-H".into(),
                        header.clone(),
                        "--path".into(),
                        format!("/{marker}"),
                    ],
                    Some(format!("/{marker}")),
                    Some(format!("{marker} {value}")),
                )
            }
            _ => {
                let path = format!("/{marker}/{value}");
                (
                    vec![
                        "--url".into(),
                        format!("http://svc-np-test-nginx-2.np-test-2.svc.cluster.local:80{path}"),
                    ],
                    Some(path),
                    None,
                )
            }
        };
        cases.push((marker, value, args, want_path, want_header));
    }
    let runs = cases.iter().map(|(_, _, args, _, _)| {
        let mut cmd = cluster.plugin_cmd(
            "kubectl-npexec",
            &["np-test-1", "np-test-2", "--timeout", "2s"],
        );
        cmd.args(args);
        async move { reliability::finish(cmd.spawn().unwrap()).await }
    });
    let outs = join_all(runs).await;
    let seen = recorder.seen.lock().unwrap().clone();
    let mut failures = Vec::new();
    for ((marker, value, args, want_path, want_header), out) in cases.iter().zip(&outs) {
        // A value the plugin refuses is a usage error (exit 2), never a mangled probe.
        if out.code == 2 {
            continue;
        }
        let hits: Vec<&NetRequest> = seen
            .iter()
            .filter(|r| {
                r.path.contains(marker.as_str())
                    || r.headers.iter().any(|(_, v)| v.contains(marker.as_str()))
            })
            .collect();
        if hits.is_empty() {
            failures.push(format!("{args:?} ({value:?}): no request arrived; {out:?}"));
            continue;
        }
        for r in hits {
            // curl, like every HTTP client, does not send a URL's #fragment:
            // the argv held the value verbatim, the request carries the part before '#'.
            let want_path = want_path
                .as_ref()
                .map(|p| p.split('#').next().unwrap_or_default().to_string());
            if let Some(p) = &want_path
                && &r.path != p
            {
                failures.push(format!("{args:?}: path {:?} instead of {p:?}", r.path));
            }
            if let Some(h) = want_header
                && !r
                    .headers
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case("x-probe") && v == h)
            {
                failures.push(format!("{args:?}: headers {:?} lack {h:?}", r.headers));
            }
        }
    }
    // The argv meshsim's container runtime received, byte for byte: the URL
    // is the last argument, each header follows its own -H.
    let execs = cluster.handle().cluster.exec_log();
    let mut checked = 0;
    for ((marker, value, args, want_path, want_header), out) in cases.iter().zip(&outs) {
        if out.code == 2 {
            continue;
        }
        let Some(rec) = execs.iter().find(|r| {
            r.argv.first().map(String::as_str) == Some("curl")
                && r.argv.iter().any(|a| a.contains(marker.as_str()))
        }) else {
            failures.push(format!("{args:?} ({value:?}): no curl exec recorded"));
            continue;
        };
        checked += 1;
        if rec.namespace != "np-test-1" {
            failures.push(format!("{args:?}: exec ran in {:?}", rec.namespace));
        }
        let want_url = if args[0] == "--url" {
            args[1].clone()
        } else {
            format!(
                "http://svc-np-test-nginx-2.np-test-2.svc.cluster.local:80{}",
                want_path.as_deref().unwrap_or_default()
            )
        };
        if rec.argv.last() != Some(&want_url) {
            failures.push(format!(
                "{args:?}: argv URL {:?} instead of {want_url:?}",
                rec.argv.last()
            ));
        }
        if want_header.is_some() {
            let want = vec!["-H".to_string(), args[1].clone()];
            if !rec.argv.windows(2).any(|w| w == want.as_slice()) {
                failures.push(format!("{args:?}: argv {:?} lacks {want:?}", rec.argv));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {CASES} hostile values were not passed verbatim:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        checked > 0,
        "every generated value was refused: nothing checked"
    );
}

/// Namespace and Service names that are valid DNS labels but odd (one
/// character, leading digit, double dashes, 63 characters) reach curl's argv
/// exactly as `SERVICE.NAMESPACE.svc.cluster.local`; invalid namespace
/// values are refused with exit 2 before any exec, and so are Service names
/// no Service can have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_namespace_and_service_names_reach_curl_verbatim() {
    let recorder = Arc::new(Recorder::default());
    let mut config = common::fast_config();
    config.scenarios = vec![reliability::walkthrough()];
    config.network = Some(recorder.clone());
    let cluster = common::Sim::in_process(config).await.unwrap();
    cluster
        .wait_ready_pod("np-test-1", "app=np-test-nginx-1")
        .await
        .unwrap();
    let long_ns = format!("n{}9", "-0".repeat(30) + "x");
    let long_svc = format!("s{}", "0-".repeat(30) + "z9");
    assert_eq!(long_ns.len(), 63);
    assert_eq!(long_svc.len(), 63);
    let pairs: Vec<(String, String)> = vec![
        ("0".into(), "a".into()),
        ("9-9".into(), "b--c".into()),
        ("a--b".into(), "x0-0".into()),
        (long_ns.clone(), long_svc.clone()),
    ];
    // Services without a selector: npexec probes them (a selector matching no
    // pod would be `no-endpoints` before any exec).
    let mut yaml = String::new();
    for (ns, svc) in &pairs {
        yaml.push_str(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: \"{ns}\"\n---\n\
             apiVersion: v1\nkind: Service\nmetadata:\n  name: \"{svc}\"\n  namespace: \"{ns}\"\n\
             spec:\n  ports:\n  - port: 8080\n    name: http\n---\n"
        ));
    }
    let applied = cluster
        .kubectl_stdin(&["apply", "-f", "-"], Some(yaml.as_bytes()))
        .await
        .unwrap();
    assert_eq!(applied.code, 0, "{applied:?}");
    reliability::bin_dir();
    let npexec = |args: Vec<String>| {
        let mut cmd = cluster.plugin_cmd("kubectl-npexec", &[]);
        cmd.args(&args);
        async move { (args, reliability::finish(cmd.spawn().unwrap()).await) }
    };
    let outs = join_all(pairs.iter().map(|(ns, svc)| {
        npexec(vec![
            "np-test-1".into(),
            ns.clone(),
            "--service".into(),
            svc.clone(),
            "--timeout".into(),
            "2s".into(),
        ])
    }))
    .await;
    let execs = cluster.handle().cluster.exec_log();
    let mut failures = Vec::new();
    for ((ns, svc), (args, out)) in pairs.iter().zip(&outs) {
        if out.code != 0 {
            failures.push(format!("{args:?}: exit {} ({out:?})", out.code));
        }
        let want = format!("http://{svc}.{ns}.svc.cluster.local:8080/");
        let curl: Vec<_> = execs
            .iter()
            .filter(|r| r.argv.first().map(String::as_str) == Some("curl"))
            .filter(|r| r.argv.last() == Some(&want))
            .collect();
        if curl.is_empty() {
            failures.push(format!("{args:?}: no curl argv ends with {want:?}"));
        }
        for r in curl {
            if r.namespace != "np-test-1" {
                failures.push(format!("{args:?}: exec ran in {:?}", r.namespace));
            }
        }
        let seen = recorder.seen.lock().unwrap();
        if !seen
            .iter()
            .any(|r| r.host == format!("{svc}.{ns}.svc.cluster.local") && r.port == 8080)
        {
            failures.push(format!("{args:?}: curl never asked for {svc}.{ns}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Invalid values: a usage error (exit 2) and no exec at all.
    let before = cluster.handle().cluster.exec_log().len();
    let invalid_ns = [
        "Np-Test-2",
        "np_test_2",
        "np-",
        "np.test",
        "np;id",
        "$(id)",
        "np test",
        "np\u{1b}[2J",
        "",
    ];
    let mut runs: Vec<Vec<String>> = invalid_ns
        .iter()
        .flat_map(|bad| {
            [
                vec!["np-test-1".to_string(), bad.to_string()],
                vec![bad.to_string(), "np-test-2".to_string()],
            ]
        })
        .collect();
    runs.push(vec!["np-test-1".into(), format!("{long_ns}0")]);
    for bad_svc in ["svc;id", "$(reboot)", "Svc", "svc name", "../x", "a\u{7}b"] {
        runs.push(vec![
            "np-test-1".into(),
            "np-test-2".into(),
            "--service".into(),
            bad_svc.into(),
        ]);
    }
    let outs = join_all(runs.into_iter().map(|mut a| {
        a.extend(["--timeout".to_string(), "2s".to_string()]);
        npexec(a)
    }))
    .await;
    let mut failures = Vec::new();
    for (args, out) in &outs {
        if out.code != 2 {
            failures.push(format!(
                "{args:?}: exit {} instead of 2 ({out:?})",
                out.code
            ));
        } else if out.stderr_lines().len() != 1 || !out.stderr.starts_with("error: ") {
            failures.push(format!("{args:?}: not one error line: {:?}", out.stderr));
        }
    }
    let after = cluster.handle().cluster.exec_log();
    if after.len() != before {
        failures.push(format!(
            "invalid values led to exec: {:?}",
            &after[before..]
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// rbaclog --file with terminal escapes, a 1 MiB line and invalid UTF-8:
/// the table escapes control characters, JSON keeps them as data, nothing panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_log_lines_are_escaped_in_tables_and_kept_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hostile.log");
    let evil_ns = "np\x1b]0;pwned\x07-test\x1b[2J";
    let mut text = Vec::new();
    text.extend_from_slice(
        format!(
            "2025-07-06T19:33:00.654348Z\tdebug\tenvoy rbac external/envoy/source/extensions/filters/http/rbac/rbac_filter.cc:222\tenforced denied, matched policy ns[{evil_ns}]-policy[deny\x1b[31mall]-rule[0]\tthread=23\n"
        )
        .as_bytes(),
    );
    text.extend_from_slice(b"2025-07-06T19:33:01.000000Z\tdebug\tenvoy rbac ");
    text.extend(std::iter::repeat_n(b'A', 1 << 20));
    text.push(b'\n');
    text.extend_from_slice(b"2025-07-06T19:33:02.000000Z\tdebug\tenvoy rbac \xff\xfe\xc3 enforced denied, matched policy ns[a\xff]-policy[b]-rule[0]\n");
    std::fs::write(&log, &text).unwrap();
    let bins = reliability::bin_dir();
    let run = |args: Vec<&str>| {
        let mut cmd = tokio::process::Command::new(bins.join("kubectl-rbaclog"));
        cmd.args(args)
            .env("HOME", dir.path())
            .env("NO_COLOR", "1")
            .env("KUBECONFIG", dir.path().join("none"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        async move { reliability::finish(cmd.spawn().unwrap()).await }
    };
    let path = log.to_str().unwrap();
    let (table, json) = futures::join!(
        run(vec!["--file", path, "-o", "wide"]),
        run(vec!["--file", path, "-o", "json"])
    );
    assert!(matches!(table.code, 0 | 1), "{table:?}");
    assert!(
        !table.stdout.contains('\x1b') && !table.stdout.contains('\x07'),
        "raw escape in the table: {:?}",
        table.stdout
    );
    assert!(
        table.stdout.contains("np-test")
            || table.stdout.contains("\\u{1b}")
            || table.stdout.contains("\\x1b")
            || table.stdout.contains("\\e"),
        "{:?}",
        table.stdout
    );
    assert!(!table.stderr.contains("panicked"), "{table:?}");
    assert!(matches!(json.code, 0 | 1), "{json:?}");
    let v: serde_json::Value = serde_json::from_str(&json.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", json.stdout));
    assert!(
        v.to_string().contains("\\u001b]0;pwned"),
        "JSON lost the control characters as data: {v}"
    );
}

/// authzcheck --config-dump on a 50 MB dump: ends with a report or a one-line error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_megabyte_config_dump() {
    let dir = tempfile::tempdir().unwrap();
    let seed = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|a| a.join("tests/fixtures/istio/authz-check/configdump-1.25.json"))
            .find(|p| p.exists())
            .expect("configdump fixture"),
    )
    .unwrap();
    // Pad with a large extra config entry of filler (valid JSON, 50 MB).
    let mut v: serde_json::Value = serde_json::from_slice(&seed).unwrap();
    let filler = "x".repeat(50 << 20);
    v["configs"].as_array_mut().unwrap().push(
        serde_json::json!({"@type": "type.googleapis.com/meshdebug.Filler", "filler": filler}),
    );
    let path = dir.path().join("dump.json");
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    drop(v);
    let mut cmd = tokio::process::Command::new(reliability::bin_dir().join("kubectl-authzcheck"));
    cmd.args(["--config-dump", path.to_str().unwrap()])
        .env("HOME", dir.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = reliability::finish(cmd.spawn().unwrap()).await;
    std::fs::remove_file(&path).unwrap();
    assert!(out.code != -2, "did not end: {out:?}");
    if out.code == 0 || out.code == 1 {
        assert!(!out.stdout.is_empty(), "{out:?}");
    } else {
        assert_eq!(out.stderr_lines().len(), 1, "{out:?}");
        assert!(out.stderr.starts_with("error: "), "{out:?}");
    }
    assert!(!out.stderr.contains("panicked"), "{out:?}");
}

/// A billion-laughs scenario: meshsim must fail fast or load a bounded result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_bomb_scenario_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut bomb = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb, namespace: default}\ndata:\n  a0: &a0 \"lol\"\n",
    );
    for i in 1..10 {
        let prev = format!("*a{}", i - 1);
        bomb.push_str(&format!(
            "  a{i}: &a{i} [{}]\n",
            std::iter::repeat_n(prev.as_str(), 9)
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    let path = dir.path().join("bomb.yaml");
    std::fs::write(&path, bomb).unwrap();
    let mut cmd = tokio::process::Command::new(reliability::bin_dir().join("meshsim"));
    cmd.args([
        "serve",
        "--scenario",
        path.to_str().unwrap(),
        "--kubeconfig-out",
    ])
    .arg(dir.path().join("kc"))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let child = cmd.spawn().unwrap();
    // Either it refuses the scenario (exits with an error) or it serves: then
    // the kubeconfig appears and the process is still bounded in memory.
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await;
    match out {
        Ok(Ok(o)) => {
            assert!(!o.status.success(), "meshsim accepted and exited?");
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!err.contains("panicked"), "{err}");
            assert!(err.lines().filter(|l| !l.is_empty()).count() <= 2, "{err}");
        }
        Ok(Err(e)) => panic!("{e}"),
        Err(_) => {
            // Still running after 20 s: it must be serving, not expanding.
            assert!(
                dir.path().join("kc").exists(),
                "meshsim neither refused nor served the bomb"
            );
        }
    }
}

/// Control sequences end to end: a walk-through whose np-test-2 pods carry
/// annotations and label values with terminal escapes, answer HTTP with a
/// body full of them (`meshsim.dev/response`, shown in npexec's DETAIL), and
/// an `istioctl` on PATH whose `x authz check` output carries them too. No
/// plugin's table holds a raw C0 control other than `\n`/`\t`; JSON keeps
/// the body and istioctl's text as data (escaped JSON strings).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_sequences_from_the_cluster_are_escaped_end_to_end() {
    use std::os::unix::fs::PermissionsExt;
    let scen = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(reliability::walkthrough()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), scen.path().join(entry.file_name())).unwrap();
        }
    }
    let np2 = scen.path().join("istio-np-2.yaml");
    let text = std::fs::read_to_string(&np2).unwrap();
    let anchor = "      annotations:\n";
    assert!(text.contains(anchor), "walk-through layout changed");
    let text = text.replacen(
        anchor,
        "      annotations:\n        \"meshsim.dev/response\": \"body \\e]0;pwned\\a \\e[2J\\rend\"\n        \"evil\": \"\\e]0;title\\a\"\n",
        1,
    );
    let anchor = "        app: np-test-nginx-2\n    spec:";
    assert!(text.contains(anchor), "walk-through layout changed");
    let text = text.replacen(
        anchor,
        "        app: np-test-nginx-2\n        evil: \"a\\e[31mb\"\n    spec:",
        1,
    );
    std::fs::write(&np2, text).unwrap();

    let sim = reliability::Sim::case_scenarios(&[scen.path().to_path_buf()], &[], 2).await;
    // istioctl: `x authz check` prints hostile text, the rest is the stand-in.
    let tools = sim.path().join("tools");
    std::fs::remove_file(tools.join("istioctl")).unwrap();
    std::fs::write(
        tools.join("istioctl"),
        "#!/bin/sh\nif [ \"$1 $2 $3\" = \"x authz check\" ]; then\n  printf 'ACTION   AuthorizationPolicy   RULES\\n'\n  printf 'DENY     evil\\033]0;pwned\\007.np-test-2   1\\n'\n  exit 0\nfi\nexec meshsim-istioctl \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        tools.join("istioctl"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();

    let runs: [(&str, Vec<&str>, bool); 6] = [
        ("kubectl-npexec", vec!["np-test-1", "np-test-2"], false),
        (
            "kubectl-npexec",
            vec!["np-test-1", "np-test-2", "-o", "json"],
            true,
        ),
        (
            "kubectl-authzcheck",
            vec!["np-test-2", "deployment/np-test-nginx-2", "-o", "wide"],
            false,
        ),
        (
            "kubectl-authzcheck",
            vec!["np-test-2", "deployment/np-test-nginx-2", "-o", "json"],
            true,
        ),
        ("kubectl-rbaclog", vec!["np-test-2", "-o", "wide"], false),
        ("kubectl-rbaclog", vec!["np-test-2", "-o", "json"], true),
    ];
    let outs = join_all(runs.iter().map(|(p, a, _)| sim.run_bounded(p, a))).await;
    let mut failures = Vec::new();
    for ((plugin, args, json), out) in runs.iter().zip(&outs) {
        let what = format!("{plugin} {}", args.join(" "));
        if !matches!(out.code, 0 | 1) {
            failures.push(format!("{what}: exit {}: {}", out.code, out.stderr));
            continue;
        }
        for (stream, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            if let Some(c) = text
                .chars()
                .find(|c| c.is_control() && *c != '\n' && *c != '\t')
            {
                failures.push(format!("{what}: raw control {c:?} on {stream}: {text:?}"));
            }
        }
        if *json && let Err(e) = serde_json::from_str::<serde_json::Value>(&out.stdout) {
            failures.push(format!("{what}: not JSON ({e}): {}", out.stdout));
        }
    }
    // The hostile text did reach the output: escaped in tables, data in JSON.
    let has = |i: usize, s: &str| outs[i].stdout.contains(s);
    for (i, needle) in [
        (1, "body \\u001b]0;pwned\\u0007 \\u001b[2J\\rend"),
        (3, "np-test-2/evil\\u001b]0;pwned\\u0007"),
    ] {
        if !has(i, needle) {
            failures.push(format!(
                "{} {}: JSON lacks {needle}: {}",
                runs[i].0,
                runs[i].1.join(" "),
                outs[i].stdout
            ));
        }
    }
    for i in [0, 2] {
        if !has(i, "pwned") {
            failures.push(format!(
                "{} {}: the hostile text is not shown (escaped): {}",
                runs[i].0,
                runs[i].1.join(" "),
                outs[i].stdout
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
