//! A small HTTP/1.1 client for talking to Envoy over loopback: the
//! destination sidecar's inbound listener (after the PROXY protocol header
//! and, for mTLS, a TLS handshake) and the admin API.
//!
//! One request per connection, sent as curl sends it (keep-alive, so Envoy
//! answers as it would answer curl); the answer is read until its framing
//! (Content-Length, chunked, or the connection's close) says it is
//! complete, then the connection is dropped. A connection reset before any
//! answer byte is [`HttpError::Reset`] (a sidecar that refused the
//! connection), one closed in order is [`HttpError::Closed`] (network RBAC).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// An HTTP answer as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header names as sent (Envoy sends them lower-case).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why no answer came.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connection reset before an answer")]
    Reset,
    /// Closed in order (FIN) before any answer byte: what Envoy's network
    /// RBAC filter does to a denied connection once it has read its first
    /// bytes (a close with unread data is a reset instead).
    #[error("connection closed before an answer")]
    Closed,
    #[error("malformed answer: {0}")]
    Malformed(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Sends one request on `stream` and reads the answer.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
) -> Result<Response, HttpError> {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    let mut has_host = false;
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("connection") {
            continue;
        }
        has_host |= k.eq_ignore_ascii_case("host");
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_host {
        head.push_str("Host: localhost\r\n");
    }
    if let Some(b) = body
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if let Some(b) = body {
        out.extend_from_slice(b);
    }
    if let Err(e) = stream.write_all(&out).await {
        return Err(reset_or(e));
    }
    let _ = stream.flush().await;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if complete(&buf, method.eq_ignore_ascii_case("HEAD")) {
                    break;
                }
            }
            // A TLS peer that closes without close_notify, or a reset after
            // the answer: keep what arrived.
            Err(e) if !buf.is_empty() => {
                tracing::debug!("meshsim: reading answer: {e}");
                break;
            }
            Err(e) => return Err(reset_or(e)),
        }
    }
    if buf.is_empty() {
        return Err(HttpError::Closed);
    }
    parse(&buf, method.eq_ignore_ascii_case("HEAD"))
}

fn reset_or(e: std::io::Error) -> HttpError {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => HttpError::Reset,
        _ => HttpError::Io(e),
    }
}

/// The head of an answer in `buf`, once whole: where its body starts, its
/// status (None when unreadable) and its headers.
type Head = (usize, Option<u16>, Vec<(String, String)>);

fn head(buf: &[u8]) -> Option<Head> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let text = String::from_utf8_lossy(&buf[..end]);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.trim().parse().ok());
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some((end + 4, status, headers))
}

fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn chunked(headers: &[(String, String)]) -> bool {
    find(headers, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
}

fn content_length(headers: &[(String, String)]) -> Option<usize> {
    find(headers, "content-length").and_then(|v| v.parse().ok())
}

/// Whether `buf` holds a whole answer (by its Content-Length or chunked
/// framing; an answer framed by the close is never complete early).
fn complete(buf: &[u8], head_only: bool) -> bool {
    let Some((start, status, headers)) = head(buf) else {
        return false;
    };
    let status = status.unwrap_or(0);
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        return status >= 200 || status == 0;
    }
    let rest = &buf[start..];
    if chunked(&headers) {
        return rest.ends_with(b"0\r\n\r\n");
    }
    content_length(&headers).is_some_and(|n| rest.len() >= n)
}

fn parse(buf: &[u8], head_only: bool) -> Result<Response, HttpError> {
    let bad = |m: &str| HttpError::Malformed(m.to_string());
    let (start, status, headers) = head(buf).ok_or_else(|| bad("no end of headers"))?;
    let status = status.ok_or_else(|| bad("status line"))?;
    let rest = &buf[start..];
    let body = if head_only || status == 204 || status == 304 {
        Vec::new()
    } else if chunked(&headers) {
        dechunk(rest)
    } else if let Some(n) = content_length(&headers) {
        rest[..n.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size.filter(|s| *s > 0) else {
            break;
        };
        let start = eol + 2;
        let stop = (start + size).min(rest.len());
        out.extend_from_slice(&rest[start..stop]);
        rest = rest.get(stop + 2..).unwrap_or_default();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_and_chunked() {
        let r = parse(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 19\r\nserver: envoy\r\n\r\nRBAC: access denied", false).unwrap();
        assert_eq!(r.status, 403);
        assert_eq!(r.body, b"RBAC: access denied");
        assert_eq!(r.headers[1], ("server".into(), "envoy".into()));
        let r = parse(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(r.body, b"hello!");
        assert!(parse(b"garbage", false).is_err());
        assert!(complete(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            false
        ));
        assert!(!complete(
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok",
            false
        ));
        assert!(complete(
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n",
            true
        ));
        assert!(!complete(b"HTTP/1.1 200 OK\r\n\r\nbody", false));
    }
}
