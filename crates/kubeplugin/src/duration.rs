//! Parsing durations the way kubectl users type them (`3s`, `500ms`, `1m30s`, `2`).
//!
//! Several flags take durations (`--request-timeout`, `--timeout`, `--wait`,
//! `--since`); a single strict parser gives them all the same syntax and the
//! same one-line usage error (exit 2) instead of a panic or a silent default.

use std::time::Duration;

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration \"{input}\": {reason} (examples: 3s, 500ms, 1m30s, 2h)")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

/// Parses `1h2m3s`, `1.5s`, `250ms`, `10us`, or a bare number of seconds.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = s.parse().map_err(|_| err("too large"))?;
        return Ok(Duration::from_secs(secs));
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| err("missing unit"))?;
        if num_len == 0 {
            return Err(err("expected a number"));
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| err("bad number"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(err("unknown unit (use h, m, s, ms, us, ns)")),
        };
        rest = &rest[unit_len..];
        total += value * factor;
    }
    if !total.is_finite() || total > 1e9 {
        return Err(err("too large"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// clap value parser wrapper returning a `String` error (clap prints it and exits 2).
pub fn clap_duration(input: &str) -> Result<Duration, String> {
    parse_duration(input).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        let cases = [
            ("3s", 3000),
            ("500ms", 500),
            ("1m30s", 90_000),
            ("2", 2000),
            ("1.5s", 1500),
            ("1h", 3_600_000),
            ("0", 0),
        ];
        for (input, ms) in cases {
            assert_eq!(
                parse_duration(input).unwrap().as_millis(),
                ms,
                "input {input}"
            );
        }
    }

    #[test]
    fn rejects_garbage() {
        for input in ["", "s", "3x", "abc", "1..2s", "-1s", "3 s"] {
            assert!(parse_duration(input).is_err(), "{input} should fail");
        }
    }
}
