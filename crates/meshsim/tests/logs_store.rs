//! The container log store: tail, since, timestamps, limitBytes, follow
//! (appended lines, end on pod removal) and bounded memory.

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use meshsim::logs::{LogOptions, LogStore, rfc3339_nano};

async fn collect(store: &LogStore, opts: LogOptions) -> String {
    let chunks: Vec<bytes::Bytes> = store.stream("ns", "p", "c", opts).collect().await;
    chunks
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

fn seeded() -> (LogStore, Timestamp) {
    let store = LogStore::new();
    let now = Timestamp::now();
    for i in 0..10i64 {
        let t = now - SignedDuration::from_secs(100 - i * 10);
        store.append_at("ns", "p", "c", t, &format!("line {i}"));
    }
    (store, now)
}

#[tokio::test]
async fn whole_log_tail_and_since() {
    let (store, now) = seeded();
    let all = collect(&store, LogOptions::default()).await;
    let expected: String = (0..10).map(|i| format!("line {i}\n")).collect();
    assert_eq!(all, expected);

    let tail = collect(
        &store,
        LogOptions {
            tail_lines: Some(3),
            ..LogOptions::default()
        },
    )
    .await;
    assert_eq!(tail, "line 7\nline 8\nline 9\n");

    // Lines are 100, 90, ..., 10 seconds old: the last 35 s hold lines 7-9.
    let since = collect(
        &store,
        LogOptions {
            since_seconds: Some(35),
            ..LogOptions::default()
        },
    )
    .await;
    assert_eq!(since, "line 7\nline 8\nline 9\n");
    let since_time = collect(
        &store,
        LogOptions {
            since_time: Some(now - SignedDuration::from_secs(50)),
            tail_lines: Some(8),
            ..LogOptions::default()
        },
    )
    .await;
    assert_eq!(since_time, "line 5\nline 6\nline 7\nline 8\nline 9\n");
    // Other containers are separate; unknown ones are empty.
    store.append("ns", "p", "other", "x");
    assert_eq!(
        collect(&LogStore::new(), LogOptions::default()).await,
        String::new()
    );
}

#[tokio::test]
async fn timestamps_and_limit_bytes() {
    let store = LogStore::new();
    let t: Timestamp = "2026-11-26T07:32:15.123456789Z".parse().unwrap();
    store.append_at("ns", "p", "c", t, "first");
    store.append_at(
        "ns",
        "p",
        "c",
        t + SignedDuration::from_millis(877),
        "second\nthird",
    );
    let out = collect(
        &store,
        LogOptions {
            timestamps: true,
            ..LogOptions::default()
        },
    )
    .await;
    assert_eq!(
        out,
        "2026-11-26T07:32:15.123456789Z first\n2026-11-26T07:32:16.000456789Z second\n2026-11-26T07:32:16.000456789Z third\n"
    );
    assert_eq!(
        rfc3339_nano("2026-11-26T07:32:16.5Z".parse().unwrap()),
        "2026-11-26T07:32:16.5Z"
    );
    let limited = collect(
        &store,
        LogOptions {
            limit_bytes: Some(9),
            ..LogOptions::default()
        },
    )
    .await;
    assert_eq!(limited, "first\nsec");
}

#[tokio::test]
async fn follow_sees_appends_and_ends_with_the_pod() {
    let store = LogStore::new();
    store.append("ns", "p", "c", "before");
    let mut stream = Box::pin(store.stream(
        "ns",
        "p",
        "c",
        LogOptions {
            follow: true,
            ..LogOptions::default()
        },
    ));
    assert_eq!(stream.next().await.unwrap(), "before\n");
    // The stream is provably waiting (polled, pending) when the line is appended.
    let mut next = stream.next();
    assert!(
        futures::poll!(&mut next).is_pending(),
        "nothing to read yet"
    );
    store.append("ns", "p", "c", "after");
    assert_eq!(next.await.unwrap(), "after\n");
    store.append("ns", "p", "c", "last");
    store.remove_pod("ns", "p");
    assert_eq!(stream.next().await.unwrap(), "last\n");
    assert!(
        stream.next().await.is_none(),
        "follow ends when the pod goes"
    );
    assert!(store.lines("ns", "p", "c").is_empty());
}

#[tokio::test]
async fn follow_with_tail_zero_only_sees_new_lines_and_honours_limit() {
    let store = LogStore::new();
    store.append("ns", "p", "c", "old");
    let mut stream = Box::pin(store.stream(
        "ns",
        "p",
        "c",
        LogOptions {
            follow: true,
            tail_lines: Some(0),
            limit_bytes: Some(6),
            ..LogOptions::default()
        },
    ));
    store.append("ns", "p", "c", "new");
    store.append("ns", "p", "c", "newer");
    assert_eq!(stream.next().await.unwrap(), "new\nne");
    assert!(stream.next().await.is_none(), "limitBytes ends a follow");
}

#[tokio::test]
async fn memory_is_bounded_per_container() {
    let store = LogStore::with_limit(10_000);
    for i in 0..5_000 {
        store.append("ns", "p", "c", &format!("envoy line number {i:05}"));
    }
    let kept = store.lines("ns", "p", "c");
    assert!(store.retained_bytes("ns", "p", "c") <= 10_000);
    assert!(kept.len() < 5_000 && !kept.is_empty());
    // The newest lines are the ones kept, in order.
    assert_eq!(kept.last().unwrap(), "envoy line number 04999");
    let n = kept.len();
    assert_eq!(kept[0], format!("envoy line number {:05}", 5_000 - n));
}

#[tokio::test]
async fn seed_from_file_keeps_envoy_times() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.log");
    std::fs::write(
        &path,
        "2025-07-06T19:33:00.654348Z\tdebug\tenvoy rbac\tenforced denied\nplain line\n",
    )
    .unwrap();
    let store = LogStore::new();
    assert_eq!(store.seed_from_file("ns", "p", "c", &path).unwrap(), 2);
    let out = collect(
        &store,
        LogOptions {
            timestamps: true,
            ..LogOptions::default()
        },
    )
    .await;
    assert!(out.starts_with(
        "2025-07-06T19:33:00.654348Z 2025-07-06T19:33:00.654348Z\tdebug\tenvoy rbac\tenforced denied\n"
    ));
    assert!(out.ends_with(" plain line\n"));
    assert!(
        store
            .seed_from_file("ns", "p", "c", &dir.path().join("missing"))
            .is_err()
    );
}
