//! Shared fixtures for the exec tests: a scripted fake network and services.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshsim::kubelet::exec::{ExecIo, ExecOutcome, ExecServices, InStream, OutStream, run_command};
use meshsim::traffic::{Container, NetOutcome, NetRequest, Network};

/// A network that answers by host name and records every request.
#[derive(Default)]
pub struct FakeNetwork {
    pub routes: Mutex<Vec<(String, NetOutcome)>>,
    pub seen: Mutex<Vec<NetRequest>>,
}

impl FakeNetwork {
    pub fn route(&self, host: &str, outcome: NetOutcome) {
        self.routes
            .lock()
            .unwrap()
            .push((host.to_string(), outcome));
    }
}

impl Network for FakeNetwork {
    fn decide(&self, _from: &Container, request: &NetRequest) -> NetOutcome {
        self.seen.lock().unwrap().push(request.clone());
        self.routes
            .lock()
            .unwrap()
            .iter()
            .find(|(h, _)| *h == request.host)
            .map(|(_, o)| o.clone())
            .unwrap_or(NetOutcome::DnsFailure)
    }

    fn resolve(&self, _from: &Container, host: &str) -> Option<String> {
        self.routes
            .lock()
            .unwrap()
            .iter()
            .any(|(h, _)| h == host)
            .then(|| "10.96.0.42".to_string())
    }
}

pub struct FakeServices {
    pub net: Arc<FakeNetwork>,
    pub scale: f64,
    pub execs: Mutex<Vec<Vec<String>>>,
}

impl FakeServices {
    pub fn new(scale: f64) -> Arc<Self> {
        Arc::new(FakeServices {
            net: Arc::new(FakeNetwork::default()),
            scale,
            execs: Mutex::new(Vec::new()),
        })
    }
}

impl ExecServices for FakeServices {
    fn network(&self) -> Arc<dyn Network> {
        self.net.clone()
    }
    fn time_scale(&self) -> f64 {
        self.scale
    }
    fn record_exec(&self, _target: &Container, argv: &[String]) {
        self.execs.lock().unwrap().push(argv.to_vec());
    }
}

pub fn nginx_target() -> Container {
    Container {
        namespace: "np-test-1".into(),
        pod: "np-test-nginx-1-7d9c8b5f4-abcde".into(),
        container: "np-test-nginx-1".into(),
        image: "nginx:latest".into(),
        tools: [
            "sh", "bash", "cat", "curl", "env", "hostname", "sleep", "echo", "true", "false",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    }
}

pub fn ok(body: &str) -> NetOutcome {
    NetOutcome::Http {
        after: Duration::from_millis(2),
        status: 200,
        headers: vec![
            ("server".into(), "envoy".into()),
            ("content-type".into(), "text/plain".into()),
            ("content-length".into(), body.len().to_string()),
        ],
        body: body.as_bytes().to_vec(),
    }
}

pub fn rbac_denied() -> NetOutcome {
    NetOutcome::Http {
        after: Duration::from_millis(1),
        status: 403,
        headers: vec![
            ("content-length".into(), "19".into()),
            ("content-type".into(), "text/plain".into()),
            ("server".into(), "envoy".into()),
        ],
        body: b"RBAC: access denied".to_vec(),
    }
}

pub struct Ran {
    pub outcome: ExecOutcome,
    pub stdout: String,
    pub stderr: String,
}

pub async fn run_in(
    target: &Container,
    services: &FakeServices,
    argv: &[&str],
    stdin: &str,
) -> Ran {
    let out = OutStream::buffer();
    let err = OutStream::buffer();
    let io = ExecIo {
        stdin: InStream::from_bytes(stdin.as_bytes().to_vec()),
        stdout: out.clone(),
        stderr: err.clone(),
        tty: false,
    };
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let outcome = run_command(target, &argv, io, services).await;
    Ran {
        outcome,
        stdout: String::from_utf8_lossy(&out.captured()).into_owned(),
        stderr: String::from_utf8_lossy(&err.captured()).into_owned(),
    }
}

pub async fn run(services: &FakeServices, argv: &[&str]) -> Ran {
    run_in(&nginx_target(), services, argv, "").await
}

pub fn code(r: &Ran) -> i32 {
    r.outcome.exit_code()
}
