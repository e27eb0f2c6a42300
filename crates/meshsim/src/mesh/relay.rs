//! What lies behind a waypoint's Envoy: the destination's ztunnel and the
//! application, played by meshsim on one loopback port per waypoint.
//!
//! A waypoint's real Envoy (see [`crate::mesh::sidecar::waypoint`]) enforces the
//! L7 policies attached to it and forwards what it allows to its one
//! upstream, this relay. The relay then does what the rest of the path
//! does in a cluster: the destination's ztunnel decides on the connection
//! from the waypoint (its identity, not the client's; decided beforehand by
//! [`super::decide`]) and writes its access log line; a rejection closes the
//! connection with a reset, which the waypoint's Envoy reports as a 503
//! (`connection termination`); otherwise the application answers
//! ([`super::app`]) and an nginx writes its own log line.
//!
//! Requests through one waypoint are handled one at a time (the mesh holds
//! the waypoint's lock for the whole exchange), so the relay answers the
//! request the mesh put in its slot.

use std::sync::{Arc, Mutex, Weak};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::app;
use super::decide::WaypointHop;
use crate::mesh::sidecar::lock;
use crate::shared::Shared;

/// One waypoint's relay: its loopback port and the hop being played.
#[derive(Debug)]
pub struct Relay {
    pub port: u16,
    slot: Mutex<Option<Arc<WaypointHop>>>,
}

impl Relay {
    /// Binds 127.0.0.1 on a kernel-chosen port and serves until `stop` fires.
    pub async fn start(app: Weak<Shared>, stop: CancellationToken) -> std::io::Result<Arc<Relay>> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let relay = Arc::new(Relay {
            port: listener.local_addr()?.port(),
            slot: Mutex::new(None),
        });
        let r = relay.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((stream, _)) = accepted else { continue };
                let (app, r) = (app.clone(), r.clone());
                tokio::spawn(async move { serve(app, r, stream).await });
            }
        });
        Ok(relay)
    }

    /// Sets (or clears) the hop the next request plays.
    pub fn set(&self, hop: Option<WaypointHop>) {
        *lock(&self.slot) = hop.map(Arc::new);
    }

    fn current(&self) -> Option<Arc<WaypointHop>> {
        lock(&self.slot).clone()
    }
}

/// One request read from the waypoint's Envoy.
struct Request {
    method: String,
    path: String,
    user_agent: Option<String>,
}

async fn read_request<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut length = 0usize;
    let mut chunked = false;
    let mut user_agent = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).await.ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let v = v.trim();
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.parse().unwrap_or(0),
                "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                "user-agent" => user_agent = Some(v.to_string()),
                _ => {}
            }
        }
    }
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).await.ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
        }
    } else if length > 0 {
        let mut body = vec![0u8; length];
        r.read_exact(&mut body).await.ok()?;
    }
    Some(Request {
        method,
        path,
        user_agent,
    })
}

fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

async fn serve(app: Weak<Shared>, relay: Arc<Relay>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader).await {
        let (Some(hop), Some(app)) = (relay.current(), app.upgrade()) else {
            return;
        };
        if let Some((ns, pod, line)) = &hop.ztunnel_log {
            app.logs
                .append(ns, pod, crate::mesh::sidecar::PROXY_CONTAINER, line);
        }
        if !hop.ztunnel_allowed {
            tracing::debug!("meshsim: behind the waypoint: {}", hop.ztunnel_reason);
            // ztunnel closes the connection: a reset, not a FIN.
            let _ = reader.get_ref().set_zero_linger();
            return;
        }
        let a = app::answer(
            &hop.pod,
            &hop.configmaps,
            &req.method,
            &req.path,
            hop.port,
            &[],
        );
        if a.nginx
            && let Some(c) = app::nginx_container(&hop.pod)
        {
            let line = app::nginx_log_line(
                &hop.waypoint_ip,
                &req.method,
                &req.path,
                a.status,
                a.body.len(),
                req.user_agent.as_deref(),
            );
            let ns = hop.pod["metadata"]["namespace"].as_str().unwrap_or("");
            let pod = hop.pod["metadata"]["name"].as_str().unwrap_or("");
            app.logs.append(ns, pod, c, &line);
        }
        let mut head = format!("HTTP/1.1 {} {}\r\n", a.status, reason(a.status));
        for (k, v) in &a.headers {
            if k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("connection") {
                continue;
            }
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", a.body.len()));
        let s = reader.get_mut();
        if s.write_all(head.as_bytes()).await.is_err() || s.write_all(&a.body).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_requests_back_to_back_with_and_without_bodies() {
        let wire = b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabcGET /b?q=1 HTTP/1.1\r\nUser-Agent: curl/8\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\nGET /c HTTP/1.1\r\n\r\n";
        let mut r = BufReader::new(&wire[..]);
        let a = read_request(&mut r).await.expect("first");
        assert_eq!((a.method.as_str(), a.path.as_str()), ("POST", "/a"));
        let b = read_request(&mut r).await.expect("second");
        assert_eq!(b.path, "/b?q=1");
        assert_eq!(b.user_agent.as_deref(), Some("curl/8"));
        let c = read_request(&mut r).await.expect("third");
        assert_eq!(c.path, "/c");
        assert!(read_request(&mut r).await.is_none());
    }
}
