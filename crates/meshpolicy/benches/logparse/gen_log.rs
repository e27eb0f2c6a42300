//! Generates a realistic istio-proxy log for the log parsing benchmark: mostly ordinary lines (access logs of successful
//! requests, Istio agent info lines, Envoy debug lines of other scopes) with about 1%
//! RBAC debug lines, local replies and access-log denials, deterministic for a seed.

use meshpolicy::envoy::{
    AccessLogEntry, Decision, Engine, FilterKind, format_local_reply_line, format_rbac_debug_line,
    format_rbac_denied_details,
};

/// A small deterministic generator (64-bit LCG), so runs are comparable.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

fn access(rng: &mut Lcg, code: u16, details: &str) -> String {
    let n = rng.next();
    AccessLogEntry {
        start_time: Some(format!(
            "2025-07-22T17:{:02}:{:02}.{:03}Z",
            n % 60,
            (n >> 6) % 60,
            n % 1000
        )),
        method: Some(if n.is_multiple_of(3) { "POST" } else { "GET" }.to_owned()),
        path: Some(format!("/api/v1/items/{}", n % 10_000)),
        protocol: Some("HTTP/1.1".to_owned()),
        response_code: Some(code),
        response_flags: "-".to_owned(),
        response_code_details: Some(details.to_owned()),
        upstream_transport_failure_reason: None,
        bytes_received: Some(0),
        bytes_sent: Some(n % 4096),
        duration: Some(n % 50),
        upstream_service_time: Some((n % 40).to_string()),
        x_forwarded_for: Some(format!("10.244.{}.{}", n % 8, n % 250)),
        user_agent: Some("curl/8.14.1".to_owned()),
        request_id: Some(format!("{:08x}-c234-4a8f-b9f4-{:012x}", n, n * 7)),
        authority: Some("webapp.default.svc.cluster.local:8080".to_owned()),
        upstream_host: Some("10.244.1.9:8080".to_owned()),
        upstream_cluster: Some("inbound|8080||".to_owned()),
        upstream_local_address: Some("127.0.0.6:41854".to_owned()),
        downstream_local_address: Some("10.244.1.9:8080".to_owned()),
        downstream_remote_address: Some(format!(
            "10.244.{}.{}:{}",
            n % 8,
            n % 250,
            30_000 + n % 30_000
        )),
        requested_server_name: Some(
            "outbound_.8080_._.webapp.default.svc.cluster.local".to_owned(),
        ),
        route_name: Some("default".to_owned()),
        ..AccessLogEntry::default()
    }
    .format_text()
}

/// Appends lines to `out` until it holds at least `bytes` bytes; returns how many of
/// them are RBAC-related (decisions, local replies, access-log denials).
pub fn generate(bytes: usize, seed: u64) -> (Vec<u8>, usize) {
    let mut rng = Lcg(seed);
    let mut out = Vec::with_capacity(bytes + 1024);
    let mut rbac = 0;
    let time = "2025-07-06T19:33:00.654348Z";
    while out.len() < bytes {
        let r = rng.next() % 1000;
        let line = match r {
            // 1%: the three RBAC-related kinds of lines.
            0..=3 => {
                rbac += 1;
                format_rbac_debug_line(
                    time,
                    FilterKind::Http,
                    Engine::Enforced,
                    Decision::Denied,
                    Some(
                        "ns[np-test-2]-policy[deny-all-ingress-using-authorizationpolicy]-rule[0]",
                    ),
                    26,
                )
            }
            4..=6 => {
                rbac += 1;
                format_local_reply_line(
                    time,
                    rng.next() % 1000,
                    rng.next() << 20,
                    &format_rbac_denied_details(None),
                    26,
                )
            }
            7..=9 => {
                rbac += 1;
                access(&mut rng, 403, &format_rbac_denied_details(None))
            }
            10..=599 => access(&mut rng, 200, "via_upstream"),
            600..=799 => format!(
                "{time}\tdebug\tenvoy http external/envoy/source/common/http/conn_manager_impl.cc:1135\t[Tags: \"ConnectionId\":\"{}\",\"StreamId\":\"{}\"] request end stream\tthread=21",
                rng.next() % 1000,
                rng.next()
            ),
            800..=899 => format!(
                "{time}\tdebug\tenvoy router external/envoy/source/common/router/router.cc:{}\t[Tags: \"ConnectionId\":\"{}\"] upstream headers complete: end_stream=false\tthread=22",
                rng.next() % 2000,
                rng.next() % 1000
            ),
            _ => format!(
                "{time}\tinfo\txdsproxy\tconnected to upstream XDS server[{}]: istiod.istio-system.svc:15012",
                rng.next() % 100
            ),
        };
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    (out, rbac)
}
