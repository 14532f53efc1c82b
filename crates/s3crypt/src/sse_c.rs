//! SSE-C: S3 encrypts the (already client-side encrypted) object a second time with a key that
//! only the client holds and S3 never stores.
//!
//! The key is derived per object from the local keyring and the object's location, so a reader
//! needs nothing but the keyring, and the key is known before anything is read (HEAD and GET need
//! it):
//!
//! ```text
//! SSE-C key = HKDF-SHA256(ikm = a keyring key (32 bytes), salt = "s3crypt/sse-c/v1",
//!                         info = u16 len || bucket || u16 len || object key, L = 32)
//! ```
//! New objects use the primary key of the first keyring; readers try every key of every keyring
//! in order (so objects written before a key rotation stay readable).
//!
//! Users with no local key can have AWS KMS compute the key instead ([`KmsSseC`], feature `kms`):
//!
//! ```text
//! SSE-C key = HMAC-SHA256 in KMS (GenerateMac, a key of spec HMAC_256),
//!             message = "s3crypt/sse-c/v1" || u16 len || bucket || u16 len || object key
//! ```
//!
//! Each request for the object
//! carries `x-amz-server-side-encryption-customer-algorithm: AES256`, the base64 key, and the
//! base64 MD5 of the key (the MD5 only guards the header against corruption). The keys travel in
//! request headers: s3crypt refuses SSE-C over plain HTTP except to a loopback address.

use base64::Engine as _;
use hkdf::Hkdf;
use md5::{Digest, Md5};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

const SALT: &[u8] = b"s3crypt/sse-c/v1";

/// `u16 len || bucket || u16 len || object key` (S3 bucket names and keys are at most 1024
/// bytes, far below `u16::MAX`; longer strings are cut so that the prefix stays exact).
fn location_info(bucket: &str, key: &str) -> Vec<u8> {
    let mut info = Vec::with_capacity(4 + bucket.len() + key.len());
    for part in [bucket.as_bytes(), key.as_bytes()] {
        let part = &part[..part.len().min(usize::from(u16::MAX))];
        info.extend_from_slice(&(part.len() as u16).to_be_bytes());
        info.extend_from_slice(part);
    }
    info
}

/// One object's SSE-C key. Wiped on drop; no `Debug` contents.
pub struct SseCKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for SseCKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SseCKey(<redacted>)")
    }
}

impl SseCKey {
    /// Derives the SSE-C key of `bucket`/`key` from a 32-byte keyring secret (see module docs).
    pub fn derive(secret: &[u8; 32], bucket: &str, key: &str) -> Self {
        let info = location_info(bucket, key);
        let mut out = Zeroizing::new([0u8; 32]);
        #[allow(clippy::expect_used)]
        Hkdf::<Sha256>::new(Some(SALT), secret)
            .expand(&info, out.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 length");
        Self(out)
    }

    /// The `x-amz-server-side-encryption-customer-key` header value (base64). Secret.
    pub fn key_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.0.as_ref()))
    }

    /// The `x-amz-server-side-encryption-customer-key-MD5` header value.
    pub fn md5_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(Md5::digest(self.0.as_ref()))
    }
}

/// A boxed future yielding one SSE-C key.
pub type KeyFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<SseCKey>> + Send + 'a>>;

/// Where SSE-C keys come from: an ordered list of candidate derivations. Candidate 0 writes new
/// objects; readers try the candidates in order until S3 accepts one (so objects written before a
/// rotation stay readable). A key is derived only when it is needed.
pub trait SseCSource: Send + Sync + std::fmt::Debug {
    /// How many candidate keys there are (at least 1).
    fn candidates(&self) -> usize;

    /// Candidate `index`'s key for the object `bucket`/`key`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `index` is not below [`SseCSource::candidates`]; whatever
    /// deriving the key fails with (a key service refusing, say).
    fn key<'a>(&'a self, index: usize, bucket: &'a str, key: &'a str) -> KeyFuture<'a>;
}

fn no_candidate(index: usize) -> Error {
    Error::InvalidArgument(format!("no SSE-C key number {index}"))
}

/// SSE-C keys derived from local keyring keys.
pub struct LocalSseC {
    secrets: Vec<Zeroizing<[u8; 32]>>,
}

impl std::fmt::Debug for LocalSseC {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSseC")
            .field("keys", &self.secrets.len())
            .finish()
    }
}

impl LocalSseC {
    /// From keyring key bytes, the one that derives keys for new objects first.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if there is no key.
    pub fn new(secrets: impl IntoIterator<Item = Zeroizing<[u8; 32]>>) -> Result<Self> {
        let secrets: Vec<_> = secrets.into_iter().collect();
        if secrets.is_empty() {
            return Err(Error::InvalidArgument(
                "SSE-C needs at least one keyring key".into(),
            ));
        }
        Ok(Self { secrets })
    }
}

impl SseCSource for LocalSseC {
    fn candidates(&self) -> usize {
        self.secrets.len()
    }

    fn key<'a>(&'a self, index: usize, bucket: &'a str, key: &'a str) -> KeyFuture<'a> {
        let k = self
            .secrets
            .get(index)
            .map(|s| SseCKey::derive(s, bucket, key))
            .ok_or_else(|| no_candidate(index));
        Box::pin(std::future::ready(k))
    }
}

/// The `GenerateMac` message that names an object: the same domain-separation string and
/// length-prefixed location as the local derivation.
#[cfg(feature = "kms")]
fn mac_message(bucket: &str, key: &str) -> Vec<u8> {
    let mut m = SALT.to_vec();
    m.extend_from_slice(&location_info(bucket, key));
    m
}

/// SSE-C keys computed by AWS KMS, for users who hold no local key: the key of an object is the
/// HMAC-SHA-256, under a KMS key of spec `HMAC_256` (usage `GENERATE_VERIFY_MAC`), of
///
/// ```text
/// "s3crypt/sse-c/v1" || u16 len || bucket || u16 len || object key
/// ```
///
/// (`GenerateMac`, one KMS request per object and operation). Anyone allowed `kms:GenerateMac` on
/// the key can read the object; the key material never leaves KMS.
#[cfg(feature = "kms")]
#[derive(Debug)]
pub struct KmsSseC {
    keys: Vec<s3crypt_kms::KmsHmacKey>,
}

#[cfg(feature = "kms")]
impl KmsSseC {
    /// From KMS HMAC keys, the one that derives keys for new objects first.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if there is no key.
    pub fn new(keys: impl IntoIterator<Item = s3crypt_kms::KmsHmacKey>) -> Result<Self> {
        let keys: Vec<_> = keys.into_iter().collect();
        if keys.is_empty() {
            return Err(Error::InvalidArgument(
                "SSE-C with KMS needs at least one HMAC key".into(),
            ));
        }
        Ok(Self { keys })
    }
}

#[cfg(feature = "kms")]
impl SseCSource for KmsSseC {
    fn candidates(&self) -> usize {
        self.keys.len()
    }

    fn key<'a>(&'a self, index: usize, bucket: &'a str, key: &'a str) -> KeyFuture<'a> {
        Box::pin(async move {
            let mac_key = self.keys.get(index).ok_or_else(|| no_candidate(index))?;
            let mac = mac_key.hmac_sha256(&mac_message(bucket, key)).await?;
            Ok(SseCKey(mac))
        })
    }
}

/// The client's SSE-C key source, or the error for a client that has none.
pub(crate) fn source(
    source: Option<&std::sync::Arc<dyn SseCSource>>,
) -> Result<&std::sync::Arc<dyn SseCSource>> {
    source.ok_or_else(|| {
        Error::InvalidArgument("SSE-C requested but the client has no SSE-C key source".into())
    })
}

/// The first candidate's key: the one new objects are written with.
pub(crate) async fn write_key(
    source: Option<&std::sync::Arc<dyn SseCSource>>,
    bucket: &str,
    key: &str,
) -> Result<std::sync::Arc<SseCKey>> {
    Ok(std::sync::Arc::new(
        self::source(source)?.key(0, bucket, key).await?,
    ))
}

/// An SDK interceptor that refuses, just before transmission, any request carrying an SSE-C key
/// over plain HTTP to a host other than loopback (whatever endpoint resolution produced; the rule
/// is [`s3crypt_core::transport::check_secret_transport`], which KMS requests follow too).
#[derive(Debug)]
pub(crate) struct TransportGuard;

impl aws_smithy_runtime_api::client::interceptors::Intercept for TransportGuard {
    fn name(&self) -> &'static str {
        "s3crypt-sse-c-transport-guard"
    }

    fn read_before_transmit(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> std::result::Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let req = context.request();
        let carries_key = [
            "x-amz-server-side-encryption-customer-key",
            "x-amz-copy-source-server-side-encryption-customer-key",
        ]
        .iter()
        .any(|h| req.headers().get(*h).is_some());
        if carries_key {
            s3crypt_core::transport::check_secret_transport(req.uri(), "SSE-C keys")?;
        }
        Ok(())
    }
}

/// The same S3 client with the [`TransportGuard`] installed.
pub(crate) fn guarded(s3: aws_sdk_s3::Client) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(s3.config().to_builder().interceptor(TransportGuard).build())
}

/// Sets the three SSE-C headers on a request builder (every S3 request builder that accepts
/// SSE-C has the same three setters).
macro_rules! with_sse_c {
    ($builder:expr, $key:expr) => {{
        let b = $builder;
        match $key {
            Some(k) => b
                .sse_customer_algorithm("AES256")
                .sse_customer_key(k.key_base64().as_str())
                .sse_customer_key_md5(k.md5_base64()),
            None => b,
        }
    }};
}
pub(crate) use with_sse_c;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_per_object_and_per_secret() {
        let a = SseCKey::derive(&[1; 32], "b", "k1");
        let b = SseCKey::derive(&[1; 32], "b", "k2");
        let c = SseCKey::derive(&[2; 32], "b", "k1");
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        let d = SseCKey::derive(&[1; 32], "ab", "c");
        let e = SseCKey::derive(&[1; 32], "a", "bc");
        let all = [&a, &b, &c, &d, &e].map(|k| k.key_base64().to_string());
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                assert_ne!(all[i], all[j]);
            }
        }
        assert_eq!(
            SseCKey::derive(&[1; 32], "b", "k1").key_base64(),
            a.key_base64()
        );
        assert_eq!(format!("{a:?}"), "SseCKey(<redacted>)");
        assert_eq!(a.md5_base64().len(), 24);
    }
}
