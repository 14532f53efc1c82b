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
use s3crypt_core::transport::InsecureTransport;

/// Shared with the core (and the CLI), so that there is one escaping rule.
pub(crate) use s3crypt_core::text::printable;

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

/// The transport guard's refusal (see `clients.rs`) somewhere in `err`'s chain of sources.
fn refused_transport<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a InsecureTransport> {
    let mut e = Some(err);
    while let Some(cur) = e {
        if let Some(refused) = cur.downcast_ref::<InsecureTransport>() {
            return Some(refused);
        }
        e = cur.source();
    }
    None
}

/// One line describing a failed SDK call: `CODE: message (hint)` for service errors, the
/// refusal itself for a request the transport guard stopped (plain HTTP off loopback), and the
/// error chain for transport failures (no connection, timeout, no credentials, no region).
pub(crate) fn describe_sdk_error<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    if let Some(refused) = refused_transport(err) {
        return refused.to_string();
    }
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
