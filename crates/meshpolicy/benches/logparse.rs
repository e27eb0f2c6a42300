//! Log parsing throughput over a generated 100 MB istio-proxy log (about 1% RBAC lines),
//! in MB/s: the slice scanner (the whole log in memory), the streaming reader, and the
//! full classification of every line for comparison. `cargo bench -p meshpolicy --bench
//! logparse`; see BENCHMARKS.md ("Log parsing") and the `logparse_vs_grep` example.

use std::io::Cursor;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use meshpolicy::envoy::{LogReader, Scope, scan_slice};

#[path = "support/gen_log.rs"]
mod gen_log;

const SIZE: usize = 100 * 1000 * 1000;

fn logparse(c: &mut Criterion) {
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

criterion_group!(benches, logparse);
criterion_main!(benches);
