//! Kubernetes object-name rules: DNS-1123 labels (namespaces) and DNS-1123
//! subdomains (most other objects). The plugins check names typed on the
//! command line with them (through `kubeplugin::names`) and meshsim's API
//! server checks the objects it stores, so the rule is written once.

/// A DNS-1123 label (namespace names): 1 to 63 lowercase letters, digits and
/// '-', neither starting nor ending with '-'.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain (pod and Deployment names): at most 253 characters of
/// DNS-1123 labels joined by '.'.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for ok in ["a", "np-test-1", "0abc", &"x".repeat(63)] {
            assert!(is_dns_label(ok), "{ok:?} should be a label");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "np_test",
            "a.b",
            "a b",
            "é",
            &"x".repeat(64),
        ] {
            assert!(!is_dns_label(bad), "{bad:?} should not be a label");
        }
    }

    #[test]
    fn subdomains() {
        // 253 characters: three 63-letter labels and a 61-letter one.
        let longest = [63, 63, 63, 61].map(|n| "a".repeat(n)).join(".");
        for ok in ["a", "np-test-nginx-1-5d8f", "a.b.c", &longest] {
            assert!(is_dns_subdomain(ok), "{ok:?} should be a subdomain");
        }
        // Valid labels, but 255 characters in all.
        let long = [63, 63, 63, 63].map(|n| "a".repeat(n)).join(".");
        for bad in ["", ".", "a..b", "a.", ".a", "A.b", "a.-b", &long] {
            assert!(!is_dns_subdomain(bad), "{bad:?} should not be a subdomain");
        }
    }
}
