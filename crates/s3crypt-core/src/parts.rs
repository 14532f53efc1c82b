//! Sealing a message in independently sealed parts (for parallel multipart uploads).
//!
//! A [`MessageSealer`] hands out [`PartSealer`]s for consecutive, disjoint ranges of frame
//! sequence numbers; each part seals exactly its own frames once (`seal` consumes it), and the
//! final part consumes the sealer. No sequence number can therefore be sealed twice, which would
//! reuse AEAD nonces. Parts can be sealed on any thread, in any order; their bytes are
//! concatenated in the order the parts were handed out.
//!
//! Signed suites hash the message in order: pass every part's sealed bytes to
//! [`MessageSealer::absorb`] in order, then append the footer of the [`SignatureTail`] that
//! [`MessageSealer::last_part`] returns ([`SignatureTail::finish`]).

use std::ops::Range;
use std::sync::Arc;

use crate::encrypt::Encryptor;
use crate::error::{Error, Result};
use crate::key::{
    SealingKey, FINAL_MARKER, FINAL_OVERHEAD, FINAL_PREFIX, REGULAR_OVERHEAD, REGULAR_PREFIX,
};
use crate::signature::Signer;

/// Hands out the parts of one message.
pub struct MessageSealer {
    key: Arc<SealingKey>,
    frame_length: u32,
    next_seq: u32,
    signer: Option<Signer>,
    header: Vec<u8>,
    /// [`crate::EncryptOptions::plaintext_length`], enforced as parts are handed out.
    max_plaintext_len: Option<u64>,
}

impl std::fmt::Debug for MessageSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageSealer")
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

/// Seals the frames of one part in place.
pub struct PartSealer {
    key: Arc<SealingKey>,
    frame_length: usize,
    first_seq: u32,
    regular: usize,
    final_len: Option<usize>,
}

impl std::fmt::Debug for PartSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartSealer")
            .field("first_seq", &self.first_seq)
            .field("regular", &self.regular)
            .field("final_len", &self.final_len)
            .finish_non_exhaustive()
    }
}

impl MessageSealer {
    /// Turns a fresh encryptor into a part sealer.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the encryptor was already fed (see [`Encryptor::update`]).
    pub fn new(enc: Encryptor) -> Result<Self> {
        enc.ensure_unused()?;
        let frame_length = enc.header.frame_length;
        let Encryptor {
            key,
            header_bytes,
            mut signer,
            max_plaintext_len,
            ..
        } = enc;
        if let Some(s) = &mut signer {
            s.update(&header_bytes);
        }
        Ok(Self {
            key: Arc::new(key),
            frame_length,
            next_seq: 1,
            signer,
            header: header_bytes,
            max_plaintext_len,
        })
    }

    /// The serialized header (the first bytes of the message, before the first part).
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// The frame length.
    pub fn frame_length(&self) -> u32 {
        self.frame_length
    }

    /// A part of `frames` regular frames (the next sequence numbers).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the message would exceed 2^32 - 1 frames, or the parts
    /// handed out so far would hold more than the declared
    /// [`crate::EncryptOptions::plaintext_length`].
    pub fn part(&mut self, frames: usize) -> Result<PartSealer> {
        self.part_with_final(frames, 0)
    }

    /// [`MessageSealer::part`], checking the declared length with `final_len` more bytes to come.
    fn part_with_final(&mut self, frames: usize, final_len: usize) -> Result<PartSealer> {
        let end = u64::from(self.next_seq) + frames as u64;
        if end > u64::from(FINAL_MARKER) {
            return Err(Error::InvalidArgument(
                "message would exceed 2^32 - 1 frames".into(),
            ));
        }
        // At most 2^32 - 2 regular frames of at most 2^31 bytes: no overflow in u64.
        let total = (end - 1) * u64::from(self.frame_length) + final_len as u64;
        Encryptor::check_declared_length(self.max_plaintext_len, total)?;
        let p = PartSealer {
            key: Arc::clone(&self.key),
            frame_length: self.frame_length as usize,
            first_seq: self.next_seq,
            regular: frames,
            final_len: None,
        };
        self.next_seq = end as u32;
        Ok(p)
    }

    /// The last part: `frames` regular frames, then the final frame with `final_len` plaintext
    /// bytes (0 to frame length). Consumes the sealer's frame numbering; returns the signature
    /// state (if any) for [`SignatureTail`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `final_len` exceeds the frame length, the message would
    /// exceed 2^32 - 1 frames or hold more than the declared
    /// [`crate::EncryptOptions::plaintext_length`].
    pub fn last_part(
        mut self,
        frames: usize,
        final_len: usize,
    ) -> Result<(PartSealer, SignatureTail)> {
        if final_len > self.frame_length as usize {
            return Err(Error::InvalidArgument(
                "final frame longer than the frame length".into(),
            ));
        }
        let mut p = self.part_with_final(frames, final_len)?;
        p.final_len = Some(final_len);
        Ok((
            p,
            SignatureTail {
                signer: self.signer.take(),
            },
        ))
    }

    /// For signed suites: hashes a sealed part (call for every part, in order).
    pub fn absorb(&mut self, sealed: &[u8]) {
        if let Some(s) = &mut self.signer {
            s.update(sealed);
        }
    }
}

/// The signature of a message whose last part was handed out.
pub struct SignatureTail {
    signer: Option<Signer>,
}

impl std::fmt::Debug for SignatureTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignatureTail")
            .field("signed", &self.signer.is_some())
            .finish()
    }
}

impl SignatureTail {
    /// For signed suites: hashes the sealed last part (after every earlier part was absorbed).
    pub fn absorb(&mut self, sealed: &[u8]) {
        if let Some(s) = &mut self.signer {
            s.update(sealed);
        }
    }

    /// The footer to append after the last part (empty for unsigned suites).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if signing fails.
    pub fn finish(self) -> Result<Vec<u8>> {
        self.signer
            .map(Signer::finish)
            .transpose()
            .map(Option::unwrap_or_default)
    }
}

/// Bytes one sealed regular frame of `frame_length` plaintext bytes occupies (sequence number,
/// IV, content and tag): what a reader or writer needs to size ranges and parts in whole frames.
pub const fn sealed_frame_len(frame_length: usize) -> usize {
    frame_length + REGULAR_OVERHEAD
}

/// Where the plaintext of the `i`-th regular frame of a part goes, relative to the part's start:
/// a writer can read plaintext straight into these slots before it knows whether the part is the
/// last (then [`PartSealer::move_final_plaintext`] moves the final frame's bytes into place).
pub fn regular_plaintext_slot(frame_length: usize, i: usize) -> Range<usize> {
    let at = i * sealed_frame_len(frame_length) + REGULAR_PREFIX;
    at..at + frame_length
}

impl PartSealer {
    /// For a last part whose plaintext was placed as if every frame were regular (at
    /// [`regular_plaintext_slot`]): moves the final frame's bytes to where the final frame keeps
    /// them (its header is longer). `buf` must be at least [`PartSealer::sealed_len`] bytes and
    /// at least as long as the regular layout it was filled in; truncate it to `sealed_len`
    /// afterwards.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if this is not a last part or `buf` is too short.
    pub fn move_final_plaintext(&self, buf: &mut [u8]) -> Result<()> {
        let Some(n) = self.final_len else {
            return Err(Error::InvalidArgument("not a last part".into()));
        };
        let at = self.regular * sealed_frame_len(self.frame_length);
        let need = (at + REGULAR_PREFIX + n).max(self.sealed_len());
        if buf.len() < need {
            return Err(Error::InvalidArgument(format!(
                "part buffer is {} bytes, at least {need} expected",
                buf.len()
            )));
        }
        buf.copy_within(
            at + REGULAR_PREFIX..at + REGULAR_PREFIX + n,
            at + FINAL_PREFIX,
        );
        Ok(())
    }

    /// Length of the sealed part in bytes (and of the buffer [`PartSealer::seal`] takes).
    pub fn sealed_len(&self) -> usize {
        self.regular * (self.frame_length + REGULAR_OVERHEAD)
            + self.final_len.map_or(0, |n| n + FINAL_OVERHEAD)
    }

    /// Plaintext bytes this part holds.
    pub fn plaintext_len(&self) -> usize {
        self.regular * self.frame_length + self.final_len.unwrap_or(0)
    }

    /// Where the plaintext goes in the buffer, in order (one range per frame).
    pub fn plaintext_ranges(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        let slot = self.frame_length + REGULAR_OVERHEAD;
        let regular = (0..self.regular)
            .map(move |i| i * slot + REGULAR_PREFIX..i * slot + REGULAR_PREFIX + self.frame_length);
        let fin = self
            .final_len
            .map(|n| self.regular * slot + FINAL_PREFIX..self.regular * slot + FINAL_PREFIX + n);
        regular.chain(fin)
    }

    /// Seals the part in place: `buf` is [`PartSealer::sealed_len`] bytes with the plaintext at
    /// [`PartSealer::plaintext_ranges`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `buf` has the wrong length.
    pub fn seal(self, buf: &mut [u8]) -> Result<()> {
        if buf.len() != self.sealed_len() {
            return Err(Error::InvalidArgument(format!(
                "part buffer is {} bytes, {} expected",
                buf.len(),
                self.sealed_len()
            )));
        }
        let slot = self.frame_length + REGULAR_OVERHEAD;
        for i in 0..self.regular {
            self.key.seal_regular(
                self.first_seq + i as u32,
                &mut buf[i * slot..(i + 1) * slot],
            );
        }
        if self.final_len.is_some() {
            self.key.seal_final(
                self.first_seq + self.regular as u32,
                &mut buf[self.regular * slot..],
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::raw_aes::{RawAesKeyring, WrappingKey};
    use crate::{DecryptOptions, Decryptor, EncryptOptions, Suite};

    #[test]
    fn parts_sealed_out_of_order_make_one_valid_message() {
        for suite in Suite::ALL {
            let k = std::sync::Arc::new(
                RawAesKeyring::new("ns", "k", WrappingKey::from_bytes([1; 32])).unwrap(),
            );
            let opts = EncryptOptions {
                suite,
                frame_length: 32,
                ..Default::default()
            };
            let mut sealer =
                MessageSealer::new(Encryptor::new(k.as_ref(), &opts).unwrap()).unwrap();
            let pt: Vec<u8> = (0..32 * 7 + 5).map(|i| i as u8).collect();
            let mut parts = vec![sealer.part(3).unwrap(), sealer.part(2).unwrap()];
            let header = sealer.header().to_vec();
            let (last, mut tail) = sealer.last_part(2, 5).unwrap();
            parts.push(last);
            let mut bufs: Vec<Vec<u8>> = Vec::new();
            let mut off = 0;
            for p in &parts {
                let mut b = vec![0u8; p.sealed_len()];
                for r in p.plaintext_ranges() {
                    let n = r.len();
                    b[r].copy_from_slice(&pt[off..off + n]);
                    off += n;
                }
                bufs.push(b);
            }
            // Seal in reverse order.
            for (p, b) in parts.into_iter().zip(bufs.iter_mut()).rev() {
                p.seal(b).unwrap();
            }
            let mut msg = header;
            for b in &bufs {
                tail.absorb(b);
                msg.extend_from_slice(b);
            }
            msg.extend(tail.finish().unwrap());
            let mut d = Decryptor::new(k, DecryptOptions::default());
            let mut out = Vec::new();
            d.update(&msg, &mut out).unwrap();
            d.finish(&mut out).unwrap();
            assert_eq!(out, pt, "{suite}");
        }
    }
}
