//! One error type for the core, whose variants say who is at fault.
//!
//! * the message is broken: [`Error::Truncated`], [`Error::Malformed`], [`Error::Unsupported`],
//!   [`Error::LimitExceeded`];
//! * the message was altered or forged: [`Error::Authentication`] (deliberately opaque);
//! * the caller's keys or expectations do not match: [`Error::NoDecryptableKey`],
//!   [`Error::ContextMismatch`];
//! * the caller misused the API: [`Error::InvalidArgument`];
//! * key material on disk is unusable: [`Error::Keyring`];
//! * the surrounding I/O failed: [`Error::Io`].

use std::fmt;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while encrypting or decrypting.
///
/// Messages never contain key material or plaintext. Authentication failures deliberately do not
/// say which byte or which check failed, so that they cannot serve as an oracle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The message ended before it was complete (in the header, a frame, before the final frame,
    /// or in the footer).
    #[error("message is truncated: it ends inside {0}")]
    Truncated(&'static str),

    /// The message is structurally invalid (wrong sequence number or IV, bytes after the end,
    /// inconsistent lengths, invalid encryption context, ...).
    #[error("message is malformed: {0}")]
    Malformed(Malformed),

    /// The message uses a version, algorithm suite or content type this build cannot read.
    #[error("unsupported message: {0}")]
    Unsupported(String),

    /// The message declares something above a configured safety limit (frame length, number of
    /// encrypted data keys); refused before any allocation of that size.
    #[error("message exceeds a limit: {0}")]
    LimitExceeded(String),

    /// Authentication failed: the header, a frame, the key commitment or the signature does not
    /// verify. The message was corrupted or tampered with, or is not what it claims to be.
    #[error("authentication failed: the message was corrupted or tampered with")]
    Authentication,

    /// None of the configured keys could decrypt any of the message's encrypted data keys.
    #[error("no configured key can decrypt this message (it lists: {0})")]
    NoDecryptableKey(String),

    /// The encryption context does not hold a pair the caller required.
    #[error("encryption context mismatch: {0}")]
    ContextMismatch(String),

    /// A keyring could not do its work: a key file is unreadable, insecure or malformed, or a key
    /// service (AWS KMS) refused or failed. [`KeyringError`] says which key, the service's error
    /// code and whether trying again later may succeed.
    #[error(transparent)]
    Keyring(KeyringError),

    /// A plaintext byte range starts at or after the end of the plaintext (HTTP 416 semantics).
    #[error("range not satisfiable: the plaintext is {plaintext_len} bytes long")]
    RangeNotSatisfiable {
        /// Length of the whole plaintext.
        plaintext_len: u64,
    },

    /// The caller passed an invalid argument (frame length, context key, range, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Reading input or writing output failed.
    #[error("I/O error")]
    Io(#[from] std::io::Error),
}

/// The structural defects [`Error::Malformed`] distinguishes. These describe the shape of the
/// input, never secret state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Malformed {
    /// A frame carries a sequence number other than the expected one (reordered, duplicated or
    /// dropped frames).
    SequenceNumber {
        /// The sequence number the reader expected at this position.
        expected: u32,
        /// The sequence number found in the frame.
        found: u32,
    },
    /// A frame's IV is not 8 zero bytes followed by its sequence number.
    FrameIv,
    /// Bytes follow the end of the message.
    TrailingData,
    /// Frame length 0.
    ZeroFrameLength,
    /// The final frame's content length exceeds the frame length.
    FinalFrameLength,
    /// The header lists no encrypted data key.
    NoEncryptedDataKeys,
    /// The encryption context is not a sorted list of unique UTF-8 pairs, or its length field
    /// disagrees with its content.
    EncryptionContext(&'static str),
    /// Any other field that does not have an allowed value.
    Field(&'static str),
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SequenceNumber { expected, found } => write!(
                f,
                "frame sequence number {found} where {expected} was expected (frames reordered, duplicated or dropped)"
            ),
            Self::FrameIv => f.write_str("frame IV does not match its sequence number"),
            Self::TrailingData => f.write_str("unexpected bytes after the end of the message"),
            Self::ZeroFrameLength => f.write_str("frame length is 0"),
            Self::FinalFrameLength => f.write_str("final frame is longer than the frame length"),
            Self::NoEncryptedDataKeys => f.write_str("no encrypted data keys"),
            Self::EncryptionContext(what) => write!(f, "invalid encryption context: {what}"),
            Self::Field(what) => write!(f, "invalid {what}"),
        }
    }
}

impl Error {
    /// A short, stable name for the class of this error (`truncated`, `malformed`, `unsupported`,
    /// `limit`, `authentication`, `no-key`, `context`, `keyring`, `range`, `invalid-argument`, `io`), as
    /// used by the test vectors and the CLI's `--json` output.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Truncated(_) => "truncated",
            Self::Malformed(_) => "malformed",
            Self::Unsupported(_) => "unsupported",
            Self::LimitExceeded(_) => "limit",
            Self::Authentication => "authentication",
            Self::NoDecryptableKey(_) => "no-key",
            Self::ContextMismatch(_) => "context",
            Self::Keyring(_) => "keyring",
            Self::RangeNotSatisfiable { .. } => "range",
            Self::InvalidArgument(_) => "invalid-argument",
            Self::Io(_) => "io",
        }
    }

    /// An equal error (same variant and text; an I/O error keeps its kind and message), for
    /// handing one failure to several callers.
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Self::Truncated(w) => Self::Truncated(w),
            Self::Malformed(m) => Self::Malformed(m.clone()),
            Self::Unsupported(s) => Self::Unsupported(s.clone()),
            Self::LimitExceeded(s) => Self::LimitExceeded(s.clone()),
            Self::Authentication => Self::Authentication,
            Self::NoDecryptableKey(s) => Self::NoDecryptableKey(s.clone()),
            Self::ContextMismatch(s) => Self::ContextMismatch(s.clone()),
            Self::Keyring(k) => Self::Keyring(k.clone()),
            Self::RangeNotSatisfiable { plaintext_len } => Self::RangeNotSatisfiable {
                plaintext_len: *plaintext_len,
            },
            Self::InvalidArgument(s) => Self::InvalidArgument(s.clone()),
            Self::Io(e) => Self::Io(std::io::Error::new(e.kind(), e.to_string())),
        }
    }
}

impl Error {
    /// A [`Error::Keyring`] with only a message (for key files and configuration; key services
    /// build a [`KeyringError`] with its code and source).
    pub fn keyring(message: impl Into<String>) -> Self {
        Self::Keyring(KeyringError::new(message))
    }
}

/// Why a keyring failed: a message that names the key and what went wrong (never key material),
/// and, for key services such as AWS KMS, the key, the service's error code, whether the failure
/// is transient, and the service SDK's error as [`std::error::Error::source`].
///
/// `Display` is `keyring error: ` and the message; it does not repeat the source (the service's
/// own message is in [`KeyringError::service_message`] and the source chain).
#[derive(Clone)]
pub struct KeyringError {
    message: String,
    key: Option<String>,
    service_code: Option<String>,
    service_message: Option<String>,
    retryable: bool,
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl KeyringError {
    /// A failure described by `message` (name the key; never include key material).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            key: None,
            service_code: None,
            service_message: None,
            retryable: false,
            source: None,
        }
    }

    /// The key concerned (a KMS key ARN, a `namespace/name`, a file path).
    #[must_use]
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The key service's error code (`ThrottlingException`, `AccessDeniedException`, ...).
    #[must_use]
    pub fn with_service_code(mut self, code: impl Into<String>) -> Self {
        self.service_code = Some(code.into());
        self
    }

    /// The key service's message (kept out of the message and `Display`: the source carries it
    /// too).
    #[must_use]
    pub fn with_service_message(mut self, message: impl Into<String>) -> Self {
        self.service_message = Some(message.into());
        self
    }

    /// Whether trying again later may succeed (throttling, service unavailable, timeouts).
    #[must_use]
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// The underlying error (the service SDK's), for callers that inspect it.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(std::sync::Arc::new(source));
        self
    }

    /// The same error with another message (for adding context; keeps the key, code and source).
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// What went wrong, naming the key.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The key concerned, when one is.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The key service's error code, when the service answered.
    pub fn service_code(&self) -> Option<&str> {
        self.service_code.as_deref()
    }

    /// The key service's message, when it sent one.
    pub fn service_message(&self) -> Option<&str> {
        self.service_message.as_deref()
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// Whether the key service throttled the request (AWS KMS `ThrottlingException` or
    /// `LimitExceededException`) after the SDK's retries.
    pub fn is_throttling(&self) -> bool {
        matches!(
            self.service_code.as_deref(),
            Some("ThrottlingException" | "LimitExceededException")
        )
    }
}

impl fmt::Display for KeyringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "keyring error: {}", self.message)
    }
}

impl fmt::Debug for KeyringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyringError")
            .field("message", &self.message)
            .field("key", &self.key)
            .field("service_code", &self.service_code)
            .field("service_message", &self.service_message)
            .field("retryable", &self.retryable)
            .field("has_source", &self.source.is_some())
            .finish()
    }
}

impl std::error::Error for KeyringError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<KeyringError> for Error {
    fn from(e: KeyringError) -> Self {
        Self::Keyring(e)
    }
}

impl From<Malformed> for Error {
    fn from(m: Malformed) -> Self {
        Self::Malformed(m)
    }
}
