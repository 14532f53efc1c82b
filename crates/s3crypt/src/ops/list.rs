//! Listing and deleting objects, and keys from S3 listings.
//!
//! Listings ask for `encoding-type=url`: XML 1.0 cannot carry most control characters, so one
//! key holding, say, `\x07` would otherwise make a whole page unparseable (and every command that
//! lists the prefix fail). Keys come back URL-encoded and are decoded here; a server that lists
//! a key outside the prefix asked for is not followed there.

use std::sync::Arc;

use crate::error::{service, Error, Result};
use crate::shared::Shared;
use crate::transport::head::not_found_or;

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListedObject {
    /// Key (decoded).
    pub key: String,
    /// Stored (ciphertext) size.
    pub size: u64,
    /// Entity tag.
    pub etag: Option<String>,
    /// When it was last written, as the listing says.
    pub last_modified: Option<std::time::SystemTime>,
}

/// A listing being configured (see [`crate::Client::list_objects`]).
#[derive(Debug)]
pub struct ListObjects {
    shared: Arc<Shared>,
    bucket: Option<String>,
    prefix: String,
    delimiter: Option<String>,
}

impl ListObjects {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            bucket: None,
            prefix: String::new(),
            delimiter: None,
        }
    }

    /// Bucket.
    pub fn bucket(mut self, b: impl Into<String>) -> Self {
        self.bucket = Some(b.into());
        self
    }

    /// Only keys starting with this.
    pub fn prefix(mut self, p: impl Into<String>) -> Self {
        self.prefix = p.into();
        self
    }

    /// Groups keys that contain `d` after the prefix into common prefixes (`"/"`: one directory
    /// level, as `aws s3 ls` shows it); they are in [`ObjectPages::take_common_prefixes`], not
    /// among the objects.
    pub fn delimiter(mut self, d: impl Into<String>) -> Self {
        self.delimiter = Some(d.into());
        self
    }

    /// The pages of the listing, fetched one at a time by [`ObjectPages::next_page`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] without a bucket.
    pub fn send(self) -> Result<ObjectPages> {
        let bucket = self
            .bucket
            .ok_or_else(|| Error::InvalidArgument("no bucket".into()))?;
        Ok(ObjectPages {
            shared: self.shared,
            bucket,
            prefix: self.prefix,
            delimiter: self.delimiter,
            token: None,
            done: false,
            skipped: Vec::new(),
            common_prefixes: Vec::new(),
        })
    }
}

/// A paginated listing (ListObjectsV2 with `encoding-type=url`).
#[derive(Debug)]
pub struct ObjectPages {
    shared: Arc<Shared>,
    bucket: String,
    prefix: String,
    delimiter: Option<String>,
    token: Option<String>,
    done: bool,
    skipped: Vec<String>,
    common_prefixes: Vec<String>,
}

impl ObjectPages {
    /// The next page of objects (`None` after the last one). Keys that do not decode or lie
    /// outside the prefix are left out and kept in [`ObjectPages::skipped`].
    ///
    /// # Errors
    /// [`Error::NoSuchBucket`] for a missing bucket, [`Error::Service`].
    pub async fn next_page(&mut self) -> Option<Result<Vec<ListedObject>>> {
        if self.done {
            return None;
        }
        let page = self
            .shared
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .set_delimiter(self.delimiter.clone())
            .encoding_type(aws_sdk_s3::types::EncodingType::Url)
            .set_continuation_token(self.token.take())
            .send()
            .await;
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                self.done = true;
                return Some(Err(not_found_or(
                    &self.bucket,
                    &self.prefix,
                    service("ListObjectsV2", e),
                )));
            }
        };
        let encoded = page.encoding_type() == Some(&aws_sdk_s3::types::EncodingType::Url);
        let mut out = Vec::with_capacity(page.contents().len());
        for o in page.contents() {
            let Some(raw) = o.key() else { continue };
            match listed_key(raw, encoded, &self.prefix) {
                Some(key) => out.push(ListedObject {
                    key,
                    size: o.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                    etag: o.e_tag().map(str::to_owned),
                    last_modified: o
                        .last_modified()
                        .and_then(|t| std::time::SystemTime::try_from(*t).ok()),
                }),
                None => self.skipped.push(raw.to_owned()),
            }
        }
        for p in page.common_prefixes() {
            let Some(raw) = p.prefix() else { continue };
            match listed_key(raw, encoded, &self.prefix) {
                Some(key) => self.common_prefixes.push(key),
                None => self.skipped.push(raw.to_owned()),
            }
        }
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => self.token = Some(t.to_owned()),
            _ => self.done = true,
        }
        Some(Ok(out))
    }

    /// Every remaining object.
    ///
    /// # Errors
    /// As [`ObjectPages::next_page`].
    pub async fn collect(mut self) -> Result<(Vec<ListedObject>, Vec<String>)> {
        let mut all = Vec::new();
        while let Some(page) = self.next_page().await {
            all.extend(page?);
        }
        Ok((all, self.skipped))
    }

    /// The common prefixes listed so far (with [`ListObjects::delimiter`]), decoded, each ending
    /// in the delimiter; taken out of the listing.
    pub fn take_common_prefixes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.common_prefixes)
    }

    /// Listed keys left out so far (raw, as the server sent them): they did not decode, or lay
    /// outside the prefix.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }
}

/// A deletion being configured (see [`crate::Client::delete_object`]).
#[derive(Debug)]
pub struct DeleteObject {
    shared: Arc<Shared>,
    bucket: Option<String>,
    key: Option<String>,
    version_id: Option<String>,
}

impl DeleteObject {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            bucket: None,
            key: None,
            version_id: None,
        }
    }

    /// Bucket.
    pub fn bucket(mut self, b: impl Into<String>) -> Self {
        self.bucket = Some(b.into());
        self
    }

    /// Key.
    pub fn key(mut self, k: impl Into<String>) -> Self {
        self.key = Some(k.into());
        self
    }

    /// A specific version (deleted for good; without it a versioned bucket adds a delete marker).
    pub fn version_id(mut self, v: impl Into<String>) -> Self {
        self.version_id = Some(v.into());
        self
    }

    /// Deletes.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] without a bucket or key; [`Error::NoSuchBucket`] for a missing
    /// bucket; [`Error::Service`].
    pub async fn send(self) -> Result<()> {
        let bucket = self
            .bucket
            .ok_or_else(|| Error::InvalidArgument("no bucket".into()))?;
        let key = self
            .key
            .ok_or_else(|| Error::InvalidArgument("no key".into()))?;
        self.shared
            .s3
            .delete_object()
            .bucket(&bucket)
            .key(&key)
            .set_version_id(self.version_id)
            .send()
            .await
            .map_err(|e| not_found_or(&bucket, &key, service("DeleteObject", e)))?;
        Ok(())
    }
}

/// A listed key: URL-decoded when the server says it encoded it (`encoded`), and only if it is
/// under `prefix`; `None` for a key that does not decode or lies outside the prefix.
pub fn listed_key(raw: &str, encoded: bool, prefix: &str) -> Option<String> {
    let key = if encoded {
        url_decode(raw)?
    } else {
        raw.to_owned()
    };
    key.starts_with(prefix).then_some(key)
}

/// Decodes S3's `encoding-type=url` form (`%XX` escapes, `+` for a space); `None` if an escape is
/// malformed or the result is not UTF-8.
pub fn url_decode(s: &str) -> Option<String> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let (hi, lo) = (hex(*b.get(i + 1)?)?, hex(*b.get(i + 2)?)?);
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_keys_are_url_decoded_and_kept_under_their_prefix() {
        assert_eq!(
            url_decode("a%20b+c%2Bd%07").as_deref(),
            Some("a b c+d\u{7}")
        );
        assert_eq!(url_decode("%C3%BC").as_deref(), Some("ü"));
        for bad in ["%", "%4", "%zz", "%FF", "%+1", "%-1"] {
            assert_eq!(url_decode(bad), None, "{bad}");
        }
        assert_eq!(
            listed_key("p/a%1B", true, "p/").as_deref(),
            Some("p/a\u{1b}")
        );
        assert_eq!(listed_key("p/a%1B", false, "p/").as_deref(), Some("p/a%1B"));
        // A server that answers with keys outside the prefix is not followed there.
        assert_eq!(listed_key("other/x", true, "p/"), None);
        assert_eq!(listed_key("q", false, "p/"), None);
    }
}
