//! The command table and the shell, driven through `run_command` without
//! WebSockets: the walk-through's exact `bash -c` strings, quoting, `exit`,
//! redirections, missing executables and what the shell deliberately
//! refuses.

mod exec_common;

use std::time::Duration;

use exec_common::*;
use meshsim::kubelet::exec::ExecOutcome;
use meshsim::traffic::NetOutcome;

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
    let r = run(&s, &["sh", "-c", "curl -sS -m 3 slow; echo done"]).await;
    assert_eq!(code(&r), 0);
    assert_eq!(r.stdout, "done\n");
    assert_eq!(started.elapsed(), Duration::from_millis(30));
    assert_eq!(
        r.stderr,
        "curl: (28) Connection timed out after 3001 milliseconds\n"
    );
}

#[tokio::test]
async fn quoting_and_no_expansions() {
    let s = FakeServices::new(1.0);
    let r = run(
        &s,
        &[
            "sh",
            "-c",
            r#"echo "two  words" '$A' \$A ''; false; echo "a\"b" # comment
echo 'x'\
y"#,
        ],
    )
    .await;
    assert_eq!(r.stdout, "two  words $A $A \na\"b\nxy\n");
    assert_eq!(code(&r), 0);
    // `$` expansions are not emulated: said so, nothing runs.
    let r = run(&s, &["sh", "-c", "echo first; echo $HOSTNAME"]).await;
    assert_eq!(
        (r.stdout.as_str(), r.stderr.as_str(), code(&r)),
        ("", "sh: meshsim does not emulate $ expansions\n", 2)
    );
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

    let r = run(&s, &["sh", "-c", "exit 300"]).await;
    assert_eq!(code(&r), 44);
}

#[tokio::test]
async fn redirections_and_cat() {
    let s = FakeServices::new(1.0);
    let r = run(
        &s,
        &[
            "bash",
            "-c",
            "echo err >&2; echo out 2>&1; echo gone >/dev/null; echo quiet 2> /dev/null >&2",
        ],
    )
    .await;
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("out\n", "err\n"));
    let r = run(&s, &["bash", "-c", "echo one > /tmp/f"]).await;
    assert_eq!(
        (r.stderr.as_str(), code(&r)),
        (
            "bash: meshsim does not emulate redirection to \"/tmp/f\" (only /dev/null, >&2 and 2>&1)\n",
            2
        )
    );

    let r = run_in(&nginx_target(), &s, &["cat"], "from stdin\n").await;
    assert_eq!(r.stdout, "from stdin\n");
    let r = run_in(&nginx_target(), &s, &["cat", "-"], "dash\n").await;
    assert_eq!(r.stdout, "dash\n");
    let r = run(&s, &["cat", "/etc/hostname"]).await;
    assert_eq!(
        (r.stderr.as_str(), code(&r)),
        (
            "cat: /etc/hostname: meshsim does not emulate files (cat copies stdin only)\n",
            1
        )
    );

    let r = run(&s, &["sh", "-c", "echo -n no-newline"]).await;
    assert_eq!(r.stdout, "no-newline");
}

#[tokio::test]
async fn only_sh_c_is_simulated() {
    let s = FakeServices::new(1.0);
    let r = run_in(&nginx_target(), &s, &["sh"], "echo a\n").await;
    assert_eq!(
        r.stderr,
        "sh: meshsim does not emulate this shell invocation (only `sh -c SCRIPT`: no options, no interactive shell, no script from stdin or a file)\n"
    );
    assert_eq!(r.stdout, "");
    assert_eq!(code(&r), 126);
    let r = run(&s, &["bash", "-c"]).await;
    assert_eq!(r.stderr, "bash: -c: option requires an argument\n");
    assert_eq!(code(&r), 2);
    // Shell options are not emulated.
    let r = run(&s, &["bash", "-e", "-c", "echo ok"]).await;
    assert_eq!((r.stdout.as_str(), code(&r)), ("", 126));
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
    assert_eq!(code(&r), 127);
    // Declared by the image but not simulated: said so, 126.
    let r = run(&s, &["sh", "-c", "hostname"]).await;
    assert!(
        r.stderr
            .starts_with("meshsim: hostname: meshsim does not emulate this program"),
        "{}",
        r.stderr
    );
    assert_eq!(code(&r), 126);
}

#[tokio::test]
async fn syntax_errors_and_unsupported_syntax_exit_2() {
    let s = FakeServices::new(1.0);
    let r = run(&s, &["bash", "-c", "echo 'oops"]).await;
    assert_eq!(
        r.stderr,
        "bash: -c: line 1: syntax error: unterminated quote '\n"
    );
    assert_eq!(code(&r), 2);
    let r = run(&s, &["sh", "-c", "&& echo"]).await;
    assert_eq!(
        r.stderr,
        "sh: -c: line 1: syntax error: unexpected token `&&'\n"
    );
    assert_eq!(code(&r), 2);
    // Nothing of a script with unsupported syntax runs.
    let r = run(&s, &["bash", "-c", "echo first; echo a | cat"]).await;
    assert_eq!(r.stdout, "");
    assert_eq!(r.stderr, "bash: meshsim does not emulate |\n");
    assert_eq!(code(&r), 2);
    let r = run(&s, &["bash", "-c", "if true; then echo; fi"]).await;
    assert_eq!(r.stderr, "bash: meshsim does not emulate if\n");
}
