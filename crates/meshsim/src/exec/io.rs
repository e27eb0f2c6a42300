//! Stream handles for simulated processes. A command sees its standard input
//! as an [`Input`] and its standard output and error as [`Output`]s; both are
//! cheap, cloneable handles so that a shell can hand the same stream to several
//! commands (a script's `cat` reads the exec's stdin; both sides of a pipe
//! write to the same stderr). They can wrap tokio readers and writers (tests,
//! an istioctl stand-in) or channels (the WebSocket exec). [`VirtualFs`] is the
//! tiny per-exec file system that `cat`, `curl -o` and `wget -O` use.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex as StdMutex};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Mutex, mpsc};

/// Standard streams handed to [`super::run_command`].
pub struct ExecIo {
    pub stdin: Input,
    pub stdout: Output,
    pub stderr: Output,
    /// The client asked for a terminal: programs behave as on a tty (curl
    /// hides its progress meter, `sh` prints prompts) and `\n` becomes `\r\n`.
    pub tty: bool,
}

impl ExecIo {
    /// No input; both outputs discarded.
    pub fn null() -> Self {
        ExecIo {
            stdin: Input::empty(),
            stdout: Output::null(),
            stderr: Output::null(),
            tty: false,
        }
    }
}

enum InputKind {
    Empty,
    Reader(Box<dyn AsyncRead + Send + Unpin>),
    Channel(mpsc::Receiver<Bytes>),
}

struct InputState {
    kind: InputKind,
    /// Bytes read from the source but not yet consumed (line reads).
    pending: BytesMut,
    eof: bool,
}

/// A readable standard input. Clones share the same underlying stream.
#[derive(Clone)]
pub struct Input {
    state: Arc<Mutex<InputState>>,
}

impl Input {
    fn new(kind: InputKind) -> Self {
        Input {
            state: Arc::new(Mutex::new(InputState {
                kind,
                pending: BytesMut::new(),
                eof: false,
            })),
        }
    }

    /// An input that is at end of file from the start.
    pub fn empty() -> Self {
        Self::new(InputKind::Empty)
    }

    /// Reads from any tokio reader.
    pub fn from_reader(reader: impl AsyncRead + Send + Unpin + 'static) -> Self {
        Self::new(InputKind::Reader(Box::new(reader)))
    }

    /// Reads chunks from a channel; the input ends when every sender is dropped.
    pub fn from_receiver(rx: mpsc::Receiver<Bytes>) -> Self {
        Self::new(InputKind::Channel(rx))
    }

    /// Input with fixed content.
    pub fn from_bytes(data: impl Into<Bytes>) -> Self {
        let input = Self::new(InputKind::Empty);
        if let Ok(mut st) = input.state.try_lock() {
            st.pending.extend_from_slice(&data.into());
        }
        input
    }

    async fn fill(st: &mut InputState) -> io::Result<bool> {
        if st.eof {
            return Ok(false);
        }
        let got = match &mut st.kind {
            InputKind::Empty => None,
            InputKind::Reader(r) => {
                let mut buf = vec![0u8; 16 * 1024];
                let n = r.read(&mut buf).await?;
                if n == 0 {
                    None
                } else {
                    buf.truncate(n);
                    Some(Bytes::from(buf))
                }
            }
            InputKind::Channel(rx) => rx.recv().await,
        };
        match got {
            Some(b) => {
                st.pending.extend_from_slice(&b);
                Ok(true)
            }
            None => {
                st.eof = true;
                Ok(false)
            }
        }
    }

    /// Next chunk of input, `None` at end of file.
    pub async fn read_chunk(&self) -> io::Result<Option<Bytes>> {
        let mut st = self.state.lock().await;
        loop {
            if !st.pending.is_empty() {
                return Ok(Some(st.pending.split().freeze()));
            }
            if !Self::fill(&mut st).await? {
                return Ok(None);
            }
        }
    }

    /// Next line including its `\n` (the last line may lack it), `None` at end.
    pub async fn read_line(&self) -> io::Result<Option<Bytes>> {
        let mut st = self.state.lock().await;
        loop {
            if let Some(pos) = st.pending.iter().position(|b| *b == b'\n') {
                return Ok(Some(st.pending.split_to(pos + 1).freeze()));
            }
            if !Self::fill(&mut st).await? {
                if st.pending.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(st.pending.split().freeze()));
            }
        }
    }

    /// Everything until end of file.
    pub async fn read_to_end(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(chunk) = self.read_chunk().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

enum OutputKind {
    Null,
    Writer(Mutex<Box<dyn AsyncWrite + Send + Unpin>>),
    Channel(mpsc::Sender<Bytes>),
    /// In-memory capture (tests, command substitution).
    Buffer(StdMutex<Vec<u8>>),
    /// Appends to a file of the virtual file system (shell redirections).
    File(VirtualFs, String),
    /// Tagged frames for a multiplexed connection (the exec WebSocket).
    Frames(mpsc::Sender<(u8, Bytes)>, u8, usize),
}

/// A writable standard output or error. Clones share the same destination.
#[derive(Clone)]
pub struct Output {
    kind: Arc<OutputKind>,
    /// Terminal line discipline: translate `\n` to `\r\n`.
    crlf: bool,
}

impl Output {
    /// Discards everything (like `/dev/null`).
    pub fn null() -> Self {
        Output {
            kind: Arc::new(OutputKind::Null),
            crlf: false,
        }
    }

    /// Writes to any tokio writer.
    pub fn from_writer(writer: impl AsyncWrite + Send + Unpin + 'static) -> Self {
        Output {
            kind: Arc::new(OutputKind::Writer(Mutex::new(Box::new(writer)))),
            crlf: false,
        }
    }

    /// Sends each write as one chunk on a channel (backpressure when full).
    pub fn from_sender(tx: mpsc::Sender<Bytes>) -> Self {
        Output {
            kind: Arc::new(OutputKind::Channel(tx)),
            crlf: false,
        }
    }

    /// Sends `(tag, chunk)` pairs on a shared channel, each chunk at most
    /// `max_chunk` bytes, so that several outputs keep their relative order.
    pub fn from_frames(tx: mpsc::Sender<(u8, Bytes)>, tag: u8, max_chunk: usize) -> Self {
        Output {
            kind: Arc::new(OutputKind::Frames(tx, tag, max_chunk.max(1))),
            crlf: false,
        }
    }

    /// Collects output in memory; read it back with [`Output::captured`].
    pub fn buffer() -> Self {
        Output {
            kind: Arc::new(OutputKind::Buffer(StdMutex::new(Vec::new()))),
            crlf: false,
        }
    }

    /// The same destination with terminal `\n` -> `\r\n` translation.
    pub fn with_crlf(mut self, crlf: bool) -> Self {
        self.crlf = crlf;
        self
    }

    /// Whether this output discards everything.
    pub fn is_null(&self) -> bool {
        matches!(*self.kind, OutputKind::Null)
    }

    /// What a buffer output has collected so far (empty for other kinds).
    pub fn captured(&self) -> Vec<u8> {
        match &*self.kind {
            OutputKind::Buffer(b) => b.lock().map(|b| b.clone()).unwrap_or_default(),
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
            OutputKind::Null => Ok(()),
            OutputKind::Writer(w) => {
                let mut w = w.lock().await;
                w.write_all(&data).await?;
                w.flush().await
            }
            OutputKind::Channel(tx) => tx
                .send(data)
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "reader went away")),
            OutputKind::Buffer(b) => {
                if let Ok(mut b) = b.lock() {
                    b.extend_from_slice(&data);
                }
                Ok(())
            }
            OutputKind::File(fs, path) => {
                fs.append(path, &data);
                Ok(())
            }
            OutputKind::Frames(tx, tag, max) => {
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

    /// Signals end of output to the reader where the destination supports it.
    pub async fn shutdown(&self) {
        if let OutputKind::Writer(w) = &*self.kind {
            let _ = w.lock().await.shutdown().await;
        }
    }
}

/// A tiny in-memory file system shared by the commands of one exec.
#[derive(Clone, Default)]
pub struct VirtualFs {
    files: Arc<StdMutex<BTreeMap<String, Vec<u8>>>>,
}

/// Why a virtual file could not be read or written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FsError {
    #[error("No such file or directory")]
    NotFound,
    #[error("Is a directory")]
    IsDirectory,
}

impl VirtualFs {
    /// The files every container has: `/etc/hostname`, `/etc/hosts` and
    /// `/etc/resolv.conf` (cluster DNS as kubelet writes it), plus `extra`.
    pub fn for_container(
        hostname: &str,
        pod_ip: &str,
        namespace: &str,
        extra: Vec<(String, Vec<u8>)>,
    ) -> Self {
        let fs = VirtualFs::default();
        fs.write("/etc/hostname", format!("{hostname}\n").into_bytes());
        fs.write(
            "/etc/hosts",
            format!(
                "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n{pod_ip}\t{hostname}\n"
            )
            .into_bytes(),
        );
        fs.write(
            "/etc/resolv.conf",
            format!(
                "search {namespace}.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
            )
            .into_bytes(),
        );
        for (path, content) in extra {
            fs.write(&path, content);
        }
        fs
    }

    /// Content of `path`. `/dev/null` reads as empty.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        if path == "/dev/null" {
            return Ok(Vec::new());
        }
        let files = self.files.lock().map_err(|_| FsError::NotFound)?;
        if let Some(c) = files.get(path) {
            return Ok(c.clone());
        }
        let dir = format!("{}/", path.trim_end_matches('/'));
        if path == "/" || files.keys().any(|k| k.starts_with(&dir)) {
            return Err(FsError::IsDirectory);
        }
        Err(FsError::NotFound)
    }

    /// Replaces `path`; writes to `/dev/null` vanish.
    pub fn write(&self, path: &str, content: Vec<u8>) {
        if path == "/dev/null" {
            return;
        }
        if let Ok(mut files) = self.files.lock() {
            files.insert(path.to_string(), content);
        }
    }

    /// Appends to `path`, creating it.
    pub fn append(&self, path: &str, content: &[u8]) {
        if path == "/dev/null" {
            return;
        }
        if let Ok(mut files) = self.files.lock() {
            files
                .entry(path.to_string())
                .or_default()
                .extend_from_slice(content);
        }
    }
}

/// An [`Output`] that writes into a virtual file (shell redirections).
pub(crate) fn file_output(fs: &VirtualFs, path: &str, append: bool) -> Output {
    if path == "/dev/null" {
        return Output::null();
    }
    if !append {
        fs.write(path, Vec::new());
    }
    Output {
        kind: Arc::new(OutputKind::File(fs.clone(), path.to_string())),
        crlf: false,
    }
}
