//! Request frames that reference record batches instead of copying them.
//!
//! kafka-protocol encodes a `records: Bytes` field with `put_slice`, which would copy every
//! record batch into the request buffer. [`FrameBuilder`] is the buffer a request is encoded
//! into: it is told which batches the request carries ([`Splice`]: the `Bytes` the request
//! holds and the pieces to send in its place), recognises each one when it arrives in
//! `put_slice` (same address and length, so the very same buffer), and appends the pieces as
//! segments of the [`Frame`] instead of copying. Everything else is encoded into an ordinary
//! `BytesMut`. The frame then goes to the socket segment by segment in vectored writes
//! (`io::write_segments`). A request may hold a stand-in for a batch in pieces
//! (`batch::RecordsRope::stand_in`); the caller checks with [`FrameBuilder::spliced`] that
//! every splice was made, so a stand-in is never sent.
//!
//! kafka-protocol may also seek back into what it wrote (`ByteBufMut::seek`/`range`, used for
//! gaps such as a record batch's length and CRC). Produce requests do not, but if an encoder
//! ever reaches back into a referenced segment, the builder first copies the frame into one
//! buffer (`flatten`), so the bytes are always those of the plain encoding, only slower.

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

use crate::batch::RecordsRope;

/// Batches in one piece shorter than this are copied: a segment of their own costs more than
/// the copy.
pub const SPLICE_MIN_BYTES: usize = 1024;

/// A buffer of the request (`stand_in`) to be sent as the pieces of `rope` (the same bytes,
/// or the batch the stand-in stands for).
#[derive(Debug, Clone, Copy)]
pub struct Splice<'a> {
    pub stand_in: &'a Bytes,
    pub rope: &'a RecordsRope,
}

/// A piece of a frame: copied into the frame's own buffer, or borrowed from a batch.
#[derive(Debug, Clone)]
pub enum Segment<'a> {
    Owned(Bytes),
    Borrowed(&'a [u8]),
}

impl AsRef<[u8]> for Segment<'_> {
    fn as_ref(&self) -> &[u8] {
        match self {
            Segment::Owned(bytes) => bytes,
            Segment::Borrowed(slice) => slice,
        }
    }
}

/// A request held a buffer it was to reference that the encoder never wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{spliced} of {expected} record batches were placed in the request frame")]
pub struct SpliceMissed {
    pub spliced: usize,
    pub expected: usize,
}
/// An encoded request: its bytes are the segments, in order. It borrows the batches it
/// references.
#[derive(Debug, Clone, Default)]
pub struct Frame<'a> {
    segments: Vec<Segment<'a>>,
    len_bytes: usize,
}

impl<'a> Frame<'a> {
    /// Total bytes.
    pub fn len_bytes(&self) -> usize {
        self.len_bytes
    }

    /// The bytes, in order, as non-empty pieces.
    pub fn segments(&self) -> &[Segment<'a>] {
        &self.segments
    }

    /// The frame as one contiguous buffer (copies unless it has a single owned segment).
    pub fn to_bytes(&self) -> Bytes {
        match self.segments.as_slice() {
            [] => Bytes::new(),
            [Segment::Owned(single)] => single.clone(),
            segments => {
                let mut buf = BytesMut::with_capacity(self.len_bytes);
                for segment in segments {
                    buf.extend_from_slice(segment.as_ref());
                }
                buf.freeze()
            }
        }
    }
}

/// The buffer a request is encoded into (see the module doc).
pub struct FrameBuilder<'a> {
    /// Buffers to reference rather than copy, best in the order the encoder writes them;
    /// `next_splice` is where the next one is looked for first.
    splice: &'a [Splice<'a>],
    next_splice: usize,
    /// Which splices were made, and how many.
    spliced: Vec<bool>,
    spliced_count: usize,
    /// The shortest stand-in (a shorter `put_slice` is not looked up).
    splice_min_bytes: usize,
    /// Finished segments and their total length.
    segments: Vec<Segment<'a>>,
    segments_bytes: usize,
    /// Bytes after the last segment.
    tail: BytesMut,
}

impl<'a> FrameBuilder<'a> {
    /// A builder that will put the pieces of `splice` where their stand-ins are written, and
    /// has room for `copied_bytes` of everything else.
    pub fn new(splice: &'a [Splice<'a>], copied_bytes: usize) -> Self {
        let pieces: usize = splice.iter().map(|splice| splice.rope.piece_count()).sum();
        Self {
            splice,
            next_splice: 0,
            spliced: vec![false; splice.len()],
            spliced_count: 0,
            splice_min_bytes: splice
                .iter()
                .map(|splice| splice.stand_in.len())
                .min()
                .unwrap_or(usize::MAX)
                .max(1),
            segments: Vec::with_capacity(pieces + splice.len() + 1),
            segments_bytes: 0,
            tail: BytesMut::with_capacity(copied_bytes),
        }
    }

    /// Whether every splice was made (else a stand-in may have been copied).
    pub fn spliced(&self) -> Result<(), SpliceMissed> {
        if self.spliced_count == self.splice.len() {
            Ok(())
        } else {
            Err(SpliceMissed {
                spliced: self.spliced_count,
                expected: self.splice.len(),
            })
        }
    }

    pub fn finish(mut self) -> Frame<'a> {
        let len_bytes = self.segments_bytes + self.tail.len();
        if !self.tail.is_empty() {
            self.segments
                .push(Segment::Owned(self.tail.split().freeze()));
        }
        Frame {
            segments: self.segments,
            len_bytes,
        }
    }

    /// The registered buffer `src` is, if any (same address and length: the same bytes).
    fn registered(&self, src: &[u8]) -> Option<usize> {
        if src.len() < self.splice_min_bytes {
            return None;
        }
        let is_src = |index: &usize| {
            self.splice.get(*index).is_some_and(|splice| {
                splice.stand_in.as_ptr() == src.as_ptr() && splice.stand_in.len() == src.len()
            })
        };
        // In order, the next one matches at once; out of order, all are searched.
        (self.next_splice..self.splice.len())
            .chain(0..self.next_splice)
            .find(is_src)
    }

    /// Copies every segment into `tail`, so that seeks and ranges reach real buffer bytes.
    fn flatten(&mut self) {
        if self.segments.is_empty() {
            return;
        }
        let mut flat = BytesMut::with_capacity(self.segments_bytes + self.tail.capacity());
        for segment in self.segments.drain(..) {
            flat.extend_from_slice(segment.as_ref());
        }
        flat.extend_from_slice(&self.tail);
        self.tail = flat;
        self.segments_bytes = 0;
    }
}

// SAFETY: `remaining_mut`, `chunk_mut` and `advance_mut` delegate to `tail`, a `BytesMut`, so
// the contract of `BufMut` (advance only over bytes of `chunk_mut` that were initialised)
// holds exactly as it does for `BytesMut`. `put_slice` appends either through `tail` or as a
// whole `Bytes` segment, never exposing uninitialised memory.
unsafe impl<'a> BufMut for FrameBuilder<'a> {
    fn remaining_mut(&self) -> usize {
        self.tail.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `chunk_mut()`, which is
        // `tail.chunk_mut()`: the same guarantee `tail.advance_mut` asks for.
        unsafe { self.tail.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.tail.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        match self.registered(src) {
            Some(index) => {
                if !self.tail.is_empty() {
                    let copied = self.tail.split().freeze();
                    self.segments_bytes += copied.len();
                    self.segments.push(Segment::Owned(copied));
                }
                let rope: &'a RecordsRope = self.splice[index].rope;
                for piece in rope.pieces() {
                    self.segments_bytes += piece.len();
                    self.segments.push(Segment::Borrowed(piece));
                }
                self.next_splice = index + 1;
                if let Some(done) = self.spliced.get_mut(index) {
                    if !std::mem::replace(done, true) {
                        self.spliced_count += 1;
                    }
                }
            }
            None => self.tail.extend_from_slice(src),
        }
    }
}

impl ByteBufMut for FrameBuilder<'_> {
    fn offset(&self) -> usize {
        self.segments_bytes + self.tail.len()
    }

    fn seek(&mut self, offset: usize) {
        if offset < self.segments_bytes {
            self.flatten();
        }
        self.tail.resize(offset - self.segments_bytes, 0);
    }

    fn range(&mut self, range: Range<usize>) -> &mut [u8] {
        if range.start < self.segments_bytes {
            self.flatten();
        }
        let start = range.start - self.segments_bytes;
        let end = range.end - self.segments_bytes;
        &mut self.tail[start..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn record(value: Bytes) -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(value),
            headers: Default::default(),
        }
    }

    #[test]
    fn registered_buffers_become_segments_and_the_rest_is_copied() {
        let big = Bytes::from(vec![7u8; 4096]);
        let small = Bytes::from(vec![8u8; 10]);
        let rope = RecordsRope::contiguous(big.clone());
        let registered = [rope.splice(&big)];
        let mut builder = FrameBuilder::new(&registered, 64);
        builder.put_i32(1);
        builder.put_slice(&big.slice(1..));
        builder.put_slice(&big);
        builder.put_slice(&small);
        assert_eq!(builder.spliced(), Ok(()));
        let frame = builder.finish();
        assert_eq!(frame.segments().len(), 3);
        assert_eq!(frame.segments()[1].as_ref().as_ptr(), big.as_ptr());
        let mut plain = BytesMut::new();
        plain.put_i32(1);
        plain.put_slice(&big.slice(1..));
        plain.put_slice(&big);
        plain.put_slice(&small);
        assert_eq!(frame.len_bytes(), plain.len());
        assert_eq!(frame.to_bytes(), plain.freeze());
    }

    #[test]
    fn gaps_over_a_spliced_segment_flatten_and_still_match() {
        // The record batch encoder writes the batch length and CRC into gaps after the
        // records: with the values registered, those reach back over spliced segments.
        let values: Vec<Bytes> = (0..5u8).map(|i| Bytes::from(vec![i; 2000])).collect();
        let records: Vec<Record> = values.iter().cloned().map(record).collect();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        let mut plain = BytesMut::new();
        RecordBatchEncoder::encode(&mut plain, records.iter(), &options).expect("plain");
        let ropes: Vec<RecordsRope> = values
            .iter()
            .cloned()
            .map(RecordsRope::contiguous)
            .collect();
        let splices: Vec<Splice<'_>> = ropes
            .iter()
            .zip(&values)
            .map(|(rope, value)| rope.splice(value))
            .collect();
        let mut builder = FrameBuilder::new(&splices, 0);
        RecordBatchEncoder::encode(&mut builder, records.iter(), &options).expect("rope");
        assert_eq!(builder.spliced(), Ok(()));
        assert_eq!(builder.finish().to_bytes(), plain.freeze());
    }

    #[test]
    fn a_stand_in_that_is_never_written_is_reported() {
        // A batch in pieces: a value referenced between framing bytes.
        let records: Vec<crate::batch::PendingRecord> = (0..2u8)
            .map(|fill| crate::batch::PendingRecord {
                timestamp_ms: 7,
                key: None,
                value: Some(Bytes::from(vec![fill; 1024])),
                headers: Vec::new(),
            })
            .collect();
        let mut rope =
            crate::batch::encode(&records, crate::Compression::None, 7, 7).expect("encode");
        assert!(rope.as_contiguous().is_none());
        let stand_in = rope.stand_in(0);
        let splices = [rope.splice(&stand_in)];
        let length = rope.len_bytes();
        let mut builder = FrameBuilder::new(&splices, 16);
        builder.put_slice(&vec![0u8; length]);
        assert_eq!(
            builder.spliced(),
            Err(SpliceMissed {
                spliced: 0,
                expected: 1
            })
        );
        let mut builder = FrameBuilder::new(&splices, 16);
        builder.put_u8(9);
        builder.put_slice(&stand_in);
        assert_eq!(builder.spliced(), Ok(()));
        let frame = builder.finish();
        assert_eq!(frame.segments().len(), 1 + rope.pieces().count());
        assert_eq!(frame.len_bytes(), 1 + length);
        assert_eq!(&frame.to_bytes()[1..], &rope.to_bytes()[..]);
    }
}
