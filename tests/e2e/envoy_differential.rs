//! Differential test: the policy engine against real Envoy 1.40.
//!
//! Our predictions (`npexec --predict`, `--explain`, authzcheck) are only
//! right if they agree with the proxy that enforces the policies. For each
//! generated policy set (tests/e2e/common/policygen.rs), meshpolicy translates the
//! policies into Istio's RBAC filters (`istio::rbac`) and wraps them in Istio's
//! inbound listener (`istio::listener`); real Envoy loads every set at once, one
//! listener each, in front of an HTTP app and an echo app. Every request is
//! sent through real Envoy, with the source identity as a real mTLS client
//! certificate (or plain text) and the source address in a PROXY header, and
//! Envoy's answer is compared with the engine's decision for the same request.
//! Zero disagreements is the only passing result.
//!
//! Size: `MESHDEBUG_DIFF_CASES` policy sets x `MESHDEBUG_DIFF_REQUESTS` requests
//! (default 100 x 200 = 20,000 requests), seed `MESHDEBUG_DIFF_SEED`; `make
//! conformance` runs a larger set. Needs the real binary (`make envoy`).

use crate::common;

use std::collections::BTreeMap;

use common::policygen::{self, Case, Payload};
use common::rbacdiff::{Bench, Seen, compile, engine, env_usize, send_all};
use meshpolicy::{CompiledAuthz, Decision};

struct Prepared {
    case: Case,
    compiled: Vec<CompiledAuthz>,
    listener_name: String,
}

#[test]
fn engine_agrees_with_real_envoy_on_generated_policies_and_requests() {
    let seed = env_usize("MESHDEBUG_DIFF_SEED", 20261204) as u64;
    let n_cases = env_usize("MESHDEBUG_DIFF_CASES", 100);
    let n_requests = env_usize("MESHDEBUG_DIFF_REQUESTS", 200);
    let cases = policygen::generate(seed, n_cases, n_requests);

    let mut bench = Bench::new();
    let mut prepared = Vec::new();
    for case in cases {
        let (parsed, compiled) = compile(&case.policies);
        let listener_name = format!("case-{}", case.index);
        bench.add_listener(&listener_name, &parsed);
        prepared.push(Prepared {
            listener_name,
            case,
            compiled,
        });
    }
    let envoy = bench.start();

    // Work items: (case index, request index), sent in this order.
    let mut work = Vec::new();
    let mut sent = Vec::new();
    for (ci, p) in prepared.iter().enumerate() {
        let addr = envoy.listener_address(&p.listener_name).unwrap();
        for (ri, r) in p.case.requests.iter().enumerate() {
            work.push((addr, r.clone()));
            sent.push((ci, ri));
        }
    }
    let results: Vec<(usize, usize, Seen, f64)> = sent
        .into_iter()
        .zip(send_all(&bench.ca, work))
        .map(|((ci, ri), (seen, ms))| (ci, ri, seen, ms))
        .collect();

    let mut disagreements = Vec::new();
    let (mut agree, mut cannot, mut other) = (0usize, 0usize, 0usize);
    let mut by_decision: BTreeMap<String, usize> = BTreeMap::new();
    let mut timing: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    for (ci, ri, seen, ms) in &results {
        let kind = match prepared[*ci].case.requests[*ri].payload {
            Payload::Http { .. } => "http",
            Payload::Tcp => "tcp",
        };
        let label = match seen {
            Seen::Other(_) => "other".to_string(),
            s => format!("{s:?}"),
        };
        let t = timing.entry(format!("{kind} {label}")).or_default();
        t.0 += 1;
        t.1 += ms;
    }
    for (k, (n, total)) in &timing {
        eprintln!(
            "  {k}: {n} requests, {:.1} ms each on average",
            total / *n as f64
        );
    }
    for (ci, ri, seen, _) in &results {
        let p = &prepared[*ci];
        let req = &p.case.requests[*ri];
        let predicted = engine(&p.compiled, req);
        *by_decision
            .entry(format!("{predicted:?}/{seen:?}"))
            .or_default() += 1;
        match (predicted, seen) {
            (Decision::CannotEvaluate, _) => cannot += 1,
            (Decision::Allow, Seen::Allowed) | (Decision::Deny, Seen::Denied) => agree += 1,
            (_, Seen::Other(_)) => {
                other += 1;
                disagreements.push((*ci, *ri, predicted, seen.clone()));
            }
            _ => disagreements.push((*ci, *ri, predicted, seen.clone())),
        }
    }
    eprintln!(
        "differential: seed {seed}, {} policy sets, {} requests: {agree} agree, {} disagree \
         ({other} not an RBAC answer), {cannot} the engine cannot evaluate",
        prepared.len(),
        results.len(),
        disagreements.len()
    );
    for (k, v) in &by_decision {
        eprintln!("  engine/envoy {k}: {v}");
    }
    for (ci, ri, predicted, seen) in disagreements.iter().take(15) {
        let p = &prepared[*ci];
        eprintln!(
            "--- case {ci} request {ri}: engine {predicted:?}, envoy {seen:?}\n  request: {:?}\n  policies: {}",
            p.case.requests[*ri],
            serde_json::to_string(&p.case.policies).unwrap()
        );
    }
    assert_eq!(
        results.len(),
        n_cases * n_requests,
        "every request was sent"
    );
    assert!(
        disagreements.is_empty(),
        "{} of {} requests: the engine and real Envoy disagree (first ones above)",
        disagreements.len(),
        results.len()
    );
    assert!(
        cannot * 20 < results.len(),
        "the engine could not evaluate {cannot} requests: the generator lost its point"
    );
    drop(envoy);
}

#[test]
fn the_generator_is_deterministic() {
    let a = policygen::generate(7, 3, 5);
    let b = policygen::generate(7, 3, 5);
    assert_eq!(a.len(), 3);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.policies, y.policies);
        assert_eq!(x.requests, y.requests);
    }
    assert_ne!(policygen::generate(8, 3, 5)[0].requests, a[0].requests);
}
