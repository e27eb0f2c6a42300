//! Stream handles for simulated processes. A command reads its standard input
//! from an [`InStream`] and writes its standard output and error to
//! [`OutStream`]s; both are cheap, cloneable handles so that a shell can hand
//! the same stream to several commands (`cat; echo oops >&2` in one script).
//!
//! Deliberately not emulated: files. There is no virtual file system; the
//! only destination besides the exec's streams is `/dev/null` (a null
//! [`OutStream`]), which is all the walk-through (`curl -o /dev/null`) and
//! the tests (`>/dev/null`, `2>&1`, `>&2`) write to.

use std::io;
use std::sync::{Arc, Mutex as StdMutex};

use bytes::{Bytes, BytesMut};
use tokio::sync::{Mutex, mpsc};

/// Standard streams handed to [`super::run_command`].
pub struct ExecIo {
    pub stdin: InStream,
    pub stdout: OutStream,
    pub stderr: OutStream,
    /// The client asked for a terminal: programs behave as on a tty (curl
    /// hides its progress meter) and `\n` becomes `\r\n`.
    pub tty: bool,
}

struct InState {
    /// Chunks from the client; `None` once at end of file (or never any).
    rx: Option<mpsc::Receiver<Bytes>>,
    /// Fixed content not yet read.
    pending: BytesMut,
}

/// A readable standard input. Clones share the same underlying stream.
#[derive(Clone)]
pub struct InStream {
    state: Arc<Mutex<InState>>,
}

impl InStream {
    fn new(rx: Option<mpsc::Receiver<Bytes>>, pending: BytesMut) -> Self {
        InStream {
            state: Arc::new(Mutex::new(InState { rx, pending })),
        }
    }

    /// An input that is at end of file from the start.
    pub fn empty() -> Self {
        Self::new(None, BytesMut::new())
    }

    /// Reads chunks from a channel; the input ends when every sender is dropped.
    pub fn from_receiver(rx: mpsc::Receiver<Bytes>) -> Self {
        Self::new(Some(rx), BytesMut::new())
    }

    /// Input with fixed content.
    pub fn from_bytes(data: impl Into<Bytes>) -> Self {
        Self::new(None, BytesMut::from(&data.into()[..]))
    }

    /// Next chunk of input, `None` at end of file.
    pub async fn read_chunk(&self) -> Option<Bytes> {
        let mut st = self.state.lock().await;
        if !st.pending.is_empty() {
            return Some(st.pending.split().freeze());
        }
        let got = st.rx.as_mut()?.recv().await;
        if got.is_none() {
            st.rx = None;
        }
        got
    }
}

enum OutKind {
    Null,
    /// In-memory capture (tests).
    Buffer(StdMutex<Vec<u8>>),
    /// Tagged frames for a multiplexed connection (the exec WebSocket).
    Frames(mpsc::Sender<(u8, Bytes)>, u8, usize),
}

/// A writable standard output or error. Clones share the same destination.
#[derive(Clone)]
pub struct OutStream {
    kind: Arc<OutKind>,
    /// Terminal line discipline: translate `\n` to `\r\n`.
    crlf: bool,
}

impl OutStream {
    fn of(kind: OutKind) -> Self {
        OutStream {
            kind: Arc::new(kind),
            crlf: false,
        }
    }

    /// Discards everything (like `/dev/null`).
    pub fn null() -> Self {
        Self::of(OutKind::Null)
    }

    /// Collects everything in memory (see [`OutStream::captured`]).
    pub fn buffer() -> Self {
        Self::of(OutKind::Buffer(StdMutex::new(Vec::new())))
    }

    /// Sends `(tag, chunk)` pairs on a shared channel, each chunk at most
    /// `max` bytes (the exec WebSocket's frames).
    pub fn from_frames(tx: mpsc::Sender<(u8, Bytes)>, tag: u8, max: usize) -> Self {
        Self::of(OutKind::Frames(tx, tag, max.max(1)))
    }

    /// The same destination with terminal line discipline on or off.
    pub fn with_crlf(mut self, crlf: bool) -> Self {
        self.crlf = crlf;
        self
    }

    /// What a buffer output has collected so far (empty for other kinds).
    pub fn captured(&self) -> Vec<u8> {
        match &*self.kind {
            OutKind::Buffer(b) => b.lock().map(|b| b.clone()).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Writes all of `data`. Fails when the reader has gone away.
    pub async fn write(&self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let data: Bytes = if self.crlf && data.contains(&b'\n') {
            let mut v = Vec::with_capacity(data.len() + 16);
            let mut prev = 0u8;
            for &b in data {
                if b == b'\n' && prev != b'\r' {
                    v.push(b'\r');
                }
                v.push(b);
                prev = b;
            }
            Bytes::from(v)
        } else {
            Bytes::copy_from_slice(data)
        };
        match &*self.kind {
            OutKind::Null => Ok(()),
            OutKind::Buffer(b) => {
                if let Ok(mut b) = b.lock() {
                    b.extend_from_slice(&data);
                }
                Ok(())
            }
            OutKind::Frames(tx, tag, max) => {
                let mut rest = data;
                while !rest.is_empty() {
                    let part = rest.split_to(rest.len().min(*max));
                    tx.send((*tag, part)).await.map_err(|_| {
                        io::Error::new(io::ErrorKind::BrokenPipe, "connection went away")
                    })?;
                }
                Ok(())
            }
        }
    }

    /// Writes a string.
    pub async fn write_str(&self, s: &str) -> io::Result<()> {
        self.write(s.as_bytes()).await
    }
}
