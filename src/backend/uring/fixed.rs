//! One kernel ring's registered buffers: the pools of `ReadFixed` and `WriteFixed` it has
//! registered (`IORING_REGISTER_BUFFERS_UPDATE` into a sparse table), so that their requests are
//! `READ_FIXED` and `WRITE_FIXED`, with no page lookup per request.
//!
//! The table has [`BLOCKS`] blocks of [`MAX_FIXED_BUFFERS`] slots, one block per pool, taken
//! the first time one of the pool's requests is prepared on this ring. A pool this ring cannot
//! register (no free block, no sparse table before Linux 5.13, the memory-lock limit) has its
//! requests read and write the same memory as plain `READ` and `WRITE`: registration is never
//! the reason a request fails, and one tenant's pools cannot take more than one block of a ring.
//!
//! Invariant: the table holds each registered pool (an `Arc`) until it has cleared the pool's
//! slots, and the pool frees its memory only once nothing holds it, so the kernel's slots always
//! name memory that is allocated where it was registered. A retired pool's slots are cleared the
//! next time this ring registers a pool, or prepares a request of a registered one, after a
//! retirement; a ring dropped with pools registered is closed before it lets them go.

use std::sync::{Arc, Weak};

use io_uring::IoUring;
use rustc_hash::FxHashMap;

use crate::op::{MAX_FIXED_BUFFERS, Pool, retired_pools};

/// Blocks of the table: pools one kernel ring registers at once.
pub(super) const BLOCKS: usize = 64;

/// What one kernel ring has registered.
#[derive(Default)]
pub(super) struct Registered {
    /// Whether the kernel ring has its sparse table: `None` until a pool is first registered.
    table: Option<bool>,
    /// Each block's pool.
    blocks: Vec<Option<Arc<Pool>>>,
    /// Each pool met (by id, kept while it lives): its block, or `None` if the kernel refused to
    /// register it (never asked again).
    pools: FxHashMap<u64, (Weak<Pool>, Option<usize>)>,
    /// [`retired_pools`] when the table was last swept.
    swept: u64,
}

impl Registered {
    /// The index in the kernel ring's table of buffer `index` of `pool`, the pool registered
    /// first if it is not yet; `None` where it cannot be (the request is then a plain `READ` or
    /// `WRITE` of the same memory).
    pub(super) fn index(&mut self, ring: &IoUring, pool: &Arc<Pool>, index: u16) -> Option<u16> {
        if retired_pools() != self.swept {
            self.sweep(ring);
        }
        if pool.is_retired() {
            return None;
        }
        let block = match self.pools.get(&pool.id()) {
            Some(&(_, block)) => block?,
            None => self.register(ring, pool)?,
        };
        // At most BLOCKS * MAX_FIXED_BUFFERS (4,096) slots: a u16.
        Some((block * MAX_FIXED_BUFFERS) as u16 + index)
    }

    /// Registers `pool` in a free block: the block, or `None` (no table, no free block, the
    /// kernel refused it).
    fn register(&mut self, ring: &IoUring, pool: &Arc<Pool>) -> Option<usize> {
        let table = *self.table.get_or_insert_with(|| {
            let slots = (BLOCKS * MAX_FIXED_BUFFERS) as u32;
            match ring.submitter().register_buffers_sparse(slots) {
                Ok(()) => true,
                Err(e) => {
                    tracing::debug!(error = %e, "this kernel ring has no table of registered buffers");
                    false
                }
            }
        });
        if !table {
            return None;
        }
        if self.blocks.is_empty() {
            self.blocks.resize(BLOCKS, None);
        }
        // No free block: asked again at the pool's next request, a block may be free by then.
        let block = self.blocks.iter().position(Option::is_none)?;
        let iovecs: Vec<libc::iovec> = pool
            .memory()
            .map(|(addr, len)| libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: len })
            .collect();
        // SAFETY: each iovec is one of the pool's buffers, allocated at that address for the
        // pool's whole life (they never grow), and the pool lives while `self.blocks` holds it,
        // which it does until its slots are cleared (`sweep`) or the kernel ring is closed.
        let registered = unsafe { ring.submitter().register_buffers_update(Self::base(block), &iovecs, None) };
        let block = match registered {
            Ok(()) => {
                self.blocks[block] = Some(pool.clone());
                Some(block)
            }
            Err(e) => {
                tracing::debug!(error = %e, "a pool of registered buffers could not be registered: plain reads");
                None
            }
        };
        self.pools.insert(pool.id(), (Arc::downgrade(pool), block));
        block
    }

    /// Clears the slots of retired pools and forgets the pools that are gone.
    fn sweep(&mut self, ring: &IoUring) {
        self.swept = retired_pools();
        let empty = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; MAX_FIXED_BUFFERS];
        for (block, held) in self.blocks.iter_mut().enumerate() {
            let Some(pool) = held.as_ref().filter(|pool| pool.is_retired()) else { continue };
            let len = pool.memory().len();
            // SAFETY: empty iovecs register nothing: they clear the slots.
            if unsafe { ring.submitter().register_buffers_update(Self::base(block), &empty[..len], None) }.is_ok() {
                *held = None;
            }
            // One that could not be cleared keeps its pool, and so its memory, until the ring
            // is closed.
        }
        let blocks = &self.blocks;
        self.pools.retain(|_, (pool, block)| {
            block.is_some_and(|b| blocks[b].is_some()) || pool.upgrade().is_some_and(|p| !p.is_retired())
        });
    }

    /// The first slot of `block`.
    fn base(block: usize) -> u32 {
        (block * MAX_FIXED_BUFFERS) as u32
    }
}
