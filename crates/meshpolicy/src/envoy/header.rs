//! The envelope around an Envoy log message: time, level, logger, caller, thread.
//!
//! The same Envoy message reaches users in several envelopes depending on the Istio or
//! Envoy release and on how the log was copied: Istio >= 1.17 (`TIME\tLEVEL\tenvoy
//! SCOPE CALLER\tMSG\tthread=N`), Istio <= 1.16 (no caller, no thread), plain Envoy
//! (`[TIME][TID][LEVEL][SCOPE] [CALLER] MSG`, and the pre-2020 `file:line] MSG`), the
//! Istio layouts with tabs pasted as runs of spaces, and JSON. This module peels the
//! envelope off once, so the RBAC and local-reply parsers only see the message.
//! Everything works on bytes and borrows from the line; nothing is allocated until a
//! caller asks for an owned [`LogHeader`].

use serde::Serialize;

/// Which envelope a log line used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Istio >= 1.17: `TIME\tLEVEL\tenvoy SCOPE CALLER\tMSG\tthread=N`.
    IstioTabs,
    /// Istio <= 1.16: `TIME\tLEVEL\tenvoy SCOPE\tMSG` (no caller, no thread).
    IstioLegacy,
    /// Plain Envoy: `[TIME][TID][LEVEL][SCOPE] [CALLER] MSG` (or the older `CALLER] MSG`).
    Envoy,
    /// Envoy or Istio JSON logs (`scope`/`name`/`logger`, `msg`).
    Json,
    /// Just the message, with no envelope at all (as users sometimes paste it).
    Bare,
}

/// The envelope of one Envoy log line, owned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogHeader {
    /// The time exactly as printed.
    pub time: Option<String>,
    /// The time as RFC 3339, when it could be normalised. Envoy's own layout prints
    /// the container's local time without a zone: it is then written here as if UTC
    /// (for ordering) and [`LogHeader::time_zone_unknown`] says so.
    pub time_rfc3339: Option<String>,
    /// `true` when the printed time carried no zone (Envoy's native `%Y-%m-%d %T.%e`):
    /// the text is the container's local time, whatever zone that was.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub time_zone_unknown: bool,
    /// Log level (`debug`, `info`...).
    pub level: Option<String>,
    /// Envoy logger name (`rbac`, `http`...), without Istio's `envoy ` prefix.
    pub logger: Option<String>,
    /// Source location `file:line` that emitted the line.
    pub caller: Option<String>,
    /// Envoy worker thread (Istio's `thread=N`, or Envoy's `[TID]`).
    pub thread: Option<String>,
    /// Which envelope the line used.
    pub layout: Layout,
    /// `true` when an Istio layout had its tabs replaced by spaces.
    pub tabs_as_spaces: bool,
}

/// The envelope, borrowed from the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawHeader<'a> {
    pub time: Option<&'a [u8]>,
    pub level: Option<&'a [u8]>,
    pub logger: Option<&'a [u8]>,
    pub caller: Option<&'a [u8]>,
    pub thread: Option<&'a [u8]>,
    pub layout: Layout,
    pub tabs_as_spaces: bool,
}

impl RawHeader<'_> {
    pub(crate) fn to_owned_header(self) -> LogHeader {
        let time = self.time.map(lossy);
        let time_rfc3339 = time.as_deref().and_then(normalise_time);
        LogHeader {
            time_zone_unknown: time_rfc3339.is_some() && time.as_deref().is_some_and(lacks_zone),
            time_rfc3339,
            time,
            level: self.level.map(lossy),
            logger: self.logger.map(lossy),
            caller: self.caller.map(lossy),
            thread: self.thread.map(lossy),
            layout: self.layout,
            tabs_as_spaces: self.tabs_as_spaces,
        }
    }
}

pub(crate) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

pub(crate) fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_ws(*first) || *first == b'\r' {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_ws(*last) || *last == b'\r' {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Splits off the next whitespace-delimited token; returns (token, separator, rest).
fn next_token(s: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let end = s.iter().position(|&b| is_ws(b)).unwrap_or(s.len());
    let tok = &s[..end];
    let after = &s[end..];
    let ws_end = after.iter().position(|&b| !is_ws(b)).unwrap_or(after.len());
    (tok, &after[..ws_end], &after[ws_end..])
}

const LEVELS: &[&[u8]] = &[
    b"trace",
    b"debug",
    b"info",
    b"warn",
    b"warning",
    b"error",
    b"critical",
    b"fatal",
];

/// Looks like `YYYY-` (every timestamp layout Envoy and Istio use starts so).
fn starts_with_year(s: &[u8]) -> bool {
    s.len() >= 5 && s[..4].iter().all(u8::is_ascii_digit) && s[4] == b'-'
}

/// A caller token: `path/file.cc:123` (maybe with a trailing `]`).
fn looks_like_caller(tok: &[u8]) -> bool {
    let tok = tok.strip_suffix(b"]").unwrap_or(tok);
    let Some(colon) = memchr::memrchr(b':', tok) else {
        return false;
    };
    let (file, line) = (&tok[..colon], &tok[colon + 1..]);
    !line.is_empty() && line.iter().all(u8::is_ascii_digit) && memchr::memchr(b'.', file).is_some()
}

/// Strips a trailing `thread=N` (after whitespace) from an Istio message.
fn split_thread(msg: &[u8]) -> (&[u8], Option<&[u8]>) {
    use memchr::memmem::FinderRev;
    use std::sync::LazyLock;
    // Built once: constructing a finder costs more than a search of one line.
    static THREAD: LazyLock<FinderRev<'static>> = LazyLock::new(|| FinderRev::new(b"thread="));
    let msg = trim(msg);
    if let Some(eq) = THREAD.rfind(msg) {
        let digits = &msg[eq + 7..];
        let before_ok = eq == 0 || is_ws(msg[eq - 1]);
        if before_ok && !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
            return (trim(&msg[..eq]), Some(digits));
        }
    }
    (msg, None)
}

/// Parses an Istio layout line (`TIME LEVEL [envoy] SCOPE [CALLER] MSG [thread=N]`).
pub(crate) fn parse_istio(line: &[u8]) -> Option<(RawHeader<'_>, &[u8])> {
    if !starts_with_year(line) {
        return None;
    }
    let (time, sep1, rest) = next_token(line);
    let (level, sep2, rest) = next_token(rest);
    if sep1.is_empty() || sep2.is_empty() || !LEVELS.contains(&level) {
        return None;
    }
    let had_tabs = sep1.contains(&b'\t') || sep2.contains(&b'\t');
    let (mut logger, _, mut rest) = next_token(rest);
    if logger == b"envoy" {
        let (l, _, r) = next_token(rest);
        logger = l;
        rest = r;
    }
    if logger.is_empty() {
        return None;
    }
    // Istio >= 1.17 prints the caller after the scope; a message never looks like one.
    let mut caller = None;
    let (tok, _, after) = next_token(rest);
    if looks_like_caller(tok) {
        caller = Some(tok);
        rest = after;
    }
    let (msg, thread) = split_thread(rest);
    let layout = if caller.is_some() || thread.is_some() {
        Layout::IstioTabs
    } else {
        Layout::IstioLegacy
    };
    Some((
        RawHeader {
            time: Some(time),
            level: Some(level),
            logger: Some(logger),
            caller,
            thread,
            layout,
            tabs_as_spaces: !had_tabs,
        },
        msg,
    ))
}

/// Reads one `[...]` group at the start of `s`: (inside, rest).
fn bracket(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let s = s.strip_prefix(b"[")?;
    let end = memchr::memchr(b']', s)?;
    Some((&s[..end], &s[end + 1..]))
}

/// Parses plain Envoy's `[TIME][TID][LEVEL][SCOPE] [CALLER] MSG` (or `CALLER] MSG`).
pub(crate) fn parse_envoy(line: &[u8]) -> Option<(RawHeader<'_>, &[u8])> {
    let (time, rest) = bracket(line)?;
    let (tid, rest) = bracket(rest)?;
    let (level, rest) = bracket(rest)?;
    let (logger, rest) = bracket(rest)?;
    if !starts_with_year(time) {
        return None;
    }
    let rest = trim(rest);
    let mut caller = None;
    let mut msg = rest;
    if let Some((inside, after)) = bracket(rest) {
        if looks_like_caller(inside) {
            caller = Some(inside);
            msg = after;
        }
    } else {
        let (tok, _, after) = next_token(rest);
        if tok.ends_with(b"]") && looks_like_caller(tok) {
            caller = Some(&tok[..tok.len() - 1]);
            msg = after;
        }
    }
    Some((
        RawHeader {
            time: Some(time),
            level: Some(level),
            logger: Some(logger),
            caller,
            thread: Some(tid),
            layout: Layout::Envoy,
            tabs_as_spaces: false,
        },
        trim(msg),
    ))
}

/// `true` for a time printed without a zone (`2024-09-26 11:41:28.955`).
pub fn lacks_zone(t: &str) -> bool {
    let zoned = t.ends_with('Z')
        || t.ends_with('z')
        || t.get(19..)
            .is_some_and(|tail| tail.contains('+') || tail.contains('-'));
    !zoned
}

/// Turns the time layouts Envoy and Istio print into RFC 3339, when they are one of them.
pub fn normalise_time(t: &str) -> Option<String> {
    let b = t.as_bytes();
    // YYYY-MM-DD?HH:MM:SS
    let shape = b.len() >= 19
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
        && (b[10] == b'T' || b[10] == b' ')
        && b[11..13].iter().all(u8::is_ascii_digit)
        && b[13] == b':'
        && b[14..16].iter().all(u8::is_ascii_digit)
        && b[16] == b':'
        && b[17..19].iter().all(u8::is_ascii_digit);
    if !shape {
        return None;
    }
    let mut end = 19;
    if b.get(19) == Some(&b'.') {
        end = 20;
        while b.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        if end == 20 {
            return None;
        }
    }
    let zone = &t[end..];
    let zone_ok = zone.is_empty()
        || zone == "Z"
        || (zone.len() == 6
            && (zone.starts_with('+') || zone.starts_with('-'))
            && zone.as_bytes()[3] == b':');
    if !zone_ok {
        return None;
    }
    let mut out = String::with_capacity(end + 6);
    out.push_str(&t[..10]);
    out.push('T');
    out.push_str(&t[11..end]);
    out.push_str(if zone.is_empty() { "Z" } else { zone });
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_times() {
        assert_eq!(
            normalise_time("2024-09-26 11:41:28.955").as_deref(),
            Some("2024-09-26T11:41:28.955Z")
        );
        assert_eq!(
            normalise_time("2025-07-06T19:33:00.654348Z").as_deref(),
            Some("2025-07-06T19:33:00.654348Z")
        );
        assert_eq!(normalise_time("2025-07-06T19:33:00.Z"), None);
        assert_eq!(normalise_time("yesterday"), None);
    }

    #[test]
    fn strips_thread_only_after_whitespace() {
        assert_eq!(split_thread(b"msg\tthread=26").1, Some(&b"26"[..]));
        assert_eq!(split_thread(b"msg xthread=26").1, None);
        assert_eq!(split_thread(b"thread=").1, None);
    }
}
