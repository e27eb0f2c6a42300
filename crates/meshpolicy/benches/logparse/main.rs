//! Log parsing throughput over a generated 100 MB istio-proxy log (about 1% RBAC lines),
//! in one run: first criterion's in-memory figures (the slice scanner, the streaming
//! reader, and the full classification of every line for comparison), then the scanner
//! against `grep -c rbac` on the same log written to a file, best of 5 runs each, as MB/s
//! and as a ratio of times. `cargo bench -p meshpolicy --bench logparse`; see
//! BENCHMARKS.md ("Log parsing"). `LOGPARSE_MB` and `LOGPARSE_RUNS` change the file
//! comparison's size and repetitions. Exits non-zero when a scanner's count disagrees
//! with the generator's.

use std::fs::File;
use std::io::{BufReader, Cursor};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use meshpolicy::envoy::{LogReader, Scope, scan_slice};

mod gen_log;

const SIZE: usize = 100 * 1000 * 1000;

fn in_memory(c: &mut Criterion) {
    let (log, rbac) = gen_log::generate(SIZE, 42);
    let mut group = c.benchmark_group("logparse_100MB");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(log.len() as u64));
    group.bench_function("scan_slice_rbac_only", |b| {
        b.iter(|| {
            let n = scan_slice(std::hint::black_box(&log), Scope::RbacOnly).count();
            assert_eq!(n, rbac);
        });
    });
    group.bench_function("log_reader_rbac_only", |b| {
        b.iter(|| {
            let n = LogReader::new(Cursor::new(std::hint::black_box(&log[..])), Scope::RbacOnly)
                .count();
            assert_eq!(n, rbac);
        });
    });
    group.bench_function("scan_slice_all_lines", |b| {
        b.iter(|| scan_slice(std::hint::black_box(&log), Scope::All).count());
    });
    group.finish();
}

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

fn env_number(name: &str, default: usize) -> Result<usize, String> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a number")),
        Err(_) => Ok(default),
    }
}

/// The scanner against `grep -c rbac` on a file (page cache warm after the first run).
fn against_grep() -> Result<(), String> {
    let mb = env_number("LOGPARSE_MB", 100)?;
    let runs = env_number("LOGPARSE_RUNS", 5)?.max(1);
    let (log, rbac) = gen_log::generate(mb * 1000 * 1000, 42);
    let file = tempfile::NamedTempFile::new().map_err(|e| format!("temp file: {e}"))?;
    std::fs::write(file.path(), &log).map_err(|e| format!("writing the log: {e}"))?;
    let path = file.path();
    let bytes = log.len();
    drop(log);
    println!("file: {bytes} bytes, {rbac} RBAC-related lines, best of {runs} runs");

    let (grep_t, grep_n) = best(runs, || {
        Command::new("grep")
            .arg("-c")
            .arg("rbac")
            .arg(path)
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    });
    let (reader_t, reader_n) = best(runs, || {
        File::open(path)
            .map(|f| LogReader::new(BufReader::with_capacity(1 << 20, f), Scope::RbacOnly).count())
            .unwrap_or(0)
    });
    let (slice_t, slice_n) = best(runs, || {
        std::fs::read(path)
            .map(|data| scan_slice(&data, Scope::RbacOnly).count())
            .unwrap_or(0)
    });
    let ratio = |t: Duration| t.as_secs_f64() / grep_t.as_secs_f64();
    println!(
        "grep -c rbac        : {:>8.1} MB/s  ({grep_n} lines match)",
        mbps(bytes, grep_t)
    );
    println!(
        "LogReader (file)    : {:>8.1} MB/s  ({reader_n} lines reported)  parser time / grep time {:.2}",
        mbps(bytes, reader_t),
        ratio(reader_t)
    );
    println!(
        "read + scan_slice   : {:>8.1} MB/s  ({slice_n} lines reported)  parser time / grep time {:.2}",
        mbps(bytes, slice_t),
        ratio(slice_t)
    );
    if reader_n != rbac || slice_n != rbac {
        return Err(format!(
            "expected {rbac} RBAC-related lines, LogReader reported {reader_n}, scan_slice {slice_n}"
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut c = Criterion::default().configure_from_args();
    in_memory(&mut c);
    c.final_summary();
    match against_grep() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logparse: {e}");
            ExitCode::FAILURE
        }
    }
}
