//! Errors of the S3 layer: the core's (format, authentication, keys) plus transport and service.

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong talking to S3 or decrypting what it returns, grouped by whose fault it is
/// ([`Error::fault`]): the object (malformed, tampered, not s3crypt's), the keys (wrong, missing,
/// refused by KMS), the caller (invalid arguments), the service (S3 refused or failed), the
/// transport (no response), or s3crypt itself ([`Error::Internal`]).
///
/// `Display` is one line that never contains key material or plaintext. It does not repeat the
/// [`std::error::Error::source`] (the SDK's error, kept for callers that inspect it): S3's own
/// message is in [`Error::service_message`] and in the source chain, not in `Display`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Encryption or decryption failed: the object is malformed or was tampered with, no
    /// configured key can decrypt it, a keyring (file or AWS KMS) failed, the encryption context
    /// does not match (see [`s3crypt_core::Error`] and [`s3crypt_core::KeyringError`]).
    #[error(transparent)]
    Crypto(#[from] s3crypt_core::Error),

    /// The object (or bucket) does not exist.
    #[error("s3://{bucket}/{key} does not exist")]
    NotFound {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },

    /// The bucket does not exist (S3 said `NoSuchBucket`). A HEAD request gets no error code, so
    /// a HEAD of an object in a missing bucket is [`Error::NotFound`].
    #[error("bucket {bucket} does not exist")]
    NoSuchBucket {
        /// Bucket.
        bucket: String,
    },

    /// The object is not an s3crypt / AWS Encryption SDK object, or its s3crypt metadata is
    /// invalid.
    #[error("s3://{bucket}/{key} is not an s3crypt object: {reason}")]
    NotEncrypted {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// What is missing or wrong.
        reason: String,
    },

    /// S3 answered with an error (after the SDK's retries), or with something s3crypt cannot use.
    #[error("S3 {operation} failed{}", service_summary(*status, code.as_deref(), message, source.is_some()))]
    #[non_exhaustive]
    Service {
        /// The S3 operation.
        operation: &'static str,
        /// HTTP status of the response.
        status: Option<u16>,
        /// S3's error code (`SlowDown`, `AccessDenied`, `NoSuchBucket`, ...), when it sent one.
        code: Option<String>,
        /// S3's message (escaped), or what was wrong with the response.
        message: String,
        /// The SDK's error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// No usable response arrived (after the SDK's retries): no connection, a timeout, a response
    /// or body that broke off and could not be resumed, or a request that could not be sent
    /// (no credentials, say: then not retryable).
    #[error("S3 {operation}: no response ({reason})")]
    #[non_exhaustive]
    Transport {
        /// The S3 operation.
        operation: &'static str,
        /// What happened, in s3crypt's words (`timed out`, `the connection failed`, ...); the
        /// cause (`Connection refused`, a TLS alert) is the source.
        reason: String,
        /// Whether trying again later may succeed.
        retryable: bool,
        /// The SDK's error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// The caller passed an invalid argument or configuration.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Reading the input or writing the output failed.
    #[error("I/O error: {0}")]
    Io(std::io::Error),

    /// The transfer was cancelled; any multipart upload was aborted.
    #[error("cancelled")]
    Cancelled,

    /// A broken invariant inside s3crypt, or a task that panicked: a bug, never the caller's
    /// input or the object's.
    #[error("internal error (a bug in s3crypt, please report it): {0}")]
    Internal(String),
}

/// Whose fault an [`Error`] is: what a service does next depends on it (reject the object, fix
/// the keys or the configuration, retry later, report a bug).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The object: malformed, truncated, tampered with, not an s3crypt object, or not the object
    /// that was asked for (its authenticated context names another location).
    Object,
    /// The keys: no configured key can decrypt the object, or a keyring failed (unreadable key
    /// file, AWS KMS refused, throttled or unreachable; see [`Error::is_retryable`]).
    Key,
    /// The caller: an invalid argument or configuration, a missing object or bucket, a range
    /// past the end.
    Caller,
    /// S3 answered with an error.
    Service,
    /// No response arrived from S3.
    Transport,
    /// Local input or output failed.
    Io,
    /// The caller cancelled the transfer.
    Cancelled,
    /// A bug in s3crypt.
    Internal,
}

impl Error {
    /// A short, stable class name (the core's classes, plus `not-found`, `not-encrypted`,
    /// `service`, `transport`, `cancelled`, `internal`).
    pub fn class(&self) -> &'static str {
        match self {
            Self::Crypto(e) => e.class(),
            Self::NotFound { .. } | Self::NoSuchBucket { .. } => "not-found",
            Self::NotEncrypted { .. } => "not-encrypted",
            Self::Service { .. } => "service",
            Self::Transport { .. } => "transport",
            Self::InvalidArgument(_) => "invalid-argument",
            Self::Io(_) => "io",
            Self::Cancelled => "cancelled",
            Self::Internal(_) => "internal",
        }
    }

    /// Whose fault this is.
    pub fn fault(&self) -> Fault {
        use s3crypt_core::Error as Core;
        match self {
            Self::Crypto(e) => match e {
                Core::NoDecryptableKey(_) | Core::Keyring(_) => Fault::Key,
                Core::InvalidArgument(_) | Core::RangeNotSatisfiable { .. } => Fault::Caller,
                Core::Io(_) => Fault::Io,
                _ => Fault::Object,
            },
            Self::NotEncrypted { .. } => Fault::Object,
            Self::NotFound { .. } | Self::NoSuchBucket { .. } | Self::InvalidArgument(_) => {
                Fault::Caller
            }
            Self::Service { .. } => Fault::Service,
            Self::Transport { .. } => Fault::Transport,
            Self::Io(_) => Fault::Io,
            Self::Cancelled => Fault::Cancelled,
            Self::Internal(_) => Fault::Internal,
        }
    }

    /// Whether trying again later may succeed: S3 throttling (`SlowDown`, 429, 503) and server
    /// errors (5xx), requests that got no response, and AWS KMS throttling or unavailability.
    /// The SDKs have already retried these ([`crate::Client`] uses their standard retry mode); a
    /// service may queue the object for later. Refusals, missing objects, tampered or
    /// undecryptable objects, and bugs are not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { retryable, .. } => *retryable,
            Self::Service { status, code, .. } => {
                self.is_throttling()
                    || matches!(status, Some(500 | 502 | 503 | 504))
                    || matches!(
                        code.as_deref(),
                        Some("RequestTimeout" | "InternalError" | "ServiceUnavailable")
                    )
            }
            Self::Crypto(s3crypt_core::Error::Keyring(k)) => k.is_retryable(),
            _ => false,
        }
    }

    /// Whether S3 (`SlowDown`, HTTP 429/503) or AWS KMS (`ThrottlingException`,
    /// `LimitExceededException`) throttled the request after the SDKs' retries: lower the request
    /// rate.
    pub fn is_throttling(&self) -> bool {
        match self {
            Self::Service { status, code, .. } => {
                matches!(status, Some(429 | 503))
                    || matches!(
                        code.as_deref(),
                        Some("SlowDown" | "Throttling" | "ThrottlingException" | "TooManyRequests")
                    )
            }
            Self::Crypto(s3crypt_core::Error::Keyring(k)) => k.is_throttling(),
            _ => false,
        }
    }

    /// The HTTP status of S3's answer, for [`Error::Service`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Service { status, .. } => *status,
            _ => None,
        }
    }

    /// S3's or AWS KMS's message for [`Error::Service`] and keyring errors, when it sent one
    /// (escaped; not part of `Display`, which names the operation, status and code).
    pub fn service_message(&self) -> Option<&str> {
        match self {
            Self::Service { message, .. } if !message.is_empty() => Some(message),
            Self::Crypto(s3crypt_core::Error::Keyring(k)) => k.service_message(),
            _ => None,
        }
    }

    /// S3's or AWS KMS's error code (`SlowDown`, `AccessDenied`, `ThrottlingException`, ...).
    pub fn service_code(&self) -> Option<&str> {
        match self {
            Self::Service { code, .. } => code.as_deref(),
            Self::Crypto(s3crypt_core::Error::Keyring(k)) => k.service_code(),
            _ => None,
        }
    }

    /// A [`Error::Service`] for an answer s3crypt cannot use (no SDK error behind it).
    pub(crate) fn bad_response(operation: &'static str, message: impl Into<String>) -> Self {
        Self::Service {
            operation,
            status: None,
            code: None,
            message: message.into(),
            source: None,
        }
    }

    /// A retryable [`Error::Transport`] with no SDK error behind it.
    pub(crate) fn transport(operation: &'static str, reason: impl Into<String>) -> Self {
        Self::Transport {
            operation,
            reason: reason.into(),
            retryable: true,
            source: None,
        }
    }

    /// The same [`Error::Service`] with `more` appended to its message.
    pub(crate) fn with_hint(self, more: &str) -> Self {
        match self {
            Self::Service {
                operation,
                status,
                code,
                message,
                source,
            } => Self::Service {
                operation,
                status,
                code,
                message: format!("{message} ({more})"),
                source,
            },
            other => other,
        }
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::Internal(if e.is_panic() {
            "a task panicked".into()
        } else {
            "a task was cancelled".into()
        })
    }
}

impl From<std::io::Error> for Error {
    /// An `io::Error` that carries one of this crate's errors (a [`crate::PlaintextStream`] read
    /// through `AsyncRead` reports its errors so) gives that error back, so that, say, a tampered
    /// frame stays an authentication failure after passing through an `AsyncRead` consumer.
    fn from(e: std::io::Error) -> Self {
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            if let Some(Ok(inner)) = e.into_inner().map(|b| b.downcast::<Error>()) {
                return *inner;
            }
            return Error::Internal("an error was lost in conversion".into());
        }
        Error::Io(e)
    }
}

/// The innermost cause in `err`'s chain of sources (the OS's `Connection refused`, a TLS
/// alert), escaped and shortened: what a transport failure's message shows.
pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    s3crypt_core::text::printable(&cur.to_string(), 300)
}

/// `Display`'s tail for [`Error::Service`]: ` (HTTP 503, SlowDown)`, and the message only when no
/// SDK error carries it (an answer s3crypt itself found wrong).
fn service_summary(status: Option<u16>, code: Option<&str>, message: &str, sdk: bool) -> String {
    let mut parts = Vec::new();
    if let Some(s) = status {
        parts.push(format!("HTTP {s}"));
    }
    if let Some(c) = code {
        parts.push(c.to_owned());
    }
    let mut out = if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    };
    if !sdk && !message.is_empty() {
        out.push_str(": ");
        out.push_str(message);
    }
    out
}

/// Converts an SDK error: S3's answers become [`Error::Service`] (HTTP status, error code and
/// message), requests without a usable answer [`Error::Transport`] (retryable when it timed out,
/// the connection failed or the response broke off; not when the request could not be made,
/// e.g. without credentials), a request the SSE-C transport guard refused or the SDK could not
/// build [`Error::InvalidArgument`]; the SDK's error is kept as the source.
pub(crate) fn service<E>(
    operation: &'static str,
    err: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Error
where
    E: std::error::Error + aws_sdk_s3::error::ProvideErrorMetadata + Send + Sync + 'static,
{
    use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
    use s3crypt_core::text::printable;
    // The SSE-C guard's refusal is a configuration error, whichever variant carries it.
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = cur {
        if let Some(refused) = e.downcast_ref::<s3crypt_core::transport::InsecureTransport>() {
            return Error::InvalidArgument(refused.to_string());
        }
        cur = e.source();
    }
    let status = err.raw_response().map(|r| r.status().as_u16());
    let transport = |reason: &str, retryable: bool, err| Error::Transport {
        operation,
        reason: reason.to_owned(),
        retryable,
        source: Some(Box::new(err)),
    };
    match &err {
        SdkError::ServiceError(_) => Error::Service {
            operation,
            status,
            code: err.code().map(|c| printable(c, 80)),
            message: err.message().map(|m| printable(m, 300)).unwrap_or_default(),
            source: Some(Box::new(err)),
        },
        // An answer that could not be read (cut off, unparseable): transient unless S3 refused.
        SdkError::ResponseError(_) => {
            let refused = matches!(status, Some(400..=499));
            transport("the response could not be read", !refused, err)
        }
        SdkError::TimeoutError(_) => transport("timed out", true, err),
        SdkError::DispatchFailure(d) => {
            if d.is_timeout() {
                transport("timed out", true, err)
            } else if d.is_io() {
                transport("the connection failed", true, err)
            } else if d.is_user() {
                Error::InvalidArgument(format!("S3 {operation}: {}", root_cause(&err)))
            } else {
                // No credentials, no region, an endpoint that cannot be resolved: trying again
                // will not help until the configuration changes.
                transport("the request could not be sent", false, err)
            }
        }
        SdkError::ConstructionFailure(_) => {
            Error::InvalidArgument(format!("S3 {operation}: {}", root_cause(&err)))
        }
        _ => transport("unexpected SDK failure", false, err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(status: Option<u16>) -> Error {
        Error::Service {
            operation: "PutObject",
            status,
            code: None,
            message: "x".into(),
            source: None,
        }
    }

    #[test]
    fn throttling_and_server_errors_are_retryable_refusals_are_not() {
        for s in [Some(429), Some(500), Some(503)] {
            assert!(service(s).is_retryable(), "{s:?}");
        }
        assert!(Error::transport("GetObject", "timed out").is_retryable());
        // 501 (a header an S3-compatible store does not implement) is final.
        for s in [Some(400), Some(403), Some(404), Some(412), Some(501), None] {
            assert!(!service(s).is_retryable(), "{s:?}");
        }
        assert!(!Error::Crypto(s3crypt_core::Error::Authentication).is_retryable());
        assert!(!Error::Internal("x".into()).is_retryable());
    }

    #[tokio::test]
    async fn a_panicked_task_is_an_internal_error_not_the_callers() {
        let r = tokio::spawn(async { panic!("boom") }).await;
        let e = Error::from(r.unwrap_err());
        assert_eq!(e.class(), "internal");
        assert!(e.to_string().contains("a bug in s3crypt"), "{e}");
    }
}
