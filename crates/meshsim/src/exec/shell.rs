//! A small POSIX-ish shell for `sh -c` / `bash -c` scripts, the way users
//! probe connectivity (`bash -c "echo '' && curl -sf ... || echo 'Failed'"`).
//!
//! Supported: sequences with `;` and newlines, `&&`, `||`, pipelines `a | b`
//! (stages run concurrently over in-memory pipes), `!`, single and double
//! quotes, backslash escapes, `$VAR`, `${VAR}`, `${VAR:-default}`, `$?`, `$0`..`$9`,
//! `$#`, `$@`, command substitution `$(...)` and backticks, assignments
//! (`A=1`, `A=1 cmd`), redirections `>`, `>>`, `<`, `2>&1`, `>&2`, `&>` onto the
//! exec's virtual file system, comments, and the builtins `exit`, `echo`,
//! `printf`, `true`, `false`, `:`, `export`, `unset`, `cd`, `pwd`, `test`/`[`,
//! `exec`. Control structures (`if`, `for`, `while`, `case`, functions,
//! subshells) are not supported and fail with a message saying so. Error
//! messages follow the dialect the shell was started as: bash, dash (Debian's
//! `sh`) or busybox ash (Alpine's `sh`).

use std::collections::HashSet;

use futures::future::BoxFuture;

use super::io::{Input, Output, file_output};
use super::programs::{self, Process, basename, lookup};

/// Which shell's messages to imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Bash,
    /// Debian's `/bin/sh`.
    Dash,
    /// busybox `sh` (Alpine, busybox images).
    Ash,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    /// Unquoted literal text.
    Lit(String),
    /// Quoted literal text (no field splitting, keeps empty words).
    QLit(String),
    Var {
        name: String,
        quoted: bool,
        /// `${VAR:-default}` (colon form when `.0`).
        default: Option<(bool, String)>,
    },
    Subst {
        script: String,
        quoted: bool,
    },
}

type Word = Vec<Part>;

#[derive(Debug, Clone, Copy, PartialEq)]
enum RedirKind {
    Out,
    Append,
    In,
    /// `N>&M`
    Dup(u8),
    /// `&>`
    Both,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(Word),
    Op(&'static str),
    Newline,
    Redir(u8, RedirKind),
}

/// Why a script could not be parsed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SyntaxError {
    #[error("unterminated quote {0}")]
    UnterminatedQuote(char),
    #[error("unexpected token {0}")]
    UnexpectedToken(String),
    #[error("unexpected end of file")]
    UnexpectedEof,
    #[error("unsupported shell syntax: {0}")]
    Unsupported(String),
}

struct Lexer<'s> {
    s: &'s [u8],
    src: &'s str,
    i: usize,
    line: usize,
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

impl<'s> Lexer<'s> {
    fn new(src: &'s str) -> Self {
        Lexer {
            s: src.as_bytes(),
            src,
            i: 0,
            line: 1,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn peek_at(&self, off: usize) -> Option<u8> {
        self.s.get(self.i + off).copied()
    }

    /// Tokens with the line each starts on.
    fn tokens(mut self) -> Result<Vec<(Tok, usize)>, SyntaxError> {
        let mut out = Vec::new();
        loop {
            while matches!(self.peek(), Some(b' ' | b'\t')) {
                self.i += 1;
            }
            let Some(c) = self.peek() else { break };
            let line = self.line;
            match c {
                b'\n' => {
                    self.i += 1;
                    self.line += 1;
                    out.push((Tok::Newline, line));
                }
                b'#' => {
                    while let Some(c) = self.peek() {
                        if c == b'\n' {
                            break;
                        }
                        self.i += 1;
                    }
                }
                b'\\' if self.peek_at(1) == Some(b'\n') => {
                    self.i += 2;
                    self.line += 1;
                }
                b';' => {
                    if self.peek_at(1) == Some(b';') {
                        return Err(SyntaxError::Unsupported(";;".into()));
                    }
                    self.i += 1;
                    out.push((Tok::Op(";"), line));
                }
                b'&' => match self.peek_at(1) {
                    Some(b'&') => {
                        self.i += 2;
                        out.push((Tok::Op("&&"), line));
                    }
                    Some(b'>') => {
                        self.i += 2;
                        out.push((Tok::Redir(1, RedirKind::Both), line));
                    }
                    _ => {
                        self.i += 1;
                        out.push((Tok::Op("&"), line));
                    }
                },
                b'|' => {
                    if self.peek_at(1) == Some(b'|') {
                        self.i += 2;
                        out.push((Tok::Op("||"), line));
                    } else {
                        self.i += 1;
                        out.push((Tok::Op("|"), line));
                    }
                }
                b'(' | b')' => {
                    self.i += 1;
                    out.push((Tok::Op(if c == b'(' { "(" } else { ")" }), line));
                }
                b'<' | b'>' => {
                    let t = self.redirect(None);
                    out.push((t, line));
                }
                _ => {
                    let w = self.word()?;
                    // `2>`: a lone digit directly followed by a redirection.
                    if let [Part::Lit(d)] = w.as_slice()
                        && d.len() == 1
                        && d.as_bytes()[0].is_ascii_digit()
                        && matches!(self.peek(), Some(b'<' | b'>'))
                    {
                        let t = self.redirect(Some(d.as_bytes()[0] - b'0'));
                        out.push((t, line));
                        continue;
                    }
                    out.push((Tok::Word(w), line));
                }
            }
        }
        Ok(out)
    }

    fn redirect(&mut self, fd: Option<u8>) -> Tok {
        let c = self.s[self.i];
        self.i += 1;
        if c == b'<' {
            return Tok::Redir(fd.unwrap_or(0), RedirKind::In);
        }
        let fd = fd.unwrap_or(1);
        match self.peek() {
            Some(b'>') => {
                self.i += 1;
                Tok::Redir(fd, RedirKind::Append)
            }
            Some(b'&') if self.peek_at(1).is_some_and(|d| d.is_ascii_digit()) => {
                let n = self.s[self.i + 1] - b'0';
                self.i += 2;
                Tok::Redir(fd, RedirKind::Dup(n))
            }
            _ => Tok::Redir(fd, RedirKind::Out),
        }
    }

    fn word(&mut self) -> Result<Word, SyntaxError> {
        let mut parts: Word = Vec::new();
        let mut lit = String::new();
        let flush = |lit: &mut String, parts: &mut Word| {
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(lit)));
            }
        };
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')' => break,
                b'\\' => {
                    self.i += 1;
                    match self.peek() {
                        Some(b'\n') => {
                            self.i += 1;
                            self.line += 1;
                        }
                        Some(_) => {
                            let ch = self.take_char();
                            flush(&mut lit, &mut parts);
                            parts.push(Part::QLit(ch.to_string()));
                        }
                        None => lit.push('\\'),
                    }
                }
                b'\'' => {
                    flush(&mut lit, &mut parts);
                    self.i += 1;
                    let start = self.i;
                    loop {
                        match self.peek() {
                            None => return Err(SyntaxError::UnterminatedQuote('\'')),
                            Some(b'\'') => break,
                            Some(b'\n') => {
                                self.line += 1;
                                self.i += 1;
                            }
                            Some(_) => self.i += 1,
                        }
                    }
                    parts.push(Part::QLit(self.src[start..self.i].to_string()));
                    self.i += 1;
                }
                b'"' => {
                    flush(&mut lit, &mut parts);
                    self.i += 1;
                    self.double_quoted(&mut parts)?;
                }
                b'$' => {
                    flush(&mut lit, &mut parts);
                    self.dollar(&mut parts, false)?;
                }
                b'`' => {
                    flush(&mut lit, &mut parts);
                    let script = self.backtick()?;
                    parts.push(Part::Subst {
                        script,
                        quoted: false,
                    });
                }
                _ => lit.push(self.take_char()),
            }
        }
        flush(&mut lit, &mut parts);
        Ok(parts)
    }

    fn take_char(&mut self) -> char {
        let ch = self.src[self.i..].chars().next().unwrap_or('\u{fffd}');
        self.i += ch.len_utf8().max(1);
        ch
    }

    fn double_quoted(&mut self, parts: &mut Word) -> Result<(), SyntaxError> {
        let mut lit = String::new();
        // An empty "" still makes a word.
        parts.push(Part::QLit(String::new()));
        loop {
            match self.peek() {
                None => return Err(SyntaxError::UnterminatedQuote('"')),
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(b'$' | b'`' | b'"' | b'\\') => lit.push(self.take_char()),
                        Some(b'\n') => {
                            self.i += 1;
                            self.line += 1;
                        }
                        _ => lit.push('\\'),
                    }
                }
                Some(b'$') => {
                    if !lit.is_empty() {
                        parts.push(Part::QLit(std::mem::take(&mut lit)));
                    }
                    self.dollar(parts, true)?;
                }
                Some(b'`') => {
                    if !lit.is_empty() {
                        parts.push(Part::QLit(std::mem::take(&mut lit)));
                    }
                    let script = self.backtick()?;
                    parts.push(Part::Subst {
                        script,
                        quoted: true,
                    });
                }
                Some(b'\n') => {
                    self.line += 1;
                    self.i += 1;
                    lit.push('\n');
                }
                Some(_) => lit.push(self.take_char()),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::QLit(lit));
        }
        Ok(())
    }

    fn backtick(&mut self) -> Result<String, SyntaxError> {
        self.i += 1;
        let start = self.i;
        loop {
            match self.peek() {
                None => return Err(SyntaxError::UnterminatedQuote('`')),
                Some(b'`') => break,
                Some(b'\\') => self.i += 2,
                Some(_) => self.i += 1,
            }
        }
        let script = self.src[start..self.i.min(self.s.len())].to_string();
        self.i += 1;
        Ok(script)
    }

    fn dollar(&mut self, parts: &mut Word, quoted: bool) -> Result<(), SyntaxError> {
        self.i += 1; // '$'
        match self.peek() {
            Some(b'{') => {
                self.i += 1;
                let start = self.i;
                while let Some(c) = self.peek() {
                    if c == b'}' {
                        break;
                    }
                    self.i += 1;
                }
                if self.peek().is_none() {
                    return Err(SyntaxError::UnterminatedQuote('}'));
                }
                let inner = &self.src[start..self.i];
                self.i += 1;
                let (name, default) = if let Some((n, d)) = inner.split_once(":-") {
                    (n, Some((true, d.to_string())))
                } else if let Some((n, d)) = inner.split_once('-') {
                    (n, Some((false, d.to_string())))
                } else {
                    (inner, None)
                };
                let valid = !name.is_empty() && (name.bytes().all(is_name_char) || name.len() == 1);
                if !valid {
                    return Err(SyntaxError::Unsupported(format!("${{{inner}}}")));
                }
                parts.push(Part::Var {
                    name: name.to_string(),
                    quoted,
                    default,
                });
            }
            Some(b'(') => {
                if self.peek_at(1) == Some(b'(') {
                    return Err(SyntaxError::Unsupported("$((...))".into()));
                }
                self.i += 1;
                let start = self.i;
                let mut depth = 1;
                let mut q: Option<u8> = None;
                while let Some(c) = self.peek() {
                    match (q, c) {
                        (Some(b'\''), b'\'') | (Some(b'"'), b'"') => q = None,
                        (Some(_), b'\\') => self.i += 1,
                        (Some(_), _) => {}
                        (None, b'\'' | b'"') => q = Some(c),
                        (None, b'\\') => self.i += 1,
                        (None, b'(') => depth += 1,
                        (None, b')') => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
                if self.peek().is_none() {
                    return Err(SyntaxError::UnterminatedQuote(')'));
                }
                let script = self.src[start..self.i].to_string();
                self.i += 1;
                parts.push(Part::Subst { script, quoted });
            }
            Some(c) if is_name_start(c) => {
                let start = self.i;
                while self.peek().is_some_and(is_name_char) {
                    self.i += 1;
                }
                parts.push(Part::Var {
                    name: self.src[start..self.i].to_string(),
                    quoted,
                    default: None,
                });
            }
            Some(c) if c.is_ascii_digit() || b"?$#@*!-".contains(&c) => {
                self.i += 1;
                parts.push(Part::Var {
                    name: char::from(c).to_string(),
                    quoted,
                    default: None,
                });
            }
            _ => parts.push(if quoted {
                Part::QLit("$".into())
            } else {
                Part::Lit("$".into())
            }),
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default)]
struct Cmd {
    assigns: Vec<(String, Word)>,
    words: Vec<Word>,
    redirs: Vec<(u8, RedirKind, Option<Word>)>,
    line: usize,
}

impl Cmd {
    fn is_empty(&self) -> bool {
        self.assigns.is_empty() && self.words.is_empty() && self.redirs.is_empty()
    }
}

#[derive(Debug, Clone, Default)]
struct Pipeline {
    negate: bool,
    cmds: Vec<Cmd>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Conn {
    Seq,
    And,
    Or,
}

/// A parsed script: pipelines joined by `;`, `&&` and `||`.
#[derive(Debug, Clone, Default)]
pub struct Script {
    items: Vec<(Conn, Pipeline)>,
}

const KEYWORDS: &[&str] = &[
    "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac",
    "function", "{", "}", "select", "[[",
];

fn assignment(word: &Word) -> Option<(String, Word)> {
    let Some(Part::Lit(first)) = word.first() else {
        return None;
    };
    let (name, rest) = first.split_once('=')?;
    if name.is_empty() || !is_name_start(name.as_bytes()[0]) || !name.bytes().all(is_name_char) {
        return None;
    }
    let mut value: Word = Vec::new();
    if !rest.is_empty() {
        value.push(Part::Lit(rest.to_string()));
    }
    value.extend(word[1..].iter().cloned());
    Some((name.to_string(), value))
}

/// Parses a script; the error carries the line it was found on.
pub fn parse(src: &str) -> Result<Script, (SyntaxError, usize)> {
    let lexer = Lexer::new(src);
    let last_line = 1 + src.matches('\n').count();
    let toks = lexer.tokens().map_err(|e| (e, last_line))?;
    let mut script = Script::default();
    let mut cmd = Cmd::default();
    let mut pipe = Pipeline::default();
    let mut conn = Conn::Seq;
    // An operator that needs a following command (`&&`, `||`, `|`).
    let mut dangling = false;
    let mut it = toks.into_iter().peekable();
    while let Some((tok, line)) = it.next() {
        match tok {
            Tok::Word(w) => {
                if cmd.is_empty() {
                    cmd.line = line;
                }
                if cmd.words.is_empty() {
                    if let Some(a) = assignment(&w) {
                        cmd.assigns.push(a);
                        dangling = false;
                        continue;
                    }
                    if let [Part::Lit(l)] = w.as_slice() {
                        if l == "!" && cmd.is_empty() && pipe.cmds.is_empty() {
                            pipe.negate = !pipe.negate;
                            dangling = true;
                            continue;
                        }
                        if KEYWORDS.contains(&l.as_str()) {
                            return Err((SyntaxError::Unsupported(l.clone()), line));
                        }
                    }
                }
                cmd.words.push(w);
                dangling = false;
            }
            Tok::Redir(fd, kind) => {
                if cmd.is_empty() {
                    cmd.line = line;
                }
                let target = if let RedirKind::Dup(_) = kind {
                    None
                } else {
                    match it.next() {
                        Some((Tok::Word(w), _)) => Some(w),
                        Some((Tok::Op(op), l)) => {
                            return Err((SyntaxError::UnexpectedToken(op.into()), l));
                        }
                        Some((Tok::Newline, l)) => {
                            return Err((SyntaxError::UnexpectedToken("newline".into()), l));
                        }
                        Some((Tok::Redir(..), l)) => {
                            return Err((SyntaxError::UnexpectedToken(">".into()), l));
                        }
                        None => {
                            return Err((SyntaxError::UnexpectedToken("newline".into()), line));
                        }
                    }
                };
                cmd.redirs.push((fd, kind, target));
                dangling = false;
            }
            Tok::Op("(") | Tok::Op(")") => {
                return Err((SyntaxError::Unsupported("( ... )".into()), line));
            }
            Tok::Op("|") => {
                if cmd.is_empty() {
                    return Err((SyntaxError::UnexpectedToken("|".into()), line));
                }
                pipe.cmds.push(std::mem::take(&mut cmd));
                dangling = true;
            }
            Tok::Op(op @ ("&&" | "||")) => {
                if cmd.is_empty() {
                    return Err((SyntaxError::UnexpectedToken(op.into()), line));
                }
                pipe.cmds.push(std::mem::take(&mut cmd));
                script.items.push((conn, std::mem::take(&mut pipe)));
                conn = if op == "&&" { Conn::And } else { Conn::Or };
                dangling = true;
            }
            Tok::Op(op) => {
                // `;` or `&` (background jobs run in the foreground here).
                if cmd.is_empty() {
                    if dangling || pipe.negate || !pipe.cmds.is_empty() || op == ";" {
                        return Err((SyntaxError::UnexpectedToken(op.into()), line));
                    }
                    continue;
                }
                pipe.cmds.push(std::mem::take(&mut cmd));
                script.items.push((conn, std::mem::take(&mut pipe)));
                conn = Conn::Seq;
                dangling = false;
            }
            Tok::Newline => {
                if cmd.is_empty() {
                    // A newline after `&&`, `||` or `|` continues the command.
                    continue;
                }
                pipe.cmds.push(std::mem::take(&mut cmd));
                script.items.push((conn, std::mem::take(&mut pipe)));
                conn = Conn::Seq;
                dangling = false;
            }
        }
    }
    if !cmd.is_empty() {
        pipe.cmds.push(cmd);
    } else if dangling {
        return Err((SyntaxError::UnexpectedEof, last_line));
    }
    if !pipe.cmds.is_empty() {
        script.items.push((conn, pipe));
    }
    Ok(script)
}

#[derive(Clone)]
struct Io {
    stdin: Input,
    stdout: Output,
    stderr: Output,
}

/// Shell state for one script run.
#[derive(Clone)]
struct Shell<'a> {
    process: Process<'a>,
    vars: Vec<(String, String)>,
    exported: HashSet<String>,
    status: i32,
    dialect: Dialect,
    /// `$0`, also the prefix of error messages.
    name: String,
    positional: Vec<String>,
    exit: Option<i32>,
    /// Started with `-c` (bash says `-c: line N`).
    command_mode: bool,
    interactive: bool,
    cwd: String,
}

impl<'a> Shell<'a> {
    fn getvar(&self, name: &str) -> Option<String> {
        match name {
            "?" => Some(self.status.to_string()),
            "$" => Some("1".into()),
            "!" => None,
            "-" => Some(if self.command_mode { "hBc" } else { "hB" }.into()),
            "#" => Some(self.positional.len().to_string()),
            "0" => Some(self.name.clone()),
            "@" | "*" => Some(self.positional.join(" ")),
            n if n.len() == 1 && n.as_bytes()[0].is_ascii_digit() => {
                let i = usize::from(n.as_bytes()[0] - b'0');
                self.positional.get(i - 1).cloned()
            }
            n => self
                .vars
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone()),
        }
    }

    fn setvar(&mut self, name: &str, value: String) {
        if let Some(slot) = self.vars.iter_mut().find(|(k, _)| k == name) {
            slot.1 = value;
        } else {
            self.vars.push((name.to_string(), value));
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        self.vars
            .iter()
            .filter(|(k, _)| self.exported.contains(k))
            .cloned()
            .collect()
    }

    /// `bash: line 3: ` / `sh: 3: ` / `sh: `.
    fn prefix(&self, line: usize) -> String {
        match self.dialect {
            Dialect::Bash if self.interactive => format!("{}: ", self.name),
            Dialect::Bash => format!("{}: line {line}: ", self.name),
            Dialect::Dash => format!("{}: {line}: ", self.name),
            Dialect::Ash => format!("{}: ", self.name),
        }
    }

    fn syntax_message(&self, err: &SyntaxError, line: usize, src: &str) -> String {
        let n = &self.name;
        let c = if self.command_mode { "-c: " } else { "" };
        let src_line = src.lines().nth(line.saturating_sub(1)).unwrap_or("");
        match (self.dialect, err) {
            (_, SyntaxError::Unsupported(what)) => {
                format!("{n}: meshsim: unsupported shell syntax: {what}\n")
            }
            (Dialect::Bash, SyntaxError::UnterminatedQuote(q)) => {
                let q = if *q == ')' { '(' } else { *q };
                format!("{n}: {c}line {line}: unexpected EOF while looking for matching `{q}'\n")
            }
            (Dialect::Bash, SyntaxError::UnexpectedToken(t)) => format!(
                "{n}: {c}line {line}: syntax error near unexpected token `{t}'\n{n}: {c}line {line}: `{src_line}'\n"
            ),
            (Dialect::Bash, SyntaxError::UnexpectedEof) => {
                format!("{n}: {c}line {line}: syntax error: unexpected end of file\n")
            }
            (Dialect::Dash, SyntaxError::UnterminatedQuote(_)) => {
                format!("{n}: {line}: Syntax error: Unterminated quoted string\n")
            }
            (Dialect::Dash, SyntaxError::UnexpectedToken(t)) => {
                let t = if t == "newline" { "newline" } else { t };
                format!("{n}: {line}: Syntax error: \"{t}\" unexpected\n")
            }
            (Dialect::Dash, SyntaxError::UnexpectedEof) => {
                format!("{n}: {line}: Syntax error: end of file unexpected\n")
            }
            (Dialect::Ash, SyntaxError::UnterminatedQuote(_)) => {
                format!("{n}: syntax error: unterminated quoted string\n")
            }
            (Dialect::Ash, SyntaxError::UnexpectedToken(t)) => {
                format!("{n}: syntax error: unexpected \"{t}\"\n")
            }
            (Dialect::Ash, SyntaxError::UnexpectedEof) => {
                format!("{n}: syntax error: unexpected end of file\n")
            }
        }
    }

    fn io(&self) -> Io {
        Io {
            stdin: self.process.stdin.clone(),
            stdout: self.process.stdout.clone(),
            stderr: self.process.stderr.clone(),
        }
    }

    /// Parses and runs `src`, returning the status.
    async fn run_source(&mut self, src: &str, io: &Io) -> i32 {
        match parse(src) {
            Ok(script) => self.run_script(&script, io).await,
            Err((e, line)) => {
                let _ = io
                    .stderr
                    .write_str(&self.syntax_message(&e, line, src))
                    .await;
                self.status = 2;
                if !self.interactive {
                    self.exit = Some(2);
                }
                2
            }
        }
    }

    async fn run_script(&mut self, script: &Script, io: &Io) -> i32 {
        for (conn, pipe) in &script.items {
            if self.exit.is_some() {
                break;
            }
            let run = match conn {
                Conn::Seq => true,
                Conn::And => self.status == 0,
                Conn::Or => self.status != 0,
            };
            if run {
                self.status = self.run_pipeline(pipe, io).await;
            }
        }
        self.exit.unwrap_or(self.status)
    }

    async fn run_pipeline(&mut self, pipe: &Pipeline, io: &Io) -> i32 {
        let status = if pipe.cmds.len() == 1 {
            self.run_simple(&pipe.cmds[0], io).await
        } else {
            let n = pipe.cmds.len();
            let mut stages = Vec::with_capacity(n);
            let mut stdin = io.stdin.clone();
            for (i, cmd) in pipe.cmds.iter().enumerate() {
                let (stdout, next) = if i + 1 == n {
                    (io.stdout.clone(), None)
                } else {
                    let (w, r) = tokio::io::duplex(64 * 1024);
                    (Output::from_writer(w), Some(Input::from_reader(r)))
                };
                let stage_io = Io {
                    stdin: stdin.clone(),
                    stdout: stdout.clone(),
                    stderr: io.stderr.clone(),
                };
                // Every stage runs in a subshell, as in POSIX shells.
                let mut sub = self.clone();
                let last = i + 1 == n;
                stages.push(async move {
                    let st = sub.run_simple(cmd, &stage_io).await;
                    drop(stage_io);
                    if !last {
                        stdout.shutdown().await;
                    }
                    st
                });
                if let Some(next) = next {
                    stdin = next;
                }
            }
            let results = futures::future::join_all(stages).await;
            results.last().copied().unwrap_or(0)
        };
        if pipe.negate {
            i32::from(status == 0)
        } else {
            status
        }
    }

    fn subst<'b>(&'b self, script: &'b str) -> BoxFuture<'b, String> {
        Box::pin(async move {
            let mut sub = self.clone();
            sub.exit = None;
            let out = Output::buffer();
            let io = Io {
                stdin: self.process.stdin.clone(),
                stdout: out.clone(),
                stderr: self.process.stderr.clone(),
            };
            sub.run_source(script, &io).await;
            let mut s = String::from_utf8_lossy(&out.captured()).into_owned();
            while s.ends_with('\n') {
                s.pop();
            }
            s
        })
    }

    /// Expands a word into fields (with field splitting of unquoted expansions).
    async fn expand(&self, word: &Word, split: bool) -> Vec<String> {
        let mut fields: Vec<String> = Vec::new();
        let mut cur = String::new();
        let mut have = false;
        for part in word {
            let (text, quoted) = match part {
                Part::Lit(t) => (t.clone(), true),
                Part::QLit(t) => (t.clone(), true),
                Part::Var {
                    name,
                    quoted,
                    default,
                } => {
                    let v = self.getvar(name);
                    let v = match (v, default) {
                        (Some(v), Some((true, d))) if v.is_empty() => d.clone(),
                        (Some(v), _) => v,
                        (None, Some((_, d))) => d.clone(),
                        (None, None) => String::new(),
                    };
                    (v, *quoted)
                }
                Part::Subst { script, quoted } => (self.subst(script).await, *quoted),
            };
            if quoted || !split {
                cur.push_str(&text);
                have = have || quoted || !text.is_empty();
                if matches!(part, Part::QLit(_)) {
                    have = true;
                }
                continue;
            }
            // Unquoted expansion: split on blanks.
            let mut pieces = text.split([' ', '\t', '\n']).peekable();
            let starts_blank = text.starts_with([' ', '\t', '\n']);
            if starts_blank && have {
                fields.push(std::mem::take(&mut cur));
                have = false;
            }
            let mut first = true;
            while let Some(p) = pieces.next() {
                if p.is_empty() {
                    continue;
                }
                if !first && have {
                    fields.push(std::mem::take(&mut cur));
                }
                cur.push_str(p);
                have = true;
                first = false;
                let _ = pieces.peek();
            }
            if text.ends_with([' ', '\t', '\n']) && have {
                fields.push(std::mem::take(&mut cur));
                have = false;
            }
        }
        if have {
            fields.push(cur);
        }
        fields
    }

    fn resolve_path(&self, p: &str) -> String {
        if p.starts_with('/') {
            p.to_string()
        } else if self.cwd.ends_with('/') {
            format!("{}{p}", self.cwd)
        } else {
            format!("{}/{p}", self.cwd)
        }
    }

    async fn run_simple(&mut self, cmd: &Cmd, io: &Io) -> i32 {
        let mut fields = Vec::new();
        for w in &cmd.words {
            fields.extend(self.expand(w, true).await);
        }
        let mut assigns = Vec::new();
        for (k, w) in &cmd.assigns {
            assigns.push((k.clone(), self.expand(w, false).await.concat()));
        }
        let mut io = io.clone();
        for (fd, kind, target) in &cmd.redirs {
            let path = match target {
                Some(w) => {
                    let f = self.expand(w, true).await;
                    if f.len() != 1 {
                        let raw = self.expand(w, false).await.concat();
                        let _ = io
                            .stderr
                            .write_str(&format!(
                                "{}{raw}: ambiguous redirect\n",
                                self.prefix(cmd.line)
                            ))
                            .await;
                        return 1;
                    }
                    self.resolve_path(&f[0])
                }
                None => String::new(),
            };
            match kind {
                RedirKind::Out | RedirKind::Append => {
                    let o = file_output(&self.process.fs, &path, *kind == RedirKind::Append);
                    match fd {
                        1 => io.stdout = o,
                        2 => io.stderr = o,
                        _ => {}
                    }
                }
                RedirKind::Both => {
                    let o = file_output(&self.process.fs, &path, false);
                    io.stdout = o.clone();
                    io.stderr = o;
                }
                RedirKind::In => match self.process.fs.read(&path) {
                    Ok(c) => io.stdin = Input::from_bytes(c),
                    Err(e) => {
                        let shown = target.as_ref().map(|_| path.clone()).unwrap_or_default();
                        let _ = io
                            .stderr
                            .write_str(&format!("{}{shown}: {e}\n", self.prefix(cmd.line)))
                            .await;
                        return 1;
                    }
                },
                RedirKind::Dup(n) => {
                    let src = match n {
                        1 => io.stdout.clone(),
                        2 => io.stderr.clone(),
                        _ => {
                            let _ = io
                                .stderr
                                .write_str(&format!(
                                    "{}{n}: Bad file descriptor\n",
                                    self.prefix(cmd.line)
                                ))
                                .await;
                            return 1;
                        }
                    };
                    match fd {
                        1 => io.stdout = src,
                        2 => io.stderr = src,
                        _ => {}
                    }
                }
            }
        }
        if fields.is_empty() {
            for (k, v) in assigns {
                self.setvar(&k, v);
            }
            return 0;
        }
        let mut process = self.process.clone();
        process.stdin = io.stdin.clone();
        process.stdout = io.stdout.clone();
        process.stderr = io.stderr.clone();
        let mut env = self.env();
        for (k, v) in &assigns {
            env.retain(|(n, _)| n != k);
            env.push((k.clone(), v.clone()));
        }
        process.env = env;
        let name = fields[0].clone();
        match name.as_str() {
            "exit" => {
                let code = match fields.get(1) {
                    None => self.status,
                    Some(a) => match a.parse::<i64>() {
                        Ok(n) => (n & 0xff) as i32,
                        Err(_) => {
                            let msg = match self.dialect {
                                Dialect::Bash => format!(
                                    "{}exit: {a}: numeric argument required\n",
                                    self.prefix(cmd.line)
                                ),
                                Dialect::Dash => {
                                    format!("{}exit: Illegal number: {a}\n", self.prefix(cmd.line))
                                }
                                Dialect::Ash => {
                                    format!("{}exit: Illegal number: {a}\n", self.prefix(cmd.line))
                                }
                            };
                            let _ = io.stderr.write_str(&msg).await;
                            2
                        }
                    },
                };
                self.exit = Some(code);
                code
            }
            "true" | ":" => 0,
            "false" => 1,
            "echo" => programs::echo(process, fields).await,
            "printf" => programs::printf(process, fields).await,
            "export" => {
                for a in &fields[1..] {
                    if let Some((k, v)) = a.split_once('=') {
                        self.setvar(k, v.to_string());
                        self.exported.insert(k.to_string());
                    } else {
                        self.exported.insert(a.clone());
                    }
                }
                0
            }
            "unset" => {
                for a in &fields[1..] {
                    self.vars.retain(|(k, _)| k != a);
                    self.exported.remove(a);
                }
                0
            }
            "set" => 0,
            "cd" => {
                let dir = fields.get(1).cloned().unwrap_or_else(|| "/root".into());
                self.cwd = self.resolve_path(&dir);
                self.setvar("PWD", self.cwd.clone());
                0
            }
            "pwd" => {
                let _ = io.stdout.write_str(&format!("{}\n", self.cwd)).await;
                0
            }
            "test" | "[" => {
                let mut args: Vec<&str> = fields[1..].iter().map(String::as_str).collect();
                if name == "[" {
                    if args.last() != Some(&"]") {
                        let _ = io
                            .stderr
                            .write_str(&format!("{}[: missing `]'\n", self.prefix(cmd.line)))
                            .await;
                        return 2;
                    }
                    args.pop();
                }
                match test_expr(&args, &self.process.fs) {
                    Some(true) => 0,
                    Some(false) => 1,
                    None => 2,
                }
            }
            "exec" => {
                if fields.len() == 1 {
                    return 0;
                }
                let status = self
                    .run_external(&cmd.line, process, fields[1..].to_vec())
                    .await;
                self.exit = Some(status);
                status
            }
            _ => self.run_external(&cmd.line, process, fields).await,
        }
    }

    async fn run_external(&self, line: &usize, process: Process<'a>, argv: Vec<String>) -> i32 {
        let name = argv[0].clone();
        match lookup(process.target, process.services, &name) {
            Some(prog) => prog.run(process, argv).await,
            None => {
                let what = match (self.dialect, name.contains('/')) {
                    (Dialect::Bash, false) => "command not found",
                    (Dialect::Bash, true) => "No such file or directory",
                    _ => "not found",
                };
                let _ = process
                    .stderr
                    .write_str(&format!("{}{name}: {what}\n", self.prefix(*line)))
                    .await;
                127
            }
        }
    }
}

/// Evaluates `test` arguments; `None` on a malformed expression.
fn test_expr(args: &[&str], fs: &super::io::VirtualFs) -> Option<bool> {
    match args {
        [] => Some(false),
        ["!", rest @ ..] => test_expr(rest, fs).map(|b| !b),
        [s] => Some(!s.is_empty()),
        ["-n", s] => Some(!s.is_empty()),
        ["-z", s] => Some(s.is_empty()),
        ["-e" | "-f" | "-r" | "-s", p] => Some(fs.read(p).is_ok()),
        ["-d", p] => Some(matches!(fs.read(p), Err(super::io::FsError::IsDirectory))),
        [a, "=" | "==", b] => Some(a == b),
        [a, "!=", b] => Some(a != b),
        [a, op, b] => {
            let x: i64 = a.trim().parse().ok()?;
            let y: i64 = b.trim().parse().ok()?;
            Some(match *op {
                "-eq" => x == y,
                "-ne" => x != y,
                "-lt" => x < y,
                "-le" => x <= y,
                "-gt" => x > y,
                "-ge" => x >= y,
                _ => return None,
            })
        }
        _ => None,
    }
}

/// Which dialect a shell executable speaks in `target`.
pub fn dialect_for(argv0: &str, image: &str, tools: &[String]) -> Dialect {
    match basename(argv0) {
        "bash" => Dialect::Bash,
        "ash" => Dialect::Ash,
        "dash" => Dialect::Dash,
        _ => {
            let busybox = image.contains("alpine")
                || image.contains("busybox")
                || tools.iter().any(|t| t == "busybox");
            if busybox { Dialect::Ash } else { Dialect::Dash }
        }
    }
}

/// The `sh` / `bash` program: `sh -c SCRIPT [NAME [ARGS...]]`, or a script
/// read from stdin (line by line with a prompt when there is a terminal).
pub(crate) fn shell_program<'a>(p: Process<'a>, argv: Vec<String>) -> BoxFuture<'a, i32> {
    Box::pin(async move {
        let argv0 = argv.first().cloned().unwrap_or_else(|| "sh".into());
        let dialect = dialect_for(&argv0, &p.target.image, &p.target.tools);
        let mut script: Option<String> = None;
        let mut rest = argv.iter().skip(1);
        let mut operands: Vec<String> = Vec::new();
        let mut saw_c = false;
        while let Some(a) = rest.next() {
            if a == "--" {
                operands.extend(rest.by_ref().cloned());
                break;
            }
            if a.starts_with('-') && a.len() > 1 && operands.is_empty() {
                if a[1..].contains('c') {
                    saw_c = true;
                }
                // Other options (-e, -x, -l, -i, ...) are accepted and ignored.
                continue;
            }
            operands.push(a.clone());
            operands.extend(rest.by_ref().cloned());
            break;
        }
        if saw_c {
            if operands.is_empty() {
                let msg = match dialect {
                    Dialect::Bash => format!("{argv0}: -c: option requires an argument\n"),
                    _ => format!("{argv0}: 0: -c requires an argument\n"),
                };
                p.err(&msg).await;
                return 2;
            }
            script = Some(operands.remove(0));
        }
        let name = if saw_c && !operands.is_empty() {
            operands.remove(0)
        } else {
            argv0.clone()
        };
        let vars = p.env.clone();
        let exported = vars.iter().map(|(k, _)| k.clone()).collect();
        let interactive = script.is_none() && p.tty;
        let mut shell = Shell {
            process: p,
            vars,
            exported,
            status: 0,
            dialect,
            name,
            positional: operands,
            exit: None,
            command_mode: saw_c,
            interactive,
            cwd: "/".into(),
        };
        let io = shell.io();
        if let Some(src) = script {
            return shell.run_source(&src, &io).await;
        }
        if !interactive {
            let src = match io.stdin.read_to_end().await {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(_) => return 1,
            };
            let no_stdin = Io {
                stdin: Input::empty(),
                ..io.clone()
            };
            return shell.run_source(&src, &no_stdin).await;
        }
        repl(&mut shell, &io).await
    })
}

/// An interactive shell on a terminal: prompt, echo what is typed (the
/// terminal's job on a real tty), run each line.
async fn repl(shell: &mut Shell<'_>, io: &Io) -> i32 {
    let prompt = match shell.dialect {
        Dialect::Bash => format!("root@{}:/# ", shell.process.target.pod),
        Dialect::Dash => "# ".to_string(),
        Dialect::Ash => "/ # ".to_string(),
    };
    let mut line: Vec<u8> = Vec::new();
    let _ = io.stdout.write_str(&prompt).await;
    loop {
        let chunk = match io.stdin.read_chunk().await {
            Ok(Some(c)) => c,
            _ => {
                let _ = io.stdout.write_str("exit\n").await;
                return shell.status;
            }
        };
        for &b in chunk.iter() {
            match b {
                b'\r' | b'\n' => {
                    let _ = io.stdout.write(b"\n").await;
                    let src = String::from_utf8_lossy(&line).into_owned();
                    line.clear();
                    // Commands typed at the prompt do not read the terminal here.
                    let cmd_io = Io {
                        stdin: Input::empty(),
                        ..io.clone()
                    };
                    shell.run_source(&src, &cmd_io).await;
                    if let Some(code) = shell.exit {
                        return code;
                    }
                    let _ = io.stdout.write_str(&prompt).await;
                }
                0x7f | 0x08 => {
                    if line.pop().is_some() {
                        let _ = io.stdout.write(b"\x08 \x08").await;
                    }
                }
                0x03 => {
                    line.clear();
                    let _ = io.stdout.write(b"^C\n").await;
                    shell.status = 130;
                    let _ = io.stdout.write_str(&prompt).await;
                }
                0x04 if line.is_empty() => {
                    let _ = io.stdout.write_str("exit\n").await;
                    return shell.status;
                }
                _ => {
                    line.push(b);
                    let _ = io.stdout.write(&[b]).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(src: &str) -> Vec<usize> {
        parse(src)
            .unwrap()
            .items
            .iter()
            .map(|(_, p)| p.cmds.iter().map(|c| c.words.len()).sum())
            .collect()
    }

    #[test]
    fn parses_walkthrough_script() {
        let s = "echo '' && curl -sf --max-time 3 svc-np-test-nginx-2.np-test-2.svc.cluster.local || echo 'Failed calling np-test-nginx-2 from np-test-nginx-1'";
        let script = parse(s).unwrap();
        let conns: Vec<Conn> = script.items.iter().map(|(c, _)| *c).collect();
        assert_eq!(conns, vec![Conn::Seq, Conn::And, Conn::Or]);
        assert_eq!(words(s), vec![2, 5, 2]);
    }

    #[test]
    fn syntax_errors() {
        assert!(matches!(
            parse("echo 'x"),
            Err((SyntaxError::UnterminatedQuote('\''), 1))
        ));
        assert!(matches!(
            parse("&& echo"),
            Err((SyntaxError::UnexpectedToken(t), 1)) if t == "&&"
        ));
        assert!(matches!(
            parse("echo a &&"),
            Err((SyntaxError::UnexpectedEof, 1))
        ));
        assert!(matches!(
            parse("if true; then echo; fi"),
            Err((SyntaxError::Unsupported(_), 1))
        ));
    }

    #[test]
    fn redirections_lex() {
        let script = parse("curl x >/dev/null 2>&1").unwrap();
        let cmd = &script.items[0].1.cmds[0];
        assert_eq!(cmd.words.len(), 2);
        assert_eq!(cmd.redirs.len(), 2);
        assert_eq!(cmd.redirs[1].1, RedirKind::Dup(1));
        assert_eq!(cmd.redirs[1].0, 2);
    }
}
