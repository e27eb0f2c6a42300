//! A simulated GNU `wget` (1.21, as Debian and Ubuntu images ship it), so that
//! a probe from such a pod meets the same messages and exit codes as against a
//! real cluster. Unlike busybox's ([`super::wget`]), GNU wget reads the whole
//! header block of an error answer: with `-S` every header of a 403 is printed
//! (so `server: istio-envoy` and `content-length: 19` are visible), then
//! `URL:` and `DATE ERROR 403: Forbidden.`; the body of an error answer is not
//! written unless `--content-on-error`.
//!
//! Options: `-q`, `-nv`, `-v`, `-S`, `-O FILE`/`-O -`, `-T SEC`, `-t N`,
//! `--header`, `-U`, `--spider`, `--post-data`, `--method`,
//! `--content-on-error`, `--no-check-certificate`. Exit codes as GNU wget
//! documents them: 0 success, 1 generic error (missing URL), 2 option parse
//! error, 4 network failure (DNS, refused, timeout, reset), 8 the server
//! answered with an error status. Logging levels as GNU wget's: `-q` prints
//! nothing (not even `-S`), `-nv` prints the headers (`-S`), the errors and
//! one line per download, the default adds the connection chatter.

use std::time::Duration;

use futures::future::BoxFuture;

use super::http::{join, option_value, parse_url, reason};
use super::programs::Process;
use super::{NetOutcome, NetRequest};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Verbosity {
    Quiet,
    NonVerbose,
    #[default]
    Verbose,
}

#[derive(Debug, Default, Clone)]
struct Args {
    verbosity: Verbosity,
    output: Option<String>,
    timeout: Option<f64>,
    server_response: bool,
    spider: bool,
    content_on_error: bool,
    user_agent: Option<String>,
    headers: Vec<String>,
    post_data: Option<String>,
    method: Option<String>,
    urls: Vec<String>,
}

/// Parses GNU wget's command line; `Err((message, exit))`.
fn parse_args(args: &[String]) -> Result<Args, (String, i32)> {
    let mut a = Args::default();
    let mut i = 0;
    let invalid = |msg: String| (format!("{msg}{USAGE_TAIL}"), EXIT_PARSE);
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if !arg.starts_with('-') || arg == "-" {
            a.urls.push(arg.clone());
            continue;
        }
        if arg == "--" {
            a.urls.extend(args[i..].iter().cloned());
            break;
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
                    | "read-timeout"
                    | "connect-timeout"
                    | "dns-timeout"
                    | "tries"
                    | "user-agent"
                    | "header"
                    | "post-data"
                    | "method"
                    | "body-data"
                    | "output-file"
                    | "append-output"
            );
            let value = if takes {
                option_value(args, &mut i, inline).ok_or_else(|| {
                    invalid(format!("wget: option '--{name}' requires an argument\n"))
                })?
            } else {
                String::new()
            };
            match name {
                "quiet" => a.verbosity = Verbosity::Quiet,
                "no-verbose" => a.verbosity = Verbosity::NonVerbose,
                "verbose" => a.verbosity = Verbosity::Verbose,
                "server-response" => a.server_response = true,
                "spider" => a.spider = true,
                "content-on-error" => a.content_on_error = true,
                "output-document" => a.output = Some(value),
                "timeout" | "read-timeout" | "connect-timeout" => {
                    a.timeout = Some(seconds(&value, name).map_err(invalid)?)
                }
                "tries" => {
                    value.parse::<u32>().map_err(|_| {
                        invalid(format!("wget: --tries: Invalid number '{value}'.\n"))
                    })?;
                }
                "user-agent" => a.user_agent = Some(value),
                "header" => a.headers.push(value),
                "post-data" | "body-data" => a.post_data = Some(value),
                "method" => a.method = Some(value.to_ascii_uppercase()),
                "no-check-certificate"
                | "no-clobber"
                | "no-host-directories"
                | "no-parent"
                | "no-directories"
                | "dns-timeout"
                | "output-file"
                | "append-output" => {}
                _ => return Err(invalid(format!("wget: unrecognized option '{arg}'\n"))),
            }
            continue;
        }
        let chars: Vec<char> = arg[1..].chars().collect();
        let mut j = 0;
        while j < chars.len() {
            let c = chars[j];
            j += 1;
            let takes = matches!(c, 'O' | 'T' | 'U' | 't' | 'n' | 'o' | 'a');
            let value = if takes {
                let rest: String = chars[j..].iter().collect();
                j = chars.len();
                option_value(args, &mut i, Some(rest).filter(|r| !r.is_empty())).ok_or_else(
                    || invalid(format!("wget: option requires an argument -- '{c}'\n")),
                )?
            } else {
                String::new()
            };
            match c {
                'q' => a.verbosity = Verbosity::Quiet,
                'v' => a.verbosity = Verbosity::Verbose,
                'S' => a.server_response = true,
                'O' => a.output = Some(value),
                'T' => a.timeout = Some(seconds(&value, "timeout").map_err(invalid)?),
                'U' => a.user_agent = Some(value),
                't' => {
                    value
                        .parse::<u32>()
                        .map_err(|_| invalid(format!("wget: -t: Invalid number '{value}'.\n")))?;
                }
                // -nv, -nc, -nH, -np, -nd.
                'n' => match value.as_str() {
                    "v" => a.verbosity = Verbosity::NonVerbose,
                    "c" | "H" | "p" | "d" => {}
                    _ => return Err(invalid(format!("wget: -n: Invalid value '{value}'.\n"))),
                },
                'o' | 'a' => {}
                other => return Err(invalid(format!("wget: invalid option -- '{other}'\n"))),
            }
        }
    }
    if a.urls.is_empty() {
        return Err((format!("wget: missing URL\n{USAGE_TAIL}"), EXIT_GENERIC));
    }
    Ok(a)
}

fn seconds(v: &str, name: &str) -> Result<f64, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .ok_or_else(|| format!("wget: --{name}: Invalid time period '{v}'\n"))
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
    let verbose = args.verbosity == Verbosity::Verbose;
    let quiet = args.verbosity == Verbosity::Quiet;
    let say = |msg: String, shown: bool| async move {
        if shown {
            p.err(&msg).await;
        }
    };
    // gopher:// is curl's (npexec's TCP probe); wget has no such scheme.
    let mut url = match parse_url(raw) {
        Ok(u) if u.scheme != "gopher" => u,
        _ => {
            say(format!("{raw}: Unsupported scheme.\n"), !quiet).await;
            return EXIT_GENERIC;
        }
    };
    let limit = args.timeout.filter(|t| *t > 0.0).unwrap_or(DEFAULT_TIMEOUT);
    let network = p.services.network();
    let mut waited = 0.0f64;
    let mut redirects = 0;
    loop {
        let method = args.method.clone().unwrap_or_else(|| {
            if args.post_data.is_some() {
                "POST".into()
            } else if args.spider {
                "HEAD".into()
            } else {
                "GET".into()
            }
        });
        let mut headers = vec![
            (
                "User-Agent".to_string(),
                args.user_agent
                    .clone()
                    .unwrap_or_else(|| "Wget/1.21.3".into()),
            ),
            ("Accept".to_string(), "*/*".to_string()),
            ("Accept-Encoding".to_string(), "identity".to_string()),
            ("Host".to_string(), url.host_header()),
            ("Connection".to_string(), "Keep-Alive".to_string()),
        ];
        for h in &args.headers {
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let req = NetRequest {
            method: method.clone(),
            scheme: url.scheme.clone(),
            host: url.host.clone(),
            port: url.port,
            path: url.path.clone(),
            headers,
            body: args.post_data.as_ref().map(|d| d.clone().into_bytes()),
        };
        let shown_url = url.effective();
        say(format!("--{}--  {shown_url}\n", stamp()), verbose).await;
        let resolved = network.resolve(p.target, &url.host);
        let outcome = network.send(p.target, &req).await;
        if matches!(outcome, NetOutcome::DnsFailure) {
            say(
                format!(
                    "Resolving {0} ({0})... failed: Name or service not known.\n",
                    url.host
                ),
                verbose,
            )
            .await;
            say(
                format!("wget: unable to resolve host address '{}'\n", url.host),
                !quiet,
            )
            .await;
            return EXIT_NETWORK;
        }
        let ip = resolved.unwrap_or_else(|| url.host.clone());
        say(
            format!(
                "Resolving {0} ({0})... {ip}\nConnecting to {0} ({0})|{ip}|:{1}... ",
                url.host, url.port
            ),
            verbose,
        )
        .await;
        let left = (limit - waited).max(0.0);
        let wait = |secs: f64| p.sleep(Duration::from_secs_f64(secs.max(0.0)));
        // Measured with GNU Wget 1.21.3: a connect that times out or is
        // refused fails before `connected.`; after it, a reset, a close
        // without an answer (Envoy's network RBAC: `No data received.`) or
        // a server that never answers (timed out) ends with `Giving up.`.
        let (after, why, answer) = match outcome {
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
            NetOutcome::DnsFailure | NetOutcome::ConnectTimeout | NetOutcome::Refused { .. } => {
                let refused = match outcome {
                    NetOutcome::Refused { after } => after.as_secs_f64(),
                    _ => f64::INFINITY,
                };
                let why = if refused >= left {
                    wait(left).await;
                    "failed: Connection timed out.\n"
                } else {
                    wait(refused).await;
                    "failed: Connection refused.\n"
                };
                say(why.into(), !quiet).await;
                return EXIT_NETWORK;
            }
        };
        say(
            "connected.\nHTTP request sent, awaiting response... ".into(),
            verbose,
        )
        .await;
        let Some((status, headers, body)) = answer.filter(|_| after < left) else {
            let why = if after >= left {
                wait(left).await;
                "Read error (Connection timed out) in headers.\n"
            } else {
                wait(after).await;
                why
            };
            say(why.into(), !quiet).await;
            say("Giving up.\n\n".into(), verbose).await;
            return EXIT_NETWORK;
        };
        wait(after).await;
        waited += after;
        let phrase = reason(status);
        if args.server_response {
            let mut s = String::new();
            if verbose {
                s.push('\n');
            }
            s.push_str(&format!("  HTTP/1.1 {status} {phrase}\n"));
            for (k, v) in &headers {
                s.push_str(&format!("  {k}: {v}\n"));
            }
            say(s, !quiet).await;
        } else {
            say(format!("{status} {phrase}\n"), verbose).await;
        }
        let location = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("location"))
            .map(|(_, v)| v.clone());
        if matches!(status, 301 | 302 | 303 | 307 | 308)
            && let Some(loc) = location
        {
            say(format!("Location: {loc} [following]\n"), verbose).await;
            redirects += 1;
            if redirects > 20 {
                say("20 redirections exceeded.\n".into(), !quiet).await;
                return EXIT_SERVER;
            }
            match join(&url, &loc) {
                Ok(next) => {
                    url = next;
                    continue;
                }
                Err(_) => {
                    say(format!("{loc}: Unsupported scheme.\n"), !quiet).await;
                    return EXIT_GENERIC;
                }
            }
        }
        if !(200..300).contains(&status) {
            if args.content_on_error {
                let _ = p.out(&body).await;
            }
            say(
                format!("{shown_url}:\n"),
                args.verbosity == Verbosity::NonVerbose,
            )
            .await;
            say(format!("{} ERROR {status}: {phrase}.\n\n", stamp()), !quiet).await;
            return EXIT_SERVER;
        }
        if args.spider {
            say(
                "Length: unspecified\nRemote file exists.\n\n".into(),
                verbose,
            )
            .await;
            return 0;
        }
        return deliver(p, args, &url.path, &shown_url, &headers, &body).await;
    }
}

/// Writes the body to stdout (`-O -`) or a virtual file, with GNU wget's log lines.
async fn deliver(
    p: &Process<'_>,
    args: &Args,
    path: &str,
    shown_url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> i32 {
    let file = super::http::output_file(args.output.as_deref(), path);
    let to_stdout = file == "-";
    let verbose = args.verbosity == Verbosity::Verbose;
    if verbose {
        let kind = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| format!(" [{v}]"))
            .unwrap_or_default();
        let shown = if to_stdout { "STDOUT" } else { file.as_str() };
        p.err(&format!(
            "Length: {}{kind}\nSaving to: '{shown}'\n\n",
            body.len()
        ))
        .await;
    }
    if to_stdout {
        if !p.out(body).await {
            return 3;
        }
    } else {
        p.fs.write(&file, body.to_vec());
    }
    let n = body.len();
    match args.verbosity {
        Verbosity::Verbose => {
            let what = if to_stdout {
                "written to stdout".to_string()
            } else {
                format!("'{file}' saved")
            };
            p.err(&format!(
                "     0K {:50} 100% 1.00M=0s\n\n{} (1.00 MB/s) - {what} [{n}/{n}]\n\n",
                "",
                stamp()
            ))
            .await;
        }
        Verbosity::NonVerbose => {
            let shown = if to_stdout { "-" } else { file.as_str() };
            p.err(&format!(
                "{} URL:{shown_url} [{n}/{n}] -> \"{shown}\" [1]\n",
                stamp()
            ))
            .await;
        }
        Verbosity::Quiet => {}
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
        let a = parse_args(&v(&[
            "-nv",
            "-S",
            "-O",
            "-",
            "-T",
            "3",
            "-t",
            "1",
            "http://h/",
        ]))
        .unwrap();
        assert_eq!(a.verbosity, Verbosity::NonVerbose);
        assert!(a.server_response);
        assert_eq!((a.output.as_deref(), a.timeout), (Some("-"), Some(3.0)));
        let a = parse_args(&v(&["-qO-", "h"])).unwrap();
        assert_eq!(a.verbosity, Verbosity::Quiet);
        assert_eq!(a.output.as_deref(), Some("-"));
        let (msg, code) = parse_args(&v(&["-Z", "h"])).unwrap_err();
        assert_eq!(code, 2);
        assert!(msg.starts_with("wget: invalid option -- 'Z'\nUsage: wget"));
        let (msg, code) = parse_args(&v(&["-q"])).unwrap_err();
        assert_eq!((msg.lines().next(), code), (Some("wget: missing URL"), 1));
    }
}
