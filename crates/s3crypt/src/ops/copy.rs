//! Copy, move and rewrap.
//!
//! A v2 message's header has no IV of its own: its tag is computed under the message's key with a
//! fixed nonce. Tagging a second, different header under that key would reuse the nonce, and two
//! such tags reveal enough (the GHASH key) for anyone to forge the message's frames and headers
//! (SECURITY.md, advisory S3C-2026-01). So no copy ever writes a new header in front of old
//! frames:
//!
//! * a copy whose header stays byte for byte the same (a bucket-bound object copied within its
//!   bucket, keeping its wrapped keys) is copied by S3 itself (`UploadPartCopy`; nothing passes
//!   through the client), and an in-place rewrap that would change nothing writes nothing;
//! * every other copy, move or rewrap **re-encrypts**: the source is read with parallel
//!   authenticated ranged GETs (as `get` does) and its plaintext sealed under a new data key and a
//!   new random message id into a parallel multipart upload (as `put` does), the two overlapped.
//!   Memory is bounded by the upload's buffers (`(concurrency + 1) × part size`, see
//!   [`crate::Transfer`]) and the download's, whose ranges in flight are capped at half the
//!   upload's concurrency (at least 2): the upload is the slower side.
//!
//! Nothing half-written becomes visible: the destination appears when its PUT or
//! `CompleteMultipartUpload` succeeds, and a failed or cancelled copy aborts its upload. An
//! in-place rewrite replaces the object only if it is still the one read (`If-Match`); a move
//! deletes the source only after the destination is complete, and only if it is unchanged. Every
//! read of the source is pinned to the ETag seen first.

use std::sync::Arc;

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use s3crypt_core::keyring::{same_wrapping_key, DataKey, DecryptionMaterials, EncryptionMaterials};
use s3crypt_core::{EncryptedDataKey, EncryptionContext, Keyring};
use tokio::task::JoinSet;

use crate::error::{service, Error, Result};
use crate::location;
use crate::metadata::{self, ObjectInfo};
use crate::ops::get::open_whole;
use crate::ops::put::PutObject;
use crate::settings::Encryption;
use crate::shared::Shared;
use crate::sse_c::{with_sse_c, SseCKey};
use crate::transport::fetch::Fetch;
use crate::transport::head::{head, missing_bucket, not_found_or};
use crate::transport::multipart::{join, Cancel, MultipartGuard, MAX_PART, MAX_PARTS};

/// Which of the keys that wrapped the source's data key also wrap the new object's (each must be
/// a key the client's keyring holds: the new data key is wrapped under it afresh).
#[derive(Debug, Clone, Default)]
pub enum KeepKeys {
    /// All of them (the default).
    #[default]
    All,
    /// None: the new object holds only the keys of [`CopyObject::wrap_with`].
    None,
    /// All but those these selectors name: a raw AES key as `namespace/name` or `name`, a KMS
    /// key by its ARN (as stored in the header). A bare `name` that names keys of more than one
    /// namespace in an object is refused for that object, rather than removing them all.
    AllBut(Vec<String>),
}

impl KeepKeys {
    fn keeps(&self, e: &EncryptedDataKey) -> bool {
        match self {
            KeepKeys::All => true,
            KeepKeys::None => false,
            KeepKeys::AllBut(names) => !names.iter().any(|n| names_key(n, e)),
        }
    }

    /// Refuses a selector that names keys of more than one namespace among `edks`.
    fn check(&self, edks: &[EncryptedDataKey]) -> Result<()> {
        let KeepKeys::AllBut(names) = self else {
            return Ok(());
        };
        for n in names {
            let mut namespaces: Vec<&str> = edks
                .iter()
                .filter(|e| {
                    s3crypt_core::keyring::raw_aes::key_name_of(e).is_some() && names_key(n, e)
                })
                .map(|e| e.provider_id.as_str())
                .collect();
            namespaces.sort_unstable();
            namespaces.dedup();
            if namespaces.len() > 1 {
                return Err(Error::InvalidArgument(format!(
                    "key name {n:?} names keys of namespaces {}: name one as NAMESPACE/NAME",
                    namespaces.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// Whether `selector` names the key that wrapped `e`.
pub fn names_key(selector: &str, e: &EncryptedDataKey) -> bool {
    if let Some(name) = s3crypt_core::keyring::raw_aes::key_name_of(e) {
        if selector == name || selector == format!("{}/{name}", e.provider_id) {
            return true;
        }
    }
    e.provider_info == selector.as_bytes()
}

/// A copy, move or rewrap being configured (see [`crate::Client::copy_object`]).
pub struct CopyObject {
    shared: Arc<Shared>,
    source: Option<(String, String)>,
    source_version_id: Option<String>,
    destination: Option<(String, String)>,
    required: EncryptionContext,
    allow_moved: bool,
    wrap: Option<Arc<dyn Keyring>>,
    keep: KeepKeys,
    /// Whether the caller chose `keep` (otherwise a copy to a new location is wrapped under the
    /// client's keys).
    keep_chosen: bool,
    source_sse_c: bool,
    destination_sse_c: bool,
    delete_source: bool,
    skip_if_unchanged: bool,
    always_reencrypt: bool,
    cancel: Option<Cancel>,
}

impl std::fmt::Debug for CopyObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyObject")
            .field("source", &self.source)
            .field("source_version_id", &self.source_version_id)
            .field("destination", &self.destination)
            .field("keep", &self.keep)
            .field("delete_source", &self.delete_source)
            .finish_non_exhaustive()
    }
}

/// How a copy was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CopyMode {
    /// The header stays the same, so S3 copied the object byte for byte (`UploadPartCopy`).
    ServerSide,
    /// The plaintext was read and sealed again under a new data key and message id.
    Reencrypted,
    /// In place with nothing to change: nothing was written.
    Unchanged,
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyOutput {
    /// How the copy was made.
    pub mode: CopyMode,
    /// Header length of the source.
    pub header_length_before: u64,
    /// Header length of the new object.
    pub header_length_after: u64,
    /// Size of the new object.
    pub size: u64,
    /// Parts of the upload (1: a single PUT; 0: nothing written).
    pub parts: u32,
    /// Bytes the client downloaded.
    pub bytes_downloaded: u64,
    /// Bytes the client uploaded.
    pub bytes_uploaded: u64,
    /// ETag of the new object.
    pub etag: Option<String>,
    /// Version of the new object (versioned buckets).
    pub version_id: Option<String>,
}

/// Whether `wrap` only wraps under keys among `kept`: it wraps a throwaway random data key (never
/// used for anything) and the keys it used are compared with `kept`.
///
/// # Errors
/// Whatever the keyring returns.
async fn adds_no_key(
    wrap: Arc<dyn Keyring>,
    suite: s3crypt_core::Suite,
    context: EncryptionContext,
    kept: Vec<EncryptedDataKey>,
) -> Result<bool> {
    let probe = move || -> s3crypt_core::Result<bool> {
        let mut m = EncryptionMaterials::new(suite, context.clone());
        m.set_data_key(DataKey::generate());
        wrap.on_encrypt(&mut m)?;
        for e in m.encrypted_data_keys() {
            let matching: Vec<EncryptedDataKey> = kept
                .iter()
                .filter(|k| same_wrapping_key(k, e))
                .cloned()
                .collect();
            if matching.is_empty() {
                return Ok(false);
            }
            // A raw AES key is known by its name only: another key under the same
            // namespace/name does not wrap the data key. The added keyring must unwrap it
            // (a local AES-GCM open; KMS keys are identified by their ARN already).
            if s3crypt_core::keyring::raw_aes::key_name_of(e).is_some() {
                let mut d = DecryptionMaterials::new(suite, context.clone());
                if wrap.on_decrypt(&mut d, &matching).is_err() || d.data_key().is_none() {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    };
    crate::transport::blocking(probe).await
}

/// Bytes per `UploadPartCopy` (grown so a copy fits in 10,000 parts).
const COPY_PART: u64 = 64 << 20;

impl CopyObject {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            source: None,
            source_version_id: None,
            destination: None,
            required: EncryptionContext::new(),
            allow_moved: false,
            wrap: None,
            keep: KeepKeys::All,
            keep_chosen: false,
            source_sse_c: false,
            destination_sse_c: false,
            delete_source: false,
            skip_if_unchanged: false,
            always_reencrypt: false,
            cancel: None,
        }
    }

    /// For an in-place rewrap that adds keys ([`CopyObject::wrap_with`]): make no new object
    /// when its keys would stay the same (each added key already wraps the data key, and none is
    /// removed); the output says [`CopyMode::Unchanged`]. Finding out asks the added keyring to
    /// wrap a throwaway random key once (for AWS KMS keys, one Encrypt request) and compares the
    /// keys it used (by ARN for KMS keys; a raw AES key, known by its name only, must also unwrap
    /// the object's key of that name). Off by default: a rewrap that adds keys then always
    /// re-encrypts. (An in-place rewrap that adds and removes nothing never writes, whatever
    /// this says; see [`CopyObject::always_reencrypt`].)
    pub fn skip_if_unchanged(mut self, yes: bool) -> Self {
        self.skip_if_unchanged = yes;
        self
    }

    /// In place only: re-encrypt under a new data key and message id even when the header would
    /// stay the same (a rewrap that keeps every key and adds none, or adds keys it already has):
    /// the remedy for advisory S3C-2026-01. Overrides [`CopyObject::skip_if_unchanged`]. A copy
    /// to another location whose header stays the same is still made by S3 byte for byte.
    pub fn always_reencrypt(mut self, yes: bool) -> Self {
        self.always_reencrypt = yes;
        self
    }

    /// Stops the copy when `cancel` completes (e.g. on Ctrl-C): its multipart upload is aborted
    /// before `send` returns [`Error::Cancelled`], and a move keeps its source.
    pub fn cancel_on(
        mut self,
        cancel: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Self {
        self.cancel = Some(Box::pin(cancel));
        self
    }

    /// The object to copy.
    pub fn source(mut self, bucket: impl Into<String>, key: impl Into<String>) -> Self {
        self.source = Some((bucket.into(), key.into()));
        self
    }

    /// A specific version of the source.
    pub fn source_version_id(mut self, v: impl Into<String>) -> Self {
        self.source_version_id = Some(v.into());
        self
    }

    /// Where to write (the source itself for an in-place rewrap, the default).
    pub fn destination(mut self, bucket: impl Into<String>, key: impl Into<String>) -> Self {
        self.destination = Some((bucket.into(), key.into()));
        self
    }

    /// Pairs the source's encryption context must contain.
    pub fn required_context(mut self, c: EncryptionContext) -> Self {
        self.required = c;
        self
    }

    /// Accept a source whose authenticated location differs from where it is read.
    pub fn allow_moved(mut self, yes: bool) -> Self {
        self.allow_moved = yes;
        self
    }

    /// Wraps the new data key under these keys too (added to those kept).
    pub fn wrap_with(mut self, keyring: Arc<dyn Keyring>) -> Self {
        self.wrap = Some(keyring);
        self
    }

    /// Which of the source's keys the new object keeps (default: all; each must be one the
    /// client's keyring holds). A copy to a new location that sets neither this nor
    /// [`CopyObject::wrap_with`] is wrapped under the client's keys instead.
    pub fn keep(mut self, keep: KeepKeys) -> Self {
        self.keep = keep;
        self.keep_chosen = true;
        self
    }

    /// SSE-C on the source and on the destination (each with its own per-object key).
    pub fn sse_c(mut self, source: bool, destination: bool) -> Self {
        self.source_sse_c = source;
        self.destination_sse_c = destination;
        self
    }

    /// Delete the source once the destination is complete (a move).
    pub fn delete_source(mut self, yes: bool) -> Self {
        self.delete_source = yes;
        self
    }

    /// Runs the copy.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::NotEncrypted`], [`Error::Service`]; decryption errors of the
    /// source (wrong key, context mismatch, a moved source without [`CopyObject::allow_moved`],
    /// tampering: nothing is written then); [`Error::InvalidArgument`] if a kept wrapped key names
    /// a key the client does not hold (a new data key must be wrapped under it), or if no key
    /// would be left; [`Error::Cancelled`].
    pub async fn send(mut self) -> Result<CopyOutput> {
        let (sb, sk) = self
            .source
            .clone()
            .ok_or_else(|| Error::InvalidArgument("no source".into()))?;
        let (db, dk) = self.destination.clone().unwrap_or((sb.clone(), sk.clone()));
        let in_place = (sb.as_str(), sk.as_str()) == (db.as_str(), dk.as_str());
        if self.delete_source && in_place {
            return Err(Error::InvalidArgument(
                "a move needs a destination other than the source".into(),
            ));
        }
        if self.delete_source && self.source_version_id.is_some() {
            // Deleting "the source" would mean either destroying that version for good or
            // hiding the current one: neither is what a move of an old version means.
            return Err(Error::InvalidArgument(
                "a move of a specific version is not supported: copy it, then delete what you mean to".into(),
            ));
        }
        let version = self.source_version_id.as_deref();
        let (info, src_sse) = head(&self.shared, &sb, &sk, version, self.source_sse_c).await?;
        // The source is read only as fast as the upload takes it (sealing and sending is the
        // slower side): a few ranges ahead are enough, and keep a copy's memory near a put's.
        let t = self.shared.transfer;
        let reader = self.shared.with_transfer(
            t.with_download_concurrency(t.download_concurrency.min(t.concurrency.max(2))),
        );
        let fetch = Fetch {
            shared: reader,
            bucket: sb.clone(),
            key: sk.clone(),
            version_id: self.source_version_id.clone().or(info.version_id.clone()),
            etag: info.etag.clone(),
            sse: src_sse.as_ref().map(|(_, k)| k.clone()),
            pool: Default::default(),
        };
        // The source must be where it says it is (or the caller accepts that it moved), and its
        // header must open: nothing is written for a source the client cannot read.
        let options = location::read_options(
            &self.required,
            &sb,
            &sk,
            self.shared.binding,
            self.allow_moved,
        )?;
        let source = open_whole(fetch.clone(), &info, options).await?;
        let old = &source.header;

        // The new context: the old one, bound to the destination with the source's kind of
        // binding (bucket-only objects stay so).
        let binding = if old.context.get(location::KEY).is_some() {
            location::Binding::Key
        } else {
            location::Binding::Bucket
        };
        let mut context = EncryptionContext::new();
        for (k, v) in old.context.user_pairs() {
            if k != location::BUCKET && k != location::KEY {
                context.insert(k, v)?;
            }
        }
        // The same context at the destination: the location pairs (all those the source has)
        // name the destination too.
        let same_context = location::required(&db, &dk, binding)
            .iter()
            .all(|(k, v)| old.context.get(k) == Some(v));
        // The new keys: those kept (re-wrapped by the client's keyring) and those added. A copy
        // to a new location for which the caller chose neither is wrapped under the client's
        // keys (as a `put` there would be).
        let (keep, wrap) = if !same_context && !self.keep_chosen && self.wrap.is_none() {
            (KeepKeys::None, Some(self.shared.keyring.clone()))
        } else {
            (self.keep.clone(), self.wrap.clone())
        };
        keep.check(&old.encrypted_data_keys)?;
        let kept: Vec<EncryptedDataKey> = old
            .encrypted_data_keys
            .iter()
            .filter(|e| keep.keeps(e))
            .cloned()
            .collect();

        // The keys would stay the same (every added key already wraps the data key).
        let adds_nothing = match &wrap {
            Some(w)
                if self.skip_if_unchanged
                    && !self.always_reencrypt
                    && in_place
                    && same_context
                    && kept.len() == old.encrypted_data_keys.len() =>
            {
                adds_no_key(w.clone(), old.suite, old.context.clone(), kept.clone()).await?
            }
            _ => false,
        };
        // The header would stay byte for byte the same: no new header, no new tag.
        let same_header =
            same_context && wrap.is_none() && kept.len() == old.encrypted_data_keys.len();
        if (same_header && !(self.always_reencrypt && in_place)) || adds_nothing {
            // What the copy's metadata says comes from the authenticated header, not from HEAD.
            let (suite, frame_length) = (old.suite, old.frame_length);
            drop(source);
            if in_place {
                return Ok(CopyOutput {
                    mode: CopyMode::Unchanged,
                    header_length_before: info.header_length,
                    header_length_after: info.header_length,
                    size: info.size,
                    parts: 0,
                    bytes_downloaded: info.header_length,
                    bytes_uploaded: 0,
                    etag: info.etag.clone(),
                    version_id: info.version_id.clone(),
                });
            }
            let dst_sse = match self.destination_sse_c {
                true => Some(crate::sse_c::write_key(self.shared.sse_c.as_ref(), &db, &dk).await?),
                false => None,
            };
            let info_etag = info.etag.clone();
            let job = ServerSideCopy {
                shared: self.shared.clone(),
                fetch,
                info,
                suite,
                frame_length,
                dst_bucket: db,
                dst_key: dk,
                dst_sse,
            };
            let cancel = self
                .cancel
                .take()
                .unwrap_or_else(|| Box::pin(std::future::pending()));
            let out = job.run(cancel).await?;
            if self.delete_source {
                delete_moved_source(&self.shared, &sb, &sk, info_etag).await?;
            }
            return Ok(out);
        }

        // Re-encryption: a new data key and message id.
        let dst_sse = match &src_sse {
            _ if !self.destination_sse_c => None,
            // In place, with the key new objects are written with: the same key (derivation is
            // deterministic), without asking a key service for it again.
            Some((0, k)) if in_place => Some(k.clone()),
            _ => Some(crate::sse_c::write_key(self.shared.sse_c.as_ref(), &db, &dk).await?),
        };
        let keys = Arc::new(NewKeys {
            holder: self.shared.keyring.clone(),
            kept,
            wrap,
        });
        // The source's suite and frame length; a frame length s3crypt does not write (another
        // SDK may use any) gives way to the client's.
        let frame_length = match (s3crypt_core::EncryptOptions {
            frame_length: old.frame_length,
            ..Default::default()
        })
        .validate()
        {
            Ok(()) => old.frame_length,
            Err(_) => self.shared.encryption.frame_length,
        };
        let encryption = Encryption::new()
            .with_suite(old.suite)
            .with_frame_length(frame_length);
        let header_length_before = info.header_length;
        let mut put = PutObject::new(self.shared.clone())
            .bucket(&db)
            .key(&dk)
            .context(context)
            .metadata(info.user_metadata.clone())
            .for_copy(
                keys,
                encryption,
                binding,
                // In place, the write replaces the object only if it is still the one read: a
                // concurrent writer's object is never overwritten with the old content.
                if in_place { info.etag.clone() } else { None },
                dst_sse,
            );
        if let Some(ct) = &info.content_type {
            put = put.content_type(ct);
        }
        if let Some(n) = source.plaintext_len {
            put = put.size_hint(n);
        }
        if let Some(cancel) = self.cancel.take() {
            put = put.cancel_on(cancel);
        }
        let out = put.body(source.body).send().await?;
        if self.delete_source {
            delete_moved_source(&self.shared, &sb, &sk, info.etag.clone()).await?;
        }
        Ok(CopyOutput {
            mode: CopyMode::Reencrypted,
            header_length_before,
            header_length_after: out.header_length,
            size: out.size,
            parts: out.parts,
            bytes_downloaded: info.size,
            bytes_uploaded: out.size,
            etag: out.etag,
            version_id: out.version_id,
        })
    }
}

/// For a move, deletes the source once the destination is complete, and only if it is still the
/// object that was copied: if someone replaced it meanwhile, S3 refuses (412) and both stay.
async fn delete_moved_source(
    shared: &Shared,
    bucket: &str,
    key: &str,
    etag: Option<String>,
) -> Result<()> {
    shared
        .s3
        .delete_object()
        .bucket(bucket)
        .key(key)
        .set_if_match(etag)
        .send()
        .await
        .map_err(|e| service("DeleteObject", e))?;
    Ok(())
}

/// The keyring of a re-encrypted copy's header: a fresh data key (never a cached one, never the
/// source's), wrapped under the client's keys that wrapped the source's data key and are kept,
/// and under the added keyring.
#[derive(Debug)]
struct NewKeys {
    /// The client's keyring: it must reproduce every kept wrapped key.
    holder: Arc<dyn Keyring>,
    /// The source's wrapped keys to keep (each names a key the new data key is wrapped under).
    kept: Vec<EncryptedDataKey>,
    /// Further keys (added, or the keys of a new location).
    wrap: Option<Arc<dyn Keyring>>,
}

impl Keyring for NewKeys {
    fn on_encrypt(&self, m: &mut EncryptionMaterials) -> s3crypt_core::Result<()> {
        use s3crypt_core::Error as CoreError;
        if m.data_key().is_some() || !m.encrypted_data_keys().is_empty() {
            return Err(CoreError::InvalidArgument(
                "a copy's keyring must start the message".into(),
            ));
        }
        let fresh = DataKey::generate();
        let mut expected = zeroize::Zeroizing::new([0u8; s3crypt_core::keyring::DATA_KEY_LEN]);
        expected.copy_from_slice(fresh.as_bytes());
        // With the data key set, keyrings wrap it (a caching keyring passes through).
        m.set_data_key(fresh);
        if !self.kept.is_empty() {
            self.holder.on_encrypt(m).map_err(|e| match e {
                // (Say which keys needed it: e.g. a KMS discovery keyring cannot wrap.)
                CoreError::InvalidArgument(why) => CoreError::InvalidArgument(format!(
                    "the new data key must be wrapped under the keys the object keeps ({}), and the client's keyring cannot: {why}; give those keys (-k / --kms-key ARN) or drop them (--remove-key)",
                    self.kept.iter().map(key_label).collect::<Vec<_>>().join(", ")
                )),
                other => other,
            })?;
            let kept = &self.kept;
            m.retain_encrypted_data_keys(|e| kept.iter().any(|k| same_wrapping_key(k, e)));
            let missing: Vec<String> = kept
                .iter()
                .filter(|k| {
                    !m.encrypted_data_keys()
                        .iter()
                        .any(|e| same_wrapping_key(k, e))
                })
                .map(key_label)
                .collect();
            if !missing.is_empty() {
                return Err(CoreError::InvalidArgument(format!(
                    "the object is also wrapped under {}, which this client does not hold: a rewrite re-encrypts under a new data key, which must be wrapped under every key kept; give that key too (-k / --kms-key), or drop it (--remove-key)",
                    missing.join(", ")
                )));
            }
        }
        if let Some(w) = &self.wrap {
            let before = m.encrypted_data_keys().len();
            w.on_encrypt(m)?;
            // An added key that was already kept is wrapped once, by the added keyring.
            let added: Vec<EncryptedDataKey> = m.encrypted_data_keys()[before..].to_vec();
            // A raw AES key is known by its name only: an added key with the name of a kept key
            // must be that key (it unwraps the kept key's new wrapping of this data key), or
            // dropping the kept one as a duplicate would take the object away from its holders.
            let rewrapped: Vec<EncryptedDataKey> = m.encrypted_data_keys()[..before].to_vec();
            for a in added
                .iter()
                .filter(|a| s3crypt_core::keyring::raw_aes::key_name_of(a).is_some())
            {
                let same_name: Vec<EncryptedDataKey> = rewrapped
                    .iter()
                    .filter(|k| same_wrapping_key(k, a))
                    .cloned()
                    .collect();
                if same_name.is_empty() {
                    continue;
                }
                let mut d = DecryptionMaterials::new(m.suite(), m.context().clone());
                if w.on_decrypt(&mut d, &same_name).is_err() || d.data_key().is_none() {
                    return Err(CoreError::InvalidArgument(format!(
                        "the key added as {} has the name of a different key the object keeps: give one of them another name (s3crypt keygen --name), or drop the old one (--remove-key)",
                        key_label(a)
                    )));
                }
            }
            let mut i = 0;
            m.retain_encrypted_data_keys(|e| {
                i += 1;
                i > before || !added.iter().any(|a| same_wrapping_key(a, e))
            });
        }
        // A keyring must wrap the key it was given: one that replaced it would leave wrapped
        // keys that unwrap to something else.
        let same = m.data_key().is_some_and(|k| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                &k.as_bytes()[..],
                &expected[..],
            ))
        });
        if !same {
            return Err(CoreError::InvalidArgument(
                "a wrapping keyring replaced the data key instead of wrapping it".into(),
            ));
        }
        if m.encrypted_data_keys().is_empty() {
            return Err(CoreError::InvalidArgument(
                "the copy would be wrapped under no key: nobody could decrypt it".into(),
            ));
        }
        Ok(())
    }

    fn on_decrypt(
        &self,
        _: &mut DecryptionMaterials,
        _: &[EncryptedDataKey],
    ) -> s3crypt_core::Result<()> {
        // Only ever used to encrypt.
        Ok(())
    }
}

/// How a wrapped key is named in messages: `namespace/name` for a raw AES key, the provider
/// info (e.g. a KMS key ARN) otherwise, quoted and escaped (it comes from the object).
fn key_label(e: &EncryptedDataKey) -> String {
    match s3crypt_core::keyring::raw_aes::key_name_of(e) {
        Some(name) => format!("{:?}", format!("{}/{name}", e.provider_id)),
        None => format!("{:?}", String::from_utf8_lossy(&e.provider_info)),
    }
}

/// A copy that S3 makes byte for byte: the header stays the same.
struct ServerSideCopy {
    shared: Arc<Shared>,
    fetch: Fetch,
    info: ObjectInfo,
    /// From the authenticated header.
    suite: s3crypt_core::Suite,
    frame_length: u32,
    dst_bucket: String,
    dst_key: String,
    dst_sse: Option<Arc<SseCKey>>,
}

impl ServerSideCopy {
    async fn run(self, mut cancel: Cancel) -> Result<CopyOutput> {
        let s3 = &self.shared.s3;
        let meta = metadata::for_new_object(
            self.suite,
            self.frame_length,
            self.info.header_length as usize,
            self.info.content_type.as_deref(),
            &self.info.user_metadata,
        );
        let created = s3.create_multipart_upload();
        let created = with_sse_c!(created, self.dst_sse.as_deref())
            .bucket(&self.dst_bucket)
            .key(&self.dst_key)
            .set_metadata(Some(meta))
            .content_type("application/octet-stream")
            .send()
            .await
            .map_err(|e| missing_bucket(&self.dst_bucket, service("CreateMultipartUpload", e)))?;
        let (guard, upload_id) =
            MultipartGuard::started(s3, &self.dst_bucket, &self.dst_key, &created)?;
        let mut tasks = JoinSet::new();
        let result = tokio::select! {
            r = self.parts(&upload_id, &mut tasks) => r,
            () = &mut cancel => Err(Error::Cancelled),
        };
        guard.settle(result.is_err(), &mut tasks).await;
        let (parts, etag, version_id) = result?;
        Ok(CopyOutput {
            mode: CopyMode::ServerSide,
            header_length_before: self.info.header_length,
            header_length_after: self.info.header_length,
            size: self.info.size,
            parts,
            bytes_downloaded: self.info.header_length,
            bytes_uploaded: 0,
            etag,
            version_id,
        })
    }

    async fn parts(
        &self,
        upload_id: &str,
        tasks: &mut JoinSet<Result<CompletedPart>>,
    ) -> Result<(u32, Option<String>, Option<String>)> {
        let s3 = &self.shared.s3;
        let size = self.info.size;
        let part = COPY_PART
            .max(size.div_ceil(u64::from(MAX_PARTS as u32)))
            .min(MAX_PART as u64);
        let source = copy_source(
            &self.fetch.bucket,
            &self.fetch.key,
            self.fetch.version_id.as_deref(),
        );
        let concurrency = self.shared.transfer.concurrency;
        let mut completed = Vec::new();
        let mut start = 0;
        let mut n = 0i32;
        while start < size {
            let stop = (start + part).min(size);
            n += 1;
            while tasks.len() >= concurrency {
                completed.push(join(tasks).await?);
            }
            let req = s3.upload_part_copy();
            let req = with_sse_c!(req, self.dst_sse.as_deref());
            let req = match self.fetch.sse.as_deref() {
                Some(k) => req
                    .copy_source_sse_customer_algorithm("AES256")
                    .copy_source_sse_customer_key(k.key_base64().as_str())
                    .copy_source_sse_customer_key_md5(k.md5_base64()),
                None => req,
            };
            let req = req
                .bucket(&self.dst_bucket)
                .key(&self.dst_key)
                .upload_id(upload_id)
                .part_number(n)
                .copy_source(&source)
                .set_copy_source_if_match(self.fetch.etag.clone())
                .copy_source_range(format!("bytes={start}-{}", stop - 1));
            let (bucket, key) = (self.fetch.bucket.clone(), self.fetch.key.clone());
            tasks.spawn(async move {
                let out = req
                    .send()
                    .await
                    .map_err(|e| not_found_or(&bucket, &key, service("UploadPartCopy", e)))?;
                let etag = out
                    .copy_part_result()
                    .and_then(|r| r.e_tag())
                    .map(str::to_owned);
                Ok(CompletedPart::builder()
                    .part_number(n)
                    .set_e_tag(etag)
                    .build())
            });
            start = stop;
        }
        while !tasks.is_empty() {
            completed.push(join(tasks).await?);
        }
        completed.sort_by_key(|p| p.part_number());
        let req = s3.complete_multipart_upload();
        let out = with_sse_c!(req, self.dst_sse.as_deref())
            .bucket(&self.dst_bucket)
            .key(&self.dst_key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| service("CompleteMultipartUpload", e))?;
        Ok((
            n as u32,
            out.e_tag().map(str::to_owned),
            out.version_id().map(str::to_owned),
        ))
    }
}

/// `x-amz-copy-source`: `bucket/key` with the key percent-encoded (but `/`), and the version.
fn copy_source(bucket: &str, key: &str, version: Option<&str>) -> String {
    let mut s = String::with_capacity(bucket.len() + key.len() * 3);
    s.push_str(bucket);
    s.push('/');
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    if let Some(v) = version {
        s.push_str("?versionId=");
        for b in v.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                s.push(b as char);
            } else {
                s.push_str(&format!("%{b:02X}"));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_encodes_the_key_but_slashes() {
        assert_eq!(copy_source("b", "a/b c+ü", None), "b/a/b%20c%2B%C3%BC");
        assert_eq!(copy_source("b", "k", Some("v1+")), "b/k?versionId=v1%2B");
    }

    /// A keyring that cannot wrap (like a KMS discovery keyring).
    #[derive(Debug)]
    struct CannotWrap;

    impl Keyring for CannotWrap {
        fn on_encrypt(&self, _: &mut EncryptionMaterials) -> s3crypt_core::Result<()> {
            Err(s3crypt_core::Error::InvalidArgument(
                "a discovery keyring cannot encrypt".into(),
            ))
        }

        fn on_decrypt(
            &self,
            _: &mut DecryptionMaterials,
            _: &[EncryptedDataKey],
        ) -> s3crypt_core::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_client_keyring_that_cannot_wrap_kept_keys_says_which_keys() {
        use s3crypt_core::keyring::raw_aes::{RawAesKeyring, WrappingKey};
        use s3crypt_core::Suite;
        let mut old = EncryptionMaterials::new(Suite::DEFAULT, EncryptionContext::new());
        RawAesKeyring::new("team", "k1", WrappingKey::from_bytes([1; 32]))
            .unwrap()
            .on_encrypt(&mut old)
            .unwrap();
        let keys = NewKeys {
            holder: Arc::new(CannotWrap),
            kept: old.encrypted_data_keys().to_vec(),
            wrap: None,
        };
        let mut m = EncryptionMaterials::new(Suite::DEFAULT, EncryptionContext::new());
        let e = keys.on_encrypt(&mut m).unwrap_err().to_string();
        assert!(e.contains("team/k1") && e.contains("discovery"), "{e}");
    }

    #[test]
    fn a_bare_key_name_of_two_namespaces_is_refused() {
        use s3crypt_core::keyring::raw_aes::{RawAesKeyring, WrappingKey};
        use s3crypt_core::keyring::EncryptionMaterials;
        use s3crypt_core::{Keyring, Suite};
        let mut m = EncryptionMaterials::new(Suite::DEFAULT, EncryptionContext::new());
        for (ns, name) in [("team", "k"), ("backup", "k"), ("team", "old")] {
            RawAesKeyring::new(ns, name, WrappingKey::from_bytes([1; 32]))
                .unwrap()
                .on_encrypt(&mut m)
                .unwrap();
        }
        let edks = m.encrypted_data_keys();
        let remove =
            |names: &[&str]| KeepKeys::AllBut(names.iter().map(|n| n.to_string()).collect());
        let e = remove(&["old", "k"]).check(edks).unwrap_err();
        assert!(e.to_string().contains("backup, team"), "{e}");
        // Qualified names, and bare names of one namespace, are fine.
        for names in [&["team/k", "old"][..], &["backup/k"], &["gone"]] {
            let keep = remove(names);
            keep.check(edks).unwrap();
            let kept = edks.iter().filter(|e| keep.keeps(e)).count();
            assert_eq!(kept, 3 - names.iter().filter(|n| **n != "gone").count());
        }
    }

    /// An in-place rewrap is skipped only if every added key already wraps the object's data
    /// key (found by an independent review: the probe matched raw AES keys by name only). A raw AES key of the same namespace/name but other key material
    /// (a key regenerated under the same name: `keygen --name prod` twice, a rotation that kept
    /// the name, two teams' keys both called s3crypt/prod) does not wrap it, yet the probe
    /// matches it by name (`same_wrapping_key`) and the rewrap would be skipped.
    #[tokio::test]
    async fn an_added_key_of_the_same_name_but_other_material_is_not_skipped_but_refused() {
        use s3crypt_core::keyring::raw_aes::{RawAesKeyring, WrappingKey};
        use s3crypt_core::Suite;
        let suite = Suite::DEFAULT;
        let context = EncryptionContext::new();
        let old_key =
            Arc::new(RawAesKeyring::new("team", "prod", WrappingKey::from_bytes([1; 32])).unwrap());
        let mut object = EncryptionMaterials::new(suite, context.clone());
        old_key.on_encrypt(&mut object).unwrap();
        let object_edks = object.encrypted_data_keys().to_vec();
        let added =
            Arc::new(RawAesKeyring::new("team", "prod", WrappingKey::from_bytes([2; 32])).unwrap());

        // The added key cannot unwrap the object's data key: the object is not readable by it.
        let mut d = DecryptionMaterials::new(suite, context.clone());
        added.on_decrypt(&mut d, &object_edks).unwrap();
        assert!(d.data_key().is_none(), "the added key unwraps the object");

        // Re-encrypting is refused rather than dropping the kept key as a duplicate (which would
        // take the object away from the old key's holders).
        let keys = NewKeys {
            holder: old_key.clone(),
            kept: object_edks.clone(),
            wrap: Some(added.clone()),
        };
        let mut m = EncryptionMaterials::new(suite, context.clone());
        let e = keys.on_encrypt(&mut m).unwrap_err();
        assert!(
            e.to_string().contains("has the name of a different key"),
            "{e}"
        );

        // The probe that decides the skip (`send` skips when it says true, in place, same
        // context and no key removed).
        let skip = adds_no_key(added.clone(), suite, context, object_edks)
            .await
            .unwrap();
        assert!(
            !skip,
            "rewrap --add-key would report the object unchanged, and leave it unreadable by the key added"
        );
    }
}
