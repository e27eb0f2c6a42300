//! One pod's istio-proxy log as the API serves it (`timestamps=true`), line by
//! line: the kubelet's time is split off ([`KubeletClock`]), lines a reconnect
//! replays are dropped ([`Resume`]) and the rest are paired into decisions
//! ([`Pairer`]).
//!
//! This is the per-line hot path of `kubectl rbaclog` against a cluster (every
//! line of every pod goes through [`PodStream::line`]), kept apart from the I/O
//! in `cluster.rs` so that it can be measured on its own
//! (`cargo bench -p kubectl-rbaclog --bench stream`).

use jiff::Timestamp;

use crate::lines::{KubeletClock, Resume};
use crate::pairing::{Pairer, Stats, StreamId};
use crate::record::DecisionRecord;

/// The state of one pod's log across reconnections.
#[derive(Debug)]
pub struct PodStream {
    clock: KubeletClock,
    resume: Resume,
    pairer: Pairer,
}

impl PodStream {
    pub fn new(id: StreamId) -> Self {
        PodStream {
            clock: KubeletClock::default(),
            resume: Resume::default(),
            pairer: Pairer::new(id),
        }
    }

    /// Feeds one complete line (without its newline); decisions that are
    /// complete go to `out`. Returns whether the line carried a kubelet time and
    /// was new (not replayed by a reconnection): the stream made progress.
    pub fn line(&mut self, line: &[u8], out: &mut Vec<DecisionRecord>) -> bool {
        match self.clock.split(line) {
            Some((ts, rest)) => {
                if !self.resume.accept(ts, rest) {
                    return false;
                }
                self.pairer.push(rest, Some(ts), out);
                true
            }
            None => {
                self.pairer.push(line, None, out);
                false
            }
        }
    }

    /// The `sinceTime` a reconnection asks for, once something was read.
    pub fn since_time(&self) -> Option<Timestamp> {
        self.resume.since_time()
    }

    /// Call when a new connection starts.
    pub fn reconnected(&mut self) {
        self.resume.reconnected();
    }

    /// See [`Pairer::flush_idle`].
    pub fn flush_idle(&mut self, idle: std::time::Duration, out: &mut Vec<DecisionRecord>) {
        self.pairer.flush_idle(idle, out);
    }

    /// End of the stream: releases every waiting decision; returns what was read.
    pub fn finish(mut self, out: &mut Vec<DecisionRecord>) -> Stats {
        self.pairer.finish(out);
        self.pairer.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RBAC: &str = "2025-07-06T19:33:00.654348Z\tdebug\tenvoy rbac external/envoy/source/extensions/filters/http/rbac/rbac_filter.cc:224\tenforced denied, matched policy ns[np-test-2]-policy[deny-all]-rule[0]\tthread=26";

    fn stream() -> PodStream {
        PodStream::new(StreamId {
            namespace: Some("ns".into()),
            pod: Some("pod".into()),
            file: None,
            ..StreamId::default()
        })
    }

    #[test]
    fn a_replayed_decision_is_not_counted_twice() {
        let mut s = stream();
        let mut out = Vec::new();
        let l1 = format!("2025-07-06T19:33:00.654350Z {RBAC}");
        let l2 = "2025-07-06T19:33:01.1Z 2025-07-06T19:33:01.1Z\tinfo\tads\tother";
        assert!(s.line(l1.as_bytes(), &mut out));
        assert!(s.line(l2.as_bytes(), &mut out));
        // Cut: the server replays from 19:33:01, then a new line.
        assert_eq!(s.since_time().unwrap().to_string(), "2025-07-06T19:33:01Z");
        s.reconnected();
        assert!(!s.line(l2.as_bytes(), &mut out));
        let l3 = "2025-07-06T19:33:05Z 2025-07-06T19:33:05Z\tinfo\tads\tlater";
        assert!(s.line(l3.as_bytes(), &mut out));
        let stats = s.finish(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(stats.lines, 3);
        assert_eq!(stats.rbac_debug, 1);
    }

    #[test]
    fn lines_without_a_kubelet_time_are_read_but_are_no_progress() {
        let mut s = stream();
        let mut out = Vec::new();
        assert!(!s.line(RBAC.as_bytes(), &mut out));
        let stats = s.finish(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(stats.lines, 1);
    }
}
