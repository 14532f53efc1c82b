//! Multipart uploads: S3's part limits, the guard that aborts an upload that did not complete
//! (failure, cancellation, or a dropped future), and part requests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedPart};
use tokio::task::JoinSet;

use super::pool::Pool;
use crate::error::{service, Error, Result};
use crate::shared::Shared;

/// S3's smallest part (all parts but the last).
pub(crate) const MIN_PART: usize = 5 << 20;
/// S3's largest part (ciphertext bytes).
pub(crate) const MAX_PART: usize = 5 << 30;
/// S3's largest part count.
pub(crate) const MAX_PARTS: i32 = 10_000;

/// A cancellation signal: when this future completes, the upload stops and is aborted.
pub(crate) type Cancel = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The next finished part (parts run as tasks of a `JoinSet`).
pub(crate) async fn join(tasks: &mut JoinSet<Result<CompletedPart>>) -> Result<CompletedPart> {
    match tasks.join_next().await {
        Some(Ok(r)) => r,
        Some(Err(e)) => Err(e.into()),
        None => Err(Error::Internal("no part in flight".into())),
    }
}

/// Aborts a multipart upload when dropped while armed (`s3` is `Some`).
pub(crate) struct MultipartGuard {
    s3: Option<aws_sdk_s3::Client>,
    bucket: String,
    key: String,
    upload_id: String,
}

impl MultipartGuard {
    /// The id of the multipart upload `created` started, and a guard that aborts it if the
    /// uploading future is dropped before [`MultipartGuard::settle`] (a timeout, a cancelled task).
    pub(crate) fn started(
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
        created: &aws_sdk_s3::operation::create_multipart_upload::CreateMultipartUploadOutput,
    ) -> Result<(Self, String)> {
        let upload_id = created
            .upload_id()
            .ok_or_else(|| Error::bad_response("CreateMultipartUpload", "no upload id"))?
            .to_owned();
        let guard = Self {
            s3: Some(s3.clone()),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            upload_id: upload_id.clone(),
        };
        Ok((guard, upload_id))
    }

    /// Once the parts ran: if they `failed`, stops the parts still in flight (so none lands
    /// after the abort) and aborts the upload, awaited. Best effort: the parts must not linger
    /// (and cost money), but if the abort itself fails the caller's error is still the one
    /// reported. Either way the guard is disarmed.
    pub(crate) async fn settle(mut self, failed: bool, tasks: &mut JoinSet<Result<CompletedPart>>) {
        let Some(s3) = self.s3.take() else { return };
        if failed {
            tasks.shutdown().await;
            let _ = s3
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(&self.upload_id)
                .send()
                .await;
        }
    }
}

impl Drop for MultipartGuard {
    fn drop(&mut self) {
        let Some(s3) = self.s3.take() else { return };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (bucket, key, id) = (
                std::mem::take(&mut self.bucket),
                std::mem::take(&mut self.key),
                std::mem::take(&mut self.upload_id),
            );
            rt.spawn(async move {
                let _ = s3
                    .abort_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await;
            });
        }
    }
}

/// Where parts go.
#[derive(Clone)]
pub(crate) struct PartTarget {
    pub(crate) shared: Arc<Shared>,
    pub(crate) bucket: String,
    pub(crate) key: String,
    pub(crate) upload_id: String,
    pub(crate) sse: Option<Arc<crate::sse_c::SseCKey>>,
    pub(crate) pool: Pool,
}

/// Uploads part `part_number`; its buffer goes back to the pool once the SDK is done with it.
pub(crate) async fn upload_part(
    t: PartTarget,
    part_number: i32,
    bytes: bytes::BytesMut,
) -> Result<CompletedPart> {
    let bytes = bytes.freeze();
    let keep = bytes.clone();
    let result = send_part(&t, part_number, bytes).await;
    // The SDK dropped its references once the request finished: the buffer goes back to the pool.
    if let Ok(b) = keep.try_into_mut() {
        t.pool.put(b);
    }
    result
}

async fn send_part(t: &PartTarget, part_number: i32, bytes: bytes::Bytes) -> Result<CompletedPart> {
    let req = t.shared.s3.upload_part();
    let out = crate::sse_c::with_sse_c!(req, t.sse.as_deref())
        .bucket(&t.bucket)
        .key(&t.key)
        .upload_id(&t.upload_id)
        .part_number(part_number)
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .body(ByteStream::from(bytes))
        .send()
        .await
        .map_err(|e| service("UploadPart", e))?;
    Ok(CompletedPart::builder()
        .part_number(part_number)
        .set_e_tag(out.e_tag().map(str::to_owned))
        .set_checksum_crc32(out.checksum_crc32().map(str::to_owned))
        .build())
}
