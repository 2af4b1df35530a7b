//! Sequence numbers: taken by rings in blocks from one program-wide counter, so that a number
//! names an operation of one ring lifetime only.

use super::RingState;

/// How many sequence numbers a ring takes at a time. A batch (at most
/// [`MAX_RING_SIZE`](super::MAX_RING_SIZE) operations) always fits in one.
const SEQ_BLOCK: u64 = 1 << 20;

/// The next block of sequence numbers not yet given to any ring, counted in blocks: shared by
/// every ring of the program, so that a sequence number names an operation of one ring lifetime
/// only. A stale number kept from a destroyed ring is unknown to every later ring of its pid
/// instead of naming another tenant's operation. A block's first number is never issued, so 0
/// is never a sequence number. (2^44 blocks: not exhausted in the life of any program.)
static NEXT_SEQ_BLOCK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The blocks of sequence numbers one ring was given, in increasing order.
#[derive(Default)]
pub(super) struct SeqBlocks {
    starts: Vec<u64>,
}

impl SeqBlocks {
    /// Takes a new block; returns its first number to issue: one past the block's start, so
    /// that each ring's first operation is one of those sampled for latency (see
    /// [`SAMPLE_EVERY`](super::timing::SAMPLE_EVERY)).
    fn take_new(&mut self) -> u64 {
        let start = NEXT_SEQ_BLOCK.fetch_add(1, std::sync::atomic::Ordering::Relaxed) * SEQ_BLOCK;
        self.starts.push(start);
        start + 1
    }

    /// One past the last number of the newest block (0 before the first).
    fn end(&self) -> u64 {
        self.starts.last().map_or(0, |s| s + SEQ_BLOCK)
    }

    /// Whether `seq` lies in one of the blocks.
    fn contains(&self, seq: u64) -> bool {
        let i = self.starts.partition_point(|&s| s <= seq);
        i > 0 && seq - self.starts[i - 1] < SEQ_BLOCK
    }
}

impl RingState {
    /// Makes room for `n` consecutive sequence numbers from `next_seq`: a batch's numbers are
    /// consecutive, so a batch that would cross the end of the ring's block starts a new one.
    pub(super) fn reserve_seqs(&mut self, n: u64) {
        if self.next_seq == 0 || self.next_seq + n > self.blocks.end() {
            self.next_seq = self.blocks.take_new();
        }
    }

    /// Whether this ring issued `seq` (whether or not it has completed since).
    pub(super) fn issued(&self, seq: u64) -> bool {
        seq < self.next_seq && self.blocks.contains(seq)
    }
}
