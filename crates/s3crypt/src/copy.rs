//! Server-side copy, move and rewrap: a new header in front of the same frames.
//!
//! The frames of a message depend only on its data key and message id, so changing who can
//! decrypt it (the wrapped keys) or where it is bound to (the location pairs of its context)
//! needs a new header only ([`s3crypt_core::rewrap`]). The client reads the old header, builds
//! the new one, and writes the destination as a multipart upload whose first part is the new
//! header plus the first 5 MiB of frames (uploaded by the client: S3's smallest part) and whose
//! other parts are `UploadPartCopy`s of the source's frames, done by S3 itself. Small objects are
//! read and written whole. The client therefore moves at most about 2 × 5 MiB plus the header
//! (or twice the multipart threshold for small objects), whatever the object's size.
//!
//! Nothing half-written becomes visible: the destination appears when `CompleteMultipartUpload`
//! succeeds, atomically for readers (an in-place rewrap replaces the object in one step; with
//! versioning the old version stays), and a failed or cancelled copy aborts its upload. A move
//! deletes the source only after the destination is complete. Every read of the source is pinned
//! to the ETag seen first, so a concurrent overwrite fails the copy instead of mixing versions.
//!
//! Frames are copied, not decrypted: a tampered frame is carried over and found by the reader.
//! Signed messages (suite 0x0578) cannot be rewrapped (see [`s3crypt_core::rewrap`]).

use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use s3crypt_core::rewrap::{rewrap_header, RewrapPlan};
use s3crypt_core::{DecryptOptions, EncryptedDataKey, EncryptionContext, Header, Keyring};
use tokio::task::JoinSet;

use crate::client::{not_found_or, Client};
use crate::download::{head, Fetch};
use crate::error::{service, Error, Result};
use crate::location;
use crate::metadata::{self, ObjectInfo};
use crate::sse_c::{with_sse_c, SseCKey};
use crate::upload::{join, AbortOnDrop, MAX_PARTS, MIN_PART};

/// Which of the source's wrapped keys the new header keeps (only possible when the context, and
/// so the location, stays the same).
#[derive(Debug, Clone, Default)]
pub enum KeepKeys {
    /// All of them (default for an in-place rewrap).
    #[default]
    All,
    /// None: the new header holds only the keys of [`CopyObject::wrap_with`] (always the case
    /// when the object changes location).
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

/// A copy, move or rewrap being configured (see [`Client::copy_object`]).
pub struct CopyObject {
    client: Client,
    source: Option<(String, String)>,
    source_version_id: Option<String>,
    destination: Option<(String, String)>,
    required: EncryptionContext,
    allow_moved: bool,
    wrap: Option<Arc<dyn Keyring>>,
    keep: KeepKeys,
    source_sse_c: bool,
    destination_sse_c: bool,
    delete_source: bool,
    cancel: Option<crate::upload::Cancel>,
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

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOutput {
    /// Header length before and after (the frames are the same bytes).
    pub header_length_before: u64,
    /// See above.
    pub header_length_after: u64,
    /// Size of the new object.
    pub size: u64,
    /// Parts of the multipart upload (1: a single PUT).
    pub parts: u32,
    /// Bytes the client downloaded (header and, for part 1, the first frames).
    pub bytes_downloaded: u64,
    /// Bytes the client uploaded.
    pub bytes_uploaded: u64,
    /// ETag of the new object.
    pub etag: Option<String>,
    /// Version of the new object (versioned buckets).
    pub version_id: Option<String>,
}

/// Bytes per `UploadPartCopy` (grown so a copy fits in 10,000 parts).
const COPY_PART: u64 = 64 << 20;
/// S3's largest part.
const MAX_PART: u64 = 5 << 30;

impl CopyObject {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client,
            source: None,
            source_version_id: None,
            destination: None,
            required: EncryptionContext::new(),
            allow_moved: false,
            wrap: None,
            keep: KeepKeys::All,
            source_sse_c: false,
            destination_sse_c: false,
            delete_source: false,
            cancel: None,
        }
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

    /// Wraps the data key under these keys too. When the object changes location this is the
    /// keyring of the new header (default: the client's keyring); in place, these keys are added.
    pub fn wrap_with(mut self, keyring: Arc<dyn Keyring>) -> Self {
        self.wrap = Some(keyring);
        self
    }

    /// Which of the old wrapped keys to keep in place (ignored, i.e. none, when the location
    /// changes).
    pub fn keep(mut self, keep: KeepKeys) -> Self {
        self.keep = keep;
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
    /// [`Error::NotFound`], [`Error::NotEncrypted`], [`Error::Service`]; the rewrap's errors
    /// (wrong key, context mismatch, tampered header, signed suite, no key left); a source moved
    /// from its authenticated location without [`CopyObject::allow_moved`].
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
        let (info, src_sse) = head(&self.client, &sb, &sk, version, self.source_sse_c).await?;
        if info.suite.is_signed() {
            return Err(Error::Crypto(s3crypt_core::Error::Unsupported(
                "signed objects (suite 0x0578) cannot be rewrapped or copied with a new header; download and put them again".into(),
            )));
        }
        let fetch = Fetch {
            client: self.client.clone(),
            bucket: sb.clone(),
            key: sk.clone(),
            version_id: self.source_version_id.clone().or(info.version_id.clone()),
            etag: info.etag.clone(),
            sse: src_sse.as_ref().map(|(_, k)| k.clone()),
            pool: Default::default(),
        };
        let header_bytes = fetch.bytes(0..info.header_length).await?;
        let old = Header::read(&header_bytes, &Default::default())?;
        if old.len() as u64 != info.header_length {
            return Err(Error::NotEncrypted {
                bucket: sb,
                key: sk,
                reason: "its header length metadata does not match its header".into(),
            });
        }

        // The source must be where it says it is (or the caller accepts that it moved).
        let mut options = DecryptOptions {
            required_context: self.required.clone(),
            ..Default::default()
        };
        if !self.allow_moved {
            let mut pairs = location::required(&sb, &sk, self.client.inner.binding);
            // Whatever the client's binding, a source bound to its key must be at that key:
            // otherwise a swapped object would be re-bound here and look genuine afterwards.
            if old.header.context.get(location::KEY).is_some() && pairs.get(location::KEY).is_none()
            {
                pairs.insert(location::KEY, sk.as_str())?;
            }
            for (k, v) in pairs.iter() {
                match options.required_context.get(k) {
                    None => options.required_context.insert(k, v)?,
                    Some(same) if same == v => {}
                    Some(_) => {
                        return Err(Error::InvalidArgument(format!(
                            "the required context sets {k:?}, which is the object's location binding; use allow_moved to copy a moved object"
                        )))
                    }
                }
            }
        }
        // The new context: the old one, bound to the destination.
        let mut context = EncryptionContext::new();
        for (k, v) in old.header.context.iter() {
            if k != location::BUCKET && k != location::KEY {
                context.insert(k, v)?;
            }
        }
        // The destination keeps the source's kind of binding (bucket-only objects stay so).
        let binding = if old.header.context.get(location::KEY).is_some() {
            location::Binding::Key
        } else {
            location::Binding::Bucket
        };
        location::bind_with(&mut context, &db, &dk, binding)?;
        let same_context = context == old.header.context;
        let keep = if same_context {
            self.keep.check(&old.header.encrypted_data_keys)?;
            self.keep.clone()
        } else {
            KeepKeys::None
        };
        let wrap = match (&self.wrap, same_context) {
            (Some(w), _) => Some(w.clone()),
            // A new location rewraps under the client's keys.
            (None, false) => Some(self.client.inner.keyring.clone()),
            (None, true) => None,
        };
        let unwrap = self.client.inner.keyring.clone();
        let new = tokio::task::spawn_blocking(move || {
            let keeps = |e: &EncryptedDataKey| keep.keeps(e);
            let plan = RewrapPlan {
                context,
                keep: &keeps,
                wrap: wrap.as_deref(),
            };
            rewrap_header(&old, unwrap.as_ref(), &options, &plan)
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))??;

        let dst_sse = match &src_sse {
            _ if !self.destination_sse_c => None,
            // In place, with the key new objects are written with: the same key (derivation is
            // deterministic), without asking a key service for it again.
            Some((0, k)) if (&sb, &sk) == (&db, &dk) => Some(k.clone()),
            _ => Some(crate::sse_c::write_key(self.client.inner.sse_c.as_ref(), &db, &dk).await?),
        };
        if new.bytes.len() as u64 > metadata::MAX_HEADER_LENGTH {
            return Err(Error::InvalidArgument(format!(
                "the new header would be {} bytes, more than readers accept ({})",
                new.bytes.len(),
                metadata::MAX_HEADER_LENGTH
            )));
        }
        let source_etag = fetch.etag.clone();
        let job = CopyJob {
            client: self.client.clone(),
            fetch,
            // What new metadata says comes from the authenticated header, not from HEAD.
            suite: new.header.suite,
            frame_length: new.header.frame_length,
            // In place, the write replaces the object only if it is still the one read: a
            // concurrent writer's object is never overwritten with the old content.
            if_match: if in_place { source_etag.clone() } else { None },
            info,
            dst_bucket: db,
            dst_key: dk,
            dst_sse,
            header: new.bytes,
        };
        let cancel = self
            .cancel
            .take()
            .unwrap_or_else(|| Box::pin(std::future::pending()));
        let out = job.run(cancel).await?;
        if self.delete_source {
            // Only the object that was copied: if someone replaced it meanwhile, S3 refuses
            // (412) and both stay.
            self.client
                .inner
                .s3
                .delete_object()
                .bucket(&sb)
                .key(&sk)
                .set_if_match(source_etag)
                .send()
                .await
                .map_err(|e| service("DeleteObject", e))?;
        }
        Ok(out)
    }
}

struct CopyJob {
    client: Client,
    fetch: Fetch,
    suite: s3crypt_core::Suite,
    frame_length: u32,
    if_match: Option<String>,
    info: ObjectInfo,
    dst_bucket: String,
    dst_key: String,
    dst_sse: Option<Arc<SseCKey>>,
    header: Vec<u8>,
}

impl CopyJob {
    fn metadata(&self) -> std::collections::HashMap<String, String> {
        metadata::for_new_object(
            self.suite,
            self.frame_length,
            self.header.len(),
            self.info.content_type.as_deref(),
            &self.info.user_metadata,
        )
    }

    async fn run(self, mut cancel: crate::upload::Cancel) -> Result<CopyOutput> {
        let hlen = self.info.header_length;
        let body_len = self.info.size - hlen;
        let new_size = self.header.len() as u64 + body_len;
        let threshold =
            (self.client.inner.transfer.multipart_threshold as u64).max(MIN_PART as u64);
        if new_size <= threshold || body_len <= MIN_PART as u64 {
            return tokio::select! {
                r = self.single(body_len) => r,
                () = &mut cancel => Err(Error::Cancelled),
            };
        }
        self.multipart(body_len, cancel).await
    }

    async fn single(self, body_len: u64) -> Result<CopyOutput> {
        let hlen = self.info.header_length;
        let frames = self.fetch.bytes(hlen..hlen + body_len).await?;
        let mut body = self.header.clone();
        body.extend_from_slice(&frames);
        let size = body.len() as u64;
        let req = self.client.inner.s3.put_object();
        let out = with_sse_c!(req, self.dst_sse.as_deref())
            .bucket(&self.dst_bucket)
            .key(&self.dst_key)
            .set_metadata(Some(self.metadata()))
            .content_type("application/octet-stream")
            .set_if_match(self.if_match.clone())
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| service("PutObject", e))?;
        Ok(CopyOutput {
            header_length_before: hlen,
            header_length_after: self.header.len() as u64,
            size,
            parts: 1,
            bytes_downloaded: hlen + body_len,
            bytes_uploaded: size,
            etag: out.e_tag().map(str::to_owned),
            version_id: out.version_id().map(str::to_owned),
        })
    }

    async fn multipart(
        self,
        body_len: u64,
        mut cancel: crate::upload::Cancel,
    ) -> Result<CopyOutput> {
        let s3 = &self.client.inner.s3;
        let hlen = self.info.header_length;
        let created = s3.create_multipart_upload();
        let created = with_sse_c!(created, self.dst_sse.as_deref())
            .bucket(&self.dst_bucket)
            .key(&self.dst_key)
            .set_metadata(Some(self.metadata()))
            .content_type("application/octet-stream")
            .send()
            .await
            .map_err(|e| service("CreateMultipartUpload", e))?;
        let (guard, upload_id) =
            AbortOnDrop::started(s3, &self.dst_bucket, &self.dst_key, &created)?;
        let mut tasks = JoinSet::new();
        let result = tokio::select! {
            r = self.parts(&upload_id, body_len, &mut tasks) => r,
            () = &mut cancel => Err(Error::Cancelled),
        };
        guard.settle(result.is_err(), &mut tasks).await;
        let (parts, etag, version_id) = result?;
        let first = (MIN_PART as u64).min(body_len);
        Ok(CopyOutput {
            header_length_before: hlen,
            header_length_after: self.header.len() as u64,
            size: self.header.len() as u64 + body_len,
            parts,
            bytes_downloaded: hlen + first,
            bytes_uploaded: self.header.len() as u64 + first,
            etag,
            version_id,
        })
    }

    async fn parts(
        &self,
        upload_id: &str,
        body_len: u64,
        tasks: &mut JoinSet<Result<CompletedPart>>,
    ) -> Result<(u32, Option<String>, Option<String>)> {
        let s3 = &self.client.inner.s3;
        let hlen = self.info.header_length;
        // Part 1: the new header and the first frames (S3's smallest part), through the client.
        let first = (MIN_PART as u64).min(body_len);
        let frames = self.fetch.bytes(hlen..hlen + first).await?;
        let mut body = self.header.clone();
        body.extend_from_slice(&frames);
        drop(frames);
        let req = s3.upload_part();
        let out = with_sse_c!(req, self.dst_sse.as_deref())
            .bucket(&self.dst_bucket)
            .key(&self.dst_key)
            .upload_id(upload_id)
            .part_number(1)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| service("UploadPart", e))?;
        let mut completed = vec![CompletedPart::builder()
            .part_number(1)
            .set_e_tag(out.e_tag().map(str::to_owned))
            .build()];

        // The other parts: copied by S3 from the source's frames.
        let rest = body_len - first;
        let part = COPY_PART
            .max(rest.div_ceil(u64::from(MAX_PARTS as u32 - 1)))
            .min(MAX_PART);
        let source = copy_source(
            &self.fetch.bucket,
            &self.fetch.key,
            self.fetch.version_id.as_deref(),
        );
        let concurrency = self.client.inner.transfer.concurrency;
        let mut start = hlen + first;
        let end = hlen + body_len;
        let mut n = 1i32;
        while start < end {
            let stop = (start + part).min(end);
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
            .set_if_match(self.if_match.clone())
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
}
