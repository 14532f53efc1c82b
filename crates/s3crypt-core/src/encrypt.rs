//! Encryption: header construction and the push API.

use std::io::Write;

use crate::context::{EncryptionContext, PUBLIC_KEY_KEY};
use crate::error::{Error, Result};
use crate::header::{Header, MESSAGE_ID_LEN};
use crate::key::{SealingKey, FINAL_MARKER, FINAL_OVERHEAD, FINAL_PREFIX, REGULAR_OVERHEAD};
use crate::keyring::{EncryptionMaterials, Keyring};
use crate::signature::Signer;
use crate::suite::Suite;

/// Frame length written when none is chosen: 64 KiB (see `benches/` for the measurement; frame
/// overhead is then 0.05% and a ranged read fetches at most 64 KiB + 32 bytes around each end).
pub const DEFAULT_FRAME_LENGTH: u32 = 64 * 1024;
/// Largest frame length written (the largest multiple of 16 below 2^31; the ESDKs reject more).
pub const MAX_FRAME_LENGTH: u32 = (i32::MAX as u32) & !15;

/// What to encrypt with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptOptions {
    /// Algorithm suite (default 0x0478).
    pub suite: Suite,
    /// Plaintext bytes per frame: a non-zero multiple of 16, at most [`MAX_FRAME_LENGTH`]. Other
    /// ESDKs read any length; the Python SDK only *writes* multiples of 128.
    pub frame_length: u32,
    /// Authenticated, non-secret pairs stored in the header.
    pub context: EncryptionContext,
    /// The most plaintext bytes this message will hold, if known in advance (the ESDK's "max
    /// plaintext length"). It is passed to the keyring (see
    /// [`EncryptionMaterials::plaintext_length`]; the [`crate::keyring::caching`] keyring needs
    /// it to count bytes against its limit and bypasses its cache without it) and enforced:
    /// [`Encryptor::update`], the [`crate::pipeline`] functions and [`crate::parts`] refuse more
    /// plaintext than this. `None` (the default): unknown, nothing is enforced.
    pub plaintext_length: Option<u64>,
}

impl Default for EncryptOptions {
    fn default() -> Self {
        Self {
            suite: Suite::DEFAULT,
            frame_length: DEFAULT_FRAME_LENGTH,
            context: EncryptionContext::new(),
            plaintext_length: None,
        }
    }
}

impl EncryptOptions {
    /// Checks the frame length.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if it is 0, not a multiple of 16, or above [`MAX_FRAME_LENGTH`].
    pub fn validate(&self) -> Result<()> {
        let f = self.frame_length;
        if f == 0 || !f.is_multiple_of(16) || f > MAX_FRAME_LENGTH {
            return Err(Error::InvalidArgument(format!(
                "frame length {f} must be a non-zero multiple of 16 and at most {MAX_FRAME_LENGTH}"
            )));
        }
        Ok(())
    }
}

/// The push encryptor: feed plaintext, receive message bytes.
///
/// Memory: one frame of plaintext is buffered. Output lags input by up to one frame, because a
/// full frame is sealed as a regular frame only once more input arrives (otherwise it becomes the
/// final frame). [`Encryptor::finish`] consumes the encryptor and writes the final frame (and the
/// signature); dropping it unfinished leaves a message without a final frame, which every reader
/// rejects as truncated.
pub struct Encryptor {
    pub(crate) key: SealingKey,
    pub(crate) header: Header,
    /// Serialized header with its tag.
    pub(crate) header_bytes: Vec<u8>,
    pub(crate) signer: Option<Signer>,
    header_sent: bool,
    next_seq: u32,
    /// `FINAL_PREFIX` bytes of room, then up to a frame of plaintext, then room for the tag.
    /// Grows with what [`Encryptor::update`] is given: the pipelines and the S3 crate seal in
    /// their own buffers, so an encryptor only used for its header allocates no frame (a 64 KiB
    /// zeroed allocation per small object showed in the small-object profile).
    buf: Vec<u8>,
    filled: usize,
    plaintext_len: u64,
    /// [`EncryptOptions::plaintext_length`], enforced.
    pub(crate) max_plaintext_len: Option<u64>,
}

impl std::fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryptor")
            .field("header", &self.header)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl Encryptor {
    /// Starts a message: generates the data key with `keyring`, wraps it, and builds the header.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for invalid options or a context that does not fit the format;
    /// whatever the keyring returns.
    pub fn new(keyring: &dyn Keyring, options: &EncryptOptions) -> Result<Self> {
        options.validate()?;
        let mut context = options.context.clone();
        let signer = if options.suite.is_signed() {
            let (signer, public_key) = Signer::generate();
            context.insert_reserved(PUBLIC_KEY_KEY, public_key);
            Some(signer)
        } else {
            None
        };
        let mut materials = EncryptionMaterials::new(options.suite, context)
            .with_plaintext_length(options.plaintext_length);
        keyring.on_encrypt(&mut materials)?;
        let (suite, context, data_key, edks) = materials.into_parts();
        let data_key = data_key
            .ok_or_else(|| Error::InvalidArgument("the keyring generated no data key".into()))?;
        if edks.is_empty() {
            return Err(Error::InvalidArgument(
                "the keyring wrapped the data key under no key".into(),
            ));
        }
        // Never write a message that readers with default limits refuse (the ESDKs' limit is
        // configurable too; s3crypt's readers and the CLI use 64).
        let max = usize::from(crate::header::ReadLimits::DEFAULT_MAX_EDKS);
        if edks.len() > max {
            return Err(Error::InvalidArgument(format!(
                "the data key is wrapped under {} keys, more than readers accept ({max}): use fewer keys",
                edks.len()
            )));
        }
        // A fresh random message id, and the header tagged once under its key: no other code
        // can tag a header (see `key::MessageKey`).
        let (key, header, header_bytes) =
            SealingKey::new_message(suite, &data_key, |id, commitment| {
                let h = Header {
                    suite,
                    message_id: *id,
                    context,
                    encrypted_data_keys: edks,
                    frame_length: options.frame_length,
                    commitment: *commitment,
                };
                let bytes = h.to_bytes()?;
                Ok((h, bytes))
            })?;
        drop(data_key);
        Ok(Self {
            key,
            header,
            header_bytes,
            signer,
            header_sent: false,
            next_seq: 1,
            buf: Vec::new(),
            filled: 0,
            plaintext_len: 0,
            max_plaintext_len: options.plaintext_length,
        })
    }

    /// Fails if a message of `total` plaintext bytes would exceed the declared
    /// [`EncryptOptions::plaintext_length`]: the keyring was told at most that many bytes would be
    /// encrypted under its data key (a caching keyring counts them against its byte limit).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `total` is above the declared length.
    pub(crate) fn check_declared_length(max: Option<u64>, total: u64) -> Result<()> {
        match max {
            Some(max) if total > max => Err(Error::InvalidArgument(format!(
                "more plaintext than the declared plaintext length of {max} bytes"
            ))),
            _ => Ok(()),
        }
    }

    /// Fails unless nothing was fed to or emitted by this encryptor yet. The pipelines seal frames
    /// from sequence number 1 themselves; continuing a partly used encryptor would seal those
    /// sequence numbers twice under the same key, i.e. reuse AES-GCM nonces.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if [`Encryptor::update`] was already called.
    pub(crate) fn ensure_unused(&self) -> Result<()> {
        if self.header_sent || self.filled != 0 || self.next_seq != 1 {
            return Err(Error::InvalidArgument(
                "the pipeline needs a fresh encryptor (this one was already fed with update)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The header fields.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The serialized header, tag included (the first bytes of the message).
    pub fn header_bytes(&self) -> &[u8] {
        &self.header_bytes
    }

    fn emit(&mut self, bytes_range: std::ops::Range<usize>, out: &mut Vec<u8>) {
        let bytes = &self.buf[bytes_range];
        if let Some(s) = &mut self.signer {
            s.update(bytes);
        }
        out.extend_from_slice(bytes);
    }

    fn send_header(&mut self, out: &mut Vec<u8>) {
        if !self.header_sent {
            if let Some(s) = &mut self.signer {
                s.update(&self.header_bytes);
            }
            out.extend_from_slice(&self.header_bytes);
            self.header_sent = true;
        }
    }

    /// Encrypts `input`, appending whatever message bytes are ready to `out` (the header on the
    /// first call, then whole frames).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the message would need more than 2^32 - 1 frames, or would
    /// hold more than the declared [`EncryptOptions::plaintext_length`] (then nothing of `input`
    /// is consumed).
    pub fn update(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        Self::check_declared_length(
            self.max_plaintext_len,
            self.plaintext_len.saturating_add(input.len() as u64),
        )?;
        self.send_header(out);
        let frame = self.header.frame_length as usize;
        let shift = FINAL_PREFIX - crate::key::REGULAR_PREFIX;
        while !input.is_empty() {
            if self.filled == frame {
                if self.next_seq == FINAL_MARKER {
                    return Err(Error::InvalidArgument(
                        "message would exceed 2^32 - 1 frames; use a larger frame length".into(),
                    ));
                }
                let seq = self.next_seq;
                self.key
                    .seal_regular(seq, &mut self.buf[shift..shift + REGULAR_OVERHEAD + frame]);
                self.emit(shift..shift + REGULAR_OVERHEAD + frame, out);
                self.next_seq += 1;
                self.filled = 0;
            }
            let n = (frame - self.filled).min(input.len());
            // Room for the final frame's tag after the plaintext, and a regular frame fits
            // (`shift + REGULAR_OVERHEAD + frame == FINAL_OVERHEAD + frame`).
            let need = FINAL_OVERHEAD + self.filled + n;
            if self.buf.len() < need {
                // Doubling, but never past one frame's room (`need` is at most that).
                let room = FINAL_OVERHEAD + frame;
                let target = (2 * self.buf.capacity()).clamp(need, room);
                self.buf.reserve_exact(target - self.buf.len());
                self.buf.resize(need, 0);
            }
            self.buf[FINAL_PREFIX + self.filled..FINAL_PREFIX + self.filled + n]
                .copy_from_slice(&input[..n]);
            self.filled += n;
            self.plaintext_len += n as u64;
            input = &input[n..];
        }
        Ok(())
    }

    /// Writes the final frame (and, for signed suites, the signature) and ends the message.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if signing fails.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<EncryptSummary> {
        self.send_header(out);
        let end = FINAL_OVERHEAD + self.filled;
        if self.buf.len() < end {
            self.buf.reserve_exact(end - self.buf.len());
            self.buf.resize(end, 0);
        }
        self.key.seal_final(self.next_seq, &mut self.buf[..end]);
        self.emit(0..end, out);
        if let Some(signer) = self.signer.take() {
            out.extend_from_slice(&signer.finish()?);
        }
        Ok(EncryptSummary {
            header_len: self.header_bytes.len() as u64,
            plaintext_len: self.plaintext_len,
            frames: u64::from(self.next_seq),
            message_id: self.header.message_id,
        })
    }
}

/// What an encryption produced.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EncryptSummary {
    /// Length of the header (tag included).
    pub header_len: u64,
    /// Plaintext bytes encrypted.
    pub plaintext_len: u64,
    /// Frames written, the final frame included.
    pub frames: u64,
    /// The message id.
    pub message_id: [u8; MESSAGE_ID_LEN],
}

/// A [`Write`] adapter: plaintext written to it leaves encrypted into `inner`. Call
/// [`EncryptWriter::finish`] to complete the message; dropping it without `finish` leaves an
/// incomplete (truncated) message.
#[derive(Debug)]
pub struct EncryptWriter<W: Write> {
    enc: Encryptor,
    inner: W,
    out: Vec<u8>,
}

impl<W: Write> EncryptWriter<W> {
    /// Starts a message written to `inner`.
    ///
    /// # Errors
    /// As [`Encryptor::new`].
    pub fn new(keyring: &dyn Keyring, options: &EncryptOptions, inner: W) -> Result<Self> {
        Ok(Self {
            enc: Encryptor::new(keyring, options)?,
            inner,
            out: Vec::new(),
        })
    }

    /// Completes the message and returns the inner writer (flushed).
    ///
    /// # Errors
    /// [`Error::Io`] if writing fails.
    pub fn finish(mut self) -> Result<(W, EncryptSummary)> {
        self.out.clear();
        let summary = self.enc.finish(&mut self.out)?;
        self.inner.write_all(&self.out)?;
        self.inner.flush()?;
        Ok((self.inner, summary))
    }
}

impl<W: Write> Write for EncryptWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.clear();
        self.enc
            .update(buf, &mut self.out)
            .map_err(std::io::Error::other)?;
        self.inner.write_all(&self.out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::keyring::raw_aes::{RawAesKeyring, WrappingKey};
    use crate::{DecryptOptions, Decryptor};

    fn keyring() -> Arc<RawAesKeyring> {
        Arc::new(RawAesKeyring::new("ns", "k", WrappingKey::from_bytes([3; 32])).unwrap())
    }

    fn declared(n: u64) -> EncryptOptions {
        EncryptOptions {
            frame_length: 16,
            plaintext_length: Some(n),
            ..Default::default()
        }
    }

    fn is_invalid<T: std::fmt::Debug>(r: Result<T>) -> bool {
        matches!(r, Err(Error::InvalidArgument(_)))
    }

    /// `put` once wrote messages wrapped under more keys than readers accept (64), which nobody
    /// could then read.
    #[test]
    fn sixty_five_wrapped_keys_on_put_are_refused() {
        use crate::keyring::multi::MultiKeyring;
        let ring = |n: usize| {
            MultiKeyring::new(
                (0..n)
                    .map(|i| {
                        Box::new(
                            RawAesKeyring::new(
                                "ns",
                                format!("k{i}"),
                                WrappingKey::from_bytes([3; 32]),
                            )
                            .unwrap(),
                        ) as Box<dyn crate::Keyring>
                    })
                    .collect(),
            )
        };
        let e = Encryptor::new(&ring(65), &EncryptOptions::default()).unwrap_err();
        assert!(is_invalid::<()>(Err(e)));
        let mut enc = Encryptor::new(&ring(64), &EncryptOptions::default()).unwrap();
        let mut msg = Vec::new();
        enc.update(b"x", &mut msg).unwrap();
        enc.finish(&mut msg).unwrap();
        crate::Header::read(&msg, &Default::default()).unwrap();
    }

    #[test]
    fn declared_plaintext_length_is_enforced_on_every_path() {
        let k = keyring();
        let pt = [9u8; 40];

        // Push API: up to the declared length is fine, one byte more is refused (and not taken).
        let mut enc = Encryptor::new(k.as_ref(), &declared(40)).unwrap();
        let mut out = Vec::new();
        enc.update(&pt[..30], &mut out).unwrap();
        assert!(is_invalid(enc.update(&pt[..11], &mut out)));
        enc.update(&pt[..10], &mut out).unwrap();
        enc.finish(&mut out).unwrap();
        let mut dec = Decryptor::new(k.clone(), DecryptOptions::default());
        let mut plain = Vec::new();
        dec.update(&out, &mut plain).unwrap();
        dec.finish(&mut plain).unwrap();
        assert_eq!(plain, pt);

        // Parallel pipeline over a reader.
        let opts = crate::pipeline::PipelineOptions::default();
        let enc = Encryptor::new(k.as_ref(), &declared(39)).unwrap();
        let r = crate::pipeline::encrypt(enc, &pt[..], &mut Vec::new(), &opts, |_| {});
        assert!(is_invalid(r));
        let enc = Encryptor::new(k.as_ref(), &declared(40)).unwrap();
        crate::pipeline::encrypt(enc, &pt[..], &mut Vec::new(), &opts, |_| {}).unwrap();

        // Parallel pipeline over a file.
        #[cfg(unix)]
        {
            let mut file = tempfile::tempfile().unwrap();
            std::io::Write::write_all(&mut file, &pt).unwrap();
            let enc = Encryptor::new(k.as_ref(), &declared(39)).unwrap();
            let r = crate::pipeline::encrypt_file(enc, &file, &mut Vec::new(), &opts, |_| {});
            assert!(is_invalid(r));
            let enc = Encryptor::new(k.as_ref(), &declared(40)).unwrap();
            crate::pipeline::encrypt_file(enc, &file, &mut Vec::new(), &opts, |_| {}).unwrap();
        }

        // Parts (16-byte frames): 2 regular frames and a final frame of 8 bytes make 40 bytes.
        let sealer = || {
            let enc = Encryptor::new(k.as_ref(), &declared(40)).unwrap();
            crate::parts::MessageSealer::new(enc).unwrap()
        };
        let (mut exact, mut over) = (sealer(), sealer());
        assert!(is_invalid(exact.part(3)));
        exact.part(2).unwrap();
        assert!(is_invalid(exact.part(1)));
        over.part(2).unwrap();
        assert!(is_invalid(over.last_part(0, 9)));
        exact.last_part(0, 8).unwrap();
    }

    #[test]
    fn the_declared_length_reaches_the_keyring() {
        #[derive(Debug)]
        struct Seen(std::sync::Mutex<Option<u64>>, RawAesKeyring);
        impl Keyring for Seen {
            fn on_encrypt(&self, m: &mut EncryptionMaterials) -> Result<()> {
                *self.0.lock().unwrap() = m.plaintext_length();
                self.1.on_encrypt(m)
            }
            fn on_decrypt(
                &self,
                m: &mut crate::keyring::DecryptionMaterials,
                edks: &[crate::EncryptedDataKey],
            ) -> Result<()> {
                self.1.on_decrypt(m, edks)
            }
        }
        let seen = Seen(
            std::sync::Mutex::new(None),
            RawAesKeyring::new("ns", "k", WrappingKey::generate()).unwrap(),
        );
        Encryptor::new(&seen, &declared(1234)).unwrap();
        assert_eq!(*seen.0.lock().unwrap(), Some(1234));
        Encryptor::new(&seen, &EncryptOptions::default()).unwrap();
        assert_eq!(*seen.0.lock().unwrap(), None);
    }
}

/// Review test: the lazily grown frame buffer seals exactly the frames a fresh buffer per frame
/// would (same sequence numbers, nonces, AAD, bytes), for any chunking of `update` calls; and
/// every message decrypts. Keys are swapped for a fixed (data key, message id) so outputs of
/// different encryptors (and of the stream pipeline) can be compared byte for byte.
#[cfg(test)]
mod lazy_frame_buffer {
    use std::sync::Arc;

    use super::*;
    use crate::aead::TAG_LEN;
    use crate::key::REGULAR_PREFIX;
    use crate::keyring::raw_aes::{RawAesKeyring, WrappingKey};
    use crate::keyring::DataKey;
    use crate::{DecryptOptions, Decryptor};

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const ID: [u8; 32] = [0x5a; 32];

    fn fixed_key(suite: Suite) -> SealingKey {
        SealingKey::danger_for_frames_with_message_id(suite, &DataKey::from_bytes([7; 32]), ID)
    }

    fn keyring() -> Arc<RawAesKeyring> {
        Arc::new(RawAesKeyring::new("ns", "k", WrappingKey::from_bytes([3; 32])).unwrap())
    }

    /// The frames as the specification lays them out, each sealed in its own garbage-filled
    /// scratch buffer (so nothing depends on what a buffer held before): a full last frame is
    /// the final frame, as the push encryptor writes it.
    fn reference_frames(suite: Suite, frame: usize, pt: &[u8]) -> Vec<u8> {
        reference_layout(suite, frame, pt, false)
    }

    /// `full_last_regular`: a full last frame is a regular frame followed by an empty final
    /// frame (as the stream pipeline writes it; both layouts are valid).
    fn reference_layout(suite: Suite, frame: usize, pt: &[u8], full_last_regular: bool) -> Vec<u8> {
        let key = fixed_key(suite);
        let regular = match pt.len() {
            0 => 0,
            n if full_last_regular => n / frame,
            n => (n - 1) / frame,
        };
        let mut out = Vec::new();
        for i in 0..regular {
            let mut b = vec![0xAA; REGULAR_PREFIX + frame + TAG_LEN];
            b[REGULAR_PREFIX..REGULAR_PREFIX + frame]
                .copy_from_slice(&pt[i * frame..(i + 1) * frame]);
            key.seal_regular(i as u32 + 1, &mut b);
            out.extend_from_slice(&b);
        }
        let rest = &pt[regular * frame..];
        let mut b = vec![0x55; FINAL_PREFIX + rest.len() + TAG_LEN];
        b[FINAL_PREFIX..FINAL_PREFIX + rest.len()].copy_from_slice(rest);
        key.seal_final(regular as u32 + 1, &mut b);
        out.extend_from_slice(&b);
        out
    }

    fn options(suite: Suite, frame: u32) -> EncryptOptions {
        EncryptOptions {
            suite,
            frame_length: frame,
            ..Default::default()
        }
    }

    /// Chunk sizes with the edge cases mixed in: empty, 1, frame - 1, frame, frame + 1, 2 frames,
    /// and random sizes up to 3 frames.
    fn chunking(rng: &mut Rng, frame: usize, total: usize) -> Vec<usize> {
        let mut sizes = Vec::new();
        let mut left = total;
        while left > 0 || (sizes.is_empty() && rng.below(2) == 0) {
            let pick = match rng.below(9) {
                0 => 0,
                1 => 1,
                2 => frame - 1,
                3 => frame,
                4 => frame + 1,
                5 => 2 * frame,
                _ => rng.below(3 * frame + 1),
            };
            let n = pick.min(left);
            sizes.push(n);
            left -= n;
            if rng.below(4) == 0 {
                sizes.push(0);
            }
        }
        sizes
    }

    fn push(
        mut enc: Encryptor,
        sizes: &[usize],
        pt: &[u8],
        swap: Option<Suite>,
    ) -> (Vec<u8>, usize, usize) {
        if let Some(s) = swap {
            enc.key = fixed_key(s);
        }
        let mut out = Vec::new();
        let mut at = 0;
        for &n in sizes {
            enc.update(&pt[at..at + n], &mut out).unwrap();
            at += n;
        }
        assert_eq!(at, pt.len());
        let (hl, cap) = (enc.header_bytes.len(), enc.buf.capacity());
        let s = enc.finish(&mut out).unwrap();
        assert_eq!(s.plaintext_len, pt.len() as u64);
        (out, hl, cap)
    }

    fn decrypt(k: &Arc<RawAesKeyring>, msg: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut dec = Decryptor::new(k.clone(), DecryptOptions::default());
        let mut plain = Vec::new();
        let mut at = 0;
        for &n in sizes {
            let n = n.min(msg.len() - at);
            dec.update(&msg[at..at + n], &mut plain).unwrap();
            at += n;
        }
        dec.update(&msg[at..], &mut plain).unwrap();
        dec.finish(&mut plain).unwrap();
        plain
    }

    #[test]
    fn every_chunking_seals_the_reference_frames_and_round_trips() {
        let k = keyring();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut max_cap_ratio = 0f64;
        let mut cases = 0;
        for &frame in &[16usize, 32, 48, 64, 4096] {
            for &suite in &Suite::ALL {
                let totals = [0, 1, frame - 1, frame, frame + 1, 2 * frame, 3 * frame + 5];
                for round in 0..60 {
                    let total = if round < totals.len() {
                        totals[round]
                    } else {
                        rng.below(6 * frame + 2)
                    };
                    let pt: Vec<u8> = (0..total).map(|_| rng.next() as u8).collect();
                    let sizes = chunking(&mut rng, frame, total);
                    let opts = options(suite, frame as u32);
                    let reference = reference_frames(suite, frame, &pt);

                    // Push API, frames under the fixed key.
                    let enc = Encryptor::new(k.as_ref(), &opts).unwrap();
                    let (out, hl, cap) = push(enc, &sizes, &pt, Some(suite));
                    assert_eq!(
                        &out[hl..hl + reference.len()],
                        &reference[..],
                        "frame {frame} suite {suite:?} sizes {sizes:?}"
                    );
                    if !suite.is_signed() {
                        assert_eq!(out.len(), hl + reference.len());
                    }
                    if total > 0 {
                        max_cap_ratio =
                            max_cap_ratio.max(cap as f64 / (FINAL_OVERHEAD + frame) as f64);
                    }

                    // The same through EncryptWriter (one write per chunk).
                    let mut w = EncryptWriter::new(k.as_ref(), &opts, Vec::new()).unwrap();
                    w.enc.key = fixed_key(suite);
                    let mut at = 0;
                    for &n in &sizes {
                        std::io::Write::write_all(&mut w, &pt[at..at + n]).unwrap();
                        at += n;
                    }
                    let hl2 = w.enc.header_bytes.len();
                    let (wout, _) = w.finish().unwrap();
                    assert_eq!(&wout[hl2..hl2 + reference.len()], &reference[..]);

                    // The stream pipeline seals the same frames.
                    let mut enc = Encryptor::new(k.as_ref(), &opts).unwrap();
                    enc.key = fixed_key(suite);
                    let hl3 = enc.header_bytes.len();
                    let mut pout = Vec::new();
                    let popts = crate::pipeline::PipelineOptions {
                        threads: 2,
                        batch_bytes: 3 * frame,
                    };
                    crate::pipeline::encrypt(enc, &pt[..], &mut pout, &popts, |_| {}).unwrap();
                    let pref = reference_layout(suite, frame, &pt, true);
                    assert_eq!(&pout[hl3..hl3 + pref.len()], &pref[..]);

                    // And with the real key, the message decrypts (fed in the same chunks).
                    let enc = Encryptor::new(k.as_ref(), &opts).unwrap();
                    let (msg, _, _) = push(enc, &sizes, &pt, None);
                    assert_eq!(decrypt(&k, &msg, &sizes), pt);
                    cases += 1;
                }
            }
        }
        // The buffer never holds more than one frame's room (it grows by doubling up to that).
        assert!(
            max_cap_ratio <= 1.0,
            "frame buffer up to {max_cap_ratio:.2}x a frame's room"
        );
        assert!(cases > 0);
    }

    #[test]
    fn finish_without_update_and_header_only_use_allocate_nothing_and_match() {
        let k = keyring();
        for &suite in &Suite::ALL {
            let mut enc = Encryptor::new(k.as_ref(), &options(suite, 64 * 1024)).unwrap();
            assert_eq!(enc.buf.capacity(), 0);
            enc.key = fixed_key(suite);
            let hl = enc.header_bytes.len();
            let mut out = Vec::new();
            let s = enc.finish(&mut out).unwrap();
            assert_eq!(s.frames, 1);
            assert_eq!(
                &out[hl..hl + FINAL_OVERHEAD],
                &reference_frames(suite, 65536, &[])[..]
            );
            // Empty updates only: still nothing allocated, the same empty final frame.
            let mut enc = Encryptor::new(k.as_ref(), &options(suite, 64 * 1024)).unwrap();
            enc.key = fixed_key(suite);
            let mut out = Vec::new();
            for _ in 0..3 {
                enc.update(&[], &mut out).unwrap();
            }
            assert_eq!(enc.buf.capacity(), 0);
            enc.finish(&mut out).unwrap();
            assert_eq!(
                &out[hl..hl + FINAL_OVERHEAD],
                &reference_frames(suite, 65536, &[])[..]
            );
        }
    }

    /// A stale tail: a regular frame followed by a short final frame reuses the buffer; the bytes
    /// of the previous frame's plaintext and tag past the final plaintext must not be sealed.
    #[test]
    fn a_short_final_frame_after_a_full_one_seals_only_its_own_bytes() {
        let k = keyring();
        let suite = Suite::DEFAULT;
        let pt: Vec<u8> = (0..(64 + 7)).map(|i| i as u8).collect();
        for split in [vec![64, 7], vec![71], vec![1, 63, 7], vec![64, 0, 7, 0]] {
            let enc = Encryptor::new(k.as_ref(), &options(suite, 64)).unwrap();
            let (out, hl, _) = push(enc, &split, &pt, Some(suite));
            assert_eq!(&out[hl..], &reference_frames(suite, 64, &pt)[..]);
        }
    }
}
