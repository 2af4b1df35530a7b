//! Vectored reads and writes (`Readv`, `ReadvAt`, `Writev`, `WritevAt`) and in-kernel copies
//! (`CopyRange`) on a pool thread.

use rustix::fs::FileType;
use rustix::io::{Errno, IoSlice, IoSliceMut};

use super::{read_buffer, read_capacity, retry, without_file_size_signal};
use crate::backend::OpOutcome;
use crate::op::{OpError, OpResult, errno};
use crate::process::Descriptor;

/// Buffers of `sizes` bytes read from `d`, at `offset` or at its position: each holds what the
/// read put in it, in order. No more is allocated in all than the file can fill (as a `Read`).
pub(super) fn read(d: &Descriptor, sizes: &[usize], offset: Option<u64>) -> OpOutcome {
    refuse_peer(d, if offset.is_some() { "preadv" } else { "readv" })?;
    let total = sizes.iter().fold(0usize, |sum, size| sum.saturating_add(*size));
    let mut left = read_capacity(d, total, offset);
    let mut bufs = Vec::new();
    bufs.try_reserve_exact(sizes.len()).map_err(|_| OpError::from(Errno::NOMEM))?;
    for &size in sizes {
        let n = size.min(left);
        left -= n;
        let mut buf = read_buffer(n)?;
        buf.resize(n, 0);
        bufs.push(buf);
    }
    let got = if total == 0 {
        0
    } else {
        retry(|| {
            let mut slices: Vec<IoSliceMut<'_>> = bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            match offset {
                Some(offset) => rustix::io::preadv(d, &mut slices, offset),
                None => rustix::io::readv(d, &mut slices),
            }
        })?
    };
    fill(&mut bufs, got);
    Ok(OpResult::Buffers(bufs))
}

/// Keeps the first `n` bytes of `bufs`, in order: the buffers past them are left empty.
fn fill(bufs: &mut [Vec<u8>], mut n: usize) {
    for buf in bufs {
        let keep = buf.len().min(n);
        buf.truncate(keep);
        super::fit(buf);
        n -= keep;
    }
}

/// Writes `bufs`, in order, to `d` at `offset` or at its position: one `writev`, which may be
/// short; past the host's file size limit `EFBIG` with no signal.
pub(super) fn write(d: &Descriptor, bufs: &[Vec<u8>], offset: Option<u64>) -> OpOutcome {
    refuse_peer(d, if offset.is_some() { "pwritev" } else { "writev" })?;
    let slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
    let n = retry(|| {
        without_file_size_signal(|| match offset {
            Some(offset) => rustix::io::pwritev(d, &slices, offset),
            None => rustix::io::writev(d, &slices),
        })
    })?;
    Ok(OpResult::Count(n))
}

/// Vectored I/O of a socket, FIFO or terminal would wait on a pool thread: `EINVAL`.
pub(crate) fn refuse_peer(d: &Descriptor, op: &str) -> Result<(), OpError> {
    if d.waits_on_peer() || d.is_stream() {
        return Err(OpError::new(
            errno::EINVAL,
            format!("{op}: a socket, FIFO or terminal (use Send/Recv, Read/Write)"),
        ));
    }
    Ok(())
}

/// The largest copy through memory, where the kernel cannot copy between two files itself.
const COPY_CHUNK: usize = 128 << 10;

/// Copies up to `len` bytes from `src` at `from` to `dst` at `to`: `copy_file_range`, or,
/// where the kernel refuses it for these two files (another file system type, an old kernel),
/// one `pread` and `pwrite` of at most [`COPY_CHUNK`]. Both must be regular files.
pub(super) fn copy(src: &Descriptor, from: u64, dst: &Descriptor, to: u64, len: usize) -> OpOutcome {
    if src.file_type() != FileType::RegularFile || dst.file_type() != FileType::RegularFile {
        return Err(OpError::new(errno::EINVAL, "copy_file_range: both descriptors must be regular files"));
    }
    let (mut at_in, mut at_out) = (from, to);
    let copied = retry(|| {
        without_file_size_signal(|| rustix::fs::copy_file_range(src, Some(&mut at_in), dst, Some(&mut at_out), len))
    });
    match copied {
        Err(e) if [Errno::XDEV, Errno::NOSYS, Errno::OPNOTSUPP].iter().any(|no| e.errno() == no.raw_os_error()) => {
            let mut buf = read_buffer(len.min(COPY_CHUNK))?;
            buf.resize(buf.capacity(), 0);
            let n = retry(|| rustix::io::pread(src, &mut buf, from))?;
            let n = retry(|| without_file_size_signal(|| rustix::io::pwrite(dst, &buf[..n], to)))?;
            Ok(OpResult::Count(n))
        }
        other => other.map(OpResult::Count),
    }
}
