//! [`CompletionStream`]: a ring's CQ as a `Stream`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::ring::SyscallCompletionRing;
use crate::op::SyscallCompletionEntry;

/// The completions of a ring's CQ, in completion order: everything submitted with `submit`,
/// `submit_batch`, or a detached future. It shares the CQ with `reap_completions` and
/// `wait_completion` (each completion goes to whichever takes it first) and ends once the ring is
/// destroyed. Works under any executor.
///
/// Each stream (each clone too) keeps at most one waker in its ring, which dropping the stream
/// removes: polling costs the same however many streams were made and dropped.
#[derive(Debug)]
pub struct CompletionStream {
    ring: Arc<SyscallCompletionRing>,
    /// This stream's key for its waker in the ring.
    id: u64,
}

impl CompletionStream {
    pub(crate) fn new(ring: Arc<SyscallCompletionRing>) -> Self {
        let id = ring.new_stream_id();
        CompletionStream { ring, id }
    }

    /// The ring this stream drains.
    pub fn ring(&self) -> &Arc<SyscallCompletionRing> {
        &self.ring
    }
}

impl Stream for CompletionStream {
    type Item = SyscallCompletionEntry;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SyscallCompletionEntry>> {
        self.ring.poll_cq(self.id, cx)
    }
}

impl Clone for CompletionStream {
    fn clone(&self) -> Self {
        CompletionStream::new(self.ring.clone())
    }
}

impl Drop for CompletionStream {
    fn drop(&mut self) {
        self.ring.forget_stream(self.id);
    }
}
