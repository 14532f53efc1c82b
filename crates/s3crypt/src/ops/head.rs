//! `head_object`: an object's s3crypt metadata with one HEAD request (and, for inspection, its
//! stored header).

use bytes::Bytes;

use std::sync::Arc;

use crate::error::{root_cause, service, Error, Result};
use crate::metadata::ObjectInfo;
use crate::shared::Shared;
use crate::transport::head::{head, not_found_or};

/// Reads an object's s3crypt metadata: `client.head_object().bucket(b).key(k).send()`.
///
/// What it returns is unauthenticated (S3 metadata); decryption checks everything it claims
/// against the authenticated header.
#[derive(Debug)]
#[must_use = "a request does nothing until `send` is awaited"]
pub struct HeadObject {
    shared: Arc<Shared>,
    bucket: String,
    key: String,
    version_id: Option<String>,
    sse_c: bool,
}

impl HeadObject {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            bucket: String::new(),
            key: String::new(),
            version_id: None,
            sse_c: false,
        }
    }

    /// Bucket.
    pub fn bucket(mut self, b: impl Into<String>) -> Self {
        self.bucket = b.into();
        self
    }

    /// Key.
    pub fn key(mut self, k: impl Into<String>) -> Self {
        self.key = k.into();
        self
    }

    /// A specific version (versioned buckets).
    pub fn version_id(mut self, v: impl Into<String>) -> Self {
        self.version_id = Some(v.into());
        self
    }

    /// Sets the version when `v` is `Some`.
    pub fn set_version_id(mut self, v: Option<String>) -> Self {
        self.version_id = v;
        self
    }

    /// The object is stored with SSE-C: send the client's SSE-C key (each candidate in turn).
    pub fn sse_c(mut self, yes: bool) -> Self {
        self.sse_c = yes;
        self
    }

    /// Sends the HEAD request.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::NotEncrypted`] if it is not an s3crypt object or its
    /// metadata is invalid; [`Error::Service`] / [`Error::Transport`]; [`Error::InvalidArgument`]
    /// for an empty bucket or key, or `sse_c` without an SSE-C source.
    pub async fn send(self) -> Result<ObjectInfo> {
        Ok(self.head().await?.0)
    }

    /// The metadata and the object's stored header bytes (`info.header_length` bytes, fetched
    /// with one ranged GET of the version the HEAD saw), for inspecting who can decrypt it.
    /// The bytes are **not verified** here: parse them with `s3crypt_core::Header`, which checks
    /// their structure; only decryption authenticates them.
    ///
    /// # Errors
    /// As [`HeadObject::send`], and [`Error::Service`] / [`Error::Transport`] for the GET.
    pub async fn fetch_header(self) -> Result<(ObjectInfo, Bytes)> {
        let (info, sse) = self.head().await?;
        let req = self
            .shared
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .set_version_id(info.version_id.clone().or(self.version_id.clone()))
            .set_if_match(info.etag.clone())
            .range(format!("bytes=0-{}", info.header_length.saturating_sub(1)));
        let out = crate::sse_c::with_sse_c!(req, sse.as_ref().map(|(_, k)| &**k))
            .send()
            .await
            .map_err(|e| not_found_or(&self.bucket, &self.key, service("GetObject", e)))?;
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| Error::transport("GetObject", root_cause(&e)))?
            .into_bytes();
        if bytes.len() as u64 != info.header_length {
            return Err(Error::bad_response(
                "GetObject",
                format!(
                    "asked for the {}-byte header, got {} bytes",
                    info.header_length,
                    bytes.len()
                ),
            ));
        }
        Ok((info, bytes))
    }

    /// The HEAD (with the SSE-C key S3 accepted, if any).
    async fn head(&self) -> Result<(ObjectInfo, Option<(usize, Arc<crate::sse_c::SseCKey>)>)> {
        self.check()?;
        head(
            &self.shared,
            &self.bucket,
            &self.key,
            self.version_id.as_deref(),
            self.sse_c,
        )
        .await
    }

    fn check(&self) -> Result<()> {
        if self.bucket.is_empty() || self.key.is_empty() {
            return Err(Error::InvalidArgument(
                "head_object needs a bucket and a key".into(),
            ));
        }
        Ok(())
    }
}
