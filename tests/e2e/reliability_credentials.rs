//! Credentials (issue 10, part 4): the plugins authenticate to meshsim with
//! TLS and authentication on, using a static bearer token and a client
//! certificate; their debug output (`-v` up to `-vvvv`) never prints the
//! token, the client key or a password from the kubeconfig; and a rejected
//! credential (401) is one line saying "credentials rejected". The token
//! also reaches the plugins through a kubeconfig `tokenFile:` and through an
//! exec credential plugin (`exec:`, a script printing an `ExecCredential`),
//! neither printed at `-vvv`; and a server certificate that has expired is
//! exit 3 with one line naming the certificate problem.

use crate::reliability;

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
    let outs = join_all(runs.iter().map(|(p, a)| sim.run_bounded(p, a))).await;
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
    let sim = Sim::case(&["--tls", "--token", TOKEN]).await;
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
    let sim = Sim::case(&["--client-ca"]).await;
    let key_b64 = kubeconfig_value(&sim.kubeconfig(), "client-key-data")
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
        Sim::case_scenarios(
            &[reliability::walkthrough()],
            &["--tls", "--token", TOKEN],
            0,
        ),
        Sim::case_scenarios(
            &[reliability::walkthrough()],
            &["--tls", "--token", TOKEN],
            0,
        ),
    ])
    .await;
    // A wrong token, and a user with a username/password instead.
    set_kubeconfig_value(&sims[0].kubeconfig(), "token", "wrong-token-5555");
    set_kubeconfig_value(
        &sims[1].kubeconfig(),
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

/// Replaces the kubeconfig's `token: TOKEN` line with `user_lines` (each
/// already indented as a key of the user).
fn replace_token(kubeconfig: &std::path::Path, user_lines: &str) {
    let text = std::fs::read_to_string(kubeconfig).expect("kubeconfig");
    let line = format!("    token: {TOKEN}\n");
    assert!(text.contains(&line), "meshsim wrote no token line: {text}");
    std::fs::write(kubeconfig, text.replace(&line, user_lines)).expect("write kubeconfig");
}

fn assert_authenticated(what: &str, outs: &[(&str, Out)]) {
    for (plugin, out) in outs {
        assert!(
            matches!(out.code, 0 | 1),
            "{plugin} ({what}) exited {}: {}",
            out.code,
            out.stderr
        );
        assert!(
            !out.stderr.contains("credentials rejected"),
            "{plugin} ({what}): {}",
            out.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_file_works_and_is_never_printed() {
    let sim = Sim::case(&["--tls", "--token", TOKEN]).await;
    let file = sim.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).expect("token file");
    replace_token(
        &sim.kubeconfig(),
        &format!("    tokenFile: {}\n", file.display()),
    );
    assert!(
        !std::fs::read_to_string(sim.kubeconfig())
            .unwrap()
            .contains(TOKEN),
        "the token must only be in the token file"
    );
    for v in ["-v", "-vvv"] {
        let outs = run_all(&sim, v).await;
        assert_authenticated(&format!("tokenFile {v}"), &outs);
        assert_no_secret(v, &outs, &[TOKEN]);
    }
    // The file really is what authenticates: a wrong token in it is rejected.
    std::fs::write(&file, "wrong-token-in-file\n").expect("token file");
    for (plugin, out) in run_all(&sim, "--request-timeout=10s").await {
        assert_eq!(out.code, 3, "{plugin} with a wrong token file: {out:?}");
        assert!(
            out.stderr.starts_with("error: credentials rejected"),
            "{plugin}: {}",
            out.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_credential_plugin_works_and_is_never_printed() {
    use std::os::unix::fs::PermissionsExt;
    let sim = Sim::case(&["--tls", "--token", TOKEN]).await;
    let script = sim.path().join("credential-plugin.sh");
    let marker = sim.path().join("plugin-ran");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n: > '{}'\nprintf '%s\\n' '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{TOKEN}\"}}}}'\n",
            marker.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    replace_token(
        &sim.kubeconfig(),
        &format!(
            "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      interactiveMode: Never\n",
            script.display()
        ),
    );
    for v in ["-v", "-vvv"] {
        let outs = run_all(&sim, v).await;
        assert_authenticated(&format!("exec plugin {v}"), &outs);
        assert_no_secret(v, &outs, &[TOKEN]);
    }
    assert!(marker.exists(), "the exec credential plugin never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_server_certificate_is_one_line_naming_it() {
    let sim = Sim::case_scenarios(
        &[reliability::walkthrough()],
        &["--expired-server-cert", "--token", TOKEN],
        0,
    )
    .await;
    for v in ["--request-timeout=10s", "-vvv"] {
        let outs = run_all(&sim, v).await;
        for (plugin, out) in &outs {
            assert_eq!(out.code, 3, "{plugin} {v}: {out:?}");
            assert!(
                out.stdout.is_empty(),
                "{plugin} {v} reported: {}",
                out.stdout
            );
            let last = out.stderr_lines().last().copied().unwrap_or_default();
            assert!(
                last.starts_with("error: ")
                    && last.contains("certificate")
                    && last.contains("xpired"),
                "{plugin} {v}: {}",
                out.stderr
            );
            if !v.starts_with("-v") {
                assert_eq!(out.stderr_lines().len(), 1, "{plugin}: {}", out.stderr);
            }
        }
        assert_no_secret(v, &outs, &[TOKEN]);
    }
}
