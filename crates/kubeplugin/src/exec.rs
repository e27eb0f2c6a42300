//! Running a command in a container through the API (WebSocket exec).
//!
//! kube's `AttachedProcess` buffers each stream in a small pipe (1 KiB): if the
//! caller awaits the status before draining stdout and stderr, a command that
//! prints more than that blocks forever. [`exec`] therefore reads both streams
//! concurrently with the status, keeps at most a bounded head of stdout (plus
//! a tail, where markers written last are found), and turns the status into an
//! exit code. The command is an argv vector: nothing is ever parsed by a shell.

use futures::future::join3;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::client::Kube;
use crate::error::{ApiOp, PluginError};

/// Where to run a command.
#[derive(Debug, Clone)]
pub struct ExecTarget {
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

/// Bounds on what is kept of the command's output.
#[derive(Debug, Clone, Copy)]
pub struct ExecLimits {
    /// Bytes kept from the start of each stream.
    pub head: usize,
    /// Bytes kept from the end of each stream (when longer than `head`).
    pub tail: usize,
}

impl Default for ExecLimits {
    fn default() -> Self {
        ExecLimits {
            head: 1 << 20,
            tail: 4096,
        }
    }
}

/// What a stream produced: its start, its end if it was longer, and its length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    pub head: Vec<u8>,
    /// The last bytes, when the stream was longer than the head (else empty).
    pub tail: Vec<u8>,
    pub total: u64,
}

impl Captured {
    /// Whether bytes between head and tail were dropped or the tail is separate.
    pub fn truncated(&self) -> bool {
        self.total > self.head.len() as u64
    }

    /// The end of the stream, contiguous: the whole stream when nothing was
    /// dropped, else the tail.
    pub fn end(&self) -> Vec<u8> {
        let kept = (self.head.len() + self.tail.len()) as u64;
        if kept == self.total {
            let mut all = self.head.clone();
            all.extend_from_slice(&self.tail);
            all
        } else {
            self.tail.clone()
        }
    }
}

/// Result of a finished command.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    pub stdout: Captured,
    pub stderr: Captured,
    /// The process exit code, when the runtime reported one.
    pub exit_code: Option<i32>,
    /// The status message (`command terminated with non-zero exit code ...`,
    /// `executable file not found in $PATH`, ...), when not a success.
    pub status_message: Option<String>,
    /// The status reason (`NonZeroExitCode`, `InternalError`, ...).
    pub status_reason: Option<String>,
}

impl ExecOutput {
    /// The runtime could not start the executable (not installed in the image).
    pub fn command_not_found(&self) -> bool {
        if self.exit_code == Some(127) {
            return true;
        }
        self.status_message.as_deref().is_some_and(|m| {
            m.contains("executable file not found")
                || m.contains("no such file or directory")
                || m.contains("not found in $PATH")
        })
    }
}

/// Runs `argv` in the target container and collects its output and exit code.
pub async fn exec(
    kube: &Kube,
    target: &ExecTarget,
    argv: &[String],
    limits: ExecLimits,
) -> Result<ExecOutput, PluginError> {
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), &target.namespace);
    let params = AttachParams::default()
        .container(target.container.clone())
        .stdin(false)
        .stdout(true)
        .stderr(true)
        .tty(false);
    let mut proc = api
        .exec(&target.pod, argv.iter().map(String::as_str), &params)
        .await
        .map_err(|e| {
            kube.err(
                e,
                &ApiOp::new("create", "pods/exec", &target.namespace).named(&target.pod),
            )
        })?;
    let stdout = proc.stdout();
    let stderr = proc.stderr();
    let status = proc.take_status();
    let (out, err, status) = join3(
        capture(stdout, limits),
        capture(stderr, limits),
        async move {
            match status {
                Some(s) => s.await,
                None => None,
            }
        },
    )
    .await;
    let exec_err = |message: String| PluginError::Exec {
        namespace: target.namespace.clone(),
        pod: target.pod.clone(),
        container: target.container.clone(),
        message,
    };
    let stdout = out.map_err(|e| exec_err(format!("reading stdout: {e}")))?;
    let stderr = err.map_err(|e| exec_err(format!("reading stderr: {e}")))?;
    // The background task ends after the status; its own errors are not fatal
    // once we have output and status.
    let _ = proc.join().await;
    let mut output = ExecOutput {
        stdout,
        stderr,
        ..Default::default()
    };
    match status {
        None => {
            return Err(exec_err(
                "the connection closed before the command's status arrived (pod gone?)".into(),
            ));
        }
        Some(s) => {
            let success = s.status.as_deref() == Some("Success");
            if success {
                output.exit_code = Some(0);
            } else {
                output.exit_code = exit_code_of(&s);
                output.status_message = s.message.clone();
                output.status_reason = s.reason.clone();
            }
        }
    }
    Ok(output)
}

/// The exit code carried by a `NonZeroExitCode` status (`details.causes[].reason == "ExitCode"`).
pub fn exit_code_of(status: &Status) -> Option<i32> {
    status
        .details
        .as_ref()?
        .causes
        .as_ref()?
        .iter()
        .find(|c| c.reason.as_deref() == Some("ExitCode"))
        .and_then(|c| c.message.as_deref()?.trim().parse().ok())
}

async fn capture<R: AsyncRead + Unpin>(
    reader: Option<R>,
    limits: ExecLimits,
) -> std::io::Result<Captured> {
    let mut captured = Captured::default();
    let Some(mut reader) = reader else {
        return Ok(captured);
    };
    let mut ring: std::collections::VecDeque<u8> = std::collections::VecDeque::new();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        captured.total += n as u64;
        let chunk = &buf[..n];
        let room = limits.head.saturating_sub(captured.head.len());
        let (to_head, rest) = chunk.split_at(room.min(n));
        captured.head.extend_from_slice(to_head);
        // The tail holds the last bytes of the stream once it outgrew the head.
        for &b in rest {
            if ring.len() == limits.tail {
                ring.pop_front();
            }
            if limits.tail > 0 {
                ring.push_back(b);
            }
        }
    }
    captured.tail = ring.into_iter().collect();
    Ok(captured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn capture_keeps_head_and_tail() {
        let data: Vec<u8> = (0..100u8).collect();
        let limits = ExecLimits { head: 10, tail: 5 };
        let c = capture(Some(&data[..]), limits).await.unwrap();
        assert_eq!(c.head, (0..10u8).collect::<Vec<_>>());
        assert_eq!(c.tail, (95..100u8).collect::<Vec<_>>());
        assert_eq!(c.total, 100);
        assert!(c.truncated());
        assert_eq!(c.end(), c.tail);

        let c = capture(Some(&data[..8]), limits).await.unwrap();
        assert!(!c.truncated());
        assert_eq!(c.end(), data[..8].to_vec());
        let c = capture(Some(&data[..12]), limits).await.unwrap();
        assert_eq!(c.end(), data[..12].to_vec());
    }

    #[test]
    fn exit_code_from_status() {
        let s: Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "reason": "NonZeroExitCode", "code": 500,
            "message": "command terminated with non-zero exit code: 7",
            "details": {"causes": [{"reason": "ExitCode", "message": "7"}]}
        }))
        .unwrap();
        assert_eq!(exit_code_of(&s), Some(7));
    }

    #[test]
    fn not_found_detection() {
        let out = ExecOutput {
            status_message: Some(
                "exec: \"curl\": executable file not found in $PATH: unknown".into(),
            ),
            ..Default::default()
        };
        assert!(out.command_not_found());
        let out = ExecOutput {
            exit_code: Some(7),
            ..Default::default()
        };
        assert!(!out.command_not_found());
    }
}
