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
}

impl Error {
    /// A short, stable class name (the core's classes, plus `not-found`, `not-encrypted`,
    /// `service`, `cancelled`).
    pub fn class(&self) -> &'static str {
        match self {
            Self::Crypto(e) => e.class(),
            Self::NotFound { .. } => "not-found",
            Self::NotEncrypted { .. } => "not-encrypted",
            Self::Service { .. } => "service",
            Self::InvalidArgument(_) => "invalid-argument",
            Self::Io(_) => "io",
            Self::Cancelled => "cancelled",
        }
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
