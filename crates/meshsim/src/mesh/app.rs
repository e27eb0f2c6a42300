//! What the destination application answers once a request reaches it.
//!
//! The walk-through's nginx answers what its ConfigMap's `nginx.conf` says
//! (`return 200 "Hello world - np-test-nginx-2!";`), so the simulated nginx
//! reads that file the way the container would see it: a ConfigMap volume
//! mounted by the nginx container that yields a file named `nginx.conf`. The
//! small parser here understands `server { listen N; location [=] PATH {
//! return CODE ["TEXT"]; } }` and `default_type`; anything else falls back to
//! nginx's stock behaviour (the welcome page at `/`, 404 elsewhere).
//!
//! Documented defaults for other pods:
//! - annotation `meshsim.dev/response: TEXT` answers `200` with `TEXT` (and
//!   `meshsim.dev/response-status: CODE` changes the status);
//! - otherwise the answer is `200` with the body
//!   `meshsim: NAMESPACE/POD answered METHOD PATH on port PORT\n`.
//!
//! Pods of Istio's ext_authz sample (`samples/extauthz`: label `app=ext-authz`
//! or an image named `ext-authz`) answer on its HTTP port 8000 as the sample's
//! HTTP check server does: `200` when the request carries `x-ext-authz: allow`,
//! else `403` with the body
//! ``denied by ext_authz for not found header `x-ext-authz: allow` in the request``;
//! both with the sample's `x-ext-authz-check-result` (`allowed`/`denied`),
//! `x-ext-authz-check-received` and `x-ext-authz-additional-header-override`
//! headers, and the sample's log line ([`ext_authz_log_line`]). This is the
//! server CUSTOM policies' ext_authz filters call in meshsim. Its gRPC check
//! (port 9000, [`ext_authz_grpc_allows`]) is served to Envoy's gRPC ext_authz
//! by [`crate::mesh::grpcauthz`].

use serde_json::Value;

/// An HTTP answer from the application container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppAnswer {
    pub status: u16,
    /// Headers as the application sends them (before any sidecar rewrites).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the answer came from nginx (it also writes an access log line).
    pub nginx: bool,
}

/// The nginx version the simulated image reports.
pub const NGINX_SERVER: &str = "nginx/1.29.0";

const NGINX_WELCOME: &str = "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n<style>\nhtml { color-scheme: light dark; }\nbody { width: 35em; margin: 0 auto;\nfont-family: Tahoma, Verdana, Arial, sans-serif; }\n</style>\n</head>\n<body>\n<h1>Welcome to nginx!</h1>\n<p>If you see this page, the nginx web server is successfully installed and\nworking. Further configuration is required.</p>\n\n<p>For online documentation and support please refer to\n<a href=\"http://nginx.org/\">nginx.org</a>.<br/>\nCommercial support is available at\n<a href=\"http://nginx.com/\">nginx.com</a>.</p>\n\n<p><em>Thank you for using nginx.</em></p>\n</body>\n</html>\n";

const NGINX_404: &str = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx/1.29.0</center>\r\n</body>\r\n</html>\r\n";

/// The HTTP date format (`Tue, 08 Jul 2025 19:33:00 GMT`).
pub fn http_date() -> String {
    jiff::Timestamp::now()
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// A container's image name: its last path segment, without tag or digest.
fn image_name(container: &Value) -> &str {
    let image = container["image"].as_str().unwrap_or("");
    let repo = image.rsplit('/').next().unwrap_or(image);
    repo.split([':', '@']).next().unwrap_or(repo)
}

/// The pod's first container whose image name passes `f`.
fn container_by_image(pod: &Value, f: impl Fn(&str) -> bool) -> Option<&Value> {
    let containers = pod["spec"]["containers"].as_array()?;
    containers.iter().find(|c| f(image_name(c)))
}

/// The text of the `nginx.conf` an nginx container of `pod` sees, looked up
/// through its volumes among `configmaps` (those of its namespace).
fn nginx_conf(pod: &Value, configmaps: &[Value]) -> Option<String> {
    let nginx = container_by_image(pod, |n| n == "nginx")?;
    let volumes = pod["spec"]["volumes"].as_array()?;
    for m in nginx["volumeMounts"].as_array().into_iter().flatten() {
        let Some(vname) = m["name"].as_str() else {
            continue;
        };
        let Some(vol) = volumes.iter().find(|v| v["name"].as_str() == Some(vname)) else {
            continue;
        };
        let Some(cm_name) = vol["configMap"]["name"].as_str() else {
            continue;
        };
        let Some(cm) = configmaps
            .iter()
            .find(|c| c["metadata"]["name"].as_str() == Some(cm_name))
        else {
            continue;
        };
        let mount = m["mountPath"].as_str().unwrap_or("");
        let sub = m["subPath"].as_str().filter(|s| !s.is_empty());
        // (key, file name inside the mount)
        let files: Vec<(String, String)> = match vol["configMap"]["items"].as_array() {
            Some(items) => items
                .iter()
                .filter_map(|i| {
                    Some((
                        i["key"].as_str()?.to_string(),
                        i["path"].as_str()?.to_string(),
                    ))
                })
                .collect(),
            None => cm["data"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| (k.clone(), k.clone()))
                .collect(),
        };
        for (key, file) in files {
            let path = match sub {
                Some(s) if s == file => mount.to_string(),
                Some(_) => continue,
                None => format!("{}/{file}", mount.trim_end_matches('/')),
            };
            if (path == "/etc/nginx/nginx.conf" || (sub.is_none() && file == "nginx.conf"))
                && let Some(text) = cm["data"][key.as_str()].as_str()
            {
                return Some(text.to_string());
            }
        }
    }
    None
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Open,
    Close,
    Semi,
}

fn tokenize(text: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '{' | '}' | ';' => {
                chars.next();
                out.push(match c {
                    '{' => Tok::Open,
                    '}' => Tok::Close,
                    _ => Tok::Semi,
                });
            }
            '"' | '\'' => {
                chars.next();
                let mut w = String::new();
                while let Some(d) = chars.next() {
                    if d == '\\' {
                        if let Some(e) = chars.next() {
                            w.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                other => other,
                            });
                        }
                    } else if d == c {
                        break;
                    } else {
                        w.push(d);
                    }
                }
                out.push(Tok::Word(w));
            }
            _ => {
                let mut w = String::new();
                while let Some(&d) = chars.peek() {
                    if d.is_whitespace() || matches!(d, '{' | '}' | ';' | '"' | '\'') {
                        break;
                    }
                    w.push(d);
                    chars.next();
                }
                out.push(Tok::Word(w));
            }
        }
    }
    out
}

/// A parsed block: directives (name + args) and nested blocks.
#[derive(Debug, Default, Clone)]
struct Block {
    args: Vec<String>,
    name: String,
    directives: Vec<Vec<String>>,
    children: Vec<Block>,
}

fn parse_block(toks: &[Tok], pos: &mut usize, depth: usize, block: &mut Block) {
    let mut words: Vec<String> = Vec::new();
    while *pos < toks.len() {
        let t = &toks[*pos];
        *pos += 1;
        match t {
            Tok::Word(w) => words.push(w.clone()),
            Tok::Semi => {
                if !words.is_empty() {
                    block.directives.push(std::mem::take(&mut words));
                }
            }
            Tok::Open => {
                let mut child = Block::default();
                if let Some((name, args)) = words.split_first() {
                    child.name = name.clone();
                    child.args = args.to_vec();
                }
                words.clear();
                if depth < 32 {
                    parse_block(toks, pos, depth + 1, &mut child);
                    block.children.push(child);
                } else {
                    // Too deep: skip to the matching brace.
                    let mut level = 1;
                    while *pos < toks.len() && level > 0 {
                        match toks[*pos] {
                            Tok::Open => level += 1,
                            Tok::Close => level -= 1,
                            _ => {}
                        }
                        *pos += 1;
                    }
                }
            }
            Tok::Close => return,
        }
    }
}

fn directive<'a>(b: &'a Block, name: &str) -> Option<&'a [String]> {
    b.directives
        .iter()
        .find(|d| d.first().map(String::as_str) == Some(name))
        .map(|d| &d[1..])
}

/// The answer nginx configured with `conf` gives to `path` on `port`.
fn nginx_answer(conf: &str, method: &str, path: &str, port: u16) -> AppAnswer {
    let toks = tokenize(conf);
    let mut root = Block::default();
    let mut pos = 0;
    while pos < toks.len() {
        parse_block(&toks, &mut pos, 0, &mut root);
    }
    let http = root.children.iter().find(|b| b.name == "http");
    let servers: Vec<&Block> = http
        .map(|h| h.children.iter().filter(|b| b.name == "server").collect())
        .unwrap_or_default();
    let listens = |s: &Block| {
        s.directives
            .iter()
            .filter(|d| d.first().map(String::as_str) == Some("listen"))
            .filter_map(|d| d.get(1))
            .filter_map(|a| a.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()))
            .collect::<Vec<u16>>()
    };
    let server = servers
        .iter()
        .find(|s| listens(s).contains(&port))
        .or_else(|| servers.first());
    let mut default_type = http
        .and_then(|h| directive(h, "default_type"))
        .and_then(|a| a.first().cloned())
        .unwrap_or_else(|| "text/plain".into());
    let path_only = path.split(['?', '#']).next().unwrap_or(path);
    let location = server.and_then(|s| {
        if let Some(t) = directive(s, "default_type").and_then(|a| a.first()) {
            default_type = t.clone();
        }
        let mut best: Option<(&Block, usize)> = None;
        for l in s.children.iter().filter(|b| b.name == "location") {
            match l.args.as_slice() {
                [eq, p] if eq == "=" && p == path_only => return Some(l),
                [p] if path_only.starts_with(p.as_str())
                    && best.is_none_or(|(_, n)| p.len() > n) =>
                {
                    best = Some((l, p.len()))
                }
                _ => {}
            }
        }
        best.map(|(l, _)| l)
    });
    let head = method.eq_ignore_ascii_case("HEAD");
    let mk = |status: u16, ctype: &str, body: &str, extra: Vec<(String, String)>| {
        let mut headers = vec![
            ("Server".to_string(), NGINX_SERVER.to_string()),
            ("Date".to_string(), http_date()),
            ("Content-Type".to_string(), ctype.to_string()),
            ("Content-Length".to_string(), body.len().to_string()),
            ("Connection".to_string(), "keep-alive".to_string()),
        ];
        headers.extend(extra);
        AppAnswer {
            status,
            headers,
            body: if head {
                Vec::new()
            } else {
                body.as_bytes().to_vec()
            },
            nginx: true,
        }
    };
    if let Some(loc) = location {
        if let Some(t) = directive(loc, "default_type").and_then(|a| a.first()) {
            default_type = t.clone();
        }
        if let Some(args) = directive(loc, "return") {
            let code = args.first().and_then(|c| c.parse::<u16>().ok());
            match (code, args.get(1)) {
                (Some(c), Some(url)) if matches!(c, 301 | 302 | 303 | 307 | 308) => {
                    return mk(c, "text/html", "", vec![("Location".into(), url.clone())]);
                }
                (Some(c), Some(text)) => return mk(c, &default_type, text, Vec::new()),
                (Some(c), None) => return mk(c, &default_type, "", Vec::new()),
                (None, Some(_)) | (None, None) => {
                    if let Some(url) = args.first() {
                        return mk(302, "text/html", "", vec![("Location".into(), url.clone())]);
                    }
                }
            }
        }
    }
    if path_only == "/" || path_only == "/index.html" {
        mk(200, "text/html", NGINX_WELCOME, Vec::new())
    } else {
        mk(404, "text/html", NGINX_404, Vec::new())
    }
}

/// nginx's access log line (its `combined` format) for one request.
pub fn nginx_log_line(
    client: &str,
    method: &str,
    path: &str,
    status: u16,
    bytes_sent: usize,
    user_agent: Option<&str>,
) -> String {
    let t = jiff::Timestamp::now().strftime("%d/%b/%Y:%H:%M:%S +0000");
    let ua = user_agent.unwrap_or("-");
    format!(
        "{client} - - [{t}] \"{method} {path} HTTP/1.1\" {status} {bytes_sent} \"-\" \"{ua}\" \"-\""
    )
}

/// The name of the pod's nginx container (its image's last path segment
/// starts with `nginx`), which writes nginx's access log line.
pub fn nginx_container(pod: &Value) -> Option<&str> {
    container_by_image(pod, |n| n.starts_with("nginx"))?["name"].as_str()
}

/// The HTTP port of the ext_authz sample's check server.
pub const EXT_AUTHZ_HTTP_PORT: u16 = 8000;
/// The request header the sample checks, and the value that allows.
pub const EXT_AUTHZ_CHECK_HEADER: &str = "x-ext-authz";
pub const EXT_AUTHZ_ALLOWED_VALUE: &str = "allow";
/// The sample's answer headers.
pub const EXT_AUTHZ_RESULT_HEADER: &str = "x-ext-authz-check-result";
pub const EXT_AUTHZ_RECEIVED_HEADER: &str = "x-ext-authz-check-received";
pub const EXT_AUTHZ_OVERRIDE_HEADER: &str = "x-ext-authz-additional-header-override";

/// The gRPC port of the ext_authz sample's check server.
pub const EXT_AUTHZ_GRPC_PORT: u16 = 9000;
/// The service account the sample's gRPC check allows without the header
/// (its `-allow_service_account` default).
pub const EXT_AUTHZ_GRPC_ALLOWED_SA: &str = "a";
/// The value the sample's gRPC check puts in the override header.
pub const EXT_AUTHZ_GRPC_OVERRIDE_VALUE: &str = "grpc-additional-header-override-value";

/// The sample's gRPC check: the `x-ext-authz` header decides when present
/// (`allow` allows), else a source principal of service account `a`.
pub fn ext_authz_grpc_allows(headers: &[(String, String)], principal: &str) -> bool {
    match header(headers, EXT_AUTHZ_CHECK_HEADER) {
        Some(v) => v == EXT_AUTHZ_ALLOWED_VALUE,
        None => principal.ends_with(&format!("/sa/{EXT_AUTHZ_GRPC_ALLOWED_SA}")),
    }
}

/// The line the sample logs for one gRPC (v3) check:
/// `2006/01/02 15:04:05 [gRPCv3][denied]: HOSTPATH, attributes: ...`.
pub fn ext_authz_grpc_log_line(allowed: bool, host: &str, path: &str, attributes: &str) -> String {
    let t = jiff::Timestamp::now().strftime("%Y/%m/%d %H:%M:%S");
    let verdict = if allowed { "allowed" } else { "denied" };
    format!("{t} [gRPCv3][{verdict}]: {host}{path}, attributes: {attributes}")
}

/// The body of the sample's denials.
pub fn ext_authz_deny_body() -> String {
    format!(
        "denied by ext_authz for not found header `{EXT_AUTHZ_CHECK_HEADER}: {EXT_AUTHZ_ALLOWED_VALUE}` in the request"
    )
}

/// Whether `pod` runs Istio's ext_authz sample (label `app=ext-authz`, or a
/// container image whose last path segment is `ext-authz`), and the name of
/// its container.
pub fn ext_authz_container(pod: &Value) -> Option<&str> {
    let containers = pod["spec"]["containers"].as_array()?;
    let by_image = container_by_image(pod, |n| n == "ext-authz");
    let labelled = pod["metadata"]["labels"]["app"].as_str() == Some("ext-authz");
    let c = by_image.or_else(|| {
        labelled
            .then(|| {
                containers
                    .iter()
                    .find(|c| c["name"].as_str() != Some(crate::mesh::sidecar::PROXY_CONTAINER))
            })
            .flatten()
    })?;
    c["name"].as_str()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Go's canonical header key (`x-ext-authz` -> `X-Ext-Authz`).
fn canonical_key(k: &str) -> String {
    k.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// What the sample prints about one check (after `[HTTP][allowed]: ` or
/// `[HTTP][denied]: `): `METHOD HOSTPATH, headers: map[...], body: [...]`,
/// headers as Go prints an `http.Header` (canonical keys, sorted).
fn ext_authz_summary(method: &str, path: &str, headers: &[(String, String)]) -> String {
    let host = header(headers, "host").unwrap_or("");
    let mut by_key: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("host") {
            continue;
        }
        by_key.entry(canonical_key(k)).or_default().push(v);
    }
    let map: Vec<String> = by_key
        .iter()
        .map(|(k, v)| format!("{k}:[{}]", v.join(" ")))
        .collect();
    format!(
        "{method} {host}{path}, headers: map[{}], body: []",
        map.join(" ")
    )
}

/// The line the sample logs for one check (Go's `log` layout:
/// `2006/01/02 15:04:05 [HTTP][denied]: ...`).
pub fn ext_authz_log_line(
    allowed: bool,
    method: &str,
    path: &str,
    headers: &[(String, String)],
) -> String {
    let t = jiff::Timestamp::now().strftime("%Y/%m/%d %H:%M:%S");
    let verdict = if allowed { "allowed" } else { "denied" };
    format!(
        "{t} [HTTP][{verdict}]: {}",
        ext_authz_summary(method, path, headers)
    )
}

/// The sample's HTTP check: allowed with `x-ext-authz: allow`, else 403.
fn ext_authz_answer(method: &str, path: &str, headers: &[(String, String)]) -> AppAnswer {
    let allowed = header(headers, EXT_AUTHZ_CHECK_HEADER) == Some(EXT_AUTHZ_ALLOWED_VALUE);
    let received = ext_authz_summary(method, path, headers);
    let mut h = vec![
        ("Date".into(), http_date()),
        (
            EXT_AUTHZ_RESULT_HEADER.into(),
            if allowed { "allowed" } else { "denied" }.into(),
        ),
        (
            EXT_AUTHZ_OVERRIDE_HEADER.into(),
            header(headers, EXT_AUTHZ_OVERRIDE_HEADER)
                .unwrap_or("")
                .into(),
        ),
        (EXT_AUTHZ_RECEIVED_HEADER.into(), received),
    ];
    let body = if allowed {
        Vec::new()
    } else {
        h.push(("Content-Type".into(), "text/plain; charset=utf-8".into()));
        ext_authz_deny_body().into_bytes()
    };
    h.push(("Content-Length".into(), body.len().to_string()));
    AppAnswer {
        status: if allowed { 200 } else { 403 },
        headers: h,
        body: if method.eq_ignore_ascii_case("HEAD") {
            Vec::new()
        } else {
            body
        },
        nginx: false,
    }
}

/// What the application of `pod` answers to `method path` on `port` for a
/// request with these headers (`host` among them); `configmaps` are those of
/// its namespace (nginx reads its configuration from one).
pub fn answer(
    pod: &Value,
    configmaps: &[Value],
    method: &str,
    path: &str,
    port: u16,
    headers: &[(String, String)],
) -> AppAnswer {
    let ann = &pod["metadata"]["annotations"];
    if port == EXT_AUTHZ_HTTP_PORT
        && ann["meshsim.dev/response"].is_null()
        && ext_authz_container(pod).is_some()
    {
        return ext_authz_answer(method, path, headers);
    }
    let plain = |status: u16, text: &str| AppAnswer {
        status,
        headers: vec![
            ("Date".into(), http_date()),
            ("Content-Type".into(), "text/plain; charset=utf-8".into()),
            ("Content-Length".into(), text.len().to_string()),
        ],
        body: if method.eq_ignore_ascii_case("HEAD") {
            Vec::new()
        } else {
            text.as_bytes().to_vec()
        },
        nginx: false,
    };
    if let Some(text) = ann["meshsim.dev/response"].as_str() {
        let status = ann["meshsim.dev/response-status"]
            .as_str()
            .and_then(|s| s.trim().parse::<u16>().ok())
            .filter(|s| (100..=599).contains(s))
            .unwrap_or(200);
        return plain(status, text);
    }
    if container_by_image(pod, |n| n == "nginx").is_some() {
        let conf = nginx_conf(pod, configmaps).unwrap_or_default();
        return nginx_answer(&conf, method, path, port);
    }
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    plain(
        200,
        &format!("meshsim: {ns}/{name} answered {method} {path} on port {port}\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn walkthrough_pod() -> Value {
        json!({
            "metadata": {"name": "np-test-nginx-2-abc", "namespace": "np-test-2"},
            "spec": {
                "containers": [{"name": "np-test-nginx-2", "image": "nginx:latest",
                    "volumeMounts": [{"name": "config-vol", "mountPath": "/etc/nginx/"}]}],
                "volumes": [{"name": "config-vol", "configMap": {"name": "config-np-test-nginx-2",
                    "items": [{"key": "nginx.conf", "path": "nginx.conf"}]}}]
            }
        })
    }

    fn cms() -> Vec<Value> {
        vec![
            json!({"metadata": {"name": "config-np-test-nginx-2"}, "data": {"nginx.conf": "\nevents {\n}\nhttp {\n   server {\n       listen 80;\n       location / {\n           return 200 \"Hello world - np-test-nginx-2!\";\n       }\n   }\n}\n"}}),
        ]
    }

    #[test]
    fn walkthrough_nginx_answers_its_configmap() {
        let a = answer(&walkthrough_pod(), &cms(), "GET", "/", 80, &[]);
        assert_eq!(a.status, 200);
        assert_eq!(
            String::from_utf8(a.body).unwrap(),
            "Hello world - np-test-nginx-2!"
        );
        assert!(
            a.headers
                .contains(&("Content-Type".into(), "text/plain".into()))
        );
        assert!(a.nginx);
        // Without its ConfigMap nginx shows the welcome page.
        let a = answer(&walkthrough_pod(), &[], "GET", "/", 80, &[]);
        assert!(
            String::from_utf8(a.body)
                .unwrap()
                .contains("Welcome to nginx!")
        );
        let a = answer(&walkthrough_pod(), &[], "GET", "/x", 80, &[]);
        assert_eq!(a.status, 404);
    }

    #[test]
    fn nginx_locations_and_garbage() {
        let conf = "http { default_type application/json; server { listen 8080; location = /exact { return 201 '{\"a\":1}'; } location /api { return 418 \"teapot\\n\"; } location /old { return 301 http://x/new; } } }";
        let a = nginx_answer(conf, "GET", "/exact", 8080);
        assert_eq!((a.status, a.body.as_slice()), (201, &b"{\"a\":1}"[..]));
        assert!(
            a.headers
                .contains(&("Content-Type".into(), "application/json".into()))
        );
        assert_eq!(
            nginx_answer(conf, "GET", "/api/v1?x", 8080).body,
            b"teapot\n"
        );
        let r = nginx_answer(conf, "GET", "/old", 8080);
        assert_eq!(r.status, 301);
        assert!(
            r.headers
                .contains(&("Location".into(), "http://x/new".into()))
        );
        for junk in [
            "{{{{",
            "}}}}",
            "http { server { location / { return",
            "\"unterminated",
            "",
        ] {
            let a = nginx_answer(junk, "GET", "/", 80);
            assert!(a.status == 200 || a.status == 404);
        }
        let deep = "http {".repeat(10_000);
        assert_eq!(nginx_answer(&deep, "HEAD", "/", 80).body, b"");
    }

    #[test]
    fn ext_authz_sample_allows_only_with_its_header() {
        let p = json!({"metadata": {"name": "ext-authz-1", "namespace": "foo", "labels": {"app": "ext-authz"}},
            "spec": {"containers": [{"name": "ext-authz", "image": "gcr.io/istio-testing/ext-authz:latest"}]}});
        assert_eq!(ext_authz_container(&p), Some("ext-authz"));
        let h = |v: &str| {
            vec![
                ("host".to_string(), "np-test-nginx-2".to_string()),
                ("x-ext-authz".to_string(), v.to_string()),
            ]
        };
        let a = answer(&p, &[], "GET", "/", 8000, &h("allow"));
        assert_eq!(a.status, 200);
        assert!(
            a.headers
                .contains(&("x-ext-authz-check-result".into(), "allowed".into()))
        );
        let a = answer(&p, &[], "GET", "/x", 8000, &h("deny"));
        assert_eq!(a.status, 403);
        assert_eq!(
            String::from_utf8(a.body).unwrap(),
            "denied by ext_authz for not found header `x-ext-authz: allow` in the request"
        );
        assert!(
            a.headers
                .contains(&("x-ext-authz-check-result".into(), "denied".into()))
        );
        assert_eq!(answer(&p, &[], "GET", "/", 8000, &[]).status, 403);
        // Other ports, and other pods, answer as before.
        assert_eq!(answer(&p, &[], "GET", "/", 8080, &[]).status, 200);
        let line = ext_authz_log_line(false, "GET", "/x", &h("deny"));
        assert!(
            line.ends_with(
                "[HTTP][denied]: GET np-test-nginx-2/x, headers: map[X-Ext-Authz:[deny]], body: []"
            ),
            "{line}"
        );
        // gRPC: the header decides when present, else service account `a`.
        assert!(ext_authz_grpc_allows(&h("allow"), ""));
        assert!(!ext_authz_grpc_allows(
            &h("deny"),
            "spiffe://cluster.local/ns/x/sa/a"
        ));
        assert!(ext_authz_grpc_allows(
            &[],
            "spiffe://cluster.local/ns/x/sa/a"
        ));
        assert!(!ext_authz_grpc_allows(
            &[],
            "spiffe://cluster.local/ns/x/sa/default"
        ));
        let other = json!({"metadata": {"name": "p", "labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        assert_eq!(ext_authz_container(&other), None);
    }

    #[test]
    fn annotation_and_default() {
        let p = json!({"metadata": {"name": "p", "namespace": "n", "annotations": {"meshsim.dev/response": "hi", "meshsim.dev/response-status": "503"}}, "spec": {"containers": [{"image": "busybox"}]}});
        let a = answer(&p, &[], "GET", "/", 80, &[]);
        assert_eq!((a.status, a.body.as_slice()), (503, &b"hi"[..]));
        let p = json!({"metadata": {"name": "p", "namespace": "n"}, "spec": {"containers": [{"image": "busybox"}]}});
        let a = answer(&p, &[], "POST", "/x", 8080, &[]);
        assert_eq!(
            String::from_utf8(a.body).unwrap(),
            "meshsim: n/p answered POST /x on port 8080\n"
        );
    }
}
