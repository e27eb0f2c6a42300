//! A TCP probe from a pod with a sidecar, through the real kubectl against
//! meshsim: the source sidecar accepts every connection, so npexec reads its
//! outbound cluster counters (`pilot-agent request GET stats?filter=...`)
//! before and after the probe. A NetworkPolicy drop is `blocked-network`
//! well below Istio's 10 s connect timeout, an open connection stays
//! `allowed`, a network RBAC DENY stays `denied-rbac`, and a sidecar whose
//! counters cannot be read (no pilot-agent) keeps the old answer and its
//! `--timeout 11` hint, as does one where exec into `istio-proxy` is
//! forbidden. BusyBox wget (an HTTP request on the TCP port) gets the same
//! verdicts from the same counters.

use crate::common;

use std::process::Output;

use common::repo_root;
use common::sim::built;
use serde_json::Value;

struct Sim(common::Sim);

fn fixture() -> std::path::PathBuf {
    repo_root().join("tests/fixtures/npexec-tcp-sidecar")
}

const CLUSTER: &str = "outbound|6379||redis.ts-dst.svc.cluster.local";

impl Sim {
    fn start() -> Sim {
        Self::start_with(&["--time-scale", "0.05"])
    }

    /// With meshsim `serve` flags (replacing the default `--time-scale 0.05`).
    fn start_with(flags: &[&str]) -> Sim {
        built(&["kubectl-npexec", "meshsim"]);
        Sim(common::Sim::builder()
            .scenario(fixture().join("scenario.yaml"))
            .flags(flags)
            .pods(4)
            .start())
    }

    fn npexec(&self, args: &[&str]) -> Output {
        self.0.run(&[&["npexec"], args].concat())
    }

    fn kubectl(&self, verb: &str, policy: &str) {
        let path = fixture().join("policies").join(policy);
        let out = self.0.run(&[verb, "-f", path.to_str().unwrap()]);
        assert!(out.status.success(), "{}", err(&out));
    }

    /// `npexec FROM ts-dst --service redis --port tcp-redis ARGS -o json`: the one probe.
    fn probe(&self, from: &str, args: &[&str]) -> Value {
        let mut v = vec![from, "ts-dst", "--service", "redis", "--port", "tcp-redis"];
        v.extend(args);
        v.extend(["-o", "json"]);
        let out = self.npexec(&v);
        let json: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{v:?}: not JSON ({e}): {}", err(&out)));
        let probes = json.as_array().cloned().unwrap_or_default();
        assert_eq!(probes.len(), 1, "{v:?}: {json}");
        probes[0].clone()
    }

    /// Waits (with `--expect --wait`) until the probe from `from` gives `verdict`.
    fn wait_for(&self, from: &str, verdict: &str) {
        let args = [
            from,
            "ts-dst",
            "--service",
            "redis",
            "--port",
            "tcp-redis",
            "--expect",
            verdict,
            "--wait",
            "20s",
        ];
        let out = self.npexec(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", err(&out));
    }
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn detail(p: &Value) -> &str {
    p["detail"].as_str().unwrap_or("")
}

/// after - before of one counter in the probe's `sidecar_stats`.
fn moved(p: &Value, counter: &str) -> i64 {
    let s = &p["sidecar_stats"];
    let at = |k: &str| {
        s[k][counter]
            .as_i64()
            .unwrap_or_else(|| panic!("{k}.{counter}: {p}"))
    };
    at("after") - at("before")
}

#[test]
fn sidecar_counters_tell_a_drop_from_an_open_connection() {
    let sim = Sim::start();

    // Open connection: the probe's 2 bytes were forwarded upstream.
    let p = sim.probe("ts-client", &["--timeout", "3s"]);
    assert_eq!(p["verdict"], "allowed", "{p}");
    assert_eq!(p["sidecar_stats"]["cluster"], CLUSTER, "{p}");
    assert_eq!(moved(&p, "upstream_cx_total"), 1, "{p}");
    assert_eq!(moved(&p, "upstream_cx_tx_bytes_total"), 2, "{p}");
    assert!(!detail(&p).contains("--timeout 11"), "{p}");
    // BusyBox wget has no TCP mode: its HTTP request went upstream too.
    let w = sim.probe("ts-wget", &["--timeout", "3s"]);
    assert_eq!(w["verdict"], "allowed", "{w}");
    assert_eq!(w["from"]["tool"], "wget (busybox)", "{w}");
    assert_eq!(moved(&w, "upstream_cx_total"), 1, "{w}");
    assert!(moved(&w, "upstream_cx_tx_bytes_total") > 0, "{w}");
    // No pilot-agent in istio-proxy: unread, the old answer and its hint.
    let p = sim.probe("ts-noagent", &["--timeout", "3s"]);
    assert_eq!(p["verdict"], "allowed", "{p}");
    assert!(detail(&p).contains("--timeout 11"), "{p}");
    let why = p["sidecar_stats"]["error"].as_str().unwrap_or("");
    assert!(why.contains("pilot-agent"), "{p}");

    // A network RBAC DENY closes the connection after it was forwarded.
    sim.kubectl("apply", "deny-tcp.yaml");
    sim.wait_for("ts-client", "denied-rbac");
    let p = sim.probe("ts-client", &[]);
    assert_eq!(p["verdict"], "denied-rbac", "{p}");
    assert!(detail(&p).contains("RBAC denial"), "{p}");
    sim.kubectl("delete", "deny-tcp.yaml");
    sim.wait_for("ts-client", "allowed");

    // A NetworkPolicy drop: the sidecar's connect never completes, seen
    // with a 3 s probe (below the 10 s connect timeout).
    sim.kubectl("apply", "drop-all.yaml");
    sim.wait_for("ts-client", "blocked-network");
    let p = sim.probe("ts-client", &["--timeout", "3s"]);
    assert_eq!(p["verdict"], "blocked-network", "{p}");
    assert_eq!(p["sidecar_stats"]["cluster"], CLUSTER, "{p}");
    assert_eq!(moved(&p, "upstream_cx_total"), 1, "{p}");
    assert_eq!(moved(&p, "upstream_cx_tx_bytes_total"), 0, "{p}");
    assert!(detail(&p).contains("upstream_cx_total +1"), "{p}");
    assert!(detail(&p).contains(CLUSTER), "{p}");
    // The same verdict from BusyBox wget, from the same counters.
    let w = sim.probe("ts-wget", &["--timeout", "3s"]);
    assert_eq!(w["verdict"], "blocked-network", "{w}");
    assert_eq!(moved(&w, "upstream_cx_tx_bytes_total"), 0, "{w}");
    assert!(detail(&w).contains("upstream_cx_total +1"), "{w}");
    // --predict agrees.
    let predicted = sim.probe("ts-client", &["--predict"]);
    assert_eq!(predicted["verdict"], "blocked-network", "{predicted}");
    // Counters unreadable: the old answer, with its hint.
    let p = sim.probe("ts-noagent", &["--timeout", "3s"]);
    assert_eq!(p["verdict"], "allowed", "{p}");
    assert!(detail(&p).contains("--timeout 11"), "{p}");
}

/// Exec into `istio-proxy` refused by the API server (403, as an admission
/// policy that guards the proxy container would answer) while exec into the
/// application container works: the probe runs, its counters are unread, and
/// the answer is the one without counters, with the reason and the hint.
#[test]
fn forbidden_counters_keep_the_answer_without_them() {
    let fault = "verb=exec,container=istio-proxy,status=403";
    let sim = Sim::start_with(&["--time-scale", "0.05", "--fault", fault]);
    let p = sim.probe("ts-client", &["--timeout", "3s"]);
    assert_eq!(p["verdict"], "allowed", "{p}");
    assert_eq!(p["sidecar_stats"]["cluster"], CLUSTER, "{p}");
    let why = p["sidecar_stats"]["error"].as_str().unwrap_or("");
    assert_eq!(why, "cannot create pods/exec in namespace ts-client", "{p}");
    assert!(p["sidecar_stats"]["before"].is_null(), "{p}");
    assert!(detail(&p).contains("--timeout 11"), "{p}");
}
