//! The process's pool of registered buffers ([`FixedBuffers`]): made here, its memory counted
//! against the ring's buffer budget while it is registered, retired when it is unregistered or
//! the ring destroyed. A `ReadFixed` or `WriteFixed` reads and writes a buffer it took from the
//! pool; what it moves is not counted again (the pool's memory is).

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
        self.lock().room_for_pool(bytes, limit)?;
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

    /// Retires the pool: no buffer is taken from it again, its memory leaves the budget, and the
    /// kernel rings let it go. Buffers still out stay the caller's memory, read and written as
    /// plain memory if submitted again. Whether there was one.
    pub(super) fn retire_pool(&mut self) -> bool {
        let Some(pool) = self.pool.take() else { return false };
        self.buffered -= pool.bytes();
        pool.retire();
        true
    }
}

/// The refusal of a `ReadFixed` or `WriteFixed` whose buffer came from another process's pool.
#[cold]
pub(super) fn not_its_pool(op: &SyscallOpType) -> OpError {
    OpError::new(errno::EINVAL, format!("{}: the buffer is of another process's pool", op.name()))
}
