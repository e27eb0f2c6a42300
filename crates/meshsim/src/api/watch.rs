//! Watches (`?watch=true`): the initial ADDED events or the history since
//! a `resourceVersion`, then live store events, as newline-delimited JSON,
//! until the client goes, `timeoutSeconds` passes or the server stops.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use futures::StreamExt;
use http::{HeaderValue, StatusCode};
use serde_json::{Value, json};

use super::table::{self, IncludeObject};
use super::{Selectors, json_body, with_version};
use crate::app::App;
use crate::error::ApiError;
use crate::path::{Query, ResourcePath, q1};
use crate::store::{Event, EventObject, meta_str};

pub(super) fn watch(
    app: &Arc<App>,
    t: &ResourcePath,
    q: &Query,
    table: Option<IncludeObject>,
) -> Result<Response, ApiError> {
    let sel = Selectors::parse(q, t.def)?;
    let timeout = q1(q, "timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let rv_param = q1(q, "resourceVersion").filter(|r| !r.is_empty() && *r != "0");
    let key = t.def.key();
    let def = t.def;
    let ns = t.namespace.clone();
    let matches = move |ev: &Event| -> bool {
        ev.key == key
            && ns
                .as_deref()
                .is_none_or(|n| meta_str(&ev.object, "namespace") == n)
            && sel.matches(&ev.object)
    };
    let render = move |kind: &str, obj: Value| -> Bytes {
        let obj = with_version(obj, def);
        let ev = if let Some(include) = table {
            let rv = meta_str(&obj, "resourceVersion").to_string();
            json!({"type": kind, "object": table::table(key, &[&obj], &rv, None, include)})
        } else {
            json!({"type": kind, "object": obj})
        };
        let mut line = serde_json::to_vec(&ev).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    };
    let st = app.lock_store()?;
    let rx = st.subscribe();
    let start_rv = st.resource_version();
    let mut first_lines: Vec<Bytes> = Vec::new();
    let mut expired = false;
    match rv_param {
        None => {
            for (_, _, raw) in st.list_raw_bytes(key, t.namespace.as_deref()) {
                let ev = Event {
                    key,
                    kind: "ADDED",
                    rv: 0,
                    object: EventObject::from_raw(raw.clone()),
                };
                if matches(&ev) {
                    first_lines.push(render("ADDED", ev.object.into_value()));
                }
            }
        }
        Some(rv) => {
            let rv: u64 = rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version {rv:?}")))?;
            match st.events_since(rv) {
                Some(evs) => {
                    for ev in evs.into_iter().filter(|e| matches(e)) {
                        first_lines.push(render(ev.kind, ev.object.into_value()));
                    }
                }
                None => expired = true,
            }
        }
    }
    drop(st);
    if expired {
        let mut line = serde_json::to_vec(&json!({"type": "ERROR", "object": ApiError::new(410, "Expired", "too old resource version").to_status()})).unwrap_or_default();
        line.push(b'\n');
        first_lines.insert(0, Bytes::from(line));
    }
    let live = live_events(app.clone(), rx, start_rv).filter_map(move |e| {
        let out = matches(&e).then(|| render(e.kind, e.object.into_value()));
        async move { out }
    });
    let cancel = app.cancel.clone();
    let stream = futures::stream::iter(first_lines).chain(if expired {
        live.take(0).boxed()
    } else {
        live.boxed()
    });
    let stream = stream.take_until(async move {
        match timeout {
            Some(d) => {
                tokio::select! { _ = tokio::time::sleep(d) => {}, _ = cancel.cancelled() => {} }
            }
            None => cancel.cancelled().await,
        }
    });
    let body = Body::from_stream(stream.map(Ok::<_, Infallible>));
    let mut r = json_body(StatusCode::OK, body);
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(r)
}

/// Store events after `last_rv`, in order. A watcher that falls behind the
/// broadcast ring catches up from the store's history; when even that no
/// longer reaches back, the stream ends and the client re-lists, as with a
/// real API server.
fn live_events(
    app: Arc<App>,
    rx: tokio::sync::broadcast::Receiver<Event>,
    last_rv: u64,
) -> impl futures::Stream<Item = Event> {
    struct Live {
        app: Arc<App>,
        rx: tokio::sync::broadcast::Receiver<Event>,
        last_rv: u64,
        pending: std::collections::VecDeque<Event>,
    }
    let state = Live {
        app,
        rx,
        last_rv,
        pending: std::collections::VecDeque::new(),
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(ev) = s.pending.pop_front() {
                if ev.rv <= s.last_rv {
                    continue;
                }
                s.last_rv = ev.rv;
                return Some((ev, s));
            }
            match s.rx.recv().await {
                Ok(ev) if ev.rv <= s.last_rv => {}
                Ok(ev) => {
                    s.last_rv = ev.rv;
                    return Some((ev, s));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let missed = s.app.store.lock().ok()?.events_since(s.last_rv)?;
                    s.pending.extend(missed);
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A receiver that fell more than the broadcast ring behind gets the
    /// missed events from the history, in order, without gaps or repeats.
    #[tokio::test]
    async fn lagging_watch_catches_up_from_history() {
        let h = crate::Server::start(crate::Config::default())
            .await
            .unwrap();
        let app = h.cluster.0.clone();
        let (rx, start_rv) = h
            .cluster
            .with_store(|s| (s.subscribe(), s.resource_version()));
        const N: usize = 3000;
        h.cluster.with_store(|s| {
            let def = crate::store::resources::preferred(crate::store::resources::CONFIGMAPS);
            for i in 0..N {
                s.create(
                    def,
                    "default",
                    json!({"metadata": {"name": format!("c-{i:05}")}}),
                )
                .unwrap();
            }
        });
        let names: Vec<String> = live_events(app, rx, start_rv)
            .take(N)
            .map(|e| meta_str(&e.object, "name").to_string())
            .collect()
            .await;
        let want: Vec<String> = (0..N).map(|i| format!("c-{i:05}")).collect();
        assert_eq!(names, want);
        h.shutdown().await;
    }
}
