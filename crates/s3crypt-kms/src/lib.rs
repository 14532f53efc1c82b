//! # s3crypt-kms
//!
//! The AWS Encryption SDK's **AWS KMS keyring** for s3crypt: data keys generated and wrapped by
//! AWS KMS keys, so that messages s3crypt writes decrypt with any AWS Encryption SDK configured
//! with the same KMS key, and the other way round. It implements the keyring interface of
//! [`s3crypt_core`] and composes with local keyrings through
//! [`s3crypt_core::keyring::multi::MultiKeyring`].
//!
//! * [`KmsKeyring::new`]: a *strict* keyring for one key (spec
//!   `framework/aws-kms/aws-kms-keyring.md`).
//! * [`KmsKeyring::discovery`]: a *discovery* keyring that decrypts with whatever key a message
//!   names, optionally limited by a [`DiscoveryFilter`] (spec `aws-kms-discovery-keyring.md`).
//! * [`KmsHmacKey`]: HMAC-SHA-256 under a KMS HMAC key (`GenerateMac`), from which the `s3crypt`
//!   crate derives per-object SSE-C keys for users who hold no local key.
//! * Several KMS keys (in several regions, even), or KMS plus local keys: put the keyrings in a
//!   `MultiKeyring`; the first one generates the data key (`GenerateDataKey`), the others wrap it
//!   (`Encrypt`), and on decryption any one of them may unwrap it, one child's failure (say
//!   `AccessDeniedException`) not hiding another's success.
//!
//! ```no_run
//! use std::sync::Arc;
//! use s3crypt_core::keyring::multi::MultiKeyring;
//! use s3crypt_core::{DecryptOptions, Decryptor, EncryptOptions, Encryptor, Keyring};
//! use s3crypt_kms::{DiscoveryFilter, KmsKeyring};
//!
//! # async fn demo() -> Result<(), s3crypt_core::Error> {
//! // A client from the standard AWS environment (profiles, AWS_REGION, AWS_ENDPOINT_URL_KMS, …).
//! let client = s3crypt_kms::client_from_env().await?;
//! let us = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
//! let eu = "arn:aws:kms:eu-west-1:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321";
//! let keyring: Arc<dyn Keyring> = Arc::new(MultiKeyring::new(vec![
//!     Box::new(KmsKeyring::new(client.clone(), us)?),
//!     Box::new(KmsKeyring::new(client.clone(), eu)?), // its requests go to eu-west-1
//! ]));
//!
//! let mut options = EncryptOptions::default();
//! options.context.insert("tenant", "acme")?;
//! // Keyrings block on KMS: from async code, call them on the blocking pool.
//! let message = tokio::task::spawn_blocking({
//!     let keyring = keyring.clone();
//!     move || -> Result<Vec<u8>, s3crypt_core::Error> {
//!         let mut out = Vec::new();
//!         let mut enc = Encryptor::new(keyring.as_ref(), &options)?;
//!         enc.update(b"hello", &mut out)?;
//!         enc.finish(&mut out)?;
//!         Ok(out)
//!     }
//! })
//! .await
//! .expect("encryption task")?;
//!
//! // Any key of account 111122223333 may decrypt.
//! let filter = DiscoveryFilter::new("aws", ["111122223333"])?;
//! let reader: Arc<dyn Keyring> = Arc::new(KmsKeyring::discovery(client, Some(filter)));
//! let plaintext = tokio::task::spawn_blocking(move || {
//!     let mut out = Vec::new();
//!     let mut dec = Decryptor::new(reader, DecryptOptions::default());
//!     dec.update(&message, &mut out)?;
//!     dec.finish(&mut out)?;
//!     Ok::<_, s3crypt_core::Error>(out)
//! })
//! .await
//! .expect("decryption task")?;
//! assert_eq!(plaintext, b"hello");
//! # Ok(()) }
//! ```
//!
//! ## Calling an async SDK from a synchronous keyring
//!
//! The keyring methods are synchronous (the core has no async runtime) and block for the KMS round
//! trip. They run every request on a small process-wide tokio runtime of this crate (one worker
//! thread named `s3crypt-kms`, started on first use) and wait for the answer on a channel, so they
//! can be called from any thread: plain threads, tokio's blocking pool (`spawn_blocking`, how the
//! `s3crypt` S3 client calls keyrings) on `current_thread` and multi-thread runtimes, and even,
//! though it blocks a worker, directly from an async task. The clients the keyring uses are built
//! from the given client's configuration, so their connections are opened and driven by that
//! runtime alone and cannot depend on a caller's runtime that is blocked waiting for them.
//!
//! ## Retries and timeouts
//!
//! [`client_from_env`] configures the SDK's **standard** retry mode with
//! [`RECOMMENDED_MAX_ATTEMPTS`] attempts instead of the SDK's 3: throttled requests
//! (`ThrottlingException`) and transient failures (timeouts, 5xx, connection errors) are retried
//! with exponential backoff and full jitter (1 s initial, 20 s maximum), so a burst of objects
//! that hits the account's KMS request quota slows down instead of failing; refusals such as
//! `AccessDeniedException` or `DisabledException` are not retried. It also bounds each attempt
//! to [`RECOMMENDED_ATTEMPT_TIMEOUT`], so that a silent connection cannot block a caller forever.
//! The SDK's *adaptive* mode (client-side rate limiting after throttling) was not chosen: its rate
//! limiter is shared by every client of a region in the process and, after one throttle, can
//! delay unrelated requests by seconds; callers who want it can pass their own client configured
//! with `RetryConfig::adaptive()`. A client passed to [`KmsKeyring::new`] is used with its own
//! settings.
//!
//! ## Security notes
//!
//! * The plaintext data key KMS returns is moved into a zeroizing buffer as soon as the response
//!   arrives and the SDK response is dropped; buffers inside the SDK and its HTTP stack (and the
//!   serialised `Encrypt` request, which carries the data key) are not wiped.
//! * Data keys travel in KMS requests and answers, so every KMS client the keyrings (and
//!   [`KmsHmacKey`]) use refuses, before sending, a request to a plain `http://` endpoint other
//!   than loopback (`localhost`, `127.0.0.0/8`, `::1`): the rule of
//!   [`s3crypt_core::transport::check_secret_transport`], which SSE-C requests to S3 follow too.
//!   The refusal is a [`s3crypt_core::Error::Keyring`] naming the key and the endpoint's host.
//! * Nothing in this crate logs, and no `Debug` output contains a data key or grant token.
//! * The full encryption context is sent to KMS, which binds the wrapped key to it (and records
//!   it in CloudTrail): do not put secrets in the encryption context.

#![forbid(unsafe_code)]

pub mod arn;
mod clients;
mod error;
mod keyring;
mod mac;
mod runtime;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_kms::Client;
use s3crypt_core::Result;

pub use arn::{InvalidIdentifier, KeyIdentifier, KmsArn};
pub use keyring::{DiscoveryFilter, KmsCallCounter, KmsCalls, KmsKeyring, PROVIDER_ID};
pub use mac::{KmsHmacKey, MAX_MAC_MESSAGE_LEN};

/// Attempts per KMS request (first try included) in [`recommended_retry_config`].
pub const RECOMMENDED_MAX_ATTEMPTS: u32 = 6;

/// Longest single attempt of a KMS request in [`recommended_timeout_config`] (KMS answers in
/// milliseconds; this only ends hung connections).
pub const RECOMMENDED_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The retry configuration [`client_from_env`] uses: standard mode (exponential backoff with full
/// jitter, 1 s initial and 20 s maximum, for throttling and transient errors) with
/// [`RECOMMENDED_MAX_ATTEMPTS`] attempts.
pub fn recommended_retry_config() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(RECOMMENDED_MAX_ATTEMPTS)
}

/// The timeout configuration [`client_from_env`] uses: 3.1 s to connect (the SDK's default) and
/// [`RECOMMENDED_ATTEMPT_TIMEOUT`] per attempt.
pub fn recommended_timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_millis(3100))
        .operation_attempt_timeout(RECOMMENDED_ATTEMPT_TIMEOUT)
        .build()
}

async fn load_client() -> Client {
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(recommended_retry_config())
        .timeout_config(recommended_timeout_config())
        .load()
        .await;
    Client::new(&conf)
}

/// A KMS client from the standard AWS environment, as the AWS CLI would configure it: credentials
/// and region from the environment (`AWS_ACCESS_KEY_ID`, `AWS_REGION`, …), `AWS_PROFILE` and
/// `~/.aws/config`, SSO, web identity or instance roles; endpoint overrides from
/// `AWS_ENDPOINT_URL_KMS` or `AWS_ENDPOINT_URL` (or the profile); retries and timeouts as
/// [`recommended_retry_config`] and [`recommended_timeout_config`].
///
/// Loading runs on this crate's KMS runtime, whichever executor awaits it.
///
/// # Errors
/// [`s3crypt_core::Error::Keyring`] if the KMS worker thread cannot start. Missing credentials or
/// region are reported by the first KMS request, naming the key.
pub async fn client_from_env() -> Result<Client> {
    runtime::spawn(load_client()).await
}

/// [`client_from_env`] for synchronous callers (blocks the calling thread; any thread will do).
///
/// # Errors
/// As [`client_from_env`].
pub fn client_from_env_blocking() -> Result<Client> {
    runtime::block_on(load_client())
}
