//! End-to-end tests of `kubectl authzcheck -f` / `--delete-f` (what would
//! apply to a pod once a change is applied) through the real kubectl against
//! meshsim serving the walk-through, with meshsim's istioctl stand-in on PATH:
//! rows and findings marked new / gone / changed / unchanged in the table and
//! in JSON, nothing marked without -f, and bad manifests rejected with one
//! line and exit 2 before the cluster is asked anything.

use crate::common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::sim::{built, link, path_without_istioctl, walkthrough};
use serde_json::Value;

/// The common handle with this file's helpers (istioctl stand-in only in DIR/bin).
struct Sim(common::sim::Sim);

impl Sim {
    fn start() -> Sim {
        let bins = built(&["kubectl-authzcheck", "meshsim", "meshsim-istioctl"]);
        let sim = Sim(common::sim::Sim::walkthrough().start());
        let d = sim.0.path().join("bin");
        std::fs::create_dir(&d).unwrap();
        link(
            &bins.join("kubectl-authzcheck"),
            &d.join("kubectl-authzcheck"),
        );
        link(&bins.join("meshsim-istioctl"), &d.join("istioctl"));
        sim
    }

    fn command(&self) -> Command {
        let mut paths = vec![self.0.path().join("bin")];
        paths.extend(path_without_istioctl());
        self.0.kubectl_cmd(&std::env::join_paths(paths).unwrap())
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    fn write(&self, name: &str, yaml: &str) -> String {
        let p = self.0.path().join(name);
        std::fs::write(&p, yaml).unwrap();
        p.to_string_lossy().into_owned()
    }

    fn authzcheck_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["authzcheck", "np-test-2", "deployment/np-test-nginx-2"];
        all.extend_from_slice(args);
        all.extend(["-o", "json"]);
        let out = self.kubectl(&all);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn deny_all_authz() -> String {
    policy("block-istio-ingress-np-test-2.yaml")
}

fn deny_all_netpol() -> String {
    policy("block-ingress-np-test-2.yaml")
}

fn policy(file: &str) -> String {
    let p: PathBuf = walkthrough().join("policies").join(file);
    p.to_string_lossy().into_owned()
}

/// The same AuthorizationPolicy as the walk-through's deny-all, edited: it
/// now only allows np-test-1.
const EDITED: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-all-ingress-using-authorizationpolicy
  namespace: np-test-2
spec:
  action: ALLOW
  rules:
  - from: [{source: {namespaces: ["np-test-1"]}}]
"#;

/// `change` of the row named `name` in `section`.
fn change_of<'a>(v: &'a Value, section: &str, name: &str) -> &'a Value {
    let row = v[section]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {section}: {v:#}"));
    &row["change"]
}

#[test]
fn rows_and_findings_are_marked_new_changed_unchanged_and_gone() {
    let sim = Sim::start();
    // Without -f nothing is marked.
    let plain = sim.authzcheck_json(&[]);
    assert!(plain.get("what_if").is_none(), "{plain:#}");
    assert!(
        !serde_json::to_string(&plain)
            .unwrap()
            .contains("\"change\""),
        "{plain:#}"
    );
    let table = sim.kubectl(&["authzcheck", "np-test-2", "deployment/np-test-nginx-2"]);
    assert!(!String::from_utf8_lossy(&table.stdout).contains("CHANGE"));

    // The deny-all AuthorizationPolicy is live; the change edits it and adds
    // a NetworkPolicy.
    let applied = sim.kubectl(&["apply", "-f", &deny_all_authz()]);
    assert!(applied.status.success(), "{:?}", applied);
    let edited = sim.write("edited.yaml", EDITED);
    // Both files in one run, as a directory would give them.
    let v = sim.authzcheck_json(&["-f", &edited, "-f", &deny_all_netpol()]);
    assert_eq!(
        change_of(
            &v,
            "network_policies",
            "deny-all-ingress-using-networkpolicy"
        ),
        "new"
    );
    let ap = "deny-all-ingress-using-authorizationpolicy";
    assert_eq!(change_of(&v, "authorization_policies", ap), "changed");
    let row = v["authorization_policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == ap)
        .unwrap();
    assert_eq!(row["action"], "ALLOW", "the row shows the overlay");
    assert!(row["loaded"].is_null(), "Envoy has not seen the overlay");
    let note = v["what_if"].as_str().unwrap();
    assert!(note.contains("describe the cluster as it is"), "{note}");
    // Every finding is marked; isolation is new, the pod's own facts unchanged.
    let findings = v["findings"].as_array().unwrap();
    assert!(findings.iter().all(|f| f["change"].is_string()), "{v:#}");
    let finding = |code: &str| {
        findings
            .iter()
            .find(|f| f["code"] == code)
            .map(|f| f["change"].as_str().unwrap().to_string())
    };
    assert_eq!(finding("probe-netpol").as_deref(), Some("new"));
    assert_eq!(finding("not-isolated").as_deref(), Some("gone"));

    // The table: a CHANGE column first, and the note under the pod line.
    let out = sim.kubectl(&[
        "authzcheck",
        "np-test-2",
        "deployment/np-test-nginx-2",
        "-f",
        &edited,
        "-f",
        &deny_all_netpol(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .starts_with("with -f/--delete-f"),
        "{text}"
    );
    let headers: Vec<&str> = text.lines().filter(|l| l.starts_with("CHANGE")).collect();
    assert_eq!(
        headers.len(),
        3,
        "NetworkPolicy, AuthorizationPolicy, findings: {text}"
    );
    let has_row = |words: &[&str]| {
        text.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() >= words.len() && cols[..words.len()] == *words
        })
    };
    assert!(
        has_row(&[
            "new",
            "ingress",
            "yes",
            "np-test-2/deny-all-ingress-using-networkpolicy"
        ]),
        "{text}"
    );
    assert!(
        has_row(&["changed", &format!("np-test-2/{ap}"), "ALLOW"]),
        "{text}"
    );

    // --delete-f: the live policy is gone.
    let v = sim.authzcheck_json(&["--delete-f", &deny_all_authz()]);
    assert_eq!(change_of(&v, "authorization_policies", ap), "gone");
    let v = sim.authzcheck_json(&["--delete-f", &deny_all_authz(), "-f", &deny_all_authz()]);
    assert_eq!(
        change_of(&v, "authorization_policies", ap),
        "gone",
        "deleting what -f adds: -f applies first, --delete-f then removes"
    );
    // A STRICT PeerAuthentication in the overlay: clients outside the mesh
    // (plain text) are cut from port 80, said as a new warning.
    let strict = sim.write(
        "strict.yaml",
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: strict, namespace: np-test-2}\nspec: {mtls: {mode: STRICT}}\n",
    );
    let v = sim.authzcheck_json(&["-f", &strict]);
    let mtls: Vec<&Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "mtls-change")
        .collect();
    assert_eq!(mtls.len(), 1, "{v:#}");
    assert_eq!(
        (&mtls[0]["severity"], &mtls[0]["change"]),
        (&Value::from("warning"), &Value::from("new"))
    );
    let msg = mtls[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("0.0.0.0-255.255.255.255[External] -> port 80")
            && msg.contains("rejected: plain text into STRICT"),
        "{msg}"
    );

    // Unchanged: the same manifest as the cluster holds.
    let v = sim.authzcheck_json(&["-f", &deny_all_authz()]);
    assert_eq!(change_of(&v, "authorization_policies", ap), "unchanged");
}

#[test]
fn bad_manifests_are_one_line_usage_errors() {
    let sim = Sim::start();
    let bad = sim.write("bad.yaml", "kind: [\n");
    let missing = sim.0.path().join("nope.yaml");
    let empty = sim.0.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for (arg, path) in [
        ("-f", bad.clone()),
        ("--delete-f", bad.clone()),
        ("-f", missing.to_string_lossy().into_owned()),
        ("-f", empty.to_string_lossy().into_owned()),
    ] {
        let out = sim.kubectl(&[
            "authzcheck",
            "np-test-2",
            "deployment/np-test-nginx-2",
            arg,
            &path,
        ]);
        assert_eq!(out.status.code(), Some(2), "{arg} {path}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains(&path), "{err}");
        assert!(out.stdout.is_empty());
    }
    // -f needs a pod: a config dump alone describes no cluster to change.
    let out = sim.kubectl(&["authzcheck", "--config-dump", &bad, "-f", &bad]);
    assert_eq!(out.status.code(), Some(2));
}
