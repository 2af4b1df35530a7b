//! The buffers an operation carries and gives back with its completion: the caller's `Vec`
//! ([`ReadInto`](super::SyscallOpType::ReadInto), [`WriteFrom`](super::SyscallOpType::WriteFrom)),
//! or a buffer of its process's registered pool ([`FixedBuf`], for
//! [`ReadFixed`](super::SyscallOpType::ReadFixed) and
//! [`WriteFixed`](super::SyscallOpType::WriteFixed)).
//!
//! A pool ([`FixedBuffers`]) is one process's: its memory is allocated once, counted against
//! the process's buffer budget while the pool is registered, and never moves. io_uring registers
//! it with each kernel ring that runs one of its operations (`IORING_REGISTER_BUFFERS_UPDATE`),
//! and then reads into and writes from it by index (`READ_FIXED`, `WRITE_FIXED`): the kernel
//! looks up no pages per request. Where a kernel ring cannot register it (no room, an older
//! kernel, the memory-lock limit) and on the other backends, the same operations read and write
//! the same memory as plain `pread`/`pwrite`: registration only makes them cheaper.
//!
//! Invariant: a pool's buffers are freed only with the pool, and the pool only once no buffer
//! of it is out and nothing holds it registered: a buffer taken from the pool goes back to it
//! when dropped, however the operation that carried it ended. So memory a kernel ring has
//! registered stays allocated, at the address registered, until that ring lets it go.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::{OpError, OpResult, Pid, errno};

/// The most buffers one process's pool holds.
pub const MAX_FIXED_BUFFERS: usize = 64;

/// The largest buffer of a pool (1 MiB).
pub const MAX_FIXED_SIZE: usize = 1 << 20;

/// Pools ever made, for their ids: an id is never used again, so a kernel ring's registration
/// names one pool's memory only.
static POOLS: AtomicU64 = AtomicU64::new(1);

/// Pools retired (unregistered, or their process destroyed): a kernel ring that holds some
/// registered lets them go when it sees this change.
static RETIRED: AtomicU64 = AtomicU64::new(0);

/// A process's pool of registered buffers, made with
/// [`IoUringManager::register_buffers`](crate::syscalls::IoUringManager::register_buffers): its
/// buffers ([`FixedBuf`]) are read into and written from by
/// [`ReadFixed`](super::SyscallOpType::ReadFixed) and
/// [`WriteFixed`](super::SyscallOpType::WriteFixed) where they lie, and go back to it when
/// dropped. Its memory is allocated once and never moves, so that io_uring can register it with
/// the kernel. Cloning it gives another handle to the same pool.
#[derive(Clone)]
pub struct FixedBuffers {
    pool: Arc<Pool>,
}

/// A pool's memory and its free buffers.
pub(crate) struct Pool {
    #[cfg_attr(not(all(feature = "uring", target_os = "linux")), allow(dead_code))]
    id: u64,
    owner: Pid,
    size: usize,
    /// Each buffer's address, as registered: fixed at creation (the buffers never grow).
    addrs: Box<[usize]>,
    /// The buffers not taken (each found by its address in `addrs`).
    free: Mutex<Vec<Vec<u8>>>,
    retired: AtomicBool,
    /// How many kernel rings hold it registered (see [`FixedBuffers::is_last`]).
    kernel_holds: AtomicUsize,
}

impl FixedBuffers {
    /// A pool of `count` buffers of `size` bytes for process `owner`, each allocated fallibly
    /// (`ENOMEM`, never an abort). `count` is 1 to [`MAX_FIXED_BUFFERS`], `size` 1 to
    /// [`MAX_FIXED_SIZE`] (`EINVAL` otherwise).
    pub(crate) fn new(owner: Pid, count: usize, size: usize) -> Result<Self, OpError> {
        if !(1..=MAX_FIXED_BUFFERS).contains(&count) || !(1..=MAX_FIXED_SIZE).contains(&size) {
            return Err(OpError::new(
                errno::EINVAL,
                format!(
                    "register_buffers: {count} buffers of {size} bytes (1 to {MAX_FIXED_BUFFERS} buffers of 1 byte to \
                     1 MiB)"
                ),
            ));
        }
        let mut free = Vec::new();
        free.try_reserve_exact(count).map_err(|_| no_memory(count, size))?;
        for _ in 0..count {
            let mut buf = Vec::new();
            buf.try_reserve_exact(size).map_err(|_| no_memory(count, size))?;
            free.push(buf);
        }
        let addrs = free.iter().map(|buf| buf.as_ptr() as usize).collect();
        // Taken from the end: the first buffer first.
        free.reverse();
        let id = POOLS.fetch_add(1, Ordering::Relaxed);
        Ok(FixedBuffers {
            pool: Arc::new(Pool {
                id,
                owner,
                size,
                addrs,
                free: Mutex::new(free),
                retired: AtomicBool::new(false),
                kernel_holds: AtomicUsize::new(0),
            }),
        })
    }

    /// A buffer of the pool, empty, or `None` if every one is taken (or the pool was
    /// unregistered). It goes back to the pool when dropped.
    pub fn take(&self) -> Option<FixedBuf> {
        if self.pool.is_retired() {
            return None;
        }
        let mut buf = self.pool.free().pop()?;
        buf.clear();
        Some(FixedBuf { buf, pool: Some(self.pool.clone()) })
    }

    /// How many buffers the pool has.
    pub fn count(&self) -> usize {
        self.pool.addrs.len()
    }

    /// Each buffer's capacity in bytes.
    pub fn size(&self) -> usize {
        self.pool.size
    }

    /// How many buffers are in the pool, not taken.
    pub fn available(&self) -> usize {
        self.pool.free().len()
    }

    /// The process whose pool it is.
    pub fn pid(&self) -> Pid {
        self.pool.owner
    }

    /// Whether this is the pool's last handle but for the kernel rings that hold it registered
    /// (each lets it go at its next submission): no other handle, no buffer out.
    pub(crate) fn is_last(&self) -> bool {
        // A kernel ring counts its hold after it took its clone and uncounts it before it drops
        // it, so that a hold is never counted without its clone.
        let kernel = self.pool.kernel_holds.load(Ordering::Acquire);
        Arc::strong_count(&self.pool) <= 1 + kernel
    }

    /// The memory the pool holds, counted against its process's buffer budget until freed.
    pub(crate) fn bytes(&self) -> usize {
        self.pool.bytes()
    }

    /// Ends the pool's registration: no buffer is taken from it again, and kernel rings let its
    /// memory go (each at its next submission, see [`retired_pools`]). Buffers still out stay
    /// usable as plain memory, and are freed with the pool.
    pub(crate) fn retire(&self) {
        if !self.pool.retired.swap(true, Ordering::AcqRel) {
            RETIRED.fetch_add(1, Ordering::Release);
        }
    }
}

impl fmt::Debug for FixedBuffers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedBuffers")
            .field("pid", &self.pool.owner)
            .field("count", &self.count())
            .field("size", &self.pool.size)
            .field("available", &self.available())
            .finish()
    }
}

#[cfg_attr(not(all(feature = "uring", target_os = "linux")), allow(dead_code))]
impl Pool {
    fn free(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The index of the buffer at `addr` (at most [`MAX_FIXED_BUFFERS`] to look through).
    fn index_of(&self, addr: usize) -> Option<u16> {
        self.addrs.iter().position(|&a| a == addr).map(|i| i as u16)
    }

    /// The id no other pool has had.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The memory of all its buffers.
    pub(crate) fn bytes(&self) -> usize {
        self.size * self.addrs.len()
    }

    /// Each buffer's address and length, by index: what a kernel ring registers.
    pub(crate) fn memory(&self) -> impl ExactSizeIterator<Item = (usize, usize)> + '_ {
        self.addrs.iter().map(|&addr| (addr, self.size))
    }

    /// Whether it was unregistered (or its process destroyed).
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// A kernel ring holds it registered (counted after it took its clone).
    pub(crate) fn kernel_holds(&self) {
        self.kernel_holds.fetch_add(1, Ordering::AcqRel);
    }

    /// A kernel ring lets it go (uncounted before it drops its clone).
    pub(crate) fn kernel_lets_go(&self) {
        self.kernel_holds.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How many pools were retired so far: a kernel ring that saw another count lets go of those
/// it holds ([`Pool::is_retired`]).
#[cfg(all(feature = "uring", target_os = "linux"))]
pub(crate) fn retired_pools() -> u64 {
    RETIRED.load(Ordering::Acquire)
}

fn no_memory(count: usize, size: usize) -> OpError {
    OpError::new(rustix::io::Errno::NOMEM.raw_os_error(), format!("cannot allocate {count} buffers of {size} bytes"))
}

/// A buffer of a process's registered pool ([`FixedBuffers::take`]): bytes up to a fixed
/// capacity, read into by [`ReadFixed`](super::SyscallOpType::ReadFixed) (after its bytes) and
/// written from by [`WriteFixed`](super::SyscallOpType::WriteFixed). It never grows, so its memory
/// stays where the kernel registered it. Dropped, it goes back to its pool.
///
/// It dereferences to its bytes (`len` of them). A clone is a copy of the bytes in memory of no
/// pool, which those operations read and write as plain memory.
pub struct FixedBuf {
    buf: Vec<u8>,
    /// The pool it goes back to (its index there is its address's in the pool: a `FixedBuf`
    /// is kept to 32 bytes, so that operations carrying one are no larger than the others).
    pool: Option<Arc<Pool>>,
}

impl FixedBuf {
    /// How many bytes it can hold.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// How many more bytes it can hold.
    pub fn spare(&self) -> usize {
        self.buf.capacity() - self.buf.len()
    }

    /// Forgets its bytes.
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// Keeps only the first `len` bytes (no change if it holds fewer).
    pub fn truncate(&mut self, len: usize) {
        self.buf.truncate(len);
    }

    /// Appends as much of `data` as fits, and returns how many bytes that was.
    pub fn extend_from_slice(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.spare());
        self.buf.extend_from_slice(&data[..n]);
        n
    }

    /// Its index in its pool; `None` for a copy, of no pool.
    pub fn index(&self) -> Option<usize> {
        self.home().map(|(_, index)| usize::from(index))
    }

    /// The process whose pool it came from; `None` for a copy.
    pub fn pid(&self) -> Option<Pid> {
        self.pool.as_ref().map(|pool| pool.owner)
    }

    /// An empty buffer of no pool: what an operation is left with once its buffer is taken out.
    pub(crate) fn empty() -> Self {
        FixedBuf { buf: Vec::new(), pool: None }
    }

    /// Its pool and its index there, while it has one.
    pub(crate) fn home(&self) -> Option<(&Arc<Pool>, u16)> {
        let pool = self.pool.as_ref()?;
        Some((pool, pool.index_of(self.buf.as_ptr() as usize)?))
    }

    /// Its memory, to read into and write from where it lies. Whoever holds it must not grow it
    /// past its capacity (which would move it): a read asks at most [`spare`](Self::spare)
    /// bytes, checked at submission.
    pub(crate) fn vec_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
}

impl Deref for FixedBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf
    }
}

impl DerefMut for FixedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }
}

impl Clone for FixedBuf {
    /// A copy of its bytes, with as much capacity, in memory of no pool.
    fn clone(&self) -> Self {
        let mut buf = Vec::with_capacity(self.buf.capacity());
        buf.extend_from_slice(&self.buf);
        FixedBuf { buf, pool: None }
    }
}

impl PartialEq for FixedBuf {
    /// Equal bytes.
    fn eq(&self, other: &Self) -> bool {
        self.buf == other.buf
    }
}

impl Eq for FixedBuf {}

impl fmt::Debug for FixedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedBuf")
            .field("len", &self.buf.len())
            .field("capacity", &self.buf.capacity())
            .field("index", &self.index())
            .finish()
    }
}

impl Drop for FixedBuf {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.free().push(std::mem::take(&mut self.buf));
        }
    }
}

/// The caller's buffer an operation carries, given back with its completion however it ends:
/// a `Vec` ([`OpResult::Buf`]) or a buffer of a registered pool ([`OpResult::Fixed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LentBuf {
    /// Of a `ReadInto` or `WriteFrom`.
    Vec(Vec<u8>),
    /// Of a `ReadFixed` or `WriteFixed`.
    Fixed(FixedBuf),
}

impl From<Vec<u8>> for LentBuf {
    fn from(buf: Vec<u8>) -> Self {
        LentBuf::Vec(buf)
    }
}

impl From<FixedBuf> for LentBuf {
    fn from(buf: FixedBuf) -> Self {
        LentBuf::Fixed(buf)
    }
}

impl LentBuf {
    /// How many bytes it holds.
    pub fn len(&self) -> usize {
        match self {
            LentBuf::Vec(buf) => buf.len(),
            LentBuf::Fixed(buf) => buf.len(),
        }
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            LentBuf::Vec(buf) => buf,
            LentBuf::Fixed(buf) => buf,
        }
    }

    /// Its memory, to read into and write from where it lies. A fixed buffer must not grow (see
    /// [`FixedBuf::vec_mut`]): only a `Vec` is ever grown ([`is_fixed`](Self::is_fixed)).
    pub(crate) fn vec_mut(&mut self) -> &mut Vec<u8> {
        match self {
            LentBuf::Vec(buf) => buf,
            LentBuf::Fixed(buf) => buf.vec_mut(),
        }
    }

    /// What a read of up to `size` bytes into it may ask: all of it for a `Vec` (grown if it
    /// must be), at most the spare capacity of a fixed buffer, which never grows.
    pub(crate) fn read_size(&self, size: usize) -> usize {
        match self {
            LentBuf::Vec(_) => size,
            LentBuf::Fixed(buf) => size.min(buf.spare()),
        }
    }

    /// The result of the operation that carried it and moved `count` bytes.
    pub(crate) fn into_result(self, count: usize) -> OpResult {
        match self {
            LentBuf::Vec(buf) => OpResult::Buf { count, buf },
            LentBuf::Fixed(buf) => OpResult::Fixed { count, buf },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_carrying_a_registered_buffer_are_no_larger_than_the_others() {
        assert_eq!(std::mem::size_of::<FixedBuf>(), 32);
        assert!(std::mem::size_of::<super::super::SyscallOpType>() <= 72);
    }

    #[test]
    fn buffers_go_back_to_their_pool_and_keep_their_memory() {
        let pool = FixedBuffers::new(7, 2, 4096).unwrap();
        let addrs: Vec<usize> = pool.pool.memory().map(|(addr, _)| addr).collect();
        let mut a = pool.take().unwrap();
        assert_eq!((a.index(), a.capacity(), a.len(), a.pid()), (Some(0), 4096, 0, Some(7)));
        assert_eq!(a.extend_from_slice(&[1; 5000]), 4096);
        assert_eq!(a.spare(), 0);
        let b = pool.take().unwrap();
        assert!(pool.take().is_none());
        assert_eq!(pool.available(), 0);
        // A copy is of no pool, and equal.
        let copy = a.clone();
        assert_eq!((copy.index(), copy.len()), (None, 4096));
        assert_eq!(copy, a);
        drop(copy);
        assert_eq!(pool.available(), 0);
        a.clear();
        drop(a);
        drop(b);
        assert_eq!(pool.available(), 2);
        // Each comes back empty, at the address registered.
        let again = pool.take().unwrap();
        assert_eq!((again.len(), again.as_ptr() as usize), (0, addrs[again.index().unwrap()]));
        drop(again);
        pool.retire();
        assert!(pool.take().is_none());
        assert!(pool.pool.is_retired());
    }

    #[test]
    fn a_pool_outside_the_limits_is_refused() {
        for (count, size) in [(0, 16), (MAX_FIXED_BUFFERS + 1, 16), (1, 0), (1, MAX_FIXED_SIZE + 1)] {
            assert_eq!(FixedBuffers::new(1, count, size).unwrap_err().errno(), errno::EINVAL);
        }
    }
}
