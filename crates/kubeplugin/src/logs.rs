//! Reading container logs, one-shot or streamed.
//!
//! rbaclog reads istio-proxy logs from many pods at once, following them and
//! resuming a cut stream from a timestamp; these helpers wrap kube's log API
//! with the plugin's error translation (`cannot get pods/log in namespace x`)
//! and a line stream, so the plugin deals only in lines.

use std::time::Duration;

use futures::{AsyncBufReadExt, Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};

use crate::client::Kube;
use crate::error::{ApiOp, PluginError};

/// Which part of a container's log to read.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub container: Option<String>,
    /// Only lines newer than this (`--since`).
    pub since: Option<Duration>,
    /// Only lines at or after this time (`--since-time`, also used to resume a stream).
    pub since_time: Option<jiff::Timestamp>,
    /// Only the last N lines.
    pub tail: Option<i64>,
    /// Keep streaming new lines.
    pub follow: bool,
    /// Prefix each line with its RFC 3339 timestamp (needed to resume without duplicates).
    pub timestamps: bool,
}

impl LogQuery {
    fn params(&self) -> LogParams {
        LogParams {
            container: self.container.clone(),
            follow: self.follow,
            since_seconds: if self.since_time.is_none() {
                self.since.map(|d| d.as_secs().max(1) as i64)
            } else {
                None
            },
            since_time: self.since_time,
            tail_lines: self.tail,
            timestamps: self.timestamps,
            ..Default::default()
        }
    }
}

fn op(namespace: &str, pod: &str) -> ApiOp {
    ApiOp::new("get", "pods/log", namespace).named(pod)
}

/// Fetches a container's log at once.
pub async fn logs(
    kube: &Kube,
    namespace: &str,
    pod: &str,
    query: &LogQuery,
) -> Result<String, PluginError> {
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), namespace);
    let mut q = query.params();
    q.follow = false;
    api.logs(pod, &q)
        .await
        .map_err(|e| kube.err(e, &op(namespace, pod)))
}

/// Streams a container's log line by line (without the newline).
pub async fn log_lines(
    kube: &Kube,
    namespace: &str,
    pod: &str,
    query: &LogQuery,
) -> Result<impl Stream<Item = Result<String, PluginError>> + use<>, PluginError> {
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), namespace);
    let reader = api
        .log_stream(pod, &query.params())
        .await
        .map_err(|e| kube.err(e, &op(namespace, pod)))?;
    let ns = namespace.to_string();
    let p = pod.to_string();
    Ok(reader
        .lines()
        .map_err(move |e| PluginError::Io {
            context: format!("reading the log of {ns}/{p}"),
            source: e,
        })
        .boxed())
}

/// Splits the kubelet's `TIMESTAMP ` prefix off a `timestamps=true` line
/// (bytes: rbaclog reads logs that need not be UTF-8).
pub fn split_kubelet_time(line: &[u8]) -> Option<(jiff::Timestamp, &[u8])> {
    // RFC 3339 times are at least 20 bytes; the kubelet's at most 35.
    let space = line.iter().take(40).position(|&b| b == b' ')?;
    if space < 20 || !line[0].is_ascii_digit() {
        return None;
    }
    let ts: jiff::Timestamp = std::str::from_utf8(&line[..space]).ok()?.parse().ok()?;
    Some((ts, &line[space + 1..]))
}

/// [`split_kubelet_time`] for a line already read as text.
pub fn split_timestamp(line: &str) -> Option<(jiff::Timestamp, &str)> {
    let (ts, rest) = split_kubelet_time(line.as_bytes())?;
    Some((ts, &line[line.len() - rest.len()..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_time_wins_over_since() {
        let q = LogQuery {
            since: Some(Duration::from_secs(3600)),
            since_time: Some("2025-07-06T19:33:00Z".parse().unwrap()),
            ..Default::default()
        };
        let p = q.params();
        assert_eq!(p.since_seconds, None);
        assert!(p.since_time.is_some());
        let q = LogQuery {
            since: Some(Duration::from_millis(10)),
            ..Default::default()
        };
        assert_eq!(q.params().since_seconds, Some(1));
    }

    #[test]
    fn timestamps_split() {
        let (ts, rest) = split_timestamp("2025-07-06T19:33:00.654348Z hello world").unwrap();
        assert_eq!(rest, "hello world");
        assert_eq!(ts.to_string(), "2025-07-06T19:33:00.654348Z");
        assert!(split_timestamp("nope").is_none());
    }
}
