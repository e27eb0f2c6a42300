//! Credentials (issue 10, part 4): the plugins authenticate to meshsim with
//! TLS and authentication on, using a static bearer token and a client
//! certificate; their debug output (`-v` up to `-vvvv`) never prints the
//! token, the client key or a password from the kubeconfig; and a rejected
//! credential (401) is one line saying "credentials rejected".

mod reliability;

use futures::future::join_all;
use reliability::{Out, Sim, kubeconfig_value, set_kubeconfig_value};

const TOKEN: &str = "s3cret-token-0123456789";
const PASSWORD: &str = "hunter2-password-9876";

/// One run of each plugin with `verbosity`, against `sim`.
async fn run_all(sim: &Sim, verbosity: &str) -> Vec<(&'static str, Out)> {
    let runs: [(&'static str, Vec<&str>); 3] = [
        (
            "kubectl-npexec",
            vec!["np-test-1", "np-test-2", "--timeout", "2s", verbosity],
        ),
        ("kubectl-rbaclog", vec!["np-test-2", verbosity]),
        (
            "kubectl-authzcheck",
            vec!["np-test-2", "deployment/np-test-nginx-2", verbosity],
        ),
    ];
    let outs = join_all(runs.iter().map(|(p, a)| sim.run(p, a))).await;
    runs.iter().map(|(p, _)| *p).zip(outs).collect()
}

fn assert_no_secret(what: &str, outs: &[(&str, Out)], secrets: &[&str]) {
    for (plugin, out) in outs {
        for s in secrets {
            assert!(
                !out.stderr.contains(s) && !out.stdout.contains(s),
                "{plugin} ({what}) printed a secret {s:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_token_works_and_is_never_printed() {
    let sim = Sim::start(&["--tls", "--token", TOKEN]).await;
    for v in ["-v", "-vvv", "-vvvv"] {
        let outs = run_all(&sim, v).await;
        for (plugin, out) in &outs {
            assert!(
                matches!(out.code, 0 | 1),
                "{plugin} {v} with a token over TLS exited {}: {}",
                out.code,
                out.stderr
            );
        }
        assert_no_secret(v, &outs, &[TOKEN]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_works_and_its_key_is_never_printed() {
    let sim = Sim::start(&["--client-ca"]).await;
    let key_b64 = kubeconfig_value(&sim.kubeconfig, "client-key-data")
        .expect("meshsim --client-ca writes a client key");
    let key_pem = String::from_utf8(
        std::process::Command::new("base64")
            .arg("-d")
            .stdin(
                std::fs::File::open({
                    let p = sim.path().join("key.b64");
                    std::fs::write(&p, &key_b64).unwrap();
                    p
                })
                .unwrap(),
            )
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    // A line of the key's body (not the BEGIN/END markers).
    let key_line = key_pem
        .lines()
        .find(|l| !l.starts_with("-----") && l.len() > 20)
        .expect("PEM body")
        .to_string();
    for v in ["-v", "-vvv", "-vvvv"] {
        let outs = run_all(&sim, v).await;
        for (plugin, out) in &outs {
            assert!(
                matches!(out.code, 0 | 1),
                "{plugin} {v} with a client certificate exited {}: {}",
                out.code,
                out.stderr
            );
        }
        assert_no_secret(v, &outs, &[&key_b64[..40], &key_line]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_credentials_are_one_clear_line_and_not_printed() {
    let sims = join_all([
        Sim::start_scenarios(
            &[reliability::walkthrough()],
            &["--tls", "--token", TOKEN],
            0,
        ),
        Sim::start_scenarios(
            &[reliability::walkthrough()],
            &["--tls", "--token", TOKEN],
            0,
        ),
    ])
    .await;
    // A wrong token, and a user with a username/password instead.
    set_kubeconfig_value(&sims[0].kubeconfig, "token", "wrong-token-5555");
    set_kubeconfig_value(
        &sims[1].kubeconfig,
        "token",
        &format!("\"\"\n    username: admin\n    password: {PASSWORD}"),
    );
    for (sim, secret) in sims.iter().zip(["wrong-token-5555", PASSWORD]) {
        for v in ["", "-vvv"] {
            let outs = run_all(
                sim,
                if v.is_empty() {
                    "--request-timeout=10s"
                } else {
                    v
                },
            )
            .await;
            for (plugin, out) in &outs {
                assert_eq!(out.code, 3, "{plugin}: {out:?}");
                let last = out.stderr_lines().last().copied().unwrap_or_default();
                assert!(
                    last.starts_with("error: credentials rejected"),
                    "{plugin}: {}",
                    out.stderr
                );
                if v.is_empty() {
                    assert_eq!(out.stderr_lines().len(), 1, "{plugin}: {}", out.stderr);
                }
            }
            assert_no_secret(v, &outs, &[secret, TOKEN]);
        }
    }
}
