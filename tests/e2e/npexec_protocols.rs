//! `kubectl npexec` probes each port with the protocol Istio gives it, through
//! the real kubectl against meshsim (real Envoy sidecars): HTTP for `http-*`,
//! HTTP/2 for `grpc-*`, a TLS handshake for `https`, a TCP connection for
//! `tcp-redis` (and a headless Service's port), from curl, BusyBox wget and
//! GNU wget clients alike. A DENY on the TCP ports is read as `denied-rbac`
//! (network RBAC closes the connection), a NetworkPolicy drop as
//! `blocked-network`, a pod calling itself through its own Service meets its
//! own sidecar's RBAC; `--predict` agrees with every probe.

use crate::common;

use std::collections::BTreeMap;
use std::process::Output;

use common::repo_root;
use common::sim::built;

/// meshsim with the fixture, kubectl with the plugins on its PATH.
struct Sim(common::Sim);

fn fixture() -> std::path::PathBuf {
    repo_root().join("tests/fixtures/npexec-protocols")
}

impl Sim {
    fn start() -> Sim {
        built(&["kubectl-npexec", "meshsim"]);
        Sim(common::Sim::builder().scenario(fixture()).pods(5).start())
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.0.run(args)
    }

    fn npexec(&self, args: &[&str]) -> Output {
        self.kubectl(&[&["npexec"], args].concat())
    }

    /// `npexec ARGS --expect VERDICT --wait 20s` succeeds: the change has
    /// reached the sidecars (observed, not slept on).
    fn wait_for(&self, args: &[&str], verdict: &str) {
        let out = self.npexec(&[args, &["--expect", verdict, "--wait", "20s"]].concat());
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", err(&out));
    }

    fn apply(&self, file: &str) {
        let path = fixture().join("policies").join(file);
        let out = self.kubectl(&["apply", "-f", path.to_str().unwrap()]);
        assert!(out.status.success(), "{}", err(&out));
    }

    /// `npexec ARGS -o json`: port -> (verdict, URL), plus the raw probes.
    fn verdicts(&self, args: &[&str]) -> (BTreeMap<u64, (String, String)>, Vec<serde_json::Value>) {
        let mut v = args.to_vec();
        v.extend(["-o", "json"]);
        let out = self.npexec(&v);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", err(&out)));
        let probes = json.as_array().cloned().unwrap_or_default();
        let map = probes
            .iter()
            .map(|p| {
                (
                    p["to"]["port"].as_u64().unwrap_or(0),
                    (
                        p["verdict"].as_str().unwrap_or("").to_string(),
                        p["to"]["url"].as_str().unwrap_or("").to_string(),
                    ),
                )
            })
            .collect();
        (map, probes)
    }
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const CLIENTS: [(&str, &str); 3] = [
    ("pp-curl", "curl"),
    ("pp-busybox", "wget"),
    ("pp-gnu", "wget"),
];

/// Port -> expected verdict for `npexec NS pp-dst --service multi`.
fn expect(v: &BTreeMap<u64, (String, String)>, want: &[(u64, &str)], who: &str) {
    for (port, verdict) in want {
        let got = v.get(port).map(|(v, _)| v.as_str());
        assert_eq!(got, Some(*verdict), "{who} port {port}: {v:?}");
    }
}

/// `--predict` gives the same verdicts as the probes.
fn predicted_agree(sim: &Sim, args: &[&str], live: &BTreeMap<u64, (String, String)>) {
    let mut a = args.to_vec();
    a.push("--predict");
    let (predicted, _) = sim.verdicts(&a);
    let strip = |m: &BTreeMap<u64, (String, String)>| -> BTreeMap<u64, String> {
        m.iter().map(|(k, (v, _))| (*k, v.clone())).collect()
    };
    assert_eq!(strip(&predicted), strip(live), "--predict {args:?}");
}

/// `npexec NS pp-dst --service multi` from every client: each port's
/// verdict as `want` says, and `--predict` agreeing; (ns, tool, verdicts, probes).
type ClientRun = (
    &'static str,
    &'static str,
    BTreeMap<u64, (String, String)>,
    Vec<serde_json::Value>,
);
fn every_client(sim: &Sim, want: &[(u64, &str)]) -> Vec<ClientRun> {
    CLIENTS
        .iter()
        .map(|&(ns, tool)| {
            let args = [ns, "pp-dst", "--service", "multi"];
            let (v, probes) = sim.verdicts(&args);
            expect(&v, want, ns);
            predicted_agree(sim, &args, &v);
            (ns, tool, v, probes)
        })
        .collect()
}

#[test]
fn each_port_gets_its_protocol_and_tcp_verdicts_make_sense() {
    let sim = Sim::start();

    // The HTTP ports stay open; the TCP and TLS ports get `tcp_tls`.
    let ports = |tcp_tls| {
        [
            (80, "allowed"),
            (9090, "allowed"),
            (6379, tcp_tls),
            (443, tcp_tls),
        ]
    };

    // Every port answers, each probed with its protocol.
    for (ns, tool, v, probes) in every_client(&sim, &ports("allowed")) {
        assert!(probes.iter().all(|p| p["tool"] == tool), "{ns}: {probes:?}");
        assert!(v[&80].1.starts_with("http://"), "{v:?}");
        assert!(v[&443].1.starts_with("https://"), "{v:?}");
        assert!(v[&6379].1.starts_with("gopher://"), "{v:?}");
    }
    // A headless Service's port resolves to the pod and gets a TCP probe.
    let headless = ["pp-curl", "pp-dst", "--service", "multi-headless"];
    let (v, _) = sim.verdicts(&headless);
    expect(&v, &[(6379, "allowed")], "headless");
    assert!(v[&6379].1.starts_with("gopher://"), "{v:?}");
    predicted_agree(&sim, &headless, &v);

    // A DENY on the TCP ports: the network RBAC filter closes the
    // connection, which every client reads as denied-rbac; HTTP stays open.
    sim.apply("deny-tcp-ports.yaml");
    sim.wait_for(
        &[
            "pp-curl",
            "pp-dst",
            "--service",
            "multi",
            "--port",
            "tcp-redis",
        ],
        "denied-rbac",
    );
    let (v, _) = sim.verdicts(&headless);
    expect(&v, &[(6379, "denied-rbac")], "headless");
    predicted_agree(&sim, &headless, &v);
    for (ns, _, _, probes) in every_client(&sim, &ports("denied-rbac")) {
        let redis = probes.iter().find(|p| p["to"]["port"] == 6379).unwrap();
        assert!(
            redis["detail"]
                .as_str()
                .unwrap_or("")
                .contains("RBAC denial"),
            "{ns}: {redis}"
        );
    }

    // A NetworkPolicy drop: a client without a sidecar waits for its connect.
    let (v, _) = sim.verdicts(&["pp-plain", "pp-dst", "--service", "multi"]);
    expect(
        &v,
        &[(80, "allowed"), (6379, "denied-rbac")],
        "pp-plain before",
    );
    sim.apply("only-from-gnu.yaml");
    sim.wait_for(
        &[
            "pp-plain",
            "pp-dst",
            "--service",
            "multi",
            "--port",
            "http-web",
        ],
        "blocked-network",
    );
    // pp-curl: behind the source's own sidecar the TCP connect succeeds;
    // the sidecar closes it after Istio's 10 s connect timeout (--timeout
    // 11s), and below it the sidecar's outbound counters show a connect
    // that never completed.
    let blocked = [
        (80, "blocked-network"),
        (9090, "blocked-network"),
        (6379, "blocked-network"),
        (443, "blocked-network"),
    ];
    for args in [
        &["pp-plain", "pp-dst", "--service", "multi"][..],
        &[
            "pp-curl",
            "pp-dst",
            "--service",
            "multi",
            "--timeout",
            "11s",
        ],
    ] {
        let (v, _) = sim.verdicts(args);
        expect(&v, &blocked, &args.join(" "));
        predicted_agree(&sim, args, &v);
    }
    let (v, probes) = sim.verdicts(&["pp-curl", "pp-dst", "--service", "multi", "--port", "6379"]);
    expect(&v, &[(6379, "blocked-network")], "pp-curl, 3s");
    let detail = probes[0]["detail"].as_str().unwrap_or("");
    assert!(detail.contains("upstream_cx_total +1"), "{detail}");

    // A pod calling itself through its own Service goes out through its
    // sidecar and back in through the same sidecar's inbound RBAC.
    let args = ["pp-curl", "pp-curl", "--service", "curl-client"];
    let (v, _) = sim.verdicts(&args);
    expect(&v, &[(80, "allowed")], "self before");
    sim.apply("deny-self.yaml");
    sim.wait_for(
        &["pp-curl", "pp-curl", "--service", "curl-client"],
        "denied-rbac",
    );
    let (v, _) = sim.verdicts(&args);
    expect(&v, &[(80, "denied-rbac")], "self");
    predicted_agree(&sim, &args, &v);
}
