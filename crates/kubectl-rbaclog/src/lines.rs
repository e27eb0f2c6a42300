//! Reading lines with bounded memory, and resuming a cut log stream exactly.
//!
//! Logs are read line by line into one reused buffer; a line longer than
//! [`MAX_LINE`] keeps only its start (the rest is skipped), so memory per stream
//! never depends on what a log contains. Pod logs are requested with
//! `timestamps=true`: every line then starts with the kubelet's RFC 3339 time,
//! which is what [`Resume`] uses to reconnect a cut stream with `sinceTime`
//! without losing or repeating lines. `sinceTime` has one-second resolution on the
//! wire (kube-rs rounds it), so the request asks from the last seen second
//! (rounded down), and lines older than the last seen time, or at that exact time
//! and already seen (counted per text, so two identical lines stay two), are
//! dropped at the boundary.

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

/// Where a stream stopped, so a reconnect continues exactly there.
#[derive(Debug, Default, Clone)]
pub struct Resume {
    last: Option<Timestamp>,
    /// How many times each text was seen at exactly `last`.
    at_last: HashMap<Vec<u8>, u32>,
    /// Of those, how many the current connection has replayed (to skip).
    replayed: HashMap<Vec<u8>, u32>,
}

impl Resume {
    /// The `sinceTime` to reconnect with: the last seen second, rounded down.
    pub fn since_time(&self) -> Option<Timestamp> {
        self.last
            .and_then(|t| Timestamp::from_second(t.as_second()).ok())
    }

    /// Call when a new connection starts.
    pub fn reconnected(&mut self) {
        self.replayed.clear();
    }

    /// Whether the line (time `ts`, text `rest`) is new; records it if so.
    pub fn accept(&mut self, ts: Timestamp, rest: &[u8]) -> bool {
        match self.last {
            Some(last) if ts < last => false,
            Some(last) if ts == last => {
                let seen = self.at_last.get(rest).copied().unwrap_or(0);
                let replayed = self.replayed.entry(rest.to_vec()).or_insert(0);
                if *replayed < seen {
                    *replayed += 1;
                    return false;
                }
                *replayed += 1;
                *self.at_last.entry(rest.to_vec()).or_insert(0) += 1;
                true
            }
            _ => {
                self.last = Some(ts);
                self.at_last.clear();
                self.replayed.clear();
                self.at_last.insert(rest.to_vec(), 1);
                self.replayed.insert(rest.to_vec(), 1);
                true
            }
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
