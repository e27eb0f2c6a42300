//! Container logs: what `kubectl logs` reads. Every container has an
//! append-only list of lines, each with the time it was written (kept per
//! line, as the CRI log file does), and [`LogStore::stream`] serves them with
//! kubelet's semantics: `tailLines` picks the last lines first, then
//! `sinceSeconds` / `sinceTime` drop older ones, `timestamps` prefixes each
//! line with its time in Go's RFC3339Nano (`2026-11-26T07:32:15.123456789Z `,
//! trailing zeros trimmed), `follow` keeps streaming appended lines until the
//! client drops the stream or the pod is removed, and `limitBytes` cuts the
//! output after that many bytes.
//!
//! Memory is bounded: each container keeps at most
//! [`LogStore::DEFAULT_MAX_BYTES_PER_CONTAINER`] bytes of line text (or the
//! limit given to [`LogStore::with_limit`]); older lines are dropped first,
//! as kubelet's log rotation would. A follower that falls behind the window
//! continues with the oldest line still kept.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use jiff::Timestamp;
use tokio::sync::watch;

/// Options of a `pods/log` request.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    pub since_seconds: Option<u64>,
    pub since_time: Option<Timestamp>,
    pub tail_lines: Option<usize>,
    pub timestamps: bool,
    pub limit_bytes: Option<usize>,
}

/// Why a log could not be seeded.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot read log seed {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
struct Line {
    seq: u64,
    time: Timestamp,
    text: Arc<str>,
}

struct ContainerLog {
    lines: VecDeque<Line>,
    bytes: usize,
    next_seq: u64,
    /// Bumped on every append; `true` in the second field once removed.
    notify: watch::Sender<(u64, bool)>,
}

impl ContainerLog {
    fn new() -> Self {
        ContainerLog {
            lines: VecDeque::new(),
            bytes: 0,
            next_seq: 0,
            notify: watch::channel((0, false)).0,
        }
    }
}

type Key = (String, String, String);

type Shared = Arc<Mutex<ContainerLog>>;

struct Inner {
    containers: Mutex<HashMap<Key, Shared>>,
    max_bytes: usize,
}

/// Per-container log lines, shared by the API server, the controllers that
/// write startup lines and the traffic simulation that writes Envoy lines.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

impl Default for LogStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("max_bytes", &self.inner.max_bytes)
            .finish_non_exhaustive()
    }
}

/// Bytes a line costs in the budget: its text plus bookkeeping.
fn cost(text: &str) -> usize {
    text.len() + 48
}

impl LogStore {
    /// Default bound per container: 1 MiB.
    pub const DEFAULT_MAX_BYTES_PER_CONTAINER: usize = 1024 * 1024;

    pub fn new() -> Self {
        Self::with_limit(Self::DEFAULT_MAX_BYTES_PER_CONTAINER)
    }

    /// A store keeping at most `max_bytes` per container (at least one line).
    pub fn with_limit(max_bytes: usize) -> Self {
        LogStore {
            inner: Arc::new(Inner {
                containers: Mutex::new(HashMap::new()),
                max_bytes,
            }),
        }
    }

    fn key(ns: &str, pod: &str, container: &str) -> Key {
        (ns.to_string(), pod.to_string(), container.to_string())
    }

    /// Appends `text` (one line, or several separated by `\n`) written now.
    pub fn append(&self, ns: &str, pod: &str, container: &str, text: &str) {
        self.append_at(ns, pod, container, Timestamp::now(), text);
    }

    /// Appends `text` with an explicit write time.
    pub fn append_at(&self, ns: &str, pod: &str, container: &str, time: Timestamp, text: &str) {
        let shared = self.container(&Self::key(ns, pod, container), true);
        let Some(shared) = shared else { return };
        let Ok(mut guard) = shared.lock() else { return };
        let log = &mut *guard;
        let text = text.strip_suffix('\n').unwrap_or(text);
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            log.bytes += cost(line);
            let seq = log.next_seq;
            log.lines.push_back(Line {
                seq,
                time,
                text: Arc::from(line),
            });
            log.next_seq += 1;
        }
        while log.bytes > self.inner.max_bytes && log.lines.len() > 1 {
            if let Some(old) = log.lines.pop_front() {
                log.bytes -= cost(&old.text);
            }
        }
        let seq = log.next_seq;
        log.notify.send_replace((seq, false));
    }

    /// Seeds a container's log from a file. A line that starts with an
    /// RFC3339 timestamp (as Istio's Envoy lines do), or with one in brackets
    /// (an access log line's `[START_TIME]`), is stored with that time; other
    /// lines (continuations, JSON access logs) get the previous line's time,
    /// so that the seeded log keeps its order, and the current time when no
    /// line before them had one. Returns the number of lines read.
    pub fn seed_from_file(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        path: &Path,
    ) -> Result<usize, LogError> {
        let content = std::fs::read(path).map_err(|source| LogError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let content = String::from_utf8_lossy(&content);
        let now = Timestamp::now();
        let mut previous = None;
        let mut n = 0;
        for line in content.lines() {
            let time = line_time(line).or(previous).unwrap_or(now);
            previous = Some(time);
            self.append_at(ns, pod, container, time, line);
            n += 1;
        }
        Ok(n)
    }

    /// Forgets every container of a pod and ends its followers.
    pub fn remove_pod(&self, ns: &str, pod: &str) {
        let Ok(mut map) = self.inner.containers.lock() else {
            return;
        };
        map.retain(|(n, p, _), shared| {
            let gone = n == ns && p == pod;
            if gone && let Ok(log) = shared.lock() {
                let seq = log.next_seq;
                log.notify.send_replace((seq, true));
            }
            !gone
        });
    }

    /// Lines currently kept for a container (without timestamps).
    pub fn lines(&self, ns: &str, pod: &str, container: &str) -> Vec<String> {
        self.container(&Self::key(ns, pod, container), false)
            .and_then(|c| {
                c.lock()
                    .ok()
                    .map(|l| l.lines.iter().map(|x| x.text.to_string()).collect())
            })
            .unwrap_or_default()
    }

    /// Waits until one of the last `window` lines of a container satisfies
    /// `pred` (checked now and after every append); false after `limit`.
    pub async fn wait_for_line(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        window: usize,
        pred: impl Fn(&str) -> bool,
        limit: std::time::Duration,
    ) -> bool {
        let Some(shared) = self.container(&Self::key(ns, pod, container), true) else {
            return false;
        };
        let Ok(mut rx) = shared.lock().map(|l| l.notify.subscribe()) else {
            return false;
        };
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let found = shared
                .lock()
                .is_ok_and(|l| l.lines.iter().rev().take(window).any(|x| pred(&x.text)));
            if found {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return false,
            }
        }
    }

    /// Bytes currently accounted for a container (text plus bookkeeping).
    pub fn retained_bytes(&self, ns: &str, pod: &str, container: &str) -> usize {
        self.container(&Self::key(ns, pod, container), false)
            .and_then(|c| c.lock().ok().map(|l| l.bytes))
            .unwrap_or(0)
    }

    /// The shared log of a container, created when `create`.
    fn container(&self, key: &Key, create: bool) -> Option<Shared> {
        let mut map = self.inner.containers.lock().ok()?;
        if create {
            Some(
                map.entry(key.clone())
                    .or_insert_with(|| Arc::new(Mutex::new(ContainerLog::new())))
                    .clone(),
            )
        } else {
            map.get(key).cloned()
        }
    }

    /// Streams a container's log with kubelet's semantics (see the module
    /// docs). Items are chunks of whole lines, each ending in `\n`.
    pub fn stream(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        opts: LogOptions,
    ) -> impl Stream<Item = Bytes> + Send + 'static {
        let key = Self::key(ns, pod, container);
        let since = match (opts.since_time, opts.since_seconds) {
            (Some(t), _) => Some(t),
            (None, Some(s)) => Timestamp::now()
                .checked_sub(jiff::SignedDuration::from_secs(
                    i64::try_from(s).unwrap_or(i64::MAX / 2),
                ))
                .ok(),
            (None, None) => None,
        };
        let shared = self.container(&key, opts.follow);
        let (mut initial, rx) = match &shared {
            Some(c) => snapshot(c, 0, opts.follow),
            None => (Vec::new(), None),
        };
        if let Some(n) = opts.tail_lines {
            let skip = initial.len().saturating_sub(n);
            initial.drain(..skip);
        }
        let next = initial
            .last()
            .map(|l| l.seq + 1)
            .unwrap_or_else(|| rx.as_ref().map(|r| r.borrow().0).unwrap_or(0));
        let state = StreamState {
            shared,
            since,
            timestamps: opts.timestamps,
            remaining: opts.limit_bytes,
            pending: Some(initial),
            next,
            rx,
        };
        futures::stream::unfold(state, |mut st| async move {
            loop {
                if st.remaining == Some(0) {
                    return None;
                }
                if let Some(lines) = st.pending.take() {
                    if let Some(chunk) = st.render(&lines) {
                        return Some((chunk, st));
                    }
                    continue;
                }
                let rx = st.rx.as_mut()?;
                let (_, removed) = *rx.borrow_and_update();
                let shared = st.shared.as_ref()?;
                let (lines, _) = snapshot(shared, st.next, false);
                if let Some(last) = lines.last() {
                    st.next = last.seq + 1;
                    st.pending = Some(lines);
                    continue;
                }
                if removed {
                    return None;
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        })
    }
}

/// The time a seeded line starts with: `TIME<tab or space>` or `[TIME]`.
fn line_time(line: &str) -> Option<Timestamp> {
    let first = match line.strip_prefix('[') {
        Some(rest) => rest.split(']').next(),
        None => line.split(['\t', ' ']).next(),
    }?;
    first.parse().ok()
}

/// Lines with `seq >= from`, and (when `subscribe`) the receiver to wait
/// for more, taken under one lock so that no append is missed.
fn snapshot(
    shared: &Shared,
    from: u64,
    subscribe: bool,
) -> (Vec<Line>, Option<watch::Receiver<(u64, bool)>>) {
    let Ok(log) = shared.lock() else {
        return (Vec::new(), None);
    };
    let lines: Vec<Line> = log
        .lines
        .iter()
        .filter(|l| l.seq >= from)
        .cloned()
        .collect();
    let rx = subscribe.then(|| log.notify.subscribe());
    (lines, rx)
}

struct StreamState {
    shared: Option<Shared>,
    since: Option<Timestamp>,
    timestamps: bool,
    remaining: Option<usize>,
    pending: Option<Vec<Line>>,
    next: u64,
    rx: Option<watch::Receiver<(u64, bool)>>,
}

impl StreamState {
    /// Renders lines into one chunk (honouring since and the byte limit);
    /// `None` when nothing is left to send from these lines.
    fn render(&mut self, lines: &[Line]) -> Option<Bytes> {
        let stamp = if self.timestamps { TIME_LEN + 1 } else { 0 };
        let size: usize = lines.iter().map(|l| l.text.len() + 1 + stamp).sum();
        let mut buf = BytesMut::with_capacity(size.min(self.remaining.unwrap_or(usize::MAX)));
        let mut clock = TimeFormatter::default();
        for l in lines {
            if let Some(since) = self.since
                && l.time < since
            {
                continue;
            }
            let start = buf.len();
            if self.timestamps {
                clock.write(&mut buf, l.time);
                buf.extend_from_slice(b" ");
            }
            buf.extend_from_slice(l.text.as_bytes());
            buf.extend_from_slice(b"\n");
            if let Some(rem) = self.remaining {
                let added = buf.len() - start;
                if added >= rem {
                    buf.truncate(start + rem);
                    self.remaining = Some(0);
                    break;
                }
                self.remaining = Some(rem - added);
            }
        }
        if buf.is_empty() {
            None
        } else {
            Some(buf.freeze())
        }
    }
}

/// The longest `timestamps=true` prefix: `2026-11-26T07:32:15.123456789Z`.
const TIME_LEN: usize = 30;

/// Writes times as Go's `time.RFC3339Nano` in UTC, remembering the last
/// second's `YYYY-MM-DDTHH:MM:SS` so that lines of one second (the usual case)
/// cost a copy and the fraction's digits. A kubelet formats each line's time
/// with Go's `time.Format`, which is cheap; formatting through `strftime` and
/// three allocations per line made meshsim, not the client, the bottleneck of
/// log-heavy benchmarks.
#[derive(Default)]
struct TimeFormatter {
    second: Option<i64>,
    base: String,
}

impl TimeFormatter {
    fn write(&mut self, buf: &mut BytesMut, t: Timestamp) {
        let mut secs = t.as_second();
        let mut nanos = t.subsec_nanosecond();
        if nanos < 0 {
            // Before 1970: as_second rounds toward zero.
            secs -= 1;
            nanos += 1_000_000_000;
        }
        if self.second != Some(secs) {
            let whole = Timestamp::from_second(secs).unwrap_or(t);
            self.base = whole.strftime("%Y-%m-%dT%H:%M:%S").to_string();
            self.second = Some(secs);
        }
        buf.extend_from_slice(self.base.as_bytes());
        if nanos != 0 {
            let mut digits = [b'0'; 10];
            digits[0] = b'.';
            let mut n = nanos as u32;
            for d in digits[1..].iter_mut().rev() {
                *d = b'0' + (n % 10) as u8;
                n /= 10;
            }
            let end = digits.iter().rposition(|&d| d != b'0').unwrap_or(0) + 1;
            buf.extend_from_slice(&digits[..end]);
        }
        buf.extend_from_slice(b"Z");
    }
}

/// Now, as Istio's components (pilot-agent, ztunnel) stamp their log lines:
/// RFC 3339 with microseconds (`2026-11-26T07:32:15.123456Z`).
pub fn istio_log_time() -> String {
    Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Formats a time as Go's `time.RFC3339Nano` in UTC: nanoseconds with
/// trailing zeros trimmed, no fraction at all when zero.
pub fn rfc3339_nano(t: Timestamp) -> String {
    let mut buf = BytesMut::with_capacity(TIME_LEN);
    TimeFormatter::default().write(&mut buf, t);
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeding_keeps_access_log_times_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed.log");
        let lines = [
            "2025-07-22T17:55:52.080000Z\tdebug\tenvoy rbac\tenforced denied\tthread=26",
            "[2025-07-22T17:55:52.085Z] \"GET / HTTP/1.1\" 403 - rbac_access_denied_matched_policy[none] - \"-\" 0 19 0 -",
            "\tcontinuation of the access log line",
            "2025-07-22T17:55:53.000000Z\tinfo\tlater",
        ];
        std::fs::write(&path, lines.join("\n")).unwrap();
        let store = LogStore::new();
        assert_eq!(store.seed_from_file("ns", "p", "c", &path).unwrap(), 4);
        let shared = store
            .container(&LogStore::key("ns", "p", "c"), false)
            .unwrap();
        let log = shared.lock().unwrap();
        let times: Vec<String> = log.lines.iter().map(|l| l.time.to_string()).collect();
        assert_eq!(
            times,
            [
                "2025-07-22T17:55:52.08Z",
                "2025-07-22T17:55:52.085Z",
                // No time of its own: the previous line's.
                "2025-07-22T17:55:52.085Z",
                "2025-07-22T17:55:53Z",
            ]
        );
    }

    #[test]
    fn seeding_a_log_without_times_uses_the_seeding_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed.log");
        std::fs::write(&path, "no time here\n[not a time] either\n").unwrap();
        let before = Timestamp::now();
        let store = LogStore::new();
        assert_eq!(store.seed_from_file("ns", "p", "c", &path).unwrap(), 2);
        let shared = store
            .container(&LogStore::key("ns", "p", "c"), false)
            .unwrap();
        let log = shared.lock().unwrap();
        assert!(log.lines.iter().all(|l| l.time >= before));
    }

    #[test]
    fn go_rfc3339_nano() {
        let t: Timestamp = "2026-11-26T07:32:15.123456789Z".parse().unwrap();
        assert_eq!(rfc3339_nano(t), "2026-11-26T07:32:15.123456789Z");
        let t: Timestamp = "2026-11-26T07:32:15.1Z".parse().unwrap();
        assert_eq!(rfc3339_nano(t), "2026-11-26T07:32:15.1Z");
        let t: Timestamp = "2026-11-26T07:32:15Z".parse().unwrap();
        assert_eq!(rfc3339_nano(t), "2026-11-26T07:32:15Z");
        let t: Timestamp = "2026-11-26T07:32:15.000000001Z".parse().unwrap();
        assert_eq!(rfc3339_nano(t), "2026-11-26T07:32:15.000000001Z");
        let t: Timestamp = "1969-12-31T23:59:59.5Z".parse().unwrap();
        assert_eq!(rfc3339_nano(t), "1969-12-31T23:59:59.5Z");
    }

    #[test]
    fn one_formatter_over_many_times_matches_one_at_a_time() {
        let mut f = TimeFormatter::default();
        let mut buf = BytesMut::new();
        let mut want = String::new();
        let start: Timestamp = "2026-11-26T07:32:15Z".parse().unwrap();
        for i in 0..2_000i64 {
            let t = start + jiff::SignedDuration::from_nanos(i * 7_919_000_003 % 5_000_000_000);
            f.write(&mut buf, t);
            buf.extend_from_slice(b"\n");
            let whole = Timestamp::from_second(t.as_second()).unwrap();
            let frac = format!("{:09}", t.subsec_nanosecond());
            let frac = frac.trim_end_matches('0');
            want.push_str(&whole.strftime("%Y-%m-%dT%H:%M:%S").to_string());
            if !frac.is_empty() {
                want.push('.');
                want.push_str(frac);
            }
            want.push_str("Z\n");
        }
        assert_eq!(String::from_utf8_lossy(&buf), want);
    }
}
