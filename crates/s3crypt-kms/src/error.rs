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

/// KMS error codes after which trying again later may succeed.
fn transient(code: &str) -> bool {
    matches!(
        code,
        "ThrottlingException"
            | "LimitExceededException"
            | "KeyUnavailableException"
            | "DependencyTimeoutException"
            | "KMSInternalException"
    )
}

/// A failed KMS call as a structured keyring error: the message
/// (`AWS KMS {operation} with {key} failed: {CODE (hint) | what happened}`), the key, KMS's error
/// code and message, whether trying again later may succeed (throttling, 5xx, timeouts, failed
/// connections; not a request that could not be made, e.g. without credentials), and the SDK's
/// error as the source, without the raw response (whose body may hold a plaintext data key).
pub(crate) fn kms_failure<E>(
    operation: &str,
    key: &str,
    err: SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
) -> s3crypt_core::KeyringError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let shown = printable(key, 200);
    let refused = refused_transport(&err).map(ToString::to_string);
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(|c| printable(c, 80));
    let message = err
        .message()
        .filter(|m| !m.is_empty())
        .map(|m| printable(m, 300));
    let (why, retryable) = match &err {
        _ if refused.is_some() => (refused.clone().unwrap_or_default(), false),
        SdkError::ServiceError(_) => {
            let code_text = code
                .clone()
                .unwrap_or_else(|| "an unrecognised error".into());
            let why = match code.as_deref().and_then(hint) {
                Some(h) => format!("{code_text} ({h})"),
                None => code_text,
            };
            let retryable = code.as_deref().is_some_and(transient)
                || matches!(status, Some(429 | 500 | 502 | 503 | 504));
            (why, retryable)
        }
        SdkError::ResponseError(_) => (
            "its answer could not be read".to_owned(),
            !matches!(status, Some(400..=499)),
        ),
        SdkError::TimeoutError(_) => ("the request timed out".to_owned(), true),
        SdkError::DispatchFailure(d) if d.is_timeout() => {
            ("the request timed out".to_owned(), true)
        }
        SdkError::DispatchFailure(d) if d.is_io() => ("could not reach AWS KMS".to_owned(), true),
        SdkError::DispatchFailure(_) => (
            // No credentials or region, an endpoint that cannot be resolved: the cause says.
            format!("the request could not be sent: {}", root_cause(&err)),
            false,
        ),
        _ => (
            printable(&DisplayErrorContext(&err).to_string(), 400),
            false,
        ),
    };
    let mut out =
        s3crypt_core::KeyringError::new(format!("AWS KMS {operation} with {shown} failed: {why}"))
            .with_key(key)
            .with_retryable(retryable);
    if let Some(c) = code {
        out = out.with_service_code(c);
    }
    if let Some(m) = message {
        out = out.with_service_message(m);
    }
    // The SDK error without its raw response (never the response body: a GenerateDataKey or
    // Decrypt answer that failed to parse holds the plaintext data key).
    match err.into_source() {
        Ok(source) => out.with_source(BoxedSource(source)),
        Err(_) => out,
    }
}

/// The innermost cause of an error, escaped and shortened.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    printable(&cur.to_string(), 300)
}

/// A boxed SDK error as an `Error` (a `Box<dyn Error>` is not one itself).
#[derive(Debug)]
struct BoxedSource(Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for BoxedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BoxedSource {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// A keyring failure that is not KMS's answer (a malformed reply, a refused ARN), naming the key.
pub(crate) fn kms_refusal(
    operation: &str,
    key: &str,
    why: impl std::fmt::Display,
) -> s3crypt_core::KeyringError {
    s3crypt_core::KeyringError::new(format!(
        "AWS KMS {operation} with {} failed: {why}",
        printable(key, 200)
    ))
    .with_key(key)
}

/// One error for several keys' failures: the messages joined after `lead`; retryable if any is
/// (another attempt may reach the key that failed transiently); the code and source kept when
/// there is one failure.
pub(crate) fn combine(
    lead: &str,
    mut failures: Vec<s3crypt_core::KeyringError>,
) -> s3crypt_core::KeyringError {
    if failures.len() == 1 {
        let only = failures.remove(0);
        let message = format!("{lead}: {}", only.message());
        return only.with_message(message);
    }
    let retryable = failures
        .iter()
        .any(s3crypt_core::KeyringError::is_retryable);
    let codes: Vec<_> = failures.iter().map(|f| f.service_code()).collect();
    let same_code = codes.windows(2).all(|w| w[0] == w[1]);
    let joined: Vec<&str> = failures.iter().map(|f| f.message()).collect();
    let mut out = s3crypt_core::KeyringError::new(format!("{lead}: {}", joined.join("; ")))
        .with_retryable(retryable);
    if let (true, Some(Some(code))) = (same_code, codes.first()) {
        out = out.with_service_code(*code);
    }
    out
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
