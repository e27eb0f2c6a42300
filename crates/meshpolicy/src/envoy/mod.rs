//! Parsers for what Envoy and istioctl print: RBAC log lines, access logs, authz check tables, config dumps, admin stats.
//!
//! Every plugin that explains an Istio decision reads one of these formats, and they
//! changed across Istio and Envoy releases; parsing them once, here, into serde data
//! keeps the plugins and meshsim in agreement. Log lines go through one entry point,
//! [`classify_line`], and whole logs through [`scan_slice`] (a buffer in memory) or
//! [`LogReader`] (any `BufRead`). Both find candidate lines the way grep does: a
//! vectorised substring search for `rbac` / `ext_authz` over the whole buffer, so
//! lines that cannot be RBAC-related are never looked at one by one and never
//! allocate. Bad input (invalid UTF-8, truncated or over-long lines, unknown layouts)
//! is reported per line and never ends the stream.

pub mod access_log;
pub mod authz_table;
pub mod config_dump;
pub mod header;
pub mod local_reply;
pub mod policy_id;
pub mod rbac_log;
pub mod stats;
pub mod ztunnel;

use std::collections::VecDeque;
use std::io::{self, BufRead};
use std::sync::LazyLock;

use memchr::memmem::Finder;
use serde::Serialize;
use serde_json::Value;

pub use access_log::{AccessLogEncoding, AccessLogEntry, AccessVerdict, Transport};
pub use authz_table::{
    AuthzAction, AuthzRow, AuthzTableError, parse_authz_check, render_authz_table,
};
pub use config_dump::{
    AnonymousOrigin, AuthzReport, ConfigDumpError, PolicyOccurrence, RuleSource,
    analyze_config_dump, analyze_config_dump_all, analyze_filter_config,
};
pub use header::{Layout, LogHeader};
pub use local_reply::{
    LocalReply, format_local_reply_line, format_rbac_denied_details, rbac_denied_policy,
};
pub use policy_id::PolicyId;
pub use rbac_log::{
    CheckedRequest, Decision, Engine, FilterKind, NoteKind, RbacDecision, RbacNote,
    format_rbac_debug_line, format_rbac_message,
};
pub use ztunnel::{ZtunnelDecision, ZtunnelKind, ZtunnelReason, is_ztunnel_log_line};

use header::{RawHeader, lossy, trim};
use rbac_log::MessageError;

/// What one log line is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "value")]
pub enum LogLine {
    /// An RBAC filter decision (debug level, logger `rbac`).
    RbacDecision(RbacDecision),
    /// A `Preparing local reply with details ...` line.
    LocalReply(LocalReply),
    /// An access log line (its `verdict` says whether it is an RBAC decision).
    AccessLog(Box<AccessLogEntry>),
    /// An RBAC logger line that belongs to a decision but is not one
    /// (`checking request: ...`, `allowed by default or by policy`).
    RbacNote(Box<RbacNote>),
    /// A ztunnel (ambient mode) L4 authorization line.
    Ztunnel(Box<ZtunnelDecision>),
    /// Anything else: not an RBAC decision.
    Other,
    /// Looked RBAC-related (or like a known format) but could not be decoded.
    Unparsed(Unparsed),
}

impl LogLine {
    /// `true` for lines that say something about authorization: decisions, local
    /// replies, access log denials and lines that could not be decoded.
    pub fn is_rbac_related(&self) -> bool {
        match self {
            LogLine::RbacDecision(_)
            | LogLine::Unparsed(_)
            | LogLine::RbacNote(_)
            | LogLine::Ztunnel(_) => true,
            LogLine::LocalReply(r) => r.rbac_denied || r.details.starts_with("ext_authz"),
            LogLine::AccessLog(a) => a.verdict != AccessVerdict::NotRbac,
            LogLine::Other => false,
        }
    }
}

/// A line that could not be decoded, with why and what it said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unparsed {
    /// Why it could not be decoded.
    pub reason: UnparsedReason,
    /// The start of the line (lossy UTF-8, at most [`EXCERPT_LEN`] bytes).
    pub excerpt: String,
}

/// How many bytes of a bad line [`Unparsed::excerpt`] keeps.
pub const EXCERPT_LEN: usize = 256;

/// Why a line could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum UnparsedReason {
    /// An RBAC message cut short (`enforced denied, matched pol`).
    #[error("truncated RBAC decision message")]
    TruncatedRbacMessage,
    /// A local reply line without its details.
    #[error("truncated local reply line")]
    TruncatedLocalReply,
    /// An access log line with too few fields.
    #[error("access log line has {found} fields, expected at least 21")]
    AccessLogFields {
        /// Fields found.
        found: usize,
    },
    /// An access log line whose quoted field never closes.
    #[error("access log line has an unterminated quoted field")]
    AccessLogQuote,
    /// A JSON line that is not valid JSON.
    #[error("invalid JSON log line: {message}")]
    Json {
        /// serde_json's message.
        message: String,
    },
    /// A line longer than the reader's limit; only its start was examined.
    #[error("line longer than {limit} bytes")]
    TooLong {
        /// The limit in bytes.
        limit: usize,
    },
}

/// Which lines a scan reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// Only RBAC-related lines ([`LogLine::is_rbac_related`]); fastest.
    #[default]
    RbacOnly,
    /// Every line, with non-RBAC lines as [`LogLine::Other`] or access logs whose
    /// verdict is [`AccessVerdict::NotRbac`].
    All,
}

/// The words a line must hold to be RBAC-related: the logger name and the policy
/// details (`rbac`), CUSTOM denials (`ext_authz`, `UAEX`), a decision pasted without
/// its envelope (`matched policy`, the pre-2020 bare `enforced denied` / `shadow
/// denied`), and ztunnel's rejections.
const NEEDLES: [&[u8]; 9] = [
    b"rbac",
    b"ext_authz",
    b"UAEX",
    b"matched policy",
    b"enforced denied",
    b"shadow denied",
    b"policy rejection",
    b"RBAC rejected",
    b"dry-run deny",
];
const N_NEEDLES: usize = NEEDLES.len();
/// Built once: constructing a finder costs more than a search of one line.
static FINDERS: LazyLock<[Finder<'static>; N_NEEDLES]> = LazyLock::new(|| NEEDLES.map(Finder::new));
static LOCAL_REPLY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(local_reply::MARKER));
static LEGACY_REPLY: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(local_reply::LEGACY_MARKER));

/// The cheap prefilter: can this line be RBAC-related at all?
pub fn may_be_rbac(line: &[u8]) -> bool {
    FINDERS.iter().any(|f| f.find(line).is_some())
}

/// Pilot-agent (Istio <= 1.4) put `[Envoy (Epoch N)] ` in front of every Envoy line.
pub fn strip_epoch_prefix(line: &[u8]) -> &[u8] {
    let Some(rest) = line.strip_prefix(b"[Envoy (Epoch ") else {
        return line;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    match rest[digits..].strip_prefix(b")]") {
        Some(after) if digits > 0 => trim(after),
        _ => line,
    }
}

fn excerpt(line: &[u8]) -> String {
    let mut end = line.len().min(EXCERPT_LEN);
    // Do not cut a UTF-8 sequence in half (lossy decoding would add a replacement).
    while end < line.len() && end > 0 && (line[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    lossy(&line[..end])
}

fn unparsed(reason: UnparsedReason, line: &[u8]) -> LogLine {
    LogLine::Unparsed(Unparsed {
        reason,
        excerpt: excerpt(line),
    })
}

/// Classifies a log line (bytes, any layout, without its newline).
///
/// With [`Scope::RbacOnly`], a line without `rbac` or `ext_authz` is `Other` at once
/// (no allocation); so a bare message with no envelope (`shadow denied`, as pasted by
/// hand, [`Layout::Bare`]) is only recognised with [`Scope::All`]. With [`Scope::All`] every line is decoded, so ordinary access log
/// lines come back as [`LogLine::AccessLog`] with [`AccessVerdict::NotRbac`].
pub fn classify_line(line: &[u8], scope: Scope) -> LogLine {
    let line = strip_epoch_prefix(trim(line));
    if scope == Scope::RbacOnly && !may_be_rbac(line) {
        return LogLine::Other;
    }
    if ztunnel::may_be_ztunnel(line)
        && let Some(z) = ztunnel::parse(line)
    {
        return LogLine::Ztunnel(Box::new(z));
    }
    match line.first() {
        Some(b'{') => classify_json(line),
        Some(b'[') => {
            let Some(close) = memchr::memchr(b']', line) else {
                return LogLine::Other;
            };
            match line.get(close + 1) {
                Some(b'[') => match header::parse_envoy(line) {
                    Some((h, msg)) => classify_message(h, msg, line),
                    None => LogLine::Other,
                },
                Some(b' ') if line.get(close + 2) == Some(&b'"') => {
                    match access_log::parse_text(line, close) {
                        Ok(entry) => LogLine::AccessLog(Box::new(entry)),
                        Err(access_log::AccessLogError::Fields(found)) => {
                            unparsed(UnparsedReason::AccessLogFields { found }, line)
                        }
                        Err(access_log::AccessLogError::UnterminatedQuote) => {
                            unparsed(UnparsedReason::AccessLogQuote, line)
                        }
                    }
                }
                _ => LogLine::Other,
            }
        }
        Some(b'0'..=b'9') => match header::parse_istio(line) {
            Some((h, msg)) => classify_message(h, msg, line),
            None => LogLine::Other,
        },
        Some(_) => {
            // A bare message, as pasted from somewhere.
            let bare = RawHeader {
                time: None,
                level: None,
                logger: None,
                caller: None,
                thread: None,
                layout: Layout::Bare,
                tabs_as_spaces: false,
            };
            match rbac_log::parse_message(line) {
                Ok((e, d, id)) => LogLine::RbacDecision(rbac_log::build(bare, e, d, id)),
                Err(_) => match rbac_log::parse_note(bare, line, false) {
                    Some(n) => LogLine::RbacNote(Box::new(n)),
                    None => local_reply_or(bare, line, line, LogLine::Other),
                },
            }
        }
        None => LogLine::Other,
    }
}

/// The local reply in `msg` (either wording), else `otherwise`.
fn local_reply_or(h: RawHeader<'_>, msg: &[u8], line: &[u8], otherwise: LogLine) -> LogLine {
    let (at, len) = match LOCAL_REPLY.find(msg) {
        Some(at) => (at, local_reply::MARKER.len()),
        None => match LEGACY_REPLY.find(msg) {
            Some(at) => (at, local_reply::LEGACY_MARKER.len()),
            None => return otherwise,
        },
    };
    match local_reply::parse(h, msg, at, len) {
        Some(r) => LogLine::LocalReply(r),
        None => unparsed(UnparsedReason::TruncatedLocalReply, line),
    }
}

fn classify_message(h: RawHeader<'_>, msg: &[u8], line: &[u8]) -> LogLine {
    if h.logger == Some(b"rbac") {
        match rbac_log::parse_message(msg) {
            Ok((e, d, id)) => return LogLine::RbacDecision(rbac_log::build(h, e, d, id)),
            Err(MessageError::Truncated) => {
                return unparsed(UnparsedReason::TruncatedRbacMessage, line);
            }
            Err(MessageError::NotDecision) => {
                if let Some(n) = rbac_log::parse_note(h, msg, h.thread.is_some()) {
                    return LogLine::RbacNote(Box::new(n));
                }
            }
        }
    }
    local_reply_or(h, msg, line, LogLine::Other)
}

fn json_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn classify_json(line: &[u8]) -> LogLine {
    let obj = match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(obj)) => obj,
        Ok(_) => return LogLine::Other,
        Err(e) => {
            return unparsed(
                UnparsedReason::Json {
                    message: e.to_string(),
                },
                line,
            );
        }
    };
    if access_log::is_json_access_log(&obj) {
        return LogLine::AccessLog(Box::new(access_log::from_json(&obj)));
    }
    let Some(msg) = json_text(obj.get("msg").or_else(|| obj.get("message"))) else {
        return LogLine::Other;
    };
    let logger = json_text(
        obj.get("scope")
            .or_else(|| obj.get("name"))
            .or_else(|| obj.get("logger")),
    );
    let logger = logger.map(|l| l.strip_prefix("envoy ").map(str::to_owned).unwrap_or(l));
    let time = json_text(obj.get("time").or_else(|| obj.get("timestamp")));
    let level = json_text(obj.get("level"));
    let caller = json_text(obj.get("caller"));
    let thread = json_text(obj.get("thread").or_else(|| obj.get("tid")));
    let raw = RawHeader {
        time: time.as_deref().map(str::as_bytes),
        level: level.as_deref().map(str::as_bytes),
        logger: logger.as_deref().map(str::as_bytes),
        caller: caller.as_deref().map(str::as_bytes),
        thread: thread.as_deref().map(str::as_bytes),
        layout: Layout::Json,
        tabs_as_spaces: false,
    };
    classify_message(raw, msg.as_bytes(), line)
}

/// One reported line of a scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineEntry {
    /// 1-based line number in the input.
    pub line_no: u64,
    /// What the line is.
    #[serde(flatten)]
    pub line: LogLine,
}

/// Scan position over one buffer of complete lines.
#[derive(Debug, Default)]
struct ScanState {
    /// Next byte to examine.
    pos: usize,
    /// Newlines have been counted up to here.
    counted: usize,
    /// Number of the line that starts at `counted` (1-based).
    line_no: u64,
    /// Cached next match of each needle at or after `pos` (`usize::MAX`: none left).
    next: [Option<usize>; N_NEEDLES],
}

impl ScanState {
    fn new(first_line_no: u64) -> Self {
        ScanState {
            line_no: first_line_no,
            ..ScanState::default()
        }
    }

    fn reset(&mut self, first_line_no: u64) {
        *self = ScanState::new(first_line_no);
    }

    fn refresh(cache: &mut Option<usize>, finder: &Finder<'_>, buf: &[u8], pos: usize) -> usize {
        match *cache {
            Some(at) if at >= pos => at,
            _ => {
                let at = finder.find(&buf[pos..]).map_or(usize::MAX, |i| pos + i);
                *cache = Some(at);
                at
            }
        }
    }

    /// Line number of the line starting at `start` (counting newlines since last time).
    fn line_no_at(&mut self, buf: &[u8], start: usize) -> u64 {
        self.line_no += memchr::memchr_iter(b'\n', &buf[self.counted..start]).count() as u64;
        self.counted = start;
        self.line_no
    }

    /// Next reported line in `buf`, which ends at a line boundary (or is the final
    /// unterminated line). Returns `None` when the buffer is exhausted.
    fn next(&mut self, buf: &[u8], scope: Scope, max_line: usize) -> Option<LineEntry> {
        loop {
            if self.pos >= buf.len() {
                return None;
            }
            let start = match scope {
                Scope::All => self.pos,
                Scope::RbacOnly => {
                    let mut hit = usize::MAX;
                    for (cache, finder) in self.next.iter_mut().zip(FINDERS.iter()) {
                        hit = hit.min(Self::refresh(cache, finder, buf, self.pos));
                    }
                    if hit == usize::MAX {
                        self.pos = buf.len();
                        return None;
                    }
                    memchr::memrchr(b'\n', &buf[self.pos..hit])
                        .map_or(self.pos, |i| self.pos + i + 1)
                }
            };
            let end = memchr::memchr(b'\n', &buf[start..]).map_or(buf.len(), |i| start + i);
            self.pos = end + 1;
            let line = if end - start > max_line {
                // In `RbacOnly` the line holds a needle somewhere, so it is reported too.
                unparsed(
                    UnparsedReason::TooLong { limit: max_line },
                    &buf[start..end],
                )
            } else {
                classify_line(&buf[start..end], scope)
            };
            if scope == Scope::RbacOnly && !line.is_rbac_related() {
                continue;
            }
            let line_no = self.line_no_at(buf, start);
            return Some(LineEntry { line_no, line });
        }
    }

    /// Total lines fully contained in `buf` once scanning is done.
    fn lines_in(&mut self, buf: &[u8]) -> u64 {
        self.line_no_at(buf, buf.len()) - 1
    }
}

/// Scans a whole in-memory log: every reported line with its 1-based line number.
/// Lines of any length are examined whole (the data is already in memory).
pub fn scan_slice(buf: &[u8], scope: Scope) -> SliceScanner<'_> {
    SliceScanner {
        buf,
        scope,
        state: ScanState::new(1),
    }
}

/// Iterator returned by [`scan_slice`].
#[derive(Debug)]
pub struct SliceScanner<'a> {
    buf: &'a [u8],
    scope: Scope,
    state: ScanState,
}

impl Iterator for SliceScanner<'_> {
    type Item = LineEntry;

    fn next(&mut self) -> Option<LineEntry> {
        self.state.next(self.buf, self.scope, usize::MAX)
    }
}

/// Default longest line [`LogReader`] examines whole (1 MiB).
pub const DEFAULT_MAX_LINE: usize = 1 << 20;
const READ_BLOCK: usize = 256 * 1024;

/// Streams a log from any `BufRead`, yielding reported lines with line numbers.
///
/// Invalid UTF-8 is decoded lossily, the last line may lack its newline, and a line
/// longer than the limit is not decoded but reported as [`UnparsedReason::TooLong`]
/// (when it may be RBAC-related or the scope is `All`); memory stays bounded by the
/// limit plus one read block however long the line is.
/// Only I/O errors are returned as `Err`; after one, the iterator ends.
#[derive(Debug)]
pub struct LogReader<R> {
    inner: R,
    scope: Scope,
    max_line: usize,
    buf: Vec<u8>,
    /// `buf[..complete]` holds whole lines being scanned.
    complete: usize,
    state: ScanState,
    /// Line number of the first line in `buf`.
    base_line: u64,
    eof: bool,
    failed: bool,
    /// Discarding the rest of an over-long line.
    skipping: bool,
    pending: VecDeque<LineEntry>,
}

impl<R: BufRead> LogReader<R> {
    /// A reader reporting lines of `scope`.
    pub fn new(inner: R, scope: Scope) -> Self {
        LogReader {
            inner,
            scope,
            max_line: DEFAULT_MAX_LINE,
            buf: Vec::with_capacity(READ_BLOCK * 2),
            complete: 0,
            state: ScanState::new(1),
            base_line: 1,
            eof: false,
            failed: false,
            skipping: false,
            pending: VecDeque::new(),
        }
    }

    /// Sets the longest line examined whole (at least 1 KiB).
    pub fn with_max_line(mut self, max_line: usize) -> Self {
        self.max_line = max_line.max(1024);
        self
    }

    /// Reads more input; drops the scanned prefix first. Returns where the new bytes
    /// start in `buf`, or `None` at EOF.
    fn refill(&mut self) -> io::Result<Option<usize>> {
        // Drop the scanned lines, keep the incomplete tail.
        let scanned = self.complete;
        if scanned > 0 {
            let lines = self.state.lines_in(&self.buf[..scanned]);
            self.base_line += lines;
            self.buf.drain(..scanned);
            self.complete = 0;
        }
        loop {
            let chunk = match self.inner.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                return Ok(None);
            }
            let n = chunk.len().min(READ_BLOCK);
            if self.skipping {
                if let Some(nl) = memchr::memchr(b'\n', &chunk[..n]) {
                    self.inner.consume(nl + 1);
                    self.skipping = false;
                } else {
                    self.inner.consume(n);
                }
                continue;
            }
            let old_len = self.buf.len();
            self.buf.extend_from_slice(&chunk[..n]);
            self.inner.consume(n);
            return Ok(Some(old_len));
        }
    }

    fn step(&mut self) -> io::Result<Option<LineEntry>> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(Some(e));
            }
            if self.complete > 0
                && let Some(mut entry) =
                    self.state
                        .next(&self.buf[..self.complete], self.scope, self.max_line)
            {
                entry.line_no += self.base_line - 1;
                return Ok(Some(entry));
            }
            if self.eof {
                return Ok(None);
            }
            let new_from = self.refill()?;
            self.state.reset(1);
            let Some(new_from) = new_from else {
                self.eof = true;
                // The last line may lack its newline.
                self.complete = self.buf.len();
                continue;
            };
            // Only the new bytes can hold a newline (the kept tail has none), so a long
            // line arriving in small chunks costs linear time, not quadratic.
            match memchr::memrchr(b'\n', &self.buf[new_from..]) {
                Some(nl) => self.complete = new_from + nl + 1,
                None if self.buf.len() >= self.max_line => self.over_long(),
                None => self.complete = 0,
            }
        }
    }

    /// The buffer holds `max_line` bytes without a newline: examine the start, skip the rest.
    fn over_long(&mut self) {
        let head = &self.buf[..self.max_line];
        let report = self.scope == Scope::All || may_be_rbac(head);
        if report {
            self.pending.push_back(LineEntry {
                line_no: self.base_line,
                line: unparsed(
                    UnparsedReason::TooLong {
                        limit: self.max_line,
                    },
                    head,
                ),
            });
        }
        self.base_line += 1;
        self.buf.clear();
        self.complete = 0;
        self.skipping = true;
    }
}

impl<R: BufRead> Iterator for LogReader<R> {
    type Item = io::Result<LineEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.step() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
