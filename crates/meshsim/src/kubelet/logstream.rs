//! Adapter between the API server and the container log store
//! ([`crate::logs`], owned by the exec side): turns `pods/log` query
//! parameters into [`LogOptions`] and the store's stream into an HTTP body
//! (cut abruptly by a `cut-log-after` fault), and seeds believable startup
//! lines when a container starts (istio-proxy, nginx) plus files named by
//! `meshsim.dev/log.CONTAINER` annotations.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{HeaderValue, StatusCode};

use crate::app::App;
use crate::error::ApiError;
use crate::logs::LogOptions;
use crate::path::{Query, ResourcePath, q1, qbool};
use crate::store::controllers::StartedPod;

fn num<T: std::str::FromStr>(q: &Query, k: &str) -> Result<Option<T>, ApiError> {
    match q1(q, k) {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!("invalid {k} {v:?}: must be a non-negative integer"))
        }),
    }
}

/// Log options from the query string, validated like the API server does.
pub fn options(q: &Query) -> Result<LogOptions, ApiError> {
    let flag = |k: &str| qbool(q, k);
    let since_time = match q1(q, "sinceTime").filter(|s| !s.is_empty()) {
        Some(t) => Some(t.parse::<jiff::Timestamp>().map_err(|_| {
            ApiError::bad_request(format!("invalid sinceTime {t:?}: expected RFC3339"))
        })?),
        None => None,
    };
    let since_seconds: Option<i64> = num(q, "sinceSeconds")?;
    if since_seconds.is_some_and(|s| s < 1) {
        return Err(ApiError::invalid(
            "PodLogOptions",
            "",
            "sinceSeconds: Invalid value: must be greater than 0",
        ));
    }
    if since_seconds.is_some() && since_time.is_some() {
        return Err(ApiError::invalid(
            "PodLogOptions",
            "",
            "sinceSeconds: Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified",
        ));
    }
    Ok(LogOptions {
        follow: flag("follow"),
        since_seconds: since_seconds.map(|s| s.unsigned_abs()),
        since_time,
        tail_lines: num::<i64>(q, "tailLines")?.and_then(|t| usize::try_from(t).ok()),
        timestamps: flag("timestamps"),
        limit_bytes: num(q, "limitBytes")?,
    })
}

/// Stream a container's log as the kubelet would.
pub fn respond(
    app: &App,
    t: &ResourcePath,
    container: &str,
    q: &Query,
    cut_after: Option<usize>,
) -> Result<Response, ApiError> {
    let opts = options(q)?;
    let ns = t.namespace.clone().unwrap_or_default();
    let pod = t.name.clone().unwrap_or_default();
    let stream = app.logs.stream(&ns, &pod, container, opts);
    let cancel = app.cancel.clone();
    let stream = stream.take_until(async move { cancel.cancelled().await });
    let body = match cut_after {
        None => Body::from_stream(stream.map(Ok::<_, Infallible>)),
        Some(limit) => {
            // Send at most `limit` bytes; once that many went out, let them
            // reach the client, then fail the body so the connection is cut.
            // A shorter log ends normally.
            // Phases: 0 streaming, 1 limit reached (cut next), 2 done.
            let s = futures::stream::unfold(
                (Box::pin(stream), 0usize, 0u8),
                move |(mut inner, total, phase)| async move {
                    match phase {
                        0 => {
                            let chunk: Bytes = inner.next().await?;
                            let take = (limit - total).min(chunk.len());
                            let total = total + take;
                            let next = if total >= limit { 1 } else { 0 };
                            Some((Ok(chunk.slice(..take)), (inner, total, next)))
                        }
                        1 => {
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            let e = std::io::Error::new(
                                std::io::ErrorKind::ConnectionAborted,
                                "log stream cut by meshsim fault",
                            );
                            Some((Err(e), (inner, total, 2)))
                        }
                        _ => None,
                    }
                },
            );
            Body::from_stream(s)
        }
    };
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    Ok(r)
}

fn nginx_lines() -> Vec<String> {
    vec![
        "/docker-entrypoint.sh: /docker-entrypoint.d/ is not empty, will attempt to perform configuration".into(),
        "/docker-entrypoint.sh: Looking for shell scripts in /docker-entrypoint.d/".into(),
        "/docker-entrypoint.sh: Launching /docker-entrypoint.d/10-listen-on-ipv6-by-default.sh".into(),
        "/docker-entrypoint.sh: Configuration complete; ready for start up".into(),
    ]
}

fn proxy_lines(pod: &str, ns: &str) -> Vec<String> {
    let t = crate::logs::istio_log_time();
    vec![
        format!("{t}\tinfo\tFIPS is not enabled"),
        format!(
            "{t}\tinfo\tCLI options:\n\tconfigPath: ./etc/istio/proxy\n\tproxyComponentLogLevel: misc:error\n\tproxyLogLevel: warning"
        ),
        format!("{t}\tinfo\tApplying mesh config from file"),
        format!(
            "{t}\tinfo\tProxy role\tips=[] type=sidecar id={pod}.{ns} domain={ns}.svc.cluster.local"
        ),
        format!("{t}\tinfo\tPilot SAN: [istiod.istio-system.svc]"),
        format!("{t}\tinfo\tStarting proxy agent"),
        format!(
            "{t}\tinfo\tEnvoy command: [-c etc/istio/proxy/envoy-rev.json --drain-time-s 45 --drain-strategy immediate --local-address-ip-version v4 --file-flush-interval-msec 1000 --disable-hot-restart --allow-unknown-static-fields -l warning --component-log-level misc:error]"
        ),
        format!(
            "{t}\tinfo\txdsproxy\tconnected to delta upstream XDS server: istiod.istio-system.svc:15012"
        ),
        format!("{t}\tinfo\tads\tADS: new connection for node:{pod}.{ns}-1"),
        format!(
            "{t}\tinfo\tads\tSDS: PUSH request for node:{pod}.{ns} resources:1 size:4.0kB resource:default"
        ),
        format!("{t}\tinfo\tReadiness succeeded in 1.023456789s"),
        format!("{t}\tinfo\tEnvoy proxy is ready"),
    ]
}

/// ztunnel's first lines (Rust `tracing` layout, as its access lines).
fn ztunnel_lines() -> Vec<String> {
    let t = crate::logs::istio_log_time();
    vec![
        format!("{t}\tinfo\tztunnel\tversion: meshsim ztunnel"),
        format!("{t}\tinfo\tapp\tin-pod mode enabled"),
        format!("{t}\tinfo\txds::client:xds{{id=1}}\tStream established"),
        format!("{t}\tinfo\treadiness\tTask 'state manager' complete, marking server ready"),
    ]
}

/// Seed startup lines for a started pod.
pub fn seed(app: &App, pod: &StartedPod) {
    let annotations = {
        let Ok(st) = app.store.lock() else { return };
        st.get_raw(crate::store::resources::PODS, &pod.namespace, &pod.name)
            .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
            .map(|mut p| p["metadata"]["annotations"].take())
            .unwrap_or_default()
    };
    for (container, image) in &pod.containers {
        let file = annotations[format!("meshsim.dev/log.{container}").as_str()].as_str();
        if let Some(path) = file {
            if let Err(e) = app.logs.seed_from_file(
                &pod.namespace,
                &pod.name,
                container,
                std::path::Path::new(path),
            ) {
                tracing::warn!("{e}");
            }
            continue;
        }
        let lines = if image
            .rsplit('/')
            .next()
            .unwrap_or("")
            .starts_with("ztunnel")
        {
            ztunnel_lines()
        } else if container == "istio-proxy" {
            proxy_lines(&pod.name, &pod.namespace)
        } else if image.rsplit('/').next().unwrap_or("").starts_with("nginx") {
            nginx_lines()
        } else {
            Vec::new()
        };
        for l in lines {
            app.logs.append(&pod.namespace, &pod.name, container, &l);
        }
    }
}
