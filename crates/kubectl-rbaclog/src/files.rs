//! `--file PATH` / `-`: decisions from saved logs, with no cluster.
//!
//! A saved log is whatever `kubectl logs -c istio-proxy` printed (with or without
//! `--timestamps`) or any Envoy log; each file is its own stream for pairing.
//! Files are read line by line through a fixed buffer, so a 1 GB log costs the
//! same memory as a small one.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::error::RbaclogError;
use crate::filter::Filters;
use crate::lines::{KubeletClock, ReadLine, read_line_sync};
use crate::pairing::{Pairer, Stats, StreamId};
use crate::record::DecisionRecord;

const BUF: usize = 256 * 1024;

/// Reads one file (`-` = stdin), handing matching decisions to `sink`.
pub fn read_file(
    path: &Path,
    filters: &Filters,
    sink: &mut dyn FnMut(DecisionRecord),
) -> Result<Stats, RbaclogError> {
    let name = path.display().to_string();
    let input: Box<dyn Read> = if name == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f = File::open(path).map_err(|source| RbaclogError::Open {
            path: name.clone(),
            source,
        })?;
        if f.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(RbaclogError::Open {
                path: name,
                source: std::io::Error::other("is a directory"),
            });
        }
        Box::new(f)
    };
    read_stream(BufReader::with_capacity(BUF, input), &name, filters, sink)
}

/// Reads any byte stream as one log named `name`.
pub fn read_stream<R: std::io::BufRead>(
    mut r: R,
    name: &str,
    filters: &Filters,
    sink: &mut dyn FnMut(DecisionRecord),
) -> Result<Stats, RbaclogError> {
    let mut pairer = Pairer::new(StreamId {
        namespace: None,
        pod: None,
        file: Some(name.to_string()),
    });
    let mut buf = Vec::with_capacity(4096);
    let mut out = Vec::new();
    let mut clock = KubeletClock::default();
    loop {
        let r = read_line_sync(&mut r, &mut buf).map_err(|source| RbaclogError::Read {
            path: name.to_string(),
            source,
        })?;
        if r == ReadLine::Eof {
            break;
        }
        match clock.split(&buf) {
            Some((ts, rest)) => pairer.push(rest, Some(ts), &mut out),
            None => pairer.push(&buf, None, &mut out),
        }
        buf.clear();
        for d in out.drain(..) {
            if filters.matches(&d) {
                sink(d);
            }
        }
        if r == ReadLine::Partial {
            break;
        }
    }
    pairer.finish(&mut out);
    for d in out.drain(..) {
        if filters.matches(&d) {
            sink(d);
        }
    }
    Ok(pairer.stats)
}
