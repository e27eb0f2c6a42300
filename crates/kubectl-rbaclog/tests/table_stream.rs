//! The batch table streams rows when the input is in time order and sorts them
//! otherwise; either way the printed table is sorted and aligned.

use std::process::Command;

fn line(i: usize) -> String {
    let name = "x".repeat(1 + i % 37);
    format!(
        "2025-07-06T19:{:02}:{:02}.{:06}Z\tdebug\tenvoy rbac external/envoy/source/extensions/filters/http/rbac/rbac_filter.cc:224\tenforced denied, matched policy ns[foo]-policy[deny-{name}]-rule[0]\tthread=26",
        i / 60_000 % 60,
        i / 1000 % 60,
        (i % 1000) * 1000
    )
}

fn run(dir: &std::path::Path, lines: &[String]) -> Vec<String> {
    let path = dir.join("log");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-rbaclog"))
        .arg("--file")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn check(table: &[String], n: usize) {
    assert_eq!(table.len(), n + 1, "header and one row per decision");
    assert!(table[0].starts_with("TIME "));
    let times: Vec<&str> = table[1..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "rows in time order");
    // Aligned: the POLICY column starts at the same offset on every line.
    let at = table[0].find("POLICY").unwrap();
    for l in &table[1..] {
        assert_eq!(&l[at..at + 4], "foo/", "{l}");
    }
}

#[test]
fn in_order_input_streams_and_out_of_order_input_is_sorted() {
    let dir = tempfile::tempdir().unwrap();
    let n = 5000; // more than reorder::STREAM_AFTER
    let lines: Vec<String> = (0..n).map(line).collect();
    let streamed = run(dir.path(), &lines);
    check(&streamed, n);
    // Interleave two halves: the input is no longer in time order.
    let mut mixed = Vec::new();
    for i in 0..n / 2 {
        mixed.push(lines[n / 2 + i].clone());
        mixed.push(lines[i].clone());
    }
    let sorted = run(dir.path(), &mixed);
    check(&sorted, n);
    assert_eq!(
        streamed
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .collect::<Vec<_>>(),
        sorted
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
}

#[test]
fn rows_too_late_for_a_streamed_table_follow_it_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    // 4000 rows from minute 10 on, then 50 from minute 0 (another pod's log appended).
    let mut lines: Vec<String> = (600_000..604_000).map(line).collect();
    lines.extend((0..50).map(line));
    let path = dir.path().join("log");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-rbaclog"))
        .arg("--file")
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 4050);
    assert!(
        rows[..4000]
            .iter()
            .all(|r| r.starts_with("2025-07-06T19:10:"))
    );
    assert!(
        rows[4000..]
            .iter()
            .all(|r| r.starts_with("2025-07-06T19:00:"))
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("the last 50 rows"), "{stderr}");
}
