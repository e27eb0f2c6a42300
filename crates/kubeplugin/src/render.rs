//! One output path for table, wide, JSON and JSON Lines, from the same data.
//!
//! Plugins build results as plain data (serde structs) and hand them here;
//! this is the only place that writes them. Tables look like kubectl's (no
//! borders, three spaces between columns) and escape control characters from
//! untrusted text (log lines, HTTP bodies) so a hostile body cannot repaint the
//! terminal; JSON keeps such text as data. A closed pipe (`| head`) becomes
//! [`PluginError::BrokenPipe`], which exits quietly. Pictures (`-o dot`,
//! `mermaid`, `html`) are one more output kind here ([`Renderer::picture`]);
//! their shared pieces (escaping, the HTML page) are in [`crate::picture`].

use std::fmt::Write as _;
use std::io::Write;

use comfy_table::{Cell as TCell, Color, Table, presets};
use serde::Serialize;
use serde_json::Value;

use crate::error::PluginError;
use crate::flags::{Output, OutputArgs, OutputFormat, Picture};
pub use crate::text::escape_control;

/// How a cell is emphasised when color is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tone {
    #[default]
    Plain,
    Good,
    Bad,
    Warn,
    Dim,
}

/// One table cell: text (escaped when rendered) and a tone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cell {
    pub text: String,
    pub tone: Tone,
}

impl Cell {
    pub fn new(text: impl Into<String>) -> Self {
        Cell {
            text: text.into(),
            tone: Tone::Plain,
        }
    }

    pub fn tone(mut self, tone: Tone) -> Self {
        self.tone = tone;
        self
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::new(s)
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::new(s)
    }
}

/// A column: its header and whether it only shows with `-o wide`.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub header: &'static str,
    pub wide_only: bool,
}

impl Column {
    pub const fn new(header: &'static str) -> Self {
        Column {
            header,
            wide_only: false,
        }
    }

    pub const fn wide(header: &'static str) -> Self {
        Column {
            header,
            wide_only: true,
        }
    }
}

/// A record that can be shown as a table row.
pub trait Tabular {
    /// Every column, in order, wide-only ones included.
    fn columns() -> Vec<Column>;
    /// One cell per column of [`Tabular::columns`].
    fn cells(&self) -> Vec<Cell>;
}

/// Output settings decided once from the flags.
#[derive(Debug, Clone, Copy, Default)]
pub struct Renderer {
    /// The format the plugin renders; `Json` when `transform` is set.
    pub format: OutputFormat,
    pub no_headers: bool,
    pub color: bool,
    /// yaml, name, jsonpath or custom-columns: done here over the JSON output.
    pub transform: Option<&'static Output>,
}

impl Renderer {
    /// From `-o`, `--no-headers`, `--color` (and the terminal and NO_COLOR).
    pub fn from_args(args: &OutputArgs) -> Self {
        let (format, transform) = match &args.output {
            Output::Format(f) => (*f, None),
            // Decided once per process; leaked so the renderer stays Copy.
            other => (
                OutputFormat::Json,
                Some(&*Box::leak(Box::new(other.clone()))),
            ),
        };
        let color = args.color.enabled();
        // Colour is decided here (--color, the terminal, NO_COLOR: see
        // ColorChoice). When it is on, crossterm must not apply NO_COLOR a
        // second time: it would drop the colours but keep each reset, leaving
        // bare `ESC[m` in the output.
        if color {
            crossterm::style::force_color_output(true);
        }
        Renderer {
            format,
            no_headers: args.no_headers,
            color,
            transform,
        }
    }

    /// The picture `-o` asks for (`dot`, `mermaid`, `html`), if any. Plugins
    /// that draw check this first and write [`crate::picture`]'s output;
    /// for the others [`Renderer::write_value`] refuses it.
    pub fn picture(&self) -> Option<Picture> {
        match self.transform {
            Some(Output::Picture(p)) => Some(*p),
            _ => None,
        }
    }

    /// Writes `value` (what `-o json` prints: an object or an array of rows)
    /// as the transform asks, or as pretty JSON when there is none.
    pub fn write_value(&self, value: &Value, out: &mut dyn Write) -> Result<(), PluginError> {
        let usage = |m: String| PluginError::usage(m, None);
        let rows: Vec<&Value> = match value {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        let text = match self.transform {
            None => {
                let mut s = serde_json::to_string_pretty(value).map_err(json_err)?;
                s.push('\n');
                s
            }
            Some(Output::Yaml) => serde_yaml_ng::to_string(value).map_err(|e| PluginError::Io {
                context: "encoding YAML".into(),
                source: std::io::Error::other(e),
            })?,
            Some(Output::JsonPath(t)) => t.render(value).map_err(|e| usage(e.to_string()))?,
            Some(Output::Name) => {
                let mut s = String::new();
                for row in rows {
                    let name = row["pod"]["name"].as_str().ok_or_else(|| {
                        usage("-o name: these rows do not name a pod".to_string())
                    })?;
                    let _ = writeln!(s, "pod/{name}");
                }
                s
            }
            Some(Output::CustomColumns(cols)) => {
                let headers: Vec<String> = cols.iter().map(|(h, _)| h.clone()).collect();
                let mut table = Vec::with_capacity(rows.len());
                for row in rows {
                    let mut cells = Vec::with_capacity(cols.len());
                    for (_, t) in cols {
                        let vals = t.values(row).map_err(|e| usage(e.to_string()))?;
                        // kubectl: several values joined by ",", none as <none>.
                        let text = if vals.is_empty() {
                            "<none>".to_string()
                        } else {
                            vals.into_iter()
                                .map(crate::template::value_text)
                                .collect::<Vec<_>>()
                                .join(",")
                        };
                        cells.push(Cell::new(text));
                    }
                    table.push(cells);
                }
                self.grid(&headers, &table)
            }
            Some(Output::Picture(p)) => {
                return Err(PluginError::usage(
                    format!("-o {} is not drawn for this output", p.name()),
                    Some(
                        "use -o json, or -o jsonpath=TEMPLATE / custom-columns=... over it".into(),
                    ),
                ));
            }
            Some(Output::Format(_)) => unreachable!("formats are not transforms"),
        };
        write_str(out, &text)?;
        out.flush()
            .map_err(|e| PluginError::io("writing output", e))
    }

    /// A table of arbitrary headers and rows (used for matrices and sections).
    pub fn grid(&self, headers: &[String], rows: &[Vec<Cell>]) -> String {
        let mut table = Table::new();
        table.load_preset(presets::NOTHING);
        if self.color {
            table.enforce_styling();
        } else {
            table.force_no_tty();
        }
        if !self.no_headers {
            table.set_header(headers.iter().map(TCell::new).collect::<Vec<_>>());
        }
        for row in rows {
            table.add_row(row.iter().map(|c| self.cell(c)).collect::<Vec<_>>());
        }
        let n = headers
            .len()
            .max(rows.iter().map(Vec::len).max().unwrap_or(0));
        for (i, col) in table.column_iter_mut().enumerate() {
            col.set_padding((0, if i + 1 == n { 0 } else { 3 }));
        }
        if headers.is_empty() && rows.is_empty() {
            return String::new();
        }
        let mut s = table.trim_fmt();
        s.push('\n');
        s
    }

    fn cell(&self, c: &Cell) -> TCell {
        let cell = TCell::new(escape_control(&c.text));
        if !self.color {
            return cell;
        }
        match c.tone {
            Tone::Plain => cell,
            Tone::Good => cell.fg(Color::Green),
            Tone::Bad => cell.fg(Color::Red),
            Tone::Warn => cell.fg(Color::Yellow),
            Tone::Dim => cell.fg(Color::DarkGrey),
        }
    }

    /// The table (or wide table) for `items`.
    pub fn table<T: Tabular>(&self, items: &[T]) -> String {
        let wide = self.format == OutputFormat::Wide;
        let cols = T::columns();
        let keep: Vec<bool> = cols.iter().map(|c| wide || !c.wide_only).collect();
        let headers: Vec<String> = cols
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(c, _)| c.header.to_string())
            .collect();
        let rows: Vec<Vec<Cell>> = items
            .iter()
            .map(|it| {
                it.cells()
                    .into_iter()
                    .zip(&keep)
                    .filter(|(_, k)| **k)
                    .map(|(c, _)| c)
                    .collect()
            })
            .collect();
        self.grid(&headers, &rows)
    }

    /// Writes `items` in the chosen format.
    pub fn write_all<T: Tabular + Serialize>(
        &self,
        items: &[T],
        out: &mut dyn Write,
    ) -> Result<(), PluginError> {
        match self.format {
            OutputFormat::Table | OutputFormat::Wide => {
                write_str(out, &self.table(items))?;
            }
            OutputFormat::Json => {
                let value = serde_json::to_value(items).map_err(json_err)?;
                self.write_value(&value, out)?;
            }
            OutputFormat::Jsonl => {
                for it in items {
                    write_json_line(it, out)?;
                }
            }
        }
        out.flush()
            .map_err(|e| PluginError::io("writing output", e))
    }
}

/// A usage error when `-o` is one of `refused` (a format this plugin, or this
/// mode of it, cannot give), saying why.
pub fn refuse_output(output: &Output, refused: &[&str], why: &str) -> Result<(), PluginError> {
    let name = output.name();
    if refused.contains(&name) {
        return Err(PluginError::usage(
            format!("-o {name} does not apply here: {why}"),
            Some("use -o json, or -o jsonpath=TEMPLATE / custom-columns=... over it".to_string()),
        ));
    }
    Ok(())
}

/// A JSON encoding failure as the I/O error of writing the output.
pub fn json_err(e: serde_json::Error) -> PluginError {
    PluginError::Io {
        context: "encoding JSON".into(),
        source: std::io::Error::other(e),
    }
}

/// Writes text, mapping a closed pipe to [`PluginError::BrokenPipe`].
pub fn write_str(out: &mut dyn Write, s: &str) -> Result<(), PluginError> {
    out.write_all(s.as_bytes())
        .map_err(|e| PluginError::io("writing output", e))
}

/// Writes one JSON object and a newline, flushed (for streaming `-o jsonl`).
pub fn write_json_line<T: Serialize>(item: &T, out: &mut dyn Write) -> Result<(), PluginError> {
    let mut s = serde_json::to_string(item).map_err(json_err)?;
    s.push('\n');
    write_str(out, &s)?;
    out.flush()
        .map_err(|e| PluginError::io("writing output", e))
}

/// Prints the one-line error on stderr (the only place errors are printed).
pub fn print_error(err: &PluginError) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{}", err.one_line());
}

/// A progress line on stderr, redrawn in place; only when stderr is a terminal.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    total: usize,
    done: usize,
}

impl Progress {
    pub fn new(total: usize) -> Self {
        use std::io::IsTerminal;
        Progress {
            enabled: std::io::stderr().is_terminal() && total > 1,
            total,
            done: 0,
        }
    }

    pub fn tick(&mut self, label: &str) {
        self.done += 1;
        if self.enabled {
            let mut e = std::io::stderr().lock();
            let _ = write!(
                e,
                "\r\x1b[2K[{}/{}] {}",
                self.done,
                self.total,
                escape_control(label)
            );
            let _ = e.flush();
        }
    }

    pub fn finish(&mut self) {
        if self.enabled {
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[2K");
            let _ = e.flush();
            self.enabled = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Row {
        name: String,
        value: u32,
        note: String,
    }

    impl Tabular for Row {
        fn columns() -> Vec<Column> {
            vec![
                Column::new("NAME"),
                Column::new("VALUE"),
                Column::wide("NOTE"),
            ]
        }
        fn cells(&self) -> Vec<Cell> {
            vec![
                Cell::new(&*self.name).tone(Tone::Good),
                Cell::new(self.value.to_string()),
                Cell::new(&*self.note),
            ]
        }
    }

    fn rows() -> Vec<Row> {
        vec![
            Row {
                name: "alpha".into(),
                value: 1,
                note: "evil\x1b[31mred\nnext".into(),
            },
            Row {
                name: "b".into(),
                value: 22,
                note: "ok".into(),
            },
        ]
    }

    fn render(format: OutputFormat, no_headers: bool) -> String {
        let r = Renderer {
            format,
            no_headers,
            color: false,
            transform: None,
        };
        let mut out = Vec::new();
        r.write_all(&rows(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn table_is_kubectl_like() {
        let t = render(OutputFormat::Table, false);
        assert_eq!(t, "NAME    VALUE\nalpha   1\nb       22\n");
        let t = render(OutputFormat::Table, true);
        assert_eq!(t, "alpha   1\nb       22\n");
    }

    #[test]
    fn wide_escapes_control_characters() {
        let t = render(OutputFormat::Wide, false);
        assert!(t.contains("evil\\u{1b}[31mred\\nnext"), "{t}");
        assert!(!t.contains('\x1b'));
        assert_eq!(t.lines().count(), 3);
    }

    #[test]
    fn json_keeps_data_and_jsonl_is_one_per_line() {
        let j = render(OutputFormat::Json, false);
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v[0]["note"], "evil\x1b[31mred\nnext");
        assert_eq!(v[1]["value"], 22);
        let l = render(OutputFormat::Jsonl, false);
        assert_eq!(l.lines().count(), 2);
        for line in l.lines() {
            serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
    }

    #[test]
    fn color_only_when_enabled() {
        let mut r = Renderer {
            format: OutputFormat::Table,
            no_headers: false,
            color: true,
            transform: None,
        };
        assert!(r.table(&rows()).contains('\x1b'));
        r.color = false;
        assert!(!r.table(&rows()).contains('\x1b'));
    }

    #[test]
    fn broken_pipe_is_reported_as_such() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let r = Renderer {
            format: OutputFormat::Table,
            no_headers: false,
            color: false,
            transform: None,
        };
        let e = r.write_all(&rows(), &mut Closed).unwrap_err();
        assert!(matches!(e, PluginError::BrokenPipe));
    }
}
