//! Reading lines with bounded memory, and resuming a cut log stream exactly.
//!
//! Logs are read line by line into one reused buffer; a line longer than
//! [`MAX_LINE`] keeps only its start (the rest is skipped), so memory per stream
//! never depends on what a log contains. Pod logs are requested with
//! `timestamps=true`: every line then starts with the kubelet's RFC 3339 time,
//! which is what [`Resume`] uses to reconnect a cut stream with `sinceTime`
//! without losing or repeating lines. `sinceTime` has one-second resolution on the
//! wire (kube-rs rounds it), so the request asks from the newest second read
//! (rounded down), and the lines the new connection repeats (the lines already
//! read from that second on, in the order they were read, so that two identical
//! lines stay two) are dropped at the boundary only: within one connection no
//! line is ever dropped for its time, since times can go backwards. Splitting
//! the kubelet's time off every line is the hot path, so [`KubeletClock`]
//! remembers the hour it last parsed.

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

pub use kubeplugin::logs::split_kubelet_time;

/// Splits kubelet timestamps like [`split_kubelet_time`], cheaply for the usual case.
///
/// The kubelet writes UTC times in Go's RFC3339Nano layout
/// (`2026-11-26T10:00:00.123456789Z`, trailing zeros of the fraction dropped),
/// and consecutive lines mostly share their hour. The clock remembers the last
/// hour it parsed (`YYYY-MM-DDTHH:`), so a line of the same hour costs a 14-byte
/// comparison and the digits of minutes, seconds and fraction; anything else
/// (another hour, an offset instead of `Z`, a comma for the dot, a leap second)
/// goes through the full RFC 3339 parser, and every line gives exactly what
/// [`split_kubelet_time`] gives.
#[derive(Debug, Default, Clone)]
pub struct KubeletClock {
    /// `YYYY-MM-DDTHH:` of the remembered hour.
    prefix: [u8; 14],
    /// The start of that hour (UTC, Unix seconds); None until a `Z` time was parsed.
    hour: Option<i64>,
}

/// `MM:SS` as seconds into the hour (leap seconds excluded).
fn minute_second(s: &[u8]) -> Option<i64> {
    let d = |i: usize| {
        s.get(i)
            .filter(|b| b.is_ascii_digit())
            .map(|b| i64::from(b - b'0'))
    };
    let (m1, m0, s1, s0) = (d(0)?, d(1)?, d(3)?, d(4)?);
    (s.get(2) == Some(&b':') && m1 < 6 && s1 < 6).then_some((m1 * 10 + m0) * 60 + s1 * 10 + s0)
}

impl KubeletClock {
    /// Splits the kubelet's `TIMESTAMP ` prefix off a `timestamps=true` line.
    pub fn split<'a>(&mut self, line: &'a [u8]) -> Option<(Timestamp, &'a [u8])> {
        if let Some(hour) = self.hour
            && line.len() > 20
            && line[..14] == self.prefix
            && let Some(into) = minute_second(&line[14..19])
            && let Some((nanos, end)) = utc_fraction(&line[19..])
            && let Ok(ts) = Timestamp::new(hour + into, nanos)
        {
            return Some((ts, &line[19 + end..]));
        }
        let (ts, rest) = split_kubelet_time(line)?;
        // Remember the hour when the time is in the layout the fast path reads
        // (so the first 19 bytes are the date and the time of day).
        let time_len = line.len() - rest.len();
        if line.len() > 20
            && let Some(into) = minute_second(&line[14..19])
            && utc_fraction(&line[19..])
                .is_some_and(|(n, end)| 19 + end == time_len && n == ts.subsec_nanosecond())
            && ts.as_second() % 3600 == into
        {
            self.prefix.copy_from_slice(&line[..14]);
            self.hour = Some(ts.as_second() - into);
        }
        Some((ts, rest))
    }
}

/// After `YYYY-MM-DDTHH:MM:SS`: `Z ` or `.` + 1 to 9 digits + `Z `. Returns the
/// nanoseconds and the length up to and including the space.
fn utc_fraction(s: &[u8]) -> Option<(i32, usize)> {
    match s.first()? {
        b'Z' => (s.get(1) == Some(&b' ')).then_some((0, 2)),
        b'.' => {
            let digits = s[1..]
                .iter()
                .take(10)
                .take_while(|b| b.is_ascii_digit())
                .count();
            if !(1..=9).contains(&digits)
                || s.get(1 + digits) != Some(&b'Z')
                || s.get(2 + digits) != Some(&b' ')
            {
                return None;
            }
            let mut n: i32 = 0;
            for &d in &s[1..1 + digits] {
                n = n * 10 + i32::from(d - b'0');
            }
            for _ in digits..9 {
                n *= 10;
            }
            Some((n, digits + 3))
        }
        _ => None,
    }
}

/// A line as remembered for deduplication: its kubelet time and a 64-bit hash
/// of its text (the time is part of the key, so a collision would need two
/// different texts with one hash written in the same nanosecond; the hash is
/// seeded per process, so log text cannot be crafted to collide).
type LineKey = (Timestamp, u64);

/// Where a stream stopped, so a reconnect continues exactly there.
///
/// Within one connection every line is new, whatever its time: kubelet times
/// can go backwards (clock steps, logs written with their own times). Only
/// right after a reconnect are lines compared with what was read: the server
/// replays every line from [`Resume::since_time`] on, in log order, so the
/// replay starts with the lines already read from that second on, in the order
/// they were read. Those are remembered (time and text hash, in order, so two
/// identical lines stay two); the boundary ends at the first replayed line that
/// differs from what was remembered, and from there on lines are accepted again.
#[derive(Debug, Default, Clone)]
pub struct Resume {
    /// Newest kubelet time read.
    newest: Option<Timestamp>,
    /// Lines read whose time is at or after the newest second, in read order.
    seen: Vec<LineKey>,
    /// How many of `seen` the current connection has replayed.
    replayed: usize,
    /// Set by a reconnect until the replay of already-read lines is over.
    at_boundary: bool,
    hasher: foldhash::fast::RandomState,
}

impl Resume {
    /// The `sinceTime` to reconnect with: the newest second read, rounded down.
    pub fn since_time(&self) -> Option<Timestamp> {
        self.newest
            .and_then(|t| Timestamp::from_second(t.as_second()).ok())
    }

    /// Call when a new connection starts.
    pub fn reconnected(&mut self) {
        self.replayed = 0;
        self.at_boundary = self.newest.is_some();
    }

    /// Whether the line (time `ts`, text `rest`) is new; records it if so.
    pub fn accept(&mut self, ts: Timestamp, rest: &[u8]) -> bool {
        use std::hash::BuildHasher;
        let key = (ts, self.hasher.hash_one(rest));
        if self.at_boundary {
            // A server honouring sinceTime sends nothing older; one that does
            // not would repeat lines read before.
            if self.newest.is_some_and(|n| ts.as_second() < n.as_second()) {
                return false;
            }
            if self.seen.get(self.replayed) == Some(&key) {
                self.replayed += 1;
                return false;
            }
            self.at_boundary = false;
        }
        self.record(key);
        true
    }

    fn record(&mut self, key: LineKey) {
        let ts = key.0;
        match self.newest {
            Some(n) if ts <= n => {
                if ts.as_second() >= n.as_second() {
                    self.seen.push(key);
                }
            }
            Some(n) if ts.as_second() == n.as_second() => {
                self.newest = Some(ts);
                self.seen.push(key);
            }
            _ => {
                // A newer second: what was remembered of older ones is not replayed.
                self.newest = Some(ts);
                let floor = ts.as_second();
                self.seen.retain(|(t, _)| t.as_second() >= floor);
                self.seen.push(key);
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

    #[test]
    fn the_clock_gives_what_the_full_parser_gives() {
        let mut c = KubeletClock::default();
        let lines: &[&[u8]] = &[
            b"2026-01-02T03:04:05.123456789Z a",
            b"2026-01-02T03:04:05.5Z b",
            b"2026-01-02T03:04:05Z c",
            b"2026-01-02T03:04:05.000000001Z d",
            b"2026-01-02T03:04:05.1234567891Z too many digits",
            b"2026-01-02T03:04:05.Z no digits",
            b"2026-01-02T03:04:05.5+01:00 offset",
            b"2026-01-02T03:04:05,5Z comma",
            b"2026-01-02T03:04:05.5Zx glued",
            b"2026-01-02T03:04:06.25Z next second",
            b"2026-01-02T03:04:05.75Z back again",
            b"2016-12-31T23:59:60.5Z leap",
            b"2016-12-31T23:59:60.7Z leap",
            b"2016-12-31T23:59:59.7Z before it",
            b"2016-12-31T23:61:59.7Z no such minute",
            b"2016-12-31T23:5x:59.7Z",
            b"2026-01-02T03:59:59.999999999Z end of an hour",
            b"2026-01-02T03:00:00Z start of it",
            b"2026-01-02T03:04:05.5Z",
            b"2026-01-02T03:04:05.5Z ",
        ];
        for l in lines {
            assert_eq!(
                c.split(l),
                split_kubelet_time(l),
                "{}",
                String::from_utf8_lossy(l)
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        #[test]
        fn the_clock_agrees_with_the_full_parser_on_any_sequence(
            lines in proptest::collection::vec(
                (0u8..3, 0u8..4, 0u8..4, 0u32..1_000_000_000, 0usize..10, 0u8..6, "[ -~]{0,8}"),
                1..40,
            )
        ) {
            let mut c = KubeletClock::default();
            for (hour, min, sec, nanos, digits, tail, text) in lines {
                let (min, sec) = ([0, 1, 59, 61][min as usize], [0, 30, 59, 60][sec as usize]);
                let frac = if digits == 0 {
                    String::new()
                } else {
                    format!(".{:09}", nanos)[..=digits].to_string()
                };
                let end = ["Z ", "Z", "+00:00 ", "z ", "Zx ", "Z\t"][tail as usize];
                let line = format!("2026-11-26T1{hour}:{min:02}:{sec:02}{frac}{end}{text}");
                proptest::prop_assert_eq!(
                    c.split(line.as_bytes()),
                    split_kubelet_time(line.as_bytes()),
                    "{}", line
                );
            }
        }
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
