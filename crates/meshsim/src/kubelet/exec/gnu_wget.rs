//! A simulated GNU `wget` (1.21, as Debian and Ubuntu images ship it), so that
//! npexec's probe from such a pod (`wget -nv -S --content-on-error
//! [--no-check-certificate] [--method M] -O - -T SECS -t 1 [--header h]...
//! URL`) meets the same messages and exit codes as against a real cluster.
//! Unlike busybox's ([`super::wget`]), GNU wget reads the whole header block
//! of an error answer: with `-S` every header of a 403 is printed (so
//! `server: istio-envoy` and `content-length: 19` are visible), then `URL:`
//! and `DATE ERROR 403: Forbidden.`; the body of an error answer is written
//! only with `--content-on-error`. Exit codes as GNU wget documents them: 0
//! success, 1 generic error, 2 option parse error, 4 network failure (DNS,
//! refused, timeout, reset), 8 the server answered with an error status.
//!
//! Emulated options: exactly those above, plus `--version`. Deliberately not
//! emulated: GNU wget's default (verbose) and quiet logging (`-nv` is
//! required), saving to a file (`-O -` is required), every other option
//! (`-q`, `-v`, `--spider`, `--post-data`, `-U`, ...) and following
//! redirects. Such a command fails with one line, `wget: meshsim does not
//! emulate ...`, and exit 2 (1 for a redirect).

use std::time::Duration;

use futures::future::BoxFuture;

use super::http::{header_options, option_value, parse_url, reason, server_response_headers};
use super::programs::Process;
use crate::traffic::NetOutcome;

/// GNU wget's default read timeout.
const DEFAULT_TIMEOUT: f64 = 900.0;

const USAGE_TAIL: &str =
    "Usage: wget [OPTION]... [URL]...\n\nTry `wget --help' for more options.\n";

/// The start of `wget --version`: the first line is how a client tells GNU
/// wget from busybox's (which has no `--version`).
const VERSION: &str = "GNU Wget 1.21.3 built on linux-gnu.\n\n-cares +digest -gpgme +https +ipv6 +iri +large-file -metalink +nls +ntlm +opie +psl +ssl/gnutls\n\nCopyright (C) 2015 Free Software Foundation, Inc.\nLicense GPLv3+: GNU GPL version 3 or later\n<http://www.gnu.org/licenses/gpl.html>.\nThis is free software: you are free to change and redistribute it.\nThere is NO WARRANTY, to the extent permitted by law.\n";

/// Exit status: generic error.
const EXIT_GENERIC: i32 = 1;
/// Exit status: command-line parse error.
const EXIT_PARSE: i32 = 2;
/// Exit status: network failure.
const EXIT_NETWORK: i32 = 4;
/// Exit status: the server issued an error response.
const EXIT_SERVER: i32 = 8;

#[derive(Debug, Default, Clone)]
struct Args {
    non_verbose: bool,
    to_stdout: bool,
    timeout: Option<f64>,
    server_response: bool,
    content_on_error: bool,
    headers: Vec<String>,
    method: Option<String>,
    urls: Vec<String>,
}

/// Parses GNU wget's command line; `Err((message, exit))`.
fn parse_args(args: &[String]) -> Result<Args, (String, i32)> {
    let mut a = Args::default();
    let mut i = 0;
    let invalid = |msg: String| (format!("{msg}{USAGE_TAIL}"), EXIT_PARSE);
    let not_emulated = |what: &str| {
        (
            format!("wget: meshsim does not emulate {what}\n"),
            EXIT_PARSE,
        )
    };
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if !arg.starts_with('-') || arg == "-" {
            a.urls.push(arg.clone());
            continue;
        }
        let (name, inline) = match arg.strip_prefix("--") {
            Some(long) => match long.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (long.to_string(), None),
            },
            // `-nv`, `-O-`, `-T3`: one short option, its value attached.
            None => {
                let mut cs = arg[1..].chars();
                let c = cs.next().unwrap_or('-');
                let rest: String = cs.collect();
                (c.to_string(), Some(rest).filter(|r| !r.is_empty()))
            }
        };
        match name.as_str() {
            "S" | "server-response" if inline.is_none() => a.server_response = true,
            "content-on-error" => a.content_on_error = true,
            "no-check-certificate" => {}
            "no-verbose" => a.non_verbose = true,
            "O" | "T" | "t" | "n" | "header" | "method" | "output-document" | "timeout"
            | "tries" => {
                let value = option_value(args, &mut i, inline).ok_or_else(|| {
                    invalid(format!("wget: option requires an argument -- '{name}'\n"))
                })?;
                match name.as_str() {
                    "n" if value == "v" => a.non_verbose = true,
                    "O" | "output-document" if value == "-" => a.to_stdout = true,
                    "T" | "timeout" => {
                        let t = value
                            .parse::<f64>()
                            .ok()
                            .filter(|s| s.is_finite() && *s >= 0.0);
                        let msg = format!("wget: --timeout: Invalid time period '{value}'\n");
                        a.timeout = Some(t.ok_or_else(|| invalid(msg))?);
                    }
                    "t" | "tries" => {
                        value.parse::<u32>().map_err(|_| {
                            invalid(format!("wget: --tries: Invalid number '{value}'.\n"))
                        })?;
                    }
                    "header" => a.headers.push(value),
                    "method" => a.method = Some(value.to_ascii_uppercase()),
                    _ => return Err(not_emulated(&format!("option {arg} {value}"))),
                }
            }
            _ => return Err(not_emulated(&format!("option {arg}"))),
        }
    }
    if a.urls.is_empty() {
        return Err((format!("wget: missing URL\n{USAGE_TAIL}"), EXIT_GENERIC));
    }
    if !a.non_verbose || !a.to_stdout {
        return Err(not_emulated(
            "this invocation (only -nv with -O -: no verbose or quiet log, no saving to a file)",
        ));
    }
    Ok(a)
}

/// `2026-12-05 07:30:00`, the time stamp GNU wget's log lines start with.
fn stamp() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// The GNU `wget` program.
pub(crate) fn gnu_wget<'a>(p: Process<'a>, argv: Vec<String>) -> BoxFuture<'a, i32> {
    Box::pin(async move {
        if matches!(argv.get(1).map(String::as_str), Some("--version" | "-V")) {
            let ok = p.out(VERSION.as_bytes()).await;
            return if ok { 0 } else { 3 };
        }
        let args = match parse_args(&argv[1..]) {
            Ok(a) => a,
            Err((msg, code)) => {
                p.err(&msg).await;
                return code;
            }
        };
        let mut status = 0;
        for url in &args.urls {
            let code = fetch(&p, &args, url).await;
            if code != 0 {
                status = code;
            }
        }
        status
    })
}

async fn fetch(p: &Process<'_>, args: &Args, raw: &str) -> i32 {
    // gopher:// is curl's (npexec's TCP probe); wget has no such scheme.
    let url = match parse_url(raw) {
        Ok(u) if u.scheme != "gopher" => u,
        _ => {
            p.err(&format!("{raw}: Unsupported scheme.\n")).await;
            return EXIT_GENERIC;
        }
    };
    let limit = args.timeout.filter(|t| *t > 0.0).unwrap_or(DEFAULT_TIMEOUT);
    let mut headers = vec![
        ("User-Agent".to_string(), "Wget/1.21.3".to_string()),
        ("Accept".to_string(), "*/*".to_string()),
        ("Accept-Encoding".to_string(), "identity".to_string()),
        ("Host".to_string(), url.host_header()),
        ("Connection".to_string(), "Keep-Alive".to_string()),
    ];
    headers.extend(header_options(&args.headers));
    let req = url.request(args.method.clone().unwrap_or_else(|| "GET".into()), headers);
    let shown_url = url.effective();
    let outcome = p.services.network().send(p.target, &req).await;
    // Measured with GNU Wget 1.21.3: a connect that times out or is
    // refused fails before `connected.`; after it, a reset, a close
    // without an answer (Envoy's network RBAC: `No data received.`) or
    // a server that never answers (timed out) ends the transfer.
    let (after, why, answer) = match outcome {
        NetOutcome::DnsFailure => {
            let msg = format!("wget: unable to resolve host address '{}'\n", url.host);
            p.err(&msg).await;
            return EXIT_NETWORK;
        }
        NetOutcome::Http {
            after,
            status,
            headers,
            body,
        } => (after.as_secs_f64(), "", Some((status, headers, body))),
        NetOutcome::Reset { after } => (
            after.as_secs_f64(),
            "Read error (Connection reset by peer) in headers.\n",
            None,
        ),
        // Over TLS the close cuts the handshake (GnuTLS's words).
        NetOutcome::Closed { after } if url.scheme == "https" => (
            after.as_secs_f64(),
            "GnuTLS: The TLS connection was non-properly terminated.\nUnable to establish SSL connection.\n",
            None,
        ),
        NetOutcome::Closed { after } => (after.as_secs_f64(), "No data received.\n", None),
        NetOutcome::Silent => (f64::INFINITY, "", None),
        NetOutcome::ConnectTimeout | NetOutcome::Refused { .. } => {
            let refused = match outcome {
                NetOutcome::Refused { after } => after.as_secs_f64(),
                _ => f64::INFINITY,
            };
            let (refused_msg, timed_out) = (
                "failed: Connection refused.\n",
                "failed: Connection timed out.\n",
            );
            p.fail_within(refused, limit, refused_msg, timed_out).await;
            return EXIT_NETWORK;
        }
    };
    let Some((status, headers, body)) = answer.filter(|_| after < limit) else {
        let timed_out = "Read error (Connection timed out) in headers.\n";
        p.fail_within(after, limit, why, timed_out).await;
        return EXIT_NETWORK;
    };
    p.sleep(Duration::from_secs_f64(after.max(0.0))).await;
    let phrase = reason(status);
    if args.server_response {
        let s = format!("  HTTP/1.1 {status} {phrase}\n");
        p.err(&(s + &server_response_headers(&headers))).await;
    }
    let location = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("location"));
    if matches!(status, 301 | 302 | 303 | 307 | 308) && location {
        p.err("wget: meshsim does not emulate following redirects\n")
            .await;
        return EXIT_GENERIC;
    }
    if !(200..300).contains(&status) {
        if args.content_on_error {
            let _ = p.out(&body).await;
        }
        let stamp = stamp();
        p.err(&format!(
            "{shown_url}:\n{stamp} ERROR {status}: {phrase}.\n\n"
        ))
        .await;
        return EXIT_SERVER;
    }
    if !p.out(&body).await {
        return 3;
    }
    let n = body.len();
    p.err(&format!(
        "{} URL:{shown_url} [{n}/{n}] -> \"-\" [1]\n",
        stamp()
    ))
    .await;
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options() {
        let argv = [
            "-nv",
            "-S",
            "--content-on-error",
            "--method",
            "post",
            "-O",
            "-",
            "-T",
            "3",
            "-t",
            "1",
            "http://h/",
        ];
        let a = parse_args(&v(&argv)).unwrap();
        assert!(a.non_verbose && a.server_response && a.content_on_error && a.to_stdout);
        assert_eq!((a.timeout, a.method.as_deref()), (Some(3.0), Some("POST")));
        let (msg, code) = parse_args(&v(&["-Z", "h"])).unwrap_err();
        assert_eq!(
            (msg.as_str(), code),
            ("wget: meshsim does not emulate option -Z\n", 2)
        );
        let (msg, _) = parse_args(&v(&["-O-", "h"])).unwrap_err();
        assert!(msg.contains("only -nv with -O -"), "{msg}");
        let (msg, code) = parse_args(&v(&["-nv"])).unwrap_err();
        assert_eq!((msg.lines().next(), code), (Some("wget: missing URL"), 1));
    }
}
