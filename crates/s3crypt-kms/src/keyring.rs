//! The AWS KMS keyring (spec `framework/aws-kms/aws-kms-keyring.md`) and the AWS KMS discovery
//! keyring (`framework/aws-kms/aws-kms-discovery-keyring.md`).
//!
//! ```text
//! provider id   = "aws-kms"
//! provider info = the key ARN KMS returned (UTF-8), e.g. arn:aws:kms:us-east-1:111122223333:key/…
//! ciphertext    = the CiphertextBlob KMS returned (opaque to everyone but KMS)
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_kms::Client;
use s3crypt_core::header::EncryptedDataKey;
use s3crypt_core::keyring::{
    DataKey, DecryptionMaterials, EncryptionMaterials, Keyring, DATA_KEY_LEN,
};
use s3crypt_core::{EncryptionContext, Error, Result};
use zeroize::Zeroizing;

use crate::arn::{KeyIdentifier, KmsArn};
use crate::clients::RegionalClients;
use crate::error::{combine, kms_failure, kms_refusal, printable};
use crate::runtime;

/// The provider id of every EDK this keyring writes and reads.
pub const PROVIDER_ID: &str = "aws-kms";

/// Which KMS keys a discovery keyring may use: those of one partition and a set of accounts
/// (spec "discovery filter").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryFilter {
    partition: String,
    account_ids: Vec<String>,
}

impl DiscoveryFilter {
    /// Allows keys of `partition` (`aws`, `aws-cn`, `aws-us-gov`, …) owned by one of `account_ids`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the partition is empty, no account is given, or an account id
    /// is empty or contains `:`.
    pub fn new<I, S>(partition: impl Into<String>, account_ids: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let partition = partition.into();
        let mut account_ids: Vec<String> = account_ids.into_iter().map(Into::into).collect();
        if partition.is_empty() || partition.contains(':') {
            return Err(Error::InvalidArgument(
                "a KMS discovery filter needs a partition such as \"aws\"".to_owned(),
            ));
        }
        if account_ids.is_empty() {
            return Err(Error::InvalidArgument(
                "a KMS discovery filter needs at least one account id".to_owned(),
            ));
        }
        if let Some(bad) = account_ids.iter().find(|a| a.is_empty() || a.contains(':')) {
            return Err(Error::InvalidArgument(format!(
                "\"{}\" is not an AWS account id",
                printable(bad, 64)
            )));
        }
        account_ids.sort();
        account_ids.dedup();
        Ok(Self {
            partition,
            account_ids,
        })
    }

    /// The allowed partition.
    pub fn partition(&self) -> &str {
        &self.partition
    }

    /// The allowed accounts (sorted).
    pub fn account_ids(&self) -> &[String] {
        &self.account_ids
    }

    /// Whether a key with this ARN passes the filter.
    pub fn allows(&self, arn: &KmsArn) -> bool {
        arn.partition() == self.partition
            && self.account_ids.iter().any(|a| a.as_str() == arn.account())
    }
}

enum Mode {
    /// Encrypts with one key; decrypts only EDKs whose provider info is exactly this identifier.
    Strict(KeyIdentifier),
    /// Cannot encrypt; decrypts any `aws-kms` EDK (that passes the filter) with the key it names.
    Discovery(Option<DiscoveryFilter>),
}

/// The AWS Encryption SDK's AWS KMS keyring: data keys generated or wrapped by a KMS key, and
/// unwrapped by KMS.
///
/// Two modes, as in the ESDK:
///
/// * **strict** ([`KmsKeyring::new`]): one key. `on_encrypt` calls `GenerateDataKey` (when it is
///   the first keyring) or `Encrypt` (when another keyring generated the data key) with the
///   configured identifier; `on_decrypt` unwraps only EDKs whose provider info *equals* the
///   configured identifier.
/// * **discovery** ([`KmsKeyring::discovery`]): no key of its own. `on_encrypt` fails;
///   `on_decrypt` asks KMS to unwrap every `aws-kms` EDK with the key ARN the EDK names, if that
///   ARN passes the optional [`DiscoveryFilter`] and is in the configured client's region (as the
///   spec's discovery keyring, which calls its own client; use one discovery keyring per region
///   in a multi-keyring for several). Use it when the reader is allowed to use whatever key the
///   writer chose (within the filter), without configuring key ARNs.
///
/// **Key identifiers.** Encryption takes any identifier: key ARN, key id, alias name
/// (`alias/NAME`) or alias ARN. Decryption in strict mode follows the spec literally: an EDK
/// matches only if its provider info (always a *key ARN*, written by KMS) is byte for byte the
/// configured identifier, so a strict keyring configured with a key id or an alias can never
/// decrypt. Rather than silently skipping, such a keyring's `on_decrypt` fails with an error that
/// says so and lists the key ARNs the message names (the Python SDK documents the same rule for
/// its strict provider). Aliases are not resolved (`DescribeKey`), because what an alias points at
/// changes over time and the spec matches on the ARN.
///
/// **Multi-Region keys** (`mrk-…`) are treated as ordinary keys: a replica in another region does
/// not match an EDK written with the primary's ARN (the spec's separate MRK-aware keyring, which
/// does that, is not implemented).
///
/// **Regions.** Requests for a key ARN go to a client for that ARN's region, built from the given
/// client's configuration and cached; identifiers without a region use the given client.
///
/// **Failures.** `on_decrypt` tries matching EDKs one at a time in message order; a KMS refusal
/// for one is collected and the next is tried. If none succeeds and at least one failed, it
/// returns [`Error::Keyring`] naming each key ARN with KMS's error code (`AccessDeniedException`,
/// `DisabledException`, `InvalidCiphertextException` — wrong encryption context —,
/// `NotFoundException`, `ThrottlingException`, …); if no EDK matched at all it returns `Ok` and the
/// caller reports [`Error::NoDecryptableKey`]. Messages never contain key material.
///
/// **Blocking.** The methods of [`Keyring`] block the calling thread for the KMS round trip(s);
/// they are safe to call from any thread, including tokio's blocking pool and `current_thread`
/// runtimes (see the crate docs for how). From async code, call them via `spawn_blocking`.
///
/// **Plaintext keys.** The data key KMS returns is moved out of the SDK's response into a
/// zeroizing buffer inside the request task, and the response is dropped there. Copies the SDK
/// makes while parsing (the HTTP body, the base64 decoding buffer) and while serialising an
/// `Encrypt` request are outside this crate's control and not wiped.
pub struct KmsKeyring {
    mode: Mode,
    grant_tokens: Vec<String>,
    clients: Arc<RegionalClients>,
    calls: Arc<KmsCallCounter>,
}

/// Counts the KMS requests keyrings send (one per operation, whatever its outcome; the SDK's
/// retries of one operation count once). Share one counter among several keyrings with
/// [`KmsKeyring::with_call_counter`] to total them.
#[derive(Debug, Default)]
pub struct KmsCallCounter {
    generate_data_key: AtomicU64,
    encrypt: AtomicU64,
    decrypt: AtomicU64,
}

/// A snapshot of a [`KmsCallCounter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KmsCalls {
    /// `GenerateDataKey` requests.
    pub generate_data_key: u64,
    /// `Encrypt` requests.
    pub encrypt: u64,
    /// `Decrypt` requests.
    pub decrypt: u64,
}

impl KmsCalls {
    /// All requests.
    pub fn total(&self) -> u64 {
        self.generate_data_key + self.encrypt + self.decrypt
    }
}

impl KmsCallCounter {
    /// The counts so far.
    pub fn snapshot(&self) -> KmsCalls {
        KmsCalls {
            generate_data_key: self.generate_data_key.load(Ordering::Relaxed),
            encrypt: self.encrypt.load(Ordering::Relaxed),
            decrypt: self.decrypt.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for KmsKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("KmsKeyring");
        match &self.mode {
            Mode::Strict(id) => d.field("key_id", &id.as_str()),
            Mode::Discovery(filter) => d.field("discovery_filter", filter),
        };
        // Grant tokens are credentials of a sort: count them, do not print them.
        d.field("grant_tokens", &self.grant_tokens.len())
            .field("region", &self.clients.home_region())
            .field("other_regions", &self.clients.cached_regions())
            .finish()
    }
}

impl KmsKeyring {
    /// A strict keyring for one KMS key, calling KMS with `client` (or, for a key ARN in another
    /// region, a copy of `client`'s configuration for that region).
    ///
    /// `key_id` may be a key ARN, key id, alias name (`alias/NAME`) or alias ARN; to *decrypt*,
    /// it must be the key ARN (see the type docs).
    ///
    /// The client is used as configured (retries, timeouts, credentials); [`crate::client_from_env`]
    /// builds one with [`crate::recommended_retry_config`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `key_id` is not a valid KMS identifier.
    pub fn new(client: Client, key_id: impl Into<String>) -> Result<Self> {
        let key_id = key_id.into();
        let id =
            KeyIdentifier::parse(&key_id).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        Ok(Self {
            mode: Mode::Strict(id),
            grant_tokens: Vec::new(),
            clients: Arc::new(RegionalClients::new(&client)),
            calls: Arc::default(),
        })
    }

    /// A discovery keyring: decrypts with whatever key ARN a message's `aws-kms` EDKs name, if it
    /// passes `filter` (all keys when `None`). It cannot encrypt.
    pub fn discovery(client: Client, filter: Option<DiscoveryFilter>) -> Self {
        Self {
            mode: Mode::Discovery(filter),
            grant_tokens: Vec::new(),
            clients: Arc::new(RegionalClients::new(&client)),
            calls: Arc::default(),
        }
    }

    /// A strict keyring whose client comes from the standard AWS environment (see
    /// [`crate::client_from_env`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `key_id` is not a valid KMS identifier; [`Error::Keyring`] if
    /// the KMS worker thread cannot start.
    pub async fn from_env(key_id: impl Into<String>) -> Result<Self> {
        let key_id = key_id.into();
        KeyIdentifier::parse(&key_id).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        Self::new(crate::client_from_env().await?, key_id)
    }

    /// A discovery keyring whose client comes from the standard AWS environment.
    ///
    /// # Errors
    /// [`Error::Keyring`] if the KMS worker thread cannot start.
    pub async fn discovery_from_env(filter: Option<DiscoveryFilter>) -> Result<Self> {
        Ok(Self::discovery(crate::client_from_env().await?, filter))
    }

    /// Sends these grant tokens with every KMS request.
    #[must_use]
    pub fn with_grant_tokens<I, S>(mut self, tokens: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.grant_tokens = tokens.into_iter().map(Into::into).collect();
        self
    }

    /// Counts this keyring's KMS requests in `counter` (instead of a counter of its own).
    #[must_use]
    pub fn with_call_counter(mut self, counter: Arc<KmsCallCounter>) -> Self {
        self.calls = counter;
        self
    }

    /// The counter of this keyring's KMS requests.
    pub fn call_counter(&self) -> &Arc<KmsCallCounter> {
        &self.calls
    }

    /// The configured key identifier (`None` for a discovery keyring).
    pub fn key_id(&self) -> Option<&str> {
        match &self.mode {
            Mode::Strict(id) => Some(id.as_str()),
            Mode::Discovery(_) => None,
        }
    }

    /// The discovery filter (`None` for a strict keyring or an unfiltered discovery keyring).
    pub fn discovery_filter(&self) -> Option<&DiscoveryFilter> {
        match &self.mode {
            Mode::Discovery(f) => f.as_ref(),
            Mode::Strict(_) => None,
        }
    }

    /// Whether this keyring would try to unwrap an EDK wrapped under `arn`.
    fn accepts(&self, arn: &KmsArn) -> bool {
        // Discovery uses the configured client only (spec: the discovery keyring calls Decrypt
        // with its client), so keys in other regions are not candidates: the message's writer
        // names those regions, and calling whatever region a header names would let a hostile
        // header send the reader to dozens of endpoints. Several regions: one discovery keyring
        // per region in a multi-keyring.
        let in_home_region = || self.clients.home_region().is_none_or(|r| r == arn.region());
        match &self.mode {
            Mode::Strict(id) => id.as_str() == arn.as_str(),
            Mode::Discovery(None) => in_home_region(),
            Mode::Discovery(Some(f)) => f.allows(arn) && in_home_region(),
        }
    }

    fn grant_tokens(&self) -> Option<Vec<String>> {
        (!self.grant_tokens.is_empty()).then(|| self.grant_tokens.clone())
    }

    /// `GenerateDataKey` with the configured key; returns the data key and its EDK.
    fn generate(
        &self,
        id: &KeyIdentifier,
        context: Option<HashMap<String, String>>,
    ) -> Result<(DataKey, EncryptedDataKey)> {
        let client = self.clients.get(id.region())?;
        let request = client
            .generate_data_key()
            .key_id(id.as_str())
            .number_of_bytes(DATA_KEY_LEN as i32)
            .set_encryption_context(context)
            .set_grant_tokens(self.grant_tokens());
        self.calls.generate_data_key.fetch_add(1, Ordering::Relaxed);
        let reply = runtime::block_on(async move {
            request.send().await.map(|mut out| Wrapped {
                plaintext: out.plaintext.take().map(|b| Zeroizing::new(b.into_inner())),
                ciphertext: out.ciphertext_blob.take().map(|b| b.into_inner()),
                key_id: out.key_id.take(),
            })
        })?;
        let fail = |why: String| Error::from(kms_refusal("GenerateDataKey", id.as_str(), why));
        let reply = reply.map_err(|e| kms_failure("GenerateDataKey", id.as_str(), e))?;
        let data_key = reply
            .plaintext
            .as_deref()
            .map(Vec::as_slice)
            .and_then(data_key_from)
            .ok_or_else(|| fail(format!("the response has no {DATA_KEY_LEN}-byte plaintext")))?;
        let edk = reply.into_edk().map_err(fail)?;
        Ok((data_key, edk))
    }

    /// `Encrypt` of an existing data key with the configured key; returns its EDK.
    fn wrap(
        &self,
        id: &KeyIdentifier,
        data_key: &DataKey,
        context: Option<HashMap<String, String>>,
    ) -> Result<EncryptedDataKey> {
        let client = self.clients.get(id.region())?;
        let request = client
            .encrypt()
            .key_id(id.as_str())
            .plaintext(aws_sdk_kms::primitives::Blob::new(
                data_key.as_bytes().to_vec(),
            ))
            .set_encryption_context(context)
            .set_grant_tokens(self.grant_tokens());
        self.calls.encrypt.fetch_add(1, Ordering::Relaxed);
        let reply = runtime::block_on(async move {
            request.send().await.map(|mut out| Wrapped {
                plaintext: None,
                ciphertext: out.ciphertext_blob.take().map(|b| b.into_inner()),
                key_id: out.key_id.take(),
            })
        })?;
        reply
            .map_err(|e| kms_failure("Encrypt", id.as_str(), e))?
            .into_edk()
            .map_err(|why| kms_refusal("Encrypt", id.as_str(), why).into())
    }

    /// `Decrypt` of one EDK with the key ARN it names; `Err` is the line for the collected errors.
    fn unwrap(
        &self,
        arn: &KmsArn,
        edk: &EncryptedDataKey,
        context: Option<HashMap<String, String>>,
    ) -> std::result::Result<DataKey, s3crypt_core::KeyringError> {
        let refused = |why: String| kms_refusal("Decrypt", arn.as_str(), why);
        let client = self.clients.get(Some(arn.region())).map_err(|e| match e {
            Error::Keyring(k) => k.with_key(arn.as_str()),
            other => refused(other.to_string()),
        })?;
        let request = client
            .decrypt()
            .key_id(arn.as_str())
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(edk.ciphertext.clone()))
            .set_encryption_context(context)
            .set_grant_tokens(self.grant_tokens());
        self.calls.decrypt.fetch_add(1, Ordering::Relaxed);
        let reply = runtime::block_on(async move {
            request.send().await.map(|mut out| Wrapped {
                plaintext: out.plaintext.take().map(|b| Zeroizing::new(b.into_inner())),
                ciphertext: None,
                key_id: out.key_id.take(),
            })
        })
        .map_err(|e| match e {
            Error::Keyring(k) => k.with_key(arn.as_str()),
            other => refused(other.to_string()),
        })?
        .map_err(|e| kms_failure("Decrypt", arn.as_str(), e))?;
        // Spec: the response's KeyId must equal the ARN asked for, and the plaintext must be the
        // suite's key derivation input length.
        if reply.key_id.as_deref() != Some(arn.as_str()) {
            return Err(refused(format!(
                "KMS answered for a different key ({})",
                printable(reply.key_id.as_deref().unwrap_or("none"), 200)
            )));
        }
        reply
            .plaintext
            .as_deref()
            .map(Vec::as_slice)
            .and_then(data_key_from)
            .ok_or_else(|| {
                refused(format!(
                    "KMS returned a plaintext that is not {DATA_KEY_LEN} bytes long"
                ))
            })
    }
}

/// What the request task hands back: the plaintext already in a zeroizing buffer, the SDK's
/// response dropped.
struct Wrapped {
    plaintext: Option<Zeroizing<Vec<u8>>>,
    ciphertext: Option<Vec<u8>>,
    key_id: Option<String>,
}

impl Wrapped {
    /// The EDK for a `GenerateDataKey` or `Encrypt` reply, whose `KeyId` must be a key ARN.
    fn into_edk(self) -> std::result::Result<EncryptedDataKey, String> {
        let key_id = self
            .key_id
            .ok_or_else(|| "the response has no KeyId".to_owned())?;
        let arn = KmsArn::parse(&key_id).map_err(|e| format!("the response's KeyId: {e}"))?;
        if !arn.is_key() {
            return Err(format!(
                "the response's KeyId {} is not a key ARN",
                printable(&key_id, 200)
            ));
        }
        let ciphertext = self
            .ciphertext
            .filter(|c| !c.is_empty())
            .ok_or_else(|| "the response has no CiphertextBlob".to_owned())?;
        Ok(EncryptedDataKey {
            provider_id: PROVIDER_ID.to_owned(),
            provider_info: key_id.into_bytes(),
            ciphertext,
        })
    }
}

/// The data key in `bytes`, if it has the right length, copied straight into the key's wiped
/// buffer (no unwiped copy on the stack).
fn data_key_from(bytes: &[u8]) -> Option<DataKey> {
    DataKey::from_slice(bytes).ok()
}

/// The encryption context as KMS takes it (`None` when empty: KMS treats both alike).
fn kms_context(context: &EncryptionContext) -> Option<HashMap<String, String>> {
    (!context.is_empty()).then(|| {
        context
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    })
}

impl Keyring for KmsKeyring {
    /// Generates the data key with `GenerateDataKey` if there is none yet, otherwise wraps it
    /// with `Encrypt`; adds the EDK (provider info = the key ARN KMS answered with). The whole
    /// encryption context, including the signature key pair of signed suites, is sent to KMS.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a discovery keyring; [`Error::Keyring`] naming the key and
    /// KMS's error code if KMS refuses, or if its answer is not a 32-byte key and a key ARN. The
    /// materials are not changed on failure.
    fn on_encrypt(&self, materials: &mut EncryptionMaterials) -> Result<()> {
        let Mode::Strict(id) = &self.mode else {
            return Err(Error::InvalidArgument(
                "an AWS KMS discovery keyring cannot encrypt; configure a KMS key".to_owned(),
            ));
        };
        let context = kms_context(materials.context());
        match materials.data_key() {
            None => {
                let (data_key, edk) = self.generate(id, context)?;
                materials.set_data_key(data_key);
                materials.add_encrypted_data_key(edk);
            }
            Some(data_key) => {
                let edk = self.wrap(id, data_key, context)?;
                materials.add_encrypted_data_key(edk);
            }
        }
        Ok(())
    }

    /// Unwraps the first matching `aws-kms` EDK that KMS decrypts (see the type docs for which
    /// match). Does nothing if the materials already have a data key (the core's keyring contract;
    /// the spec has the keyring fail instead, which the multi-keyring never lets happen).
    ///
    /// # Errors
    /// [`Error::Keyring`] if an `aws-kms` EDK's provider info is not a KMS key ARN (spec: the
    /// keyring fails, before calling KMS); if a strict keyring configured with a key id or alias
    /// meets `aws-kms` EDKs; or if no matching EDK unwrapped and at least one KMS call failed (the
    /// message lists each key ARN with the KMS error code).
    fn on_decrypt(
        &self,
        materials: &mut DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<()> {
        if materials.data_key().is_some() {
            return Ok(());
        }
        // Filter (spec: every aws-kms EDK must carry a key ARN, or OnDecrypt fails).
        let mut candidates = Vec::new();
        let mut named = Vec::new();
        for edk in edks.iter().filter(|e| e.provider_id == PROVIDER_ID) {
            let arn = std::str::from_utf8(&edk.provider_info)
                .map_err(|_| "its provider info is not UTF-8".to_owned())
                .and_then(|s| KmsArn::parse(s).map_err(|e| e.to_string()))
                .and_then(|a| {
                    if a.is_key() {
                        Ok(a)
                    } else {
                        Err(format!("{} is not a key ARN", printable(a.as_str(), 200)))
                    }
                })
                .map_err(|why| {
                    Error::keyring(format!(
                        "the message has an aws-kms encrypted data key that is unusable: {why}"
                    ))
                })?;
            named.push(printable(arn.as_str(), 200));
            if self.accepts(&arn) {
                candidates.push((arn, edk));
            }
        }
        if let Mode::Strict(id) = &self.mode {
            if id.key_arn().is_none() && !named.is_empty() {
                const SHOWN: usize = 8;
                if named.len() > SHOWN {
                    let more = named.len() - SHOWN;
                    named.truncate(SHOWN);
                    named.push(format!("and {more} more"));
                }
                return Err(Error::keyring(format!(
                    "the AWS KMS keyring for {} cannot decrypt: messages name their KMS key by key \
                     ARN and a strict keyring only uses the key ARN it is configured with (not a \
                     key id or alias); configure the key ARN, or use a discovery keyring (this \
                     message names {})",
                    printable(id.as_str(), 200),
                    named.join(", ")
                )));
            }
        }
        let context = kms_context(materials.context());
        let mut failures = Vec::new();
        for (arn, edk) in candidates {
            match self.unwrap(&arn, edk, context.clone()) {
                Ok(key) => {
                    materials.set_data_key(key);
                    return Ok(());
                }
                Err(line) => failures.push(line),
            }
        }
        if failures.is_empty() {
            return Ok(());
        }
        Err(combine("AWS KMS could not decrypt the data key", failures).into())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aws_sdk_kms::config::retry::RetryConfig;
    use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
    use s3crypt_core::Suite;

    const A: &str = "arn:aws:kms:us-east-1:111122223333:key/aaaa";
    const B: &str = "arn:aws:kms:eu-west-1:444455556666:key/bbbb";

    /// A client that must never be used: the endpoint refuses connections.
    fn offline_client() -> Client {
        client_at("http://127.0.0.1:9")
    }

    fn client_at(endpoint: &str) -> Client {
        Client::from_conf(
            aws_sdk_kms::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .endpoint_url(endpoint)
                .retry_config(RetryConfig::disabled())
                .credentials_provider(Credentials::new("AKID", "SECRET", None, None, "unit"))
                .build(),
        )
    }

    fn edk(info: &str) -> EncryptedDataKey {
        EncryptedDataKey {
            provider_id: PROVIDER_ID.into(),
            provider_info: info.as_bytes().to_vec(),
            ciphertext: vec![1, 2, 3],
        }
    }

    #[test]
    fn filter_matches_partition_and_account() {
        let f = DiscoveryFilter::new("aws", ["111122223333"]).unwrap();
        assert!(f.allows(&KmsArn::parse(A).unwrap()));
        assert!(!f.allows(&KmsArn::parse(B).unwrap()));
        let cn = KmsArn::parse("arn:aws-cn:kms:cn-north-1:111122223333:key/x").unwrap();
        assert!(!f.allows(&cn));
        assert!(DiscoveryFilter::new("", ["1"]).is_err());
        assert!(DiscoveryFilter::new("aws", Vec::<String>::new()).is_err());
        assert!(DiscoveryFilter::new("aws", [""]).is_err());
    }

    #[test]
    fn strict_matching_is_exact() {
        let k = KmsKeyring::new(offline_client(), A).unwrap();
        assert!(k.accepts(&KmsArn::parse(A).unwrap()));
        assert!(!k.accepts(&KmsArn::parse(B).unwrap()));
        let d = KmsKeyring::discovery(offline_client(), None);
        // Discovery: any key of the client's region (us-east-1), none of another region.
        assert!(d.accepts(&KmsArn::parse(A).unwrap()));
        assert!(!d.accepts(&KmsArn::parse(B).unwrap()));
    }

    #[test]
    fn invalid_identifiers_are_refused_at_construction() {
        for bad in ["", "arn:aws:kms:us-east-1:1:key/", "alias/", "two words"] {
            let e = KmsKeyring::new(offline_client(), bad).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{bad:?}: {e}");
        }
    }

    #[test]
    fn edks_that_do_not_match_cost_no_kms_call() {
        // The client cannot connect; any KMS call would be a collected error, so Ok(()) with no
        // key shows that nothing was called.
        let k = KmsKeyring::new(offline_client(), A).unwrap();
        let mut dm = DecryptionMaterials::new(Suite::DEFAULT, EncryptionContext::new());
        let other = EncryptedDataKey {
            provider_id: "local".into(),
            provider_info: A.as_bytes().to_vec(),
            ciphertext: vec![],
        };
        k.on_decrypt(&mut dm, &[edk(B), other]).unwrap();
        assert!(dm.data_key().is_none());
        let f = DiscoveryFilter::new("aws", ["999999999999"]).unwrap();
        let d = KmsKeyring::discovery(offline_client(), Some(f));
        d.on_decrypt(&mut dm, &[edk(A), edk(B)]).unwrap();
        assert!(dm.data_key().is_none());
    }

    #[test]
    fn malformed_kms_provider_info_fails_before_any_call() {
        let k = KmsKeyring::discovery(offline_client(), None);
        for info in [
            "not an arn",
            "arn:aws:kms:us-east-1:1:alias/x",
            "arn:\u{1b}",
        ] {
            let mut dm = DecryptionMaterials::new(Suite::DEFAULT, EncryptionContext::new());
            let e = k.on_decrypt(&mut dm, &[edk(info)]).unwrap_err().to_string();
            assert!(
                e.contains("aws-kms encrypted data key that is unusable"),
                "{e}"
            );
            assert!(!e.contains('\u{1b}'), "{e}");
        }
    }

    #[test]
    fn strict_keyring_with_alias_explains_why_it_cannot_decrypt() {
        for id in [
            "alias/team",
            "aaaa",
            "arn:aws:kms:us-east-1:111122223333:alias/team",
        ] {
            let k = KmsKeyring::new(offline_client(), id).unwrap();
            let mut dm = DecryptionMaterials::new(Suite::DEFAULT, EncryptionContext::new());
            let e = k.on_decrypt(&mut dm, &[edk(A)]).unwrap_err().to_string();
            assert!(
                e.contains(id) && e.contains(A) && e.contains("key ARN"),
                "{e}"
            );
            // No aws-kms EDK at all: nothing to say.
            k.on_decrypt(&mut dm, &[]).unwrap();
        }
    }

    #[test]
    fn discovery_keyring_cannot_encrypt() {
        let d = KmsKeyring::discovery(offline_client(), None);
        let mut em = EncryptionMaterials::new(Suite::DEFAULT, EncryptionContext::new());
        assert!(matches!(
            d.on_encrypt(&mut em),
            Err(Error::InvalidArgument(_))
        ));
        assert!(em.data_key().is_none() && em.encrypted_data_keys().is_empty());
    }

    #[test]
    fn unreachable_kms_is_a_keyring_error_naming_the_key_and_materials_stay_unchanged() {
        let k = KmsKeyring::new(offline_client(), A).unwrap();
        let mut em = EncryptionMaterials::new(Suite::DEFAULT, EncryptionContext::new());
        let e = k.on_encrypt(&mut em).unwrap_err().to_string();
        assert!(e.contains("GenerateDataKey") && e.contains(A), "{e}");
        assert!(em.data_key().is_none() && em.encrypted_data_keys().is_empty());

        let mut dm = DecryptionMaterials::new(Suite::DEFAULT, EncryptionContext::new());
        let e = k.on_decrypt(&mut dm, &[edk(A)]).unwrap_err().to_string();
        assert!(
            e.contains("could not reach AWS KMS") && e.contains(A),
            "{e}"
        );
    }

    #[test]
    fn plain_http_kms_endpoint_off_loopback_is_refused_before_any_request() {
        // Neither host could answer (`.invalid` never resolves, and 192.0.2.0/24 is reserved for
        // documentation), so only the guard's refusal can produce this message, and at once.
        for endpoint in ["http://kms.s3crypt-test.invalid", "HTTP://192.0.2.1:80/"] {
            let refused = |e: &str, key: &str| {
                assert!(
                    e.contains("refusing to send AWS KMS requests (they carry data keys) over")
                        && e.contains("use an https:// endpoint")
                        && e.contains(key)
                        && !e.contains("could not reach"),
                    "{endpoint}: {e}"
                );
            };
            // GenerateDataKey, and Encrypt after another keyring generated the key; the ARN in
            // another region goes through a regional client built from the same configuration.
            for id in [A, B] {
                let k = KmsKeyring::new(client_at(endpoint), id).unwrap();
                let mut em = EncryptionMaterials::new(Suite::DEFAULT, EncryptionContext::new());
                refused(&k.on_encrypt(&mut em).unwrap_err().to_string(), id);
                em.set_data_key(DataKey::generate());
                refused(&k.on_encrypt(&mut em).unwrap_err().to_string(), id);
                assert!(em.encrypted_data_keys().is_empty());
            }
            // Decrypt, strict and discovery.
            let mut dm = DecryptionMaterials::new(Suite::DEFAULT, EncryptionContext::new());
            let k = KmsKeyring::new(client_at(endpoint), A).unwrap();
            refused(
                &k.on_decrypt(&mut dm, &[edk(A)]).unwrap_err().to_string(),
                A,
            );
            let d = KmsKeyring::discovery(client_at(endpoint), None);
            refused(
                &d.on_decrypt(&mut dm, &[edk(A)]).unwrap_err().to_string(),
                A,
            );
            assert!(dm.data_key().is_none());
            // GenerateMac (whose answer is an SSE-C key).
            let mac = crate::KmsHmacKey::new(client_at(endpoint), A).unwrap();
            let e = runtime::block_on(async move { mac.hmac_sha256(b"m").await })
                .and_then(|r| r)
                .unwrap_err()
                .to_string();
            refused(&e, A);
        }
        // Plain http to loopback is allowed: the request is sent (and finds nobody listening).
        let k = KmsKeyring::new(offline_client(), A).unwrap();
        let mut dm = DecryptionMaterials::new(Suite::DEFAULT, EncryptionContext::new());
        let e = k.on_decrypt(&mut dm, &[edk(A)]).unwrap_err().to_string();
        assert!(
            e.contains("could not reach AWS KMS") && !e.contains("refusing"),
            "{e}"
        );
    }

    #[test]
    fn debug_shows_configuration_but_not_grant_tokens() {
        let k = KmsKeyring::new(offline_client(), A)
            .unwrap()
            .with_grant_tokens(["secret-grant-token"]);
        let s = format!("{k:?}");
        assert!(s.contains(A) && s.contains("grant_tokens: 1"), "{s}");
        assert!(!s.contains("secret-grant-token"), "{s}");
        let f = DiscoveryFilter::new("aws", ["111122223333"]).unwrap();
        let s = format!("{:?}", KmsKeyring::discovery(offline_client(), Some(f)));
        assert!(s.contains("111122223333"), "{s}");
    }

    #[test]
    fn data_keys_must_be_32_bytes() {
        assert!(data_key_from(&[0; 31]).is_none());
        assert!(data_key_from(&[0; 33]).is_none());
        assert_eq!(data_key_from(&[7; 32]).unwrap().as_bytes(), &[7; 32]);
    }
}
