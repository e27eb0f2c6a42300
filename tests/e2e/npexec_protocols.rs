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
use common::sim::{ServeProcess, built, path_with};

struct Sim(ServeProcess);

fn fixture() -> std::path::PathBuf {
    repo_root().join("tests/fixtures/npexec-protocols")
}

impl Sim {
    fn start() -> Sim {
        built(&["kubectl-npexec", "meshsim"]);
        Sim(ServeProcess::start(
            &["--time-scale", "0.05"],
            &[fixture()],
            5,
        ))
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        let bins = built(&["kubectl-npexec"]);
        self.0
            .kubectl_cmd(&path_with(&[&bins]))
            .args(args)
            .output()
            .unwrap()
    }

    fn npexec(&self, args: &[&str]) -> Output {
        let mut v = vec!["npexec"];
        v.extend_from_slice(args);
        self.kubectl(&v)
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

#[test]
fn each_port_gets_its_protocol_and_tcp_verdicts_make_sense() {
    let sim = Sim::start();
    let to = ["pp-dst", "--service", "multi"];

    // Every port answers, each probed with its protocol.
    for (ns, tool) in CLIENTS {
        let mut args = vec![ns];
        args.extend(to);
        let (v, probes) = sim.verdicts(&args);
        expect(
            &v,
            &[
                (80, "allowed"),
                (9090, "allowed"),
                (6379, "allowed"),
                (443, "allowed"),
            ],
            ns,
        );
        assert!(probes.iter().all(|p| p["tool"] == tool), "{ns}: {probes:?}");
        assert!(v[&80].1.starts_with("http://"), "{v:?}");
        assert!(v[&443].1.starts_with("https://"), "{v:?}");
        assert!(v[&6379].1.starts_with("gopher://"), "{v:?}");
        predicted_agree(&sim, &args, &v);
    }
    // A headless Service's port resolves to the pod and gets a TCP probe.
    let (v, _) = sim.verdicts(&["pp-curl", "pp-dst", "--service", "multi-headless"]);
    expect(&v, &[(6379, "allowed")], "headless");
    assert!(v[&6379].1.starts_with("gopher://"), "{v:?}");

    // A DENY on the TCP ports: the network RBAC filter closes the
    // connection, which every client reads as denied-rbac; HTTP stays open.
    sim.apply("deny-tcp-ports.yaml");
    let out = sim.npexec(&[
        "pp-curl",
        "pp-dst",
        "--service",
        "multi",
        "--port",
        "tcp-redis",
        "--expect",
        "denied-rbac",
        "--wait",
        "20s",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    for (ns, _) in CLIENTS {
        let mut args = vec![ns];
        args.extend(to);
        let (v, probes) = sim.verdicts(&args);
        expect(
            &v,
            &[
                (80, "allowed"),
                (9090, "allowed"),
                (6379, "denied-rbac"),
                (443, "denied-rbac"),
            ],
            ns,
        );
        let redis = probes.iter().find(|p| p["to"]["port"] == 6379).unwrap();
        assert!(
            redis["detail"]
                .as_str()
                .unwrap_or("")
                .contains("RBAC denial"),
            "{ns}: {redis}"
        );
        predicted_agree(&sim, &args, &v);
    }

    // A NetworkPolicy drop: a client without a sidecar waits for its connect.
    let (v, _) = sim.verdicts(&["pp-plain", "pp-dst", "--service", "multi"]);
    expect(
        &v,
        &[(80, "allowed"), (6379, "denied-rbac")],
        "pp-plain before",
    );
    sim.apply("only-from-gnu.yaml");
    let out = sim.npexec(&[
        "pp-plain",
        "pp-dst",
        "--service",
        "multi",
        "--port",
        "http-web",
        "--expect",
        "blocked-network",
        "--wait",
        "20s",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    let args = ["pp-plain", "pp-dst", "--service", "multi"];
    let (v, _) = sim.verdicts(&args);
    expect(
        &v,
        &[
            (80, "blocked-network"),
            (6379, "blocked-network"),
            (443, "blocked-network"),
        ],
        "pp-plain",
    );
    predicted_agree(&sim, &args, &v);
    // Behind the source's own sidecar the TCP connect succeeds; the sidecar
    // closes it after Istio's 10 s connect timeout: seen with --timeout 11s,
    // an open silent connection (documented) below it.
    let args = [
        "pp-curl",
        "pp-dst",
        "--service",
        "multi",
        "--timeout",
        "11s",
    ];
    let (v, _) = sim.verdicts(&args);
    expect(
        &v,
        &[
            (80, "blocked-network"),
            (6379, "blocked-network"),
            (443, "blocked-network"),
        ],
        "pp-curl --timeout 11s",
    );
    predicted_agree(&sim, &args, &v);
    let (v, probes) = sim.verdicts(&["pp-curl", "pp-dst", "--service", "multi", "--port", "6379"]);
    expect(&v, &[(6379, "allowed")], "pp-curl, 3s");
    let detail = probes[0]["detail"].as_str().unwrap_or("");
    assert!(detail.contains("--timeout 11"), "{detail}");

    // A pod calling itself through its own Service goes out through its
    // sidecar and back in through the same sidecar's inbound RBAC.
    let args = ["pp-curl", "pp-curl", "--service", "curl-client"];
    let (v, _) = sim.verdicts(&args);
    expect(&v, &[(80, "allowed")], "self before");
    sim.apply("deny-self.yaml");
    let out = sim.npexec(&[
        "pp-curl",
        "pp-curl",
        "--service",
        "curl-client",
        "--expect",
        "denied-rbac",
        "--wait",
        "20s",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    let (v, _) = sim.verdicts(&args);
    expect(&v, &[(80, "denied-rbac")], "self");
    predicted_agree(&sim, &args, &v);
}
