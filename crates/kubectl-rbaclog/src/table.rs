//! The batch table with bounded memory: rows streamed when they come in time order,
//! only the table's cells kept otherwise.
//!
//! A table is sorted by time and aligned, so the simple way keeps every decision
//! (with its raw and paired lines) to the end: 192 MB for a 1 GiB log. Here only
//! each row's cells are kept, and [`Reorder`] decides when they can be printed:
//! with one file, once its first rows are in time order, the column widths are
//! fixed from them and every later row is printed as it comes (through a small
//! reordering window); rows too late for their place are printed after the
//! table. Input out of time order (several files, pods interleaved) is sorted at
//! the end.

use std::io::Write;

use kubeplugin::render::{Cell, Renderer, Tabular, Tone, escape_control, write_str};
use kubeplugin::{OutputFormat, PluginError};

use crate::record::DecisionRecord;
use crate::reorder::{Released, Reorder, key_of};

/// Collects and prints the rows of a batch table (`-o wide` included).
#[derive(Debug)]
pub struct TableSink {
    renderer: Renderer,
    keep: Vec<bool>,
    headers: Vec<String>,
    reorder: Reorder<Vec<Cell>>,
    seq: u64,
    /// Set once printing started: the column widths.
    widths: Option<Vec<usize>>,
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
            reorder: Reorder::new(stream),
            seq: 0,
            widths: None,
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
        match self.reorder.push(key_of(d, self.seq), cells) {
            Released::Held => Ok(()),
            Released::Start(rows) => self.start(rows),
            Released::Next(row) => self.print(vec![row]),
        }
    }

    /// Fixes the widths from the first rows and prints the header and them.
    fn start(&mut self, rows: Vec<Vec<Cell>>) -> Result<(), PluginError> {
        let mut w: Vec<usize> = if self.renderer.no_headers {
            vec![0; self.headers.len()]
        } else {
            self.headers.iter().map(|h| h.chars().count()).collect()
        };
        for r in &rows {
            for (i, c) in r.iter().enumerate() {
                if let Some(slot) = w.get_mut(i) {
                    *slot = (*slot).max(c.text.chars().count());
                }
            }
        }
        self.widths = Some(w);
        if !self.renderer.no_headers {
            let cells: Vec<Cell> = self.headers.iter().map(Cell::new).collect();
            let line = self.line(&cells);
            write_str(&mut std::io::stdout().lock(), &line)?;
        }
        self.print(rows)
    }

    fn line(&mut self, cells: &[Cell]) -> String {
        let Some(widths) = &mut self.widths else {
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

    fn print(&mut self, rows: Vec<Vec<Cell>>) -> Result<(), PluginError> {
        let mut text = String::new();
        for r in rows {
            text.push_str(&self.line(&r));
            if text.len() >= 64 * 1024 {
                write_str(&mut std::io::stdout().lock(), &text)?;
                text.clear();
            }
        }
        write_str(&mut std::io::stdout().lock(), &text)
    }

    /// Prints what is left; returns how many rows were printed after a later one.
    pub fn finish(mut self) -> Result<u64, PluginError> {
        let reorder = std::mem::replace(&mut self.reorder, Reorder::new(false));
        let done = reorder.finish();
        let late = done.late.len() as u64;
        if done.streamed {
            self.print(done.rest)?;
            self.print(done.late)?;
        } else if !done.rest.is_empty() {
            self.start(done.rest)?;
        }
        std::io::stdout()
            .lock()
            .flush()
            .map_err(|e| PluginError::io("writing output", e))?;
        Ok(late)
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
