//! The process's pool of registered buffers ([`FixedBuffers`]): made here, retired when it is
//! unregistered or the ring destroyed, its memory counted against the ring's buffer budget until
//! its handles and buffers are all dropped (kernel rings that hold it registered let it go at
//! their next submission). A `ReadFixed` or `WriteFixed` reads and writes a buffer it took from
//! the pool; what it moves is not counted again (the pool's memory is).

use super::{RingState, SyscallCompletionRing};
use crate::op::{FixedBuffers, OpError, SyscallOpType, errno};

impl SyscallCompletionRing {
    /// Makes the process's pool: `count` buffers of `size` bytes. `EBUSY` if it has one,
    /// `ENOMEM` past the buffer budget (checked before anything is allocated) or if the memory
    /// cannot be had, `EINVAL` outside the pool's limits, `ECANCELED` once the ring is destroyed.
    pub(crate) fn register_buffers(&self, count: usize, size: usize) -> Result<FixedBuffers, OpError> {
        let limit = self.process.sandbox().policy().buffered_byte_limit();
        let bytes = count.saturating_mul(size);
        // Refused before it is allocated: a tenant's terabyte is never asked of the allocator.
        {
            let mut s = self.lock();
            s.reclaim_pools();
            s.room_for_pool(bytes, limit)?;
        }
        let pool = FixedBuffers::new(self.pid, count, size)?;
        let mut s = self.lock();
        s.room_for_pool(bytes, limit)?;
        s.buffered += bytes;
        s.pool = Some(pool.clone());
        Ok(pool)
    }

    /// Unregisters the process's pool (see [`RingState::retire_pool`]): whether it had one.
    pub(crate) fn unregister_buffers(&self) -> bool {
        self.lock().retire_pool()
    }
}

impl RingState {
    /// Whether a pool of `bytes` may be registered now, under the budget `limit`.
    fn room_for_pool(&self, bytes: usize, limit: usize) -> Result<(), OpError> {
        if self.destroyed {
            return Err(OpError::cancelled());
        }
        if self.pool.is_some() {
            return Err(OpError::new(
                rustix::io::Errno::BUSY.raw_os_error(),
                "register_buffers: the process has a pool registered",
            ));
        }
        if self.buffered.saturating_add(bytes) > limit {
            return Err(OpError::new(
                rustix::io::Errno::NOMEM.raw_os_error(),
                format!("register_buffers: {bytes} more bytes would pass the policy's {limit} bytes of buffers"),
            ));
        }
        Ok(())
    }

    /// Retires the pool: no buffer is taken from it again, and the kernel rings let it go.
    /// Buffers still out stay the caller's memory, read and written as plain memory if submitted
    /// again. Its memory stays counted until it is freed ([`reclaim_pools`](Self::reclaim_pools)),
    /// so that pools made and unregistered in turn hold no more than the budget. Whether there
    /// was one.
    pub(super) fn retire_pool(&mut self) -> bool {
        let Some(pool) = self.pool.take() else { return false };
        pool.retire();
        self.retired_pools.push(pool);
        self.reclaim_pools();
        true
    }

    /// Gives back to the budget the memory of retired pools that neither the caller nor the
    /// tenant holds any more (a kernel ring may hold one registered until its next submission:
    /// host memory for that while, at most one block of each ring per pool). Asked only where
    /// the budget would refuse something.
    pub(super) fn reclaim_pools(&mut self) {
        if self.destroyed {
            return;
        }
        let mut freed = 0;
        self.retired_pools.retain(|pool| {
            let last = pool.is_last();
            freed += if last { pool.bytes() } else { 0 };
            !last
        });
        self.buffered -= freed;
    }
}

/// The refusal of a `ReadFixed` or `WriteFixed` whose buffer came from another process's pool.
#[cold]
pub(super) fn not_its_pool(op: &SyscallOpType) -> OpError {
    OpError::new(errno::EINVAL, format!("{}: the buffer is of another process's pool", op.name()))
}
