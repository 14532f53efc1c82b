//! Errors of the S3 layer: the core's (format, authentication, keys) plus transport and service.

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong talking to S3 or decrypting what it returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Encryption or decryption failed (malformed, tampered, wrong key, context mismatch, ...).
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

    /// S3 refused or failed a request (after the SDK's retries).
    #[error("S3 {operation} failed: {message}")]
    Service {
        /// The S3 operation.
        operation: &'static str,
        /// HTTP status, when a response arrived.
        status: Option<u16>,
        /// The service's message.
        message: String,
    },

    /// The caller passed an invalid argument.
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

impl Error {
    /// A short, stable class name (the core's classes, plus `not-found`, `not-encrypted`,
    /// `service`, `cancelled`, `internal`).
    pub fn class(&self) -> &'static str {
        match self {
            Self::Crypto(e) => e.class(),
            Self::NotFound { .. } => "not-found",
            Self::NotEncrypted { .. } => "not-encrypted",
            Self::Service { .. } => "service",
            Self::InvalidArgument(_) => "invalid-argument",
            Self::Io(_) => "io",
            Self::Cancelled => "cancelled",
            Self::Internal(_) => "internal",
        }
    }

    /// Whether trying again later may succeed: S3 throttling (`SlowDown`, 429, 503), server
    /// errors (5xx), and requests that got no response. The SDK has already retried these
    /// ([`crate::Client`] uses its standard retry mode); a service may queue the object for
    /// later. Refusals, missing objects, tampered or undecryptable objects, and bugs are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Service { status: None, .. } => true,
            Self::Service {
                status: Some(s), ..
            } => *s == 429 || *s >= 500,
            _ => false,
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
            return Error::Io(std::io::Error::other("an error was lost in conversion"));
        }
        Error::Io(e)
    }
}

/// Converts an SDK error, keeping the HTTP status and the service's message.
pub(crate) fn service<E>(
    operation: &'static str,
    err: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Error
where
    E: std::error::Error + aws_sdk_s3::error::ProvideErrorMetadata + Send + Sync + 'static,
{
    use aws_sdk_s3::error::ProvideErrorMetadata;
    let status = err.raw_response().map(|r| r.status().as_u16());
    let message = match (err.code(), err.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_owned(),
        _ => aws_sdk_s3::error::DisplayErrorContext(&err).to_string(),
    };
    Error::Service {
        operation,
        status,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(status: Option<u16>) -> Error {
        Error::Service {
            operation: "PutObject",
            status,
            message: "x".into(),
        }
    }

    #[test]
    fn throttling_and_server_errors_are_retryable_refusals_are_not() {
        for s in [Some(429), Some(500), Some(503), None] {
            assert!(service(s).is_retryable(), "{s:?}");
        }
        for s in [Some(400), Some(403), Some(404), Some(412)] {
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
