//! Fault matrix (issue 10, part 1): every plugin against every fault meshsim
//! can inject, plus the faults of the path to the server (server killed
//! mid-run, kubeconfig pointing at a closed port, a CA that did not sign the
//! server's certificate). For each case: the documented exit code, stderr is
//! one `error:` line naming the cause, no verdict for work that did not
//! complete (a cut exec is `exec-failed`, never a network verdict), 429 is
//! retried a bounded number of times as Retry-After says, and the run ends
//! within the harness's generous bound (`-2` exit = it did not).
//!
//! Cases run concurrently, one meshsim process each.

use crate::reliability;

use futures::future::join_all;
use reliability::{Out, Sim, kubeconfig_value, set_kubeconfig_value, set_server};

/// How the server side of a case is set up.
#[derive(Clone, Copy, Debug)]
enum Setup {
    /// meshsim with this `--fault`.
    Fault(&'static str),
    /// meshsim with this `--fault`; killed once the plugin has run for a moment.
    KillMidRun(&'static str),
    /// The kubeconfig points at a port nobody listens on.
    ClosedPort,
    /// meshsim with TLS, the kubeconfig holds another meshsim's CA.
    WrongCa,
}

/// What a case must show.
struct Case {
    plugin: &'static str,
    args: &'static [&'static str],
    setup: Setup,
    code: i32,
    /// Words the one `error:` line must contain (case-insensitive); empty = no error line required.
    cause: &'static [&'static str],
    /// The stdout must not contain these (verdicts for work that did not complete).
    no_verdict: &'static [&'static str],
    /// stdout must contain these.
    stdout_has: &'static [&'static str],
}

const NPEXEC: &[&str] = &[
    "np-test-1",
    "np-test-2",
    "--timeout",
    "1s",
    "--request-timeout",
    "2s",
];
const RBACLOG: &[&str] = &["np-test-2", "--request-timeout", "2s"];
const RBACLOG_F: &[&str] = &["np-test-2", "-f", "--request-timeout", "2s"];
const AUTHZ: &[&str] = &[
    "np-test-2",
    "deployment/np-test-nginx-2",
    "--request-timeout",
    "2s",
];
const AUTHZ_NATIVE: &[&str] = &[
    "np-test-2",
    "deployment/np-test-nginx-2",
    "--native",
    "--request-timeout",
    "2s",
];
const NP_VERDICTS: &[&str] = &["allowed", "denied", "blocked", "refused", "timeout"];
const ANY: &[&str] = &[""];

fn cases() -> Vec<Case> {
    use Setup::*;
    let c = |plugin, args, setup, code, cause, no_verdict| Case {
        plugin,
        args,
        setup,
        code,
        cause,
        no_verdict,
        stdout_has: &[],
    };
    vec![
        // --- npexec
        c(
            "kubectl-npexec",
            NPEXEC,
            Fault("verb=list,resource=pods,status=500"),
            3,
            &["500", "list pods"],
            NP_VERDICTS,
        ),
        c(
            "kubectl-npexec",
            NPEXEC,
            Fault("verb=list,resource=services,status=429,retry-after=1"),
            3,
            &["429", "services"],
            NP_VERDICTS,
        ),
        c(
            "kubectl-npexec",
            NPEXEC,
            Fault("verb=exec,status=403"),
            3,
            &["cannot create pods/exec"],
            NP_VERDICTS,
        ),
        c(
            "kubectl-npexec",
            NPEXEC,
            Fault("verb=list,resource=services,hang=30s"),
            3,
            &["did not answer within --request-timeout"],
            NP_VERDICTS,
        ),
        Case {
            stdout_has: &["exec-failed"],
            ..c(
                "kubectl-npexec",
                NPEXEC,
                Fault("verb=exec,cut-exec-after=10"),
                3,
                &[],
                NP_VERDICTS,
            )
        },
        c(
            "kubectl-npexec",
            NPEXEC,
            KillMidRun("verb=exec,hang=30s"),
            3,
            &[],
            NP_VERDICTS,
        ),
        c(
            "kubectl-npexec",
            NPEXEC,
            ClosedPort,
            3,
            &["cannot reach", "127.0.0.1:1"],
            NP_VERDICTS,
        ),
        c(
            "kubectl-npexec",
            NPEXEC,
            WrongCa,
            3,
            &["cannot reach", "certificate"],
            NP_VERDICTS,
        ),
        // --- rbaclog
        c(
            "kubectl-rbaclog",
            RBACLOG,
            Fault("verb=list,resource=pods,status=500"),
            3,
            &["500", "pods"],
            ANY,
        ),
        c(
            "kubectl-rbaclog",
            RBACLOG,
            Fault("verb=list,resource=pods,status=429,retry-after=1"),
            3,
            &["429", "pods"],
            ANY,
        ),
        c(
            "kubectl-rbaclog",
            RBACLOG,
            Fault("verb=log,status=403"),
            3,
            &["pods/log"],
            ANY,
        ),
        c(
            "kubectl-rbaclog",
            RBACLOG,
            Fault("verb=list,resource=pods,hang=30s"),
            3,
            &["did not answer within --request-timeout"],
            ANY,
        ),
        c(
            "kubectl-rbaclog",
            RBACLOG,
            Fault("verb=log,cut-log-after=100"),
            3,
            &["no istio-proxy log could be read", "kept being cut"],
            ANY,
        ),
        c(
            "kubectl-rbaclog",
            RBACLOG_F,
            KillMidRun("verb=log,hang=30s"),
            3,
            &[],
            ANY,
        ),
        c(
            "kubectl-rbaclog",
            RBACLOG,
            ClosedPort,
            3,
            &["cannot reach", "127.0.0.1:1"],
            ANY,
        ),
        c(
            "kubectl-rbaclog",
            RBACLOG,
            WrongCa,
            3,
            &["cannot reach", "certificate"],
            ANY,
        ),
        // --- authzcheck
        c(
            "kubectl-authzcheck",
            AUTHZ,
            Fault("verb=list,resource=pods,status=500"),
            3,
            &["500", "pods"],
            ANY,
        ),
        c(
            "kubectl-authzcheck",
            AUTHZ,
            Fault("verb=list,resource=pods,status=429,retry-after=1"),
            3,
            &["429", "pods"],
            ANY,
        ),
        // The config dump through exec failing is a finding, not a failure:
        // the API sections still print (exit 0, one warning naming the cause).
        Case {
            plugin: "kubectl-authzcheck",
            args: AUTHZ_NATIVE,
            setup: Fault("verb=exec,status=403"),
            code: 0,
            cause: &[],
            no_verdict: ANY,
            stdout_has: &[
                "what the sidecar loaded is unknown",
                "pods/exec",
                "Kubernetes NetworkPolicy",
            ],
        },
        c(
            "kubectl-authzcheck",
            AUTHZ,
            Fault("verb=list,resource=pods,hang=30s"),
            3,
            &["did not answer within --request-timeout"],
            ANY,
        ),
        Case {
            plugin: "kubectl-authzcheck",
            args: AUTHZ_NATIVE,
            setup: Fault("verb=exec,cut-exec-after=100"),
            code: 0,
            cause: &[],
            no_verdict: ANY,
            stdout_has: &[
                "what the sidecar loaded is unknown",
                "Kubernetes NetworkPolicy",
            ],
        },
        Case {
            plugin: "kubectl-authzcheck",
            args: AUTHZ_NATIVE,
            setup: KillMidRun("verb=exec,hang=30s"),
            code: 0,
            cause: &[],
            no_verdict: ANY,
            stdout_has: &[
                "what the sidecar loaded is unknown",
                "Kubernetes NetworkPolicy",
            ],
        },
        c(
            "kubectl-authzcheck",
            AUTHZ,
            ClosedPort,
            3,
            &["cannot reach", "127.0.0.1:1"],
            ANY,
        ),
        c(
            "kubectl-authzcheck",
            AUTHZ,
            WrongCa,
            3,
            &["cannot reach", "certificate"],
            ANY,
        ),
    ]
}

async fn run_case(case: &Case) -> Result<(), String> {
    let out: Out = match case.setup {
        Setup::Fault(f) => {
            let sim = Sim::case(&["--fault", f]).await;
            sim.run_bounded(case.plugin, case.args).await
        }
        Setup::KillMidRun(f) => {
            let mut sim = Sim::case(&["--fault", f]).await;
            let child = sim
                .plugin_cmd(case.plugin, case.args)
                .spawn()
                .map_err(|e| e.to_string())?;
            // Kill the server only once the plugin is provably mid-run:
            // meshsim has said it is holding the plugin's request.
            sim.wait_held(reliability::RUN_LIMIT).await;
            sim.kill();
            reliability::finish(child).await
        }
        Setup::ClosedPort => {
            let sim = Sim::case_scenarios(&[], &[], 0).await;
            set_server(&sim.kubeconfig(), "http://127.0.0.1:1");
            sim.run_bounded(case.plugin, case.args).await
        }
        Setup::WrongCa => {
            let sim = Sim::case(&["--tls"]).await;
            let other = Sim::case_scenarios(&[], &["--tls"], 0).await;
            let ca = kubeconfig_value(&other.kubeconfig(), "certificate-authority-data")
                .ok_or("no CA in the second kubeconfig")?;
            set_kubeconfig_value(&sim.kubeconfig(), "certificate-authority-data", &ca);
            sim.run_bounded(case.plugin, case.args).await
        }
    };
    check(case, &out).map_err(|e| {
        format!(
            "{} {:?} under {:?}: {e}\n  exit {}\n  stdout: {}\n  stderr: {}",
            case.plugin, case.args, case.setup, out.code, out.stdout, out.stderr
        )
    })
}

fn check(case: &Case, out: &Out) -> Result<(), String> {
    if out.code == -2 {
        return Err("did not end within the bound".into());
    }
    if out.code != case.code {
        return Err(format!("exit {} instead of {}", out.code, case.code));
    }
    let lines = out.stderr_lines();
    let errors: Vec<&&str> = lines.iter().filter(|l| l.starts_with("error: ")).collect();
    // stderr is empty (results printed, exit code says some failed) or one error line.
    if !case.cause.is_empty() || !lines.is_empty() {
        if lines.len() != 1 || errors.len() != 1 {
            return Err(format!("stderr is not one error line: {lines:?}"));
        }
        let line = errors[0].to_lowercase();
        for word in case.cause {
            if !line.contains(&word.to_lowercase()) {
                return Err(format!("the error line does not name {word:?}"));
            }
        }
    }
    if lines
        .iter()
        .any(|l| l.contains("panicked") || l.contains("RUST_BACKTRACE"))
    {
        return Err("panic".into());
    }
    for s in case.stdout_has {
        if !out.stdout.contains(s) {
            return Err(format!("stdout lacks {s:?}"));
        }
    }
    if case.no_verdict != ANY {
        for row in out.stdout.lines().skip(1) {
            let verdict = row.split_whitespace().nth(2).unwrap_or_default();
            if case.no_verdict.contains(&verdict) || verdict.starts_with("denied") {
                return Err(format!(
                    "a verdict was reported for a probe that did not complete: {row}"
                ));
            }
        }
    } else if case.stdout_has.is_empty()
        && out.code == 3
        && out.stdout.lines().skip(1).any(|l| !l.trim().is_empty())
    {
        // rbaclog and authzcheck print no rows (at most a header) when the cluster failed.
        return Err(format!("output despite the failure: {}", out.stdout));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_plugin_under_every_fault() {
    let cases = cases();
    let results = join_all(cases.iter().map(run_case)).await;
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(
        failures.is_empty(),
        "{} of {} fault cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// 429 is retried MAX_RETRIES (3) times, each after Retry-After, then reported;
/// a huge Retry-After is capped (the run ends well within the bound).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_as_retry_after_says_and_bounded() {
    let sims = join_all([
        Sim::case(&[
            "--fault",
            "verb=list,resource=services,status=429,retry-after=1",
        ]),
        Sim::case(&[
            "--fault",
            "verb=list,resource=services,status=429,retry-after=3600",
        ]),
    ])
    .await;
    let mut args = NPEXEC.to_vec();
    args.push("-v");
    let outs = join_all(sims.iter().map(|s| s.run_bounded("kubectl-npexec", &args))).await;
    for (out, after) in outs.iter().zip(["1", "3600"]) {
        assert_eq!(out.code, 3, "retry-after={after}: {out:?}");
        let retries: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.contains("asked to retry later"))
            .collect();
        assert_eq!(retries.len(), 3, "retry-after={after}: {}", out.stderr);
        let expected_wait = if after == "1" {
            "wait_ms=1000"
        } else {
            "wait_ms=5000"
        };
        assert!(
            retries.iter().all(|l| l.contains(expected_wait)),
            "retry-after={after}: waits not {expected_wait}: {retries:?}"
        );
        assert!(
            out.stderr_lines()
                .last()
                .is_some_and(|l| l.starts_with("error: ") && l.contains("429")),
            "{}",
            out.stderr
        );
    }
}
