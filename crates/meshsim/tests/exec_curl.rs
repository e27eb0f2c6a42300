//! Every curl and wget outcome class against a fake network: exit codes,
//! stdout and stderr for the options npexec, the walk-through and the
//! scripts pass, and the one-line refusal of what meshsim does not emulate.

mod exec_common;

use std::time::Duration;

use exec_common::*;
use meshsim::traffic::{Container, NetOutcome};

fn wget_target() -> Container {
    let mut t = nginx_target();
    t.image = "busybox:1.36".into();
    t.tools = vec!["sh".into(), "wget".into(), "cat".into()];
    t
}

fn services() -> std::sync::Arc<FakeServices> {
    let s = FakeServices::new(1.0);
    s.net.route("good", ok("hello"));
    s.net.route("denied", rbac_denied());
    s.net.route("dropped", NetOutcome::ConnectTimeout);
    s.net.route(
        "refused",
        NetOutcome::Refused {
            after: Duration::from_millis(4),
        },
    );
    s.net.route(
        "reset",
        NetOutcome::Reset {
            after: Duration::from_millis(3),
        },
    );
    s.net.route(
        "slow",
        NetOutcome::Http {
            after: Duration::from_secs(10),
            status: 200,
            headers: vec![],
            body: b"late".to_vec(),
        },
    );
    s
}

#[tokio::test(start_paused = true)]
async fn curl_errors_silent_and_shown() {
    let s = services();
    let cases: &[(&str, i32, &str)] = &[
        ("nope", 6, "curl: (6) Could not resolve host: nope\n"),
        (
            "refused",
            7,
            "curl: (7) Failed to connect to refused port 80 after 4 ms: Couldn't connect to server\n",
        ),
        (
            "dropped",
            28,
            "curl: (28) Connection timed out after 3001 milliseconds\n",
        ),
        (
            "reset",
            56,
            "curl: (56) Recv failure: Connection reset by peer\n",
        ),
        (
            "slow",
            28,
            "curl: (28) Operation timed out after 3001 milliseconds with 0 bytes received\n",
        ),
        (
            "denied",
            22,
            "curl: (22) The requested URL returned error: 403\n",
        ),
    ];
    for (host, exit, msg) in cases {
        let r = run(&s, &["curl", "-sf", "-m", "3", host]).await;
        assert_eq!(code(&r), *exit, "{host}");
        assert_eq!(r.stderr, "", "{host}: -s hides errors");
        assert_eq!(r.stdout, "", "{host}");
        let r = run(&s, &["curl", "-sSf", "--max-time", "3", host]).await;
        assert_eq!(code(&r), *exit, "{host}");
        assert_eq!(r.stderr, *msg, "{host}");
    }
}

#[tokio::test(start_paused = true)]
async fn curl_connect_timeout_wording_and_wait() {
    let s = services();
    // Past curl's 300 s connect timeout, --max-time no longer decides.
    let started = tokio::time::Instant::now();
    let r = run(&s, &["curl", "-sS", "--max-time", "400", "dropped"]).await;
    assert_eq!(started.elapsed(), Duration::from_secs(300));
    assert_eq!(code(&r), 28);
    assert_eq!(r.stderr, "curl: (28) Connection timeout after 300001 ms\n");
}

#[tokio::test(start_paused = true)]
async fn curl_bodies_and_write_out() {
    let s = services();
    // Without -f a 403 is a successful transfer: body printed as is.
    let r = run(&s, &["curl", "-s", "denied"]).await;
    assert_eq!((code(&r), r.stdout.as_str()), (0, "RBAC: access denied"));

    let r = run(
        &s,
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}\\n",
            "denied",
        ],
    )
    .await;
    assert_eq!(r.stdout, "403\n");
    let r = run(
        &s,
        &["curl", "-s", "-w", "%{http_code}", "-m", "3", "dropped"],
    )
    .await;
    assert_eq!((code(&r), r.stdout.as_str()), (28, "000"));
    let r = run(&s, &["curl", "-sf", "-w", "[%{http_code}]", "denied"]).await;
    assert_eq!((code(&r), r.stdout.as_str()), (22, "[403]"));

    let r = run(
        &s,
        &[
            "curl",
            "-s",
            "-X",
            "POST",
            "-H",
            "x-probe: 1",
            "http://good:8080/a?b=c",
        ],
    )
    .await;
    assert_eq!(r.stdout, "hello");
    let seen = s.net.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (seen.method.as_str(), seen.port, seen.path.as_str()),
        ("POST", 8080, "/a?b=c")
    );
    assert!(seen.headers.contains(&("Host".into(), "good:8080".into())));
    assert!(seen.headers.contains(&("x-probe".into(), "1".into())));
}

#[tokio::test(start_paused = true)]
async fn curl_refuses_what_it_does_not_emulate() {
    let s = services();
    for (argv, msg) in [
        (
            &["curl", "good"][..],
            "curl: meshsim does not emulate the progress meter (add -s, or run with a terminal)\n",
        ),
        (
            &["curl", "-sv", "good"],
            "curl: meshsim does not emulate option -v\n",
        ),
        (
            &["curl", "-s", "--max-time=3", "good"],
            "curl: meshsim does not emulate option --max-time=3\n",
        ),
        (
            &["curl", "-s", "-o", "/tmp/x", "good"],
            "curl: meshsim does not emulate writing files (-o /tmp/x; only /dev/null and -)\n",
        ),
    ] {
        let r = run(&s, argv).await;
        assert_eq!(
            (code(&r), r.stdout.as_str(), r.stderr.as_str()),
            (2, "", msg),
            "{argv:?}"
        );
    }
    let r = run(&s, &["curl", "-s", "-w", "%{nope}|%{http_code}", "good"]).await;
    assert_eq!(
        (code(&r), r.stdout.as_str(), r.stderr.as_str()),
        (
            0,
            "hello|200",
            "curl: meshsim does not emulate --write-out variable 'nope'\n"
        )
    );
    let r = run(&s, &["curl", "-s", "-m", "x", "good"]).await;
    assert_eq!(
        r.stderr,
        "curl: option -m: expected a proper numerical parameter\ncurl: try 'curl --help' or 'curl --manual' for more information\n"
    );
    let r = run(&s, &["curl", "-s", "ftp://good/"]).await;
    assert_eq!(code(&r), 1);
}

#[tokio::test(start_paused = true)]
async fn wget_outcomes() {
    let s = services();
    let t = wget_target();
    let r = run_in(&t, &s, &["wget", "-O-", "good"], "").await;
    assert_eq!(
        (code(&r), r.stdout.as_str(), r.stderr.as_str()),
        (
            0,
            "hello",
            "Connecting to good (10.96.0.42:80)\nwriting to stdout\n-                   100% |********************************|     5  0:00:00 ETA\nwritten to stdout\n"
        )
    );

    let cases: &[(&str, &str)] = &[
        ("nope", "wget: bad address 'nope'\n"),
        (
            "denied",
            "wget: server returned error: HTTP/1.1 403 Forbidden\n",
        ),
        ("dropped", "wget: download timed out\n"),
        ("slow", "wget: download timed out\n"),
        (
            "refused",
            "wget: can't connect to remote host (10.96.0.42): Connection refused\n",
        ),
        (
            "reset",
            "wget: error getting response: Connection reset by peer\n",
        ),
    ];
    for (host, msg) in cases {
        let started = tokio::time::Instant::now();
        let r = run_in(&t, &s, &["wget", "-O-", "-T", "2", host], "").await;
        assert_eq!(code(&r), 1, "{host}");
        let connecting = format!("Connecting to {host} (10.96.0.42:80)\n");
        let want = if *host == "nope" { "" } else { &connecting };
        assert_eq!(r.stderr, format!("{want}{msg}"), "{host}");
        assert!(started.elapsed() <= Duration::from_secs(2), "{host}");
    }

    for (argv, msg) in [
        (&["wget", "-q", "-O-", "good"][..], "option -q"),
        (
            &["wget", "-O", "/tmp/page", "good"],
            "saving to a file (-O /tmp/page)",
        ),
        (&["wget", "good"], "saving to a file (only -O -)"),
    ] {
        let r = run_in(&t, &s, argv, "").await;
        let want = format!("wget: meshsim does not emulate {msg}\n");
        assert_eq!((code(&r), r.stderr), (1, want), "{argv:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn curl_removes_dot_segments() {
    let s = services();
    let sent = |s: &std::sync::Arc<FakeServices>| {
        let seen = s.net.seen.lock().unwrap();
        seen.last().map(|r| r.path.clone()).unwrap_or_default()
    };
    let r = run(&s, &["curl", "-s", "http://good/admin/./panel?a=/../b"]).await;
    assert_eq!(code(&r), 0);
    assert_eq!(sent(&s), "/admin/panel?a=/../b");
    let r = run(&s, &["curl", "-s", "good/x/../admin/panel"]).await;
    assert_eq!(code(&r), 0);
    assert_eq!(sent(&s), "/admin/panel");
    // Percent-encoded dots are not dot segments for curl.
    let r = run(&s, &["curl", "-s", "good/admin/%2e/panel"]).await;
    assert_eq!(code(&r), 0);
    assert_eq!(sent(&s), "/admin/%2e/panel");
}

/// busybox stops at an error status before reading the headers: with `-S`
/// only the status line shows, never Envoy's `server`/`content-length` nor
/// the body; `-nv` and `-t` are accepted (and ignored) as busybox does.
#[tokio::test(start_paused = true)]
async fn busybox_wget_shows_only_the_status_line_of_an_error() {
    let s = services();
    let t = wget_target();
    let argv = [
        "wget", "-nv", "-S", "-O", "-", "-T", "2", "-t", "1", "denied",
    ];
    let r = run_in(&t, &s, &argv, "").await;
    assert_eq!(code(&r), 1);
    assert_eq!(r.stdout, "");
    assert_eq!(
        r.stderr,
        "Connecting to denied (10.96.0.42:80)\n  HTTP/1.1 403 Forbidden\nwget: server returned error: HTTP/1.1 403 Forbidden\n"
    );
    let argv = ["wget", "-nv", "-S", "-O", "-", "-T", "2", "-t", "1", "good"];
    let r = run_in(&t, &s, &argv, "").await;
    assert_eq!((code(&r), r.stdout.as_str()), (0, "hello"));
    assert!(r.stderr.contains("  HTTP/1.1 200 OK\n"), "{}", r.stderr);
}

fn gnu_wget_target() -> Container {
    let mut t = nginx_target();
    t.image = "debian:bookworm".into();
    t.tools = vec!["sh".into(), "wget".into(), "cat".into()];
    t
}

/// GNU wget: every header of an error answer with `-S`, `ERROR 403` and exit
/// 8; network failures exit 4 with GNU's own texts.
#[tokio::test(start_paused = true)]
async fn gnu_wget_outcomes() {
    let s = services();
    let t = gnu_wget_target();
    let probe =
        |host: &'static str| vec!["wget", "-nv", "-S", "-O", "-", "-T", "2", "-t", "1", host];
    let r = run_in(&t, &s, &probe("denied"), "").await;
    assert_eq!((code(&r), r.stdout.as_str()), (8, ""));
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(
        &lines[..5],
        [
            "  HTTP/1.1 403 Forbidden",
            "  content-length: 19",
            "  content-type: text/plain",
            "  server: envoy",
            "http://denied/:"
        ]
    );
    assert!(lines[5].ends_with(" ERROR 403: Forbidden."), "{}", r.stderr);

    let r = run_in(&t, &s, &probe("good"), "").await;
    assert_eq!((code(&r), r.stdout.as_str()), (0, "hello"));
    assert!(
        r.stderr.contains(" URL:http://good/ [5/5] -> \"-\" [1]\n"),
        "{}",
        r.stderr
    );

    for (host, msg) in [
        ("nope", "wget: unable to resolve host address 'nope'\n"),
        ("dropped", "failed: Connection timed out.\n"),
        ("refused", "failed: Connection refused.\n"),
        (
            "reset",
            "Read error (Connection reset by peer) in headers.\n",
        ),
        ("slow", "Read error (Connection timed out) in headers.\n"),
    ] {
        let started = tokio::time::Instant::now();
        let r = run_in(&t, &s, &probe(host), "").await;
        assert_eq!((code(&r), r.stderr.as_str()), (4, msg), "{host}");
        assert!(started.elapsed() <= Duration::from_secs(2), "{host}");
    }
    let r = run_in(&t, &s, &["wget", "-q", "-S", "-O-", "denied"], "").await;
    assert_eq!(
        (code(&r), r.stderr.as_str()),
        (2, "wget: meshsim does not emulate option -q\n")
    );
    let r = run_in(&t, &s, &["wget", "-Z", "good"], "").await;
    assert_eq!(code(&r), 2);
}

/// A connection closed without an answer (Envoy's network RBAC) and one that
/// stays silent, as curl 7.88.1 reports them per scheme (measured against
/// Envoy 1.40) and as busybox wget does.
#[tokio::test(start_paused = true)]
async fn closed_and_silent_connections() {
    let s = services();
    s.net.route(
        "closed",
        NetOutcome::Closed {
            after: Duration::from_millis(2),
        },
    );
    s.net.route("silent", NetOutcome::Silent);
    let cases: &[(&str, i32, &str, &str)] = &[
        (
            "http://closed/",
            52,
            "\n000 0.002000\n",
            "curl: (52) Empty reply from server\n",
        ),
        (
            "https://closed/",
            35,
            "\n000 0.002000\n",
            "curl: (35) OpenSSL SSL_connect: SSL_ERROR_SYSCALL in connection to closed:443 \n",
        ),
        ("gopher://closed:6379/", 0, "\n000 0.002000\n", ""),
        (
            "gopher://silent:6379/",
            28,
            "\n000 3.000000\n",
            "curl: (28) Operation timed out after 3001 milliseconds with 0 bytes received\n",
        ),
    ];
    for (url, exit, out, err) in cases {
        let r = run(
            &s,
            &[
                "curl",
                "-sS",
                "-k",
                "-m",
                "3",
                "-w",
                "\\n%{http_code} %{time_total}\\n",
                url,
            ],
        )
        .await;
        assert_eq!(
            (code(&r), r.stdout.as_str(), r.stderr.as_str()),
            (*exit, *out, *err),
            "{url}"
        );
    }
    let t = wget_target();
    for (host, err) in [
        ("closed", "wget: error getting response\n"),
        ("silent", "wget: download timed out\n"),
    ] {
        let r = run_in(&t, &s, &["wget", "-O", "-", "-T", "2", host], "").await;
        let want = format!("Connecting to {host} (10.96.0.42:80)\n{err}");
        assert_eq!((code(&r), r.stderr), (1, want), "{host}");
    }
    let r = run_in(&t, &s, &["wget", "-O-", "gopher://closed/"], "").await;
    assert_eq!(r.stderr, "wget: not an http or ftp url: gopher://closed/\n");
}
