//! `sh -c SCRIPT` / `bash -c SCRIPT`: just enough of a shell for the way the
//! walk-through and its readers probe connectivity
//! (`bash -c "echo '' && curl -sf --max-time 3 URL || echo 'Failed ...'"`).
//!
//! Emulated: commands joined by `;`, newlines, `&&` and `||`; single and
//! double quotes, backslash escapes and line continuations; comments; the
//! redirections `>&2`, `2>&1` and `>/dev/null` / `2>/dev/null`; the builtins
//! `echo`, `exit N`, `true` and `false`. Other commands run from the
//! container's command table; a missing one prints bash's (`bash: line N: x:
//! command not found`) or dash's (`sh: N: x: not found`) message and sets 127.
//!
//! Deliberately not emulated, because no plugin, test or walk-through step
//! needs it: every `$` expansion (variables, `$?`, `$(...)`, backticks),
//! pipelines, `!`, `&`, subshells and `{ }` groups, control structures,
//! functions, assignments, redirections to or from files and here-documents,
//! globbing, other builtins (`cd`, `export`, `test`, `printf`, ...), shell
//! options (`-e`, `-x`, ...), scripts from stdin or a file and interactive
//! shells. A script using one of them is not run at all: the shell prints
//! `SHELL: meshsim does not emulate WHAT` and exits 2 (126 for a shell
//! without `-c`). Syntax errors print `SHELL: -c: line N: syntax error:
//! WHAT` and exit 2.

use futures::future::BoxFuture;

use super::io::OutStream;
use super::programs::{self, Process, basename, lookup};

/// Why a script is not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SyntaxError {
    #[error("syntax error: {0}")]
    Invalid(String),
    #[error("meshsim does not emulate {0}")]
    Unsupported(String),
}

/// Where a redirection sends file descriptor `fd` (1 or 2): onto the
/// other descriptor, or `/dev/null` (`None`).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Redir {
    fd: u8,
    to: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Conn {
    Seq,
    And,
    Or,
}

#[derive(Debug, Clone, Default)]
struct Cmd {
    words: Vec<String>,
    redirs: Vec<Redir>,
    line: usize,
}

/// A parsed script: simple commands joined by `;`, `&&` and `||`.
#[derive(Debug, Clone, Default)]
pub struct Script {
    items: Vec<(Conn, Cmd)>,
}

const KEYWORDS: &[&str] = &[
    "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac",
    "function", "{", "}", "select", "[[", "!",
];

fn unsupported(what: &str) -> SyntaxError {
    SyntaxError::Unsupported(what.to_string())
}

fn invalid(what: impl Into<String>) -> SyntaxError {
    SyntaxError::Invalid(what.into())
}

/// Builds a [`Script`] while reading the source once.
struct Parser<'s> {
    chars: std::iter::Peekable<std::str::Chars<'s>>,
    line: usize,
    script: Script,
    cmd: Cmd,
    conn: Conn,
    /// After `&&` / `||`: a command must follow.
    dangling: bool,
}

impl Parser<'_> {
    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn starts_command(&mut self) {
        if self.cmd.words.is_empty() && self.cmd.redirs.is_empty() {
            self.cmd.line = self.line;
        }
    }

    /// Ends the current command with the operator `next` (`None` at the end).
    fn end_command(&mut self, next: Option<(Conn, &str)>) -> Result<(), SyntaxError> {
        if self.cmd.words.is_empty() && self.cmd.redirs.is_empty() {
            return match next {
                // Empty lines and a newline after `&&` / `||` are fine.
                Some((Conn::Seq, "\n")) => Ok(()),
                Some((_, op)) => Err(invalid(format!("unexpected token `{op}'"))),
                None if self.dangling => Err(invalid("unexpected end of file")),
                None => Ok(()),
            };
        }
        let cmd = std::mem::take(&mut self.cmd);
        self.script.items.push((self.conn, cmd));
        if let Some((conn, _)) = next {
            self.conn = conn;
            self.dangling = conn != Conn::Seq;
        }
        Ok(())
    }

    fn parse(mut self) -> Result<Script, (SyntaxError, usize)> {
        loop {
            let line = self.line;
            match self.step() {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err((e, line)),
            }
        }
        let line = self.line;
        self.end_command(None).map_err(|e| (e, line))?;
        Ok(self.script)
    }

    /// Reads one token; `false` at the end of the source.
    fn step(&mut self) -> Result<bool, SyntaxError> {
        let Some(c) = self.peek() else {
            return Ok(false);
        };
        match c {
            ' ' | '\t' => {
                self.bump();
            }
            '\n' | ';' => {
                self.bump();
                let op = if c == ';' { ";" } else { "\n" };
                self.end_command(Some((Conn::Seq, op)))?;
            }
            '#' => {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.bump();
                }
            }
            '&' | '|' => {
                self.bump();
                if self.peek() != Some(c) {
                    return Err(unsupported(if c == '&' { "&" } else { "|" }));
                }
                self.bump();
                let (conn, op) = if c == '&' {
                    (Conn::And, "&&")
                } else {
                    (Conn::Or, "||")
                };
                self.end_command(Some((conn, op)))?;
            }
            '(' | ')' | '<' => return Err(unsupported(&c.to_string())),
            '>' => self.redirect(1)?,
            _ => {
                self.starts_command();
                let (w, quoted) = self.word()?;
                // `2>`: a lone digit directly followed by `>`.
                if !quoted && matches!(w.as_str(), "1" | "2") && self.peek() == Some('>') {
                    return self.redirect(w.as_bytes()[0] - b'0').map(|()| true);
                }
                if self.cmd.words.is_empty() && !quoted {
                    if KEYWORDS.contains(&w.as_str()) {
                        return Err(unsupported(&w));
                    }
                    if w.contains('=') {
                        return Err(unsupported("variable assignment"));
                    }
                }
                self.cmd.words.push(w);
                self.dangling = false;
            }
        }
        Ok(true)
    }

    /// `>&N` or `> /dev/null` for `fd`, the `>` not yet read.
    fn redirect(&mut self, fd: u8) -> Result<(), SyntaxError> {
        self.starts_command();
        self.bump();
        let to = if self.peek() == Some('&') {
            self.bump();
            match self.bump() {
                Some('1') => Some(1),
                Some('2') => Some(2),
                _ => return Err(unsupported(">& other than 1 or 2")),
            }
        } else {
            while matches!(self.peek(), Some(' ' | '\t')) {
                self.bump();
            }
            let (path, _) = self.word()?;
            if path != "/dev/null" {
                return Err(unsupported(&format!(
                    "redirection to {path:?} (only /dev/null, >&2 and 2>&1)"
                )));
            }
            None
        };
        self.cmd.redirs.push(Redir { fd, to });
        self.dangling = false;
        Ok(())
    }

    /// One word, up to unquoted whitespace or an operator, and whether any
    /// of it was quoted (a quoted empty word is kept: `echo ''`).
    fn word(&mut self) -> Result<(String, bool), SyntaxError> {
        let mut text = String::new();
        let mut quoted = false;
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\n' | ';' | '&' | '|' | '<' | '>' | '(' | ')' => break,
                '$' | '`' => return Err(unsupported(&format!("{c} expansions"))),
                '\\' => {
                    self.bump();
                    quoted = true;
                    match self.bump() {
                        Some('\n') => {}
                        Some(c) => text.push(c),
                        None => text.push('\\'),
                    }
                }
                '\'' => {
                    self.bump();
                    quoted = true;
                    loop {
                        match self.bump() {
                            None => return Err(invalid("unterminated quote '")),
                            Some('\'') => break,
                            Some(c) => text.push(c),
                        }
                    }
                }
                '"' => {
                    self.bump();
                    quoted = true;
                    loop {
                        match self.bump() {
                            None => return Err(invalid("unterminated quote \"")),
                            Some('"') => break,
                            Some('$' | '`') => {
                                return Err(unsupported("$ and ` expansions"));
                            }
                            Some('\\') => match self.peek() {
                                Some(c @ ('$' | '`' | '"' | '\\')) => {
                                    self.bump();
                                    text.push(c);
                                }
                                Some('\n') => {
                                    self.bump();
                                }
                                _ => text.push('\\'),
                            },
                            Some(c) => text.push(c),
                        }
                    }
                }
                _ => {
                    self.bump();
                    text.push(c);
                }
            }
        }
        Ok((text, quoted))
    }
}

/// Parses a script; the error carries the line it was found on.
pub fn parse(src: &str) -> Result<Script, (SyntaxError, usize)> {
    Parser {
        chars: src.chars().peekable(),
        line: 1,
        script: Script::default(),
        cmd: Cmd::default(),
        conn: Conn::Seq,
        dangling: false,
    }
    .parse()
}

/// One `-c` script run.
struct Shell<'a> {
    process: Process<'a>,
    /// `bash` (its wording for a missing command) or a POSIX `sh`.
    bash: bool,
    /// `$0`, the prefix of error messages.
    name: String,
    status: i32,
    exited: bool,
}

impl Shell<'_> {
    async fn run(&mut self, script: &Script) -> i32 {
        for (conn, cmd) in &script.items {
            let run = match conn {
                Conn::Seq => true,
                Conn::And => self.status == 0,
                Conn::Or => self.status != 0,
            };
            if run {
                self.status = self.run_command(cmd).await;
            }
            if self.exited {
                break;
            }
        }
        self.status
    }

    async fn run_command(&mut self, cmd: &Cmd) -> i32 {
        let mut p = self.process.clone();
        for r in &cmd.redirs {
            let o = match r.to {
                None => OutStream::null(),
                Some(1) => p.stdout.clone(),
                Some(_) => p.stderr.clone(),
            };
            if r.fd == 1 {
                p.stdout = o;
            } else {
                p.stderr = o;
            }
        }
        let argv = cmd.words.clone();
        let Some(name) = argv.first() else {
            return 0;
        };
        match name.as_str() {
            "true" => 0,
            "false" => 1,
            "echo" => programs::echo(p, argv).await,
            "exit" => {
                self.exited = true;
                match argv.get(1).map(|a| a.parse::<i64>()) {
                    None => self.status,
                    Some(Ok(n)) => (n & 0xff) as i32,
                    Some(Err(_)) => {
                        let prefix = self.prefix(cmd.line);
                        p.err(&format!(
                            "{prefix}exit: {}: numeric argument required\n",
                            argv[1]
                        ))
                        .await;
                        2
                    }
                }
            }
            _ => match lookup(p.target, p.services, name) {
                Some(prog) => prog.run(p, argv).await,
                None => {
                    let what = match (self.bash, name.contains('/')) {
                        (true, false) => "command not found",
                        (true, true) => "No such file or directory",
                        (false, _) => "not found",
                    };
                    p.err(&format!("{}{name}: {what}\n", self.prefix(cmd.line)))
                        .await;
                    127
                }
            },
        }
    }

    /// `bash: line 3: ` (bash) or `sh: 3: ` (dash).
    fn prefix(&self, line: usize) -> String {
        if self.bash {
            format!("{}: line {line}: ", self.name)
        } else {
            format!("{}: {line}: ", self.name)
        }
    }
}

/// The `sh` / `bash` program: `sh -c SCRIPT [NAME [ARGS...]]`.
pub(crate) fn shell_program<'a>(p: Process<'a>, argv: Vec<String>) -> BoxFuture<'a, i32> {
    Box::pin(async move {
        let argv0 = argv.first().cloned().unwrap_or_else(|| "sh".into());
        if argv.get(1).map(String::as_str) != Some("-c") {
            p.err(&format!(
                "{argv0}: meshsim does not emulate this shell invocation (only `{argv0} -c SCRIPT`: no options, no interactive shell, no script from stdin or a file)\n"
            ))
            .await;
            return 126;
        }
        let Some(src) = argv.get(2) else {
            p.err(&format!("{argv0}: -c: option requires an argument\n"))
                .await;
            return 2;
        };
        let name = argv.get(3).cloned().unwrap_or_else(|| argv0.clone());
        match parse(src) {
            Ok(script) => {
                let mut shell = Shell {
                    process: p,
                    bash: basename(&argv0) == "bash",
                    name,
                    status: 0,
                    exited: false,
                };
                shell.run(&script).await
            }
            Err((e @ SyntaxError::Unsupported(_), _)) => {
                p.err(&format!("{name}: {e}\n")).await;
                2
            }
            Err((e, line)) => {
                p.err(&format!("{name}: -c: line {line}: {e}\n")).await;
                2
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(src: &str) -> Vec<usize> {
        let script = parse(src).unwrap();
        script.items.iter().map(|(_, c)| c.words.len()).collect()
    }

    #[test]
    fn parses_walkthrough_script() {
        let s = "echo '' && curl -sf --max-time 3 svc-np-test-nginx-2.np-test-2.svc.cluster.local || echo 'Failed calling np-test-nginx-2 from np-test-nginx-1'";
        let script = parse(s).unwrap();
        let conns: Vec<Conn> = script.items.iter().map(|(c, _)| *c).collect();
        assert_eq!(conns, vec![Conn::Seq, Conn::And, Conn::Or]);
        assert_eq!(words(s), vec![2, 5, 2]);
        assert_eq!(words("a\n\nb;c &&\n d"), vec![1, 1, 1, 1]);
        // scripts/capture-envoy-rbac-log.sh's one exec: curls joined by `; `.
        let s =
            "curl -s -o /dev/null -w '%{http_code}\\n' http://web/a; curl -X POST http://web/b; ";
        assert_eq!(words(s), vec![7, 4]);
    }

    #[test]
    fn syntax_errors_and_unsupported_syntax() {
        let err = |s: &str| parse(s).unwrap_err();
        assert_eq!(err("echo 'x").0, invalid("unterminated quote '"));
        assert_eq!(err("&& echo").0, invalid("unexpected token `&&'"));
        assert_eq!(err("echo a &&"), (invalid("unexpected end of file"), 1));
        assert_eq!(
            err("echo\necho a ||"),
            (invalid("unexpected end of file"), 2)
        );
        for s in [
            "if true; then echo; fi",
            "echo a | cat",
            "! false",
            "echo $(hostname)",
            "echo `x`",
            "echo \"$A\"",
            "echo $?",
            "A=1 echo",
            "sleep 1 &",
            "cat < f",
            "echo a > /tmp/f",
            "(echo)",
        ] {
            assert!(
                matches!(err(s).0, SyntaxError::Unsupported(_)),
                "{s}: {:?}",
                err(s)
            );
        }
    }

    #[test]
    fn redirections_and_quotes_lex() {
        let script = parse(r#"curl x >/dev/null 2>&1 "a b"'c'\ d '$A'"#).unwrap();
        let cmd = &script.items[0].1;
        assert_eq!(cmd.words, ["curl", "x", "a bc d", "$A"]);
        assert_eq!(
            cmd.redirs,
            [Redir { fd: 1, to: None }, Redir { fd: 2, to: Some(1) }]
        );
    }
}
