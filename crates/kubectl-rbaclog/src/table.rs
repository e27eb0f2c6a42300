//! The batch table with bounded memory: rows streamed when they come in time order,
//! only the table's cells kept otherwise.
//!
//! A table is sorted by time and aligned, so the simple way keeps every decision
//! (with its raw and paired lines) to the end: 192 MB for a 1 GiB log. Decisions
//! from one file or one pod come out of the pairer nearly in time order, so the
//! writer keeps the first [`STREAM_AFTER`] rows; if they are in order, it fixes the
//! column widths from them, prints them and then prints every later row as it
//! comes (one file only), through a small reordering window ([`WINDOW`]) that absorbs the
//! pairer's slight reordering. Input out of time order (several files, pods
//! interleaved) keeps only each row's cells and sort key, and is sorted at the end.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;

use jiff::Timestamp;
use kubeplugin::render::{Cell, Renderer, Tabular, Tone, escape_control, write_str};
use kubeplugin::{OutputFormat, PluginError};

use crate::record::DecisionRecord;

/// Rows kept before deciding to stream.
pub const STREAM_AFTER: usize = 2048;
/// Rows held back while streaming so that slightly late rows still print in order.
pub const WINDOW: usize = 1024;

type Key = (
    Option<Timestamp>,
    Option<String>,
    Option<String>,
    Option<String>,
    u64,
);

/// A row as the table shows it, with its sort key.
#[derive(Debug)]
struct Row {
    key: Key,
    cells: Vec<Cell>,
}

impl PartialEq for Row {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Row {}

impl PartialOrd for Row {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Row {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

/// Collects and prints the rows of a batch table (`-o wide` included).
#[derive(Debug)]
pub struct TableSink {
    renderer: Renderer,
    keep: Vec<bool>,
    headers: Vec<String>,
    rows: Vec<Row>,
    in_order: bool,
    seq: u64,
    /// Set once streaming started: the widths and the reordering window.
    streaming: Option<(Vec<usize>, BinaryHeap<Reverse<Row>>)>,
    last_printed: Option<Key>,
    /// Whether rows may be streamed (one source: its decisions come in time order).
    stream: bool,
    /// Rows that came after later ones had been printed (input far out of order
    /// once streaming); they are printed, sorted, after the table.
    pub late: u64,
    late_rows: Vec<Row>,
}

impl TableSink {
    /// `stream`: the input is one log (one file), whose rows come in time order.
    pub fn new(renderer: Renderer, stream: bool) -> Self {
        let wide = renderer.format == OutputFormat::Wide;
        let cols = DecisionRecord::columns();
        let keep: Vec<bool> = cols.iter().map(|c| wide || !c.wide_only).collect();
        let headers = cols
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(c, _)| c.header.to_string())
            .collect();
        TableSink {
            renderer,
            keep,
            headers,
            rows: Vec::new(),
            in_order: true,
            seq: 0,
            streaming: None,
            last_printed: None,
            late: 0,
            late_rows: Vec::new(),
            stream,
        }
    }

    /// Adds one decision (only its cells are kept).
    pub fn add(&mut self, d: &DecisionRecord) -> Result<(), PluginError> {
        self.seq += 1;
        let cells: Vec<Cell> = d
            .cells()
            .into_iter()
            .zip(&self.keep)
            .filter(|(_, k)| **k)
            .map(|(c, _)| Cell {
                text: escape_control(&c.text),
                tone: c.tone,
            })
            .collect();
        let row = Row {
            key: (
                d.ts,
                d.namespace.clone(),
                d.pod.clone(),
                d.file.clone(),
                self.seq,
            ),
            cells,
        };
        if let Some((_, heap)) = &mut self.streaming {
            heap.push(Reverse(row));
            if heap.len() > WINDOW
                && let Some(Reverse(r)) = heap.pop()
            {
                self.print(vec![r])?;
            }
            return Ok(());
        }
        if let Some(last) = self.rows.last()
            && (last.key.0, &last.key.1, &last.key.2, &last.key.3)
                > (row.key.0, &row.key.1, &row.key.2, &row.key.3)
        {
            self.in_order = false;
        }
        self.rows.push(row);
        if self.stream && self.in_order && self.rows.len() >= STREAM_AFTER {
            let rows = std::mem::take(&mut self.rows);
            let widths = self.widths(&rows);
            self.streaming = Some((widths, BinaryHeap::new()));
            self.header()?;
            self.print(rows)?;
        }
        Ok(())
    }

    fn widths(&self, rows: &[Row]) -> Vec<usize> {
        let mut w: Vec<usize> = if self.renderer.no_headers {
            vec![0; self.headers.len()]
        } else {
            self.headers.iter().map(|h| h.chars().count()).collect()
        };
        for r in rows {
            for (i, c) in r.cells.iter().enumerate() {
                if let Some(slot) = w.get_mut(i) {
                    *slot = (*slot).max(c.text.chars().count());
                }
            }
        }
        w
    }

    fn header(&mut self) -> Result<(), PluginError> {
        if self.renderer.no_headers {
            return Ok(());
        }
        let cells: Vec<Cell> = self.headers.iter().map(Cell::new).collect();
        let line = self.line(&cells);
        write_str(&mut std::io::stdout().lock(), &line)
    }

    fn line(&mut self, cells: &[Cell]) -> String {
        let Some((widths, _)) = &mut self.streaming else {
            return String::new();
        };
        let n = cells.len();
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let len = c.text.chars().count();
            let w = widths.get(i).copied().unwrap_or(0).max(len);
            if let Some(slot) = widths.get_mut(i) {
                *slot = w;
            }
            s.push_str(&paint(&c.text, c.tone, self.renderer.color));
            if i + 1 < n {
                s.push_str(&" ".repeat(w - len + 3));
            }
        }
        s.push('\n');
        s
    }

    fn print(&mut self, rows: Vec<Row>) -> Result<(), PluginError> {
        let mut text = String::new();
        for r in rows {
            if self.last_printed.as_ref().is_some_and(|l| *l > r.key) {
                // Too late for its place: kept (cells only) and printed after the table.
                self.late += 1;
                self.late_rows.push(r);
                continue;
            }
            self.last_printed = Some(r.key.clone());
            text.push_str(&self.line(&r.cells));
        }
        write_str(&mut std::io::stdout().lock(), &text)
    }

    /// Prints what is left; returns how many rows were printed after a later one.
    pub fn finish(mut self) -> Result<u64, PluginError> {
        if let Some((_, heap)) = &mut self.streaming {
            let mut rest = Vec::with_capacity(heap.len());
            while let Some(Reverse(r)) = heap.pop() {
                rest.push(r);
            }
            self.print(rest)?;
            if !self.late_rows.is_empty() {
                let mut late = std::mem::take(&mut self.late_rows);
                late.sort();
                let text: String = late.iter().map(|r| self.line(&r.cells)).collect();
                write_str(&mut std::io::stdout().lock(), &text)?;
            }
        } else {
            if self.rows.is_empty() {
                return Ok(0);
            }
            let mut rows = std::mem::take(&mut self.rows);
            rows.sort();
            let widths = self.widths(&rows);
            self.streaming = Some((widths, BinaryHeap::new()));
            self.header()?;
            self.print(rows)?;
        }
        std::io::stdout()
            .lock()
            .flush()
            .map_err(|e| PluginError::io("writing output", e))?;
        Ok(self.late)
    }
}

fn paint(text: &str, tone: Tone, color: bool) -> String {
    let code = match (color, tone) {
        (false, _) | (_, Tone::Plain) => return text.to_string(),
        (_, Tone::Good) => "32",
        (_, Tone::Bad) => "31",
        (_, Tone::Warn) => "33",
        (_, Tone::Dim) => "90",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}
