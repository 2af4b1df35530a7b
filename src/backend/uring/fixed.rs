//! One kernel ring's registered buffers: the pools of `ReadFixed` and `WriteFixed` it has
//! registered (`IORING_REGISTER_BUFFERS_UPDATE` into a sparse table), so that their requests are
//! `READ_FIXED` and `WRITE_FIXED`, with no page lookup per request.
//!
//! The table has [`BLOCKS`] blocks of [`MAX_FIXED_BUFFERS`] slots, one block per pool, taken
//! the first time one of the pool's requests is prepared on this ring. A pool this ring cannot
//! register (no free block, no sparse table before Linux 5.19, more than [`REGISTER_AT_MOST`]
//! bytes, the memory-lock limit) has its
//! requests read and write the same memory as plain `READ` and `WRITE`: registration is never
//! the reason a request fails, and one tenant's pools cannot take more than one block of a ring.
//!
//! Invariant: the table holds each registered pool (an `Arc`) until it has cleared the pool's
//! slots, and the pool frees its memory only once nothing holds it, so the kernel's slots always
//! name memory that is allocated where it was registered. A retired pool's slots are cleared at
//! this ring's next submission after a retirement; a ring dropped with pools registered is
//! closed before it lets them go. A request of a pool retired while it waited to be submitted
//! may find its slot cleared: the kernel then fails it with `EFAULT` (it checks every request's
//! memory against its slot) and touches no memory, and the driver submits it again as a plain
//! request of the same memory.

use std::sync::{Arc, Weak};

use io_uring::IoUring;
use rustc_hash::FxHashMap;

pub(super) use crate::op::retired_pools;
use crate::op::{MAX_FIXED_BUFFERS, Pool};

/// Blocks of the table: pools one kernel ring registers at once.
pub(super) const BLOCKS: usize = 64;

/// The largest pool a kernel ring registers (16 MiB: 4,096 pages to pin).
pub(super) const REGISTER_AT_MOST: usize = 16 << 20;

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
}

impl Registered {
    /// The index in the kernel ring's table of buffer `index` of `pool`, the pool registered
    /// first if it is not yet; `None` where it cannot be (the request is then a plain `READ` or
    /// `WRITE` of the same memory). Retired pools were swept at the start of the submission
    /// ([`sweep`](Self::sweep)).
    pub(super) fn index(&mut self, ring: &IoUring, pool: &Arc<Pool>, index: u16) -> Option<u16> {
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

    /// Registers `pool` in a free block: the block, or `None` (no table, no free block, a pool
    /// larger than [`REGISTER_AT_MOST`], the kernel refused it).
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
        // Pinning a pool's pages takes the kernel ring's locks for as long as it takes: only
        // pools small enough to pin in about a millisecond are registered.
        if !table || pool.bytes() > REGISTER_AT_MOST {
            self.pools.insert(pool.id(), (Arc::downgrade(pool), None));
            return None;
        }
        if self.blocks.is_empty() {
            self.blocks.resize(BLOCKS, None);
        }
        // No free block: asked again at the pool's next request, a block may be free by then.
        let block = self.blocks.iter().position(Option::is_none)?;
        // One buffer per update: the kernel may take some of an update's buffers and refuse the
        // rest (the memory-lock limit) while reporting success.
        let mut done = 0;
        for (i, (addr, len)) in pool.memory().enumerate() {
            let iovec = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: len };
            // SAFETY: the iovec is one of the pool's buffers, allocated at that address for the
            // pool's whole life (they never grow), and the pool lives while `self.blocks` holds
            // it, which it does until its slots are cleared (`clear`) or the kernel ring is
            // closed; a pool only partly registered is held until its slots are cleared.
            match unsafe { ring.submitter().register_buffers_update(Self::base(block) + i as u32, &[iovec], None) } {
                Ok(()) => done += 1,
                Err(e) => {
                    tracing::debug!(error = %e, "a pool of registered buffers could not be registered: plain reads");
                    break;
                }
            }
        }
        self.blocks[block] = Some(pool.clone());
        pool.kernel_holds();
        let registered = done == pool.memory().len();
        if !registered && Self::clear(ring, block, done) {
            Self::let_go(&mut self.blocks[block]);
        }
        let block = registered.then_some(block);
        self.pools.insert(pool.id(), (Arc::downgrade(pool), block));
        block
    }

    /// Clears the first `n` slots of `block`: whether the kernel cleared all of them.
    fn clear(ring: &IoUring, block: usize, n: usize) -> bool {
        let empty = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
        // SAFETY: an empty iovec registers nothing: it clears the slot. One slot per update, as
        // an update may clear some and report success.
        (0..n).all(|i| unsafe {
            ring.submitter().register_buffers_update(Self::base(block) + i as u32, &[empty], None).is_ok()
        })
    }

    /// Clears the slots of retired pools and forgets the pools that are gone: the count of
    /// retirements it saw ([`retired_pools`]).
    pub(super) fn sweep(&mut self, ring: &IoUring) -> u64 {
        let seen = retired_pools();
        for (block, held) in self.blocks.iter_mut().enumerate() {
            let Some(pool) = held.as_ref().filter(|pool| pool.is_retired()) else { continue };
            // One that could not be cleared keeps its pool, and so its memory, until the ring
            // is closed.
            if Self::clear(ring, block, pool.memory().len()) {
                Self::let_go(held);
            }
        }
        let blocks = &self.blocks;
        self.pools.retain(|_, (pool, block)| {
            block.is_some_and(|b| blocks[b].is_some()) || pool.upgrade().is_some_and(|p| !p.is_retired())
        });
        seen
    }

    /// Lets go of a block's pool, its slots cleared (or the kernel ring closed).
    fn let_go(held: &mut Option<Arc<Pool>>) {
        if let Some(pool) = held.take() {
            pool.kernel_lets_go();
        }
    }

    /// The first slot of `block`.
    fn base(block: usize) -> u32 {
        (block * MAX_FIXED_BUFFERS) as u32
    }
}

impl Drop for Registered {
    /// The kernel ring was closed first (see the driver's fields): it holds nothing any more.
    fn drop(&mut self) {
        self.blocks.iter_mut().for_each(Self::let_go);
    }
}
