//! What an upload reads: bytes in memory, a file, or any reader or stream.

use std::path::PathBuf;
use std::pin::Pin;

use bytes::Bytes;
use tokio::io::AsyncRead;

use crate::error::{Error, Result};

/// The plaintext of an upload: `put_object().body(…)`.
///
/// * In memory: `Bytes`, `Vec<u8>`, `String`, `&'static [u8]`, `&'static str` (length known).
/// * A file: [`Body::from_path`] (opened when the upload starts) or a `tokio::fs::File` /
///   `std::fs::File` (length from its metadata when it is a regular file).
/// * Any reader: [`Body::from_reader`]; any stream of byte chunks: [`Body::from_stream`]. Their
///   length is unknown unless given with [`Body::with_length`].
///
/// A known length lets the upload plan its parts and lets a caching keyring
/// ([`crate::CachingKeyring`]) count the bytes under each data key. Without one, a body that
/// fits in one PUT (up to [`crate::Transfer::multipart_threshold`]) is read before its data key
/// is requested, so its length is still declared; only a longer stream of unknown length goes
/// without, and [`crate::PutOutput::length_declared`] says so.
pub struct Body {
    kind: Kind,
    length: Option<u64>,
}

enum Kind {
    Bytes(Bytes),
    Path(PathBuf),
    File(tokio::fs::File),
    Reader(Box<dyn AsyncRead + Send + Unpin>),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Bytes(b) => format!("Bytes({} bytes)", b.len()),
            Kind::Path(p) => format!("Path({})", p.display()),
            Kind::File(_) => "File".to_owned(),
            Kind::Reader(_) => "Reader".to_owned(),
        };
        f.debug_struct("Body")
            .field("kind", &kind)
            .field("length", &self.length)
            .finish()
    }
}

impl Body {
    /// The file at `path`, opened when the upload starts; its length comes from its metadata.
    pub fn from_path(path: impl Into<PathBuf>) -> Self {
        Self {
            kind: Kind::Path(path.into()),
            length: None,
        }
    }

    /// Any reader, read to its end. Its length is unknown unless given with
    /// [`Body::with_length`].
    pub fn from_reader(reader: impl AsyncRead + Send + Unpin + 'static) -> Self {
        Self {
            kind: Kind::Reader(Box::new(reader)),
            length: None,
        }
    }

    /// A stream of byte chunks (an `aws_sdk_s3` `ByteStream`, a `hyper` body, a channel), read to
    /// its end; an `Err` item fails the upload (which is then aborted).
    pub fn from_stream<S, B, E>(stream: S) -> Self
    where
        S: futures_core::Stream<Item = std::result::Result<B, E>> + Send + 'static,
        B: bytes::Buf + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let stream = MapErr(Box::pin(stream));
        Self::from_reader(tokio_util::io::StreamReader::new(stream))
    }

    /// Declares the plaintext length. It is a maximum: a body longer than this fails the upload.
    #[must_use]
    pub fn with_length(mut self, length: u64) -> Self {
        self.length = Some(length);
        self
    }

    /// The declared or inferred length, when known before the upload opens the body.
    pub fn length(&self) -> Option<u64> {
        match &self.kind {
            Kind::Bytes(b) => Some(b.len() as u64),
            _ => self.length,
        }
    }

    /// Opens the body: its bytes (in memory) or a reader, and its length when known.
    pub(crate) async fn open(self) -> Result<(Opened, Option<u64>)> {
        let declared = self.length;
        let file_len = |m: std::fs::Metadata| m.is_file().then_some(m.len());
        match self.kind {
            Kind::Bytes(b) => {
                let n = b.len() as u64;
                if declared.is_some_and(|d| n > d) {
                    return Err(Error::InvalidArgument(format!(
                        "the body is {n} bytes, longer than its declared length"
                    )));
                }
                Ok((Opened::Bytes(b), Some(n)))
            }
            Kind::Path(p) => {
                let f = tokio::fs::File::open(&p).await.map_err(|e| {
                    Error::Io(std::io::Error::new(
                        e.kind(),
                        format!("cannot open {}: {e}", p.display()),
                    ))
                })?;
                let n = f.metadata().await.ok().and_then(file_len);
                Ok((Opened::Reader(Box::new(f)), declared.or(n)))
            }
            Kind::File(f) => {
                let n = f.metadata().await.ok().and_then(file_len);
                Ok((Opened::Reader(Box::new(f)), declared.or(n)))
            }
            Kind::Reader(r) => Ok((Opened::Reader(r), declared)),
        }
    }
}

/// An opened body.
pub(crate) enum Opened {
    Bytes(Bytes),
    Reader(Box<dyn AsyncRead + Send + Unpin>),
}

/// Maps a stream's errors to `io::Error` (what `StreamReader` needs).
struct MapErr<S>(Pin<Box<S>>);

impl<S, B, E> futures_core::Stream for MapErr<S>
where
    S: futures_core::Stream<Item = std::result::Result<B, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Item = std::io::Result<B>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0
            .as_mut()
            .poll_next(cx)
            .map(|item| item.map(|r| r.map_err(std::io::Error::other)))
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Self {
            kind: Kind::Bytes(b),
            length: None,
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Bytes::from(v).into()
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Bytes::from(s).into()
    }
}

impl From<&'static [u8]> for Body {
    fn from(s: &'static [u8]) -> Self {
        Bytes::from_static(s).into()
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Bytes::from_static(s.as_bytes()).into()
    }
}

impl From<tokio::fs::File> for Body {
    fn from(f: tokio::fs::File) -> Self {
        Self {
            kind: Kind::File(f),
            length: None,
        }
    }
}

impl From<std::fs::File> for Body {
    fn from(f: std::fs::File) -> Self {
        tokio::fs::File::from_std(f).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn read_all(b: Body) -> (Vec<u8>, Option<u64>) {
        let (opened, n) = b.open().await.unwrap();
        let bytes = match opened {
            Opened::Bytes(b) => b.to_vec(),
            Opened::Reader(mut r) => {
                let mut v = Vec::new();
                r.read_to_end(&mut v).await.unwrap();
                v
            }
        };
        (bytes, n)
    }

    #[tokio::test]
    async fn lengths_are_inferred_where_they_can_be() {
        assert_eq!(
            read_all(Body::from(vec![1u8; 10])).await,
            (vec![1; 10], Some(10))
        );
        assert_eq!(read_all("abc".into()).await, (b"abc".to_vec(), Some(3)));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, [7u8; 1000]).unwrap();
        assert_eq!(read_all(Body::from_path(&p)).await.1, Some(1000));
        let f = tokio::fs::File::open(&p).await.unwrap();
        assert_eq!(read_all(f.into()).await.1, Some(1000));
        let r = Body::from_reader(&b"xyz"[..]);
        assert_eq!(r.length(), None);
        assert_eq!(read_all(r).await, (b"xyz".to_vec(), None));
        assert_eq!(
            read_all(Body::from_reader(&b"xyz"[..]).with_length(3))
                .await
                .1,
            Some(3)
        );
    }

    #[tokio::test]
    async fn streams_are_read_in_order_and_their_errors_surface() {
        let chunks: Vec<std::result::Result<Bytes, std::io::Error>> =
            vec![Ok(Bytes::from_static(b"ab")), Ok(Bytes::from_static(b"cd"))];
        let s = Iter(chunks.into_iter());
        assert_eq!(read_all(Body::from_stream(s)).await.0, b"abcd");
        let bad: Vec<std::result::Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"ab")),
            Err(std::io::Error::other("source broke")),
        ];
        let (opened, _) = Body::from_stream(Iter(bad.into_iter()))
            .open()
            .await
            .unwrap();
        let Opened::Reader(mut r) = opened else {
            panic!("a stream is read")
        };
        let mut v = Vec::new();
        let e = r.read_to_end(&mut v).await.unwrap_err();
        assert!(e.to_string().contains("source broke"), "{e}");
    }

    #[tokio::test]
    async fn bytes_longer_than_their_declared_length_are_refused() {
        let b = Body::from(vec![0u8; 10]).with_length(9);
        assert!(b.open().await.is_err());
        let b = Body::from(vec![0u8; 10]).with_length(11);
        assert!(matches!(b.open().await, Ok((_, Some(10)))));
    }

    #[tokio::test]
    async fn a_missing_file_names_its_path() {
        let Err(e) = Body::from_path("/nonexistent/s3crypt-body").open().await else {
            panic!("a missing file opened")
        };
        assert!(e.to_string().contains("/nonexistent/s3crypt-body"), "{e}");
    }

    struct Iter<I>(I);
    impl<I: Iterator + Unpin> futures_core::Stream for Iter<I> {
        type Item = I::Item;
        fn poll_next(
            mut self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<I::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
}
