//! A multishot receive's ring of provided buffers (`IORING_REGISTER_PBUF_RING`): the kernel
//! picks a buffer from it for each receive and names it in the completion; the bytes are copied
//! out for the stream and the buffer is handed back to the kernel at once.
//!
//! Each `RecvMulti` has a ring of its own, registered under a buffer group id of its kernel
//! ring's (see `uring::driver`), so one tenant's receives never take another's buffers. The
//! ring and its buffers live here, in the operation's in-flight entry, and are unregistered
//! before they are freed: the kernel is done with them only once the request has completed and
//! its group is unregistered. One that could not be unregistered is never freed.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

use crate::backend::file_ops;
use crate::op::{OpError, RECV_BUFFERS};

// The ring's entries are a power of two, in one page (the kernel requires it page-aligned).
const _: () = assert!(RECV_BUFFERS.is_power_of_two() && RECV_BUFFERS * size_of::<BufRingEntry>() <= 4096);

/// The system's page size (4 KiB, 16 KiB, 64 KiB).
fn page() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // SAFETY: `sysconf` reads a system constant.
    *PAGE.get_or_init(|| usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(4096))
}

/// [`RECV_BUFFERS`] buffers of `size` bytes and the ring the kernel takes them from.
pub(crate) struct Provided {
    ring: NonNull<BufRingEntry>,
    /// The buffers, one after the other; never grown (the ring points into it).
    buffers: Vec<u8>,
    size: usize,
    /// The ring's tail as this side last wrote it (the kernel reads it, and moves the head).
    tail: u16,
    /// The buffer group it is registered under, once it is.
    pub(crate) group: Option<u16>,
}

// SAFETY: the ring pointer is to memory owned by this value alone (allocated in `new`, freed in
// `drop`); only the kernel and this value's methods (through `&mut self`) touch it.
unsafe impl Send for Provided {}

impl Provided {
    /// Buffers of `size` bytes (at most `u32::MAX`), and a full ring of them; `ENOMEM` if they
    /// cannot be had.
    pub(crate) fn new(size: usize) -> Result<Box<Self>, OpError> {
        let enomem = || OpError::new(rustix::io::Errno::NOMEM.raw_os_error(), "no memory for a receive's buffers");
        let len = size.checked_mul(RECV_BUFFERS).ok_or_else(enomem)?;
        let mut buffers = file_ops::read_buffer(len)?;
        // Zeroed once: no reallocation (the capacity is exact), and no byte read is unwritten.
        buffers.resize(len, 0);
        let layout = Layout::from_size_align(page(), page()).map_err(|_| enomem())?;
        // SAFETY: the layout's size is not zero.
        let ring =
            NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }.cast::<BufRingEntry>()).ok_or_else(enomem)?;
        let mut provided = Box::new(Provided { ring, buffers, size, tail: 0, group: None });
        for bid in 0..RECV_BUFFERS as u16 {
            provided.give_back(bid);
        }
        Ok(provided)
    }

    /// The ring's address and entries, to register.
    pub(crate) fn ring(&self) -> (u64, u16) {
        (self.ring.as_ptr() as u64, RECV_BUFFERS as u16)
    }

    /// The bytes the kernel received into buffer `bid` (`len` of them), copied out (the buffer
    /// is the kernel's again only once [`give_back`](Self::give_back) hands it back); `None`
    /// for a buffer id or length the ring never gave.
    pub(crate) fn copy_out(&self, bid: u16, len: usize) -> Option<Result<Vec<u8>, OpError>> {
        if usize::from(bid) >= RECV_BUFFERS || len > self.size {
            return None;
        }
        let start = usize::from(bid) * self.size;
        Some(file_ops::read_buffer(len).map(|mut out| {
            out.extend_from_slice(&self.buffers[start..start + len]);
            out
        }))
    }

    /// Puts buffer `bid` (one the kernel has reported filled, or failed with) at the ring's
    /// tail and publishes it to the kernel; ignored for an id the ring never gave.
    pub(crate) fn give_back(&mut self, bid: u16) {
        if usize::from(bid) >= RECV_BUFFERS {
            return;
        }
        let mask = RECV_BUFFERS as u16 - 1;
        // No reference to the buffers is made: the kernel may be writing into the others.
        let addr = self.buffers.as_mut_ptr().wrapping_add(usize::from(bid) * self.size) as u64;
        // SAFETY: `tail & mask` is below `RECV_BUFFERS`, within the ring's page; the kernel reads
        // only entries between its head and the tail, and this one is past the tail until the
        // store below publishes it. (Entry 0's last field is the tail, which the kernel reads:
        // the setters write the other fields only.)
        let entry = unsafe { &mut *self.ring.as_ptr().add(usize::from(self.tail & mask)) };
        entry.set_addr(addr);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is the `u16` the kernel reads in the ring's first entry
        // (`BufRingEntry::tail`), aligned for an atomic access; the release store publishes the
        // entry written above before the tail that covers it.
        unsafe {
            let tail = BufRingEntry::tail(self.ring.as_ptr()).cast_mut();
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for Provided {
    fn drop(&mut self) {
        if self.group.is_some() {
            // Still registered: the kernel may still write into the buffers, so they are never
            // freed (this is the rare case of an unregistration that failed).
            std::mem::forget(std::mem::take(&mut self.buffers));
            return;
        }
        // SAFETY: allocated in `new` with this layout, and no longer registered with the kernel.
        unsafe { std::alloc::dealloc(self.ring.as_ptr().cast(), Layout::from_size_align_unchecked(page(), page())) };
    }
}
