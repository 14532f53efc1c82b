//! Buckets (list, create, delete) and deleting many objects at once: the S3 side of `ls`, `mb`,
//! `rb` and `rm -r`. Nothing here encrypts or decrypts.

use std::sync::Arc;

use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, Delete, ObjectIdentifier,
};

use crate::error::{service, Error, Result};
use crate::shared::Shared;
use crate::transport::head::missing_bucket;

/// One bucket, as ListBuckets shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BucketEntry {
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created: Option<std::time::SystemTime>,
}

/// Every bucket the credentials can list (all pages).
///
/// # Errors
/// [`Error::Service`], [`Error::Transport`].
pub(crate) async fn list(shared: &Shared) -> Result<Vec<BucketEntry>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = shared
            .s3
            .list_buckets()
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| service("ListBuckets", e))?;
        for b in page.buckets() {
            let Some(name) = b.name() else { continue };
            out.push(BucketEntry {
                name: name.to_owned(),
                created: b
                    .creation_date()
                    .and_then(|t| std::time::SystemTime::try_from(*t).ok()),
            });
        }
        match page.continuation_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return Ok(out),
        }
    }
}

/// Creates `bucket` in the client's region (`us-east-1` takes no location constraint).
///
/// # Errors
/// [`Error::Service`] (e.g. `BucketAlreadyExists`, `BucketAlreadyOwnedByYou`).
pub(crate) async fn create(shared: &Shared, bucket: &str) -> Result<()> {
    let region = shared.s3.config().region().map(|r| r.as_ref().to_owned());
    let conf = region.filter(|r| r != "us-east-1").map(|r| {
        CreateBucketConfiguration::builder()
            .location_constraint(BucketLocationConstraint::from(r.as_str()))
            .build()
    });
    shared
        .s3
        .create_bucket()
        .bucket(bucket)
        .set_create_bucket_configuration(conf)
        .send()
        .await
        .map_err(|e| service("CreateBucket", e))?;
    Ok(())
}

/// Whether `bucket` exists: HeadBucket answers 404 (no body, no code) when it does not.
///
/// # Errors
/// [`Error::Service`] for any other refusal (403: it may exist).
pub(crate) async fn exists(shared: &Shared, bucket: &str) -> Result<bool> {
    match shared.s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(true),
        Err(e) => match service("HeadBucket", e) {
            Error::Service {
                status: Some(404), ..
            } => Ok(false),
            other => Err(other),
        },
    }
}

/// Deletes `bucket`, which must be empty.
///
/// # Errors
/// [`Error::NoSuchBucket`]; [`Error::Service`] (`BucketNotEmpty`, ...).
pub(crate) async fn delete(shared: &Shared, bucket: &str) -> Result<()> {
    shared
        .s3
        .delete_bucket()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| missing_bucket(bucket, service("DeleteBucket", e)))?;
    Ok(())
}

/// S3 deletes at most this many keys per DeleteObjects request.
pub const DELETE_BATCH: usize = 1000;

/// Many deletions being configured (see [`crate::Client::delete_objects`]).
#[derive(Debug)]
pub struct DeleteObjects {
    shared: Arc<Shared>,
    bucket: Option<String>,
    keys: Vec<String>,
}

/// What [`DeleteObjects::send`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeletedObjects {
    /// Keys deleted (or already absent: S3 does not tell them apart).
    pub deleted: Vec<String>,
    /// Keys S3 refused to delete, with its error code and message.
    pub failed: Vec<(String, String)>,
    /// DeleteObjects requests sent.
    pub requests: usize,
}

impl DeleteObjects {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            bucket: None,
            keys: Vec::new(),
        }
    }

    /// Bucket.
    pub fn bucket(mut self, b: impl Into<String>) -> Self {
        self.bucket = Some(b.into());
        self
    }

    /// The keys to delete (any number: sent [`DELETE_BATCH`] at a time).
    pub fn keys(mut self, keys: impl IntoIterator<Item = String>) -> Self {
        self.keys.extend(keys);
        self
    }

    /// Deletes, [`DELETE_BATCH`] keys per request, in order.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] without a bucket; [`Error::NoSuchBucket`]; [`Error::Service`]
    /// if a request fails as a whole (keys of earlier requests are deleted by then). Keys S3
    /// refuses one by one are in [`DeletedObjects::failed`], not errors.
    pub async fn send(self) -> Result<DeletedObjects> {
        let bucket = self
            .bucket
            .ok_or_else(|| Error::InvalidArgument("no bucket".into()))?;
        let mut out = DeletedObjects::default();
        for chunk in self.keys.chunks(DELETE_BATCH) {
            let ids = chunk
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::Internal(format!("a DeleteObjects entry: {e}")))?;
            let delete = Delete::builder()
                .set_objects(Some(ids))
                .quiet(false)
                .build()
                .map_err(|e| Error::Internal(format!("a DeleteObjects request: {e}")))?;
            let r = self
                .shared
                .s3
                .delete_objects()
                .bucket(&bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| missing_bucket(&bucket, service("DeleteObjects", e)))?;
            out.requests += 1;
            out.deleted.extend(
                r.deleted()
                    .iter()
                    .filter_map(|d| d.key().map(str::to_owned)),
            );
            out.failed.extend(r.errors().iter().map(|e| {
                let what = format!(
                    "{}: {}",
                    e.code().unwrap_or("error"),
                    e.message().unwrap_or_default()
                );
                (
                    e.key().unwrap_or_default().to_owned(),
                    s3crypt_core::text::printable(&what, 300),
                )
            }));
        }
        Ok(out)
    }
}
