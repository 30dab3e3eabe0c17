//! Request framing: a 4-byte big-endian length, then that many bytes.
//!
//! Kafka closes a connection whose length prefix is negative or larger than
//! `socket.request.max.bytes` (`InvalidReceiveException`); so do we, without allocating.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

/// Size of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// A length prefix the broker refuses; the connection is closed.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// A negative length.
    #[error("negative frame length {0}")]
    Negative(i32),
    /// A length above `socket.request.max.bytes`.
    #[error("frame length {length} exceeds socket.request.max.bytes {max}")]
    TooLarge {
        /// Declared length.
        length: usize,
        /// Configured maximum.
        max: usize,
    },
}

/// Reads the length prefix at the start of `buf`, if four bytes are there.
/// Returns the body length the frame declares.
pub fn peek_frame_length(buf: &[u8], max_bytes: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..LENGTH_PREFIX_BYTES) else {
        return Ok(None);
    };
    let declared = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    let length = usize::try_from(declared).map_err(|_| FrameError::Negative(declared))?;
    if length > max_bytes {
        return Err(FrameError::TooLarge {
            length,
            max: max_bytes,
        });
    }
    Ok(Some(length))
}

/// Splits one complete frame body off the front of `buf` (without copying), or returns
/// `None` when more bytes are needed. The prefix is checked before any byte of the body
/// arrives, so an absurd length is rejected at once.
pub fn split_frame(buf: &mut BytesMut, max_bytes: usize) -> Result<Option<Bytes>, FrameError> {
    let Some(length) = peek_frame_length(buf, max_bytes)? else {
        return Ok(None);
    };
    let Some(total) = length.checked_add(LENGTH_PREFIX_BYTES) else {
        return Err(FrameError::TooLarge {
            length,
            max: max_bytes,
        });
    };
    if buf.len() < total {
        return Ok(None);
    }
    buf.advance(LENGTH_PREFIX_BYTES);
    Ok(Some(buf.split_to(length).freeze()))
}

/// How many more bytes the frame at the start of `buf` needs (0 if complete or unknown).
pub fn bytes_missing(buf: &[u8], max_bytes: usize) -> usize {
    match peek_frame_length(buf, max_bytes) {
        Ok(Some(length)) => length
            .saturating_add(LENGTH_PREFIX_BYTES)
            .saturating_sub(buf.len()),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn splits_complete_frames_and_waits_for_partial_ones() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&framed(b"hello"));
        buf.extend_from_slice(&framed(b"world!")[..5]);
        assert_eq!(
            split_frame(&mut buf, 100).expect("ok"),
            Some(Bytes::from_static(b"hello"))
        );
        assert_eq!(split_frame(&mut buf, 100).expect("ok"), None);
        assert_eq!(bytes_missing(&buf, 100), 5);
        buf.extend_from_slice(b"orld!");
        assert_eq!(
            split_frame(&mut buf, 100).expect("ok"),
            Some(Bytes::from_static(b"world!"))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn short_prefix_needs_more() {
        let mut buf = BytesMut::from(&[0u8, 0, 1][..]);
        assert_eq!(split_frame(&mut buf, 100).expect("ok"), None);
        assert_eq!(bytes_missing(&buf, 100), 0);
    }

    #[test]
    fn rejects_negative_and_absurd_lengths_before_the_body_arrives() {
        let mut buf = BytesMut::from(&(-1i32).to_be_bytes()[..]);
        assert_eq!(split_frame(&mut buf, 100), Err(FrameError::Negative(-1)));
        let mut buf = BytesMut::from(&i32::MAX.to_be_bytes()[..]);
        assert_eq!(
            split_frame(&mut buf, 104_857_600),
            Err(FrameError::TooLarge {
                length: i32::MAX as usize,
                max: 104_857_600
            })
        );
        let mut buf = BytesMut::from(&101i32.to_be_bytes()[..]);
        assert!(split_frame(&mut buf, 100).is_err());
    }

    #[test]
    fn zero_length_frame_is_an_empty_body() {
        let mut buf = BytesMut::from(&0i32.to_be_bytes()[..]);
        assert_eq!(split_frame(&mut buf, 100).expect("ok"), Some(Bytes::new()));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = BytesMut::from(&data[..]);
            for _ in 0..8 {
                match split_frame(&mut buf, 32) {
                    Ok(Some(_)) => continue,
                    _ => break,
                }
            }
        }
    }
}
