//! Measures the RBAC log scanner against `grep -c rbac` on the same generated file.
//!
//! Writes a generated istio-proxy log (default 100 MB, about 1% RBAC lines) to a temp
//! file, then times, best of N runs each: `grep -c rbac FILE`, the streaming
//! `LogReader` over the file, and `scan_slice` over the file read into memory. Prints
//! MB/s for each and the ratio to grep. Usage:
//! `cargo run --release -p meshpolicy --example logparse_vs_grep -- [MB] [RUNS]`.

use std::fs::File;
use std::io::BufReader;
use std::process::Command;
use std::time::{Duration, Instant};

use meshpolicy::envoy::{LogReader, Scope, scan_slice};

#[path = "../benches/support/gen_log.rs"]
mod gen_log;

fn best<F: FnMut() -> usize>(runs: usize, mut f: F) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut result = 0;
    for _ in 0..runs {
        let start = Instant::now();
        result = f();
        best = best.min(start.elapsed());
    }
    (best, result)
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mb: usize = args.next().map_or(Ok(100), |a| a.parse())?;
    let runs: usize = args.next().map_or(Ok(5), |a| a.parse())?;
    let (log, rbac) = gen_log::generate(mb * 1000 * 1000, 42);
    let path = std::env::temp_dir().join(format!("meshpolicy-logparse-{}.log", std::process::id()));
    std::fs::write(&path, &log)?;
    let bytes = log.len();
    drop(log);
    println!(
        "file: {} ({bytes} bytes, {rbac} RBAC-related lines)",
        path.display()
    );

    let (grep_t, grep_n) = best(runs, || {
        let out = Command::new("grep")
            .arg("-c")
            .arg("rbac")
            .arg(&path)
            .output();
        out.ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    });
    let (reader_t, reader_n) = best(runs, || {
        File::open(&path)
            .map(|f| LogReader::new(BufReader::with_capacity(1 << 20, f), Scope::RbacOnly).count())
            .unwrap_or(0)
    });
    let (slice_t, slice_n) = best(runs, || {
        std::fs::read(&path)
            .map(|data| scan_slice(&data, Scope::RbacOnly).count())
            .unwrap_or(0)
    });
    std::fs::remove_file(&path)?;

    println!(
        "grep -c rbac        : {:>8.1} MB/s  ({grep_n} lines match)",
        mbps(bytes, grep_t)
    );
    println!(
        "LogReader (file)    : {:>8.1} MB/s  ({reader_n} lines reported)  parser time / grep time {:.2}",
        mbps(bytes, reader_t),
        reader_t.as_secs_f64() / grep_t.as_secs_f64()
    );
    println!(
        "read + scan_slice   : {:>8.1} MB/s  ({slice_n} lines reported)  parser time / grep time {:.2}",
        mbps(bytes, slice_t),
        slice_t.as_secs_f64() / grep_t.as_secs_f64()
    );
    if reader_n != rbac || slice_n != rbac {
        return Err(format!("expected {rbac} RBAC-related lines").into());
    }
    Ok(())
}
