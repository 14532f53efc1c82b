//! Showing text that came from outside (message headers, object keys, S3 metadata, a service's
//! error messages) on a terminal or in a log, where control sequences must not act.

/// `s` with control characters (C0, DEL, C1) and invisible formatting characters (zero-width,
/// bidirectional overrides and isolates, byte order mark) escaped as `\n`, `\u{1b}`, `\u{202e}`,
/// cut after `max` characters (then ending in `…`; `usize::MAX` for no limit). Everything else,
/// quotes and backslashes included, is kept as it is.
///
/// ```
/// use s3crypt_core::text::printable;
/// assert_eq!(printable("a\u{1b}]0;title\u{7}", 100), "a\\u{1b}]0;title\\u{7}");
/// assert_eq!(printable("abcdef", 3), "abc…");
/// ```
pub fn printable(s: &str, max: usize) -> String {
    let hide = |c: char| {
        c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
    };
    let mut out = String::with_capacity(s.len().min(max));
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if hide(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_and_cuts() {
        assert_eq!(printable("abc", 10), "abc");
        assert_eq!(printable("a\nb\u{1b}", 20), "a\\nb\\u{1b}");
        assert_eq!(printable("it's \"ok\" ✓", 20), "it's \"ok\" ✓");
        assert_eq!(printable("a\u{202e}b", 20), "a\\u{202e}b");
        assert_eq!(printable("abcdef", 3), "abc…");
        assert_eq!(printable("abc", 3), "abc");
        // DEL and the C1 controls (CSI is U+009B) too.
        assert_eq!(printable("\u{7f}\u{9b}2J", 20), "\\u{7f}\\u{9b}2J");
        assert_eq!(printable("x", usize::MAX), "x");
    }
}
