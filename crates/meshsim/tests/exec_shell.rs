//! The command table and the shell, driven through `run_command` without
//! WebSockets: the walk-through's exact `bash -c` strings, quoting,
//! variables, `exit`, pipes, redirections and missing executables.

mod exec_common;

use std::time::Duration;

use exec_common::*;
use meshsim::exec::{ExecOutcome, NetOutcome};

const TO_2: &str = "echo '' && curl -sf --max-time 3 svc-np-test-nginx-2.np-test-2.svc.cluster.local || echo 'Failed calling np-test-nginx-2 from np-test-nginx-1'";
const TO_1: &str = "curl -sf --max-time 3 svc-np-test-nginx-1.np-test-1.svc.cluster.local || echo 'Failed calling np-test-nginx-1 from np-test-nginx-2' && echo ''";

#[tokio::test(start_paused = true)]
async fn walkthrough_success_prints_the_greeting() {
    let s = FakeServices::new(1.0);
    s.net.route(
        "svc-np-test-nginx-2.np-test-2.svc.cluster.local",
        ok("Hello world - np-test-nginx-2!"),
    );
    let r = run(&s, &["bash", "-c", TO_2]).await;
    assert_eq!(r.outcome, ExecOutcome::Exited(0));
    assert_eq!(r.stdout, "\nHello world - np-test-nginx-2!");
    assert_eq!(r.stderr, "");
    // The argv arrived verbatim.
    assert_eq!(s.execs.lock().unwrap()[0][2], TO_2);

    s.net.route(
        "svc-np-test-nginx-1.np-test-1.svc.cluster.local",
        ok("Hello world - np-test-nginx-1!"),
    );
    let r = run(&s, &["bash", "-c", TO_1]).await;
    assert_eq!(r.stdout, "Hello world - np-test-nginx-1!\n");
    assert_eq!(code(&r), 0);
}

#[tokio::test(start_paused = true)]
async fn walkthrough_denials_print_the_failure_line() {
    let s = FakeServices::new(1.0);
    // AuthorizationPolicy: 403 from the destination sidecar; -f turns it into exit 22.
    s.net.route(
        "svc-np-test-nginx-2.np-test-2.svc.cluster.local",
        rbac_denied(),
    );
    let r = run(&s, &["bash", "-c", TO_2]).await;
    assert_eq!(
        r.stdout,
        "\nFailed calling np-test-nginx-2 from np-test-nginx-1\n"
    );
    assert_eq!(r.stderr, "", "-s hides curl's error");
    assert_eq!(code(&r), 0);

    // NetworkPolicy without a source sidecar: the connect never completes.
    let s = FakeServices::new(1.0);
    s.net.route(
        "svc-np-test-nginx-2.np-test-2.svc.cluster.local",
        NetOutcome::ConnectTimeout,
    );
    let started = tokio::time::Instant::now();
    let r = run(&s, &["bash", "-c", TO_2]).await;
    assert_eq!(
        r.stdout,
        "\nFailed calling np-test-nginx-2 from np-test-nginx-1\n"
    );
    // With the paused clock, the simulated wait is exactly --max-time.
    assert_eq!(started.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn time_scale_shortens_waits() {
    let s = FakeServices::new(0.01);
    s.net.route("slow", NetOutcome::ConnectTimeout);
    let started = tokio::time::Instant::now();
    let r = run(&s, &["sh", "-c", "curl -sS -m 3 slow; sleep 2"]).await;
    assert_eq!(code(&r), 0);
    assert_eq!(started.elapsed(), Duration::from_millis(50));
    assert_eq!(
        r.stderr,
        "curl: (28) Connection timed out after 3001 milliseconds\n"
    );
}

#[tokio::test]
async fn quoting_variables_and_status() {
    let s = FakeServices::new(1.0);
    let r = run(
        &s,
        &[
            "sh",
            "-c",
            r#"A="two  words"; echo $A "$A" '$A' \$A ${A}x ${NOPE:-dflt} "${HOSTNAME}"; false; echo "st=$?"; echo $NGINX_VERSION"#,
        ],
    )
    .await;
    assert_eq!(
        r.stdout,
        "two words two  words $A $A two wordsx dflt np-test-nginx-1-7d9c8b5f4-abcde\nst=1\n1.29.0\n"
    );
    assert_eq!(code(&r), 0);
}

#[tokio::test]
async fn exit_codes_and_and_or_lists() {
    let s = FakeServices::new(1.0);
    let r = run(&s, &["sh", "-c", "echo hi; exit 7; echo never"]).await;
    assert_eq!(r.stdout, "hi\n");
    assert_eq!(r.outcome, ExecOutcome::Exited(7));

    let r = run(
        &s,
        &["sh", "-c", "false && echo a || echo b; true || echo c"],
    )
    .await;
    assert_eq!(r.stdout, "b\n");
    assert_eq!(code(&r), 0);

    let r = run(&s, &["bash", "-c", "! false && echo negated"]).await;
    assert_eq!(r.stdout, "negated\n");

    let r = run(&s, &["sh", "-c", "exit 300"]).await;
    assert_eq!(code(&r), 44);
}

#[tokio::test]
async fn pipes_redirections_and_files() {
    let s = FakeServices::new(1.0);
    let r = run(
        &s,
        &[
            "bash",
            "-c",
            "echo one > /tmp/f; echo two >> /tmp/f; cat /tmp/f | cat; cat /etc/hostname; cat /nope 2>&1; echo err >&2",
        ],
    )
    .await;
    assert_eq!(
        r.stdout,
        "one\ntwo\nnp-test-nginx-1-7d9c8b5f4-abcde\ncat: /nope: No such file or directory\n"
    );
    assert_eq!(r.stderr, "err\n");

    let r = run_in(&nginx_target(), &s, &["cat"], "from stdin\n").await;
    assert_eq!(r.stdout, "from stdin\n");

    let r = run(&s, &["sh", "-c", "echo $(hostname)-`echo x`"]).await;
    assert_eq!(r.stdout, "np-test-nginx-1-7d9c8b5f4-abcde-x\n");

    let r = run(
        &s,
        &["sh", "-c", "printf '%s=%d\\n' a 1 b 2; echo -n no-newline"],
    )
    .await;
    assert_eq!(r.stdout, "a=1\nb=2\nno-newline");
}

#[tokio::test]
async fn script_from_stdin() {
    let s = FakeServices::new(1.0);
    let r = run_in(&nginx_target(), &s, &["sh"], "echo a\nexit 3\necho b\n").await;
    assert_eq!(r.stdout, "a\n");
    assert_eq!(code(&r), 3);
}

#[tokio::test]
async fn missing_programs_fail_like_the_real_thing() {
    let s = FakeServices::new(1.0);
    // Not in the image at all: the runtime refuses to start it.
    let r = run(&s, &["wget", "-qO-", "x"]).await;
    match &r.outcome {
        ExecOutcome::StartFailed { message } => assert!(
            message.ends_with("exec: \"wget\": executable file not found in $PATH: unknown"),
            "{message}"
        ),
        other => panic!("expected a start failure, got {other:?}"),
    }
    let r = run(&s, &["/bin/zsh"]).await;
    assert!(
        matches!(r.outcome, ExecOutcome::StartFailed { ref message } if message.contains("stat /bin/zsh: no such file or directory"))
    );

    // Inside shells: each dialect's wording, exit 127.
    let r = run(&s, &["bash", "-c", "echo a\nwget x"]).await;
    assert_eq!(r.stderr, "bash: line 2: wget: command not found\n");
    assert_eq!(code(&r), 127);
    let r = run(&s, &["sh", "-c", "wget x"]).await;
    assert_eq!(r.stderr, "sh: 1: wget: not found\n");
    let mut alpine = nginx_target();
    alpine.image = "alpine:3.20".into();
    alpine.tools = vec!["sh".into(), "busybox".into()];
    let r = run_in(&alpine, &s, &["sh", "-c", "curl x"], "").await;
    assert_eq!(r.stderr, "sh: curl: not found\n");
    assert_eq!(code(&r), 127);
}

#[tokio::test]
async fn syntax_errors_exit_2() {
    let s = FakeServices::new(1.0);
    let r = run(&s, &["bash", "-c", "echo 'oops"]).await;
    assert_eq!(
        r.stderr,
        "bash: -c: line 1: unexpected EOF while looking for matching `''\n"
    );
    assert_eq!(code(&r), 2);
    let r = run(&s, &["sh", "-c", "&& echo"]).await;
    assert_eq!(r.stderr, "sh: 1: Syntax error: \"&&\" unexpected\n");
    assert_eq!(code(&r), 2);
    let r = run(&s, &["bash", "-c", "if true; then echo; fi"]).await;
    assert!(
        r.stderr.contains("unsupported shell syntax"),
        "{}",
        r.stderr
    );
}

#[tokio::test]
async fn env_and_builtins() {
    let s = FakeServices::new(1.0);
    let r = run(&s, &["env"]).await;
    assert!(
        r.stdout.starts_with("PATH=/usr/local/sbin:"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("\nHOSTNAME=np-test-nginx-1-7d9c8b5f4-abcde\n")
    );
    assert!(r.stdout.contains("\nNGINX_VERSION=1.29.0\n"));
    let r = run(&s, &["sh", "-c", "X=1 env | cat; export Y=2; env"]).await;
    assert!(r.stdout.contains("X=1\n"));
    assert_eq!(
        r.stdout.matches("X=1").count(),
        1,
        "X is only set for one command"
    );
    assert!(r.stdout.contains("Y=2\n"));
    let r = run(&s, &["sh", "-c", "[ a = a ] && test 3 -gt 2 && echo yes"]).await;
    assert_eq!(r.stdout, "yes\n");
}
