//! kubectl's flag forms in every plugin (issue 17), through the real kubectl
//! against `meshsim serve`: `-v=N`/`-v N`, and each `-o` format checked by
//! parsing it: YAML parses to the same data as the JSON; `-o jsonpath=` gives
//! what kubectl's JSONPath gives (the template engine is also compared with
//! kubectl's own `-o jsonpath` on the same objects); `-o custom-columns` has
//! one row per JSON row; `-o name` names the pods (authzcheck) or is refused.

use crate::common;

use common::sim::walkthrough;
use kubeplugin::template::Template;
use serde_json::Value;

use common::sim::Sim;

impl Sim {
    fn stdout_of(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            matches!(o.status.code(), Some(0 | 1)),
            "{args:?}: exit {:?}: {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
}

/// Drops what changes between two runs (ages, times, durations), so two runs'
/// outputs can be compared as data.
fn stable(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "age_seconds" | "time" | "duration_ms" | "elapsed_ms" | "started" | "at"
                    )
                })
                .map(|(k, v)| (k.clone(), stable(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(stable).collect()),
        other => other.clone(),
    }
}

/// One plugin's command and a jsonpath over its JSON with the expected result
/// computed from the JSON by hand (kubectl's semantics: strings bare, several
/// results separated by one space, `{range}` once per element).
fn check_formats(sim: &Sim, args: &[&str], row_key: &str) {
    let with = |extra: &[&str]| {
        let mut v = args.to_vec();
        v.extend_from_slice(extra);
        sim.stdout_of(&v)
    };
    let json: Value = serde_json::from_str(&with(&["-o", "json"])).unwrap();
    // YAML: the same data.
    let yaml: Value = serde_yaml_ng::from_str(&with(&["-o", "yaml"])).unwrap();
    assert_eq!(stable(&yaml), stable(&json), "{args:?}");
    // The rows: an array, or one object.
    let rows: Vec<Value> = match &json {
        Value::Array(a) => a.clone(),
        o => vec![o.clone()],
    };
    assert!(!rows.is_empty(), "{args:?}: no rows");
    let first_key = |r: &Value| -> String {
        let mut v = r;
        for k in row_key.split('.') {
            v = &v[k];
        }
        match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    };
    let (prefix, range) = if json.is_array() {
        ("[*]", "[*]")
    } else {
        ("", "@")
    };
    let path = format!("{{{prefix}.{row_key}}}");
    let got = with(&["-o", &format!("jsonpath={path}")]);
    let want: Vec<String> = rows.iter().map(first_key).collect();
    assert_eq!(got, want.join(" "), "{args:?} {path}");
    let tpl = format!("{{range {range}}}{{.{row_key}}}{{\"\\n\"}}{{end}}");
    let got = with(&["-o", &format!("jsonpath={tpl}")]);
    let want: String = rows.iter().map(|r| format!("{}\n", first_key(r))).collect();
    assert_eq!(got, want, "{args:?} {tpl}");
    // custom-columns: a header and one row per JSON row; --no-headers drops the header.
    let spec = format!("KEY:.{row_key},MISSING:.no.such.field");
    let table = with(&["-o", &format!("custom-columns={spec}")]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), rows.len() + 1, "{table}");
    assert!(
        lines[0].starts_with("KEY") && lines[0].contains("MISSING"),
        "{table}"
    );
    for (line, row) in lines[1..].iter().zip(&rows) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells, [first_key(row).as_str(), "<none>"], "{table}");
    }
    let table = with(&["-o", &format!("custom-columns={spec}"), "--no-headers"]);
    assert_eq!(table.lines().count(), rows.len(), "{table}");
}

#[test]
fn every_output_format_in_every_plugin() {
    let sim = Sim::walkthrough().istioctl().start();
    check_formats(
        &sim,
        &["authzcheck", "np-test-2", "deployment/np-test-nginx-2"],
        "pod.name",
    );
    check_formats(&sim, &["authzcheck", "np-test-2"], "pod.name");
    check_formats(&sim, &["npexec", "np-test-1", "np-test-2"], "verdict");
    // rbaclog: a saved log (no cluster).
    let log = common::repo_root().join("tests/fixtures/envoy-logs/istio-proxy-samples.log");
    let log = log.to_str().unwrap().to_string();
    check_formats(
        &sim,
        &["rbaclog", "--file", &log, "--decision", "all"],
        "policy",
    );

    // -o name: authzcheck names pods; the others refuse with a usage error.
    let names = sim.stdout_of(&["authzcheck", "np-test-2", "-o", "name"]);
    let pods = sim.stdout_of(&["get", "pods", "-n", "np-test-2", "-o", "name"]);
    assert_eq!(names, pods);
    for args in [
        &["npexec", "np-test-1", "np-test-2", "-o", "name"][..],
        &["rbaclog", "--file", &log, "-o", "name"],
    ] {
        let o = sim.run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("-o name does not apply"));
    }
    // A bad template is a one-line usage error.
    let o = sim.run(&["authzcheck", "np-test-2", "-o", "jsonpath={.pod"]);
    assert_eq!(o.status.code(), Some(2));
}

/// The template engine against kubectl's own `-o jsonpath` over the same objects.
#[test]
fn templates_match_kubectl_jsonpath() {
    let sim = Sim::walkthrough().istioctl().start();
    let json: Value =
        serde_json::from_str(&sim.stdout_of(&["get", "pods,svc", "-A", "-o", "json"])).unwrap();
    for t in [
        "{.kind}",
        "{.items[*].metadata.name}",
        "{.items[0].metadata.labels}",
        "{range .items[*]}{.metadata.namespace}/{.metadata.name}{\"\\n\"}{end}",
        "{.items[?(@.kind==\"Service\")].metadata.name}",
        "{..containerPort}",
        "names: {.items[*].metadata.name} end",
    ] {
        let kubectl = sim.stdout_of(&["get", "pods,svc", "-A", "-o", &format!("jsonpath={t}")]);
        let ours = Template::parse(t).unwrap().render(&json).unwrap();
        assert_eq!(ours, kubectl, "{t}");
    }
}

/// kubectl's `-v=N` and `-v N` in each plugin: level 6 logs at debug.
#[test]
fn verbosity_in_kubectl_forms() {
    let sim = Sim::walkthrough().istioctl().start();
    for plugin in [
        &["authzcheck", "np-test-2", "deployment/np-test-nginx-2"][..],
        &["npexec", "np-test-1", "np-test-2"],
        &["rbaclog", "np-test-2"],
    ] {
        for v in [&["-v=6"][..], &["-v", "6"], &["--v=6"], &["-vv"]] {
            let mut args = plugin.to_vec();
            args.extend_from_slice(v);
            let o = sim.run(&args);
            assert!(
                matches!(o.status.code(), Some(0 | 1)),
                "{args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("DEBUG"), "{args:?}: no debug log: {err}");
        }
        let mut args = plugin.to_vec();
        args.push("-v=0");
        let o = sim.run(&args);
        assert!(
            !String::from_utf8_lossy(&o.stderr).contains("DEBUG"),
            "{args:?}"
        );
    }
}

/// Every escape sequence in `s` is a full SGR with parameters (`ESC[31m`),
/// never a bare reset (`ESC[m`) left behind by a colour that was dropped.
fn no_bare_escape(s: &str, what: &str) {
    assert!(!s.contains("\x1b[m"), "{what}: bare ESC[m in {s:?}");
}

/// Colour, `--no-headers` and error lines, through kubectl.
#[test]
fn colours_headers_and_one_line_errors() {
    let sim = Sim::walkthrough().istioctl().start();
    let policy = walkthrough()
        .join("policies")
        .join("block-istio-ingress-np-test-2.yaml");
    sim.stdout_of(&["apply", "-f", policy.to_str().unwrap()]);
    let log = common::repo_root().join("tests/fixtures/envoy-logs/istio-proxy-samples.log");
    let log = log.to_str().unwrap().to_string();
    let runs: [(&[&str], bool); 3] = [
        (&["npexec", "np-test-1", "np-test-2"], true),
        (
            &["authzcheck", "np-test-2", "deployment/np-test-nginx-2"],
            true,
        ),
        (&["rbaclog", "--file", &log, "--decision", "all"], false),
    ];
    for (args, toned) in runs {
        // NO_COLOR with --color always: the flag wins (no-color.org: a flag
        // overrides the variable), with whole colour sequences.
        let mut a = args.to_vec();
        a.extend(["--color", "always"]);
        let out = sim.stdout_of(&a);
        no_bare_escape(&out, &format!("{a:?}"));
        if toned {
            assert!(out.contains("\x1b[38;5;"), "{a:?}: no colour: {out:?}");
        }
        // NO_COLOR alone (auto), and --color never: no escape at all.
        let out = sim.stdout_of(args);
        assert!(!out.contains('\x1b'), "{args:?}: {out:?}");
        let mut a = args.to_vec();
        a.extend(["--color", "never"]);
        let out = sim.cmd().env_remove("NO_COLOR").args(&a).output().unwrap();
        assert!(!out.stdout.contains(&0x1b), "{a:?}");
    }

    // --no-headers: refused for the matrix table (its headers are the data),
    // valid for every other npexec mode.
    let o = sim.run(&[
        "npexec",
        "--matrix",
        "np-test-1",
        "np-test-2",
        "--no-headers",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("--no-headers does not apply"), "{e}");
    let with = sim.stdout_of(&["npexec", "--matrix", "np-test-1", "np-test-2", "-o", "wide"]);
    let without = sim.stdout_of(&[
        "npexec",
        "--matrix",
        "np-test-1",
        "np-test-2",
        "-o",
        "wide",
        "--no-headers",
    ]);
    assert_eq!(without.lines().count() + 1, with.lines().count());
    assert!(with.lines().next().unwrap().starts_with("FROM"));
    assert!(!without.starts_with("FROM"));

    // A kubeconfig that does not parse: one line, no literal \n.
    let bad = sim.path().join("bad-kubeconfig");
    std::fs::write(&bad, "apiVersion: v1\nclusters: [\n  - : x\n").unwrap();
    for args in [
        &["npexec", "np-test-1", "np-test-2"][..],
        &["authzcheck", "np-test-2"],
        &["rbaclog", "np-test-2"],
    ] {
        let plugin = args[0];
        let o = sim
            .cmd()
            .env("KUBECONFIG", &bad)
            .args(args)
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(e.lines().count(), 1, "{plugin}: {e}");
        assert!(
            e.starts_with("error: cannot read kubeconfig"),
            "{plugin}: {e}"
        );
        assert!(!e.contains("\\n"), "{plugin}: literal \\n in {e}");
    }
}
