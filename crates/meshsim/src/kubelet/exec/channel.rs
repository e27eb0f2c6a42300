//! The Kubernetes exec channel protocol over WebSocket (`v4.channel.k8s.io`
//! and `v5.channel.k8s.io`), as kubelet's streaming server speaks it and
//! client-go's WebSocket executor (kubectl >= 1.30) expects it.
//!
//! Every message is a binary frame whose first byte is the channel: 0 stdin,
//! 1 stdout, 2 stderr, 3 status (the error channel), 4 terminal resize. v5
//! adds 255, with which the client closes one of its streams (`[255, 0]`:
//! end of stdin). Like kubelet, the server first sends an empty frame on the
//! lowest stream it will write (stdout, else stderr, else status), then the
//! output, then one status message (`metav1.Status` JSON, exactly as
//! Go's encoder writes it), then a Close frame with code 1000.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::mpsc;

use super::io::{ExecIo, InStream, OutStream};
use super::programs::{ExecOutcome, run_command};
use super::{ExecOptions, ExecServices};
use crate::traffic::Container;

/// Channel numbers of the protocol.
pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const STATUS: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5 only: the client closes one of its streams (`[255, channel]`).
pub const CLOSE: u8 = 255;

/// Largest payload sent in one frame.
const MAX_FRAME: usize = 32 * 1024;

/// The negotiated WebSocket subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelProtocol {
    V4,
    V5,
}

impl ChannelProtocol {
    /// The `Sec-WebSocket-Protocol` value to echo.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelProtocol::V4 => "v4.channel.k8s.io",
            ChannelProtocol::V5 => "v5.channel.k8s.io",
        }
    }
}

/// Picks the protocol from the client's offers (the values of
/// `Sec-WebSocket-Protocol`, possibly comma-separated): v5 preferred, then v4.
/// `None` when neither is offered (the caller answers 400 / a non-101).
pub fn negotiate_protocol(offered: &[&str]) -> Option<ChannelProtocol> {
    let all: Vec<&str> = offered
        .iter()
        .flat_map(|o| o.split(','))
        .map(str::trim)
        .collect();
    if all.contains(&"v5.channel.k8s.io") {
        Some(ChannelProtocol::V5)
    } else if all.contains(&"v4.channel.k8s.io") {
        Some(ChannelProtocol::V4)
    } else {
        None
    }
}

#[derive(Serialize)]
struct Metadata {}

#[derive(Serialize)]
struct Cause {
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    message: String,
}

#[derive(Serialize)]
struct Details {
    causes: Vec<Cause>,
}

/// `metav1.Status` with Go's field order and omitempty behaviour.
#[derive(Serialize)]
struct Status {
    metadata: Metadata,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
}

/// Go's `json.Marshal` escapes `<`, `>`, `&`, U+2028 and U+2029.
fn go_json(status: &Status) -> String {
    let s = serde_json::to_string(status).unwrap_or_default();
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// Formats argv as Go's `%v` prints a `[]string`.
fn go_argv(argv: &[String]) -> String {
    format!("[{}]", argv.join(" "))
}

/// The status message kubelet writes on channel 3 for `outcome`.
pub fn status_json(argv: &[String], outcome: &ExecOutcome) -> String {
    let status = match outcome {
        ExecOutcome::Exited(0) => Status {
            metadata: Metadata {},
            status: "Success",
            message: None,
            reason: None,
            details: None,
            code: None,
        },
        ExecOutcome::Exited(code) => Status {
            metadata: Metadata {},
            status: "Failure",
            message: Some(format!(
                "command terminated with non-zero exit code: error executing command {}, exit code {code}",
                go_argv(argv)
            )),
            reason: Some("NonZeroExitCode"),
            details: Some(Details {
                causes: vec![Cause {
                    reason: Some("ExitCode"),
                    message: code.to_string(),
                }],
            }),
            code: None,
        },
        ExecOutcome::StartFailed { message } => {
            let err = format!("error executing command in container: {message}");
            Status {
                metadata: Metadata {},
                status: "Failure",
                message: Some(format!("Internal error occurred: {err}")),
                reason: Some("InternalError"),
                details: Some(Details {
                    causes: vec![Cause {
                        reason: None,
                        message: err,
                    }],
                }),
                code: Some(500),
            }
        }
    };
    go_json(&status)
}

/// Runs `argv` in `target` over an upgraded WebSocket and speaks the channel
/// protocol until the command ends or the client goes away. Never panics on
/// client behaviour; returns when the connection is finished.
pub async fn serve_websocket(
    socket: WebSocket,
    protocol: ChannelProtocol,
    target: Container,
    argv: Vec<String>,
    opts: ExecOptions,
    services: Arc<dyn ExecServices>,
) {
    let (mut sink, mut stream) = socket.split();
    // (channel, payload); a payload on STATUS is the last frame.
    let (out_tx, mut out_rx) = mpsc::channel::<(u8, Bytes)>(32);

    // Writer: frames to the client, counting output bytes for fault injection.
    // On a cut it reports through `cut_tx` so that the whole connection ends
    // (reader too), not just the sending half.
    let cut_after = opts.cut_after_bytes;
    let (cut_tx, mut cut_rx) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(async move {
        let mut sent = 0usize;
        while let Some((ch, data)) = out_rx.recv().await {
            match ch {
                STATUS if !data.is_empty() => {
                    let mut frame = Vec::with_capacity(data.len() + 1);
                    frame.push(STATUS);
                    frame.extend_from_slice(&data);
                    let _ = sink.send(Message::Binary(frame.into())).await;
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code: 1000,
                            reason: "".into(),
                        })))
                        .await;
                    let _ = sink.flush().await;
                    return;
                }
                _ => {
                    let mut data = data;
                    let mut cut = false;
                    if let Some(limit) = cut_after {
                        let room = limit.saturating_sub(sent);
                        if data.len() >= room && !data.is_empty() {
                            data = data.slice(..room);
                            cut = true;
                        }
                    }
                    sent += data.len();
                    if !data.is_empty() || !cut {
                        let mut frame = Vec::with_capacity(data.len() + 1);
                        frame.push(ch);
                        frame.extend_from_slice(&data);
                        if sink.send(Message::Binary(frame.into())).await.is_err() {
                            return;
                        }
                    }
                    if cut {
                        // Abrupt end: no status, no Close frame. The socket
                        // closes once the reader half is dropped too.
                        let _ = sink.flush().await;
                        drop(sink);
                        let _ = cut_tx.send(());
                        return;
                    }
                }
            }
        }
    });

    // Stdin: frames from the client. The reader also notices the client leaving.
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    let (gone_tx, mut gone_rx) = tokio::sync::oneshot::channel::<()>();
    let want_stdin = opts.stdin;
    let reader = tokio::spawn(async move {
        let mut stdin_tx = if want_stdin { Some(stdin_tx) } else { None };
        while let Some(msg) = stream.next().await {
            let data = match msg {
                Ok(Message::Binary(b)) => b,
                Ok(Message::Text(t)) => Bytes::copy_from_slice(t.as_bytes()),
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => continue,
            };
            let Some((&ch, payload)) = data.split_first() else {
                continue;
            };
            match ch {
                STDIN => {
                    if let Some(tx) = &stdin_tx
                        && !payload.is_empty()
                        && tx.send(data.slice(1..)).await.is_err()
                    {
                        stdin_tx = None;
                    }
                }
                CLOSE if protocol == ChannelProtocol::V5 && payload.first() == Some(&STDIN) => {
                    stdin_tx = None;
                }
                // Resize events and unknown channels are ignored.
                _ => {}
            }
        }
        drop(stdin_tx);
        let _ = gone_tx.send(());
    });

    // Kubelet announces the connection with an empty frame on the lowest
    // stream it writes.
    let first = if opts.stdout {
        STDOUT
    } else if opts.stderr && !opts.tty {
        STDERR
    } else {
        STATUS
    };
    let _ = out_tx.send((first, Bytes::new())).await;

    let stdout = if opts.stdout {
        OutStream::from_frames(out_tx.clone(), STDOUT, MAX_FRAME)
    } else {
        OutStream::null()
    };
    // With a terminal, stderr is merged into stdout (no stderr channel).
    let stderr = if opts.tty {
        stdout.clone()
    } else if opts.stderr {
        OutStream::from_frames(out_tx.clone(), STDERR, MAX_FRAME)
    } else {
        OutStream::null()
    };
    let io = ExecIo {
        stdin: if opts.stdin {
            InStream::from_receiver(stdin_rx)
        } else {
            InStream::empty()
        },
        stdout,
        stderr,
        tty: opts.tty,
    };

    let run = run_command(&target, &argv, io, services.as_ref());
    tokio::select! {
        outcome = run => {
            let status = Bytes::from(status_json(&argv, &outcome));
            let _ = out_tx.send((STATUS, status)).await;
            drop(out_tx);
            let _ = writer.await;
            reader.abort();
        }
        _ = &mut gone_rx => {
            // The client went away: stop the command, drop the connection.
            drop(out_tx);
            writer.abort();
            reader.abort();
        }
        Ok(()) = &mut cut_rx => {
            // Fault injection cut the stream: stop the command and end the
            // reader so both halves of the socket are dropped and the TCP
            // connection closes without a status or Close frame.
            drop(out_tx);
            reader.abort();
            let _ = reader.await;
            let _ = writer.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_v5() {
        assert_eq!(
            negotiate_protocol(&["v4.channel.k8s.io", "v5.channel.k8s.io"]),
            Some(ChannelProtocol::V5)
        );
        assert_eq!(
            negotiate_protocol(&["v4.channel.k8s.io, channel.k8s.io"]),
            Some(ChannelProtocol::V4)
        );
        assert_eq!(negotiate_protocol(&["channel.k8s.io"]), None);
        assert_eq!(negotiate_protocol(&[]), None);
    }

    #[test]
    fn status_messages_match_kubelet() {
        let argv: Vec<String> = ["sh", "-c", "echo hi; exit 7"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            status_json(&argv, &ExecOutcome::Exited(0)),
            r#"{"metadata":{},"status":"Success"}"#
        );
        assert_eq!(
            status_json(&argv, &ExecOutcome::Exited(7)),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c echo hi; exit 7], exit code 7","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"7"}]}}"#
        );
        let s = status_json(
            &argv,
            &ExecOutcome::StartFailed {
                message: "boom <x>".into(),
            },
        );
        assert_eq!(
            s,
            r#"{"metadata":{},"status":"Failure","message":"Internal error occurred: error executing command in container: boom \u003cx\u003e","reason":"InternalError","details":{"causes":[{"message":"error executing command in container: boom \u003cx\u003e"}]},"code":500}"#
        );
    }
}
