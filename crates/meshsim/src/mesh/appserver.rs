//! The application behind a sidecar: an HTTP server on loopback per
//! listening port of the pod, answering what meshsim's application model
//! ([`crate::mesh::app`]) says the container would (the walk-through's
//! nginx: `Hello world - np-test-nginx-2!`), so the destination Envoy's
//! router has a real upstream. nginx containers also write their access log
//! line, as seen from the sidecar (client 127.0.0.6); the ext_authz
//! sample writes its check line.
//!
//! It also serves CUSTOM policies' providers ([`serve_provider`]): one
//! loopback server per provider service and port, which the sidecars'
//! `outbound|PORT||HOST` clusters lead to. Each check request is answered by
//! the application of a Ready pod behind that Service, found the way meshsim
//! routes any request to a Service ([`flow::resolve`]); without one, 503
//! `no healthy upstream` as Envoy answers for a cluster without endpoints
//! (Envoy's ext_authz takes it as an error and fails closed). The check
//! reaches the application directly, in plain text: not through that pod's
//! own sidecar, whose policies and access log it therefore skips.

use std::sync::{Arc, Weak};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use tokio_util::sync::CancellationToken;

use crate::mesh::sidecar::{lock, serve_router};
use crate::mesh::{app, flow};
use crate::shared::Shared;
use crate::store::resources;

/// Serves on 127.0.0.1 (a kernel-chosen port, returned) the application of
/// `namespace/pod` for its container port `port` until `stop` fires.
pub fn serve(
    app: Weak<Shared>,
    namespace: String,
    pod: String,
    port: u16,
    stop: CancellationToken,
) -> std::io::Result<u16> {
    let ctx = Arc::new((app, namespace, pod, port));
    let router = axum::Router::new().fallback(move |req: Request| {
        let ctx = ctx.clone();
        async move { answer(&ctx.0, &ctx.1, &ctx.2, ctx.3, req) }
    });
    serve_router(router, stop)
}

/// Serves on 127.0.0.1 (a kernel-chosen port, returned at once) until `stop`
/// fires the requests a CUSTOM policy's ext_authz filter sends to the
/// provider service `host` on service port `port`. Needs a tokio runtime.
pub fn serve_provider(
    app: Weak<Shared>,
    host: String,
    port: u16,
    stop: CancellationToken,
) -> std::io::Result<u16> {
    let ctx = Arc::new((app, host, port));
    let router = axum::Router::new().fallback(move |req: Request| {
        let ctx = ctx.clone();
        async move { answer_provider(&ctx.0, &ctx.1, ctx.2, req) }
    });
    serve_router(router, stop)
}

fn answer_provider(app: &Weak<Shared>, host: &str, port: u16, req: Request) -> Response {
    match flow::pod_behind(app, host, port) {
        Some((pod, port)) => {
            let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
            let name = pod["metadata"]["name"].as_str().unwrap_or("");
            answer(app, ns, name, port, req)
        }
        None => Response::builder()
            .status(503)
            .header("content-type", "text/plain")
            .body(Body::from("no healthy upstream"))
            .unwrap_or_default(),
    }
}

fn answer(app: &Weak<Shared>, ns: &str, pod: &str, port: u16, req: Request) -> Response {
    let Some(app) = app.upgrade() else {
        return Response::builder()
            .status(503)
            .body(Body::empty())
            .unwrap_or_default();
    };
    let (pod_json, configmaps) = {
        let store = lock(&app.store);
        let p = store.get(resources::PODS, ns, pod).cloned();
        let cms: Vec<serde_json::Value> = store
            .list(resources::CONFIGMAPS, Some(ns))
            .cloned()
            .collect();
        (p, cms)
    };
    let Some(pod_json) = pod_json else {
        return Response::builder()
            .status(503)
            .body(Body::empty())
            .unwrap_or_default();
    };
    let method = req.method().as_str().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let a = app::answer(&pod_json, &configmaps, &method, &path, port, &headers);
    if port == app::EXT_AUTHZ_HTTP_PORT
        && let Some(c) = app::ext_authz_container(&pod_json)
        && a.headers
            .iter()
            .any(|(k, _)| k == app::EXT_AUTHZ_RESULT_HEADER)
    {
        let line = app::ext_authz_log_line(a.status == 200, &method, &path, &headers);
        app.logs.append(ns, pod, c, &line);
    }
    if a.nginx
        && let Some(c) = app::nginx_container(&pod_json)
    {
        let ua = req
            .headers()
            .get("user-agent")
            .and_then(|v| v.to_str().ok());
        let line = app::nginx_log_line("127.0.0.6", &method, &path, a.status, a.body.len(), ua);
        app.logs.append(ns, pod, c, &line);
    }
    let mut b = Response::builder().status(a.status);
    for (k, v) in &a.headers {
        if k.eq_ignore_ascii_case("content-length") {
            continue;
        }
        b = b.header(k.as_str(), v.as_str());
    }
    b.body(Body::from(a.body)).unwrap_or_default()
}
