//! Turning one stream of log lines into decisions, pairing the lines of one request.
//!
//! One denied HTTP request can leave three lines in its sidecar's log: the RBAC
//! filter's debug line (`enforced denied, matched policy ID`), the filter
//! manager's `Preparing local reply with details rbac_access_denied_matched_policy[ID]`
//! (which carries the connection and stream ids) and, when the request is done,
//! the server-side access log line (method, path, authority, downstream address,
//! the same `rbac_access_denied_matched_policy[ID]`). Printed separately they would
//! count one denial three times, so a [`Pairer`] per stream (one pod's
//! istio-proxy log, or one file) merges them:
//!
//! - a local reply joins the most recent enforced-denied RBAC debug decision of the
//!   same stream with the same policy id, on the same Envoy worker thread when both
//!   lines name one, logged at most [`PAIR_WINDOW`] earlier and not yet joined by
//!   another local reply (Envoy logs the two lines back to back on that thread);
//! - an access log line joins the oldest enforced-denied decision of the same stream
//!   with the same policy id whose time is within [`PAIR_WINDOW`] of the access
//!   log's start time and that has no access log yet (access lines are written in
//!   request order);
//! - a line that finds no partner becomes a decision of its own.
//!
//! Real Envoy (1.40) writes more around each decision: every RBAC filter first
//! writes `checking request: ...` over several lines (one header per line, ending
//! with `thread=N`), and a request passing several RBAC filters (Istio's CUSTOM,
//! DENY, ALLOW, AUDIT) gets one decision line per filter. The entry's method, path,
//! authority, `x-request-id` and source address are taken into the decision that
//! follows on the same thread, and the decisions of one request (same thread, same
//! `x-request-id`) are folded into one: the deciding filter's, with the others
//! listed (`filters`). An access log line joins by `x-request-id` when both sides
//! have one, else by downstream address, else by the closest time, so the join
//! holds whatever order the access lines arrive in (log stores sort by start time,
//! which may put an access line before its debug line). The TCP filter's `no engine,
//! allowed by default` is counted, never a row.
//!
//! Decisions wait in a small queue until no partner can arrive any more: a later
//! line is more than [`HOLD`] newer, the queue is full, the stream ends, or (when
//! following) [`Pairer::flush_idle`] is called. When a line is more than [`HOLD`]
//! older than the newest time (time went back: several pods' logs concatenated,
//! a clock step), the queue is released and the clock restarts from that line. Memory per stream is bounded by the
//! queue, never by the log's size.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use meshpolicy::envoy::header::normalise_time;
use meshpolicy::envoy::rbac_log::{ends_entry, is_continuation};
use meshpolicy::envoy::{
    AccessVerdict, CheckedRequest, Decision, Engine, LogHeader, LogLine, NoteKind, PolicyId, Scope,
    UnparsedReason, ZtunnelDecision, ZtunnelKind, ZtunnelReason, classify_line,
    is_ztunnel_log_line, may_be_rbac,
};

use crate::record::{
    Action, DecisionRecord, EngineKind, FilterDecision, FilterName, Origin, PairedLine, PolicyRef,
    RbacOutcome, RequestInfo,
};

/// Lines of one request are paired only within this time of each other.
pub const PAIR_WINDOW: Duration = Duration::from_secs(1);
/// A decision is released once a line this much newer has been read.
pub const HOLD: Duration = Duration::from_secs(2);
/// At most this many decisions wait for a partner per stream.
pub const MAX_PENDING: usize = 1024;
/// A filter's `checking request` entry applies to decision lines this close to it.
const CHECK_WINDOW: Duration = Duration::from_millis(10);
/// A JSON object pretty-printed over several lines is read up to this size.
const MAX_JSON: usize = 1 << 20;

/// Where a stream's lines come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamId {
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub file: Option<String>,
    /// `sidecar`, `gateway`, `waypoint` when the caller knows.
    pub proxy: Option<&'static str>,
}

/// What a stream contained, for the "nothing found" explanation and warnings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub lines: u64,
    /// RBAC filter debug lines (any decision, `no engine` excluded).
    pub rbac_debug: u64,
    /// Access log lines of any kind (RBAC or not): access logging is on.
    pub access_log: u64,
    /// Local reply lines naming an RBAC denial.
    pub local_reply: u64,
    /// Lines that looked RBAC-related but could not be decoded.
    pub unparsed: u64,
    /// Lines that do not look like Envoy/Istio log lines at all.
    pub foreign: u64,
    /// RBAC logger lines that are not decisions (`checking request`, `allowed by default or by policy`).
    pub rbac_notes: u64,
    /// The TCP filter's `no engine, allowed by default` (never a row).
    pub no_engine: u64,
    /// ztunnel authorization lines.
    pub ztunnel: u64,
    /// Other ztunnel lines (access lines of connections no policy closed): the
    /// log is a ztunnel's, which prints every rejection without a log setting.
    pub ztunnel_other: u64,
    /// `shadow allowed, matched policy none` (no dry-run policy matched; no row).
    pub shadow_none: u64,
    /// Lines mentioning `rbac` in no form rbaclog knows (counted, not dropped silently).
    pub rbac_other: u64,
    /// The first foreign line (for the explanation).
    pub first_foreign: Option<String>,
    /// The first line counted in `unparsed` or `rbac_other`.
    pub first_unknown: Option<String>,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.lines += o.lines;
        self.rbac_debug += o.rbac_debug;
        self.access_log += o.access_log;
        self.local_reply += o.local_reply;
        self.unparsed += o.unparsed;
        self.foreign += o.foreign;
        self.rbac_notes += o.rbac_notes;
        self.no_engine += o.no_engine;
        self.ztunnel += o.ztunnel;
        self.ztunnel_other += o.ztunnel_other;
        self.shadow_none += o.shadow_none;
        self.rbac_other += o.rbac_other;
        if self.first_foreign.is_none() {
            self.first_foreign.clone_from(&o.first_foreign);
        }
        if self.first_unknown.is_none() {
            self.first_unknown.clone_from(&o.first_unknown);
        }
    }

    fn foreign_line(&mut self, line: &[u8]) {
        self.foreign += 1;
        if self.first_foreign.is_none() {
            self.first_foreign = Some(excerpt(line));
        }
    }

    fn unknown_line(&mut self, line: &[u8]) {
        if self.first_unknown.is_none() {
            self.first_unknown = Some(excerpt(line));
        }
    }
}

fn excerpt(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
    if line.len() > 200 {
        format!("{s}...")
    } else {
        s
    }
}

#[derive(Debug)]
struct Pending {
    rec: DecisionRecord,
    thread: Option<String>,
    /// Enforced denial: local reply and access log may join.
    pairable: bool,
    has_debug: bool,
    has_reply: bool,
    has_access: bool,
    /// The `x-request-id` of a request whose later RBAC filters may still fold in.
    open_request: Option<String>,
    received: Instant,
}

/// A multi-line entry being read (Envoy 1.40's `checking request:`).
#[derive(Debug)]
struct OpenEntry {
    /// `None` for the network filter's `checking connection:`.
    request: Option<CheckedRequest>,
    /// The entry's time (its first line's).
    ts: Option<Timestamp>,
}

/// A JSON object being read over several lines (jq's pretty-printing).
#[derive(Debug)]
struct OpenJson {
    text: Vec<u8>,
    depth: i64,
    in_string: bool,
    escaped: bool,
}

impl OpenJson {
    /// Scans `line`, returns whether the object closed.
    fn feed(&mut self, line: &[u8]) -> bool {
        for &b in line {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => self.depth -= 1,
                _ => {}
            }
        }
        if self.text.len() + line.len() < MAX_JSON {
            if !self.text.is_empty() {
                self.text.push(b' ');
            }
            self.text.extend_from_slice(line);
        }
        self.depth <= 0
    }
}

/// Pairs the lines of one stream into decisions (see the module docs).
#[derive(Debug)]
pub struct Pairer {
    id: StreamId,
    pending: VecDeque<Pending>,
    latest: Option<Timestamp>,
    /// The last `checking request` entry per Envoy thread (`None`: thread unknown).
    checked: HashMap<Option<String>, (CheckedRequest, Option<Timestamp>)>,
    open_entry: Option<OpenEntry>,
    open_json: Option<OpenJson>,
    /// Per thread: decisions that are no row (`shadow allowed, matched policy none`)
    /// of the request (`x-request-id`) whose row is still to come.
    unrowed: HashMap<Option<String>, (String, Vec<FilterDecision>)>,
    pub stats: Stats,
}

fn parse_ts(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

fn within(a: Option<Timestamp>, b: Option<Timestamp>, window: Duration) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => {
            let d = a.duration_since(b).unsigned_abs();
            d <= window
        }
        // Without times (bare pasted lines), adjacency in the stream is all we have.
        _ => true,
    }
}

fn distance(a: Option<Timestamp>, b: Option<Timestamp>) -> Duration {
    match (a, b) {
        (Some(a), Some(b)) => a.duration_since(b).unsigned_abs(),
        _ => Duration::ZERO,
    }
}

/// Whether a line looks like an Envoy/Istio log line (any layout), cheaply.
fn looks_like_log(line: &[u8]) -> bool {
    match line.first() {
        Some(b'[') | Some(b'{') => true,
        Some(b'0'..=b'9') => {
            line.len() >= 5 && line[..4].iter().all(u8::is_ascii_digit) && line[4] == b'-'
        }
        // Istio prints multi-line CLI options indented by a tab; Envoy continues
        // multi-line entries (headers, metadata) on lines of their own.
        Some(b'\t') | Some(b' ') | Some(b'\'') | Some(b',') | Some(b'}') | Some(b']') => true,
        None => true,
        _ => is_continuation(line),
    }
}

/// Whether the line is a whole access log line, TEXT or one-line JSON.
fn is_access_log_line(line: &[u8]) -> bool {
    is_text_access_log(line)
        || (line.first() == Some(&b'{')
            && line.last() == Some(&b'}')
            && memchr::memmem::find(line, b"\"response_code\"").is_some())
}

/// Whether the line is an access log line in Istio's TEXT layout (`[TIME] "...`).
fn is_text_access_log(line: &[u8]) -> bool {
    if line.first() != Some(&b'[') {
        return false;
    }
    match memchr::memchr(b']', line) {
        Some(close) => line.get(close + 1) == Some(&b' ') && line.get(close + 2) == Some(&b'"'),
        None => false,
    }
}

/// The thread number at the end of an entry's last line (`... thread=N`).
fn trailing_thread(line: &[u8]) -> Option<String> {
    let at = memchr::memmem::rfind(line, b"thread=")?;
    let digits: Vec<u8> = line[at + 7..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    (!digits.is_empty()).then(|| String::from_utf8_lossy(&digits).into_owned())
}

/// (printed time, time zone note, parsed time) of a log line's envelope.
fn header_time(h: &LogHeader) -> (Option<String>, Option<&'static str>, Option<Timestamp>) {
    let ts = h.time_rfc3339.as_deref().and_then(parse_ts);
    if h.time_zone_unknown {
        (h.time.clone(), Some("unknown"), ts)
    } else {
        (h.time_rfc3339.clone(), None, ts)
    }
}

fn same_policy(rec: Option<&str>, other: Option<&PolicyId>) -> bool {
    match other {
        Some(o) => rec == Some(o.raw.as_str()),
        // Older Envoys named no policy (`rbac_access_denied`): any denial may be it.
        None => true,
    }
}

/// The `NS/NAME` ztunnel prints, as a policy reference.
fn policy_from_slash(s: &str) -> Option<PolicyRef> {
    let (ns, name) = s.split_once('/')?;
    Some(PolicyRef {
        namespace: Some(ns.to_string()),
        name: Some(name.to_string()),
        rule: None,
        provider: None,
    })
}

fn workload(ns: &Option<String>, w: &Option<String>) -> Option<String> {
    match (ns, w) {
        (Some(ns), Some(w)) => Some(format!("{ns}/{w}")),
        (None, Some(w)) => Some(w.clone()),
        _ => None,
    }
}

impl Pairer {
    pub fn new(id: StreamId) -> Self {
        Pairer {
            id,
            pending: VecDeque::new(),
            latest: None,
            checked: HashMap::new(),
            open_entry: None,
            open_json: None,
            unrowed: HashMap::new(),
            stats: Stats::default(),
        }
    }

    fn base(
        &self,
        origin: Origin,
        line: &[u8],
        time: Option<String>,
        fallback: Option<Timestamp>,
    ) -> DecisionRecord {
        let ts = time.as_deref().and_then(parse_ts).or(fallback);
        DecisionRecord {
            time: time.or_else(|| fallback.map(|t| t.to_string())),
            namespace: self.id.namespace.clone(),
            pod: self.id.pod.clone(),
            origin,
            engine: EngineKind::Enforced,
            decision: RbacOutcome::Denied,
            line: String::from_utf8_lossy(line).into_owned(),
            file: self.id.file.clone(),
            proxy: self.id.proxy,
            ts,
            ..DecisionRecord::default()
        }
    }

    /// Feeds one line (without newline and without the kubelet's timestamp, which is
    /// passed as `kubelet_ts`); released decisions are pushed to `out`.
    pub fn push(
        &mut self,
        line: &[u8],
        kubelet_ts: Option<Timestamp>,
        out: &mut Vec<DecisionRecord>,
    ) {
        self.stats.lines += 1;
        // A pretty-printed JSON object (jq) goes on until its braces close.
        if let Some(j) = &mut self.open_json {
            if j.feed(line) {
                let text = self.open_json.take().map(|j| j.text).unwrap_or_default();
                self.line(&text, kubelet_ts, out);
            }
            return;
        }
        if line.first() == Some(&b'{') {
            let mut j = OpenJson {
                text: Vec::new(),
                depth: 0,
                in_string: false,
                escaped: false,
            };
            if !j.feed(line) {
                self.open_json = Some(j);
                return;
            }
        }
        // Envoy 1.40's `checking request:` goes on over the next lines.
        if let Some(entry) = &mut self.open_entry {
            if is_continuation(line) {
                if let Some(r) = &mut entry.request {
                    r.absorb(line);
                }
                if ends_entry(line) {
                    let thread = trailing_thread(line);
                    if let Some(e) = self.open_entry.take() {
                        self.checked_request(thread, e.request, e.ts);
                    }
                }
                return;
            }
            // An access log line comes from Envoy's stdout, which a container
            // runtime interleaves with stderr line by line: it can land inside
            // the multi-line entry (one stderr write) without ending it.
            if is_access_log_line(line) {
                self.line(line, kubelet_ts, out);
                return;
            }
            if let Some(e) = self.open_entry.take() {
                self.checked_request(None, e.request, e.ts);
            }
        }
        self.line(line, kubelet_ts, out);
    }

    /// One logical line (a JSON object read over several lines counts as one).
    fn line(&mut self, line: &[u8], kubelet_ts: Option<Timestamp>, out: &mut Vec<DecisionRecord>) {
        if !may_be_rbac(line) {
            if is_text_access_log(line)
                || (line.first() == Some(&b'{')
                    && memchr::memmem::find(line, b"\"response_code\"").is_some())
            {
                self.stats.access_log += 1;
            } else if is_ztunnel_log_line(line) {
                self.stats.ztunnel_other += 1;
            } else if !looks_like_log(line) {
                self.stats.foreign_line(line);
            }
            if let Some(t) = kubelet_ts {
                self.advance(t, out);
            }
            return;
        }
        let now = Instant::now();
        match classify_line(line, Scope::RbacOnly) {
            LogLine::RbacDecision(d) => {
                if d.engine == Engine::None {
                    // The TCP filter with no enforced rules: it decided nothing.
                    self.stats.no_engine += 1;
                    let ts = d.header.time_rfc3339.as_deref().and_then(parse_ts);
                    self.tick(ts.or(kubelet_ts), out);
                    return;
                }
                self.stats.rbac_debug += 1;
                self.decision(&d, line, kubelet_ts, now, out);
            }
            LogLine::RbacNote(n) => {
                self.stats.rbac_notes += 1;
                if matches!(
                    n.kind,
                    NoteKind::CheckingRequest | NoteKind::CheckingConnection
                ) {
                    let req = n.request.filter(|_| n.kind == NoteKind::CheckingRequest);
                    let ts = n.header.time_rfc3339.as_deref().and_then(parse_ts);
                    if n.complete {
                        self.checked_request(n.header.thread.clone(), req, ts);
                    } else {
                        self.open_entry = Some(OpenEntry { request: req, ts });
                    }
                } else {
                    // `allowed by default or by policy` ends the filter's work.
                    self.checked.remove(&n.header.thread);
                }
                let ts = n.header.time_rfc3339.as_deref().and_then(parse_ts);
                self.tick(ts.or(kubelet_ts), out);
            }
            LogLine::LocalReply(r) => {
                if !r.rbac_denied {
                    // ext_authz and other local replies are not RBAC decisions.
                    self.tick(kubelet_ts, out);
                    return;
                }
                self.stats.local_reply += 1;
                let (time, zone, ts) = header_time(&r.header);
                let ts = ts.or(kubelet_ts);
                let thread = r.header.thread.clone();
                let joined = self.pending.iter_mut().rev().find(|p| {
                    p.pairable
                        && p.rec.engine == EngineKind::Enforced
                        && p.has_debug
                        && !p.has_reply
                        && same_policy(p.rec.policy_id.as_deref(), r.policy.as_ref())
                        && (p.thread.is_none() || thread.is_none() || p.thread == thread)
                        && within(p.rec.ts, ts, PAIR_WINDOW)
                });
                if let Some(p) = joined {
                    p.has_reply = true;
                    p.open_request = None;
                    p.rec.connection_id = r.connection_id.or(p.rec.connection_id);
                    p.rec.stream_id = r.stream_id.or(p.rec.stream_id);
                    p.rec.add_paired(PairedLine {
                        origin: Origin::LocalReply,
                        line: String::from_utf8_lossy(line).into_owned(),
                    });
                    self.tick(ts, out);
                } else {
                    let mut rec = self.base(Origin::LocalReply, line, time, kubelet_ts);
                    rec.time_zone = zone;
                    rec.ts = ts;
                    rec.policy_id = r.policy.as_ref().map(|p| p.raw.clone());
                    rec.policy = r.policy.as_ref().and_then(PolicyRef::from_id);
                    rec.connection_id = r.connection_id;
                    rec.stream_id = r.stream_id;
                    rec.filter = Some(FilterName::HttpRbac);
                    explain_none(&mut rec);
                    self.enqueue(
                        Pending {
                            rec,
                            thread,
                            pairable: true,
                            has_debug: false,
                            has_reply: true,
                            has_access: false,
                            open_request: None,
                            received: now,
                        },
                        out,
                    );
                }
            }
            LogLine::AccessLog(a) => {
                self.stats.access_log += 1;
                let time = a.start_time.as_deref().and_then(normalise_time);
                let ts = time.as_deref().and_then(parse_ts).or(kubelet_ts);
                let request = RequestInfo {
                    method: a.method.clone(),
                    path: a.path.clone(),
                    authority: a.authority.clone(),
                    response_code: a.response_code,
                };
                let downstream = a.downstream_remote_address.clone();
                let policy = match &a.verdict {
                    AccessVerdict::RbacDenied { policy, .. } => policy.clone(),
                    AccessVerdict::CustomDenied { details } => {
                        // The CUSTOM policy's trigger (`shadow denied, matched policy
                        // istio-ext-authz-...`) of the same request names the policy
                        // and its provider: the denial joins that row.
                        let rid = a.request_id.as_deref();
                        let trigger = self.pending.iter().rposition(|p| {
                            p.rec.action == Some(Action::Custom)
                                && p.rec.engine == EngineKind::Shadow
                                && !p.has_access
                                && within(p.rec.ts, ts, PAIR_WINDOW)
                                && match (rid, p.rec.request_id.as_deref()) {
                                    (Some(a), Some(b)) => a == b,
                                    _ => match (&downstream, &p.rec.downstream) {
                                        (Some(a), Some(b)) => a == b,
                                        _ => true,
                                    },
                                }
                        });
                        if let Some(p) = trigger.and_then(|i| self.pending.get_mut(i)) {
                            let rec = &mut p.rec;
                            p.has_access = true;
                            // No local reply is waited for: the row is complete.
                            p.has_reply = true;
                            rec.filters.push(FilterDecision {
                                filter: rec.filter,
                                engine: EngineKind::Shadow,
                                decision: RbacOutcome::Denied,
                                policy_id: rec.policy_id.clone(),
                                action: Some(Action::Custom),
                            });
                            rec.engine = EngineKind::Enforced;
                            rec.decision = RbacOutcome::Denied;
                            rec.filter = Some(FilterName::ExtAuthz);
                            rec.details = Some(details.clone());
                            rec.because = Some(format!(
                                "a CUSTOM policy matched and its external authorizer answered {details}"
                            ));
                            rec.request = Some(request);
                            rec.downstream = downstream.or(rec.downstream.take());
                            if rec.request_id.is_none() {
                                rec.request_id = a.request_id.clone();
                            }
                            rec.add_paired(PairedLine {
                                origin: Origin::AccessLog,
                                line: String::from_utf8_lossy(line).into_owned(),
                            });
                            self.tick(ts, out);
                            return;
                        }
                        let mut rec = self.base(Origin::AccessLog, line, time, kubelet_ts);
                        rec.action = Some(Action::Custom);
                        rec.filter = Some(FilterName::ExtAuthz);
                        rec.details = Some(details.clone());
                        rec.because = Some(format!(
                            "the external authorizer of a CUSTOM policy answered {details}"
                        ));
                        rec.request = Some(request);
                        rec.downstream = downstream;
                        rec.request_id = a.request_id.clone();
                        self.enqueue(
                            Pending {
                                rec,
                                thread: None,
                                pairable: false,
                                has_debug: false,
                                has_reply: false,
                                has_access: true,
                                open_request: None,
                                received: now,
                            },
                            out,
                        );
                        return;
                    }
                    AccessVerdict::NotRbac => {
                        self.tick(kubelet_ts, out);
                        return;
                    }
                };
                let rid = a.request_id.as_deref();
                let mut best: Option<(usize, (u8, Duration))> = None;
                for (i, p) in self.pending.iter().enumerate() {
                    if !(p.pairable
                        && !p.has_access
                        && p.rec.policy_id.as_deref() == Some(policy.raw.as_str())
                        && within(p.rec.ts, ts, PAIR_WINDOW))
                    {
                        continue;
                    }
                    // Request id first, then downstream address, then time.
                    let rank = match (rid, p.rec.request_id.as_deref()) {
                        (Some(a), Some(b)) if a == b => 0,
                        (Some(_), Some(_)) => continue,
                        // A different downstream is a weak sign only: the address
                        // may come from an unrelated `checking request` entry.
                        _ => match (&downstream, &p.rec.downstream) {
                            (Some(a), Some(b)) if a == b => 1,
                            (Some(_), Some(_)) => 3,
                            _ => 2,
                        },
                    };
                    let key = (rank, distance(p.rec.ts, ts));
                    if best.as_ref().is_none_or(|(_, k)| key < *k) {
                        best = Some((i, key));
                    }
                }
                if let Some(p) = best.and_then(|(i, _)| self.pending.get_mut(i)) {
                    p.has_access = true;
                    p.open_request = None;
                    p.rec.request = Some(request);
                    p.rec.downstream = downstream.or(p.rec.downstream.take());
                    if p.rec.request_id.is_none() {
                        p.rec.request_id = a.request_id.clone();
                    }
                    p.rec.add_paired(PairedLine {
                        origin: Origin::AccessLog,
                        line: String::from_utf8_lossy(line).into_owned(),
                    });
                    self.tick(ts, out);
                } else {
                    let mut rec = self.base(Origin::AccessLog, line, time, kubelet_ts);
                    rec.policy_id = Some(policy.raw.clone());
                    rec.policy = PolicyRef::from_id(&policy);
                    rec.request = Some(request);
                    rec.downstream = downstream;
                    rec.request_id = a.request_id.clone();
                    rec.filter = Some(match a.response_code {
                        Some(0) => FilterName::NetworkRbac,
                        _ => FilterName::HttpRbac,
                    });
                    explain_none(&mut rec);
                    self.enqueue(
                        Pending {
                            rec,
                            thread: None,
                            pairable: true,
                            has_debug: false,
                            has_reply: false,
                            has_access: true,
                            open_request: None,
                            received: now,
                        },
                        out,
                    );
                }
            }
            LogLine::Ztunnel(z) => {
                self.stats.ztunnel += 1;
                let rec = self.ztunnel(&z, line, kubelet_ts);
                self.enqueue(
                    Pending {
                        rec,
                        thread: None,
                        pairable: false,
                        has_debug: true,
                        has_reply: false,
                        has_access: false,
                        open_request: None,
                        received: now,
                    },
                    out,
                );
            }
            LogLine::Unparsed(u) => {
                // A line cut off at the reader's limit is counted but not an error.
                if !matches!(u.reason, UnparsedReason::TooLong { .. }) {
                    self.stats.unparsed += 1;
                    self.stats.unknown_line(line);
                }
                self.tick(kubelet_ts, out);
            }
            LogLine::Other => {
                if speaks_of_rbac(line) {
                    self.stats.rbac_other += 1;
                    self.stats.unknown_line(line);
                } else if !looks_like_log(line) {
                    self.stats.foreign_line(line);
                }
                self.tick(kubelet_ts, out);
            }
        }
    }

    /// A `checking request` entry ended: remember it for the thread's next decision,
    /// and close the folding of the thread's previous request. A `checking
    /// connection` entry (`req` = `None`) starts a new connection on the thread.
    fn checked_request(
        &mut self,
        thread: Option<String>,
        req: Option<CheckedRequest>,
        ts: Option<Timestamp>,
    ) {
        let rid = req.as_ref().and_then(|r| r.request_id.clone());
        for p in self.pending.iter_mut() {
            if p.thread == thread
                && p.open_request.is_some()
                && p.open_request.as_deref() != rid.as_deref()
            {
                p.open_request = None;
            }
        }
        match req {
            Some(req) => {
                self.checked.insert(thread, (req, ts));
            }
            None => {
                self.checked.remove(&thread);
            }
        }
    }

    fn decision(
        &mut self,
        d: &meshpolicy::envoy::RbacDecision,
        line: &[u8],
        kubelet_ts: Option<Timestamp>,
        now: Instant,
        out: &mut Vec<DecisionRecord>,
    ) {
        let (time, zone, zts) = header_time(&d.header);
        let thread = d.header.thread.clone();
        // The network filter runs before any request of its connection. Envoy
        // writes a filter's `checking request` right before its decision lines: an
        // entry read long before is another request's (or a cut log's).
        let checked = match d.filter {
            Some(meshpolicy::envoy::FilterKind::Network) => None,
            _ => self
                .checked
                .get(&thread)
                .or_else(|| self.checked.get(&None))
                .filter(|(_, at)| within(*at, zts.or(kubelet_ts), CHECK_WINDOW))
                .map(|(r, _)| r.clone()),
        };
        if d.engine == Engine::Enforced {
            // The filter's last line: its entry is used up.
            self.checked.remove(&thread);
        }
        let engine: EngineKind = d.engine.into();
        let verdict = match d.decision {
            Decision::Denied => RbacOutcome::Denied,
            Decision::Allowed | Decision::AllowedByDefault => RbacOutcome::Allowed,
        };
        let policy_id = d.policy.as_ref().map(|p| p.raw.clone());
        let named = d.policy.as_ref().is_some_and(|p| !p.none);
        let custom = d.policy.as_ref().is_some_and(|p| p.custom);
        let filter = d.filter.map(FilterName::from);
        let rid = checked.as_ref().and_then(|c| c.request_id.clone());
        // A dry-run or CUSTOM match is a row of its own; everything else of one
        // request folds into the request's row.
        let own_row = engine == EngineKind::Shadow && named;
        if !own_row
            && let Some(rid) = &rid
            && let Some(at) = self.pending.iter().rposition(|p| {
                p.open_request.as_deref() == Some(rid.as_str()) && p.thread == thread
            })
            && let Some(p) = self.pending.get_mut(at)
        {
            let this = FilterDecision {
                filter,
                engine,
                decision: verdict,
                policy_id: policy_id.clone(),
                action: None,
            };
            let cur_named = p.rec.policy.is_some();
            let takes_over = match (engine, verdict) {
                (EngineKind::Enforced, RbacOutcome::Denied) => true,
                (EngineKind::Enforced, RbacOutcome::Allowed) => {
                    p.rec.engine != EngineKind::Enforced || (!cur_named && named)
                }
                _ => false,
            };
            if takes_over {
                let old = FilterDecision {
                    filter: p.rec.filter,
                    engine: p.rec.engine,
                    decision: p.rec.decision,
                    policy_id: p.rec.policy_id.take(),
                    action: None,
                };
                p.rec.filters.push(old);
                p.rec.engine = engine;
                p.rec.decision = verdict;
                p.rec.policy_id = policy_id;
                p.rec.policy = d.policy.as_ref().and_then(PolicyRef::from_id);
                p.rec.filter = filter;
                p.rec.line = String::from_utf8_lossy(line).into_owned();
                explain_none(&mut p.rec);
                if verdict == RbacOutcome::Denied {
                    p.pairable = true;
                    p.open_request = None;
                    // Its access line may have come first (logs sorted by time).
                    if let Some(mut p) = self.pending.remove(at) {
                        let removed = self.take_earlier_access(&mut p);
                        let at = match removed {
                            Some(r) if r < at => at - 1,
                            _ => at,
                        };
                        self.pending.insert(at.min(self.pending.len()), p);
                    }
                }
            } else {
                let mut this = this;
                // Istio orders ALLOW before AUDIT, and a DENY filter never allows
                // with a named policy: a second named allow is an AUDIT match.
                if engine == EngineKind::Enforced
                    && verdict == RbacOutcome::Allowed
                    && named
                    && cur_named
                {
                    this.action = Some(Action::Audit);
                }
                p.rec.filters.push(this);
            }
            let ts = d.header.time_rfc3339.as_deref().and_then(parse_ts);
            self.tick(ts.or(kubelet_ts), out);
            return;
        }
        if engine == EngineKind::Shadow && verdict == RbacOutcome::Allowed && !named {
            // `shadow allowed, matched policy none`: no dry-run policy matched. It
            // starts a request's group (the enforced line follows) but is no row.
            self.stats.shadow_none += 1;
            if let Some(rid) = rid {
                let entry = self.unrowed.entry(thread).or_default();
                if entry.0 != rid {
                    *entry = (rid, Vec::new());
                }
                entry.1.push(FilterDecision {
                    filter,
                    engine,
                    decision: verdict,
                    policy_id,
                    action: None,
                });
            }
            let ts = zts.or(kubelet_ts);
            self.tick(ts, out);
            return;
        }
        let mut rec = self.base(Origin::RbacDebug, line, time, kubelet_ts);
        rec.time_zone = zone;
        rec.ts = zts.or(kubelet_ts);
        if let Some(rid) = &rid
            && let Some((seen, filters)) = self.unrowed.remove(&thread)
            && &seen == rid
        {
            rec.filters = filters;
        }
        rec.engine = engine;
        rec.decision = verdict;
        rec.policy_id = policy_id;
        rec.policy = d.policy.as_ref().and_then(PolicyRef::from_id);
        rec.filter = filter;
        if custom && engine == EngineKind::Shadow {
            // Istio puts a CUSTOM policy's rules in shadow rules: a `shadow denied`
            // match means the request is sent to the external authorizer.
            rec.action = Some(Action::Custom);
            rec.because =
                Some("a CUSTOM policy matched: the request goes to its external authorizer".into());
        }
        if let Some(c) = &checked {
            rec.request = Some(RequestInfo {
                method: c.method.clone(),
                path: c.path.clone(),
                authority: c.authority.clone(),
                response_code: None,
            })
            .filter(|r| r.method.is_some() || r.path.is_some() || r.authority.is_some());
            rec.downstream = c.source_ip.clone();
            rec.request_id = c.request_id.clone();
        }
        explain_none(&mut rec);
        let pairable = engine == EngineKind::Enforced && verdict == RbacOutcome::Denied;
        // A CUSTOM trigger waits (like a denial) for the access line that says
        // whether its external authorizer denied the request.
        let custom_trigger = custom && engine == EngineKind::Shadow;
        let mut p = Pending {
            rec,
            thread,
            pairable: pairable || custom_trigger,
            has_debug: true,
            has_reply: false,
            has_access: false,
            open_request: if own_row || pairable { None } else { rid },
            received: now,
        };
        if pairable {
            let _ = self.take_earlier_access(&mut p);
        }
        self.enqueue(p, out);
    }

    /// Logs sorted by time can put a request's access line before its debug line:
    /// a waiting access-only decision of the same request joins this one.
    fn take_earlier_access(&mut self, p: &mut Pending) -> Option<usize> {
        let mut best: Option<(usize, (u8, Duration))> = None;
        for (i, q) in self.pending.iter().enumerate() {
            if q.has_debug || !q.has_access || q.has_reply || q.rec.policy_id != p.rec.policy_id {
                continue;
            }
            if !within(q.rec.ts, p.rec.ts, PAIR_WINDOW) {
                continue;
            }
            let rank = match (&q.rec.request_id, &p.rec.request_id) {
                (Some(a), Some(b)) if a == b => 0,
                (Some(_), Some(_)) => continue,
                _ => match (&q.rec.downstream, &p.rec.downstream) {
                    (Some(a), Some(b)) if a == b => 1,
                    (Some(_), Some(_)) => 3,
                    _ => 2,
                },
            };
            let key = (rank, distance(q.rec.ts, p.rec.ts));
            if best.as_ref().is_none_or(|(_, k)| key < *k) {
                best = Some((i, key));
            }
        }
        let at = best.map(|(i, _)| i)?;
        if let Some(q) = self.pending.remove(at) {
            p.has_access = true;
            p.rec.request = q.rec.request;
            p.rec.downstream = q.rec.downstream.or(p.rec.downstream.take());
            p.rec.request_id = p.rec.request_id.take().or(q.rec.request_id);
            p.rec.add_paired(PairedLine {
                origin: Origin::AccessLog,
                line: q.rec.line,
            });
        }
        Some(at)
    }

    fn ztunnel(
        &self,
        z: &ZtunnelDecision,
        line: &[u8],
        kubelet_ts: Option<Timestamp>,
    ) -> DecisionRecord {
        let mut rec = self.base(Origin::Ztunnel, line, z.time_rfc3339.clone(), kubelet_ts);
        if z.time_rfc3339.is_none() && z.time.is_some() {
            rec.time = z.time.clone();
            rec.time_zone = Some("unknown");
            rec.ts = z
                .time
                .as_deref()
                .and_then(normalise_time)
                .as_deref()
                .and_then(parse_ts)
                .or(kubelet_ts);
        }
        rec.filter = Some(FilterName::Ztunnel);
        rec.proxy = Some("ztunnel");
        rec.downstream = z.src_addr.clone();
        rec.from = workload(&z.src_namespace, &z.src_workload).or_else(|| z.src_identity.clone());
        rec.to = workload(&z.dst_namespace, &z.dst_workload).or_else(|| z.dst_addr.clone());
        if z.kind == ZtunnelKind::DryRun {
            rec.engine = EngineKind::Shadow;
            rec.action = Some(Action::Deny);
        }
        match (&z.reason, &z.policy) {
            (ZtunnelReason::NoAllowMatched, _) => {
                rec.policy_id = Some("none".into());
                rec.action = Some(Action::Allow);
                rec.because = Some("no ALLOW rule matched".into());
            }
            (_, Some(p)) => {
                rec.policy_id = Some(p.clone());
                rec.policy = policy_from_slash(p);
                rec.action = Some(Action::Deny);
            }
            _ => {}
        }
        rec
    }

    fn tick(&mut self, t: Option<Timestamp>, out: &mut Vec<DecisionRecord>) {
        if let Some(t) = t {
            self.advance(t, out);
        }
    }

    fn enqueue(&mut self, p: Pending, out: &mut Vec<DecisionRecord>) {
        let t = p.rec.ts;
        // Move time first, so that a jump back releases what waited before
        // this decision and not this decision itself.
        if let Some(t) = t {
            self.advance(t, out);
        }
        self.pending.push_back(p);
        if let Some(t) = t {
            self.advance(t, out);
        }
        while self.pending.len() > MAX_PENDING {
            if let Some(p) = self.pending.pop_front() {
                out.push(p.rec);
            }
        }
    }

    /// Time moved to `t`: release decisions that can no longer be joined.
    ///
    /// When `t` is more than [`HOLD`] older than the newest time, time went
    /// back (several pods' logs concatenated into one file, a clock step):
    /// nothing waiting can pair with what follows, so the queue is released and
    /// the clock restarts from `t`. Otherwise decisions after the jump would be
    /// released at once, before their local reply and access log line arrive.
    fn advance(&mut self, t: Timestamp, out: &mut Vec<DecisionRecord>) {
        if let Some(l) = self.latest
            && l > t
            && l.duration_since(t).unsigned_abs() > HOLD
        {
            out.extend(self.pending.drain(..).map(|p| p.rec));
            self.latest = Some(t);
            return;
        }
        if self.latest.is_none_or(|l| t > l) {
            self.latest = Some(t);
        }
        let Some(latest) = self.latest else { return };
        while let Some(front) = self.pending.front() {
            let done = (front.has_reply && front.has_access && front.has_debug)
                || (!front.pairable && front.open_request.is_none())
                || front.rec.ts.is_some_and(|ts| {
                    latest.duration_since(ts).unsigned_abs() > HOLD && latest > ts
                });
            if !done {
                break;
            }
            if let Some(p) = self.pending.pop_front() {
                out.push(p.rec);
            }
        }
    }

    /// Releases decisions that have waited at least `idle` (wall clock) for a
    /// partner; for follow mode, where the next line may never come.
    pub fn flush_idle(&mut self, idle: Duration, out: &mut Vec<DecisionRecord>) {
        let now = Instant::now();
        while let Some(front) = self.pending.front() {
            if now.duration_since(front.received) < idle {
                break;
            }
            if let Some(p) = self.pending.pop_front() {
                out.push(p.rec);
            }
        }
    }

    /// End of stream: releases everything.
    pub fn finish(&mut self, out: &mut Vec<DecisionRecord>) {
        if let Some(j) = self.open_json.take() {
            // An object that never closed: examine what was read.
            let text = j.text;
            self.line(&text, None, out);
        }
        out.extend(self.pending.drain(..).map(|p| p.rec));
    }
}

/// A line from the RBAC logger, or naming a policy match or an RBAC denial, that
/// was not understood (Envoy's start-up list of extensions merely names the filter).
fn speaks_of_rbac(line: &[u8]) -> bool {
    [
        &b"envoy rbac"[..],
        b"[rbac]",
        b"\"rbac\"",
        b"matched policy",
        b"rbac_access_denied",
        b"enforced denied",
        b"shadow denied",
    ]
    .iter()
    .any(|n| memchr::memmem::find(line, n).is_some())
}

/// `matched policy none` on a denial: no ALLOW rule matched.
fn explain_none(rec: &mut DecisionRecord) {
    if rec.decision == RbacOutcome::Denied && rec.policy_id.as_deref() == Some("none") {
        rec.because = Some("no ALLOW rule matched".into());
        if rec.action.is_none() {
            rec.action = Some(Action::Allow);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RBAC: &str = "2025-07-06T19:33:00.654348Z\tdebug\tenvoy rbac external/envoy/source/extensions/filters/http/rbac/rbac_filter.cc:224\tenforced denied, matched policy ns[np-test-2]-policy[deny-all-ingress-using-authorizationpolicy]-rule[0]\tthread=26";
    const REPLY: &str = "2025-07-06T19:33:00.654360Z\tdebug\tenvoy http external/envoy/source/common/http/filter_manager.cc:1040\t[Tags: \"ConnectionId\":\"21\",\"StreamId\":\"6947102628293500817\"] Preparing local reply with details rbac_access_denied_matched_policy[ns[np-test-2]-policy[deny-all-ingress-using-authorizationpolicy]-rule[0]]\tthread=26";

    fn access(time: &str, policy: &str) -> String {
        format!(
            "[{time}] \"GET /x HTTP/1.1\" 403 - rbac_access_denied_matched_policy[{policy}] - \"-\" 0 19 0 - \"-\" \"curl/7.88.1\" \"id\" \"svc-np-test-nginx-2.np-test-2\" \"-\" inbound|80|| - 10.0.0.2:80 10.0.0.1:4321 - default"
        )
    }

    fn run(lines: &[&str]) -> (Vec<DecisionRecord>, Stats) {
        let mut p = Pairer::new(StreamId {
            namespace: Some("np-test-2".into()),
            pod: Some("np-test-nginx-2-abc".into()),
            file: None,
            ..StreamId::default()
        });
        let mut out = Vec::new();
        for l in lines {
            p.push(l.as_bytes(), None, &mut out);
        }
        p.finish(&mut out);
        (out, p.stats)
    }

    const ID: &str = "ns[np-test-2]-policy[deny-all-ingress-using-authorizationpolicy]-rule[0]";

    #[test]
    fn rbac_reply_and_access_log_make_one_decision() {
        let a = access("2025-07-06T19:33:00.654Z", ID);
        let (out, stats) = run(&[RBAC, REPLY, &a]);
        assert_eq!(out.len(), 1, "{out:#?}");
        let d = &out[0];
        assert_eq!(d.origin, Origin::RbacDebug);
        assert_eq!(
            d.origins(),
            vec![Origin::RbacDebug, Origin::LocalReply, Origin::AccessLog]
        );
        assert_eq!(d.connection_id, Some(21));
        assert_eq!(d.stream_id, Some(6_947_102_628_293_500_817));
        assert_eq!(d.downstream.as_deref(), Some("10.0.0.1:4321"));
        assert_eq!(d.request.as_ref().unwrap().path.as_deref(), Some("/x"));
        assert_eq!(
            d.policy.as_ref().unwrap().name.as_deref(),
            Some("deny-all-ingress-using-authorizationpolicy")
        );
        assert_eq!(d.policy.as_ref().unwrap().rule.as_deref(), Some("0"));
        assert_eq!(stats.rbac_debug, 1);
        assert_eq!(stats.local_reply, 1);
        assert_eq!(stats.access_log, 1);
    }

    #[test]
    fn evidence_is_named_the_same_whichever_line_arrives_first() {
        // Envoy writes the access log to stdout and its debug log to stderr; the
        // container log interleaves them, so the access line can come first.
        let a = access("2025-07-06T19:33:00.654Z", ID);
        let (out, _) = run(&[RBAC, &a, REPLY]);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(
            out[0].origins(),
            vec![Origin::RbacDebug, Origin::LocalReply, Origin::AccessLog]
        );
    }

    #[test]
    fn far_apart_or_other_policy_lines_stay_separate() {
        // Access log two seconds later: not the same request.
        let late = access("2025-07-06T19:33:02.700Z", ID);
        let (out, _) = run(&[RBAC, &late]);
        assert_eq!(out.len(), 2);
        // Same time, other policy id.
        let other = access("2025-07-06T19:33:00.654Z", "none");
        let (out, _) = run(&[RBAC, &other]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].origin, Origin::AccessLog);
        assert_eq!(out[1].policy_id.as_deref(), Some("none"));
        assert!(out[1].policy.is_none());
    }

    #[test]
    fn a_reply_on_another_thread_is_not_joined() {
        let reply = REPLY.replace("thread=26", "thread=27");
        let (out, _) = run(&[RBAC, &reply]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].origin, Origin::LocalReply);
        assert_eq!(out[1].connection_id, Some(21));
    }

    #[test]
    fn two_requests_pair_in_order() {
        let rbac2 = RBAC.replace("00.654348", "00.900000");
        let reply2 = REPLY
            .replace("00.654360", "00.900010")
            .replace("\"21\"", "\"22\"");
        let a1 = access("2025-07-06T19:33:00.654Z", ID);
        let a2 = access("2025-07-06T19:33:00.900Z", ID).replace("4321", "5555");
        let (out, _) = run(&[RBAC, REPLY, &rbac2, &reply2, &a1, &a2]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].connection_id, Some(21));
        assert_eq!(out[0].downstream.as_deref(), Some("10.0.0.1:4321"));
        assert_eq!(out[1].connection_id, Some(22));
        assert_eq!(out[1].downstream.as_deref(), Some("10.0.0.1:5555"));
    }

    #[test]
    fn shadow_and_allowed_lines_are_never_paired() {
        let shadow = RBAC.replace("enforced denied", "shadow denied");
        let (out, _) = run(&[&shadow, REPLY]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].engine, EngineKind::Shadow);
        let allowed = RBAC.replace("enforced denied", "enforced allowed");
        let (out, _) = run(&[&allowed]);
        assert_eq!(out[0].decision, RbacOutcome::Allowed);
    }

    #[test]
    fn decisions_are_released_as_time_moves_on() {
        let mut p = Pairer::new(StreamId::default());
        let mut out = Vec::new();
        p.push(RBAC.as_bytes(), None, &mut out);
        assert!(out.is_empty());
        let later = "2025-07-06T19:33:09.000000Z\tinfo\tsomething else";
        p.push(later.as_bytes(), None, &mut out);
        // The unrelated line carries no parsed time: the kubelet's time moves the clock.
        p.push(
            later.as_bytes(),
            Some("2025-07-06T19:33:09Z".parse().unwrap()),
            &mut out,
        );
        assert_eq!(out.len(), 1);
    }

    /// One pod's triples (debug, local reply, access log) for requests at the
    /// given seconds past 19:33:00, with the pod's own connection ids.
    fn pod_log(minute: u32, seconds: &[u32], conn: u32) -> Vec<String> {
        let mut lines = Vec::new();
        for (i, s) in seconds.iter().enumerate() {
            let at = format!("19:{minute:02}:{s:02}");
            let conn = (conn + i as u32).to_string();
            lines.push(RBAC.replace("19:33:00", &at));
            lines.push(
                REPLY
                    .replace("19:33:00", &at)
                    .replace("\"21\"", &format!("\"{conn}\"")),
            );
            lines.push(access(&format!("2025-07-06T{at}.654Z"), ID));
        }
        lines
    }

    #[test]
    fn concatenated_pod_logs_with_time_going_back_give_one_decision_per_request() {
        // Pod A's log runs later than pod B's: time goes back at the join.
        let mut lines = pod_log(40, &[0, 5, 30], 100);
        lines.extend(pod_log(33, &[0, 3, 10], 200));
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (out, stats) = run(&refs);
        assert_eq!(stats.rbac_debug, 6);
        assert_eq!(out.len(), 6, "{out:#?}");
        for d in &out {
            assert_eq!(
                d.origins(),
                vec![Origin::RbacDebug, Origin::LocalReply, Origin::AccessLog],
                "{d:#?}"
            );
        }
        let conns: Vec<_> = out.iter().map(|d| d.connection_id).collect();
        assert_eq!(
            conns,
            [100, 101, 102, 200, 201, 202].map(Some).to_vec(),
            "each request keeps its own local reply"
        );
    }

    #[test]
    fn concatenated_kubelet_stamped_logs_also_pair() {
        // `kubectl logs --timestamps` of two pods, one after the other.
        let mut p = Pairer::new(StreamId::default());
        let mut out = Vec::new();
        let a = pod_log(40, &[0, 9], 100);
        let b = pod_log(33, &[0, 9], 200);
        for (minute, log) in [(40, &a), (33, &b)] {
            for (i, l) in log.iter().enumerate() {
                let sec = if i < 3 { 0 } else { 9 };
                let ts: Timestamp = format!("2025-07-06T19:{minute}:{sec:02}.7Z")
                    .parse()
                    .unwrap();
                p.push(l.as_bytes(), Some(ts), &mut out);
            }
        }
        p.finish(&mut out);
        assert_eq!(out.len(), 4, "{out:#?}");
        assert!(out.iter().all(|d| d.paired.len() == 2), "{out:#?}");
    }

    #[test]
    fn foreign_lines_are_counted() {
        let (out, stats) = run(&["hello world", "root:x:0:0:root:/root:/bin/bash", RBAC]);
        assert_eq!(out.len(), 1);
        assert_eq!(stats.foreign, 2);
        assert_eq!(stats.lines, 3);
    }
}
