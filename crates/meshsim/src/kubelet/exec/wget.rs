//! A simulated busybox `wget` (busybox 1.36, as in Alpine and busybox images),
//! for npexec's probe `wget -nv -S -O - -T SECS -t 1 [--header h]... URL`.
//! Every failure prints one `wget: ...` line and exits 1, as busybox does.
//! busybox reads the status line, and stops at a status other than 2xx or
//! 300-303 *before* reading the headers: with `-S` only the status line is
//! printed, then `wget: server returned error: ...`; no header and no body of
//! an error answer ever reaches the user (so an Envoy 403 `RBAC: access
//! denied` shows only as `HTTP/1.1 403 Forbidden`). Images that are not
//! busybox or Alpine have GNU wget instead ([`super::gnu_wget`]). The
//! progress bar busybox draws is reproduced in its final state only (one
//! line, full bar). `wget --version` fails as busybox's does (it has none),
//! which is how npexec tells it from GNU wget.
//!
//! Emulated options: `-S`, `-O -`, `-T SEC`, `--header`, and `-nv`/`-t N`
//! (accepted and ignored, as busybox does). Deliberately not emulated: every
//! other option (`-q`, `--spider`, `-U`, `--post-data`, ...), saving to a
//! file (no `-O -`), following redirects. Such a command fails with one line,
//! `wget: meshsim does not emulate ...`, and exit 1.

use std::time::Duration;

use futures::future::BoxFuture;

use super::http::{header_options, option_value, parse_url, reason, server_response_headers};
use super::programs::Process;
use crate::traffic::NetOutcome;

/// Whether `target`'s `wget` is busybox's (busybox and Alpine images, or an
/// image that declares a `busybox` executable) rather than GNU wget.
pub fn is_busybox(target: &crate::traffic::Container) -> bool {
    let repo = target.image.rsplit('/').next().unwrap_or(&target.image);
    let repo = repo.split([':', '@']).next().unwrap_or(repo);
    matches!(repo, "busybox" | "alpine") || target.tools.iter().any(|t| t == "busybox")
}

/// busybox's default network timeout.
const DEFAULT_TIMEOUT: f64 = 900.0;

const USAGE: &str = "BusyBox v1.36.1 (2023-06-02 00:42:02 UTC) multi-call binary.\n\nUsage: wget [-cqS] [--spider] [-O FILE] [-o LOGFILE] [--header STR]\n\t[--post-data STR | --post-file FILE] [-Y on/off]\n\t[-P DIR] [-U AGENT] [-T SEC] URL...\n\nRetrieve files via HTTP or FTP\n";

#[derive(Debug, Default, Clone)]
pub(crate) struct WgetArgs {
    pub to_stdout: bool,
    pub timeout: Option<f64>,
    pub server_response: bool,
    pub headers: Vec<String>,
    pub urls: Vec<String>,
}

/// Parses busybox wget's command line; `Err` is the message to print.
pub(crate) fn parse_args(args: &[String]) -> Result<WgetArgs, String> {
    let mut a = WgetArgs::default();
    let mut i = 0;
    let not_emulated = |what: &str| format!("wget: meshsim does not emulate {what}\n");
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if !arg.starts_with('-') || arg == "-" {
            a.urls.push(arg.clone());
            continue;
        }
        let (opt, inline) = match arg.strip_prefix("--") {
            Some(long) => match long {
                "header" => ('H', None),
                "server-response" => ('S', None),
                "timeout" => ('T', None),
                "output-document" => ('O', None),
                "version" => return Err(format!("wget: unrecognized option '{arg}'\n{USAGE}")),
                _ => return Err(not_emulated(&format!("option {arg}"))),
            },
            // `-nv` (busybox's "n::" takes the rest); `-O-`, `-T3`.
            None => {
                let mut cs = arg[1..].chars();
                let c = cs.next().unwrap_or('-');
                let rest: String = cs.collect();
                (c, Some(rest).filter(|r| !r.is_empty()))
            }
        };
        if opt == 'S' && inline.is_none() {
            a.server_response = true;
            continue;
        }
        if opt == 'n' && inline.is_some() {
            continue;
        }
        if !matches!(opt, 'O' | 'T' | 't' | 'H') {
            return Err(not_emulated(&format!("option {arg}")));
        }
        let value = option_value(args, &mut i, inline)
            .ok_or_else(|| format!("wget: option requires an argument -- '{opt}'\n{USAGE}"))?;
        match opt {
            'O' if value == "-" => a.to_stdout = true,
            'O' => return Err(not_emulated(&format!("saving to a file (-O {value})"))),
            'T' => {
                let t = value.parse::<u32>();
                a.timeout = Some(f64::from(
                    t.map_err(|_| format!("wget: invalid number '{value}'\n"))?,
                ));
            }
            'H' => a.headers.push(value),
            _ => {}
        }
    }
    if a.urls.is_empty() {
        return Err(USAGE.to_string());
    }
    if !a.to_stdout {
        return Err(not_emulated("saving to a file (only -O -)"));
    }
    Ok(a)
}

/// The `wget` program.
pub(crate) fn wget<'a>(p: Process<'a>, argv: Vec<String>) -> BoxFuture<'a, i32> {
    Box::pin(async move {
        let args = match parse_args(&argv[1..]) {
            Ok(a) => a,
            Err(msg) => {
                p.err(&msg).await;
                return 1;
            }
        };
        for url in &args.urls {
            let code = fetch(&p, &args, url).await;
            if code != 0 {
                return code;
            }
        }
        0
    })
}

/// What busybox wget prints when its `-T` limit comes first.
const TIMED_OUT: &str = "wget: download timed out\n";

async fn fetch(p: &Process<'_>, args: &WgetArgs, raw: &str) -> i32 {
    // gopher:// is curl's (npexec's TCP probe); wget has no such scheme.
    let url = match parse_url(raw) {
        Ok(u) if u.scheme != "gopher" => u,
        _ => {
            p.err(&format!("wget: not an http or ftp url: {raw}\n"))
                .await;
            return 1;
        }
    };
    let limit = args.timeout.filter(|t| *t > 0.0).unwrap_or(DEFAULT_TIMEOUT);
    let network = p.services.network();
    let mut headers = vec![
        ("Host".to_string(), url.host_header()),
        ("User-Agent".to_string(), "Wget".to_string()),
    ];
    headers.extend(header_options(&args.headers));
    headers.push(("Connection".into(), "close".into()));
    let req = url.request("GET".into(), headers);
    let ip = network
        .resolve(p.target, &url.host)
        .unwrap_or_else(|| url.host.clone());
    let outcome = network.send(p.target, &req).await;
    if !matches!(outcome, NetOutcome::DnsFailure) {
        p.err(&format!("Connecting to {} ({ip}:{})\n", url.host, url.port))
            .await;
    }
    // Every failure: what busybox prints, once it happens within -T.
    let (after, status, headers, body) = match outcome {
        NetOutcome::Http {
            after,
            status,
            headers,
            body,
        } => (after.as_secs_f64(), status, headers, body),
        failure => {
            let (after, msg) = match failure {
                NetOutcome::DnsFailure => (0.0, format!("wget: bad address '{}'\n", url.host)),
                NetOutcome::Refused { after } => (
                    after.as_secs_f64(),
                    format!("wget: can't connect to remote host ({ip}): Connection refused\n"),
                ),
                NetOutcome::Reset { after } => (
                    after.as_secs_f64(),
                    "wget: error getting response: Connection reset by peer\n".into(),
                ),
                // An orderly close before the status line: fgets fails
                // with errno 0, so perror adds no reason (busybox's
                // networking/wget.c; read from the source: busybox wget
                // crashes on the machine this was measured on).
                NetOutcome::Closed { after } => {
                    (after.as_secs_f64(), "wget: error getting response\n".into())
                }
                // No connect, or a server that never answers.
                _ => (f64::INFINITY, String::new()),
            };
            p.fail_within(after, limit, &msg, TIMED_OUT).await;
            return 1;
        }
    };
    if after >= limit {
        p.fail_within(after, limit, "", TIMED_OUT).await;
        return 1;
    }
    p.sleep(Duration::from_secs_f64(after.max(0.0))).await;
    let status_line = format!("HTTP/1.1 {status} {}", reason(status));
    if args.server_response {
        p.err(&format!("  {status_line}\n")).await;
    }
    // busybox accepts 2xx (but 206 without a range) and 300-303;
    // anything else ends it before the headers are read.
    if !matches!(status, 200..=205 | 300..=303) {
        p.err(&format!("wget: server returned error: {status_line}\n"))
            .await;
        return 1;
    }
    if args.server_response {
        p.err(&server_response_headers(&headers)).await;
    }
    if status >= 300
        && headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("location"))
    {
        p.err("wget: meshsim does not emulate following redirects\n")
            .await;
        return 1;
    }
    p.err("writing to stdout\n").await;
    if !p.out(&body).await {
        return 1;
    }
    p.err(&format!(
        "{:<20.20}100% |{}| {:>5}  0:00:00 ETA\nwritten to stdout\n",
        "-",
        "*".repeat(32),
        body.len()
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
        let a = parse_args(&v(&["-nv", "-S", "-O", "-", "-T", "2", "-t", "1", "h"])).unwrap();
        assert!(a.server_response && a.to_stdout);
        assert_eq!(
            (a.timeout, a.urls.as_slice()),
            (Some(2.0), &["h".to_string()][..])
        );
        let a = parse_args(&v(&["-O-", "-T3", "--header", "x: 1", "h"])).unwrap();
        assert_eq!((a.timeout, a.headers.len()), (Some(3.0), 1));
        assert_eq!(
            parse_args(&v(&["-q", "-O-", "h"])).unwrap_err(),
            "wget: meshsim does not emulate option -q\n"
        );
        assert!(
            parse_args(&v(&["h"]))
                .unwrap_err()
                .contains("saving to a file")
        );
        assert!(
            parse_args(&v(&["--version"]))
                .unwrap_err()
                .starts_with("wget: unrecognized option '--version'\nBusyBox v1.36.1")
        );
        assert!(parse_args(&v(&["-T", "x", "-O-", "h"])).is_err());
    }
}
