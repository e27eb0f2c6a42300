//! Pictures (issue 20), end to end through the real kubectl on meshsim:
//! - `npexec -o dot` parses with Graphviz (`dot -Tsvg`) and has one edge per
//!   (FROM, TO, port, verdict) class, coloured by verdict;
//! - `npexec -o mermaid` passes a small checker of Mermaid's flowchart
//!   syntax (node and link lines only, every label quoted) with the edges
//!   expected;
//! - `npexec --matrix --explain -o html` and `authzcheck -o html` are opened
//!   in headless Chromium with the network pointed nowhere: the page logs
//!   nothing to the console (no blocked request, no error), the grid has one
//!   entry per probe with its verdict's class, the legend lists every verdict
//!   present, each entry carries its details, the CNI-not-enforcing case is
//!   marked, and a screenshot of the expected size is taken;
//! - a hostile HTTP body (`<script>`, quotes, control characters) and hostile
//!   istioctl output end up as text in the pages, never markup;
//! - rbaclog refuses all three pictures, authzcheck refuses dot and mermaid.
//!
//! When `dot` or `chromium` is missing the test fails under `CI=true` and
//! skips with a message otherwise. `UPDATE_SCREENSHOTS=1` writes the
//! README's screenshots to docs/.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use common::sim::{Sim, built, istioctl_dir, path_with, walkthrough};
use serde_json::Value;

/// A body full of markup, quotes and control characters (as YAML escapes).
const HOSTILE_BODY_YAML: &str =
    "\"<script>alert('body')</script> \\\"q\\\" <img src=x onerror=alert(1)> \\e[31mred\\a\"";

/// A label value with markup and a control character (as a YAML escape).
const HOSTILE_LABEL_YAML: &str = "\"<b>label</b>\\e[7m\"";

/// An `istioctl` whose `x authz check` prints a hostile policy name.
const HOSTILE_ISTIOCTL: &str = "#!/bin/sh\nif [ \"$1 $2 $3\" = \"x authz check\" ]; then\n  printf 'ACTION   AuthorizationPolicy   RULES\\n'\n  printf 'DENY     <script>alert(\"istioctl\")</script>\\033[2J.np-test-2   1\\n'\n  exit 0\nfi\nexec meshsim-istioctl \"$@\"\n";

const POLICIES: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-all-ingress
  namespace: np-test-2
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress: []
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-all
  namespace: np-test-1
spec:
  action: DENY
  rules:
  - {}
";

/// A tool the test needs: its path, or a skip (a failure under CI=true).
fn tool(name: &str) -> Option<PathBuf> {
    match which(name) {
        Some(p) => Some(p),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "{name} is not installed (CI=true): .ci/run installs it (apt-get install graphviz chromium)"
            )
        }
        None => {
            eprintln!("SKIP: {name} is not installed; apt-get install -y graphviz chromium");
            None
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

struct Fixture {
    sim: Sim,
    path: std::ffi::OsString,
}

impl Fixture {
    /// meshsim with the walk-through, a CNI that ignores NetworkPolicy, a
    /// hostile body from np-test-2, the policies above, and a hostile istioctl.
    fn start() -> Fixture {
        use std::os::unix::fs::PermissionsExt;
        let bins = built(&[
            "kubectl-npexec",
            "kubectl-authzcheck",
            "kubectl-rbaclog",
            "meshsim",
            "meshsim-istioctl",
        ]);
        let scen = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(walkthrough()).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), scen.path().join(entry.file_name())).unwrap();
            }
        }
        let np2 = scen.path().join("istio-np-2.yaml");
        let text = std::fs::read_to_string(&np2).unwrap();
        let anchor = "      annotations:\n";
        assert!(text.contains(anchor), "walk-through layout changed");
        let text = text.replacen(
            anchor,
            &format!("{anchor}        \"meshsim.dev/response\": {HOSTILE_BODY_YAML}\n"),
            1,
        );
        let anchor = "        app: np-test-nginx-2\n    spec:";
        assert!(text.contains(anchor), "walk-through layout changed");
        let text = text.replacen(
            anchor,
            &format!("        app: np-test-nginx-2\n        evil: {HOSTILE_LABEL_YAML}\n    spec:"),
            1,
        );
        std::fs::write(&np2, text).unwrap();
        let sim = Sim::builder()
            .flags(&["--time-scale", "0.05", "--cni-ignores-network-policy"])
            .scenario(scen.path().to_path_buf())
            .pods(2)
            .start();
        let tools = istioctl_dir(sim.path());
        std::fs::remove_file(tools.join("istioctl")).unwrap();
        std::fs::write(tools.join("istioctl"), HOSTILE_ISTIOCTL).unwrap();
        std::fs::set_permissions(
            tools.join("istioctl"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let path = path_with(&[&bins, &tools]);
        let f = Fixture { sim, path };
        let policies = f.sim.path().join("policies.yaml");
        std::fs::write(&policies, POLICIES).unwrap();
        let out = f.run(&["apply", "-f", policies.to_str().unwrap()]);
        assert!(out.status.success(), "apply: {}", stderr(&out));
        // The pictures show the policies in force: wait until np-test-1's sidecar
        // has the DENY (meshsim's propagation delay), observed by a probe.
        let out = f.run(&[
            "npexec",
            "np-test-2",
            "np-test-1",
            "--expect",
            "denied-rbac",
            "--wait",
            "30s",
        ]);
        assert!(
            out.status.success(),
            "DENY never reached the sidecar: {}",
            stderr(&out)
        );
        f
    }

    fn run(&self, args: &[&str]) -> Output {
        self.sim
            .kubectl_cmd(&self.path)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs a plugin command that must succeed (exit 0 or 1), returning stdout.
    fn stdout(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "kubectl {}: exit {:?}: {}",
            args.join(" "),
            out.status.code(),
            stderr(&out)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A Mermaid flowchart as this project writes it: `flowchart LR`, node lines
/// `nI["label"]`, link lines `nI -->|"label"| nJ` (or `-.->`), `linkStyle`
/// lines. Returns (from label, to label, link label, dotted); anything else
/// is an error naming the line.
fn check_mermaid(text: &str) -> Result<Vec<(String, String, String, bool)>, String> {
    let mut lines = text.lines();
    if lines.next() != Some("flowchart LR") {
        return Err("first line is not `flowchart LR`".into());
    }
    let quoted = |s: &str| -> Result<String, String> {
        let inner = s
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .ok_or_else(|| format!("label not quoted: {s}"))?;
        if inner.contains('"') || inner.contains("<script") || inner.chars().any(char::is_control) {
            return Err(format!(
                "label breaks out of its quotes or holds markup: {s}"
            ));
        }
        Ok(inner.to_string())
    };
    let id = |s: &str| -> Result<usize, String> {
        s.strip_prefix('n')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("bad node id {s:?}"))
    };
    let mut nodes: Vec<Option<String>> = Vec::new();
    let mut links = Vec::new();
    let mut styles = 0;
    for line in lines {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("linkStyle ") {
            let (i, style) = rest.split_once(' ').ok_or("linkStyle without style")?;
            if i.parse::<usize>().ok() != Some(styles) || !style.starts_with("stroke:#") {
                return Err(format!("bad linkStyle: {l}"));
            }
            styles += 1;
        } else if let Some((head, label)) = l.split_once('[') {
            let label = label
                .strip_suffix(']')
                .ok_or_else(|| format!("node line: {l}"))?;
            let i = id(head)?;
            if nodes.len() <= i {
                nodes.resize(i + 1, None);
            }
            nodes[i] = Some(quoted(label)?);
        } else {
            let (from, rest) = l.split_once(' ').ok_or_else(|| format!("line: {l}"))?;
            let (dotted, rest) = if let Some(r) = rest.strip_prefix("-->|") {
                (false, r)
            } else if let Some(r) = rest.strip_prefix("-.->|") {
                (true, r)
            } else {
                return Err(format!("not a link: {l}"));
            };
            let (label, to) = rest.rsplit_once("| ").ok_or_else(|| format!("link: {l}"))?;
            links.push((id(from)?, quoted(label)?, id(to)?, dotted));
        }
    }
    if styles != links.len() {
        return Err(format!(
            "{styles} linkStyle lines for {} links",
            links.len()
        ));
    }
    let name = |i: usize| -> Result<String, String> {
        nodes
            .get(i)
            .cloned()
            .flatten()
            .ok_or_else(|| format!("link to undefined node n{i}"))
    };
    links
        .into_iter()
        .map(|(f, label, t, dotted)| Ok((name(f)?, name(t)?, label, dotted)))
        .collect()
}

/// What headless Chromium made of a page: the DOM after load, the console
/// lines it logged, and the screenshot's size.
struct Browsed {
    dom: String,
    console: Vec<String>,
    screenshot: (u32, u32),
    png: Vec<u8>,
}

const WINDOW: (u32, u32) = (1280, 900);

fn chromium(browser: &Path, dir: &Path, page: &Path) -> Browsed {
    let url = format!("file://{}", page.display());
    let common = |cmd: &mut Command| {
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            // No network: every name resolves nowhere, every request goes to
            // a proxy that is not there.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--proxy-server=127.0.0.1:9",
            "--enable-logging=stderr",
            "--v=0",
            &format!("--window-size={},{}", WINDOW.0, WINDOW.1),
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()));
    };
    let mut cmd = Command::new(browser);
    common(&mut cmd);
    let out = cmd.arg("--dump-dom").arg(&url).output().unwrap();
    assert!(
        out.status.success(),
        "chromium --dump-dom: {}",
        stderr(&out)
    );
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut console: Vec<String> = stderr(&out)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    let shot = dir.join("shot.png");
    let _ = std::fs::remove_file(&shot);
    let mut cmd = Command::new(browser);
    common(&mut cmd);
    let out = cmd
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium --screenshot: {}",
        stderr(&out)
    );
    console.extend(
        stderr(&out)
            .lines()
            .filter(|l| l.contains(":CONSOLE"))
            .map(str::to_string),
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.len() > 1000, "screenshot is {} bytes", png.len());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "screenshot is not a PNG");
    // IHDR: width and height, big-endian, at bytes 16..24.
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let screenshot = (be(&png[16..20]), be(&png[20..24]));
    Browsed {
        dom,
        console,
        screenshot,
        png,
    }
}

/// The elements `<TAG ... class="..."` whose class list holds `class`, as
/// their opening tags.
fn tags_with_class<'a>(dom: &'a str, tag: &str, class: &str) -> Vec<&'a str> {
    let open = format!("<{tag} ");
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i..];
        let end = after.find('>').unwrap_or(after.len());
        let t = &after[..end];
        if let Some(c) = t.split("class=\"").nth(1).and_then(|c| c.split('"').next())
            && c.split(' ').any(|w| w == class)
        {
            out.push(t);
        }
        rest = &after[end..];
    }
    out
}

fn save_screenshot(b: &Browsed, name: &str) {
    if std::env::var("UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        let docs = common::repo_root().join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join(name), &b.png).unwrap();
    }
}

#[test]
fn pictures_end_to_end() {
    let (Some(dot), Some(browser)) = (tool("dot"), tool("chromium")) else {
        return;
    };
    let started = Instant::now();
    let f = Fixture::start();
    let work = tempfile::tempdir().unwrap();
    let matrix = [
        "npexec",
        "--matrix",
        "np-test-1",
        "np-test-2",
        "--no-same-namespace",
        "--explain",
    ];
    fn with<'a>(matrix: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = matrix.to_vec();
        v.extend_from_slice(extra);
        v
    }

    // The data every picture is drawn from.
    let json: Value = serde_json::from_str(&f.stdout(&with(&matrix, &["-o", "json"]))).unwrap();
    let probes = json.as_array().expect("an array of probes");
    let verdict = |from: &str| -> String {
        probes
            .iter()
            .find(|p| p["from"]["namespace"] == from)
            .and_then(|p| p["verdict"].as_str())
            .unwrap_or_else(|| panic!("no probe from {from}: {json}"))
            .to_string()
    };
    // The CNI ignores np-test-2's NetworkPolicy; np-test-1's sidecar denies.
    assert_eq!(verdict("np-test-1"), "allowed", "{json}");
    assert_eq!(verdict("np-test-2"), "denied-rbac", "{json}");
    assert_eq!(probes.len(), 2, "{json}");

    // dot: parses, one edge per class, coloured and classed by verdict.
    let dot_text = f.stdout(&with(&matrix, &["-o", "dot"]));
    let dot_file = work.path().join("m.dot");
    std::fs::write(&dot_file, &dot_text).unwrap();
    let svg = Command::new(&dot)
        .arg("-Tsvg")
        .arg(&dot_file)
        .output()
        .unwrap();
    assert!(
        svg.status.success(),
        "dot -Tsvg: {}\n{dot_text}",
        stderr(&svg)
    );
    let svg = String::from_utf8_lossy(&svg.stdout).into_owned();
    assert_eq!(svg.matches("class=\"node\"").count(), 2, "{svg}");
    assert_eq!(svg.matches("class=\"edge").count(), 2, "{svg}");
    for (from, to, v) in [
        ("np-test-1", "np-test-2", "allowed"),
        ("np-test-2", "np-test-1", "denied-rbac"),
    ] {
        let edge = dot_text
            .lines()
            .find(|l| l.contains(&format!("\"{from}\" -> \"{to}\"")))
            .unwrap_or_else(|| panic!("no edge {from} -> {to}: {dot_text}"));
        assert!(edge.contains(&format!("class=\"{v}\"")), "{edge}");
        assert!(edge.contains(&format!("80 {v}")), "{edge}");
    }
    // The CNI case: the engine expected a block, the probe passed: dashed.
    assert!(
        dot_text
            .lines()
            .any(|l| l.contains("\"np-test-1\" -> \"np-test-2\"") && l.contains("style=dashed")),
        "{dot_text}"
    );

    // Mermaid: the checker accepts it and finds the same edges.
    let mermaid = f.stdout(&with(&matrix, &["-o", "mermaid"]));
    let edges = check_mermaid(&mermaid).unwrap_or_else(|e| panic!("{e}:\n{mermaid}"));
    assert_eq!(edges.len(), 2, "{mermaid}");
    assert!(
        edges.iter().any(|(a, b, l, dotted)| a == "np-test-1"
            && b == "np-test-2"
            && l.starts_with("80 allowed")
            && *dotted),
        "{edges:?}"
    );
    assert!(
        edges.iter().any(|(a, b, l, _)| a == "np-test-2"
            && b == "np-test-1"
            && l.starts_with("80 denied-rbac")),
        "{edges:?}"
    );

    // --predict draws too: the engine's verdicts, NetworkPolicy included.
    let predicted = f.stdout(&[
        "npexec",
        "--matrix",
        "np-test-1",
        "np-test-2",
        "--predict",
        "-o",
        "mermaid",
    ]);
    let edges = check_mermaid(&predicted).unwrap_or_else(|e| panic!("{e}:\n{predicted}"));
    assert!(
        edges.iter().any(|(a, _, l, _)| a == "np-test-1" && l.starts_with("80 blocked-network (predicted)")),
        "{edges:?}"
    );

    // HTML: in the browser, offline.
    let html = f.stdout(&with(&matrix, &["-o", "html"]));
    assert!(
        !html.contains("http://") || !html.contains("src=\"http"),
        "external reference"
    );
    let page = work.path().join("matrix.html");
    std::fs::write(&page, &html).unwrap();
    let b = chromium(&browser, work.path(), &page);
    assert!(b.console.is_empty(), "console: {:#?}", b.console);
    assert_eq!(b.screenshot, WINDOW, "screenshot size");
    let entries = tags_with_class(&b.dom, "details", "probe");
    assert_eq!(
        entries.len(),
        probes.len(),
        "one entry per probe: {}",
        b.dom
    );
    for p in probes {
        let v = p["verdict"].as_str().unwrap();
        assert!(
            entries.iter().any(|t| t.contains(&format!("v-{v}"))),
            "no entry with class v-{v}"
        );
        let legend = tags_with_class(&b.dom, "li", &format!("v-{v}"));
        assert_eq!(legend.len(), 1, "legend lacks {v}");
    }
    assert_eq!(
        tags_with_class(&b.dom, "li", "v-blocked-network").len(),
        0,
        "legend lists only what is present"
    );
    // Each entry opens its details: pods, URL, status, body.
    for d in b.dom.split("<details ").skip(1) {
        let d = &d[..d.find("</details>").unwrap()];
        for field in [
            "<summary>",
            "class=\"from\"",
            "class=\"url\"",
            "class=\"verdict\"",
        ] {
            assert!(d.contains(field), "details lack {field}: {d}");
        }
    }
    assert!(b.dom.contains("class=\"status\">200<"), "{}", b.dom);
    assert_eq!(
        tags_with_class(&b.dom, "details", "cni-not-enforcing").len(),
        1
    );
    assert!(b.dom.contains("id=\"cni-not-enforcing\""));
    // The hostile body is text: no element came from it.
    assert!(
        !b.dom.contains("<script") && !b.dom.contains("<img"),
        "markup from the body"
    );
    assert!(
        b.dom.contains("&lt;script&gt;alert('body')&lt;/script&gt;"),
        "{}",
        b.dom
    );
    assert!(
        b.dom.contains("\\u{1b}[31mred"),
        "control characters shown as text"
    );
    assert!(
        b.dom
            .contains("kubectl npexec --matrix np-test-1 np-test-2"),
        "header names the command"
    );
    save_screenshot(&b, "npexec-matrix.png");

    // FROM TO runs and --predict draw the same page (no browser needed for
    // the counts): one entry per probe, the predicted ones marked.
    let from_to = f.stdout(&["npexec", "np-test-1", "np-test-2", "-o", "html"]);
    assert_eq!(
        tags_with_class(&from_to, "details", "probe").len(),
        1,
        "{from_to}"
    );
    assert!(
        from_to.contains("<title>npexec probes</title>"),
        "{from_to}"
    );
    let predict = f.stdout(&[
        "npexec",
        "--matrix",
        "np-test-1",
        "np-test-2",
        "--no-same-namespace",
        "--predict",
        "-o",
        "html",
    ]);
    let entries = tags_with_class(&predict, "details", "predicted");
    assert_eq!(entries.len(), 2, "{predict}");
    assert!(
        entries.iter().any(|t| t.contains("v-blocked-network")),
        "{entries:?}"
    );
    assert!(predict.contains("nothing was probed"), "{predict}");

    // authzcheck -o html: every layer, hostile istioctl output as text.
    let html = f.stdout(&[
        "authzcheck",
        "np-test-2",
        "deployment/np-test-nginx-2",
        "-o",
        "html",
    ]);
    let page = work.path().join("authz.html");
    std::fs::write(&page, &html).unwrap();
    let b = chromium(&browser, work.path(), &page);
    assert!(b.console.is_empty(), "console: {:#?}", b.console);
    assert_eq!(b.screenshot, WINDOW);
    for layer in [
        "Kubernetes NetworkPolicy",
        "Istio AuthorizationPolicy from the API",
        "What Envoy loaded",
        "Findings",
        "np-test-2/deny-all-ingress",
    ] {
        assert!(b.dom.contains(layer), "authzcheck page lacks {layer}");
    }
    assert!(!b.dom.contains("<script"), "markup from istioctl");
    assert!(
        !b.dom.contains("<b>"),
        "markup from a label: {}",
        &b.dom[b.dom.find("<b>").unwrap_or(0).saturating_sub(300)..]
    );
    assert!(
        b.dom.contains("evil=&lt;b&gt;label&lt;/b&gt;\\u{1b}[7m"),
        "{}",
        b.dom
    );
    assert!(
        b.dom
            .contains("&lt;script&gt;alert(\"istioctl\")&lt;/script&gt;\\u{1b}[2J"),
        "{}",
        b.dom
    );
    save_screenshot(&b, "authzcheck.png");

    // Who refuses what (exit 2, before any work).
    for args in [
        &["rbaclog", "np-test-2", "-o", "html"][..],
        &["rbaclog", "np-test-2", "-o", "dot"],
        &["rbaclog", "np-test-2", "-o", "mermaid"],
        &["authzcheck", "np-test-2", "-o", "dot"],
        &["npexec", "--predict", "-f", "policies.yaml", "-o", "html"],
    ] {
        let out = f.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("does not apply here"),
            "{}",
            stderr(&out)
        );
    }
    eprintln!("pictures: {:?}", started.elapsed());
}
