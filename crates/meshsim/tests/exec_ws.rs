//! The exec channel protocol over a real WebSocket: an axum server on
//! 127.0.0.1:0 whose route calls `serve_websocket`, and a tokio-tungstenite
//! client speaking v4 or v5 as client-go does.

mod exec_common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{RawQuery, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use exec_common::nginx_target;
use futures::{SinkExt, StreamExt};
use meshsim::kubelet::exec::{ExecOptions, ExecServices, negotiate_protocol, serve_websocket};
use meshsim::traffic::{Container, NetOutcome, NetRequest, Network};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

struct Services {
    big: Vec<u8>,
    execs: Mutex<Vec<Vec<String>>>,
}

struct NoNet;

impl Network for NoNet {
    fn decide(&self, _from: &Container, _req: &NetRequest) -> NetOutcome {
        NetOutcome::DnsFailure
    }
}

impl ExecServices for Services {
    fn network(&self) -> Arc<dyn Network> {
        Arc::new(NoNet)
    }
    fn time_scale(&self) -> f64 {
        1.0
    }
    fn record_exec(&self, _target: &Container, argv: &[String]) {
        self.execs.lock().unwrap().push(argv.to_vec());
    }
}

#[derive(Clone)]
struct AppState {
    services: Arc<Services>,
    cut_after: Option<usize>,
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.' {
                char::from(c).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect()
}

async fn exec_route(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let offered: Vec<&str> = headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let Some(protocol) = negotiate_protocol(&offered) else {
        return (axum::http::StatusCode::BAD_REQUEST, "no protocol").into_response();
    };
    let mut argv = Vec::new();
    let mut opts = ExecOptions {
        cut_after_bytes: st.cut_after,
        ..ExecOptions::default()
    };
    for pair in q.unwrap_or_default().split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "command" => argv.push(decode(v)),
            "stdin" => opts.stdin = v == "true",
            "stdout" => opts.stdout = v == "true",
            "stderr" => opts.stderr = v == "true",
            "tty" => opts.tty = v == "true",
            _ => {}
        }
    }
    let mut target = nginx_target();
    target.tools.retain(|t| t != "curl");
    let services: Arc<dyn ExecServices> = st.services.clone();
    ws.protocols([protocol.as_str()])
        .on_upgrade(move |socket| serve_websocket(socket, protocol, target, argv, opts, services))
}

async fn start(cut_after: Option<usize>) -> (String, Arc<Services>) {
    let big: Vec<u8> = (0..1_048_576u32)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz\n"[(i % 27) as usize])
        .collect();
    let services = Arc::new(Services {
        big,
        execs: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route("/exec", get(exec_route))
        .with_state(AppState {
            services: services.clone(),
            cut_after,
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("ws://{addr}/exec"), services)
}

/// Everything the server sent: payload per channel, frames in order, the
/// status message and the close code (None when the connection was cut).
#[derive(Default, Debug)]
struct Session {
    protocol: String,
    frames: Vec<(u8, usize)>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: Option<String>,
    close: Option<u16>,
}

async fn session(
    base: &str,
    protocol: &str,
    argv: &[&str],
    stdin: Option<&[u8]>,
    close_stdin_v5: bool,
) -> Session {
    let mut url = format!("{base}?stdout=true&stderr=true");
    if stdin.is_some() {
        url.push_str("&stdin=true");
    }
    for a in argv {
        url.push_str(&format!("&command={}", encode(a)));
    }
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        format!("{protocol}, v4.channel.k8s.io").parse().unwrap(),
    );
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    let mut s = Session {
        protocol: resp
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default(),
        ..Session::default()
    };
    if let Some(data) = stdin {
        let mut f = vec![0u8];
        f.extend_from_slice(data);
        ws.send(Message::Binary(f.into())).await.unwrap();
        if close_stdin_v5 {
            ws.send(Message::Binary(vec![255u8, 0].into()))
                .await
                .unwrap();
        }
    }
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Binary(b)) => {
                let (ch, payload) = b.split_first().unwrap();
                s.frames.push((*ch, payload.len()));
                match ch {
                    1 => s.stdout.extend_from_slice(payload),
                    2 => s.stderr.extend_from_slice(payload),
                    3 => s.status = Some(String::from_utf8(payload.to_vec()).unwrap()),
                    _ => panic!("unexpected channel {ch}"),
                }
            }
            Ok(Message::Close(frame)) => {
                s.close = frame.map(|f| u16::from(f.code));
                break;
            }
            Ok(Message::Text(_)) => panic!("text frames are not part of the protocol"),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    s
}

#[tokio::test]
async fn v5_stdin_stdout_stderr_and_status() {
    let (base, services) = start(None).await;
    let argv = ["sh", "-c", "cat; echo oops >&2; exit 3"];
    let s = session(&base, "v5.channel.k8s.io", &argv, Some(b"hello\n"), true).await;
    assert_eq!(s.protocol, "v5.channel.k8s.io");
    assert_eq!(
        s.frames.first(),
        Some(&(1, 0)),
        "initial empty stdout frame"
    );
    assert_eq!(s.stdout, b"hello\n");
    assert_eq!(s.stderr, b"oops\n");
    assert_eq!(
        s.status.as_deref(),
        Some(
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c cat; echo oops \u003e\u00262; exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        )
    );
    assert_eq!(s.close, Some(1000));
    assert_eq!(
        services.execs.lock().unwrap()[0],
        argv.map(String::from).to_vec()
    );
}

#[tokio::test]
async fn v4_success() {
    let (base, _) = start(None).await;
    let s = session(&base, "v4.channel.k8s.io", &["echo", "hi"], None, false).await;
    assert_eq!(s.protocol, "v4.channel.k8s.io");
    assert_eq!(s.stdout, b"hi\n");
    assert_eq!(
        s.status.as_deref(),
        Some(r#"{"metadata":{},"status":"Success"}"#)
    );
    assert_eq!(s.close, Some(1000));
    // The status is the last data frame.
    assert_eq!(s.frames.last().map(|f| f.0), Some(3));
}

#[tokio::test]
async fn one_megabyte_of_stdout_arrives_intact() {
    let (base, services) = start(None).await;
    let big = Some(&services.big[..]);
    let s = session(&base, "v5.channel.k8s.io", &["cat"], big, true).await;
    assert_eq!(s.stdout.len(), services.big.len());
    assert!(s.stdout == services.big);
    assert!(s.frames.len() > 2, "large output is split into frames");
    assert_eq!(
        s.status.as_deref(),
        Some(r#"{"metadata":{},"status":"Success"}"#)
    );
}

#[tokio::test]
async fn large_stdin_round_trip_while_output_flows() {
    let (base, _) = start(None).await;
    let input: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let s = session(&base, "v5.channel.k8s.io", &["cat"], Some(&input), true).await;
    assert!(s.stdout == input);
    assert_eq!(s.close, Some(1000));
}

#[tokio::test]
async fn missing_executable_reports_internal_error() {
    let (base, _) = start(None).await;
    let s = session(
        &base,
        "v5.channel.k8s.io",
        &["curl", "-s", "x"],
        None,
        false,
    )
    .await;
    let status = s.status.expect("a status frame");
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["reason"], "InternalError");
    assert_eq!(v["code"], 500);
    let msg = v["message"].as_str().unwrap();
    assert!(msg.starts_with("Internal error occurred: error executing command in container: failed to exec in container: failed to start exec \""), "{msg}");
    assert!(
        msg.ends_with("exec: \"curl\": executable file not found in $PATH: unknown"),
        "{msg}"
    );
    assert_eq!(s.close, Some(1000));
}

#[tokio::test]
async fn cut_after_bytes_drops_the_connection() {
    let (base, services) = start(Some(1000)).await;
    let big = Some(&services.big[..]);
    let s = session(&base, "v5.channel.k8s.io", &["cat"], big, true).await;
    assert_eq!(s.stdout.len(), 1000);
    assert!(s.status.is_none());
    assert!(s.close.is_none(), "no Close frame on an abrupt cut");
}

/// A cut must close the connection even while the command still waits for
/// stdin (the client keeps stdin open): the reader half ends too, so the
/// client sees the stream end instead of a stall. The generous bound only
/// turns a regression (a stall) into a failure instead of a hung test.
#[tokio::test]
async fn cut_closes_the_socket_while_stdin_is_open() {
    let (base, _) = start(Some(1000)).await;
    let input = vec![b'x'; 100_000];
    let s = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        session(&base, "v5.channel.k8s.io", &["cat"], Some(&input), false),
    )
    .await
    .expect("the cut connection must end, not stall");
    assert_eq!(s.stdout.len(), 1000);
    assert!(s.stdout.iter().all(|b| *b == b'x'));
    assert!(s.status.is_none());
    assert!(s.close.is_none(), "no Close frame on an abrupt cut");
}
