//! Adapter between the API server and the container log store
//! ([`crate::logs`], owned by the exec side): turns `pods/log` query
//! parameters into log options and the store's stream into an HTTP body, and
//! seeds believable startup lines when a container starts.

use std::collections::HashMap;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};

use crate::api::Target;
use crate::controllers::StartedPod;
use crate::error::ApiError;
use crate::server::App;

/// Stream a container's log as the kubelet would.
pub fn respond(
    _app: &App,
    _t: &Target,
    _container: &str,
    _q: &HashMap<String, Vec<String>>,
    _cut_after: Option<usize>,
) -> Result<Response, ApiError> {
    // PLACEHOLDER until crate::logs::LogStore lands: an empty log.
    let mut r = (StatusCode::OK, "").into_response();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    Ok(r)
}

/// Seed startup lines for a started pod.
pub fn seed(_app: &App, _pod: &StartedPod) {}
