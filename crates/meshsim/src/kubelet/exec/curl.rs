//! A simulated `curl`, imitating curl 7.88.1 as shipped in Debian bookworm
//! (the base of the `nginx` images the walk-through uses). Requests go to the
//! cluster's [`Network`](crate::traffic::Network), which decides what happens; this
//! module turns the decision into what curl prints and its exit code: 6
//! (resolve), 7 (refused), 22 (`-f` and status >= 400), 28 (timeouts), 35
//! and 52 (closed without an answer), 56 (reset).
//!
//! Emulated options, the ones npexec, the walk-through, the scripts and the
//! tests pass: `-s`, `-S`, `-f`, `-m`/`--max-time SECS`, `-X M`, `-H h`,
//! `-w FMT` with `%{http_code}` and `%{time_total}`, `-o /dev/null` and
//! `-o -`, `-k`, `-g`/`--globoff`, `--http2-prior-knowledge` (accepted, the
//! network decides alike), and `--version`. Short options cluster (`-sSf`,
//! `-m3`); long options take their value as the next argument, as curl's do.
//!
//! Deliberately not emulated: every other option (`-v`, `-i`, `-I`, `-L`,
//! `-d`, `--connect-timeout`, ...), other `-w` variables and `-w @file`,
//! writing files, the progress meter (curl without `-s` whose output is
//! not a terminal), following redirects. Such a command fails with one line,
//! `curl: meshsim does not emulate ...`, and exit 2.

use std::time::Duration;

use futures::future::BoxFuture;

use super::http::{Url, UrlError, option_value, parse_url, remove_dot_segments};
use super::programs::Process;
use crate::traffic::NetOutcome;

/// The version this module imitates (`User-Agent: curl/7.88.1`).
pub const CURL_VERSION: &str = "7.88.1";

/// curl's default connect timeout.
const DEFAULT_CONNECT_TIMEOUT: f64 = 300.0;

#[derive(Debug, Default, Clone)]
pub(crate) struct CurlArgs {
    pub silent: bool,
    pub show_error: bool,
    pub fail: bool,
    /// `-o /dev/null`: the body is dropped.
    pub discard: bool,
    pub write_out: Option<String>,
    pub max_time: Option<f64>,
    pub method: Option<String>,
    pub headers: Vec<String>,
    pub urls: Vec<String>,
}

/// A command-line problem (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ArgError {
    #[error("option {0}: requires parameter")]
    Missing(String),
    #[error("option {0}: expected a proper numerical parameter")]
    Number(String),
    #[error("no URL specified!")]
    NoUrl,
    #[error("meshsim does not emulate {0}")]
    NotEmulated(String),
}

fn seconds(opt: &str, v: &str) -> Result<f64, ArgError> {
    match v.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(ArgError::Number(opt.to_string())),
    }
}

/// Parses curl's command line (`argv` without argv[0]).
pub(crate) fn parse_args(args: &[String]) -> Result<CurlArgs, ArgError> {
    let mut a = CurlArgs::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if !arg.starts_with('-') || arg == "-" {
            a.urls.push(arg.clone());
            continue;
        }
        // Long options as their short twin; a cluster of short ones as is.
        let shorts: Vec<char> = match arg.strip_prefix("--") {
            Some(long) => vec![match long {
                "silent" => 's',
                "show-error" => 'S',
                "fail" => 'f',
                "output" => 'o',
                "write-out" => 'w',
                "max-time" => 'm',
                "request" => 'X',
                "header" => 'H',
                "insecure" => 'k',
                "globoff" | "http2-prior-knowledge" => 'g',
                _ => return Err(ArgError::NotEmulated(format!("option {arg}"))),
            }],
            None => arg[1..].chars().collect(),
        };
        let mut j = 0;
        while j < shorts.len() {
            let c = shorts[j];
            j += 1;
            let name = if arg.starts_with("--") {
                arg.clone()
            } else {
                format!("-{c}")
            };
            let value = if matches!(c, 'o' | 'w' | 'm' | 'X' | 'H') {
                let rest: String = shorts[j..].iter().collect();
                j = shorts.len();
                option_value(args, &mut i, Some(rest).filter(|r| !r.is_empty()))
                    .ok_or_else(|| ArgError::Missing(name.clone()))?
            } else {
                String::new()
            };
            match c {
                's' => a.silent = true,
                'S' => a.show_error = true,
                'f' => a.fail = true,
                'k' | 'g' => {}
                'o' if value == "/dev/null" => a.discard = true,
                'o' if value == "-" => a.discard = false,
                'o' => {
                    return Err(ArgError::NotEmulated(format!(
                        "writing files ({name} {value}; only /dev/null and -)"
                    )));
                }
                'w' if value.starts_with('@') => {
                    return Err(ArgError::NotEmulated(format!("{name} @FILE")));
                }
                'w' => a.write_out = Some(value),
                'm' => a.max_time = Some(seconds(&name, &value)?),
                'X' => a.method = Some(value),
                'H' => a.headers.push(value),
                _ => return Err(ArgError::NotEmulated(format!("option {name}"))),
            }
        }
    }
    if a.urls.is_empty() {
        return Err(ArgError::NoUrl);
    }
    Ok(a)
}

/// The result of one transfer, for `-w` and the exit code.
#[derive(Debug, Clone, Default)]
struct Transfer {
    exit: i32,
    http_code: u16,
    /// Simulated seconds the transfer took.
    elapsed: f64,
}

fn ms(secs: f64) -> u64 {
    (secs * 1000.0).round() as u64
}

/// Expands a `-w` format; a variable meshsim does not emulate is reported
/// in `warnings` and expands to nothing.
fn write_out(fmt: &str, t: &Transfer, warnings: &mut Vec<String>) -> Vec<u8> {
    let mut out = String::new();
    let mut rest = fmt;
    while let Some(c) = rest.chars().next() {
        let (piece, len) = match c {
            '\\' if rest.len() > 1 => match rest.as_bytes()[1] {
                b'n' => ("\n".to_string(), 2),
                b'r' => ("\r".to_string(), 2),
                b't' => ("\t".to_string(), 2),
                _ => ("\\".to_string(), 1),
            },
            '%' if rest.starts_with("%%") => ("%".to_string(), 2),
            '%' if rest.starts_with("%{") && rest.contains('}') => {
                let close = rest.find('}').unwrap_or(rest.len());
                let name = &rest[2..close];
                let v = match name {
                    "http_code" => format!("{:03}", t.http_code),
                    "time_total" => format!("{:.6}", t.elapsed),
                    _ => {
                        warnings.push(format!(
                            "curl: meshsim does not emulate --write-out variable '{name}'\n"
                        ));
                        String::new()
                    }
                };
                (v, close + 1)
            }
            c => (c.to_string(), c.len_utf8()),
        };
        out.push_str(&piece);
        rest = &rest[len..];
    }
    out.into_bytes()
}

/// What `curl --version` prints: Debian bookworm's curl 7.88.1, the version
/// this module imitates (captured from the real binary).
const VERSION: &str = "curl 7.88.1 (x86_64-pc-linux-gnu) libcurl/7.88.1 OpenSSL/3.0.19 zlib/1.2.13 brotli/1.0.9 zstd/1.5.4 libidn2/2.3.3 libpsl/0.21.2 (+libidn2/2.3.3) libssh2/1.10.0 nghttp2/1.52.0 librtmp/2.3 OpenLDAP/2.5.13\nRelease-Date: 2023-02-20, security patched: 7.88.1-10+deb12u15\nProtocols: dict file ftp ftps gopher gophers http https imap imaps ldap ldaps mqtt pop3 pop3s rtmp rtsp scp sftp smb smbs smtp smtps telnet tftp\nFeatures: alt-svc AsynchDNS brotli GSS-API HSTS HTTP2 HTTPS-proxy IDN IPv6 Kerberos Largefile libz NTLM NTLM_WB PSL SPNEGO SSL threadsafe TLS-SRP UnixSockets zstd\n";

/// The `curl` program.
pub(crate) fn curl<'a>(p: Process<'a>, argv: Vec<String>) -> BoxFuture<'a, i32> {
    Box::pin(async move {
        if matches!(argv.get(1).map(String::as_str), Some("--version" | "-V")) {
            let ok = p.out(VERSION.as_bytes()).await;
            return if ok { 0 } else { 23 };
        }
        // curl draws its progress meter unless -s or a terminal shows the body.
        let args = parse_args(&argv[1..]).and_then(|a| {
            if a.silent || p.tty && !a.discard {
                Ok(a)
            } else {
                let what = "the progress meter (add -s, or run with a terminal)";
                Err(ArgError::NotEmulated(what.into()))
            }
        });
        let args = match args {
            Ok(a) => a,
            Err(e @ ArgError::NotEmulated(_)) => {
                p.err(&format!("curl: {e}\n")).await;
                return 2;
            }
            Err(e) => {
                p.err(&format!(
                    "curl: {e}\ncurl: try 'curl --help' or 'curl --manual' for more information\n"
                ))
                .await;
                return 2;
            }
        };
        let mut exit = 0;
        for url in &args.urls {
            exit = transfer(&p, &args, url).await;
        }
        exit
    })
}

/// What curl 7.88.1 reports when the server closes the connection without
/// answering, by scheme (measured against Envoy 1.40 with a network RBAC
/// filter denying every connection, in front of a TCP server):
/// - `http://`: exit 52, `curl: (52) Empty reply from server`;
/// - `https://` with `-k`: exit 35, `curl: (35) OpenSSL SSL_connect:
///   SSL_ERROR_SYSCALL in connection to HOST:PORT ` (with the trailing space);
/// - `gopher://` (the selector line `\r\n` is the first byte RBAC sees):
///   exit 0, nothing printed;
/// - `--http2-prior-knowledge`: exit 18 (not emulated: npexec's HTTP/2
///   probes go to HTTP ports, where Envoy answers 403 instead).
///
/// A connection that stays open with nothing coming back ends at
/// `--max-time`: exit 28, `Operation timed out after N milliseconds with 0
/// bytes received`, for every scheme.
fn closed(url: &Url) -> Result<u16, (i32, String)> {
    match url.scheme.as_str() {
        "gopher" => Ok(0),
        "https" => Err((
            35,
            format!(
                "OpenSSL SSL_connect: SSL_ERROR_SYSCALL in connection to {}:{} ",
                url.host, url.port
            ),
        )),
        _ => Err((52, "Empty reply from server".into())),
    }
}

async fn transfer(p: &Process<'_>, args: &CurlArgs, raw_url: &str) -> i32 {
    let mut t = Transfer::default();
    let ended = match parse_url(raw_url) {
        Ok(mut url) => {
            url.path = remove_dot_segments(&url.path);
            exchange(p, args, &url, &mut t).await
        }
        Err(UrlError::UnsupportedScheme(s)) => Err((
            1,
            format!("Protocol \"{s}\" not supported or disabled in libcurl"),
        )),
        Err(UrlError::Malformed) => Err((3, "URL using bad/illegal format or missing URL".into())),
    };
    let failure = match ended {
        Err((code, msg)) => Some((code, msg)),
        Ok((status, body)) => {
            t.http_code = status;
            if args.fail && status >= 400 {
                Some((22, format!("The requested URL returned error: {status}")))
            } else if !args.discard && !p.out(&body).await {
                Some((23, "Failure writing output to destination".into()))
            } else {
                None
            }
        }
    };
    if let Some((code, msg)) = failure {
        t.exit = code;
        if !args.silent || args.show_error {
            p.err(&format!("curl: ({code}) {msg}\n")).await;
        }
    }
    if let Some(fmt) = &args.write_out {
        let mut warnings = Vec::new();
        let out = write_out(fmt, &t, &mut warnings);
        for w in warnings {
            p.err(&w).await;
        }
        let _ = p.out(&out).await;
    }
    t.exit
}

/// Sends the request and waits as curl would: `Ok((status, body))` for an
/// answer (status 0 for gopher), `Err((exit, message))` for a failure.
async fn exchange(
    p: &Process<'_>,
    args: &CurlArgs,
    url: &Url,
    t: &mut Transfer,
) -> Result<(u16, Vec<u8>), (i32, String)> {
    let mut headers = vec![
        ("Host".to_string(), url.host_header()),
        ("User-Agent".to_string(), format!("curl/{CURL_VERSION}")),
        ("Accept".to_string(), "*/*".to_string()),
    ];
    for h in &args.headers {
        if let Some((k, v)) = h.split_once(':') {
            let k = k.trim().to_string();
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&k));
            let v = v.trim();
            if !v.is_empty() {
                headers.push((k, v.to_string()));
            }
        }
    }
    let req = url.request(args.method.clone().unwrap_or_else(|| "GET".into()), headers);
    let outcome = p.services.network().send(p.target, &req).await;
    let total_limit = args.max_time.filter(|m| *m > 0.0);
    let connect_deadline =
        total_limit.map_or(DEFAULT_CONNECT_TIMEOUT, |m| m.min(DEFAULT_CONNECT_TIMEOUT));
    let connect_timeout = |waited: f64| {
        let ms = ms(waited) + 1;
        if total_limit.is_some_and(|m| m <= DEFAULT_CONNECT_TIMEOUT) {
            format!("Connection timed out after {ms} milliseconds")
        } else {
            format!("Connection timeout after {ms} ms")
        }
    };
    // Connected: how long until the answer (or reset, or close), and the
    // limit curl gives it (no limit for an answer without --max-time).
    let (after, limit, answer) = match outcome {
        NetOutcome::DnsFailure => {
            return Err((6, format!("Could not resolve host: {}", url.host)));
        }
        NetOutcome::ConnectTimeout => {
            wait(p, t, connect_deadline).await;
            return Err((28, connect_timeout(connect_deadline)));
        }
        NetOutcome::Refused { after } if after.as_secs_f64() >= connect_deadline => {
            wait(p, t, connect_deadline).await;
            return Err((28, connect_timeout(connect_deadline)));
        }
        NetOutcome::Refused { after } => {
            wait(p, t, after.as_secs_f64()).await;
            let msg = format!(
                "Failed to connect to {} port {} after {} ms: Couldn't connect to server",
                url.host,
                url.port,
                ms(after.as_secs_f64())
            );
            return Err((7, msg));
        }
        NetOutcome::Reset { after } => (
            after.as_secs_f64(),
            total_limit.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            Err((56, "Recv failure: Connection reset by peer".to_string())),
        ),
        NetOutcome::Closed { after } => (
            after.as_secs_f64(),
            total_limit.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            closed(url).map(|status| (status, Vec::new())),
        ),
        NetOutcome::Silent => (
            f64::INFINITY,
            total_limit.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            Ok((0, Vec::new())),
        ),
        NetOutcome::Http {
            after,
            status,
            body,
            ..
        } => (
            after.as_secs_f64(),
            total_limit.unwrap_or(f64::INFINITY),
            Ok((status, body)),
        ),
    };
    if limit < after {
        wait(p, t, limit).await;
        let ms = ms(limit) + 1;
        return Err((
            28,
            format!("Operation timed out after {ms} milliseconds with 0 bytes received"),
        ));
    }
    wait(p, t, after).await;
    answer
}

/// Waits `secs` of simulated time, counted in the transfer's total.
async fn wait(p: &Process<'_>, t: &mut Transfer, secs: f64) {
    let secs = secs.max(0.0);
    p.sleep(Duration::from_secs_f64(secs)).await;
    t.elapsed += secs;
}
