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
//! PeerAuthentication the same way: seeded changes to sets of mesh-wide,
//! namespace-wide and workload PeerAuthentications (port-level settings
//! included), each side's mode per destination port from meshpolicy's
//! peerauth rules on the overlaid objects, real Envoy listening with those
//! modes, and a plain-text and an mTLS client on every port: the engine's
//! accepted/rejected on each side (plain text into STRICT and mTLS into
//! DISABLE are rejected) must be what Envoy did.
//!
//! Size: `MESHDEBUG_WHATIF_CHANGES` changes x `MESHDEBUG_WHATIF_REQUESTS`
//! requests (default 40 x 100, so 8,000 requests), seed `MESHDEBUG_WHATIF_SEED`.
//! Needs the real binary (`make envoy`).

use crate::common;

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

/// The destination pod of the PeerAuthentication changes (a sidecar, the
/// generator's ports).
fn pa_destination() -> Objects {
    let ports: Vec<Value> = policygen::HTTP_PORTS
        .iter()
        .chain([&policygen::TCP_PORT])
        .map(|p| serde_json::json!({"containerPort": p}))
        .collect();
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": policygen::DST_POD, "namespace": policygen::DST_NAMESPACE,
                     "labels": {policygen::DST_LABEL.0: policygen::DST_LABEL.1}},
        "spec": {"containers": [{"name": "app", "image": "x", "ports": ports},
                                {"name": "istio-proxy", "image": "proxyv2"}]}
    });
    meshpolicy::parse_manifests(&pod.to_string()).unwrap()
}

/// A random PeerAuthentication of one of three levels (names fixed per
/// level, so a second one of a level replaces the first).
fn random_pa(rng: &mut impl rand::Rng) -> Value {
    use rand::seq::IndexedRandom;
    let modes = ["STRICT", "PERMISSIVE", "DISABLE", "UNSET"];
    let mode = *modes.choose(rng).unwrap();
    let mut spec = serde_json::json!({"mtls": {"mode": mode}});
    let (ns, name) = match rng.random_range(0..3) {
        0 => (policygen::ROOT_NAMESPACE, "mesh"),
        1 => (policygen::DST_NAMESPACE, "namespace"),
        _ => {
            spec["selector"] = serde_json::json!({"matchLabels": {policygen::DST_LABEL.0: policygen::DST_LABEL.1}});
            if rng.random_bool(0.5) {
                let port = *[8080u16, 9090, 3306].choose(rng).unwrap();
                let m = *modes.choose(rng).unwrap();
                spec["portLevelMtls"] = serde_json::json!({ port.to_string(): {"mode": m} });
            }
            (policygen::DST_NAMESPACE, "workload")
        }
    };
    serde_json::json!({
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": name, "namespace": ns}, "spec": spec
    })
}

fn pa_objects(v: &[Value]) -> Objects {
    let text: Vec<String> = v.iter().map(|p| p.to_string()).collect();
    meshpolicy::parse_manifests(&text.join("\n---\n")).unwrap()
}

#[test]
fn peer_authentication_changes_are_what_real_envoy_does() {
    use meshpolicy::peerauth::MtlsMode;
    use rand::{Rng, SeedableRng};
    let seed = env_usize("MESHDEBUG_WHATIF_SEED", 20261205) as u64;
    let n = env_usize("MESHDEBUG_WHATIF_PA_CHANGES", 24);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let ports: Vec<u16> = policygen::HTTP_PORTS
        .iter()
        .copied()
        .chain([policygen::TCP_PORT])
        .collect();
    let mut bench = Bench::new();
    // (what, modes before, modes after) per change.
    let mut sides: Vec<(String, Vec<MtlsMode>, Vec<MtlsMode>)> = Vec::new();
    let mut mode_changes = 0;
    for i in 0..n {
        let before_pas: Vec<Value> = (0..rng.random_range(0..3))
            .map(|_| random_pa(&mut rng))
            .collect();
        let mut base = pa_destination();
        meshpolicy::whatif::merge_objects(&mut base, pa_objects(&before_pas));
        let incoming = random_pa(&mut rng);
        let (what, after) = if rng.random_bool(0.3) && !before_pas.is_empty() {
            let gone = before_pas[rng.random_range(0..before_pas.len())].clone();
            let mut after = base.clone();
            remove_objects(&mut after, &pa_objects(std::slice::from_ref(&gone)));
            (format!("delete {gone}"), after)
        } else {
            (
                format!("apply {incoming}"),
                apply_objects(&base, &pa_objects(&[incoming])),
            )
        };
        let modes = |o: &Objects| -> Vec<MtlsMode> {
            let c = meshpolicy::Cluster::from_objects(o.clone(), Default::default()).unwrap();
            let pod = c.pod(policygen::DST_NAMESPACE, policygen::DST_POD).unwrap();
            ports.iter().map(|&p| c.mtls_mode(pod, p).mode).collect()
        };
        let (mb, ma) = (modes(&base), modes(&after));
        if mb != ma {
            mode_changes += 1;
        }
        for (side, m) in [("before", &mb), ("after", &ma)] {
            let m = m.clone();
            let ports = ports.clone();
            bench.add_listener_modes(&format!("pa-{side}-{i}"), &[], move |p| {
                m[ports.iter().position(|&x| x == p).unwrap()]
            });
        }
        sides.push((
            format!(
                "{what} over {}",
                serde_json::to_string(&before_pas).unwrap()
            ),
            mb,
            ma,
        ));
    }
    let envoy = bench.start();
    let client = policygen::Identity {
        trust_domain: "cluster.local".into(),
        namespace: "ns-a".into(),
        service_account: "sa-1".into(),
    };
    let request = |port: u16, identity: Option<policygen::Identity>| Request {
        identity,
        source_ip: "127.1.2.3".into(),
        port,
        payload: if port == policygen::TCP_PORT {
            policygen::Payload::Tcp
        } else {
            policygen::Payload::Http {
                method: "GET".into(),
                path: "/".into(),
                host: "httpbin".into(),
                headers: Vec::new(),
            }
        },
    };
    let mut work = Vec::new();
    let mut expect = Vec::new();
    for (i, (what, mb, ma)) in sides.iter().enumerate() {
        for (side, modes) in [("before", mb), ("after", ma)] {
            let addr = envoy.listener_address(&format!("pa-{side}-{i}")).unwrap();
            for (k, &port) in ports.iter().enumerate() {
                for mtls in [false, true] {
                    work.push((addr, request(port, mtls.then(|| client.clone()))));
                    // Istio: plain text into STRICT and mTLS into DISABLE are cut.
                    let rejected = matches!(
                        (modes[k], mtls),
                        (MtlsMode::Strict, false) | (MtlsMode::Disable, true)
                    );
                    expect.push((what.clone(), side, port, mtls, modes[k], !rejected));
                }
            }
        }
    }
    let results = send_all(&bench.ca, work);
    assert_eq!(results.len(), expect.len());
    let mut wrong = Vec::new();
    for ((what, side, port, mtls, mode, accepted), (seen, _)) in expect.iter().zip(&results) {
        if (*seen == Seen::Allowed) != *accepted {
            wrong.push(format!(
                "{side} {what}: port {port} {mode} {}: engine {}, envoy {seen:?}",
                if *mtls { "mTLS" } else { "plain text" },
                if *accepted { "accepted" } else { "rejected" }
            ));
        }
    }
    eprintln!(
        "PeerAuthentication what-if: seed {seed}, {n} changes ({mode_changes} change a port's mode), \
         {} connections to real Envoy, {} wrong",
        results.len(),
        wrong.len()
    );
    for w in wrong.iter().take(10) {
        eprintln!("--- {w}");
    }
    assert!(
        wrong.is_empty(),
        "{} predictions disagree with real Envoy",
        wrong.len()
    );
    assert!(
        mode_changes * 3 >= n,
        "too few changes change a mode: {mode_changes} of {n}"
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
