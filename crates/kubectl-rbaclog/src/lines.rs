//! Reading lines with bounded memory, and resuming a cut log stream exactly.
//!
//! Logs are read line by line into one reused buffer; a line longer than
//! [`MAX_LINE`] keeps only its start (the rest is skipped), so memory per stream
//! never depends on what a log contains. Pod logs are requested with
//! `timestamps=true`: every line then starts with the kubelet's RFC 3339 time,
//! which is what [`Resume`] uses to reconnect a cut stream with `sinceTime`
//! without losing or repeating lines. `sinceTime` has one-second resolution on the
//! wire (kube-rs rounds it), so the request asks from the newest second read
//! (rounded down), and the lines the new connection repeats (same time and text
//! as lines already read in that second, counted so that two identical lines
//! stay two) are dropped at the boundary only: within one connection no line is
//! ever dropped for its time, since times can go backwards.

use std::collections::HashMap;
use std::io::{self, BufRead};

use futures::{AsyncBufRead, AsyncBufReadExt};
use jiff::Timestamp;

/// Longest line examined whole (1 MiB); the rest of a longer line is skipped.
pub const MAX_LINE: usize = 1 << 20;

/// How a read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadLine {
    /// A line ending in a newline is in the buffer (newline removed).
    Complete,
    /// The input ended after a line without a newline (in the buffer).
    Partial,
    /// The input ended.
    Eof,
}

fn push_bounded(buf: &mut Vec<u8>, chunk: &[u8]) {
    let room = MAX_LINE.saturating_sub(buf.len());
    buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
}

fn finish(buf: &mut Vec<u8>) {
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
}

/// Reads the next line of a synchronous reader, appending to `buf` (the caller
/// clears it after each complete or partial line).
pub fn read_line_sync<R: BufRead>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<ReadLine> {
    let mut any = !buf.is_empty();
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            finish(buf);
            return Ok(if any {
                ReadLine::Partial
            } else {
                ReadLine::Eof
            });
        }
        any = true;
        if let Some(nl) = memchr::memchr(b'\n', chunk) {
            push_bounded(buf, &chunk[..nl]);
            r.consume(nl + 1);
            finish(buf);
            return Ok(ReadLine::Complete);
        }
        let n = chunk.len();
        push_bounded(buf, chunk);
        r.consume(n);
    }
}

/// Reads the next line of an asynchronous reader, appending to `buf` (the caller
/// clears it after each complete or partial line). Cancel-safe: bytes taken from
/// the reader are already in `buf` when the future is dropped at an await point.
pub async fn read_line_async<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> io::Result<ReadLine> {
    let mut any = !buf.is_empty();
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            finish(buf);
            return Ok(if any {
                ReadLine::Partial
            } else {
                ReadLine::Eof
            });
        }
        any = true;
        if let Some(nl) = memchr::memchr(b'\n', chunk) {
            push_bounded(buf, &chunk[..nl]);
            r.consume_unpin(nl + 1);
            finish(buf);
            return Ok(ReadLine::Complete);
        }
        let n = chunk.len();
        push_bounded(buf, chunk);
        r.consume_unpin(n);
    }
}

/// Splits the kubelet's `TIMESTAMP ` prefix off a `timestamps=true` line.
pub fn split_kubelet_time(line: &[u8]) -> Option<(Timestamp, &[u8])> {
    // RFC 3339 times are at least 20 bytes; the kubelet's at most 35.
    let space = memchr::memchr(b' ', &line[..line.len().min(40)])?;
    if space < 20 || !line[0].is_ascii_digit() {
        return None;
    }
    let ts: Timestamp = std::str::from_utf8(&line[..space]).ok()?.parse().ok()?;
    Some((ts, &line[space + 1..]))
}

/// A line as remembered for deduplication: its kubelet time and a 64-bit hash
/// of its text (the time is part of the key, so a collision would need two
/// different texts with one hash written in the same nanosecond).
type LineKey = (Timestamp, u64);

fn line_key(ts: Timestamp, rest: &[u8]) -> LineKey {
    use std::hash::{DefaultHasher, Hasher};
    let mut h = DefaultHasher::new();
    h.write(rest);
    (ts, h.finish())
}

/// Where a stream stopped, so a reconnect continues exactly there.
///
/// Within one connection every line is new, whatever its time: kubelet times
/// can go backwards (clock steps, logs written with their own times). Only
/// right after a reconnect are lines compared with what was read: the server
/// replays every line from [`Resume::since_time`] on, in log order, so the
/// replay starts with lines already read. Those are remembered (time and text,
/// counted, so two identical lines stay two) for the newest second seen, which
/// is what `sinceTime` replays; the boundary ends at the first line not
/// remembered, and from there on lines are accepted again.
#[derive(Debug, Default, Clone)]
pub struct Resume {
    /// Newest kubelet time read.
    newest: Option<Timestamp>,
    /// Lines read whose time is at or after the newest second, with counts.
    seen: HashMap<LineKey, u32>,
    /// Of those, how many the current connection has replayed (to skip).
    replayed: HashMap<LineKey, u32>,
    /// Set by a reconnect until the replay of already-read lines is over.
    at_boundary: bool,
}

impl Resume {
    /// The `sinceTime` to reconnect with: the newest second read, rounded down.
    pub fn since_time(&self) -> Option<Timestamp> {
        self.newest
            .and_then(|t| Timestamp::from_second(t.as_second()).ok())
    }

    /// Call when a new connection starts.
    pub fn reconnected(&mut self) {
        self.replayed.clear();
        self.at_boundary = self.newest.is_some();
    }

    /// Whether the line (time `ts`, text `rest`) is new; records it if so.
    pub fn accept(&mut self, ts: Timestamp, rest: &[u8]) -> bool {
        let key = line_key(ts, rest);
        if self.at_boundary {
            // A server honouring sinceTime sends nothing older; one that does
            // not would repeat lines read before.
            if self.since_time().is_some_and(|since| ts < since) {
                return false;
            }
            let seen = self.seen.get(&key).copied().unwrap_or(0);
            let replayed = self.replayed.entry(key).or_insert(0);
            if *replayed < seen {
                *replayed += 1;
                return false;
            }
            self.at_boundary = false;
            self.replayed.clear();
        }
        self.record(ts, key);
        true
    }

    fn record(&mut self, ts: Timestamp, key: LineKey) {
        let old_floor = self.since_time();
        if self.newest.is_none_or(|n| ts > n) {
            self.newest = Some(ts);
        }
        let floor = self.since_time();
        if floor != old_floor
            && let Some(floor) = floor
        {
            self.seen.retain(|(t, _), _| *t >= floor);
        }
        if floor.is_some_and(|f| ts >= f) {
            *self.seen.entry(key).or_insert(0) += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_and_skipped() {
        let mut data = vec![b'a'; MAX_LINE + 10];
        data.extend_from_slice(b"\nnext\nlast");
        let mut r = io::Cursor::new(data);
        let mut buf = Vec::new();
        assert_eq!(
            read_line_sync(&mut r, &mut buf).unwrap(),
            ReadLine::Complete
        );
        assert_eq!(buf.len(), MAX_LINE);
        buf.clear();
        assert_eq!(
            read_line_sync(&mut r, &mut buf).unwrap(),
            ReadLine::Complete
        );
        assert_eq!(buf, b"next");
        buf.clear();
        assert_eq!(read_line_sync(&mut r, &mut buf).unwrap(), ReadLine::Partial);
        assert_eq!(buf, b"last");
        buf.clear();
        assert_eq!(read_line_sync(&mut r, &mut buf).unwrap(), ReadLine::Eof);
    }

    #[tokio::test]
    async fn async_reader_matches_sync_and_strips_cr() {
        let mut r = futures::io::Cursor::new(b"a\r\nb\n".to_vec());
        let mut buf = Vec::new();
        assert_eq!(
            read_line_async(&mut r, &mut buf).await.unwrap(),
            ReadLine::Complete
        );
        assert_eq!(buf, b"a");
        buf.clear();
        assert_eq!(
            read_line_async(&mut r, &mut buf).await.unwrap(),
            ReadLine::Complete
        );
        assert_eq!(buf, b"b");
        buf.clear();
        assert_eq!(
            read_line_async(&mut r, &mut buf).await.unwrap(),
            ReadLine::Eof
        );
    }

    #[test]
    fn kubelet_time_is_split() {
        let (ts, rest) = split_kubelet_time(b"2026-01-02T03:04:05.123456789Z hello world").unwrap();
        assert_eq!(ts.to_string(), "2026-01-02T03:04:05.123456789Z");
        assert_eq!(rest, b"hello world");
        // An Istio line's own time is followed by a tab, not a space.
        assert!(split_kubelet_time(b"2025-07-06T19:33:00.654348Z\tdebug\tx").is_none());
        assert!(split_kubelet_time(b"hello world").is_none());
        assert!(split_kubelet_time(b"").is_none());
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn out_of_order_lines_in_one_stream_are_kept() {
        let mut r = Resume::default();
        assert!(r.accept(t("2026-01-01T00:00:05Z"), b"late clock"));
        // The clock stepped back: this line is new, not a repeat.
        assert!(r.accept(t("2026-01-01T00:00:03Z"), b"after the step"));
        assert!(r.accept(t("2026-01-01T00:00:05Z"), b"late clock"));
        assert!(r.accept(t("2026-01-01T00:00:04Z"), b"more"));
    }

    #[test]
    fn resume_after_out_of_order_lines_repeats_nothing_and_loses_nothing() {
        let mut r = Resume::default();
        assert!(r.accept(t("2026-01-01T00:00:02.9Z"), b"x"));
        assert!(r.accept(t("2026-01-01T00:00:02.1Z"), b"y"));
        assert!(r.accept(t("2026-01-01T00:00:01.5Z"), b"z"));
        // The server replays every line from the newest second on, in log order.
        assert_eq!(r.since_time().unwrap(), t("2026-01-01T00:00:02Z"));
        r.reconnected();
        assert!(!r.accept(t("2026-01-01T00:00:02.9Z"), b"x"));
        assert!(!r.accept(t("2026-01-01T00:00:02.1Z"), b"y"));
        // First new line: the boundary is over, older times are new lines again.
        assert!(r.accept(t("2026-01-01T00:00:02.5Z"), b"w"));
        assert!(r.accept(t("2026-01-01T00:00:02.1Z"), b"y"));
    }

    #[test]
    fn resume_drops_exactly_what_was_seen() {
        let mut r = Resume::default();
        assert!(r.since_time().is_none());
        assert!(r.accept(t("2026-01-01T00:00:01.5Z"), b"a"));
        assert!(r.accept(t("2026-01-01T00:00:02.5Z"), b"b"));
        assert!(r.accept(t("2026-01-01T00:00:02.5Z"), b"dup"));
        assert!(r.accept(t("2026-01-01T00:00:02.5Z"), b"dup"));
        // Cut here; the server replays from the second, rounded down.
        assert_eq!(r.since_time().unwrap(), t("2026-01-01T00:00:02Z"));
        r.reconnected();
        assert!(!r.accept(t("2026-01-01T00:00:01.5Z"), b"a"));
        assert!(!r.accept(t("2026-01-01T00:00:02.5Z"), b"b"));
        assert!(!r.accept(t("2026-01-01T00:00:02.5Z"), b"dup"));
        assert!(!r.accept(t("2026-01-01T00:00:02.5Z"), b"dup"));
        // A third identical line at the same time was never seen: it is new.
        assert!(r.accept(t("2026-01-01T00:00:02.5Z"), b"dup"));
        assert!(r.accept(t("2026-01-01T00:00:03Z"), b"c"));
        r.reconnected();
        assert!(!r.accept(t("2026-01-01T00:00:03Z"), b"c"));
        assert!(r.accept(t("2026-01-01T00:00:03Z"), b"d"));
    }
}
