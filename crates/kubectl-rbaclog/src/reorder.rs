//! Putting a batch run's items in time order with bounded memory.
//!
//! A batch output (`-o json`, `-o yaml`) is sorted by time, pod and file, so
//! the simple way keeps every decision to the end. Decisions from one file come
//! out of the pairer nearly in time order, so [`Reorder`] keeps the first
//! [`STREAM_AFTER`] items; if they are in order it releases them and then every
//! later item through a window of [`WINDOW`] items that absorbs the pairer's
//! slight reordering. An item that arrives after a later one was released is
//! "late": it is kept and released, sorted, at the end (the caller says so).
//! Input out of time order (several files or pods interleaved) is kept whole
//! and sorted at the end; callers keep only what they print (a rendered text,
//! not the decision).
//!
//! The order is the one the batch outputs always used: time, namespace, pod,
//! file, then arrival (a stable sort).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use jiff::Timestamp;

use crate::record::DecisionRecord;

/// Items kept before deciding to stream.
pub const STREAM_AFTER: usize = 2048;
/// Items held back while streaming so that slightly late items still come out in order.
pub const WINDOW: usize = 1024;

/// The order of a batch output: time, namespace, pod, file, arrival.
pub type Key = (
    Option<Timestamp>,
    Option<String>,
    Option<String>,
    Option<String>,
    u64,
);

/// The sort key of a decision that arrived `seq`-th.
pub fn key_of(d: &DecisionRecord, seq: u64) -> Key {
    (
        d.ts,
        d.namespace.clone(),
        d.pod.clone(),
        d.file.clone(),
        seq,
    )
}

#[derive(Debug)]
struct Item<T> {
    key: Key,
    value: T,
}

impl<T> PartialEq for Item<T> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl<T> Eq for Item<T> {}

impl<T> PartialOrd for Item<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Item<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

/// What [`Reorder::push`] released.
#[derive(Debug, PartialEq, Eq)]
pub enum Released<T> {
    /// Nothing yet.
    Held,
    /// Streaming starts: these items, in order, come first.
    Start(Vec<T>),
    /// The next item in order (streaming).
    Next(T),
}

/// The end of a run.
#[derive(Debug, PartialEq, Eq)]
pub struct Finished<T> {
    /// Whether [`Released::Start`] was ever returned.
    pub streamed: bool,
    /// The remaining items in order (all of them when nothing was streamed).
    pub rest: Vec<T>,
    /// Items that came after later ones had been released, sorted.
    pub late: Vec<T>,
}

/// Sorts items by [`Key`], streaming them when they come in order.
#[derive(Debug)]
pub struct Reorder<T> {
    /// Whether streaming is allowed at all (one source).
    stream: bool,
    kept: Vec<Item<T>>,
    in_order: bool,
    window: Option<BinaryHeap<Reverse<Item<T>>>>,
    last: Option<Key>,
    late: Vec<Item<T>>,
}

impl<T> Reorder<T> {
    /// `stream`: the items come from one source, nearly in time order.
    pub fn new(stream: bool) -> Self {
        Reorder {
            stream,
            kept: Vec::new(),
            in_order: true,
            window: None,
            last: None,
            late: Vec::new(),
        }
    }

    /// Adds an item; returns what can be released now.
    pub fn push(&mut self, key: Key, value: T) -> Released<T> {
        let item = Item { key, value };
        if let Some(window) = &mut self.window {
            window.push(Reverse(item));
            if window.len() > WINDOW
                && let Some(Reverse(next)) = window.pop()
            {
                return match self.release(next) {
                    Some(v) => Released::Next(v),
                    None => Released::Held,
                };
            }
            return Released::Held;
        }
        if let Some(last) = self.kept.last()
            && (&last.key.0, &last.key.1, &last.key.2, &last.key.3)
                > (&item.key.0, &item.key.1, &item.key.2, &item.key.3)
        {
            self.in_order = false;
        }
        self.kept.push(item);
        if self.stream && self.in_order && self.kept.len() >= STREAM_AFTER {
            let kept = std::mem::take(&mut self.kept);
            self.last = kept.last().map(|i| i.key.clone());
            self.window = Some(BinaryHeap::new());
            return Released::Start(kept.into_iter().map(|i| i.value).collect());
        }
        Released::Held
    }

    /// The item in order, or `None` when it is late (kept for the end).
    fn release(&mut self, item: Item<T>) -> Option<T> {
        if self.last.as_ref().is_some_and(|l| *l > item.key) {
            self.late.push(item);
            return None;
        }
        self.last = Some(item.key.clone());
        Some(item.value)
    }

    /// Everything not released yet.
    pub fn finish(mut self) -> Finished<T> {
        match self.window.take() {
            Some(mut window) => {
                let mut rest = Vec::with_capacity(window.len());
                while let Some(Reverse(item)) = window.pop() {
                    if let Some(v) = self.release(item) {
                        rest.push(v);
                    }
                }
                self.late.sort();
                Finished {
                    streamed: true,
                    rest,
                    late: self.late.into_iter().map(|i| i.value).collect(),
                }
            }
            None => {
                let mut kept = std::mem::take(&mut self.kept);
                kept.sort();
                Finished {
                    streamed: false,
                    rest: kept.into_iter().map(|i| i.value).collect(),
                    late: Vec::new(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(t: i64, seq: u64) -> Key {
        (
            Some(Timestamp::from_second(t).unwrap()),
            None,
            None,
            None,
            seq,
        )
    }

    fn run(stream: bool, times: &[i64]) -> (Vec<i64>, Finished<i64>) {
        let mut r = Reorder::new(stream);
        let mut out = Vec::new();
        for (i, t) in times.iter().enumerate() {
            match r.push(key(*t, i as u64), *t) {
                Released::Held => {}
                Released::Start(v) => out.extend(v),
                Released::Next(v) => out.push(v),
            }
        }
        (out, r.finish())
    }

    #[test]
    fn in_order_items_stream_and_stay_in_order() {
        let times: Vec<i64> = (0..5000).collect();
        let (out, fin) = run(true, &times);
        assert!(fin.streamed);
        assert_eq!(out.len(), 5000 - WINDOW);
        let all: Vec<i64> = out.into_iter().chain(fin.rest).collect();
        assert_eq!(all, times);
        assert!(fin.late.is_empty());
    }

    #[test]
    fn slight_reordering_is_absorbed_and_far_late_items_come_last() {
        let mut times: Vec<i64> = (0..5000).collect();
        times.swap(3000, 3010);
        times.push(5); // far too late
        let (out, fin) = run(true, &times);
        let all: Vec<i64> = out.into_iter().chain(fin.rest).collect();
        assert_eq!(all, (0..5000).collect::<Vec<_>>());
        assert_eq!(fin.late, vec![5]);
    }

    #[test]
    fn out_of_order_or_multi_source_input_is_sorted_stably() {
        let times: Vec<i64> = (0..3000).rev().collect();
        let (out, fin) = run(true, &times);
        assert!(out.is_empty() && !fin.streamed);
        assert_eq!(fin.rest, (0..3000).collect::<Vec<_>>());
        let (out, fin) = run(false, &(0..3000).collect::<Vec<_>>());
        assert!(out.is_empty() && !fin.streamed);
        assert_eq!(fin.rest.len(), 3000);
        // Equal times keep arrival order.
        let mut r = Reorder::new(false);
        r.push(key(1, 0), "a");
        r.push(key(0, 1), "b");
        r.push(key(1, 2), "c");
        assert_eq!(r.finish().rest, vec!["b", "a", "c"]);
    }
}
