//! What-if against real Envoy: are the engine's predicted flips the ones the
//! proxy makes?
//!
//! `npexec --diff` and `authzcheck -f` promise which requests a policy change
//! turns from allowed to denied and back. This test makes seeded changes to
//! generated AuthorizationPolicy sets (tests/common/policygen.rs): a policy
//! removed (`--delete-f`), a policy added, a policy replaced under the same
//! namespace/name (`-f` with an edited manifest), each AFTER set built by
//! meshpolicy's overlay (`whatif::apply_objects` / `remove_objects`, the code
//! the plugins run). The engine predicts every request's decision before and
//! after, hence which requests flip; real Envoy 1.40 loads BEFORE and AFTER as
//! two listeners each (our Istio translation), every request is sent to both
//! with its real mTLS identity and source address, and every prediction (both
//! decisions and the flip) must match what Envoy did. Zero wrong predictions
//! is the only passing result.
//!
//! Size: `MESHDEBUG_WHATIF_CHANGES` changes x `MESHDEBUG_WHATIF_REQUESTS`
//! requests (default 40 x 100, so 8,000 requests), seed `MESHDEBUG_WHATIF_SEED`.
//! Needs the real binary (`make envoy`).

mod common;

use std::collections::BTreeMap;

use common::policygen::{self, Request};
use common::rbacdiff::{Bench, Seen, compile, engine, env_usize, send_all};
use meshpolicy::manifests::Objects;
use meshpolicy::whatif::{apply_objects, remove_objects};
use meshpolicy::{AuthorizationPolicy, CompiledAuthz, Decision};
use serde_json::Value;

/// One seeded policy change.
struct Change {
    index: usize,
    /// `remove`, `add` or `replace`, and the policy it concerns.
    what: String,
    before: Vec<Value>,
    after: Vec<AuthorizationPolicy>,
    requests: Vec<Request>,
}

fn objects(policies: Vec<AuthorizationPolicy>) -> Objects {
    Objects {
        authorization_policies: policies,
        ..Objects::default()
    }
}

fn name_of(p: &Value) -> String {
    format!(
        "{}/{}",
        p["metadata"]["namespace"].as_str().unwrap_or_default(),
        p["metadata"]["name"].as_str().unwrap_or_default()
    )
}

/// `n` changes of `requests` requests each from `seed`: change i edits
/// generated set i, drawing new policies from set n + i.
fn changes(seed: u64, n: usize, requests: usize) -> Vec<Change> {
    let cases = policygen::generate(seed, 2 * n, requests);
    let (sets, donors) = cases.split_at(n);
    sets.iter()
        .zip(donors)
        .map(|(case, donor)| {
            let (before_parsed, _) = compile(&case.policies);
            let base = objects(before_parsed);
            let k = case.index % case.policies.len();
            let victim = &case.policies[k];
            let mut incoming = donor.policies[0].clone();
            let (what, after) = match case.index % 3 {
                0 => {
                    // --delete-f: only kind, namespace and name matter.
                    let (gone, _) = compile(std::slice::from_ref(victim));
                    let mut after = base.clone();
                    remove_objects(&mut after, &objects(gone));
                    (format!("remove {}", name_of(victim)), after)
                }
                1 => {
                    incoming["metadata"]["name"] = format!("added-{}", case.index).into();
                    let (added, _) = compile(std::slice::from_ref(&incoming));
                    (
                        format!("add {}", name_of(&incoming)),
                        apply_objects(&base, &objects(added)),
                    )
                }
                _ => {
                    incoming["metadata"] = victim["metadata"].clone();
                    let (edited, _) = compile(std::slice::from_ref(&incoming));
                    (
                        format!("replace {}", name_of(victim)),
                        apply_objects(&base, &objects(edited)),
                    )
                }
            };
            Change {
                index: case.index,
                what,
                before: case.policies.clone(),
                after: after.authorization_policies,
                requests: case.requests.clone(),
            }
        })
        .collect()
}

fn flip(before: Decision, after: Decision) -> Option<&'static str> {
    match (before, after) {
        (Decision::Allow, Decision::Deny) => Some("allowed->denied"),
        (Decision::Deny, Decision::Allow) => Some("denied->allowed"),
        _ => None,
    }
}

fn seen_decision(s: &Seen) -> Option<Decision> {
    match s {
        Seen::Allowed => Some(Decision::Allow),
        Seen::Denied => Some(Decision::Deny),
        Seen::Other(_) => None,
    }
}

#[test]
fn predicted_flips_are_the_ones_real_envoy_makes() {
    let started = std::time::Instant::now();
    let seed = env_usize("MESHDEBUG_WHATIF_SEED", 20261205) as u64;
    let n = env_usize("MESHDEBUG_WHATIF_CHANGES", 40);
    let n_requests = env_usize("MESHDEBUG_WHATIF_REQUESTS", 100);
    let changes = changes(seed, n, n_requests);

    let mut bench = Bench::new();
    let mut compiled: Vec<(Vec<CompiledAuthz>, Vec<CompiledAuthz>)> = Vec::new();
    for c in &changes {
        let (before, before_c) = compile(&c.before);
        let after_c: Vec<CompiledAuthz> = c
            .after
            .iter()
            .map(|p| CompiledAuthz::compile(p).expect("overlaid policy compiles"))
            .collect();
        bench.add_listener(&format!("before-{}", c.index), &before);
        bench.add_listener(&format!("after-{}", c.index), &c.after);
        compiled.push((before_c, after_c));
    }
    let envoy = bench.start();

    // Each request to BEFORE and to AFTER.
    let mut work = Vec::new();
    for c in &changes {
        let b = envoy
            .listener_address(&format!("before-{}", c.index))
            .unwrap();
        let a = envoy
            .listener_address(&format!("after-{}", c.index))
            .unwrap();
        for r in &c.requests {
            work.push((b, r.clone()));
            work.push((a, r.clone()));
        }
    }
    let sent = work.len();
    let results = send_all(&bench.ca, work);
    assert_eq!(results.len(), sent, "every request was sent");

    let mut wrong = Vec::new();
    let mut flips: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut checked, mut cannot) = (0usize, 0usize);
    let mut pairs = results.chunks(2);
    for (ci, c) in changes.iter().enumerate() {
        for r in &c.requests {
            let pair = pairs.next().unwrap();
            let (seen_b, seen_a) = (&pair[0].0, &pair[1].0);
            let (pb, pa) = (engine(&compiled[ci].0, r), engine(&compiled[ci].1, r));
            if pb == Decision::CannotEvaluate || pa == Decision::CannotEvaluate {
                cannot += 1;
                continue;
            }
            checked += 1;
            let predicted = flip(pb, pa);
            let observed = match (seen_decision(seen_b), seen_decision(seen_a)) {
                (Some(b), Some(a)) => Ok(flip(b, a)),
                _ => Err(()),
            };
            if let Some(f) = predicted {
                *flips.entry(f).or_default() += 1;
            }
            if observed != Ok(predicted)
                || seen_decision(seen_b) != Some(pb)
                || seen_decision(seen_a) != Some(pa)
            {
                wrong.push((c, r, (pb, pa), (seen_b.clone(), seen_a.clone())));
            }
        }
    }
    eprintln!(
        "what-if differential: seed {seed}, {n} changes, {sent} requests to real Envoy: \
         {checked} before/after predictions checked, {} wrong, {cannot} the engine cannot \
         evaluate; predicted flips {flips:?}; {:.1} s",
        wrong.len(),
        started.elapsed().as_secs_f64()
    );
    for (c, r, predicted, seen) in wrong.iter().take(10) {
        eprintln!(
            "--- change {} ({}): engine {predicted:?}, envoy {seen:?}\n  request: {r:?}\n  before: {}\n  after: {}",
            c.index,
            c.what,
            serde_json::to_string(&c.before).unwrap(),
            serde_json::to_string(&c.after).unwrap()
        );
    }
    assert!(
        wrong.is_empty(),
        "{} of {checked} what-if predictions disagree with real Envoy (first ones above)",
        wrong.len()
    );
    // The changes must matter: flips both ways, most requests judged.
    assert!(
        flips.get("allowed->denied").copied().unwrap_or(0) > 0
            && flips.get("denied->allowed").copied().unwrap_or(0) > 0,
        "the generated changes flip nothing one way: {flips:?}"
    );
    assert!(
        cannot * 10 < checked,
        "the engine could not evaluate {cannot} requests"
    );
    drop(envoy);
}

#[test]
fn the_changes_are_deterministic_and_overlaid() {
    let a = changes(7, 6, 3);
    let b = changes(7, 6, 3);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.what, y.what);
        assert_eq!(x.after, y.after);
    }
    // A removal has one policy fewer, an addition one more, a replacement the same count.
    for c in &a {
        let delta = c.after.len() as isize - c.before.len() as isize;
        let want = match c.what.split(' ').next().unwrap() {
            "remove" => -1,
            "add" => 1,
            _ => 0,
        };
        assert_eq!(delta, want, "{}", c.what);
    }
}
