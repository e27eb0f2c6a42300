//! Policy history for propagation delay.
//!
//! Istio's control plane pushes AuthorizationPolicy and PeerAuthentication
//! changes to each sidecar a little after they are written ("it can take a
//! few seconds"); until then the sidecar keeps deciding with what it had.
//! This module keeps, per object, the versions written recently with the
//! time each was written, so that "what did the API server hold at time T"
//! can be answered for any T inside the propagation window. A sidecar at
//! time `now` sees the state at `now - delay` (or at its own start, when it
//! connected to istiod later than that).
//!
//! Versions older than the window are pruned: per object only the newest
//! version at or before the oldest time anyone can still ask about is kept.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The policy kinds whose changes reach sidecars with a delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DelayedKind {
    AuthorizationPolicy,
    PeerAuthentication,
}

/// (kind, namespace, name).
pub type ObjectKey = (DelayedKind, String, String);

/// One version of an object: `None` = deleted. `at` None = present since
/// before the mesh started watching.
#[derive(Debug, Clone)]
struct Version {
    at: Option<Instant>,
    object: Option<Arc<Value>>,
}

/// Recent versions of every watched policy object.
#[derive(Debug, Default)]
pub struct Timeline {
    objects: BTreeMap<ObjectKey, VecDeque<Version>>,
}

impl Timeline {
    /// An object that existed before watching started (visible at any time).
    pub fn seed(&mut self, key: ObjectKey, object: Value) {
        self.objects.insert(
            key,
            VecDeque::from([Version {
                at: None,
                object: Some(Arc::new(object)),
            }]),
        );
    }

    /// Records a write (`Some`) or a deletion (`None`) at `at`, then prunes
    /// versions nobody can ask about any more (older than `at - window`).
    pub fn record(&mut self, key: ObjectKey, at: Instant, object: Option<Value>, window: Duration) {
        let versions = self.objects.entry(key.clone()).or_default();
        versions.push_back(Version {
            at: Some(at),
            object: object.map(Arc::new),
        });
        let horizon = at.checked_sub(window);
        if let Some(h) = horizon {
            // Keep the newest version at or before the horizon, drop older ones.
            while versions.len() > 1 && versions[1].at.is_none_or(|t| t <= h) {
                versions.pop_front();
            }
        }
        if versions.len() == 1
            && versions[0].object.is_none()
            && horizon.is_some_and(|h| versions[0].at.is_none_or(|t| t <= h))
        {
            self.objects.remove(&key);
        }
    }

    /// The objects of `kind` as they were at `at` (sorted by namespace, name);
    /// `None` asks for the state before any recorded change.
    pub fn view(&self, kind: DelayedKind, at: Option<Instant>) -> Vec<Arc<Value>> {
        self.objects
            .iter()
            .filter(|((k, _, _), _)| *k == kind)
            .filter_map(|(_, versions)| {
                versions
                    .iter()
                    .rev()
                    .find(|v| v.at.is_none_or(|t| at.is_some_and(|a| t <= a)))
                    .and_then(|v| v.object.clone())
            })
            .collect()
    }

    /// Number of versions held (tests, memory bound checks).
    pub fn versions(&self) -> usize {
        self.objects.values().map(VecDeque::len).sum()
    }

    /// Keys currently known (any version), for resynchronisation.
    pub fn keys(&self) -> Vec<ObjectKey> {
        self.objects.keys().cloned().collect()
    }

    /// The newest version of `key`, if present (not deleted).
    pub fn latest(&self, key: &ObjectKey) -> Option<Arc<Value>> {
        self.objects
            .get(key)
            .and_then(|v| v.back())
            .and_then(|v| v.object.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(name: &str) -> ObjectKey {
        (DelayedKind::AuthorizationPolicy, "ns".into(), name.into())
    }

    #[test]
    fn old_state_until_delay_then_new() {
        let t0 = Instant::now();
        let mut tl = Timeline::default();
        tl.seed(key("a"), json!({"v": 1}));
        let w = Duration::from_secs(2);
        tl.record(
            key("a"),
            t0 + Duration::from_secs(10),
            Some(json!({"v": 2})),
            w,
        );
        tl.record(
            key("b"),
            t0 + Duration::from_secs(10),
            Some(json!({"v": 9})),
            w,
        );
        let before = tl.view(
            DelayedKind::AuthorizationPolicy,
            Some(t0 + Duration::from_secs(9)),
        );
        assert_eq!(before.len(), 1);
        assert_eq!(before[0]["v"], 1);
        let after = tl.view(
            DelayedKind::AuthorizationPolicy,
            Some(t0 + Duration::from_secs(10)),
        );
        let vs: Vec<i64> = after.iter().map(|v| v["v"].as_i64().unwrap()).collect();
        assert_eq!(vs, vec![2, 9]);
        assert!(
            tl.view(
                DelayedKind::PeerAuthentication,
                Some(t0 + Duration::from_secs(10))
            )
            .is_empty()
        );
        // Before any recorded change only seeded objects exist.
        assert_eq!(tl.view(DelayedKind::AuthorizationPolicy, None).len(), 1);
    }

    #[test]
    fn deletion_and_pruning() {
        let t0 = Instant::now();
        let mut tl = Timeline::default();
        let w = Duration::from_secs(1);
        for i in 0..100u64 {
            tl.record(
                key("a"),
                t0 + Duration::from_secs(i * 10),
                Some(json!({"v": i})),
                w,
            );
        }
        // Only the newest version (and at most one before it) is kept.
        assert!(tl.versions() <= 2, "{}", tl.versions());
        tl.record(key("a"), t0 + Duration::from_secs(2000), None, w);
        assert_eq!(
            tl.view(
                DelayedKind::AuthorizationPolicy,
                Some(t0 + Duration::from_secs(1999))
            )[0]["v"],
            99
        );
        assert!(
            tl.view(
                DelayedKind::AuthorizationPolicy,
                Some(t0 + Duration::from_secs(2000))
            )
            .is_empty()
        );
        tl.record(key("b"), t0 + Duration::from_secs(5000), Some(json!({})), w);
        tl.record(key("a"), t0 + Duration::from_secs(5000), None, w);
        assert!(tl.latest(&key("a")).is_none());
    }
}
