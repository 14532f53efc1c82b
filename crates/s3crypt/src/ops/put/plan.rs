//! How an upload is cut into parts: pure functions, tested without a server.

use s3crypt_core::parts::sealed_frame_len;

use crate::transport::multipart::{MAX_PART, MAX_PARTS, MIN_PART};

/// Plaintext bytes per part for frames of `frame` bytes: whole frames, about `part_size`, at
/// least S3's minimum part once sealed, large enough for a known size to fit in 10,000 parts, and
/// never above S3's largest part (a size hint beyond S3's largest object then fails at the
/// 10,001st part rather than allocating a giant buffer).
pub(crate) fn part_plaintext(part_size: usize, frame: usize, size_hint: Option<u64>) -> usize {
    let frame = frame.max(1);
    let slot = sealed_frame_len(frame);
    let mut frames = (part_size / frame).max(1);
    frames = frames.max(MIN_PART.div_ceil(slot));
    if let Some(n) = size_hint {
        let needed = n
            .div_ceil(u64::from(MAX_PARTS as u32 - 1))
            .div_ceil(frame as u64);
        frames = frames.max(usize::try_from(needed).unwrap_or(usize::MAX));
    }
    frames.min(max_frames(frame)) * frame
}

/// Most whole frames in one part (1 MiB below S3's largest, for the header and the final frame).
fn max_frames(frame: usize) -> usize {
    ((MAX_PART - (1 << 20)) / sealed_frame_len(frame)).max(1)
}

/// The plaintext length of part `n` (1-based) for a base of `base` bytes. For inputs of unknown
/// length the part size doubles every 1,000 parts, so that a stream fits in 10,000 parts (up to
/// S3's 5 GiB part limit); memory grows with it (concurrency × part size). Known sizes keep one
/// part size.
pub(crate) fn grown(base: usize, n: i32, frame: usize, known_size: bool) -> usize {
    if known_size {
        return base;
    }
    let max = max_frames(frame.max(1)) * frame.max(1);
    let doublings = ((n.max(1) - 1) / 1000).min(20) as u32;
    base.saturating_mul(1usize << doublings)
        .min(max)
        .max(base.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn parts_hold_whole_frames_and_respect_s3s_limits() {
        // The default: 16 MiB of 64 KiB frames.
        assert_eq!(part_plaintext(16 * MIB, 64 << 10, None), 16 * MIB);
        // Below S3's minimum: raised until the sealed part reaches 5 MiB.
        let p = part_plaintext(MIB, 64 << 10, None);
        assert_eq!(p % (64 << 10), 0);
        assert!(p / (64 << 10) * sealed_frame_len(64 << 10) >= MIN_PART);
        // A 1 TiB object in 16 MiB parts would need 65,536 parts: the parts grow.
        let p = part_plaintext(16 * MIB, 64 << 10, Some(1 << 40));
        assert!((1u64 << 40).div_ceil(p as u64) < MAX_PARTS as u64, "{p}");
        // Unknown length: doubling every 1,000 parts reaches 5 TiB... within 10,000 parts.
        let base = part_plaintext(16 * MIB, 64 << 10, None);
        let total: u64 = (1..=MAX_PARTS)
            .map(|n| grown(base, n, 64 << 10, false) as u64)
            .sum();
        assert!(total >= 5 << 40, "{total}");
        assert_eq!(grown(base, 9_999, 64 << 10, true), base);
    }

    proptest! {
        #[test]
        fn every_part_is_whole_frames_within_s3s_bounds(
            part_size in 1usize..(6 << 30),
            frame_units in 1usize..(1 << 16),
            hint in proptest::option::of(0u64..(6u64 << 40)),
            n in 1i32..=MAX_PARTS,
        ) {
            let frame = frame_units * 16;
            let base = part_plaintext(part_size, frame, hint);
            let part = grown(base, n, frame, hint.is_some());
            for p in [base, part] {
                prop_assert!(p >= frame && p % frame == 0, "{p} for frame {frame}");
                let sealed = p / frame * sealed_frame_len(frame);
                // Room for the header and the final frame within S3's largest part.
                prop_assert!(sealed <= MAX_PART - (1 << 20) || p == frame, "{sealed}");
                // At least S3's smallest part (unless one frame is already larger than S3's
                // largest part allows, which only a frame length over 5 GiB could make).
                prop_assert!(sealed >= MIN_PART || p / frame == max_frames(frame), "{sealed}");
            }
            prop_assert!(part >= base);
            if let Some(h) = hint {
                // A known size fits in 10,000 parts unless the parts hit S3's largest.
                let fits = h.div_ceil(base as u64) < MAX_PARTS as u64;
                prop_assert!(fits || base / frame == max_frames(frame));
            }
        }
    }
}
