//! HMAC with an AWS KMS HMAC key (`GenerateMac`): a keyed pseudo-random function whose key never
//! leaves KMS.
//!
//! s3crypt uses it to derive per-object SSE-C keys for users who hold no local secret: the SSE-C
//! key of an object is the HMAC-SHA-256, under a KMS key of spec `HMAC_256` and usage
//! `GENERATE_VERIFY_MAC`, of a message naming the object (see `s3crypt::sse_c`). Anyone allowed
//! `kms:GenerateMac` on the key can recompute it; nobody else can.

use std::fmt;
use std::sync::Arc;

use aws_sdk_kms::types::MacAlgorithmSpec;
use aws_sdk_kms::Client;
use s3crypt_core::{Error, Result};
use zeroize::Zeroizing;

use crate::arn::KeyIdentifier;
use crate::clients::RegionalClients;
use crate::error::{kms_failure, kms_refusal};
use crate::runtime;

/// The longest message `GenerateMac` accepts.
pub const MAX_MAC_MESSAGE_LEN: usize = 4096;

/// An AWS KMS HMAC key used through `GenerateMac` with `HMAC_SHA_256`.
///
/// Cheap to clone (clones share their regional clients). Requests for a key ARN go to that ARN's
/// region, as for [`crate::KmsKeyring`].
#[derive(Clone)]
pub struct KmsHmacKey {
    id: KeyIdentifier,
    clients: Arc<RegionalClients>,
}

impl fmt::Debug for KmsHmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsHmacKey")
            .field("key", &self.id.as_str())
            .finish()
    }
}

impl KmsHmacKey {
    /// A handle on the HMAC key `key_id` (key ARN, key id, alias name or alias ARN). Nothing is
    /// sent to KMS until [`KmsHmacKey::hmac_sha256`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `key_id` is not a KMS key identifier.
    pub fn new(client: Client, key_id: impl Into<String>) -> Result<Self> {
        let key_id = key_id.into();
        let id =
            KeyIdentifier::parse(&key_id).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        Ok(Self {
            id,
            clients: Arc::new(RegionalClients::new(&client)),
        })
    }

    /// The identifier this key was configured with.
    pub fn key_id(&self) -> &str {
        self.id.as_str()
    }

    /// HMAC-SHA-256 of `message` under the KMS key (`GenerateMac`, `HMAC_SHA_256`). The request
    /// runs on this crate's KMS runtime, whichever executor awaits it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `message` is empty or longer than [`MAX_MAC_MESSAGE_LEN`];
    /// [`Error::Keyring`] naming the key and KMS's error code if KMS refuses or fails (for example
    /// `InvalidKeyUsageException` for a key that is not an `HMAC_256` `GENERATE_VERIFY_MAC` key),
    /// or if the answer is not a 32-byte MAC made with the requested algorithm.
    pub async fn hmac_sha256(&self, message: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
        if message.is_empty() || message.len() > MAX_MAC_MESSAGE_LEN {
            return Err(Error::InvalidArgument(format!(
                "a KMS GenerateMac message must be 1 to {MAX_MAC_MESSAGE_LEN} bytes"
            )));
        }
        let client = self.clients.get(self.id.region())?;
        let request = client
            .generate_mac()
            .key_id(self.id.as_str())
            .mac_algorithm(MacAlgorithmSpec::HmacSha256)
            .message(aws_sdk_kms::primitives::Blob::new(message.to_vec()));
        let reply = runtime::spawn(async move {
            request.send().await.map(|mut out| {
                // Into a wiped buffer as soon as it arrives, whatever happens next.
                let mac =
                    Zeroizing::new(out.mac.take().map(|b| b.into_inner()).unwrap_or_default());
                (mac, out.mac_algorithm)
            })
        })
        .await?;
        let fail = |why: String| Error::from(kms_refusal("GenerateMac", self.id.as_str(), why));
        let (mac, algorithm) =
            reply.map_err(|e| kms_failure("GenerateMac", self.id.as_str(), e))?;
        if algorithm.is_some_and(|a| a != MacAlgorithmSpec::HmacSha256) {
            return Err(fail("the response names another MAC algorithm".to_owned()));
        }
        let mut out = Zeroizing::new([0u8; 32]);
        if mac.len() != out.len() {
            return Err(fail(format!(
                "the response has a {}-byte MAC, not 32 bytes",
                mac.len()
            )));
        }
        out.copy_from_slice(&mac);
        Ok(out)
    }
}
