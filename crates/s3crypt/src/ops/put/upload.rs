//! Sealing and sending an upload: one PUT, or a multipart upload of parts sealed in parallel.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use s3crypt_core::parts::{regular_plaintext_slot, sealed_frame_len, MessageSealer, PartSealer};
use s3crypt_core::{EncryptOptions, EncryptionContext, Encryptor, Keyring};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinSet;

use super::output::{PutOutput, StorageOptions};
use super::plan::grown;
use crate::error::{service, Error, Result};
use crate::settings::Encryption;
use crate::shared::Shared;
use crate::transport::blocking;
use crate::transport::head::missing_bucket;
use crate::transport::multipart::{
    join, upload_part, Cancel, MultipartGuard, PartTarget, MAX_PARTS,
};
use crate::transport::pool::Pool;
use crate::{location, metadata};

/// What the header and the stored metadata are made from.
pub(crate) struct HeaderParts {
    pub(crate) context: EncryptionContext,
    pub(crate) binding: Option<location::Binding>,
    pub(crate) keyring: Option<Arc<dyn Keyring>>,
    pub(crate) content_type: Option<String>,
    pub(crate) metadata: BTreeMap<String, String>,
}

/// What a PUT and a CreateMultipartUpload both carry for a new object: its location, the
/// S3-side storage options, s3crypt's metadata and the stored content type (every S3 request
/// builder that creates an object has the same setters).
macro_rules! new_object {
    ($builder:expr, $upload:expr) => {{
        let u = &$upload;
        $builder
            .bucket(&u.bucket)
            .key(&u.key)
            .set_server_side_encryption(u.options.server_side_encryption.clone())
            .set_ssekms_key_id(u.options.sse_kms_key_id.clone())
            .set_storage_class(u.options.storage_class.clone())
            .set_object_lock_mode(u.options.object_lock_mode.clone())
            .set_object_lock_retain_until_date(u.options.object_lock_retain_until)
            .set_metadata(Some(u.meta.clone()))
            .content_type("application/octet-stream")
    }};
}

/// One upload under way.
pub(crate) struct Upload {
    pub(crate) shared: Arc<Shared>,
    pub(crate) bucket: String,
    pub(crate) key: String,
    pub(crate) meta: std::collections::HashMap<String, String>,
    pub(crate) size_hint: Option<u64>,
    pub(crate) options: StorageOptions,
    pub(crate) sse: Option<Arc<crate::sse_c::SseCKey>>,
    pub(crate) pool: Pool,
    pub(crate) encryption: Encryption,
    /// The final write (PUT or CompleteMultipartUpload) replaces only an object with this ETag.
    pub(crate) if_match: Option<String>,
    pub(crate) header_length: u64,
    /// Told each part's plaintext bytes once S3 acknowledged it.
    pub(crate) progress: Option<super::Progress>,
}

/// Uploads a part, then reports its plaintext bytes to `progress`.
async fn upload_reported(
    target: PartTarget,
    part_number: i32,
    bytes: bytes::BytesMut,
    plaintext: u64,
    progress: Option<super::Progress>,
) -> Result<CompletedPart> {
    let done = upload_part(target, part_number, bytes).await?;
    if let Some(p) = progress {
        p(plaintext);
    }
    Ok(done)
}

/// Reads up to `limit` bytes (fewer if the input ends first) into a buffer that starts at
/// `initial` bytes and doubles as data arrives, never beyond `limit`: small inputs cost small
/// buffers, and large ones no more than `limit`.
pub(crate) async fn read_up_to(
    r: &mut (dyn AsyncRead + Send + Unpin),
    limit: usize,
    initial: usize,
) -> std::io::Result<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::with_capacity(initial.clamp(1, limit.max(1)));
    while buf.len() < limit {
        if buf.len() == buf.capacity() {
            let grow = buf.capacity().min(limit - buf.len());
            buf.reserve_exact(grow);
        }
        // Into the spare capacity, without zeroing it first, and never past `limit`.
        let left = (limit - buf.len()) as u64;
        if (&mut *r).take(left).read_buf(&mut buf).await? == 0 {
            break;
        }
    }
    Ok(buf)
}

/// Reads until `buf` is full or the input ends.
async fn fill(r: &mut (dyn AsyncRead + Send + Unpin), buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]).await? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Plaintexts up to this length are sealed on the async thread: a few microseconds of AES-GCM,
/// less than handing them to the blocking pool and back (small objects are most of what an
/// ingestion service writes).
const SEAL_INLINE: usize = 64 << 10;

/// Seals one part: `prefix` (the header, for part 1), then the part's frames with `plaintext`
/// placed in them; on the blocking pool unless it is small.
async fn seal(part: PartSealer, plaintext: Vec<u8>, prefix: Vec<u8>) -> Result<Vec<u8>> {
    if plaintext.len() <= SEAL_INLINE {
        return seal_now(part, &plaintext, prefix);
    }
    blocking(move || seal_now(part, &plaintext, prefix)).await
}

fn seal_now(part: PartSealer, plaintext: &[u8], prefix: Vec<u8>) -> Result<Vec<u8>> {
    let mut buf = prefix;
    let start = buf.len();
    buf.resize(start + part.sealed_len(), 0);
    let mut off = 0;
    for r in part.plaintext_ranges() {
        let n = r.len();
        buf[start + r.start..start + r.end].copy_from_slice(&plaintext[off..off + n]);
        off += n;
    }
    part.seal(&mut buf[start..])?;
    Ok(buf)
}

impl Upload {
    /// Uploads a sealed part holding `plaintext` bytes, reporting them to the progress hook once
    /// S3 acknowledged the part.
    fn part_upload(
        &self,
        target: &PartTarget,
        part_number: i32,
        bytes: bytes::BytesMut,
        plaintext: usize,
    ) -> impl std::future::Future<Output = Result<CompletedPart>> + Send + 'static {
        upload_reported(
            target.clone(),
            part_number,
            bytes,
            plaintext as u64,
            self.progress.clone(),
        )
    }

    /// Requests the data key, then sends `first` with one PUT if it is the whole body (at most
    /// `threshold` bytes), else a multipart upload of `first` and the rest of `body`.
    ///
    /// The data key is requested only now, after the first read: a body that fits in one PUT
    /// has a known length even when the caller declared none, so a caching keyring can serve it.
    pub(super) async fn start(
        mut self,
        put: HeaderParts,
        first: Vec<u8>,
        body: Option<Box<dyn AsyncRead + Send + Unpin>>,
        part_len: usize,
        threshold: usize,
        cancel: &mut Cancel,
    ) -> Result<PutOutput> {
        let n = first.len();
        let whole = n <= threshold;
        // The whole body is here: its exact length is declared (a hint is a maximum, so a longer
        // body fails now, before a data key is requested).
        let declared = match self.size_hint {
            Some(h) if whole && n as u64 > h => {
                return Err(Error::InvalidArgument(format!(
                    "the body is longer than its declared length ({h} bytes)"
                )))
            }
            _ if whole => Some(n as u64),
            hint => hint,
        };
        let inner = &self.shared;
        let mut context = put.context;
        let binding = put.binding.unwrap_or(inner.binding);
        location::bind_with(&mut context, &self.bucket, &self.key, binding)?;
        let opts = EncryptOptions {
            suite: self.encryption.suite,
            frame_length: self.encryption.frame_length,
            context,
            // Lets a caching keyring account for this message's bytes.
            plaintext_length: declared,
        };
        let keyring = put.keyring.unwrap_or_else(|| inner.keyring.clone());
        // Wrapping the data key may block (a remote keyring): keep it off the async threads.
        // Local keyrings only compute (microseconds): inline, without a thread hand-off (not
        // for the signed suite, whose signing key takes a millisecond to generate).
        let enc = if keyring.may_block() || self.encryption.suite.is_signed() {
            tokio::select! {
                r = tokio::task::spawn_blocking(move || Encryptor::new(keyring.as_ref(), &opts)) => r??,
                () = &mut *cancel => return Err(Error::Cancelled),
            }
        } else {
            Encryptor::new(keyring.as_ref(), &opts)?
        };
        let sealer = MessageSealer::new(enc)?;
        self.meta = metadata::for_new_object(
            self.encryption.suite,
            self.encryption.frame_length,
            sealer.header().len(),
            put.content_type.as_deref(),
            &put.metadata,
        );
        self.header_length = sealer.header().len() as u64;
        let mut out = match body {
            Some(mut body) if !whole => {
                self.multipart(sealer, first, part_len, body.as_mut(), cancel)
                    .await?
            }
            _ => self.single(sealer, first).await?,
        };
        out.length_declared = declared.is_some();
        Ok(out)
    }

    async fn multipart(
        &self,
        sealer: MessageSealer,
        first: Vec<u8>,
        part_len: usize,
        body: &mut (dyn AsyncRead + Send + Unpin),
        cancel: &mut Cancel,
    ) -> Result<PutOutput> {
        let s3 = &self.shared.s3;
        let created = s3.create_multipart_upload();
        let created = new_object!(
            crate::sse_c::with_sse_c!(created, self.sse.as_deref()),
            self
        )
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .send()
        .await
        .map_err(|e| missing_bucket(&self.bucket, service("CreateMultipartUpload", e)))?;
        let (guard, upload_id) = MultipartGuard::started(s3, &self.bucket, &self.key, &created)?;
        let mut slot = Some(sealer);
        let mut tasks: JoinSet<Result<CompletedPart>> = JoinSet::new();
        let result = tokio::select! {
            r = self.parts(&mut slot, &mut tasks, first, part_len, body, &upload_id) => r,
            () = &mut *cancel => Err(Error::Cancelled),
        };
        guard.settle(result.is_err(), &mut tasks).await;
        result
    }

    async fn single(&self, sealer: MessageSealer, plaintext: Vec<u8>) -> Result<PutOutput> {
        let frame = sealer.frame_length() as usize;
        let header = sealer.header().to_vec();
        let plaintext_length = plaintext.len() as u64;
        let (part, mut tail) =
            sealer.last_part(plaintext.len() / frame, plaintext.len() % frame)?;
        let mut body = seal(part, plaintext, header.clone()).await?;
        tail.absorb(&body[header.len()..]);
        body.extend(tail.finish()?);
        let size = body.len() as u64;
        let req = self.shared.s3.put_object();
        let out = new_object!(crate::sse_c::with_sse_c!(req, self.sse.as_deref()), self)
            .set_if_match(self.if_match.clone())
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| missing_bucket(&self.bucket, service("PutObject", e)))?;
        if let Some(p) = &self.progress {
            p(plaintext_length);
        }
        Ok(PutOutput {
            plaintext_length,
            size,
            parts: 1,
            etag: out.e_tag().map(str::to_owned),
            version_id: out.version_id().map(str::to_owned),
            header_length: self.header_length,
            length_declared: false,
        })
    }

    async fn parts(
        &self,
        sealer: &mut Option<MessageSealer>,
        tasks: &mut JoinSet<Result<CompletedPart>>,
        first: Vec<u8>,
        part_len: usize,
        body: &mut (dyn AsyncRead + Send + Unpin),
        upload_id: &str,
    ) -> Result<PutOutput> {
        let inner = &self.shared;
        let concurrency = inner.transfer.concurrency;
        let signed = self.encryption.suite.is_signed();
        let frame = self.encryption.frame_length as usize;
        let target = PartTarget {
            shared: self.shared.clone(),
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            upload_id: upload_id.to_owned(),
            sse: self.sse.clone(),
            pool: self.pool.clone(),
        };
        let mut completed = Vec::new();
        let mut input = Input {
            carry: first,
            pos: 0,
            body,
        };
        let slot = sealed_frame_len(frame);
        let mut part_number: i32 = 0;
        let mut plaintext_total = 0u64;
        let mut size = 0u64;
        loop {
            let part_len = grown(part_len, part_number + 1, frame, self.size_hint.is_some());
            let frames = part_len / frame;
            part_number += 1;
            if part_number > MAX_PARTS {
                return Err(Error::InvalidArgument(
                    "the object needs more than 10,000 parts: use a larger part size".into(),
                ));
            }
            // Bounded memory: wait for a slot before taking another buffer.
            while tasks.len() >= concurrency {
                completed.push(join(tasks).await?);
            }
            let Some(s) = sealer.as_mut() else {
                return Err(Error::Internal("sealer used up".into()));
            };
            let prefix = if part_number == 1 {
                s.header().len()
            } else {
                0
            };
            let mut buf = self.pool.filled(prefix + frames * slot);
            buf[..prefix].copy_from_slice(&s.header()[..prefix]);
            // The plaintext is read straight into its frames' slots and sealed in place.
            let mut n = 0;
            for i in 0..frames {
                let at = regular_plaintext_slot(frame, i);
                let k = input
                    .fill(&mut buf[prefix + at.start..prefix + at.end])
                    .await?;
                n += k;
                if k < frame {
                    break;
                }
            }
            plaintext_total += n as u64;
            if n < part_len || !input.more().await? {
                let s = sealer
                    .take()
                    .ok_or_else(|| Error::Internal("sealer used up".into()))?;
                let (k, r) = (n / frame, n % frame);
                let (part, mut tail) = s.last_part(k, r)?;
                let len = prefix + part.sealed_len();
                if len > buf.len() {
                    buf.resize(len, 0);
                }
                // The final frame's header is longer than a regular one: move its plaintext.
                part.move_final_plaintext(&mut buf[prefix..])?;
                buf.truncate(len);
                let bytes = blocking(move || {
                    part.seal(&mut buf[prefix..])?;
                    tail.absorb(&buf[prefix..]);
                    buf.extend_from_slice(&tail.finish()?);
                    Ok::<_, Error>(buf)
                })
                .await?;
                size += bytes.len() as u64;
                tasks.spawn(self.part_upload(&target, part_number, bytes, n));
                break;
            }
            let part = s.part(frames)?;
            size += buf.len() as u64;
            if signed {
                // The signature hashes the message in order: seal and hash here, in order (on the
                // blocking pool: hashing a part is CPU work too).
                let mut s = sealer
                    .take()
                    .ok_or_else(|| Error::Internal("sealer used up".into()))?;
                let (s, bytes) = blocking(move || {
                    part.seal(&mut buf[prefix..])?;
                    s.absorb(&buf[prefix..]);
                    Ok::<_, Error>((s, buf))
                })
                .await?;
                *sealer = Some(s);
                tasks.spawn(self.part_upload(&target, part_number, bytes, n));
            } else {
                let (target, progress) = (target.clone(), self.progress.clone());
                tasks.spawn(async move {
                    let bytes = blocking(move || {
                        part.seal(&mut buf[prefix..])?;
                        Ok::<_, Error>(buf)
                    })
                    .await?;
                    upload_reported(target, part_number, bytes, n as u64, progress).await
                });
            }
        }
        while !tasks.is_empty() {
            completed.push(join(tasks).await?);
        }
        completed.sort_by_key(|p| p.part_number());
        let req = inner.s3.complete_multipart_upload();
        let out = crate::sse_c::with_sse_c!(req, self.sse.as_deref())
            .bucket(&self.bucket)
            .key(&self.key)
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
        Ok(PutOutput {
            plaintext_length: plaintext_total,
            size,
            parts: part_number as u32,
            etag: out.e_tag().map(str::to_owned),
            version_id: out.version_id().map(str::to_owned),
            header_length: self.header_length,
            length_declared: false,
        })
    }
}

/// The rest of the input: what was read ahead (`carry[pos..]`), then `body`.
struct Input<'a> {
    carry: Vec<u8>,
    pos: usize,
    body: &'a mut (dyn AsyncRead + Send + Unpin),
}

impl Input<'_> {
    /// Fills `buf` unless the input ends first; returns the bytes placed.
    async fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        if self.pos < self.carry.len() {
            n = buf.len().min(self.carry.len() - self.pos);
            buf[..n].copy_from_slice(&self.carry[self.pos..self.pos + n]);
            self.pos += n;
            if self.pos == self.carry.len() {
                self.carry = Vec::new();
                self.pos = 0;
            }
        }
        Ok(n + fill(self.body, &mut buf[n..]).await?)
    }

    /// Whether any input is left (reads one byte ahead to know).
    async fn more(&mut self) -> std::io::Result<bool> {
        if self.pos < self.carry.len() {
            return Ok(true);
        }
        let mut b = [0u8; 1];
        if fill(self.body, &mut b).await? == 0 {
            return Ok(false);
        }
        self.carry = b.to_vec();
        self.pos = 0;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_read_grows_with_the_data_and_stops_at_its_limit() {
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        // Shorter than the limit: all of it, in a buffer about its size.
        let got = read_up_to(&mut &data[..1000], 1 << 20, 64).await.unwrap();
        assert_eq!(got, &data[..1000]);
        assert!(got.capacity() <= 1024, "{}", got.capacity());
        // Longer: exactly the limit, and never a buffer larger than it.
        for initial in [1, 64 << 10, 1 << 30] {
            let got = read_up_to(&mut &data[..], 70_000, initial).await.unwrap();
            assert_eq!(got, &data[..70_000]);
            assert!(got.capacity() <= 70_000, "{}", got.capacity());
        }
        // Empty input.
        assert!(read_up_to(&mut &data[..0], 10, 64)
            .await
            .unwrap()
            .is_empty());
    }
}
