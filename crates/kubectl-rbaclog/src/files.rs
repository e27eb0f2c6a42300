//! `--file PATH` / `-`: decisions from saved logs, with no cluster.
//!
//! A saved log is whatever `kubectl logs -c istio-proxy` printed (with or without
//! `--timestamps`) or any Envoy log; each file is its own stream for pairing.
//! Files are read line by line through a fixed buffer, so a 1 GB log costs the
//! same memory as a small one.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::error::RbaclogError;
use crate::filter::Filters;
use crate::lines::{KubeletClock, ReadLine, read_line_sync};
use crate::pairing::{Pairer, Stats, StreamId};
use crate::prefix;
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
///
/// Lines carrying a tool's prefix (`kubectl logs --prefix`, stern) are paired per
/// pod named by the prefix, and their decisions name that pod.
pub fn read_stream<R: std::io::BufRead>(
    mut r: R,
    name: &str,
    filters: &Filters,
    sink: &mut dyn FnMut(DecisionRecord),
) -> Result<Stats, RbaclogError> {
    let mut plain = Pairer::new(StreamId {
        file: Some(name.to_string()),
        ..StreamId::default()
    });
    // One pairer per prefixed pod: their lines interleave but never pair.
    let mut by_pod: HashMap<Vec<u8>, Pairer> = HashMap::new();
    let mut buf = Vec::with_capacity(4096);
    let mut uncoloured = Vec::new();
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
        let mut line = &buf[..];
        if memchr::memchr(0x1b, &line[..line.len().min(128)]).is_some() {
            prefix::strip_colours(line, &mut uncoloured);
            line = &uncoloured[..];
        }
        let p = prefix::split(line);
        let pairer = match p.pod {
            Some(pod) => by_pod.entry(pod.to_vec()).or_insert_with(|| {
                Pairer::new(StreamId {
                    pod: Some(String::from_utf8_lossy(pod).into_owned()),
                    file: Some(name.to_string()),
                    ..StreamId::default()
                })
            }),
            None => &mut plain,
        };
        match clock.split(p.rest) {
            Some((ts, rest)) if !own_time(rest) => pairer.push(rest, Some(ts), &mut out),
            _ => pairer.push(p.rest, None, &mut out),
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
    let mut stats = Stats::default();
    let mut pods: Vec<_> = by_pod.into_values().collect();
    pods.push(plain);
    for mut pairer in pods {
        pairer.finish(&mut out);
        stats.add(&pairer.stats);
    }
    for d in out.drain(..) {
        if filters.matches(&d) {
            sink(d);
        }
    }
    Ok(stats)
}

/// Whether what follows a leading RFC 3339 time is the rest of a log line in Istio's
/// layout with its TABs turned into spaces (`TIME  debug  envoy rbac ...`): the time
/// is then the line's own, not one `kubectl logs --timestamps` put in front.
fn own_time(rest: &[u8]) -> bool {
    const LEVELS: [&[u8]; 7] = [
        b"trace",
        b"debug",
        b"info",
        b"warn",
        b"warning",
        b"error",
        b"critical",
    ];
    if matches!(rest.first(), Some(b' ') | Some(b'\t')) {
        return true;
    }
    let end = rest
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(rest.len());
    end < rest.len() && LEVELS.contains(&&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::own_time;

    #[test]
    fn a_line_s_own_time_is_not_the_kubelet_s() {
        assert!(own_time(b"    debug    envoy rbac   enforced denied"));
        assert!(own_time(b"debug envoy rbac enforced denied"));
        assert!(!own_time(
            b"2021-04-23T20:43:18.552910Z\tdebug\tenvoy rbac\tx"
        ));
        assert!(!own_time(
            b"[2025-01-01T00:00:00.000Z] \"GET / HTTP/1.1\" 403"
        ));
        assert!(!own_time(b"debugging"));
    }
}
