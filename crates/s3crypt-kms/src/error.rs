//! Turning KMS failures into messages that say which key failed and why.
//!
//! The keyring trait returns [`s3crypt_core::Error`], so KMS failures become
//! [`s3crypt_core::Error::Keyring`] with a message of the form
//!
//! ```text
//! AWS KMS Decrypt with arn:aws:kms:us-east-1:111122223333:key/… failed: DisabledException: … (the key is disabled)
//! ```
//!
//! naming the operation, the key identifier and KMS's error code, plus a hint for the common
//! codes. Messages never contain a data key or a ciphertext. Everything that came from the network
//! or from a message header (KMS's error text, ARNs read from EDKs) is escaped and shortened, so
//! that it cannot inject terminal control sequences or flood a log.

use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// `s` with control characters and invisible formatting characters (zero-width, bidirectional
/// overrides) escaped as `\n`, `\u{..}`, cut after `max` characters.
pub(crate) fn printable(s: &str, max: usize) -> String {
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

/// What a KMS error code usually means, for the codes a keyring meets.
fn hint(code: &str) -> Option<&'static str> {
    Some(match code {
        "AccessDeniedException" => {
            "the caller may not use this key (key policy, IAM policy or grant), or the key is in another account or region"
        }
        "DisabledException" => "the key is disabled",
        "InvalidCiphertextException" => {
            "the encryption context differs from the one the data key was wrapped with, or the wrapped key is damaged"
        }
        "IncorrectKeyException" => "the data key was wrapped under a different KMS key",
        "NotFoundException" => "no such key or alias in this account and region",
        "KMSInvalidStateException" => {
            "the key is pending deletion, pending import, or otherwise unusable right now"
        }
        "KeyUnavailableException" | "DependencyTimeoutException" | "KMSInternalException" => {
            "KMS could not serve the request; try again later"
        }
        "ThrottlingException" | "LimitExceededException" => {
            "KMS kept throttling after the configured retries; lower the concurrency or ask for a higher KMS request quota"
        }
        "InvalidGrantTokenException" => "a configured grant token is not valid",
        "InvalidKeyUsageException" => {
            "the key's spec or usage does not allow this operation: keyrings need a symmetric \
             ENCRYPT_DECRYPT key, SSE-C key derivation an HMAC_256 GENERATE_VERIFY_MAC key"
        }
        "UnrecognizedClientException" | "InvalidSignatureException" | "ExpiredTokenException" => {
            "the AWS credentials are not valid for KMS"
        }
        _ => return None,
    })
}

/// One line describing a failed SDK call: `CODE: message (hint)` for service errors, and the
/// error chain for transport failures (no connection, timeout, no credentials, no region).
pub(crate) fn describe_sdk_error<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match err {
        SdkError::ServiceError(ctx) => {
            let e = ctx.err();
            let code = e.code().unwrap_or("an unrecognised error");
            let mut s = printable(code, 80);
            if let Some(m) = e.message().filter(|m| !m.is_empty()) {
                s.push_str(": ");
                s.push_str(&printable(m, 300));
            }
            if let Some(h) = hint(code) {
                s.push_str(" (");
                s.push_str(h);
                s.push(')');
            }
            s
        }
        SdkError::TimeoutError(_) => "the request timed out".to_owned(),
        SdkError::DispatchFailure(_) => format!(
            "could not reach AWS KMS: {}",
            printable(&DisplayErrorContext(err).to_string(), 400)
        ),
        _ => printable(&DisplayErrorContext(err).to_string(), 400),
    }
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
    }

    #[test]
    fn hints_cover_the_codes_keyrings_meet() {
        for c in [
            "AccessDeniedException",
            "DisabledException",
            "InvalidCiphertextException",
            "NotFoundException",
            "ThrottlingException",
            "KMSInvalidStateException",
        ] {
            assert!(hint(c).is_some(), "{c}");
        }
        assert!(hint("SomethingElse").is_none());
    }
}
