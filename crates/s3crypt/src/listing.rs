//! Keys from S3 listings.
//!
//! Listings ask for `encoding-type=url`: XML 1.0 cannot carry most control characters, so one
//! key holding, say, `\x07` would otherwise make a whole page unparseable (and every command that
//! lists the prefix fail). Keys come back URL-encoded and are decoded here; a server that lists
//! a key outside the prefix asked for is not followed there.

/// A listed key: URL-decoded when the server says it encoded it (`encoded`), and only if it is
/// under `prefix`; `None` for a key that does not decode or lies outside the prefix.
pub fn listed_key(raw: &str, encoded: bool, prefix: &str) -> Option<String> {
    let key = if encoded {
        url_decode(raw)?
    } else {
        raw.to_owned()
    };
    key.starts_with(prefix).then_some(key)
}

/// Decodes S3's `encoding-type=url` form (`%XX` escapes, `+` for a space); `None` if an escape is
/// malformed or the result is not UTF-8.
pub fn url_decode(s: &str) -> Option<String> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let (hi, lo) = (hex(*b.get(i + 1)?)?, hex(*b.get(i + 2)?)?);
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_keys_are_url_decoded_and_kept_under_their_prefix() {
        assert_eq!(
            url_decode("a%20b+c%2Bd%07").as_deref(),
            Some("a b c+d\u{7}")
        );
        assert_eq!(url_decode("%C3%BC").as_deref(), Some("ü"));
        for bad in ["%", "%4", "%zz", "%FF", "%+1", "%-1"] {
            assert_eq!(url_decode(bad), None, "{bad}");
        }
        assert_eq!(
            listed_key("p/a%1B", true, "p/").as_deref(),
            Some("p/a\u{1b}")
        );
        assert_eq!(listed_key("p/a%1B", false, "p/").as_deref(), Some("p/a%1B"));
        // A server that answers with keys outside the prefix is not followed there.
        assert_eq!(listed_key("other/x", true, "p/"), None);
        assert_eq!(listed_key("q", false, "p/"), None);
    }
}
