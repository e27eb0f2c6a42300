//! `-o json` and `-o yaml` of a batch run with bounded memory: the array is
//! streamed when the input is in time order, and otherwise only each decision's
//! rendered text is kept until the end.
//!
//! Both outputs are one document (a JSON array, a YAML sequence) sorted by time,
//! which used to mean keeping every decision, turning them all into one
//! `serde_json::Value` and rendering that: 56 MB peak for a 100 MB log in a
//! debug build (146 MB with `--decision all`), growing with the matches. Here
//! each decision is kept as its compact JSON while [`Reorder`] decides when it
//! can be written, then rendered by kubeplugin's renderer as a one-element
//! array, so its text is exactly what the whole array holds for it. The output is byte-identical to
//! rendering the sorted array at once, except that decisions arriving after
//! later ones were written (far out of order once streaming) end the array,
//! sorted, with a note, as for tables.

use std::io::Write;

use kubeplugin::render::{Renderer, json_err, write_str};
use kubeplugin::{Output, OutputFormat, PluginError};

use crate::record::DecisionRecord;
use crate::reorder::{Released, Reorder, key_of};

/// Collects and writes the `-o json` / `-o yaml` document of a batch run to `W`
/// (stdout in the plugin).
#[derive(Debug)]
pub struct DocumentSink<W: Write = std::io::Stdout> {
    renderer: Renderer,
    yaml: bool,
    reorder: Reorder<String>,
    seq: u64,
    /// Items written so far (the array is open once one was).
    written: u64,
    out: W,
}

impl DocumentSink {
    /// A sink writing to stdout when the renderer prints one document this
    /// module can stream (`-o json`, `-o yaml`); `None` for other formats.
    pub fn for_renderer(renderer: &Renderer, stream: bool) -> Option<Self> {
        Self::with_output(renderer, stream, std::io::stdout())
    }
}

impl<W: Write> DocumentSink<W> {
    /// Like [`DocumentSink::for_renderer`], writing to `out`.
    pub fn with_output(renderer: &Renderer, stream: bool, out: W) -> Option<Self> {
        let yaml = match (renderer.format, renderer.transform) {
            (OutputFormat::Json, None) => false,
            (OutputFormat::Json, Some(Output::Yaml)) => true,
            _ => return None,
        };
        Some(DocumentSink {
            renderer: *renderer,
            yaml,
            reorder: Reorder::new(stream),
            seq: 0,
            written: 0,
            out,
        })
    }

    /// The text one decision has inside the document, from its compact JSON
    /// (what is kept until it can be written: smaller than the rendered text).
    fn render(&self, compact: &str) -> Result<String, PluginError> {
        let value: serde_json::Value = serde_json::from_str(compact).map_err(json_err)?;
        let mut out = Vec::new();
        self.renderer
            .write_value(&serde_json::Value::Array(vec![value]), &mut out)?;
        let text = String::from_utf8_lossy(&out);
        if self.yaml {
            return Ok(text.into_owned());
        }
        // Pretty JSON of a one-element array: "[\n" ELEMENT "\n]\n".
        Ok(text
            .strip_prefix("[\n")
            .and_then(|t| t.strip_suffix("\n]\n"))
            .unwrap_or(&text)
            .to_string())
    }

    /// Adds one decision.
    pub fn add(&mut self, d: &DecisionRecord) -> Result<(), PluginError> {
        self.seq += 1;
        // Through a Value, as the whole array was: its maps order the keys.
        let value = serde_json::to_value(d).map_err(json_err)?;
        let compact = serde_json::to_string(&value).map_err(json_err)?;
        match self.reorder.push(key_of(d, self.seq), compact) {
            Released::Held => Ok(()),
            Released::Start(items) => self.write(items),
            Released::Next(item) => self.write(vec![item]),
        }
    }

    /// Writes items in order, 64 KiB at a time (never the whole output in memory).
    fn write(&mut self, items: Vec<String>) -> Result<(), PluginError> {
        let mut text = String::new();
        for item in items {
            if !self.yaml {
                text.push_str(if self.written == 0 { "[\n" } else { ",\n" });
            }
            text.push_str(&self.render(&item)?);
            self.written += 1;
            if text.len() >= 64 * 1024 {
                write_str(&mut self.out, &text)?;
                text.clear();
            }
        }
        write_str(&mut self.out, &text)
    }

    /// Writes what is left and closes the document; returns how many
    /// decisions came after later ones had been written, and the output.
    pub fn finish(mut self) -> Result<(u64, W), PluginError> {
        let done = std::mem::replace(&mut self.reorder, Reorder::new(false)).finish();
        let late = done.late.len() as u64;
        self.write(done.rest)?;
        self.write(done.late)?;
        let end = if self.written == 0 {
            // What the renderer prints for an empty array.
            let mut out = Vec::new();
            self.renderer
                .write_value(&serde_json::Value::Array(Vec::new()), &mut out)?;
            String::from_utf8_lossy(&out).into_owned()
        } else if self.yaml {
            String::new()
        } else {
            "\n]\n".to_string()
        };
        write_str(&mut self.out, &end)?;
        self.out
            .flush()
            .map_err(|e| PluginError::io("writing output", e))?;
        Ok((late, self.out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::Filters;

    const LOG: &str = include_str!("../../../tests/fixtures/envoy-logs/istio-proxy-samples.log");

    fn decisions(text: &str) -> Vec<DecisionRecord> {
        let mut found = Vec::new();
        crate::files::read_stream(text.as_bytes(), "x.log", &Filters::default(), &mut |d| {
            found.push(d)
        })
        .unwrap();
        found
    }

    /// What the whole sorted array renders to (the output before streaming).
    fn at_once(renderer: &Renderer, found: &[DecisionRecord]) -> String {
        let mut sorted: Vec<&DecisionRecord> = found.iter().collect();
        sorted.sort_by(|a, b| {
            (a.ts, &a.namespace, &a.pod, &a.file).cmp(&(b.ts, &b.namespace, &b.pod, &b.file))
        });
        let mut out = Vec::new();
        renderer
            .write_value(&serde_json::to_value(&sorted).unwrap(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    fn renderers() -> Vec<Renderer> {
        vec![
            Renderer {
                format: OutputFormat::Json,
                ..Renderer::default()
            },
            Renderer {
                format: OutputFormat::Json,
                transform: Some(&Output::Yaml),
                ..Renderer::default()
            },
        ]
    }

    #[test]
    fn same_bytes_as_rendering_the_sorted_array() {
        let found = decisions(LOG);
        assert!(found.len() > 3);
        for r in renderers() {
            for stream in [false, true] {
                // Small inputs are never streamed (fewer than STREAM_AFTER).
                let mut sink = DocumentSink::with_output(&r, stream, Vec::new()).unwrap();
                for d in &found {
                    sink.add(d).unwrap();
                }
                let out = finish_into(sink);
                assert_eq!(out, at_once(&r, &found), "yaml: {}", r.transform.is_some());
                // Reversed input: sorted all the same.
                let mut sink = DocumentSink::with_output(&r, stream, Vec::new()).unwrap();
                for d in found.iter().rev() {
                    sink.add(d).unwrap();
                }
                assert_eq!(finish_into(sink), at_once(&r, &found));
            }
            let empty = DocumentSink::with_output(&r, true, Vec::new()).unwrap();
            assert_eq!(finish_into(empty), at_once(&r, &[]));
        }
    }

    #[test]
    fn a_streamed_array_has_the_same_bytes_too() {
        // More decisions than STREAM_AFTER, in time order but two swapped
        // (the window absorbs it).
        let mut lines: Vec<String> = (0..3000)
            .map(|i| {
                format!(
                    "2025-07-06T19:{:02}:{:02}.{:06}Z\tdebug\tenvoy rbac external/envoy/source/extensions/filters/http/rbac/rbac_filter.cc:224\tenforced denied, matched policy ns[foo]-policy[deny-{}]-rule[0]\tthread=26",
                    i / 60_000 % 60,
                    i / 1000 % 60,
                    (i % 1000) * 1000,
                    i % 7
                )
            })
            .collect();
        lines.swap(2500, 2510);
        let found = decisions(&(lines.join("\n") + "\n"));
        assert_eq!(found.len(), 3000);
        for r in renderers() {
            let mut sink = DocumentSink::with_output(&r, true, Vec::new()).unwrap();
            for d in &found {
                sink.add(d).unwrap();
            }
            assert!(!sink.out.is_empty(), "streaming started before the end");
            assert_eq!(finish_into(sink), at_once(&r, &found));
        }
    }

    fn finish_into(sink: DocumentSink<Vec<u8>>) -> String {
        String::from_utf8(sink.finish().unwrap().1).unwrap()
    }
}
