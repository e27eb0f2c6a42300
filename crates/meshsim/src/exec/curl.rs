//! A simulated `curl`, imitating curl 7.88.1 as shipped in Debian bookworm
//! (the base of the `nginx` images the walk-through uses). Requests go to the
//! cluster's [`Network`](super::Network), which decides what happens; this
//! module turns the decision into what curl prints and its exit code: 6
//! (resolve), 7 (refused), 22 (`-f` and status >= 400), 28 (timeouts), 56
//! (reset), the progress meter on stderr when output is not a terminal,
//! `-w` variables, `-i`/`-I` headers and `-v` traces.
//!
//! Like the real tool, long options take their value as the next argument
//! (`--max-time 3`); curl has no `--max-time=3` syntax and rejects it.

use std::time::Duration;

use futures::future::BoxFuture;

use super::http::{UrlError, join, option_value, parse_url, reason, remove_dot_segments};
use super::programs::Process;
use super::{NetOutcome, NetRequest};

/// The version this module imitates (`User-Agent: curl/7.88.1`).
pub const CURL_VERSION: &str = "7.88.1";

/// curl's default connect timeout.
const DEFAULT_CONNECT_TIMEOUT: f64 = 300.0;

#[derive(Debug, Default, Clone)]
pub(crate) struct CurlArgs {
    pub silent: bool,
    pub show_error: bool,
    pub fail: bool,
    pub fail_with_body: bool,
    pub output: Option<String>,
    pub write_out: Option<String>,
    pub max_time: Option<f64>,
    pub connect_timeout: Option<f64>,
    pub method: Option<String>,
    pub headers: Vec<String>,
    pub head: bool,
    pub include: bool,
    pub verbose: bool,
    pub location: bool,
    pub data: Option<Vec<u8>>,
    pub user_agent: Option<String>,
    pub urls: Vec<String>,
    /// `--path-as-is`: send `/./` and `/../` as written.
    pub path_as_is: bool,
}

/// A command-line problem, reported as curl does (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ArgError {
    #[error("option {0}: is unknown")]
    Unknown(String),
    #[error("option {0}: requires parameter")]
    Missing(String),
    #[error("option {0}: expected a proper numerical parameter")]
    Number(String),
    #[error("no URL specified!")]
    NoUrl,
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
    let mut only_urls = false;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if only_urls || !arg.starts_with('-') || arg == "-" {
            a.urls.push(arg.clone());
            continue;
        }
        if arg == "--" {
            only_urls = true;
            continue;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let takes = matches!(
                long,
                "output"
                    | "write-out"
                    | "max-time"
                    | "connect-timeout"
                    | "request"
                    | "header"
                    | "data"
                    | "user-agent"
                    | "url"
            );
            let v = if takes {
                option_value(args, &mut i, None).ok_or_else(|| ArgError::Missing(arg.clone()))?
            } else {
                String::new()
            };
            match long {
                "silent" => a.silent = true,
                "show-error" => a.show_error = true,
                "fail" => a.fail = true,
                "fail-with-body" => a.fail_with_body = true,
                "include" => a.include = true,
                "head" => a.head = true,
                "verbose" => a.verbose = true,
                "location" => a.location = true,
                "path-as-is" => a.path_as_is = true,
                // Accepted and without effect here.
                "insecure" | "http2" | "http2-prior-knowledge" | "globoff" => {}
                "output" => a.output = Some(v),
                "write-out" => a.write_out = Some(v),
                "max-time" => a.max_time = Some(seconds(arg, &v)?),
                "connect-timeout" => a.connect_timeout = Some(seconds(arg, &v)?),
                "request" => a.method = Some(v),
                "header" => a.headers.push(v),
                "data" => {
                    let mut d = a.data.take().unwrap_or_default();
                    if !d.is_empty() {
                        d.push(b'&');
                    }
                    d.extend_from_slice(v.as_bytes());
                    a.data = Some(d);
                }
                "user-agent" => a.user_agent = Some(v),
                "url" => a.urls.push(v),
                _ => return Err(ArgError::Unknown(arg.clone())),
            }
            continue;
        }
        // A cluster of short options: -sSf, -o FILE, -oFILE, -m3.
        let chars: Vec<char> = arg[1..].chars().collect();
        let mut j = 0;
        while j < chars.len() {
            let c = chars[j];
            j += 1;
            let takes = matches!(c, 'o' | 'w' | 'm' | 'X' | 'H' | 'd' | 'A');
            let value = if takes {
                let rest: String = chars[j..].iter().collect();
                j = chars.len();
                option_value(args, &mut i, Some(rest).filter(|r| !r.is_empty()))
                    .ok_or_else(|| ArgError::Missing(format!("-{c}")))?
            } else {
                String::new()
            };
            match c {
                's' => a.silent = true,
                'S' => a.show_error = true,
                'f' => a.fail = true,
                'i' => a.include = true,
                'I' => a.head = true,
                'v' => a.verbose = true,
                'L' => a.location = true,
                'k' | 'g' => {}
                'o' => a.output = Some(value),
                'w' => a.write_out = Some(value),
                'm' => a.max_time = Some(seconds("-m", &value)?),
                'X' => a.method = Some(value),
                'H' => a.headers.push(value),
                'd' => {
                    let mut d = a.data.take().unwrap_or_default();
                    if !d.is_empty() {
                        d.push(b'&');
                    }
                    d.extend_from_slice(value.as_bytes());
                    a.data = Some(d);
                }
                'A' => a.user_agent = Some(value),
                other => return Err(ArgError::Unknown(format!("-{other}"))),
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

/// curl's `max5data`: a size in at most five characters.
fn max5(bytes: u64) -> String {
    const K: u64 = 1024;
    const M: u64 = 1024 * 1024;
    if bytes < 100_000 {
        format!("{bytes:5}")
    } else if bytes < 10_000 * K {
        format!("{:4}k", bytes / K)
    } else if bytes < 100 * M {
        format!("{:2}.{}M", bytes / M, (bytes % M) / (M / 10))
    } else {
        format!("{:4}M", bytes / M)
    }
}

/// curl's `time2str`: `--:--:--` for nothing, else ` H:MM:SS`.
fn time2str(secs: i64) -> String {
    if secs <= 0 {
        return "--:--:--".into();
    }
    let h = secs / 3600;
    if h <= 99 {
        format!("{:2}:{:02}:{:02}", h, (secs / 60) % 60, secs % 60)
    } else {
        format!("{:3}d {:02}h", h / 24, h % 24)
    }
}

/// One progress meter line (without the leading `\r`).
pub(crate) fn meter_line(expected: Option<u64>, received: u64, elapsed: f64) -> String {
    let total = expected.unwrap_or(0);
    let pct = |done: u64| (done.min(total) * 100).checked_div(total).unwrap_or(0);
    let secs = elapsed.max(0.001);
    let speed = if received > 0 {
        (received as f64 / secs) as u64
    } else {
        0
    };
    let (t_total, t_left) = match (expected, speed) {
        (Some(t), s) if s > 0 && t > 0 => {
            let tt = (t / s) as i64;
            (tt, tt - elapsed as i64)
        }
        _ => (0, 0),
    };
    format!(
        "{:3} {}  {:3} {}  {:3} {}  {}  {} {} {} {} {}",
        pct(received),
        max5(total),
        pct(received),
        max5(received),
        0,
        max5(0),
        max5(speed),
        max5(0),
        time2str(t_total),
        time2str(elapsed as i64),
        time2str(t_left),
        max5(speed)
    )
}

const METER_HEADER: &str = "  % Total    % Received % Xferd  Average Speed   Time    Time     Time  Current\n                                 Dload  Upload   Total   Spent    Left  Speed\n";

fn ms(secs: f64) -> u64 {
    (secs * 1000.0).round() as u64
}

/// Expands a `-w` format.
fn write_out(fmt: &str, t: &Transfer, warnings: &mut Vec<String>) -> Vec<u8> {
    let mut out = Vec::new();
    let b = fmt.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if i + 1 < b.len() => {
                match b[i + 1] {
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    other => {
                        out.push(b'\\');
                        out.push(other);
                    }
                }
                i += 2;
            }
            b'%' if i + 1 < b.len() && b[i + 1] == b'%' => {
                out.push(b'%');
                i += 2;
            }
            b'%' if fmt[i..].starts_with("%{") => {
                let Some(close) = fmt[i..].find('}').map(|c| i + c) else {
                    out.extend_from_slice(&b[i..]);
                    break;
                };
                let name = &fmt[i + 2..close];
                match variable(name, t) {
                    Some(v) => out.extend_from_slice(v.as_bytes()),
                    None => {
                        warnings.push(format!("curl: unknown --write-out variable: '{name}'\n"))
                    }
                }
                i = close + 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The `-w` variables: only those npexec, the walk-through and the tests use
/// (issue 18: the emulation stays as small as its users); any other is
/// reported as curl reports an unknown one.
fn variable(name: &str, t: &Transfer) -> Option<String> {
    Some(match name {
        "http_code" | "response_code" => format!("{:03}", t.http_code),
        "time_total" => format!("{:.6}", t.elapsed),
        _ => return None,
    })
}

/// The `curl` program.
/// What `curl --version` prints (curl 8.5, as Debian and Ubuntu ship it).
const VERSION: &str = "curl 8.5.0 (x86_64-pc-linux-gnu) libcurl/8.5.0 OpenSSL/3.0.13 zlib/1.3 brotli/1.1.0 zstd/1.5.5 libidn2/2.3.7 nghttp2/1.59.0\nRelease-Date: 2023-12-06\nProtocols: dict file ftp ftps gopher gophers http https imap imaps ldap ldaps mqtt pop3 pop3s rtmp rtsp scp sftp smb smbs smtp smtps telnet tftp\nFeatures: alt-svc AsynchDNS brotli GSS-API HSTS HTTP2 HTTPS-proxy IDN IPv6 Kerberos Largefile libz NTLM PSL SPNEGO SSL threadsafe TLS-SRP UnixSockets zstd\n";

pub(crate) fn curl<'a>(p: Process<'a>, argv: Vec<String>) -> BoxFuture<'a, i32> {
    Box::pin(async move {
        if matches!(argv.get(1).map(String::as_str), Some("--version" | "-V")) {
            let ok = p.out(VERSION.as_bytes()).await;
            return if ok { 0 } else { 23 };
        }
        let args = match parse_args(&argv[1..]) {
            Ok(a) => a,
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
fn closed(url: &super::http::Url) -> Ended {
    match url.scheme.as_str() {
        "gopher" => Ended::Response {
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
        },
        "https" => Ended::Failed {
            code: 35,
            msg: format!(
                "OpenSSL SSL_connect: SSL_ERROR_SYSCALL in connection to {}:{} ",
                url.host, url.port
            ),
        },
        _ => Ended::Failed {
            code: 52,
            msg: "Empty reply from server".into(),
        },
    }
}

/// How a transfer ended, before printing.
enum Ended {
    Failed {
        code: i32,
        msg: String,
    },
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
}

async fn transfer(p: &Process<'_>, args: &CurlArgs, raw_url: &str) -> i32 {
    // curl hides the meter when the body goes to a terminal.
    let progress = !(args.silent || args.verbose || p.tty && args.output.is_none());
    let mut t = Transfer::default();
    let mut url = match parse_url(raw_url) {
        Ok(u) => u,
        Err(e) => {
            let (code, msg) = match e {
                UrlError::UnsupportedScheme(s) => (
                    1,
                    format!("Protocol \"{s}\" not supported or disabled in libcurl"),
                ),
                UrlError::Malformed => (3, "URL using bad/illegal format or missing URL".into()),
            };
            if !args.silent || args.show_error {
                p.err(&format!("curl: ({code}) {msg}\n")).await;
            }
            t.exit = code;
            finish_write_out(p, args, &t).await;
            return code;
        }
    };
    if !args.path_as_is {
        url.path = remove_dot_segments(&url.path);
    }
    if progress {
        p.err(METER_HEADER).await;
        p.err(&format!("\r{}", meter_line(None, 0, 0.0))).await;
    }
    let network = p.services.network();
    let mut redirects = 0u32;
    let ended = loop {
        let method = if args.head {
            "HEAD".to_string()
        } else if let Some(m) = &args.method {
            m.clone()
        } else if args.data.is_some() {
            "POST".to_string()
        } else {
            "GET".to_string()
        };
        let mut headers = vec![
            ("Host".to_string(), url.host_header()),
            (
                "User-Agent".to_string(),
                args.user_agent
                    .clone()
                    .unwrap_or_else(|| format!("curl/{CURL_VERSION}")),
            ),
            ("Accept".to_string(), "*/*".to_string()),
        ];
        if let Some(d) = &args.data {
            headers.push(("Content-Length".into(), d.len().to_string()));
            headers.push((
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            ));
        }
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
        let req = NetRequest {
            method: method.clone(),
            scheme: url.scheme.clone(),
            host: url.host.clone(),
            port: url.port,
            path: url.path.clone(),
            headers: headers.clone(),
            body: args.data.clone(),
        };
        let ip = network
            .resolve(p.target, &url.host)
            .unwrap_or_else(|| url.host.clone());
        let outcome = network.send(p.target, &req).await;
        if args.verbose && !matches!(outcome, NetOutcome::DnsFailure) {
            p.err(&format!("*   Trying {ip}:{}...\n", url.port)).await;
        }
        let connect_limit = args.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let total_limit = args.max_time.filter(|m| *m > 0.0);
        let connect_deadline = total_limit.map_or(connect_limit, |m| m.min(connect_limit));
        let connect_timeout_msg = |waited: f64| {
            if total_limit.is_some_and(|m| m <= connect_limit) {
                format!("Connection timed out after {} milliseconds", ms(waited) + 1)
            } else {
                format!("Connection timeout after {} ms", ms(waited) + 1)
            }
        };
        let op_timeout = |waited: f64| {
            format!(
                "Operation timed out after {} milliseconds with 0 bytes received",
                ms(waited) + 1
            )
        };
        let wait = |secs: f64| p.sleep(Duration::from_secs_f64(secs.max(0.0)));
        match outcome {
            NetOutcome::DnsFailure => {
                if args.verbose {
                    p.err(&format!("* Could not resolve host: {}\n", url.host))
                        .await;
                }
                break Ended::Failed {
                    code: 6,
                    msg: format!("Could not resolve host: {}", url.host),
                };
            }
            NetOutcome::ConnectTimeout => {
                wait(connect_deadline).await;
                t.elapsed += connect_deadline;
                break Ended::Failed {
                    code: 28,
                    msg: connect_timeout_msg(connect_deadline),
                };
            }
            NetOutcome::Refused { after } => {
                let after = after.as_secs_f64();
                if after >= connect_deadline {
                    wait(connect_deadline).await;
                    t.elapsed += connect_deadline;
                    break Ended::Failed {
                        code: 28,
                        msg: connect_timeout_msg(connect_deadline),
                    };
                }
                wait(after).await;
                t.elapsed += after;
                if args.verbose {
                    p.err(&format!(
                        "* connect to {ip} port {} failed: Connection refused\n",
                        url.port
                    ))
                    .await;
                }
                break Ended::Failed {
                    code: 7,
                    msg: format!(
                        "Failed to connect to {} port {} after {} ms: Couldn't connect to server",
                        url.host,
                        url.port,
                        ms(after)
                    ),
                };
            }
            // Connected, then reset, closed without an answer, or silent.
            NetOutcome::Reset { .. } | NetOutcome::Closed { .. } | NetOutcome::Silent => {
                let after = match &outcome {
                    NetOutcome::Reset { after } | NetOutcome::Closed { after } => {
                        after.as_secs_f64()
                    }
                    _ => f64::INFINITY,
                };
                if args.verbose {
                    p.err(&format!(
                        "* Connected to {} ({ip}) port {} (#0)\n",
                        url.host, url.port
                    ))
                    .await;
                    verbose_request(p, &req).await;
                }
                let m = total_limit.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
                if m < after {
                    wait(m).await;
                    t.elapsed += m;
                    break Ended::Failed {
                        code: 28,
                        msg: op_timeout(m),
                    };
                }
                wait(after).await;
                t.elapsed += after;
                break match outcome {
                    NetOutcome::Reset { .. } => Ended::Failed {
                        code: 56,
                        msg: "Recv failure: Connection reset by peer".into(),
                    },
                    _ => closed(&url),
                };
            }
            NetOutcome::Http {
                after,
                status,
                headers,
                body,
            } => {
                let after = after.as_secs_f64();
                if args.verbose {
                    p.err(&format!(
                        "* Connected to {} ({ip}) port {} (#0)\n",
                        url.host, url.port
                    ))
                    .await;
                    verbose_request(p, &req).await;
                }
                let budget = total_limit.map(|m| m - t.elapsed);
                if let Some(m) = budget
                    && m < after
                {
                    let m = m.max(0.0);
                    wait(m).await;
                    t.elapsed += m;
                    break Ended::Failed {
                        code: 28,
                        msg: op_timeout(t.elapsed),
                    };
                }
                wait(after).await;
                t.elapsed += after;
                let location = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("location"))
                    .map(|(_, v)| v.clone());
                if args.location
                    && (300..400).contains(&status)
                    && let Some(loc) = location
                {
                    if args.verbose {
                        verbose_response(p, status, &headers).await;
                        p.err(&format!(
                            "* Connection #0 to host {} left intact\n* Issue another request to this URL: '{loc}'\n",
                            url.host
                        ))
                        .await;
                    }
                    if args.include {
                        let _ = emit(p, args, &header_block(status, &headers)).await;
                    }
                    redirects += 1;
                    if redirects > 50 {
                        break Ended::Failed {
                            code: 47,
                            msg: "Maximum (50) redirects followed".into(),
                        };
                    }
                    match join(&url, &loc) {
                        Ok(next) => {
                            url = next;
                            if !args.path_as_is {
                                url.path = remove_dot_segments(&url.path);
                            }
                            continue;
                        }
                        Err(_) => {
                            break Ended::Failed {
                                code: 3,
                                msg: "URL using bad/illegal format or missing URL".into(),
                            };
                        }
                    }
                }
                break Ended::Response {
                    status,
                    headers,
                    body,
                };
            }
        }
    };
    match ended {
        Ended::Failed { code, msg } => {
            t.exit = code;
            if progress {
                p.err(&format!("\r{}\n", meter_line(None, 0, t.elapsed)))
                    .await;
            }
            if args.verbose {
                p.err("* Closing connection 0\n").await;
            }
            if !args.silent || args.show_error {
                p.err(&format!("curl: ({code}) {msg}\n")).await;
            }
        }
        Ended::Response {
            status,
            headers,
            body,
        } => {
            t.http_code = status;
            let block = header_block(status, &headers);
            if args.verbose {
                verbose_response(p, status, &headers).await;
            }
            let failed = (args.fail || args.fail_with_body) && status >= 400;
            if failed && !args.fail_with_body {
                t.exit = 22;
            } else {
                let mut out = Vec::new();
                if args.include || args.head {
                    out.extend_from_slice(&block);
                }
                if !args.head {
                    out.extend_from_slice(&body);
                }
                if emit(p, args, &out).await.is_err() {
                    t.exit = 23;
                }
                if failed {
                    t.exit = 22;
                }
            }
            let received = if t.exit == 22 && !args.fail_with_body || args.head {
                0
            } else {
                body.len() as u64
            };
            if progress {
                let expected = if t.exit == 22 && !args.fail_with_body {
                    None
                } else {
                    Some(received)
                };
                p.err(&format!(
                    "\r{}\n",
                    meter_line(expected, received, t.elapsed)
                ))
                .await;
            }
            if t.exit == 22 {
                let msg = format!("The requested URL returned error: {status}");
                if args.verbose {
                    p.err("* Closing connection 0\n").await;
                }
                if !args.silent || args.show_error {
                    p.err(&format!("curl: (22) {msg}\n")).await;
                }
            } else if args.verbose {
                p.err(&format!(
                    "* Connection #0 to host {} left intact\n",
                    url.host
                ))
                .await;
            }
            if t.exit == 23 && (!args.silent || args.show_error) {
                p.err("curl: (23) Failure writing output to destination\n")
                    .await;
            }
        }
    }
    finish_write_out(p, args, &t).await;
    t.exit
}

async fn finish_write_out(p: &Process<'_>, args: &CurlArgs, t: &Transfer) {
    let Some(fmt) = &args.write_out else { return };
    let fmt = if let Some(file) = fmt.strip_prefix('@') {
        if file == "-" {
            String::from_utf8_lossy(&p.stdin.read_to_end().await.unwrap_or_default()).into_owned()
        } else {
            String::from_utf8_lossy(&p.fs.read(file).unwrap_or_default()).into_owned()
        }
    } else {
        fmt.clone()
    };
    let mut warnings = Vec::new();
    let out = write_out(&fmt, t, &mut warnings);
    for w in warnings {
        p.err(&w).await;
    }
    let _ = p.out(&out).await;
}

/// Writes transfer output to `-o FILE` or stdout.
async fn emit(p: &Process<'_>, args: &CurlArgs, data: &[u8]) -> std::io::Result<()> {
    match &args.output {
        Some(path) if path != "-" => {
            p.fs.append(path, data);
            Ok(())
        }
        _ => p.stdout.write(data).await,
    }
}

fn header_block(status: u16, headers: &[(String, String)]) -> Vec<u8> {
    let mut s = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s.into_bytes()
}

async fn verbose_request(p: &Process<'_>, req: &NetRequest) {
    let mut s = format!("> {} {} HTTP/1.1\r\n", req.method, req.path);
    for (k, v) in &req.headers {
        s.push_str(&format!("> {k}: {v}\r\n"));
    }
    s.push_str("> \r\n");
    p.err(&s).await;
}

async fn verbose_response(p: &Process<'_>, status: u16, headers: &[(String, String)]) {
    let mut s = format!("< HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        s.push_str(&format!("< {k}: {v}\r\n"));
    }
    s.push_str("< \r\n");
    p.err(&s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn short_clusters_and_values() {
        let a = parse_args(&v(&[
            "-sSf",
            "-m3",
            "-o",
            "/dev/null",
            "-w%{http_code}",
            "h",
        ]))
        .unwrap();
        assert!(a.silent && a.show_error && a.fail);
        assert_eq!(a.max_time, Some(3.0));
        assert_eq!(a.output.as_deref(), Some("/dev/null"));
        assert_eq!(a.write_out.as_deref(), Some("%{http_code}"));
        assert_eq!(a.urls, vec!["h".to_string()]);
    }

    #[test]
    fn long_options_like_curl() {
        let a = parse_args(&v(&["--max-time", "2.5", "--connect-timeout", "1", "h"])).unwrap();
        assert_eq!((a.max_time, a.connect_timeout), (Some(2.5), Some(1.0)));
        assert_eq!(
            parse_args(&v(&["--max-time=3", "h"])).unwrap_err(),
            ArgError::Unknown("--max-time=3".into())
        );
        assert_eq!(
            parse_args(&v(&["-m", "x", "h"])).unwrap_err(),
            ArgError::Number("-m".into())
        );
        assert_eq!(parse_args(&v(&["-s"])).unwrap_err(), ArgError::NoUrl);
        assert_eq!(
            parse_args(&v(&["-Z", "h"])).unwrap_err(),
            ArgError::Unknown("-Z".into())
        );
    }

    #[test]
    fn meter_lines() {
        assert_eq!(
            meter_line(None, 0, 0.0),
            "  0     0    0     0    0     0      0      0 --:--:-- --:--:-- --:--:--     0"
        );
        let l = meter_line(Some(30), 30, 0.002);
        assert!(
            l.starts_with(
                "100    30  100    30    0     0  15000      0 --:--:-- --:--:-- --:--:-- 15000"
            ),
            "{l}"
        );
        assert_eq!(time2str(3), " 0:00:03");
        assert_eq!(max5(150_000), " 146k");
    }

    #[test]
    fn write_out_variables() {
        let t = Transfer {
            http_code: 403,
            elapsed: 1.5,
            ..Transfer::default()
        };
        let mut w = Vec::new();
        let out = write_out("%{http_code} %{time_total}\\n%{nope}%%", &t, &mut w);
        assert_eq!(String::from_utf8(out).unwrap(), "403 1.500000\n%");
        assert_eq!(
            w,
            vec!["curl: unknown --write-out variable: 'nope'\n".to_string()]
        );
    }
}
