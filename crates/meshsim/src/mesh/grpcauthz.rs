//! The ext_authz sample's gRPC check server, for CUSTOM providers of type
//! `envoyExtAuthzGrpc`.
//!
//! Envoy's gRPC ext_authz filter calls `envoy.service.auth.v3.Authorization/Check`
//! over HTTP/2 (h2c) on the provider's cluster. One loopback server per
//! provider service and port answers for it ([`serve`]): it finds a Ready pod
//! behind the Service the way meshsim routes any request ([`flow::resolve`]),
//! and when that pod runs Istio's ext_authz sample on its gRPC port 9000 it
//! answers as the sample does ([`app::ext_authz_grpc_allows`]) and writes the
//! sample's log line; otherwise the call fails (`UNAVAILABLE`), and Envoy
//! fails closed. Only the fields the sample reads are decoded from the
//! `CheckRequest` (field numbers from Envoy's `attribute_context.proto` and
//! `external_auth.proto`); the `CheckResponse` carries the sample's status,
//! HTTP status, headers and body.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use tokio_util::sync::CancellationToken;

use crate::mesh::{app, flow};
use crate::protobuf::{Wire, fields};
use crate::shared::Shared;

/// The method Envoy's gRPC ext_authz calls.
pub const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// gRPC status codes used here.
const GRPC_OK: u64 = 0;
const GRPC_PERMISSION_DENIED: u64 = 7;
const GRPC_UNIMPLEMENTED: u32 = 12;
const GRPC_UNAVAILABLE: u32 = 14;

/// A gRPC response body: one message, then the trailers.
struct GrpcBody {
    data: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
}

impl hyper::body::Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }
}

fn grpc_response(message: Option<Vec<u8>>, status: u32) -> Response<GrpcBody> {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from(status));
    let data = message.map(|m| {
        let mut framed = Vec::with_capacity(m.len() + 5);
        framed.push(0);
        framed.extend_from_slice(&u32::try_from(m.len()).unwrap_or(u32::MAX).to_be_bytes());
        framed.extend_from_slice(&m);
        Bytes::from(framed)
    });
    let mut r = Response::new(GrpcBody {
        data,
        trailers: Some(trailers),
    });
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    r
}

// --- the few protobuf fields involved -------------------------------------

/// The first length-delimited field `n` of message `b`.
fn sub(b: &[u8], n: u64) -> Option<&[u8]> {
    fields(b).ok()?.into_iter().find_map(|(f, w)| match w {
        Wire::Bytes(x) if f == n => Some(x),
        _ => None,
    })
}

fn text(b: &[u8], n: u64) -> String {
    sub(b, n)
        .map(|x| String::from_utf8_lossy(x).into_owned())
        .unwrap_or_default()
}

/// What the sample reads from a `CheckRequest`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Check {
    principal: String,
    method: String,
    host: String,
    path: String,
    headers: Vec<(String, String)>,
}

fn decode_check(b: &[u8]) -> Check {
    // CheckRequest.attributes(1) -> AttributeContext{source(1): Peer{principal(4)},
    // request(4): Request{http(2): HttpRequest{method(2), headers(3), path(4), host(5)}}}
    let attrs = sub(b, 1).unwrap_or_default();
    let http = sub(attrs, 4).and_then(|r| sub(r, 2)).unwrap_or_default();
    let headers = fields(http)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(f, w)| match w {
            Wire::Bytes(e) if f == 3 => Some((text(e, 1), text(e, 2))),
            _ => None,
        })
        .collect();
    Check {
        principal: sub(attrs, 1).map(|s| text(s, 4)).unwrap_or_default(),
        method: text(http, 2),
        host: text(http, 5),
        path: text(http, 4),
        headers,
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_uint(out: &mut Vec<u8>, field: u64, v: u64) {
    put_varint(out, field << 3);
    put_varint(out, v);
}

/// `HeaderValueOption{header(1): HeaderValue{key(1), value(2)}}`.
fn header_option(key: &str, value: &str) -> Vec<u8> {
    let mut hv = Vec::new();
    put_bytes(&mut hv, 1, key.as_bytes());
    put_bytes(&mut hv, 2, value.as_bytes());
    let mut o = Vec::new();
    put_bytes(&mut o, 1, &hv);
    o
}

/// The sample's `CheckResponse`: `status(1)` with the gRPC code, then
/// `ok_response(3)` or `denied_response(2)` (HTTP 403, body) with its headers.
fn encode_response(allowed: bool, received: &str) -> Vec<u8> {
    let result = if allowed { "allowed" } else { "denied" };
    let headers = [
        header_option(app::EXT_AUTHZ_RESULT_HEADER, result),
        header_option(app::EXT_AUTHZ_RECEIVED_HEADER, received),
        header_option(
            app::EXT_AUTHZ_OVERRIDE_HEADER,
            app::EXT_AUTHZ_GRPC_OVERRIDE_VALUE,
        ),
    ];
    let mut status = Vec::new();
    let code = if allowed {
        GRPC_OK
    } else {
        GRPC_PERMISSION_DENIED
    };
    if code != 0 {
        put_uint(&mut status, 1, code);
    }
    let mut out = Vec::new();
    put_bytes(&mut out, 1, &status);
    let mut http = Vec::new();
    if allowed {
        for h in &headers {
            put_bytes(&mut http, 2, h);
        }
        put_bytes(&mut out, 3, &http);
    } else {
        let mut st = Vec::new();
        put_uint(&mut st, 1, 403);
        put_bytes(&mut http, 1, &st);
        for h in &headers {
            put_bytes(&mut http, 2, h);
        }
        put_bytes(&mut http, 3, app::ext_authz_deny_body().as_bytes());
        put_bytes(&mut out, 2, &http);
    }
    out
}

// --- the server ------------------------------------------------------------

/// The ext_authz sample pod behind `host:port` (namespace, name, container).
fn sample_behind(app: &Weak<Shared>, host: &str, port: u16) -> Option<(String, String, String)> {
    let (pod, port) = flow::pod_behind(app, host, port)?;
    if port != app::EXT_AUTHZ_GRPC_PORT {
        return None;
    }
    Some((
        pod["metadata"]["namespace"].as_str()?.to_string(),
        pod["metadata"]["name"].as_str()?.to_string(),
        app::ext_authz_container(&pod)?.to_string(),
    ))
}

async fn check(
    app: Weak<Shared>,
    host: Arc<str>,
    port: u16,
    req: Request<Incoming>,
) -> Response<GrpcBody> {
    if req.uri().path() != CHECK_PATH {
        return grpc_response(None, GRPC_UNIMPLEMENTED);
    }
    let Some((ns, pod, container)) = sample_behind(&app, &host, port) else {
        return grpc_response(None, GRPC_UNAVAILABLE);
    };
    let Ok(body) = axum::body::to_bytes(axum::body::Body::new(req.into_body()), 1 << 20).await
    else {
        return grpc_response(None, GRPC_UNAVAILABLE);
    };
    let check = decode_check(body.get(5..).unwrap_or_default());
    let allowed = app::ext_authz_grpc_allows(&check.headers, &check.principal);
    let mut hs: Vec<String> = check
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    hs.sort();
    let attributes = format!(
        "source principal: {:?}, method: {}, headers: [{}]",
        check.principal,
        check.method,
        hs.join(", ")
    );
    if let Some(a) = app.upgrade() {
        let line = app::ext_authz_grpc_log_line(allowed, &check.host, &check.path, &attributes);
        a.logs.append(&ns, &pod, &container, &line);
    }
    grpc_response(Some(encode_response(allowed, &attributes)), 0)
}

/// Binds 127.0.0.1 on a kernel-chosen port (synchronously, so the caller
/// knows the port at once) and answers there, until `stop` fires, the gRPC
/// checks a CUSTOM policy's ext_authz filter sends to the provider service
/// `host` on service port `port`. Needs a tokio runtime.
pub fn serve(
    app: Weak<Shared>,
    host: String,
    port: u16,
    stop: CancellationToken,
) -> std::io::Result<u16> {
    let (listener, local) = crate::mesh::sidecar::bind_loopback()?;
    let host: Arc<str> = host.into();
    tokio::spawn(async move {
        let builder =
            hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        loop {
            let stream = tokio::select! {
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(_) => continue,
                },
                _ = stop.cancelled() => return,
            };
            let (app, host, builder, stop) =
                (app.clone(), host.clone(), builder.clone(), stop.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let (app, host) = (app.clone(), host.clone());
                    async move { Ok::<_, Infallible>(check(app, host, port, req).await) }
                });
                let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                tokio::select! {
                    _ = conn => {}
                    _ = stop.cancelled() => {}
                }
            });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_request_fields_are_read_and_the_response_says_denied() {
        // A CheckRequest as Envoy encodes it (only the fields read here).
        let mut peer = Vec::new();
        put_bytes(
            &mut peer,
            4,
            b"spiffe://cluster.local/ns/np-test-1/sa/default",
        );
        let mut entry = Vec::new();
        put_bytes(&mut entry, 1, b"x-ext-authz");
        put_bytes(&mut entry, 2, b"deny");
        let mut http = Vec::new();
        put_bytes(&mut http, 2, b"GET");
        put_bytes(&mut http, 3, &entry);
        put_bytes(&mut http, 4, b"/x");
        put_bytes(&mut http, 5, b"svc");
        let mut request = Vec::new();
        put_bytes(&mut request, 2, &http);
        let mut attrs = Vec::new();
        put_bytes(&mut attrs, 1, &peer);
        put_bytes(&mut attrs, 4, &request);
        let mut check = Vec::new();
        put_bytes(&mut check, 1, &attrs);
        let c = decode_check(&check);
        assert_eq!(
            c.principal,
            "spiffe://cluster.local/ns/np-test-1/sa/default"
        );
        assert_eq!(
            (c.method.as_str(), c.host.as_str(), c.path.as_str()),
            ("GET", "svc", "/x")
        );
        assert_eq!(c.headers, [("x-ext-authz".to_string(), "deny".to_string())]);
        assert!(!app::ext_authz_grpc_allows(&c.headers, &c.principal));

        let r = encode_response(false, "r");
        let status = sub(&r, 1).unwrap();
        assert_eq!(fields(status).unwrap().len(), 1);
        let denied = sub(&r, 2).unwrap();
        assert_eq!(text(denied, 3), app::ext_authz_deny_body());
        let ok = encode_response(true, "r");
        assert_eq!(sub(&ok, 1), Some(&[][..]));
        assert!(sub(&ok, 3).is_some() && sub(&ok, 2).is_none());
        assert_eq!(decode_check(b"\xff\xff"), Check::default());
    }
}
