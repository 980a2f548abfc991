//! Untrusted text on its way to a message or a terminal: shown, never obeyed.

/// Show untrusted input in a message without letting control characters through.
pub fn printable(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(80)
        .flat_map(|c| {
            if unsafe_on_terminal(c) {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

/// Whether a character must not reach a terminal raw: control characters (ESC
/// sequences, C1 codes, DEL) and the Unicode characters that reorder or hide text
/// (bidirectional overrides such as U+202E, isolates, marks, zero-width ones).
pub fn unsafe_on_terminal(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}
