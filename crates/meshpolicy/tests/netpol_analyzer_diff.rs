//! The semantic diff against np-guard/netpol-analyzer's own diffs: for each
//! of the five before/after pairs in `tests/fixtures/netpol-analyzer-diff/`,
//! both topologies are loaded from their manifests and
//! `meshpolicy::connectivity::diff` must print exactly the lines of
//! `expected/diff_between_AFTER_and_BEFORE.txt`, in the same order.

mod common_engine;

use std::path::Path;

use meshpolicy::connectivity::{diff, render_np_guard_diff};
use meshpolicy::manifests::Objects;
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

/// The diff is the change's mirror image when the change is undone (added
/// and removed swap, before and after swap, ranges stay), and nothing
/// changes between a topology and itself.
#[test]
fn undoing_a_change_mirrors_its_diff() {
    use meshpolicy::connectivity::DiffKind;
    let root = common_engine::fixture("netpol-analyzer-diff").join("cases");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    let models: Vec<Cluster> = cases.iter().map(|c| load(c)).collect();
    let mut compared = 0;
    for (i, a) in models.iter().enumerate() {
        assert!(diff(a, a).is_empty(), "{}", cases[i].display());
        for b in &models[i + 1..] {
            let fwd = diff(a, b);
            let mut back: Vec<_> = diff(b, a)
                .into_iter()
                .map(|d| {
                    let kind = match d.kind {
                        DiffKind::Added => DiffKind::Removed,
                        DiffKind::Removed => DiffKind::Added,
                        DiffKind::Changed => DiffKind::Changed,
                    };
                    (
                        kind,
                        d.src.to_string(),
                        d.dst.to_string(),
                        d.after,
                        d.before,
                    )
                })
                .collect();
            let mut fwd: Vec<_> = fwd
                .into_iter()
                .map(|d| {
                    (
                        d.kind,
                        d.src.to_string(),
                        d.dst.to_string(),
                        d.before,
                        d.after,
                    )
                })
                .collect();
            fwd.sort_by_key(|t| format!("{t:?}"));
            back.sort_by_key(|t| format!("{t:?}"));
            assert_eq!(fwd, back);
            compared += 1;
        }
    }
    assert!(compared >= 10);
}
