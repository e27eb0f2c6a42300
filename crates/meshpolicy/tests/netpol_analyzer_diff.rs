//! The semantic diff against np-guard/netpol-analyzer's own diffs: for each
//! of the five before/after pairs in `tests/fixtures/netpol-analyzer-diff/`,
//! both topologies are loaded from their manifests and
//! `meshpolicy::connectivity::diff` must print exactly the lines of
//! `expected/diff_between_AFTER_and_BEFORE.txt`, in the same order.

mod common_engine;

use std::path::Path;

use meshpolicy::connectivity::{diff, render_np_guard_diff};
use meshpolicy::workload::Objects;
use meshpolicy::{Cluster, ClusterOptions, parse_manifests};

fn load(dir: &Path) -> Cluster {
    let mut objects = Objects::default();
    for f in common_engine::files_with_ext(dir, &["yaml", "yml", "json"]) {
        let o = parse_manifests(&common_engine::read(&f))
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        meshpolicy::whatif::merge_objects(&mut objects, o);
    }
    Cluster::from_objects(objects, ClusterOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

#[test]
fn diff_matches_netpol_analyzer_on_all_five_pairs() {
    let root = common_engine::fixture("netpol-analyzer-diff");
    let mut expected_files: Vec<_> = std::fs::read_dir(root.join("expected"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    expected_files.sort();
    assert_eq!(expected_files.len(), 5, "five np-guard diffs expected");
    let cases: Vec<String> = std::fs::read_dir(root.join("cases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    let mut failures = Vec::new();
    for f in &expected_files {
        let stem = f.file_stem().unwrap().to_string_lossy().to_string();
        let rest = stem.strip_prefix("diff_between_").unwrap();
        // AFTER_and_BEFORE where both are case names: find the split that names two cases.
        let (after, before) = cases
            .iter()
            .filter_map(|a| {
                let b = rest.strip_prefix(a.as_str())?.strip_prefix("_and_")?;
                cases
                    .iter()
                    .any(|c| c == b)
                    .then(|| (a.clone(), b.to_string()))
            })
            .next()
            .unwrap_or_else(|| panic!("{stem}: cannot tell AFTER from BEFORE"));
        let b = load(&root.join("cases").join(&before));
        let a = load(&root.join("cases").join(&after));
        let got = render_np_guard_diff(&diff(&b, &a));
        let want = common_engine::read(f);
        if got != want {
            failures.push(format!(
                "{before} -> {after}:\n--- expected\n{want}--- got\n{got}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
