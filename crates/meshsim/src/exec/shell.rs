//! `sh -c SCRIPT` / `bash -c SCRIPT`: just enough of a shell for the way the
//! walk-through and its readers probe connectivity
//! (`bash -c "echo '' && curl -sf --max-time 3 URL || echo 'Failed ...'"`).
//!
//! Emulated: commands joined by `;`, newlines, `&&` and `||`; single and
//! double quotes, backslash escapes and line continuations; comments; `$?`,
//! `$NAME` and `${NAME}` from the container's environment (never split into
//! several words); output redirections `>`, `>>`, `N>`, `N>&M` (onto the
//! exec's virtual file system, `/dev/null` included); the builtins `echo`,
//! `exit`, `true`, `false` and `:`. Other commands run from the container's
//! command table; a missing one prints bash's (`bash: line N: x: command not
//! found`) or dash's (`sh: N: x: not found`) message and sets 127.
//!
//! Deliberately not emulated, because no plugin, test or walk-through step
//! needs it: pipelines, `!`, `&` (background jobs), subshells and `{ }`
//! groups, control structures (`if`, `for`, `while`, `case`, functions),
//! command substitution (`$(...)` and backticks), variable assignments,
//! positional parameters and other `$` forms (`${X:-y}`, `$#`, `$1`),
//! input redirection and here-documents, globbing, and the other builtins
//! (`cd`, `export`, `test`, `printf`, ...). A script using one of them is not
//! run at all: the shell prints `SHELL: meshsim: unsupported shell syntax:
//! WHAT` and exits 2. Syntax errors print `SHELL: -c: line N: syntax error:
//! WHAT` (one wording for every shell) and exit 2. A shell without `-c`
//! (an interactive `kubectl exec -it POD -- sh`, or a script on stdin) prints
//! `SHELL: meshsim: only SHELL -c SCRIPT is simulated` and exits 126.

use futures::future::BoxFuture;

use super::io::{Output, file_output};
use super::programs::{self, Process, basename, lookup};

/// Why a script is not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SyntaxError {
    #[error("syntax error: {0}")]
    Invalid(String),
    #[error("meshsim: unsupported shell syntax: {0}")]
    Unsupported(String),
}

/// Part of a word: text, or a variable expanded when the command runs.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Var(String),
}

#[derive(Debug, Clone, PartialEq, Default)]
struct Word {
    pieces: Vec<Piece>,
    /// Quoted somewhere: kept even when it expands to nothing (`echo ''`).
    quoted: bool,
}

/// Where a redirection sends file descriptor `fd` (1 or 2).
#[derive(Debug, Clone, PartialEq)]
enum Redir {
    File { fd: u8, path: Word, append: bool },
    Dup { fd: u8, to: u8 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Conn {
    Seq,
    And,
    Or,
}

#[derive(Debug, Clone, Default)]
struct Cmd {
    words: Vec<Word>,
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
    chars: std::iter::Peekable<std::str::CharIndices<'s>>,
    line: usize,
    script: Script,
    cmd: Cmd,
    conn: Conn,
    /// After `&&` / `||`: a command must follow.
    dangling: bool,
}

impl Parser<'_> {
    fn bump(&mut self) -> Option<char> {
        let (_, c) = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn peek(&mut self) -> Option<char> {
        self.chars.peek().map(|&(_, c)| c)
    }

    fn push_word(&mut self, w: Word) -> Result<(), SyntaxError> {
        if self.cmd.words.is_empty() && self.cmd.redirs.is_empty() {
            self.cmd.line = self.line;
            if let [Piece::Text(t)] = w.pieces.as_slice()
                && !w.quoted
            {
                if KEYWORDS.contains(&t.as_str()) {
                    return Err(unsupported(t));
                }
                if let Some((name, _)) = t.split_once('=')
                    && is_name(name)
                {
                    return Err(unsupported("variable assignment"));
                }
            }
        }
        self.cmd.words.push(w);
        self.dangling = false;
        Ok(())
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
            let step = self.step();
            match step {
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
            '(' | ')' | '<' | '`' => return Err(unsupported(&c.to_string())),
            '>' => self.redirect(1)?,
            _ => {
                let w = self.word()?;
                // `2>`: a lone digit directly followed by `>`.
                if let [Piece::Text(d)] = w.pieces.as_slice()
                    && !w.quoted
                    && matches!(d.as_str(), "1" | "2")
                    && self.peek() == Some('>')
                {
                    return self.redirect(d.as_bytes()[0] - b'0').map(|()| true);
                }
                self.push_word(w)?;
            }
        }
        Ok(true)
    }

    fn redirect(&mut self, fd: u8) -> Result<(), SyntaxError> {
        self.bump(); // '>'
        if self.cmd.words.is_empty() && self.cmd.redirs.is_empty() {
            self.cmd.line = self.line;
        }
        let append = self.peek() == Some('>');
        if append {
            self.bump();
        } else if self.peek() == Some('&') {
            self.bump();
            let to = match self.bump() {
                Some('1') => 1,
                Some('2') => 2,
                _ => return Err(unsupported(">& other than 1 or 2")),
            };
            self.cmd.redirs.push(Redir::Dup { fd, to });
            return Ok(());
        }
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.bump();
        }
        let path = self.word()?;
        if path.pieces.is_empty() && !path.quoted {
            return Err(invalid("a redirection needs a file name"));
        }
        self.cmd.redirs.push(Redir::File { fd, path, append });
        self.dangling = false;
        Ok(())
    }

    /// One word, up to unquoted whitespace or an operator.
    fn word(&mut self) -> Result<Word, SyntaxError> {
        let mut w = Word::default();
        let mut text = String::new();
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\n' | ';' | '&' | '|' | '<' | '>' | '(' | ')' | '`' => break,
                '\\' => {
                    self.bump();
                    match self.bump() {
                        Some('\n') => {}
                        Some(c) => {
                            text.push(c);
                            w.quoted = true;
                        }
                        None => text.push('\\'),
                    }
                }
                '\'' => {
                    self.bump();
                    w.quoted = true;
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
                    w.quoted = true;
                    self.double_quoted(&mut w, &mut text)?;
                }
                '$' => {
                    self.bump();
                    self.dollar(&mut w, &mut text)?;
                }
                _ => {
                    self.bump();
                    text.push(c);
                }
            }
        }
        flush(&mut w, &mut text);
        Ok(w)
    }

    fn double_quoted(&mut self, w: &mut Word, text: &mut String) -> Result<(), SyntaxError> {
        loop {
            match self.bump() {
                None => return Err(invalid("unterminated quote \"")),
                Some('"') => return Ok(()),
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
                Some('$') => self.dollar(w, text)?,
                Some('`') => return Err(unsupported("`...` command substitution")),
                Some(c) => text.push(c),
            }
        }
    }

    /// After a `$`: `$?`, `$NAME`, `${NAME}`, or a literal `$`.
    fn dollar(&mut self, w: &mut Word, text: &mut String) -> Result<(), SyntaxError> {
        let name = match self.peek() {
            Some('?') => {
                self.bump();
                "?".to_string()
            }
            Some('{') => {
                self.bump();
                let mut inner = String::new();
                loop {
                    match self.bump() {
                        None => return Err(invalid("unterminated ${")),
                        Some('}') => break,
                        Some(c) => inner.push(c),
                    }
                }
                if !is_name(&inner) && inner != "?" {
                    return Err(unsupported(&format!("${{{inner}}}")));
                }
                inner
            }
            Some('(') => return Err(unsupported("$(...) command substitution")),
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let mut name = String::new();
                while let Some(c) = self
                    .peek()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                {
                    self.bump();
                    name.push(c);
                }
                name
            }
            Some(c) if c.is_ascii_digit() || "$#@*!-".contains(c) => {
                return Err(unsupported(&format!("${c}")));
            }
            _ => {
                text.push('$');
                return Ok(());
            }
        };
        flush(w, text);
        w.pieces.push(Piece::Var(name));
        Ok(())
    }
}

fn flush(w: &mut Word, text: &mut String) {
    if !text.is_empty() {
        w.pieces.push(Piece::Text(std::mem::take(text)));
    }
}

fn is_name(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses a script; the error carries the line it was found on.
pub fn parse(src: &str) -> Result<Script, (SyntaxError, usize)> {
    Parser {
        chars: src.char_indices().peekable(),
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

impl<'a> Shell<'a> {
    fn expand(&self, w: &Word) -> Option<String> {
        let mut s = String::new();
        for p in &w.pieces {
            match p {
                Piece::Text(t) => s.push_str(t),
                Piece::Var(v) if v == "?" => s.push_str(&self.status.to_string()),
                Piece::Var(v) => s.push_str(self.process.getenv(v).unwrap_or("")),
            }
        }
        (w.quoted || !s.is_empty()).then_some(s)
    }

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
            match r {
                Redir::File { fd, path, append } => {
                    let path = self.expand(path).unwrap_or_default();
                    let o = file_output(&p.fs, &path, *append);
                    set_fd(&mut p, *fd, o);
                }
                Redir::Dup { fd, to } => {
                    let o = if *to == 1 {
                        p.stdout.clone()
                    } else {
                        p.stderr.clone()
                    };
                    set_fd(&mut p, *fd, o);
                }
            }
        }
        let argv: Vec<String> = cmd.words.iter().filter_map(|w| self.expand(w)).collect();
        let Some(name) = argv.first() else {
            return 0;
        };
        match name.as_str() {
            "true" | ":" => 0,
            "false" => 1,
            "echo" => programs::echo(p, argv).await,
            "exit" => {
                self.exited = true;
                match argv.get(1).map(|a| a.parse::<i64>()) {
                    None => self.status,
                    Some(Ok(n)) => (n & 0xff) as i32,
                    Some(Err(_)) => {
                        p.err(&format!(
                            "{}exit: {}: numeric argument required\n",
                            self.prefix(cmd.line),
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

fn set_fd(p: &mut Process<'_>, fd: u8, o: Output) {
    if fd == 1 {
        p.stdout = o;
    } else {
        p.stderr = o;
    }
}

/// The `sh` / `bash` program: `sh -c SCRIPT [NAME [ARGS...]]`; other
/// options (`-e`, `-x`, `-l`, ...) are accepted and ignored.
pub(crate) fn shell_program<'a>(p: Process<'a>, argv: Vec<String>) -> BoxFuture<'a, i32> {
    Box::pin(async move {
        let argv0 = argv.first().cloned().unwrap_or_else(|| "sh".into());
        // `-c` alone or among other short options (`-ec`); long options
        // (`--norc`, `--login`) and other short ones are skipped.
        let is_c = |a: &str| a.starts_with('-') && !a.starts_with("--") && a.contains('c');
        let mut args = argv
            .iter()
            .skip(1)
            .skip_while(|a| a.len() > 1 && a.starts_with('-') && !is_c(a) && *a != "--");
        let saw_c = args.next().is_some_and(|a| is_c(a));
        if !saw_c {
            p.err(&format!(
                "{argv0}: meshsim: only `{argv0} -c SCRIPT` is simulated (no interactive shell, no script from stdin or a file)\n"
            ))
            .await;
            return 126;
        }
        let Some(src) = args.next() else {
            p.err(&format!("{argv0}: -c: option requires an argument\n"))
                .await;
            return 2;
        };
        let name = args.next().cloned().unwrap_or_else(|| argv0.clone());
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
            "A=1 echo",
            "sleep 1 &",
            "cat < f",
            "echo ${A:-b}",
            "echo $1",
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
        let script = parse(r#"curl x >/dev/null 2>&1 "a b"'c'\ d"#).unwrap();
        let cmd = &script.items[0].1;
        assert_eq!(cmd.words.len(), 3);
        assert_eq!(cmd.words[2].pieces, vec![Piece::Text("a bc d".into())]);
        assert_eq!(cmd.redirs[1], Redir::Dup { fd: 2, to: 1 });
        assert!(matches!(
            &cmd.redirs[0],
            Redir::File {
                fd: 1,
                append: false,
                ..
            }
        ));
    }
}
