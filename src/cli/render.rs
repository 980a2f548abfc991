//! Rendering: dates, records and verdicts as text or JSON.

use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::store::Record;

pub use crate::timefmt::{date, rfc3339};

/// A record as the JSON object of the contract (`list`, `show`, `issue`).
pub fn record_json(r: &Record, now: OffsetDateTime) -> Value {
    json!({
        "serial": r.serial,
        "role": r.role.as_str(),
        "profile": r.profile,
        "subject": r.subject,
        "names": r.names,
        "not_before": rfc3339(r.not_before),
        "not_after": rfc3339(r.not_after),
        "status": r.status_at(now).as_str(),
        "sha256": r.sha256,
        "request_id": r.request_id,
        "issuer": r.issuer,
        "issued_at": rfc3339(r.issued_at),
        "revocation": r.revocation.as_ref().map(|v| json!({
            "at": rfc3339(v.at),
            "reason": v.reason,
        })),
    })
}

static JSON_PRINTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Print one JSON document on stdout.
pub fn print_json(v: &Value) {
    JSON_PRINTED.store(true, std::sync::atomic::Ordering::Relaxed);
    outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

static JSON_LINES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Say that this command's output is JSON lines (`batch --json`): an error that
/// stops it is then printed as one more line, not as a multi-line document.
pub fn start_json_lines() {
    JSON_LINES.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether this command's output is JSON lines.
pub fn json_lines() -> bool {
    JSON_LINES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether this process printed a JSON document (a failing command then does not
/// print a second one for its error).
pub fn json_printed() -> bool {
    JSON_PRINTED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Text from a record, a profile or a file made safe to print on a terminal:
/// control characters (ESC sequences, C1 codes, DEL) and the Unicode characters
/// that reorder or hide text (bidirectional overrides such as U+202E, isolates,
/// marks) are shown escaped, e.g. `\u{1b}`, never sent raw.
pub fn safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if crate::names::unsafe_on_terminal(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// A plain table: columns padded to their widest cell; every cell passes
/// through `safe`.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| safe(c)).collect())
        .collect();
    let rows = rows.as_slice();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == cells.len() {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = line(header.iter().map(|s| s.to_string()).collect());
    for r in rows {
        out.push('\n');
        out.push_str(&line(r.clone()));
    }
    out
}

/// A progress bar's rate in whole certificates per second (`2500/s`).
pub fn progress_rate(state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write) {
    let _ = write!(w, "{}/s", rate_text(state.per_sec()));
}

/// A rate as a whole number (`2500`, never `2500.1234`).
fn rate_text(per_sec: f64) -> String {
    if per_sec.is_finite() && per_sec >= 0.0 {
        format!("{per_sec:.0}")
    } else {
        "-".into()
    }
}

#[cfg(test)]
mod rate_tests {
    #[test]
    fn rates_are_whole_numbers() {
        assert_eq!(super::rate_text(2_500.123_4), "2500");
        assert_eq!(super::rate_text(0.4), "0");
        assert_eq!(super::rate_text(f64::NAN), "-");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_and_bidi_overrides_are_escaped() {
        assert_eq!(safe("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        assert_eq!(safe("evil\u{202e}gpj.exe"), "evil\\u{202e}gpj.exe");
        assert_eq!(safe("x\u{9b}y\u{7f}"), "x\\u{9b}y\\u{7f}");
        assert_eq!(safe("Zürich ok"), "Zürich ok");
        let t = table(&["A"], &[vec!["\u{1b}]0;title\u{7}".into()]]);
        assert!(!t.contains('\u{1b}') && !t.contains('\u{7}'), "{t}");
    }
}
