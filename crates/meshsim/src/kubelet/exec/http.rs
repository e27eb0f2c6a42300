//! URL parsing and HTTP wording shared by the simulated `curl` and `wget`.

/// A parsed `http(s)://host:port/path?query` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url {
    pub scheme: String,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// The `Host` header value (port only when not the scheme's default).
    pub fn host_header(&self) -> String {
        if self.port == default_port(&self.scheme) {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL written back as `scheme://host[:port]/path`.
    pub fn effective(&self) -> String {
        format!("{}://{}{}", self.scheme, self.host_header(), self.path)
    }

    /// The request a client sends to this URL (no client sends a body).
    pub fn request(
        &self,
        method: String,
        headers: Vec<(String, String)>,
    ) -> crate::traffic::NetRequest {
        crate::traffic::NetRequest {
            method,
            scheme: self.scheme.clone(),
            host: self.host.clone(),
            port: self.port,
            path: self.path.clone(),
            headers,
            body: None,
        }
    }
}

/// wget's `--header 'Name: value'` options as (name, value), trimmed; an
/// option without a colon is dropped, as both wgets do.
pub(crate) fn header_options(options: &[String]) -> impl Iterator<Item = (String, String)> + '_ {
    options.iter().filter_map(|h| {
        let (k, v) = h.split_once(':')?;
        Some((k.trim().to_string(), v.trim().to_string()))
    })
}

/// Response headers as wget's `-S` prints them: `  Name: value` per line.
pub(crate) fn server_response_headers(headers: &[(String, String)]) -> String {
    headers
        .iter()
        .map(|(k, v)| format!("  {k}: {v}\n"))
        .collect()
}

/// The port a scheme's URLs default to.
fn default_port(scheme: &str) -> u16 {
    match scheme {
        "https" => 443,
        "gopher" => 70,
        _ => 80,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UrlError {
    /// A scheme other than http/https/gopher.
    UnsupportedScheme(String),
    /// Empty host, bad port, ...
    Malformed,
}

/// Parses a URL the way curl does for HTTP (scheme optional, default
/// http); `gopher://host:port/` is npexec's TCP probe.
pub(crate) fn parse_url(input: &str) -> Result<Url, UrlError> {
    let (scheme, rest) = match input.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("http".to_string(), input),
    };
    if !matches!(scheme.as_str(), "http" | "https" | "gopher") {
        return Err(UrlError::UnsupportedScheme(scheme));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let mut tail = &rest[end..];
    if let Some(i) = tail.find('#') {
        tail = &tail[..i];
    }
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = if let Some(stripped) = authority.strip_prefix('[') {
        let close = stripped.find(']').ok_or(UrlError::Malformed)?;
        let host = &authority[..close + 2];
        let after = &stripped[close + 1..];
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(UrlError::Malformed);
    }
    let default = default_port(&scheme);
    let port = match port {
        None | Some("") => default,
        Some(p) => p.parse::<u16>().map_err(|_| UrlError::Malformed)?,
    };
    let path = if tail.is_empty() {
        "/".to_string()
    } else if tail.starts_with('?') {
        format!("/{tail}")
    } else {
        tail.to_string()
    };
    Ok(Url {
        scheme,
        host: host.to_string(),
        port,
        path,
    })
}

/// Removes the dot segments of a URL's path (RFC 3986, section 5.2.4), as
/// curl does before sending unless `--path-as-is`: `/admin/./panel` and
/// `/admin/x/../panel` become `/admin/panel`. The query is kept as written;
/// percent-encoded dots (`%2e`) are not dot segments.
pub(crate) fn remove_dot_segments(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.find('?') {
        Some(i) => path_and_query.split_at(i),
        None => (path_and_query, ""),
    };
    let mut input = path;
    let mut out = String::new();
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest;
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest;
        } else if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") || input == "/.." {
            input = if input == "/.." { "/" } else { &input[3..] };
            match out.rfind('/') {
                Some(i) => out.truncate(i),
                None => out.clear(),
            }
        } else if input == "." || input == ".." {
            input = "";
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            out.push_str(&input[..end]);
            input = &input[end..];
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out.push_str(query);
    out
}

/// The value of an option that takes one, as the clients' getopt reads it:
/// written in the same word (`--name=V`, `-xV`: `inline`), else the next
/// argument (`i` then moves past it); None when there is none.
pub(crate) fn option_value(
    args: &[String],
    i: &mut usize,
    inline: Option<String>,
) -> Option<String> {
    if inline.is_some() {
        return inline;
    }
    let v = args.get(*i).cloned()?;
    *i += 1;
    Some(v)
}

/// The reason phrase for a status code.
pub(crate) fn reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("svc-a.ns.svc.cluster.local").unwrap();
        assert_eq!(
            (u.scheme.as_str(), u.host.as_str(), u.port, u.path.as_str()),
            ("http", "svc-a.ns.svc.cluster.local", 80, "/")
        );
        let u = parse_url("HTTPS://10.0.0.1:8443/a/b?x=1#frag").unwrap();
        assert_eq!(
            (u.scheme.as_str(), u.host.as_str(), u.port, u.path.as_str()),
            ("https", "10.0.0.1", 8443, "/a/b?x=1")
        );
        assert_eq!(u.host_header(), "10.0.0.1:8443");
        let u = parse_url("localhost:15000?x").unwrap();
        assert_eq!((u.port, u.path.as_str()), (15000, "/?x"));
        assert_eq!(parse_url("http://h:99999/"), Err(UrlError::Malformed));
    }

    #[test]
    fn dot_segments_go_as_curl_removes_them() {
        for (input, want) in [
            ("/admin/./panel", "/admin/panel"),
            ("/admin/x/../panel", "/admin/panel"),
            ("/admin/panel/..", "/admin/"),
            ("/admin/panel/.", "/admin/panel/"),
            ("/../../etc", "/etc"),
            ("/a/./b/../c?x=/../y", "/a/c?x=/../y"),
            ("/a/%2e%2e/b", "/a/%2e%2e/b"),
            ("/", "/"),
            ("/..", "/"),
            ("/a//b", "/a//b"),
        ] {
            assert_eq!(remove_dot_segments(input), want, "{input}");
        }
        assert_eq!(parse_url("http:///x"), Err(UrlError::Malformed));
        assert_eq!(
            parse_url("ftp://h/"),
            Err(UrlError::UnsupportedScheme("ftp".into()))
        );
    }
}
