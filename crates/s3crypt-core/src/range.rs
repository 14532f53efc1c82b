//! Random access: map a plaintext byte range to the ciphertext bytes of the frames that hold it,
//! and decrypt exactly those frames, authenticating each.
//!
//! Regular frames have a fixed size, so frame `i` (1-based) starts at
//! `header_len + (i - 1) × (frame_length + 32)`. Which frame is final, and how long it is, follows
//! from the total ciphertext length: `body = k × (frame_length + 32) + n + 40` with
//! `0 ≤ n ≤ frame_length` has exactly one solution. Each frame's AAD binds its sequence number,
//! whether it is final, and its length, so a frame cannot be moved, or passed off as final, without
//! failing authentication.
//!
//! A range that reaches the end of the plaintext always includes the final frame (even an empty
//! one), so a message cut short and padded out to another valid length fails. Not covered: a range
//! that ends earlier does not prove that the message was not truncated after it; signed messages
//! (0x0578) cannot be verified from a range at all and are refused.

use std::ops::Range;

use crate::decrypt::{DecryptOptions, OpenedHeader};
use crate::error::{Error, Malformed, Result};
use crate::header::ParsedHeader;
use crate::key::{FINAL_OVERHEAD, FINAL_PREFIX, REGULAR_OVERHEAD, REGULAR_PREFIX};
use crate::keyring::Keyring;

/// A plaintext byte range as in HTTP `Range` (inclusive ends), before the plaintext length is
/// known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `start-end` (inclusive) or `start-` (to the end).
    From(u64, Option<u64>),
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Parses `START-END`, `START-` or `-SUFFIX`, optionally prefixed by `bytes=`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for anything else (including an end before the start).
    pub fn parse(s: &str) -> Result<Self> {
        let t = s.trim().trim_start_matches("bytes=");
        let bad = || {
            Error::InvalidArgument(format!(
                "invalid range {s:?}: use START-END, START- or -SUFFIXLEN"
            ))
        };
        let (a, b) = t.split_once('-').ok_or_else(bad)?;
        let num = |x: &str| x.trim().parse::<u64>().map_err(|_| bad());
        match (a.trim().is_empty(), b.trim().is_empty()) {
            (true, false) => Ok(Self::Suffix(num(b)?)),
            (false, true) => Ok(Self::From(num(a)?, None)),
            (false, false) if num(b)? >= num(a)? => Ok(Self::From(num(a)?, Some(num(b)?))),
            _ => Err(bad()),
        }
    }

    /// The half-open range over a plaintext of `len` bytes. An end past the plaintext is
    /// clamped by [`MessageLayout::plan`]; a start at or past it is "not satisfiable" there.
    pub fn resolve(&self, len: u64) -> Range<u64> {
        match *self {
            Self::From(a, Some(b)) => a..b.saturating_add(1),
            Self::From(a, None) => a..u64::MAX,
            Self::Suffix(0) => len..len,
            Self::Suffix(n) => len.saturating_sub(n)..len,
        }
    }
}

/// The frame layout of a complete message of known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageLayout {
    /// Header length (tag included): where the body starts.
    pub header_len: u64,
    /// Plaintext bytes per regular frame.
    pub frame_length: u32,
    /// Number of regular frames.
    pub regular_frames: u64,
    /// Plaintext bytes in the final frame.
    pub final_len: u32,
}

/// What to fetch and decrypt for a plaintext range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePlan {
    /// The plaintext bytes that will be returned (the request clamped to the plaintext length).
    pub plaintext: Range<u64>,
    /// The ciphertext bytes (offsets in the whole message) to fetch: whole frames.
    pub ciphertext: Range<u64>,
    /// Index (0-based) of the first frame of `ciphertext`.
    pub first_frame: u64,
}

impl MessageLayout {
    /// The layout of an unsigned message whose header is `header_len` bytes and whose total
    /// length is `ciphertext_len`.
    ///
    /// # Errors
    /// [`Error::Truncated`] if the length cannot hold even the final frame;
    /// [`Error::Malformed`] if no frame layout gives that length.
    pub fn new(header_len: u64, frame_length: u32, ciphertext_len: u64) -> Result<Self> {
        let body = ciphertext_len
            .checked_sub(header_len)
            .ok_or(Error::Truncated("the header"))?;
        let rest = body
            .checked_sub(FINAL_OVERHEAD as u64)
            .ok_or(Error::Truncated("the final frame"))?;
        let slot = u64::from(frame_length) + REGULAR_OVERHEAD as u64;
        let (regular_frames, final_len) = (rest / slot, rest % slot);
        if final_len > u64::from(frame_length) {
            return Err(Malformed::Field("message length (no frame layout matches it)").into());
        }
        if regular_frames >= u64::from(u32::MAX) {
            return Err(Malformed::Field("frame count (more than 2^32 - 1 frames)").into());
        }
        Ok(Self {
            header_len,
            frame_length,
            regular_frames,
            final_len: final_len as u32,
        })
    }

    /// Total plaintext length.
    pub fn plaintext_len(&self) -> u64 {
        self.regular_frames * u64::from(self.frame_length) + u64::from(self.final_len)
    }

    /// Total ciphertext length.
    pub fn ciphertext_len(&self) -> u64 {
        self.header_len
            + self.regular_frames * self.slot()
            + FINAL_OVERHEAD as u64
            + u64::from(self.final_len)
    }

    fn slot(&self) -> u64 {
        u64::from(self.frame_length) + REGULAR_OVERHEAD as u64
    }

    /// Byte offset and length of frame `i` (0-based; `i == regular_frames` is the final frame).
    fn frame_span(&self, i: u64) -> Range<u64> {
        let start = self.header_len + i * self.slot();
        if i < self.regular_frames {
            start..start + self.slot()
        } else {
            start..start + FINAL_OVERHEAD as u64 + u64::from(self.final_len)
        }
    }

    /// Plans the plaintext range `range` (end exclusive; an end past the plaintext is clamped, as
    /// HTTP does). A range that reaches the end of the plaintext includes the final frame, even
    /// when it holds no plaintext, so that decrypting it proves the message ends there.
    ///
    /// # Errors
    /// [`Error::RangeNotSatisfiable`] if the range starts at or after the end of the plaintext;
    /// [`Error::InvalidArgument`] if it is empty.
    pub fn plan(&self, range: Range<u64>) -> Result<RangePlan> {
        let len = self.plaintext_len();
        if range.start >= len {
            return Err(Error::RangeNotSatisfiable { plaintext_len: len });
        }
        if range.end <= range.start {
            return Err(Error::InvalidArgument(format!(
                "empty range {}..{}",
                range.start, range.end
            )));
        }
        let end = range.end.min(len);
        let f = u64::from(self.frame_length);
        let first = (range.start / f).min(self.regular_frames);
        let last = if end == len {
            self.regular_frames
        } else {
            ((end - 1) / f).min(self.regular_frames)
        };
        Ok(RangePlan {
            plaintext: range.start..end,
            ciphertext: self.frame_span(first).start..self.frame_span(last).end,
            first_frame: first,
        })
    }
}

/// Decrypts byte ranges of one message whose header was read and authenticated.
#[derive(Debug)]
pub struct RangeDecryptor {
    opened: OpenedHeader,
    layout: MessageLayout,
}

impl RangeDecryptor {
    /// Opens `header` with `keyring` for a message that is `ciphertext_len` bytes long in total.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for signed suites; the errors of [`OpenedHeader::open`] and
    /// [`MessageLayout::new`].
    pub fn new(
        header: ParsedHeader,
        keyring: &dyn Keyring,
        options: &DecryptOptions,
        ciphertext_len: u64,
    ) -> Result<Self> {
        if header.header.suite.is_signed() {
            return Err(Error::Unsupported(
                "byte ranges of signed messages (suite 0x0578) cannot be verified; decrypt the whole message".into(),
            ));
        }
        let layout = MessageLayout::new(
            header.len() as u64,
            header.header.frame_length,
            ciphertext_len,
        )?;
        Ok(Self {
            opened: OpenedHeader::open(header, keyring, options)?,
            layout,
        })
    }

    /// The message layout.
    pub fn layout(&self) -> &MessageLayout {
        &self.layout
    }

    /// The header.
    pub fn header(&self) -> &ParsedHeader {
        &self.opened.parsed
    }

    /// Plans a plaintext range (see [`MessageLayout::plan`]).
    ///
    /// # Errors
    /// As [`MessageLayout::plan`].
    pub fn plan(&self, range: Range<u64>) -> Result<RangePlan> {
        self.layout.plan(range)
    }

    /// Decrypts `ciphertext` (exactly the bytes `plan.ciphertext` of the message), authenticating
    /// every frame, and appends the plaintext of `plan.plaintext` to `out`. Nothing is appended
    /// unless every frame authenticates.
    ///
    /// # Errors
    /// As [`RangeDecryptor::decrypt_in_place`].
    pub fn decrypt(
        &self,
        plan: &RangePlan,
        ciphertext: &mut [u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let n = self.decrypt_in_place(plan, ciphertext)?;
        out.extend_from_slice(&ciphertext[..n]);
        Ok(())
    }

    /// Decrypts `ciphertext` (exactly the bytes `plan.ciphertext` of the message) in place,
    /// authenticating every frame, and moves the plaintext of `plan.plaintext` to the front of
    /// the buffer: returns its length `n`, so the plaintext is `ciphertext[..n]`. No copy leaves
    /// the buffer, which is what a download that hands whole buffers on wants.
    ///
    /// On error the buffer holds unauthenticated bytes and must be discarded.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `ciphertext` is not the planned length or the plan belongs
    /// to another message; [`Error::Malformed`] or [`Error::Authentication`] if a frame does not
    /// verify.
    pub fn decrypt_in_place(&self, plan: &RangePlan, ciphertext: &mut [u8]) -> Result<usize> {
        // The plan's fields are public: re-derive it rather than trust offsets from the caller.
        if self.layout.plan(plan.plaintext.clone()).ok().as_ref() != Some(plan) {
            return Err(Error::InvalidArgument(
                "the range plan does not belong to this message".into(),
            ));
        }
        let want = plan.ciphertext.end - plan.ciphertext.start;
        if ciphertext.len() as u64 != want {
            return Err(Error::InvalidArgument(format!(
                "expected {want} ciphertext bytes, got {}",
                ciphertext.len()
            )));
        }
        let l = &self.layout;
        let f = u64::from(l.frame_length);
        // Plaintext is moved to the front frame by frame, right after its frame authenticated:
        // the destination never passes the frame being read, and on error the caller discards
        // the whole buffer.
        let mut n = 0usize;
        let mut i = plan.first_frame;
        let mut off = 0usize;
        while off < ciphertext.len() {
            let span = l.frame_span(i);
            let len = (span.end - span.start) as usize;
            let frame = &mut ciphertext[off..off + len];
            let seq = u32::try_from(i + 1).map_err(|_| Malformed::Field("frame count"))?;
            let (pt_start, pt_len) = if i < l.regular_frames {
                self.opened.key.open_regular(seq, frame)?;
                (REGULAR_PREFIX, f)
            } else {
                self.opened.key.open_final(seq, frame)?;
                (FINAL_PREFIX, u64::from(l.final_len))
            };
            // Intersect this frame's plaintext [i*f, i*f + pt_len) with the requested range.
            let lo = plan.plaintext.start.max(i * f);
            let hi = plan.plaintext.end.min(i * f + pt_len);
            if lo < hi {
                let a = off + pt_start + (lo - i * f) as usize;
                let piece = (hi - lo) as usize;
                ciphertext.copy_within(a..a + piece, n);
                n += piece;
            }
            off += len;
            i += 1;
        }
        Ok(n)
    }
}

/// `range` cut into consecutive pieces that end on multiples of `step` (the last one at
/// `range.end`). With `step` a whole number of frames, no frame is in two pieces, even when `range`
/// starts inside one, so each piece can be planned and decrypted on its own. (A `step` of 0 is
/// taken as 1.)
pub fn aligned_steps(range: Range<u64>, step: u64) -> impl Iterator<Item = Range<u64>> {
    let step = step.max(1);
    let mut at = range.start;
    std::iter::from_fn(move || {
        (at < range.end).then(|| {
            let end = (at / step + 1).saturating_mul(step).min(range.end);
            let piece = at..end;
            at = end;
            piece
        })
    })
}

/// Decrypts the plaintext range `range` of a complete message held in memory (or memory-mapped),
/// touching only the header and the frames the range needs.
///
/// # Errors
/// As [`crate::Header::read`], [`RangeDecryptor::new`], [`RangeDecryptor::plan`] and
/// [`RangeDecryptor::decrypt`].
pub fn decrypt_range(
    message: &[u8],
    keyring: &dyn Keyring,
    options: &DecryptOptions,
    range: Range<u64>,
) -> Result<Vec<u8>> {
    let parsed = crate::header::Header::read(message, &options.limits)?;
    let rd = RangeDecryptor::new(parsed, keyring, options, message.len() as u64)?;
    let plan = rd.plan(range)?;
    let mut ct = message[plan.ciphertext.start as usize..plan.ciphertext.end as usize].to_vec();
    let mut out = Vec::with_capacity((plan.plaintext.end - plan.plaintext.start) as usize);
    rd.decrypt(&plan, &mut ct, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::single_range_in_vec_init)]
    fn aligned_steps_end_on_multiples_of_the_step() {
        let steps = |r: Range<u64>, step| aligned_steps(r, step).collect::<Vec<_>>();
        assert_eq!(steps(5..25, 10), [5..10, 10..20, 20..25]);
        assert_eq!(steps(10..30, 10), [10..20, 20..30]);
        assert_eq!(steps(3..4, 10), [3..4]);
        assert_eq!(steps(7..7, 10), []);
        assert_eq!(steps(0..3, 0), [0..1, 1..2, 2..3]);
        assert_eq!(
            steps(u64::MAX - 3..u64::MAX, 1 << 63),
            [u64::MAX - 3..u64::MAX]
        );
    }

    #[test]
    fn byte_ranges_parse_like_http() {
        assert_eq!(ByteRange::parse("0-9").unwrap().resolve(100), 0..10);
        assert_eq!(
            ByteRange::parse("bytes=90-").unwrap().resolve(100),
            90..u64::MAX
        );
        assert_eq!(ByteRange::parse("-10").unwrap().resolve(100), 90..100);
        assert_eq!(ByteRange::parse("-1000").unwrap().resolve(100), 0..100);
        for bad in ["9-1", "-", "", "a-b", "1-2-3"] {
            assert!(ByteRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn layout_solves_both_final_frame_forms() {
        // 3 full frames + empty final, and 2 full frames + full final.
        let h = 100;
        let a = MessageLayout::new(h, 16, h + 3 * 48 + 40).unwrap();
        assert_eq!(
            (a.regular_frames, a.final_len, a.plaintext_len()),
            (3, 0, 48)
        );
        let b = MessageLayout::new(h, 16, h + 2 * 48 + 40 + 16).unwrap();
        assert_eq!(
            (b.regular_frames, b.final_len, b.plaintext_len()),
            (2, 16, 48)
        );
        assert!(MessageLayout::new(h, 16, h + 39).is_err());
        assert!(MessageLayout::new(h, 16, h + 40 + 17).is_err());
        for l in [a, b] {
            assert_eq!(
                l.ciphertext_len(),
                MessageLayout::new(h, 16, l.ciphertext_len())
                    .unwrap()
                    .ciphertext_len()
            );
        }
    }

    #[test]
    fn plan_clamps_and_refuses_like_http() {
        let l = MessageLayout::new(0, 16, 2 * 48 + 40 + 5).unwrap(); // 37 bytes of plaintext
        assert_eq!(l.plaintext_len(), 37);
        let p = l.plan(20..1000).unwrap();
        assert_eq!(p.plaintext, 20..37);
        assert_eq!(p.ciphertext, 48..2 * 48 + 45);
        assert!(matches!(
            l.plan(37..40),
            Err(Error::RangeNotSatisfiable { plaintext_len: 37 })
        ));
        assert!(matches!(l.plan(5..5), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn a_range_to_the_end_includes_an_empty_final_frame() {
        // 3 full frames + an empty final frame: the end must be proven by that final frame.
        let l = MessageLayout::new(10, 16, 10 + 3 * 48 + 40).unwrap();
        assert_eq!(l.plaintext_len(), 48);
        for start in [0, 20, 47] {
            let p = l.plan(start..48).unwrap();
            assert_eq!(p.ciphertext.end, l.ciphertext_len(), "{start}");
            let p = l.plan(start..1000).unwrap();
            assert_eq!(p.ciphertext.end, l.ciphertext_len(), "{start}");
        }
        // A range ending earlier needs only its own frames.
        assert_eq!(l.plan(0..47).unwrap().ciphertext, 10..10 + 3 * 48);
    }
}
