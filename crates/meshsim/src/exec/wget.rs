//! A simulated busybox `wget` (busybox 1.36, as in Alpine and busybox images):
//! `-q`, `-O FILE` / `-O-`, `-T SEC`, `-S`, `-U`, `--header`, `--spider`,
//! `--post-data`; `-t N` and GNU's `-nv`/`-nc`/`-nH`/`-np` are accepted and
//! ignored, as busybox does. Every failure prints one `wget: ...` line and
//! exits 1, as busybox does. busybox reads the status line, and stops at a
//! status other than 2xx or 300-303 *before* reading the headers: with `-S`
//! only the status line is printed, then `wget: server returned error: ...`;
//! no header and no body of an error answer ever reaches the user (so an
//! Envoy 403 `RBAC: access denied` shows only as `HTTP/1.1 403 Forbidden`).
//! Images that are not busybox or Alpine have GNU wget instead
//! ([`super::gnu_wget`]). The progress bar busybox draws without `-q` is
//! reproduced in its final state only (one line, full bar).

use std::time::Duration;

use futures::future::BoxFuture;

use super::http::{join, option_value, parse_url, reason};
use super::programs::Process;
use super::{NetOutcome, NetRequest};

/// Whether `target`'s `wget` is busybox's (busybox and Alpine images, or an
/// image that declares a `busybox` executable) rather than GNU wget.
pub fn is_busybox(target: &super::ExecTarget) -> bool {
    let repo = target.image.rsplit('/').next().unwrap_or(&target.image);
    let repo = repo.split([':', '@']).next().unwrap_or(repo);
    matches!(repo, "busybox" | "alpine") || target.tools.iter().any(|t| t == "busybox")
}

/// busybox's default network timeout.
const DEFAULT_TIMEOUT: f64 = 900.0;

const USAGE: &str = "BusyBox v1.36.1 (2023-06-02 00:42:02 UTC) multi-call binary.\n\nUsage: wget [-cqS] [--spider] [-O FILE] [-o LOGFILE] [--header STR]\n\t[--post-data STR | --post-file FILE] [-Y on/off]\n\t[-P DIR] [-U AGENT] [-T SEC] URL...\n\nRetrieve files via HTTP or FTP\n";

#[derive(Debug, Default, Clone)]
pub(crate) struct WgetArgs {
    pub quiet: bool,
    pub output: Option<String>,
    pub timeout: Option<f64>,
    pub server_response: bool,
    pub spider: bool,
    pub user_agent: Option<String>,
    pub headers: Vec<String>,
    pub post_data: Option<String>,
    pub urls: Vec<String>,
}

/// Parses busybox wget's command line; `Err` is the message to print.
pub(crate) fn parse_args(args: &[String]) -> Result<WgetArgs, String> {
    let mut a = WgetArgs::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if !arg.starts_with('-') || arg == "-" {
            a.urls.push(arg.clone());
            continue;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let takes = matches!(
                name,
                "output-document"
                    | "timeout"
                    | "user-agent"
                    | "header"
                    | "post-data"
                    | "post-file"
                    | "directory-prefix"
                    | "proxy"
                    | "output-file"
                    | "tries"
            );
            let value = if takes {
                option_value(args, &mut i, inline)
                    .ok_or_else(|| format!("wget: option '--{name}' requires an argument\n"))?
            } else {
                String::new()
            };
            match name {
                "quiet" => a.quiet = true,
                "output-document" => a.output = Some(value),
                "timeout" => a.timeout = Some(timeout(&value)?),
                "server-response" => a.server_response = true,
                "spider" => a.spider = true,
                "user-agent" => a.user_agent = Some(value),
                "header" => a.headers.push(value),
                "post-data" => a.post_data = Some(value),
                "no-check-certificate" | "continue" | "no-verbose" => {}
                _ if takes => {}
                _ => return Err(format!("wget: unrecognized option '{arg}'\n")),
            }
            continue;
        }
        let chars: Vec<char> = arg[1..].chars().collect();
        let mut j = 0;
        while j < chars.len() {
            let c = chars[j];
            j += 1;
            if c == 'n' {
                // `-n<letter>` (busybox's "n::"): GNU's -nv, -nc, -nH, -np, ignored.
                j = chars.len();
                continue;
            }
            let takes = matches!(c, 'O' | 'T' | 'U' | 'P' | 'Y' | 'o' | 't');
            let value = if takes {
                let rest: String = chars[j..].iter().collect();
                j = chars.len();
                option_value(args, &mut i, Some(rest).filter(|r| !r.is_empty()))
                    .ok_or_else(|| format!("wget: option requires an argument -- '{c}'\n"))?
            } else {
                String::new()
            };
            match c {
                'q' => a.quiet = true,
                'S' => a.server_response = true,
                'c' | 's' => {}
                'O' => a.output = Some(value),
                'T' => a.timeout = Some(timeout(&value)?),
                'U' => a.user_agent = Some(value),
                'P' | 'Y' | 'o' | 't' => {}
                other => return Err(format!("wget: invalid option -- '{other}'\n")),
            }
        }
    }
    if a.urls.is_empty() {
        return Err(String::new());
    }
    Ok(a)
}

fn timeout(v: &str) -> Result<f64, String> {
    v.parse::<u32>()
        .map(f64::from)
        .map_err(|_| format!("wget: invalid number '{v}'\n"))
}

/// The `wget` program.
pub(crate) fn wget<'a>(p: Process<'a>, argv: Vec<String>) -> BoxFuture<'a, i32> {
    Box::pin(async move {
        let args = match parse_args(&argv[1..]) {
            Ok(a) => a,
            Err(msg) => {
                p.err(&format!("{msg}{USAGE}")).await;
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

async fn fetch(p: &Process<'_>, args: &WgetArgs, raw: &str) -> i32 {
    // gopher:// is curl's (npexec's TCP probe); wget has no such scheme.
    let mut url = match parse_url(raw) {
        Ok(u) if u.scheme != "gopher" => u,
        _ => {
            p.err(&format!("wget: not an http or ftp url: {raw}\n"))
                .await;
            return 1;
        }
    };
    let limit = args.timeout.filter(|t| *t > 0.0).unwrap_or(DEFAULT_TIMEOUT);
    let network = p.services.network();
    let mut waited = 0.0f64;
    let mut redirects = 0;
    loop {
        let method = if args.post_data.is_some() {
            "POST"
        } else {
            "GET"
        };
        let mut headers = vec![
            ("Host".to_string(), url.host_header()),
            (
                "User-Agent".to_string(),
                args.user_agent.clone().unwrap_or_else(|| "Wget".into()),
            ),
        ];
        for h in &args.headers {
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        headers.push(("Connection".into(), "close".into()));
        let req = NetRequest {
            method: method.into(),
            scheme: url.scheme.clone(),
            host: url.host.clone(),
            port: url.port,
            path: url.path.clone(),
            headers,
            body: args.post_data.as_ref().map(|d| d.clone().into_bytes()),
        };
        let ip = network
            .resolve(p.target, &url.host)
            .unwrap_or_else(|| url.host.clone());
        let outcome = network.send(p.target, &req).await;
        if !matches!(outcome, NetOutcome::DnsFailure) && !args.quiet {
            p.err(&format!("Connecting to {} ({ip}:{})\n", url.host, url.port))
                .await;
        }
        let left = (limit - waited).max(0.0);
        let wait = |secs: f64| p.sleep(Duration::from_secs_f64(secs.max(0.0)));
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
                if after > 0.0 && after >= left {
                    wait(left).await;
                    p.err("wget: download timed out\n").await;
                } else {
                    wait(after).await;
                    p.err(&msg).await;
                }
                return 1;
            }
        };
        if after >= left {
            wait(left).await;
            p.err("wget: download timed out\n").await;
            return 1;
        }
        wait(after).await;
        waited += after;
        let status_line = format!("HTTP/1.1 {status} {}", reason(status));
        if args.server_response {
            p.err(&format!("  {status_line}\n")).await;
        }
        // busybox accepts 2xx (but 206 without a range) and 300-303;
        // anything else ends it before the headers are read.
        let accepted = matches!(status, 200..=205 | 300..=303);
        if !accepted {
            p.err(&format!("wget: server returned error: {status_line}\n"))
                .await;
            return 1;
        }
        if args.server_response {
            let mut s = String::new();
            for (k, v) in &headers {
                s.push_str(&format!("  {k}: {v}\n"));
            }
            p.err(&s).await;
        }
        if matches!(status, 300..=303)
            && let Some((_, loc)) = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("location"))
        {
            redirects += 1;
            if redirects > 20 {
                p.err("wget: too many redirections\n").await;
                return 1;
            }
            match join(&url, loc) {
                Ok(next) => {
                    url = next;
                    continue;
                }
                Err(_) => {
                    p.err(&format!("wget: not an http or ftp url: {loc}\n"))
                        .await;
                    return 1;
                }
            }
        }
        if args.spider {
            if !args.quiet {
                p.err("remote file exists\n").await;
            }
            return 0;
        }
        return deliver(p, args, &url.path, &body).await;
    }
}

/// Writes the body to stdout (`-O-`) or a virtual file, with busybox's chatter.
async fn deliver(p: &Process<'_>, args: &WgetArgs, path: &str, body: &[u8]) -> i32 {
    let file = super::http::output_file(args.output.as_deref(), path);
    let to_stdout = file == "-";
    if !args.quiet {
        if to_stdout {
            p.err("writing to stdout\n").await;
        } else {
            p.err(&format!("saving to '{file}'\n")).await;
        }
    }
    if to_stdout {
        if !p.out(body).await {
            return 1;
        }
    } else {
        p.fs.write(&file, body.to_vec());
    }
    if !args.quiet {
        let shown = if to_stdout { "-" } else { file.as_str() };
        p.err(&format!(
            "{:<20.20}100% |{}| {:>5}  0:00:00 ETA\n",
            shown,
            "*".repeat(32),
            body.len()
        ))
        .await;
        if to_stdout {
            p.err("written to stdout\n").await;
        } else {
            p.err(&format!("'{file}' saved\n")).await;
        }
    }
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
        let a = parse_args(&v(&["-qO-", "-T", "3", "http://h/"])).unwrap();
        assert!(a.quiet);
        assert_eq!(a.output.as_deref(), Some("-"));
        assert_eq!(a.timeout, Some(3.0));
        let a = parse_args(&v(&["--timeout=2", "--output-document", "/tmp/x", "h"])).unwrap();
        assert_eq!(
            (a.timeout, a.output.as_deref()),
            (Some(2.0), Some("/tmp/x"))
        );
        assert!(
            parse_args(&v(&["-Z", "h"]))
                .unwrap_err()
                .contains("invalid option -- 'Z'")
        );
        assert!(parse_args(&v(&["-q"])).is_err());
        let a = parse_args(&v(&["-nv", "-S", "-O", "-", "-T", "2", "-t", "1", "h"])).unwrap();
        assert!(a.server_response && !a.quiet);
        assert_eq!(a.urls, ["h"]);
    }
}
