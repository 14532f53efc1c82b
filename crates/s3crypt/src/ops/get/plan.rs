//! How a download is cut into ranged GETs and pieces: pure functions, tested without a server.

use s3crypt_core::parts::sealed_frame_len;

/// Ciphertext bytes per ranged GET of a whole-object download (at most; smaller when the part
/// size is). Memory is about `download_concurrency × DOWNLOAD_RANGE` of ciphertext in flight.
pub(crate) const DOWNLOAD_RANGE: usize = 8 << 20;

/// Ciphertext bytes per ranged GET for a client whose part size is `part_size`: the part size,
/// between 1 MiB and [`DOWNLOAD_RANGE`].
pub(crate) fn range_len(part_size: usize) -> u64 {
    part_size.clamp(1 << 20, DOWNLOAD_RANGE) as u64
}

/// Frame-aligned pieces of a download of frames of `frame_length` bytes, `range` ciphertext bytes
/// per ranged GET: plaintext bytes per piece (whole frames, about one range of ciphertext), and
/// how many pieces run at once. Frames larger than a range make pieces larger too: the bytes in
/// flight (not the count of pieces) stay at `download_concurrency` ranges' worth.
pub(crate) fn piece_shape(
    frame_length: u32,
    range: u64,
    download_concurrency: usize,
) -> (u64, usize) {
    let frame = u64::from(frame_length.max(1));
    let slot = sealed_frame_len(frame as usize) as u64;
    let frames = (range / slot).max(1);
    let span = frames * frame;
    let piece = frames * slot;
    let concurrency =
        usize::try_from((download_concurrency as u64 * range / piece).max(1)).unwrap_or(1);
    (span, concurrency)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranges_follow_the_part_size_within_bounds() {
        assert_eq!(range_len(16 << 20), 8 << 20);
        assert_eq!(range_len(5 << 20), 5 << 20);
        assert_eq!(range_len(1), 1 << 20);
    }

    #[test]
    fn default_pieces_are_about_one_range_of_whole_frames() {
        let (span, n) = piece_shape(64 << 10, 8 << 20, 16);
        assert_eq!(span % (64 << 10), 0);
        assert!(span / (64 << 10) * sealed_frame_len(64 << 10) as u64 <= 8 << 20);
        assert_eq!(n, 16);
        // 16 MiB frames: one frame per piece, fewer at once (the same bytes in flight).
        let (span, n) = piece_shape(16 << 20, 8 << 20, 16);
        assert_eq!((span, n), (16 << 20, 7));
    }

    proptest! {
        #[test]
        fn pieces_are_whole_frames_and_bound_the_bytes_in_flight(
            frame_units in 1u32..(1 << 20),
            range in (1u64 << 20)..=(8 << 20),
            conc in 1usize..64,
        ) {
            let frame = frame_units * 16;
            let (span, n) = piece_shape(frame, range, conc);
            let frames = span / u64::from(frame);
            prop_assert!(frames >= 1 && span % u64::from(frame) == 0);
            prop_assert!(n >= 1);
            let piece = frames * sealed_frame_len(frame as usize) as u64;
            // One piece is at most a range, unless one frame alone is larger.
            prop_assert!(piece <= range || frames == 1);
            // In flight: at most `conc` ranges' worth, or one piece.
            prop_assert!(n as u64 * piece <= conc as u64 * range || n == 1);
        }
    }
}
