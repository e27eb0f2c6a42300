//! The command table: which executables a simulated container can run and
//! what they do. A program is looked up by the basename of `argv[0]`, first
//! among the programs the cluster provides ([`ExecServices::program`], e.g.
//! `pilot-agent` in `istio-proxy`), then among the built-ins below, but only
//! when the image declares the executable in [`ExecTarget::tools`]; anything
//! else fails the way containerd/runc report it, so that `kubectl exec` prints
//! the same error as against a real cluster.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::io::{ExecIo, Input, Output, VirtualFs};
use super::{ExecServices, ExecTarget, curl, gnu_wget, shell, wget};

/// A program that can run inside a simulated container.
pub trait Program: Send + Sync + 'static {
    /// Runs with `argv` (argv[0] as invoked) and returns the exit status.
    fn run<'a>(&'a self, process: Process<'a>, argv: Vec<String>) -> BoxFuture<'a, i32>;
}

/// Everything a running program sees: its container, environment, standard
/// streams and the exec's virtual file system.
#[derive(Clone)]
pub struct Process<'a> {
    pub target: &'a ExecTarget,
    pub services: &'a dyn ExecServices,
    /// Environment in order (`NAME`, `value`).
    pub env: Vec<(String, String)>,
    pub stdin: Input,
    pub stdout: Output,
    pub stderr: Output,
    pub fs: VirtualFs,
    /// The exec has a terminal.
    pub tty: bool,
}

impl Process<'_> {
    /// Value of an environment variable.
    pub fn getenv(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

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
    "sh", "bash", "ash", "dash", "echo", "cat", "true", "false", "env", "hostname", "sleep",
    "printf", "curl", "wget",
];

fn builtin(name: &str) -> Option<ProgramFn> {
    Some(match name {
        "sh" | "bash" | "ash" | "dash" => shell::shell_program,
        "echo" => echo,
        "cat" => cat,
        "true" => |_, _| Box::pin(async { 0 }),
        "false" => |_, _| Box::pin(async { 1 }),
        "env" => env,
        "hostname" => hostname,
        "sleep" => sleep,
        "printf" => printf,
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
    target: &ExecTarget,
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
            "meshsim: {name}: this program is not simulated (available: {})\n",
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

/// The environment a container process starts with: `PATH`, `HOSTNAME`, the
/// container's variables, then `HOME`, as containerd composes it.
pub fn base_env(target: &ExecTarget) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let has = |k: &str| target.env.iter().any(|(n, _)| n == k);
    if !has("PATH") {
        env.push((
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ));
    }
    if !has("HOSTNAME") {
        env.push(("HOSTNAME".into(), target.pod.clone()));
    }
    env.extend(target.env.iter().cloned());
    if !has("HOME") {
        env.push(("HOME".into(), "/root".into()));
    }
    env
}

/// Runs `argv` in `target` as the container runtime would for `kubectl exec`.
pub async fn run_command(
    target: &ExecTarget,
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
    let fs = VirtualFs::for_container(
        &target.pod,
        &target.pod_ip,
        &target.namespace,
        services.files(target),
    );
    let process = Process {
        target,
        services,
        env: base_env(target),
        stdin: io.stdin,
        stdout: io.stdout.with_crlf(io.tty),
        stderr: io.stderr.with_crlf(io.tty),
        fs,
        tty: io.tty,
    };
    let code = program.run(process, argv.to_vec()).await;
    ExecOutcome::Exited(code)
}

/// Interprets backslash escapes as `echo -e` and `printf` do. Returns the
/// text and whether `\c` asked to stop all output.
pub(crate) fn unescape(s: &str) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 >= b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        i += 1;
        match b[i] {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'e' => out.push(27),
            b'\\' => out.push(b'\\'),
            b'c' => return (out, true),
            b'0'..=b'7' => {
                let start = if b[i] == b'0' { i + 1 } else { i };
                let mut j = start;
                let mut v: u32 = 0;
                while j < b.len() && j < start + 3 && (b'0'..=b'7').contains(&b[j]) {
                    v = v * 8 + u32::from(b[j] - b'0');
                    j += 1;
                }
                out.push((v & 0xff) as u8);
                i = j;
                continue;
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
        i += 1;
    }
    (out, false)
}

/// `echo [-neE] args...`
pub(crate) fn echo<'a>(p: Process<'a>, argv: Vec<String>) -> BoxFuture<'a, i32> {
    Box::pin(async move {
        let mut newline = true;
        let mut escapes = false;
        let mut args = argv.iter().skip(1).peekable();
        while let Some(a) = args.peek() {
            let flag = a.len() > 1
                && a.starts_with('-')
                && a[1..].chars().all(|c| matches!(c, 'n' | 'e' | 'E'));
            if !flag {
                break;
            }
            for c in a[1..].chars() {
                match c {
                    'n' => newline = false,
                    'e' => escapes = true,
                    _ => escapes = false,
                }
            }
            args.next();
        }
        let text = args.map(String::as_str).collect::<Vec<_>>().join(" ");
        let mut out = if escapes {
            let (v, stop) = unescape(&text);
            if stop {
                let _ = p.out(&v).await;
                return 0;
            }
            v
        } else {
            text.into_bytes()
        };
        if newline {
            out.push(b'\n');
        }
        if p.out(&out).await { 0 } else { 1 }
    })
}

fn cat<'a>(p: Process<'a>, argv: Vec<String>) -> BoxFuture<'a, i32> {
    Box::pin(async move {
        let files: Vec<&String> = argv.iter().skip(1).filter(|a| !is_flag(a)).collect();
        let mut status = 0;
        if files.is_empty() {
            return copy_stdin(&p).await;
        }
        for f in files {
            if f == "-" {
                status = status.max(copy_stdin(&p).await);
                continue;
            }
            match p.fs.read(f) {
                Ok(content) => {
                    if !p.out(&content).await {
                        return 1;
                    }
                }
                Err(e) => {
                    p.err(&format!("cat: {f}: {e}\n")).await;
                    status = 1;
                }
            }
        }
        status
    })
}

fn is_flag(a: &str) -> bool {
    a.len() > 1 && a.starts_with('-')
}

async fn copy_stdin(p: &Process<'_>) -> i32 {
    loop {
        match p.stdin.read_chunk().await {
            Ok(Some(chunk)) => {
                if !p.out(&chunk).await {
                    return 1;
                }
            }
            Ok(None) => return 0,
            Err(_) => return 1,
        }
    }
}

fn env<'a>(p: Process<'a>, argv: Vec<String>) -> BoxFuture<'a, i32> {
    Box::pin(async move {
        let mut env = p.env.clone();
        let mut rest = argv.iter().skip(1).peekable();
        while let Some(a) = rest.peek() {
            if let Some((k, v)) = a.split_once('=')
                && !k.is_empty()
            {
                env.retain(|(n, _)| n != k);
                env.push((k.to_string(), v.to_string()));
                rest.next();
            } else {
                break;
            }
        }
        let cmd: Vec<String> = rest.cloned().collect();
        if cmd.is_empty() {
            let mut out = String::new();
            for (k, v) in &env {
                out.push_str(&format!("{k}={v}\n"));
            }
            return if p.out(out.as_bytes()).await { 0 } else { 1 };
        }
        match lookup(p.target, p.services, &cmd[0]) {
            Some(prog) => {
                let mut child = p.clone();
                child.env = env;
                prog.run(child, cmd).await
            }
            None => {
                p.err(&format!(
                    "env: \u{2018}{}\u{2019}: No such file or directory\n",
                    cmd[0]
                ))
                .await;
                127
            }
        }
    })
}

fn hostname<'a>(p: Process<'a>, _argv: Vec<String>) -> BoxFuture<'a, i32> {
    Box::pin(async move {
        let line = format!("{}\n", p.target.pod);
        if p.out(line.as_bytes()).await { 0 } else { 1 }
    })
}

/// Parses a `sleep` operand (`1`, `0.5`, `2s`, `1m`, `1h`, `1d`).
pub(crate) fn parse_sleep(arg: &str) -> Option<Duration> {
    let (num, mult) = match arg.chars().last()? {
        's' => (&arg[..arg.len() - 1], 1.0),
        'm' => (&arg[..arg.len() - 1], 60.0),
        'h' => (&arg[..arg.len() - 1], 3600.0),
        'd' => (&arg[..arg.len() - 1], 86400.0),
        _ => (arg, 1.0),
    };
    let v: f64 = num.parse().ok()?;
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(v * mult).ok()
}

fn sleep<'a>(p: Process<'a>, argv: Vec<String>) -> BoxFuture<'a, i32> {
    Box::pin(async move {
        if argv.len() < 2 {
            p.err("sleep: missing operand\nTry 'sleep --help' for more information.\n")
                .await;
            return 1;
        }
        let mut total = Duration::ZERO;
        for a in &argv[1..] {
            match parse_sleep(a) {
                Some(d) => total = total.saturating_add(d),
                None => {
                    p.err(&format!(
                        "sleep: invalid time interval \u{2018}{a}\u{2019}\nTry 'sleep --help' for more information.\n"
                    ))
                    .await;
                    return 1;
                }
            }
        }
        p.sleep(total).await;
        0
    })
}

/// Formats like the shell's `printf` (conversions `%s %b %d %i %u %x %X %o %c %%`
/// with flags and width), reusing the format while arguments remain.
pub(crate) fn format_printf(format: &str, args: &[String]) -> (Vec<u8>, Option<String>) {
    let mut out = Vec::new();
    let mut error = None;
    let mut idx = 0usize;
    loop {
        let start_idx = idx;
        let f = format.as_bytes();
        let mut i = 0;
        while i < f.len() {
            let c = f[i];
            if c == b'\\' {
                let mut j = i + 1;
                if j < f.len() && (b'0'..=b'7').contains(&f[j]) {
                    while j < f.len() && j < i + 4 && (b'0'..=b'7').contains(&f[j]) {
                        j += 1;
                    }
                } else {
                    j = (i + 2).min(f.len());
                }
                let (v, _) = unescape(&format[i..j]);
                out.extend_from_slice(&v);
                i = j;
                continue;
            }
            if c != b'%' {
                out.push(c);
                i += 1;
                continue;
            }
            let spec_start = i;
            i += 1;
            if i < f.len() && f[i] == b'%' {
                out.push(b'%');
                i += 1;
                continue;
            }
            while i < f.len() && matches!(f[i], b'-' | b'+' | b' ' | b'#' | b'0') {
                i += 1;
            }
            while i < f.len() && (f[i].is_ascii_digit() || f[i] == b'.') {
                i += 1;
            }
            if i >= f.len() {
                out.extend_from_slice(&f[spec_start..]);
                break;
            }
            let conv = f[i];
            let spec = &format[spec_start + 1..i];
            i += 1;
            let arg = args.get(idx).map(String::as_str);
            if arg.is_some() {
                idx += 1;
            }
            let left = spec.contains('-');
            let zero = spec.starts_with('0') || spec.contains("-0") || spec.contains("+0");
            let width: usize = spec
                .trim_start_matches(['-', '+', ' ', '#', '0'])
                .split('.')
                .next()
                .and_then(|w| w.parse().ok())
                .unwrap_or(0);
            let text: String = match conv {
                b's' => arg.unwrap_or("").to_string(),
                b'b' => String::from_utf8_lossy(&unescape(arg.unwrap_or("")).0).into_owned(),
                b'c' => arg
                    .and_then(|a| a.chars().next())
                    .map(String::from)
                    .unwrap_or_default(),
                b'd' | b'i' | b'u' | b'x' | b'X' | b'o' => {
                    let a = arg.unwrap_or("0").trim();
                    let n: i64 = match a.parse() {
                        Ok(n) => n,
                        Err(_) => {
                            error = Some(format!("printf: {a}: invalid number\n"));
                            0
                        }
                    };
                    match conv {
                        b'x' => format!("{n:x}"),
                        b'X' => format!("{n:X}"),
                        b'o' => format!("{n:o}"),
                        _ => n.to_string(),
                    }
                }
                _ => {
                    error = Some(format!(
                        "printf: %{}: invalid directive\n",
                        char::from(conv)
                    ));
                    String::new()
                }
            };
            let pad = width.saturating_sub(text.chars().count());
            if left {
                out.extend_from_slice(text.as_bytes());
                out.extend(std::iter::repeat_n(b' ', pad));
            } else {
                let fill = if zero && matches!(conv, b'd' | b'i' | b'u' | b'x' | b'X' | b'o') {
                    b'0'
                } else {
                    b' '
                };
                out.extend(std::iter::repeat_n(fill, pad));
                out.extend_from_slice(text.as_bytes());
            }
        }
        if idx >= args.len() || idx == start_idx {
            break;
        }
    }
    (out, error)
}

pub(crate) fn printf<'a>(p: Process<'a>, argv: Vec<String>) -> BoxFuture<'a, i32> {
    Box::pin(async move {
        let Some(format) = argv.get(1) else {
            p.err("printf: usage: printf [-v var] format [arguments]\n")
                .await;
            return 2;
        };
        let (out, error) = format_printf(format, &argv[2..]);
        let ok = p.out(&out).await;
        if let Some(e) = error {
            p.err(&e).await;
            return 1;
        }
        if ok { 0 } else { 1 }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printf_reuses_format_and_pads() {
        let args: Vec<String> = ["a", "bb"].iter().map(|s| s.to_string()).collect();
        let (out, err) = format_printf("[%3s]\\n", &args);
        assert_eq!(String::from_utf8(out).unwrap(), "[  a]\n[ bb]\n");
        assert!(err.is_none());
        let (out, _) = format_printf("%05d|%-4s|%x", &["42".into(), "z".into(), "255".into()]);
        assert_eq!(String::from_utf8(out).unwrap(), "00042|z   |ff");
    }

    #[test]
    fn sleep_operands() {
        assert_eq!(parse_sleep("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_sleep("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_sleep("x"), None);
        assert_eq!(parse_sleep("-1"), None);
    }

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
