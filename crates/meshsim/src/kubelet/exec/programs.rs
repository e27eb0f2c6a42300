//! The command table: which executables a simulated container can run and
//! what they do. A program is looked up by the basename of `argv[0]`, first
//! among the programs the cluster provides ([`ExecServices::program`], e.g.
//! `pilot-agent` in `istio-proxy`), then among the built-ins below, but only
//! when the image declares the executable in [`Container::tools`]; anything
//! else fails the way containerd/runc report it, so that `kubectl exec` prints
//! the same error as against a real cluster.
//!
//! Deliberately not emulated: the container's environment (no `$VAR` to
//! expand, see [`super::shell`]), its files (`cat` copies stdin only), and
//! every program outside [`BUILTIN_PROGRAMS`]: one the image declares (`env`,
//! `hostname`, `ls`, ...) says meshsim does not emulate it and exits 126.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::io::{ExecIo, InStream, OutStream};
use super::{ExecServices, curl, gnu_wget, shell, wget};
use crate::traffic::Container;

/// A program that can run inside a simulated container.
pub trait Program: Send + Sync + 'static {
    /// Runs with `argv` (`argv[0]` as invoked) and returns the exit status.
    fn run<'a>(&'a self, process: Process<'a>, argv: Vec<String>) -> BoxFuture<'a, i32>;
}

/// Everything a running program sees: its container and standard streams.
#[derive(Clone)]
pub struct Process<'a> {
    pub target: &'a Container,
    pub services: &'a dyn ExecServices,
    pub stdin: InStream,
    pub stdout: OutStream,
    pub stderr: OutStream,
    /// The exec has a terminal.
    pub tty: bool,
}

impl Process<'_> {
    /// Writes to stderr, ignoring a vanished reader.
    pub async fn err(&self, msg: &str) {
        let _ = self.stderr.write_str(msg).await;
    }

    /// Writes to stdout; `false` when the reader has gone away.
    pub async fn out(&self, data: &[u8]) -> bool {
        self.stdout.write(data).await.is_ok()
    }

    /// Sleeps for `simulated` time scaled by the cluster's time scale.
    pub async fn sleep(&self, simulated: Duration) {
        tokio::time::sleep(scaled(simulated, self.services.time_scale())).await;
    }

    /// A failure that happens `after` simulated seconds, seen by a client
    /// that gives up at `limit`: waits for whichever comes first, then prints
    /// `msg` or, when the limit came first, `timed_out`.
    pub async fn fail_within(&self, after: f64, limit: f64, msg: &str, timed_out: &str) {
        let (wait, text) = if after >= limit {
            (limit, timed_out)
        } else {
            (after, msg)
        };
        self.sleep(Duration::from_secs_f64(wait.max(0.0))).await;
        self.err(text).await;
    }
}

/// `simulated * scale`, saturating; a non-finite or negative scale counts as 1.
pub fn scaled(simulated: Duration, scale: f64) -> Duration {
    let scale = if scale.is_finite() && scale >= 0.0 {
        scale
    } else {
        1.0
    };
    Duration::try_from_secs_f64(simulated.as_secs_f64() * scale).unwrap_or(Duration::MAX)
}

/// How an exec ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutcome {
    /// The process ran and exited with this status.
    Exited(i32),
    /// The runtime could not start the process; `message` is the runtime's
    /// error as containerd reports it (`failed to exec in container: ...`).
    StartFailed { message: String },
}

impl ExecOutcome {
    /// The exit code `kubectl exec` ends with (1 when the exec failed to start).
    pub fn exit_code(&self) -> i32 {
        match self {
            ExecOutcome::Exited(c) => *c,
            ExecOutcome::StartFailed { .. } => 1,
        }
    }
}

type ProgramFn = for<'a> fn(Process<'a>, Vec<String>) -> BoxFuture<'a, i32>;

struct FnProgram(ProgramFn);

impl Program for FnProgram {
    fn run<'a>(&'a self, process: Process<'a>, argv: Vec<String>) -> BoxFuture<'a, i32> {
        (self.0)(process, argv)
    }
}

/// Names of the executables this module implements.
pub const BUILTIN_PROGRAMS: &[&str] = &[
    "sh", "bash", "ash", "dash", "echo", "cat", "true", "false", "curl", "wget",
];

fn builtin(name: &str) -> Option<ProgramFn> {
    Some(match name {
        "sh" | "bash" | "ash" | "dash" => shell::shell_program,
        "echo" => echo,
        "cat" => cat,
        "true" => |_, _| Box::pin(async { 0 }),
        "false" => |_, _| Box::pin(async { 1 }),
        "curl" => curl::curl,
        "wget" => wget::wget,
        _ => return None,
    })
}

/// The basename of an executable path.
pub fn basename(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// Finds the program `name` (a bare name or a path) in `target`.
pub fn lookup(
    target: &Container,
    services: &dyn ExecServices,
    name: &str,
) -> Option<Arc<dyn Program>> {
    let base = basename(name);
    if base.is_empty() {
        return None;
    }
    if let Some(p) = services.program(target, base) {
        return Some(p);
    }
    if !target.tools.iter().any(|t| basename(t) == base) {
        return None;
    }
    if base == "wget" && !wget::is_busybox(target) {
        return Some(Arc::new(FnProgram(gnu_wget::gnu_wget)));
    }
    match builtin(base) {
        Some(f) => Some(Arc::new(FnProgram(f))),
        None => Some(Arc::new(FnProgram(not_simulated))),
    }
}

/// A tool the image declares but meshsim does not implement: say so honestly.
fn not_simulated<'a>(p: Process<'a>, argv: Vec<String>) -> BoxFuture<'a, i32> {
    Box::pin(async move {
        let name = argv.first().map(|s| basename(s)).unwrap_or_default();
        p.err(&format!(
            "meshsim: {name}: meshsim does not emulate this program (emulated: {})\n",
            BUILTIN_PROGRAMS.join(", ")
        ))
        .await;
        126
    })
}

/// The runtime's message when `argv0` cannot be started.
pub fn start_failure_message(argv0: &str) -> String {
    let reason = if argv0.contains('/') {
        format!("exec: \"{argv0}\": stat {argv0}: no such file or directory")
    } else {
        format!("exec: \"{argv0}\": executable file not found in $PATH")
    };
    let exec_id: String = (0..64)
        .map(|_| char::from(b"0123456789abcdef"[rand::random_range(0..16usize)]))
        .collect();
    format!(
        "failed to exec in container: failed to start exec \"{exec_id}\": OCI runtime exec failed: exec failed: unable to start container process: {reason}: unknown"
    )
}

/// Runs `argv` in `target` as the container runtime would for `kubectl exec`.
pub async fn run_command(
    target: &Container,
    argv: &[String],
    io: ExecIo,
    services: &dyn ExecServices,
) -> ExecOutcome {
    services.record_exec(target, argv);
    let argv0 = argv.first().map(String::as_str).unwrap_or("");
    let Some(program) = lookup(target, services, argv0) else {
        return ExecOutcome::StartFailed {
            message: start_failure_message(argv0),
        };
    };
    let process = Process {
        target,
        services,
        stdin: io.stdin,
        stdout: io.stdout.with_crlf(io.tty),
        stderr: io.stderr.with_crlf(io.tty),
        tty: io.tty,
    };
    let code = program.run(process, argv.to_vec()).await;
    ExecOutcome::Exited(code)
}

/// `echo [-n] args...` (as dash's echo: `-e` is not an option, and
/// backslash escapes are not interpreted).
pub(crate) fn echo<'a>(p: Process<'a>, argv: Vec<String>) -> BoxFuture<'a, i32> {
    Box::pin(async move {
        let newline = argv.get(1).is_none_or(|a| a != "-n");
        let skip = if newline { 1 } else { 2 };
        let mut out = argv[skip.min(argv.len())..].join(" ").into_bytes();
        if newline {
            out.push(b'\n');
        }
        if p.out(&out).await { 0 } else { 1 }
    })
}

/// `cat` and `cat -`: stdin to stdout. Files are not emulated.
fn cat<'a>(p: Process<'a>, argv: Vec<String>) -> BoxFuture<'a, i32> {
    Box::pin(async move {
        if let Some(f) = argv.iter().skip(1).find(|a| *a != "-") {
            p.err(&format!(
                "cat: {f}: meshsim does not emulate files (cat copies stdin only)\n"
            ))
            .await;
            return 1;
        }
        while let Some(chunk) = p.stdin.read_chunk().await {
            if !p.out(&chunk).await {
                return 1;
            }
        }
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_waits() {
        assert_eq!(
            scaled(Duration::from_secs(3), 0.01),
            Duration::from_millis(30)
        );
        assert_eq!(
            scaled(Duration::from_secs(3), f64::NAN),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn runtime_message_names_the_executable() {
        let m = start_failure_message("curl");
        assert!(m.starts_with("failed to exec in container: failed to start exec \""));
        assert!(m.ends_with(
            "OCI runtime exec failed: exec failed: unable to start container process: exec: \"curl\": executable file not found in $PATH: unknown"
        ));
        let m = start_failure_message("/bin/bash");
        assert!(m.contains("exec: \"/bin/bash\": stat /bin/bash: no such file or directory"));
    }
}
