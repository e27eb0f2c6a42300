//! Checks on the source tree itself, run by `make test` so the architecture's two
//! rules cannot drift silently: no module cycles inside a crate, and no dependency
//! declared in a manifest that the crate's code never names.
//!
//! Both checks read files only (no build, no cargo metadata), so they take
//! milliseconds. The module graph is the one a reader sees: top-level modules of
//! each crate (`src/foo.rs` or `src/foo/`), an edge from `a` to `b` when any file of
//! `a` names `crate::b` (in code or in a doc link, which rustdoc resolves too) or
//! `super::b` where `super` is the crate root (`src/a/mod.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn crate_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .expect("crates/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    dirs.sort();
    dirs
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Identifiers that follow `prefix` in `text`, including each name inside a
/// `prefix{a, b::c}` group (nested groups give their first segment only).
fn names_after(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            let mut items = Vec::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => items.push(std::mem::take(&mut item)),
                    _ if depth == 1 => item.push(c),
                    _ => {}
                }
            }
            items.push(item);
            for it in items {
                let first: String = it
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !first.is_empty() {
                    names.insert(first);
                }
            }
        } else {
            let first: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !first.is_empty() {
                names.insert(first);
            }
        }
    }
    names
}

/// The top-level module graph of the crate whose sources are under `src`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let module_of = |p: &Path| -> Option<String> {
        let rel = p.strip_prefix(src).ok()?;
        let first = rel.components().next()?.as_os_str().to_str()?;
        let name = first.strip_suffix(".rs").unwrap_or(first);
        // The crate root and binaries are not modules of the library's graph.
        (!matches!(name, "lib" | "main" | "bin")).then(|| name.to_string())
    };
    for f in &files {
        if let Some(m) = module_of(f) {
            graph.entry(m).or_default();
        }
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for f in &files {
        let Some(m) = module_of(f) else { continue };
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let mut refs = names_after(&text, "crate::");
        // `super::x` names the top-level module x only where `super` is the
        // crate root: in src/m/mod.rs (in src/m/child.rs it is m itself).
        let depth = f
            .strip_prefix(src)
            .map(|r| r.components().count())
            .unwrap_or(0);
        let is_mod_rs = f.file_name().is_some_and(|n| n == "mod.rs");
        if depth == 2 && is_mod_rs {
            refs.extend(names_after(&text, "super::"));
        }
        let edges = graph.entry(m.clone()).or_default();
        for r in refs {
            if r != m && modules.contains(&r) {
                edges.insert(r);
            }
        }
    }
    graph
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        let graph = s.graph;
        for w in graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn no_module_cycles_in_any_crate() {
    let mut found = Vec::new();
    for dir in crate_dirs() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        for comp in cycles(&module_graph(&dir.join("src"))) {
            found.push(format!("{name}: {}", comp.join(" <-> ")));
        }
    }
    assert!(
        found.is_empty(),
        "module cycles (move the shared types into a module both can use):\n{}",
        found.join("\n")
    );
}

/// The checker itself finds a cycle, through a doc link and a `use` group, and
/// not a one-way dependency.
#[test]
fn the_cycle_check_can_fail() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir(src.join("plan")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod plan; mod report; mod data;").unwrap();
    std::fs::write(src.join("plan.rs"), "mod sub;").unwrap();
    std::fs::write(src.join("plan/sub.rs"), "use crate::{data::X, report};").unwrap();
    std::fs::write(src.join("report.rs"), "//! Built by [`crate::plan`].").unwrap();
    std::fs::write(src.join("data.rs"), "pub struct X;").unwrap();
    // In plan/other.rs `super::report` is plan::report, not the crate's report.
    std::fs::write(src.join("plan/other.rs"), "use super::report;").unwrap();
    let g = module_graph(src);
    assert_eq!(
        cycles(&g),
        vec![vec!["plan".to_string(), "report".to_string()]]
    );
    std::fs::write(src.join("report.rs"), "//! Built elsewhere.").unwrap();
    assert!(cycles(&module_graph(src)).is_empty());
}

/// meshsim's layers, bottom up, as its crate doc lists them: a module may use
/// modules of its own layer or of layers before it, never one after it.
const MESHSIM_LAYERS: &[&[&str]] = &[
    &[
        "error", "faults", "store", "logs", "traffic", "shared", "path", "protobuf",
    ],
    &["mesh"],
    &["app"],
    &["kubelet"],
    &["api"],
    &["server", "scenario"],
];

/// Edges of `graph` that point to a later layer, and modules no layer names.
fn layer_violations(graph: &BTreeMap<String, BTreeSet<String>>, layers: &[&[&str]]) -> Vec<String> {
    let layer_of = |m: &str| layers.iter().position(|l| l.contains(&m));
    let mut found = Vec::new();
    for (from, tos) in graph {
        let Some(lf) = layer_of(from) else {
            found.push(format!("{from}: in no layer"));
            continue;
        };
        for to in tos {
            if layer_of(to).is_some_and(|lt| lt > lf) {
                found.push(format!("{from} -> {to} (a later layer)"));
            }
        }
    }
    found
}

#[test]
fn meshsim_layers_point_down() {
    let src = root().join("crates/meshsim/src");
    let found = layer_violations(&module_graph(&src), MESHSIM_LAYERS);
    assert!(
        found.is_empty(),
        "meshsim's layers (see its crate doc) are crossed upwards:\n{}",
        found.join("\n")
    );
}

/// The layer check fails on an upward edge and on a module it does not know.
#[test]
fn the_layer_check_can_fail() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("mesh".into()).or_default().insert("kubelet".into());
    g.entry("kubelet".into()).or_default().insert("mesh".into());
    g.entry("stray".into()).or_default();
    assert_eq!(
        layer_violations(&g, MESHSIM_LAYERS),
        vec![
            "mesh -> kubelet (a later layer)".to_string(),
            "stray: in no layer".to_string()
        ]
    );
}

/// `[dependencies]`-like sections of a manifest: section name -> crate names
/// as the code spells them (dashes become underscores).
fn declared(manifest: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(manifest).expect("manifest");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_string();
            continue;
        }
        if !matches!(
            section.as_str(),
            "dependencies" | "dev-dependencies" | "build-dependencies"
        ) || line.starts_with('#')
            || line.is_empty()
        {
            continue;
        }
        let key: String = line
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        if !key.is_empty() {
            out.entry(section.clone())
                .or_default()
                .insert(key.replace('-', "_"));
        }
    }
    out
}

fn mentions(files: &[PathBuf], krate: &str) -> bool {
    files.iter().any(|f| {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        !names_after(&text, &format!("{krate}::")).is_empty()
            || text.contains(&format!("use {krate};"))
            || text.contains(&format!("use {krate} as"))
            || text.contains(&format!("extern crate {krate}"))
    })
}

#[test]
fn every_declared_dependency_is_used() {
    let mut packages = crate_dirs();
    packages.push(root());
    let mut unused = Vec::new();
    for dir in packages {
        let sections = declared(&dir.join("Cargo.toml"));
        let mut lib = Vec::new();
        rust_files(&dir.join("src"), &mut lib);
        let build = dir.join("build.rs");
        if build.is_file() {
            lib.push(build);
        }
        let mut all = lib.clone();
        for d in ["tests", "benches", "examples"] {
            rust_files(&dir.join(d), &mut all);
        }
        let normal = sections.get("dependencies").cloned().unwrap_or_default();
        for krate in &normal {
            if !mentions(&lib, krate) {
                unused.push(format!("{}: [dependencies] {krate}", dir.display()));
            }
        }
        for krate in sections.get("dev-dependencies").into_iter().flatten() {
            // A dev-dependency that repeats a normal one only adds features.
            if !normal.contains(krate) && !mentions(&all, krate) {
                unused.push(format!("{}: [dev-dependencies] {krate}", dir.display()));
            }
        }
    }
    assert!(
        unused.is_empty(),
        "declared but never named in the code (remove them, or say in the manifest why a \
         dependency is needed without being named):\n{}",
        unused.join("\n")
    );
}
