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
//! Decisions wait in a small queue until no partner can arrive any more: a later
//! line is more than [`HOLD`] newer, the queue is full, the stream ends, or (when
//! following) [`Pairer::flush_idle`] is called. When a line is more than [`HOLD`]
//! older than the newest time (time went back: several pods' logs concatenated,
//! a clock step), the queue is released and the clock restarts from that line. Memory per stream is bounded by the
//! queue, never by the log's size.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use meshpolicy::envoy::header::normalise_time;
use meshpolicy::envoy::{
    AccessVerdict, Decision, LogLine, Scope, UnparsedReason, classify_line, may_be_rbac,
};

use crate::record::{
    DecisionRecord, EngineKind, Origin, PairedLine, PolicyRef, RequestInfo, Verdict,
};

/// Lines of one request are paired only within this time of each other.
pub const PAIR_WINDOW: Duration = Duration::from_secs(1);
/// A decision is released once a line this much newer has been read.
pub const HOLD: Duration = Duration::from_secs(2);
/// At most this many decisions wait for a partner per stream.
pub const MAX_PENDING: usize = 1024;

/// Where a stream's lines come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamId {
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub file: Option<String>,
}

/// What a stream contained, for the "nothing found" explanation and warnings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub lines: u64,
    /// RBAC filter debug lines (any decision).
    pub rbac_debug: u64,
    /// Access log lines of any kind (RBAC or not): access logging is on.
    pub access_log: u64,
    /// Local reply lines naming an RBAC denial.
    pub local_reply: u64,
    /// Lines that looked RBAC-related but could not be decoded.
    pub unparsed: u64,
    /// Lines that do not look like Envoy/Istio log lines at all.
    pub foreign: u64,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.lines += o.lines;
        self.rbac_debug += o.rbac_debug;
        self.access_log += o.access_log;
        self.local_reply += o.local_reply;
        self.unparsed += o.unparsed;
        self.foreign += o.foreign;
    }
}

#[derive(Debug)]
struct Pending {
    rec: DecisionRecord,
    thread: Option<String>,
    /// Enforced denial: local reply and access log may join.
    pairable: bool,
    has_reply: bool,
    has_access: bool,
    received: Instant,
}

/// Pairs the lines of one stream into decisions (see the module docs).
#[derive(Debug)]
pub struct Pairer {
    id: StreamId,
    pending: VecDeque<Pending>,
    latest: Option<Timestamp>,
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

/// Whether a line looks like an Envoy/Istio log line (any layout), cheaply.
fn looks_like_log(line: &[u8]) -> bool {
    match line.first() {
        Some(b'[') | Some(b'{') => true,
        Some(b'0'..=b'9') => {
            line.len() >= 5 && line[..4].iter().all(u8::is_ascii_digit) && line[4] == b'-'
        }
        // Istio prints multi-line CLI options indented by a tab.
        Some(b'\t') | Some(b' ') => true,
        None => true,
        _ => false,
    }
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

impl Pairer {
    pub fn new(id: StreamId) -> Self {
        Pairer {
            id,
            pending: VecDeque::new(),
            latest: None,
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
            decision: Verdict::Denied,
            policy_id: None,
            policy: None,
            request: None,
            downstream: None,
            connection_id: None,
            stream_id: None,
            line: String::from_utf8_lossy(line).into_owned(),
            paired: Vec::new(),
            file: self.id.file.clone(),
            ts,
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
        if !may_be_rbac(line) {
            if is_text_access_log(line)
                || (line.first() == Some(&b'{')
                    && memchr::memmem::find(line, b"\"response_code\"").is_some())
            {
                self.stats.access_log += 1;
            } else if !looks_like_log(line) {
                self.stats.foreign += 1;
            }
            if let Some(t) = kubelet_ts {
                self.advance(t, out);
            }
            return;
        }
        let now = Instant::now();
        match classify_line(line, Scope::RbacOnly) {
            LogLine::RbacDecision(d) => {
                self.stats.rbac_debug += 1;
                let time = d.header.time_rfc3339.clone();
                let mut rec = self.base(Origin::RbacDebug, line, time, kubelet_ts);
                rec.engine = d.engine.into();
                rec.decision = match d.decision {
                    Decision::Denied => Verdict::Denied,
                    Decision::Allowed | Decision::AllowedByDefault => Verdict::Allowed,
                };
                rec.policy_id = d.policy.as_ref().map(|p| p.raw.clone());
                rec.policy = d.policy.as_ref().and_then(PolicyRef::from_id);
                let pairable =
                    rec.engine == EngineKind::Enforced && rec.decision == Verdict::Denied;
                self.enqueue(
                    Pending {
                        rec,
                        thread: d.header.thread.clone(),
                        pairable,
                        has_reply: false,
                        has_access: false,
                        received: now,
                    },
                    out,
                );
            }
            LogLine::LocalReply(r) => {
                let Some(policy) = r.policy.clone() else {
                    // ext_authz and other local replies are not RBAC decisions.
                    self.tick(kubelet_ts, out);
                    return;
                };
                self.stats.local_reply += 1;
                let time = r.header.time_rfc3339.clone();
                let ts = time.as_deref().and_then(parse_ts).or(kubelet_ts);
                let thread = r.header.thread.clone();
                let joined = self.pending.iter_mut().rev().find(|p| {
                    p.pairable
                        && !p.has_reply
                        && p.rec.policy_id.as_deref() == Some(policy.raw.as_str())
                        && (p.thread.is_none() || thread.is_none() || p.thread == thread)
                        && within(p.rec.ts, ts, PAIR_WINDOW)
                });
                if let Some(p) = joined {
                    p.has_reply = true;
                    p.rec.connection_id = r.connection_id.or(p.rec.connection_id);
                    p.rec.stream_id = r.stream_id.or(p.rec.stream_id);
                    p.rec.paired.push(PairedLine {
                        origin: Origin::LocalReply,
                        line: String::from_utf8_lossy(line).into_owned(),
                    });
                    self.tick(ts, out);
                } else {
                    let mut rec = self.base(Origin::LocalReply, line, time, kubelet_ts);
                    rec.policy_id = Some(policy.raw.clone());
                    rec.policy = PolicyRef::from_id(&policy);
                    rec.connection_id = r.connection_id;
                    rec.stream_id = r.stream_id;
                    self.enqueue(
                        Pending {
                            rec,
                            thread,
                            pairable: true,
                            has_reply: true,
                            has_access: false,
                            received: now,
                        },
                        out,
                    );
                }
            }
            LogLine::AccessLog(a) => {
                self.stats.access_log += 1;
                let AccessVerdict::RbacDenied { policy, .. } = &a.verdict else {
                    self.tick(kubelet_ts, out);
                    return;
                };
                let time = a.start_time.as_deref().and_then(normalise_time);
                let ts = time.as_deref().and_then(parse_ts).or(kubelet_ts);
                let request = RequestInfo {
                    method: a.method.clone(),
                    path: a.path.clone(),
                    authority: a.authority.clone(),
                    response_code: a.response_code,
                };
                let downstream = a.downstream_remote_address.clone();
                let joined = self.pending.iter_mut().find(|p| {
                    p.pairable
                        && !p.has_access
                        && p.rec.policy_id.as_deref() == Some(policy.raw.as_str())
                        && within(p.rec.ts, ts, PAIR_WINDOW)
                });
                if let Some(p) = joined {
                    p.has_access = true;
                    p.rec.request = Some(request);
                    p.rec.downstream = downstream;
                    p.rec.paired.push(PairedLine {
                        origin: Origin::AccessLog,
                        line: String::from_utf8_lossy(line).into_owned(),
                    });
                    self.tick(ts, out);
                } else {
                    let mut rec = self.base(Origin::AccessLog, line, time, kubelet_ts);
                    rec.policy_id = Some(policy.raw.clone());
                    rec.policy = PolicyRef::from_id(policy);
                    rec.request = Some(request);
                    rec.downstream = downstream;
                    self.enqueue(
                        Pending {
                            rec,
                            thread: None,
                            pairable: true,
                            has_reply: false,
                            has_access: true,
                            received: now,
                        },
                        out,
                    );
                }
            }
            LogLine::Unparsed(u) => {
                // A line cut off at the reader's limit is counted but not an error.
                if !matches!(u.reason, UnparsedReason::TooLong { .. }) {
                    self.stats.unparsed += 1;
                }
                self.tick(kubelet_ts, out);
            }
            LogLine::Other => {
                if !looks_like_log(line) {
                    self.stats.foreign += 1;
                }
                self.tick(kubelet_ts, out);
            }
        }
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
            let done = (front.has_reply && front.has_access)
                || !front.pairable
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
        out.extend(self.pending.drain(..).map(|p| p.rec));
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
        assert_eq!(out[0].decision, Verdict::Allowed);
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
