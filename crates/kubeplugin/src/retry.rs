//! Bounded retries of throttled API requests, honouring `Retry-After`.
//!
//! kube's default client retries 429/503/504 up to 15 times and sleeps for
//! whatever `Retry-After` the server sends, without a ceiling: a server (or a
//! proxy in front of it) answering `Retry-After: 3600` would hang a plugin for
//! an hour during an incident. This policy replaces it: 429 and 503 are retried
//! at most [`MAX_RETRIES`] times, each wait is the server's `Retry-After` capped
//! at [`MAX_WAIT`] (a short backoff when the header is absent or unreadable),
//! and each retry is logged at `info` (`-v`) so a slow run can be explained.
//! Only requests whose body can be replayed are retried (kube's requests are).

use std::time::Duration;

use http::{Request, Response, StatusCode};
use kube::client::Body;
use tower::BoxError;
use tower::retry::Policy;

/// How many times one request is retried.
pub const MAX_RETRIES: u32 = 3;
/// The longest single wait, whatever `Retry-After` says.
pub const MAX_WAIT: Duration = Duration::from_secs(5);
/// The first wait when the server gives no `Retry-After` (doubles each retry).
pub const DEFAULT_WAIT: Duration = Duration::from_millis(250);

/// The retry policy; one clone is used per request.
#[derive(Debug, Clone)]
pub struct ThrottleRetry {
    attempts: u32,
    max_retries: u32,
    max_wait: Duration,
}

impl Default for ThrottleRetry {
    fn default() -> Self {
        Self::new(MAX_RETRIES, MAX_WAIT)
    }
}

impl ThrottleRetry {
    pub fn new(max_retries: u32, max_wait: Duration) -> Self {
        Self {
            attempts: 0,
            max_retries,
            max_wait,
        }
    }

    /// How long to wait before the next attempt, or None to give up.
    pub fn next_wait(&mut self, status: StatusCode, retry_after: Option<&str>) -> Option<Duration> {
        if !matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) || self.attempts >= self.max_retries
        {
            return None;
        }
        self.attempts += 1;
        let backoff = DEFAULT_WAIT.saturating_mul(1 << (self.attempts - 1).min(8));
        let wait = retry_after
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(backoff)
            .min(self.max_wait);
        Some(wait)
    }
}

impl<Res> Policy<Request<Body>, Response<Res>, BoxError> for ThrottleRetry {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut Request<Body>,
        result: &mut Result<Response<Res>, BoxError>,
    ) -> Option<Self::Future> {
        let response = result.as_ref().ok()?;
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok());
        let wait = self.next_wait(response.status(), retry_after)?;
        tracing::info!(
            status = response.status().as_u16(),
            path = req.uri().path(),
            retry_after = retry_after.unwrap_or("-"),
            wait_ms = wait.as_millis() as u64,
            attempt = self.attempts,
            "API server asked to retry later; retrying"
        );
        Some(tokio::time::sleep(wait))
    }

    fn clone_request(&mut self, req: &Request<Body>) -> Option<Request<Body>> {
        let body = req.body().try_clone()?;
        let mut builder = Request::builder()
            .method(req.method().clone())
            .uri(req.uri().clone())
            .version(req.version());
        if let Some(headers) = builder.headers_mut() {
            headers.extend(req.headers().clone());
        }
        builder.body(body).ok().map(|mut r| {
            *r.extensions_mut() = req.extensions().clone();
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_followed_and_capped() {
        let mut p = ThrottleRetry::new(3, Duration::from_secs(5));
        assert_eq!(
            p.next_wait(StatusCode::TOO_MANY_REQUESTS, Some("2")),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            p.next_wait(StatusCode::TOO_MANY_REQUESTS, Some("3600")),
            Some(Duration::from_secs(5))
        );
        // Unreadable header: backoff (third attempt = 4 x 250ms).
        assert_eq!(
            p.next_wait(StatusCode::SERVICE_UNAVAILABLE, Some("soon")),
            Some(Duration::from_secs(1))
        );
        // Bounded number of retries.
        assert_eq!(p.next_wait(StatusCode::TOO_MANY_REQUESTS, Some("1")), None);
    }

    #[test]
    fn other_statuses_are_not_retried() {
        let mut p = ThrottleRetry::default();
        for s in [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::FORBIDDEN,
            StatusCode::GATEWAY_TIMEOUT,
            StatusCode::OK,
        ] {
            assert_eq!(p.next_wait(s, Some("1")), None, "{s}");
        }
    }
}
