//! Exec through the API server itself (`/api/v1/namespaces/N/pods/P/exec`)
//! with a raw WebSocket client, once per channel protocol: a client offering
//! only `v4.channel.k8s.io` gets v4 (what older client-go and kube-rs
//! fallbacks speak), one offering only `v5.channel.k8s.io` gets v5 (what
//! kubectl 1.32 and kube-rs prefer), with stdin, stdout, stderr, the status
//! on channel 3 and a final Close 1000; an offer of neither is refused.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use meshsim::{Config, Server};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn ready_pod(h: &meshsim::Handle) -> String {
    for _ in 0..400 {
        let name = h.cluster.with_store(|s| {
            s.list(meshsim::store::resources::PODS, Some("np-test-1"))
                .find(|p| {
                    p["status"]["containerStatuses"]
                        .as_array()
                        .is_some_and(|c| c.iter().all(|c| c["ready"] == true))
                })
                .and_then(|p| p["metadata"]["name"].as_str().map(str::to_string))
        });
        if let Some(n) = name {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no ready pod in np-test-1");
}

async fn start() -> (meshsim::Handle, String) {
    let h = Server::start(Config {
        scenarios: vec![
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/walkthrough"),
        ],
        time_scale: 0.01,
        ready_delay: Duration::from_millis(10),
        ..Config::default()
    })
    .await
    .unwrap();
    let pod = ready_pod(&h).await;
    (h, pod)
}

#[derive(Debug, Default)]
struct Session {
    protocol: String,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: Option<String>,
    close: Option<u16>,
}

async fn exec(
    h: &meshsim::Handle,
    pod: &str,
    offer: &str,
    argv: &[&str],
    stdin: Option<&[u8]>,
) -> Session {
    let mut url = format!(
        "ws://{}/api/v1/namespaces/np-test-1/pods/{pod}/exec?container=np-test-nginx-1&stdout=true&stderr=true",
        h.addr
    );
    if stdin.is_some() {
        url.push_str("&stdin=true");
    }
    for a in argv {
        let enc: String = a
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        url.push_str(&format!("&command={enc}"));
    }
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", offer.parse().unwrap());
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
        if s.protocol == "v5.channel.k8s.io" {
            // v5: close stdin explicitly.
            ws.send(Message::Binary(vec![255u8, 0].into()))
                .await
                .unwrap();
        }
    }
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Binary(b)) => {
                let (ch, payload) = b.split_first().unwrap();
                match ch {
                    1 => s.stdout.extend_from_slice(payload),
                    2 => s.stderr.extend_from_slice(payload),
                    3 => s.status = Some(String::from_utf8(payload.to_vec()).unwrap()),
                    255 => {}
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_only_client_gets_v4() {
    let (h, pod) = start().await;
    let s = exec(
        &h,
        &pod,
        "v4.channel.k8s.io",
        &["sh", "-c", "echo hi; echo oops >&2"],
        None,
    )
    .await;
    assert_eq!(s.protocol, "v4.channel.k8s.io");
    assert_eq!(s.stdout, b"hi\n");
    assert_eq!(s.stderr, b"oops\n");
    assert_eq!(
        s.status.as_deref(),
        Some(r#"{"metadata":{},"status":"Success"}"#)
    );
    assert_eq!(s.close, Some(1000));
    let s = exec(&h, &pod, "v4.channel.k8s.io", &["sh", "-c", "exit 3"], None).await;
    let status: serde_json::Value = serde_json::from_str(s.status.as_deref().unwrap()).unwrap();
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_only_client_gets_v5_with_stdin_close() {
    let (h, pod) = start().await;
    let s = exec(
        &h,
        &pod,
        "v5.channel.k8s.io",
        &["cat"],
        Some(b"through stdin\n"),
    )
    .await;
    assert_eq!(s.protocol, "v5.channel.k8s.io");
    assert_eq!(s.stdout, b"through stdin\n");
    assert_eq!(
        s.status.as_deref(),
        Some(r#"{"metadata":{},"status":"Success"}"#)
    );
    assert_eq!(s.close, Some(1000));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_subprotocol_is_refused_with_status() {
    let (h, pod) = start().await;
    let url = format!(
        "ws://{}/api/v1/namespaces/np-test-1/pods/{pod}/exec?container=np-test-nginx-1&command=true",
        h.addr
    );
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "channel.k8s.io".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 400);
            let body: serde_json::Value =
                serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
            assert_eq!(body["kind"], "Status");
        }
        other => panic!("expected a 400, got {other:?}"),
    }
    h.shutdown().await;
}

/// Every exec request is recorded with its argv exactly as received (what
/// tests use to prove clients pass values verbatim), and the log is bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_argv_is_recorded_verbatim_and_bounded() {
    use meshsim::kubelet::exec::ExecServices;
    use meshsim::traffic::Container;
    let (h, pod) = start().await;
    let odd = "a b;$(id)`x`\t'\"\\é";
    let s = exec(&h, &pod, "v5.channel.k8s.io", &["echo", odd], None).await;
    assert_eq!(s.stdout, format!("{odd}\n").into_bytes());
    let log = h.cluster.exec_log();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].namespace, "np-test-1");
    assert_eq!(log[0].pod, pod);
    assert_eq!(log[0].container, "np-test-nginx-1");
    assert_eq!(log[0].argv, vec!["echo".to_string(), odd.to_string()]);

    // Past the limit, the oldest records go first.
    let services = meshsim::server::Services {
        app: h.cluster.0.clone(),
    };
    let target = Container {
        namespace: "ns".into(),
        pod: "p".into(),
        container: "c".into(),
        image: "busybox".into(),
        tools: vec![],
    };
    let limit = meshsim::server::EXEC_LOG_LIMIT;
    for i in 0..limit + 5 {
        services.record_exec(&target, &[format!("n{i}")]);
    }
    let log = h.cluster.exec_log();
    assert_eq!(log.len(), limit);
    assert_eq!(log[0].argv, vec![format!("n{}", 5)]);
    assert_eq!(log[limit - 1].argv, vec![format!("n{}", limit + 4)]);
    h.shutdown().await;
}
