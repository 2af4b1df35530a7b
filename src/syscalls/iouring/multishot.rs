//! [`Multishot`]: the results of one multishot operation, and then its completion, as a
//! `Stream`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::stream::{FusedStream, Stream};

use super::ring::SyscallCompletionRing;
use crate::op::SyscallCompletionEntry;

/// The results of one operation submitted with
/// [`IoUringManager::submit_multishot`](super::IoUringManager::submit_multishot), as they come,
/// and then the operation's own completion, after which the stream ends.
///
/// Each item is an entry with the operation's `seq` and `user_data`: a result (an
/// `AcceptMulti`'s connection, or its error), or, last, the completion, which says how the
/// operation ended; [`is_terminated`](FusedStream::is_terminated) tells the two apart once
/// an item is taken. A multishot operation never puts anything in the ring's CQ.
///
/// Results wait for the stream in the ring: once [`SHOTS_WAITING`](super::SHOTS_WAITING) wait
/// untaken the operation is told to stop (a few more may arrive as it stops; each holds a place
/// in the descriptor table), and it ends with its completion
/// ([`OpResult::None`](crate::op::OpResult::None) for an `AcceptMulti`): the caller submits it
/// again for more. Dropping the stream before its completion cancels the operation and closes
/// the descriptors of results not taken: their connections are reset.
#[must_use = "dropping a Multishot cancels its operation"]
#[derive(Debug)]
pub struct Multishot {
    ring: Arc<SyscallCompletionRing>,
    seq: u64,
    /// Set once the completion was taken.
    finished: bool,
}

impl Multishot {
    pub(crate) fn new(ring: Arc<SyscallCompletionRing>, seq: u64) -> Self {
        Multishot { ring, seq, finished: false }
    }

    /// The operation's sequence number (what
    /// [`IoUringManager::cancel`](super::IoUringManager::cancel) takes).
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl Stream for Multishot {
    type Item = SyscallCompletionEntry;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SyscallCompletionEntry>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let (entry, last) = std::task::ready!(self.ring.poll_shot(self.seq, cx));
        self.finished = last;
        Poll::Ready(Some(entry))
    }
}

impl FusedStream for Multishot {
    /// Whether the operation's completion was taken: the last item was it.
    fn is_terminated(&self) -> bool {
        self.finished
    }
}

impl Drop for Multishot {
    fn drop(&mut self) {
        if !self.finished {
            self.ring.abandon(self.seq);
        }
    }
}
