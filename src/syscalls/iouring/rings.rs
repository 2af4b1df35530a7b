//! The manager's rings by pid, and each thread's memory of the last few it looked up.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

use rustc_hash::FxHashMap;

use super::ring::SyscallCompletionRing;
use crate::op::Pid;

/// The rings of one manager, by pid.
///
/// A lookup is answered from the calling thread's memory of its last lookups when nothing was
/// added or removed since (the map's `epoch` is unchanged): submitters on different cores then
/// share no lock and no written line to find their rings. Anything else reads the map under
/// its lock.
pub(super) struct Rings {
    map: RwLock<FxHashMap<Pid, Arc<SyscallCompletionRing>>>,
    /// Unique among the process's managers, so that a thread's memory never answers for
    /// another manager (one made where a dropped one was).
    id: u64,
    /// Bumped, under the write lock, by every change to the map.
    epoch: AtomicU64,
}

/// How many lookups a thread remembers (a thread serving a few tenants in turn).
const REMEMBERED: usize = 4;

/// One remembered lookup. The ring is held weakly: a thread's memory keeps no ring alive.
struct Remembered {
    manager: u64,
    epoch: u64,
    pid: Pid,
    ring: Weak<SyscallCompletionRing>,
}

thread_local! {
    static LAST: RefCell<([Option<Remembered>; REMEMBERED], usize)> = const { RefCell::new(([const { None }; REMEMBERED], 0)) };
}

impl Default for Rings {
    fn default() -> Self {
        static IDS: AtomicU64 = AtomicU64::new(0);
        Rings { map: RwLock::default(), id: IDS.fetch_add(1, Ordering::Relaxed), epoch: AtomicU64::new(0) }
    }
}

impl Rings {
    /// The ring of `pid`, if it has one.
    pub(super) fn get(&self, pid: Pid) -> Option<Arc<SyscallCompletionRing>> {
        // Read before the map: a change made after it shows as a new epoch, so what is
        // remembered with it is never taken for current once the map has changed.
        let epoch = self.epoch.load(Ordering::Acquire);
        let remembered = LAST.try_with(|last| {
            let last = last.borrow();
            last.0.iter().flatten().find_map(|r| {
                (r.manager == self.id && r.epoch == epoch && r.pid == pid).then(|| r.ring.upgrade()).flatten()
            })
        });
        if let Ok(Some(ring)) = remembered {
            return Some(ring);
        }
        let ring = self.read().get(&pid).cloned()?;
        let _ = LAST.try_with(|last| {
            let (slots, next) = &mut *last.borrow_mut();
            slots[*next] = Some(Remembered { manager: self.id, epoch, pid, ring: Arc::downgrade(&ring) });
            *next = (*next + 1) % REMEMBERED;
        });
        Some(ring)
    }

    pub(super) fn read(&self) -> RwLockReadGuard<'_, FxHashMap<Pid, Arc<SyscallCompletionRing>>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The map, to change: every thread's memory of it is out of date once the guard is dropped.
    pub(super) fn write(&self) -> RingsMut<'_> {
        RingsMut { map: self.map.write().unwrap_or_else(|e| e.into_inner()), epoch: &self.epoch }
    }
}

/// The rings' map under its write lock; bumps the epoch as it is let go of.
pub(super) struct RingsMut<'a> {
    map: RwLockWriteGuard<'a, FxHashMap<Pid, Arc<SyscallCompletionRing>>>,
    epoch: &'a AtomicU64,
}

impl Drop for RingsMut<'_> {
    fn drop(&mut self) {
        // Still under the lock (the guard is dropped after this).
        self.epoch.fetch_add(1, Ordering::Release);
    }
}

impl Deref for RingsMut<'_> {
    type Target = FxHashMap<Pid, Arc<SyscallCompletionRing>>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl DerefMut for RingsMut<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.map
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::op::{IoUringError, SyscallOpType};
    use crate::syscalls::IoUringManager;

    fn manager() -> IoUringManager {
        IoUringManager::new()
    }

    #[test]
    fn a_remembered_ring_is_not_answered_once_destroyed_or_replaced() {
        let m = manager();
        let first = m.create_ring(1, None, None).unwrap();
        assert!(Arc::ptr_eq(&m.ring(1).unwrap(), &first));
        assert!(Arc::ptr_eq(&m.ring(1).unwrap(), &first), "remembered");
        m.destroy_ring(1).unwrap();
        assert!(matches!(m.ring(1), Err(IoUringError::NoRing { pid: 1 })));
        assert!(matches!(m.submit(1, SyscallOpType::Nop).map(|_| ()), Ok(())), "a new ring is made");
        let second = m.ring(1).unwrap();
        assert!(!Arc::ptr_eq(&second, &first));
        // Another thread's memory is its own.
        std::thread::scope(|s| {
            s.spawn(|| assert!(Arc::ptr_eq(&m.ring(1).unwrap(), &second)));
        });
        assert!(Arc::ptr_eq(&m.ring(1).unwrap(), &second));
    }

    #[test]
    fn a_thread_remembers_no_ring_alive_and_no_other_managers() {
        let (a, b) = (manager(), manager());
        let ring = a.create_ring(7, None, None).unwrap();
        let weak = Arc::downgrade(&ring);
        drop(ring);
        assert!(a.ring(7).is_ok());
        assert!(matches!(b.ring(7), Err(IoUringError::NoRing { pid: 7 })), "b has no ring 7");
        drop(a);
        assert!(weak.upgrade().is_none(), "the thread's memory keeps nothing alive");
        assert!(matches!(b.ring(7), Err(IoUringError::NoRing { pid: 7 })));
    }

    #[test]
    fn counts_from_many_threads_add_up() {
        let m = manager();
        std::thread::scope(|s| {
            for pid in 1..=20 {
                let m = &m;
                s.spawn(move || {
                    for _ in 0..50 {
                        let seq = m.submit(pid, SyscallOpType::Nop).unwrap();
                        m.wait_completion(pid, seq).unwrap();
                    }
                });
            }
        });
        let stats = m.stats();
        assert_eq!((stats.total_submissions, stats.total_completions, stats.pending), (1000, 1000, 0));
    }
}
