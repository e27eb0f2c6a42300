//! Kubernetes `Status` errors. Every failure the API server reports goes
//! through [`ApiError`] so that clients (kubectl, kube-rs) see the same JSON
//! shape, HTTP code, reason and message a real API server would send.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use serde_json::{Value, json};

/// An API error rendered as a `metav1.Status` object.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Option<Value>,
    /// Seconds for a `Retry-After` header (429 faults).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    fn with_details(mut self, kind: &str, name: &str, group: &str) -> Self {
        let mut d = json!({ "name": name, "kind": kind });
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        self.details = Some(d);
        self
    }

    /// `pods "x" not found`.
    pub fn not_found(plural: &str, group: &str, name: &str) -> Self {
        let res = qualified(plural, group);
        Self::new(404, "NotFound", format!("{res} \"{name}\" not found"))
            .with_details(plural, name, group)
    }

    /// `pods "x" already exists`.
    pub fn already_exists(plural: &str, group: &str, name: &str) -> Self {
        let res = qualified(plural, group);
        Self::new(
            409,
            "AlreadyExists",
            format!("{res} \"{name}\" already exists"),
        )
        .with_details(plural, name, group)
    }

    /// Stale resourceVersion on update.
    pub fn conflict(plural: &str, group: &str, name: &str) -> Self {
        let res = qualified(plural, group);
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {res} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        )
        .with_details(plural, name, group)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn invalid(kind: &str, name: &str, message: impl Into<String>) -> Self {
        let m = message.into();
        Self::new(422, "Invalid", format!("{kind} \"{name}\" is invalid: {m}"))
    }

    /// Unknown path: 404 naming the path.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource (path {path})"),
        )
    }

    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({method} {path})"
            ),
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The Status JSON body.
    pub fn to_status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        if let Some(s) = self.retry_after {
            let d = v.as_object_mut().and_then(|o| {
                o.entry("details")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .map(|d| d.insert("retryAfterSeconds".into(), json!(s)))
            });
            let _ = d;
        }
        v
    }
}

fn qualified(plural: &str, group: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        let mut resp = (code, body).into_response();
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(http::header::RETRY_AFTER, v);
        }
        resp
    }
}
