//! File operations as io_uring requests: `NOP`, `READ`, `WRITE`, `READV`, `WRITEV`, `FSYNC` (`fsync` and
//! `fdatasync`), `FTRUNCATE`, `FALLOCATE`, `STATX` and `OPENAT2`; how each
//! is prepared, how its entry is built, and how its completion becomes an outcome.
//!
//! Every buffer and path an entry points into is owned here, in a [`FileKind`] the in-flight
//! table keeps until the completion arrives.

use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;

use io_uring::{opcode, squeue, types};
use rustix::fs::FileType;
use rustix::io::Errno;

use super::{file_size_limited, fit, opened, read_buffer, read_capacity};
use crate::backend::{OpOutcome, Origin};
use crate::op::{LentBuf, OpError, errno};
use crate::op::{OpResult, SyscallOpType};
use crate::process::{Descriptor, FdSlot};
use crate::sandbox::Sandbox;

/// The opcodes file requests use, by name.
pub(crate) const OPCODES: &[(&str, u8)] = &[
    ("NOP", opcode::Nop::CODE),
    ("READ", opcode::Read::CODE),
    ("WRITE", opcode::Write::CODE),
    ("READV", opcode::Readv::CODE),
    ("WRITEV", opcode::Writev::CODE),
    ("FSYNC", opcode::Fsync::CODE),
    ("FTRUNCATE", opcode::Ftruncate::CODE),
    ("STATX", opcode::Statx::CODE),
    ("FALLOCATE", opcode::Fallocate::CODE),
    ("OPENAT2", opcode::OpenAt2::CODE),
];

/// The opcode that runs file operation `op` in the kernel, if any.
pub(crate) fn opcode_of(op: &SyscallOpType) -> Option<u8> {
    Some(match op {
        SyscallOpType::Nop => opcode::Nop::CODE,
        // A registered buffer's `READ_FIXED` (Linux 5.1) where its pool is registered, a `READ`
        // where not: the kernel must have both.
        SyscallOpType::Read { .. }
        | SyscallOpType::ReadAt { .. }
        | SyscallOpType::ReadInto { .. }
        | SyscallOpType::ReadFixed { .. } => opcode::Read::CODE,
        SyscallOpType::Write { .. }
        | SyscallOpType::WriteAt { .. }
        | SyscallOpType::WriteFrom { .. }
        | SyscallOpType::WriteFixed { .. } => opcode::Write::CODE,
        SyscallOpType::Readv { .. } | SyscallOpType::ReadvAt { .. } => opcode::Readv::CODE,
        SyscallOpType::Writev { .. } | SyscallOpType::WritevAt { .. } => opcode::Writev::CODE,
        SyscallOpType::Fsync { .. } | SyscallOpType::Fdatasync { .. } => opcode::Fsync::CODE,
        // Past the host's file size limit a truncate or an allocation raises SIGXFSZ: where
        // there is one, the pool runs them, taking the signal back.
        SyscallOpType::Ftruncate { .. } if !file_size_limited() => opcode::Ftruncate::CODE,
        SyscallOpType::Fallocate { .. } if !file_size_limited() => opcode::Fallocate::CODE,
        SyscallOpType::Fstat { .. } => opcode::Statx::CODE,
        SyscallOpType::Open { .. } => opcode::OpenAt2::CODE,
        _ => None?,
    })
}

/// What a file request owns while the kernel holds it, and what its entry is built from.
pub(crate) enum FileKind {
    Nop,
    /// `len` bytes into `buf`'s spare capacity, after its bytes (none: the read is answered
    /// without the kernel's file). `lent`: `buf` is the caller's (a `ReadInto` or `ReadFixed`),
    /// given back, with the capacity it came with. `fixed`: the index of a registered buffer in
    /// the kernel ring's table, once the driver has its pool registered there (`READ_FIXED`).
    Read {
        buf: LentBuf,
        len: u32,
        offset: u64,
        lent: Option<usize>,
        fixed: Option<u16>,
    },
    /// `data[start..start + len]`. `worker`: submitted with `IOSQE_ASYNC`, so that an io-wq
    /// worker runs it. `lent`: `data` is the caller's (a `WriteFrom` or `WriteFixed`), given
    /// back. `fixed`: as for `Read` (`WRITE_FIXED`).
    Write {
        data: LentBuf,
        start: usize,
        len: u32,
        offset: u64,
        worker: bool,
        lent: bool,
        fixed: Option<u16>,
    },
    Fsync {
        /// Data only (`fdatasync`).
        data: bool,
    },
    Ftruncate {
        len: u64,
    },
    Fallocate {
        mode: u32,
        offset: u64,
        len: u64,
    },
    /// Boxed, as `Open`.
    Vectored(Box<Vectored>),
    /// Boxed, as `Open`: the kernel fills it in (all of it, on success).
    Fstat(Box<std::mem::MaybeUninit<rustix::fs::Statx>>),
    /// Boxed: an open owns much more than the other requests, and every in-flight entry is as
    /// large as the largest kind.
    Open(Box<Open>),
}

/// What a `READV` or `WRITEV` request owns: the buffers, and the `iovec`s pointing into them
/// (into their spare capacity, for a read), whose heap memory stays put however this moves.
pub(crate) struct Vectored {
    bufs: Vec<Vec<u8>>,
    iovecs: Vec<libc::iovec>,
    offset: u64,
    write: bool,
    /// Submitted with `IOSQE_ASYNC`, as a `Write` may be.
    worker: bool,
}

// SAFETY: the `iovec`s' raw pointers point only into `bufs`, which this value owns and moves
// with it; nothing else reads or writes through them but the kernel, while the in-flight table
// holds this value.
unsafe impl Send for Vectored {}

impl Vectored {
    /// `bufs` to write, each whole (`read` is `None`), or empty buffers to read into, each up
    /// to its length in `read` (at most its capacity).
    fn new(bufs: Vec<Vec<u8>>, read: Option<&[usize]>, offset: u64, worker: bool) -> Result<Box<Vectored>, OpError> {
        let mut iovecs = Vec::new();
        iovecs.try_reserve_exact(bufs.len()).map_err(|_| OpError::from(Errno::NOMEM))?;
        let mut v = Box::new(Vectored { bufs, iovecs, offset, write: read.is_none(), worker });
        let Vectored { bufs, iovecs, .. } = &mut *v;
        iovecs.extend(bufs.iter_mut().enumerate().map(|(i, b)| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: read.map_or(b.len(), |lens| lens[i].min(b.capacity())),
        }));
        Ok(v)
    }
}

/// What an `OPENAT2` request owns.
pub(crate) struct Open {
    path: CString,
    how: types::OpenHow,
    name: String,
    /// The flags as the tenant gave them.
    flags: u32,
    rooted: bool,
    /// The descriptor's place, taken before the kernel opens anything.
    place: FdSlot,
}

/// What a file request names, to be kept open until the kernel is done with it.
pub(crate) enum Names {
    /// Nothing (a `NOP`).
    Nothing,
    /// A descriptor of the process.
    File(Arc<Descriptor>),
    /// The directory an open starts from (the sandbox's root, or the working directory), kept
    /// open by the sandbox.
    Dir(i32, Arc<Sandbox>),
}

/// The "current position" offset for `READ`/`WRITE`.
pub(crate) const CURRENT: u64 = u64::MAX;

/// Resolves what file operation `op` (operation `seq` of `origin`) names, with `file` looking a
/// descriptor up, and takes ownership of what its entry will point into. An `Open` uses the
/// rights it was submitted with. A `Read` or `Write` is prepared with [`read`] or [`write`]
/// instead, once its descriptor is known not to be a socket (a socket's is a socket request).
#[inline]
pub(crate) fn prepare(
    op: SyscallOpType,
    origin: &Origin,
    seq: u64,
    file: &mut impl FnMut(i32) -> Result<Arc<Descriptor>, OpError>,
) -> Result<(FileKind, Names), OpError> {
    Ok(match op {
        SyscallOpType::Nop => (FileKind::Nop, Names::Nothing),
        SyscallOpType::ReadAt { fd, offset, size } => {
            let d = file(fd)?;
            if d.is_stream() {
                return Err(no_offsets("pread"));
            }
            (read_at(&d, size, offset)?, Names::File(d))
        }
        SyscallOpType::WriteAt { fd, offset, data } => {
            let d = file(fd)?;
            if d.is_stream() {
                return Err(no_offsets("pwrite"));
            }
            (write_at(&d, data, offset), Names::File(d))
        }
        SyscallOpType::Readv { fd, sizes } => readv(file(fd)?, &sizes, CURRENT)?,
        SyscallOpType::ReadvAt { fd, offset, sizes } => readv(file(fd)?, &sizes, offset)?,
        SyscallOpType::Writev { fd, bufs } => writev(file(fd)?, bufs, CURRENT)?,
        SyscallOpType::WritevAt { fd, offset, bufs } => writev(file(fd)?, bufs, offset)?,
        SyscallOpType::Fsync { fd } => (FileKind::Fsync { data: false }, Names::File(file(fd)?)),
        SyscallOpType::Fdatasync { fd } => (FileKind::Fsync { data: true }, Names::File(file(fd)?)),
        SyscallOpType::Ftruncate { fd, len } => (FileKind::Ftruncate { len }, Names::File(file(fd)?)),
        SyscallOpType::Fallocate { fd, mode, offset, len } => {
            (FileKind::Fallocate { mode, offset, len }, Names::File(file(fd)?))
        }
        SyscallOpType::Fstat { fd } => (FileKind::Fstat(Box::new_uninit()), Names::File(file(fd)?)),
        SyscallOpType::Open { path, flags, mode } => {
            let sandbox = origin.rights(seq)?;
            let (dir, target, resolve) = sandbox.open_at(&path)?;
            let c_path = CString::new(target)
                .map_err(|_| OpError::new(errno::EINVAL, format!("open {path:?}: the path holds a NUL byte")))?;
            let (oflags, mode) = sandbox.kernel_flags(flags, mode);
            let how = types::OpenHow::new().flags(oflags.bits() as u64).mode(u64::from(mode.bits())).resolve(resolve);
            let place = origin.process().reserve_fd(&sandbox)?;
            let kind =
                FileKind::Open(Box::new(Open { path: c_path, how, name: path, flags, rooted: resolve != 0, place }));
            (kind, Names::Dir(dir, sandbox))
        }
        other => {
            return Err(OpError::new(errno::EINVAL, format!("{} is not an io_uring operation here", other.name())));
        }
    })
}

/// The error of a read or write at an offset (`what`) of a socket or a pipe: `ESPIPE`, as
/// pread(2) and pwrite(2) say (the kernel's READ and WRITE would ignore the offset).
pub(crate) fn no_offsets(what: &str) -> OpError {
    OpError::new(Errno::SPIPE.raw_os_error(), format!("{what}: the descriptor is a socket or a pipe (no offsets)"))
}

/// A `READV` of `d` at `offset` ([`CURRENT`]: at its position) into buffers of `sizes` bytes,
/// no more in all than the file can fill.
fn readv(d: Arc<Descriptor>, sizes: &[usize], offset: u64) -> Result<(FileKind, Names), OpError> {
    super::vectored::refuse_peer(&d, "readv")?;
    let total = sizes.iter().fold(0usize, |sum, size| sum.saturating_add(*size));
    let mut left = read_capacity(&d, total, (offset != CURRENT).then_some(offset));
    let (mut bufs, mut lens) = (Vec::new(), Vec::new());
    bufs.try_reserve_exact(sizes.len()).map_err(|_| OpError::from(Errno::NOMEM))?;
    lens.try_reserve_exact(sizes.len()).map_err(|_| OpError::from(Errno::NOMEM))?;
    for size in sizes {
        let n = (*size).min(left);
        left -= n;
        bufs.push(read_buffer(n)?);
        lens.push(n);
    }
    Ok((FileKind::Vectored(Vectored::new(bufs, Some(&lens), offset, false)?), Names::File(d)))
}

/// A `WRITEV` of `bufs` to `d` at `offset` ([`CURRENT`]: at its position); by an io-wq worker
/// where it may raise SIGXFSZ, as [`write_at`].
fn writev(d: Arc<Descriptor>, bufs: Vec<Vec<u8>>, offset: u64) -> Result<(FileKind, Names), OpError> {
    super::vectored::refuse_peer(&d, "writev")?;
    let worker = d.file_type() == FileType::RegularFile && file_size_limited();
    Ok((FileKind::Vectored(Vectored::new(bufs, None, offset, worker)?), Names::File(d)))
}

/// A `Read` of `d` (not a socket) at its position.
#[inline]
pub(crate) fn read(d: &Descriptor, size: usize) -> Result<FileKind, OpError> {
    read_at(d, size, CURRENT)
}

/// A `Write` of `data` to `d` (not a socket) at its position.
#[inline]
pub(crate) fn write(d: &Descriptor, data: Vec<u8>) -> FileKind {
    write_at(d, data, CURRENT)
}

/// A `READ` of up to `size` bytes of `d` at `offset` ([`CURRENT`]: at its position), into a
/// buffer no larger than the file can fill; `ENOMEM` if it cannot be had.
#[inline]
fn read_at(d: &Descriptor, size: usize, offset: u64) -> Result<FileKind, OpError> {
    // Sizes were checked against MAX_IO_SIZE, which fits a u32.
    let len = read_capacity(d, size, (offset != CURRENT).then_some(offset));
    let buf = read_buffer(len)?;
    let len = len as u32;
    Ok(FileKind::Read { buf: LentBuf::Vec(buf), len, offset, lent: None, fixed: None })
}

/// A `READ` of up to `size` bytes of `d` (not a socket) at `offset` ([`CURRENT`]: at its
/// position) into the caller's `buf`, after its bytes (a `ReadInto` or `ReadFixed`): the buffer
/// comes back with an error if it cannot grow to what the read needs.
pub(crate) fn read_into(d: &Descriptor, mut buf: LentBuf, size: usize, offset: u64) -> Result<FileKind, OpError> {
    let had = buf.vec_mut().capacity();
    let size = buf.read_size(size);
    match super::room_for(d, buf.vec_mut(), size, (offset != CURRENT).then_some(offset)) {
        // Sizes were checked against MAX_IO_SIZE, which fits a u32.
        Ok(len) => Ok(FileKind::Read { buf, len: len as u32, offset, lent: Some(had), fixed: None }),
        Err(e) => Err(e.giving_back(Some(buf))),
    }
}

/// A `WRITE` of the caller's `buf[range]` to `d` (not a socket) at `offset` ([`CURRENT`]: at its
/// position), a `WriteFrom` or `WriteFixed`: as [`write_at`], the buffer given back with the
/// outcome.
pub(crate) fn write_from(d: &Descriptor, buf: LentBuf, range: std::ops::Range<usize>, offset: u64) -> FileKind {
    // The range was checked within the buffer, its length against MAX_IO_SIZE (a u32).
    let (start, len, worker) = (range.start, range.len() as u32, needs_worker(d));
    FileKind::Write { data: buf, start, len, offset, worker, lent: true, fixed: None }
}

/// A `WRITE` of `data` to `d` at `offset` ([`CURRENT`]: at its position).
#[inline]
fn write_at(d: &Descriptor, data: Vec<u8>, offset: u64) -> FileKind {
    // The length was checked against MAX_IO_SIZE, which fits a u32.
    let len = data.len() as u32;
    FileKind::Write {
        data: LentBuf::Vec(data),
        len,
        start: 0,
        offset,
        worker: needs_worker(d),
        lent: false,
        fixed: None,
    }
}

/// Whether a write to `d` may raise a signal (SIGPIPE at a pipe without a reader; SIGXFSZ past
/// the host's file size limit): then an io-wq worker, whose signals are all blocked, runs it,
/// never the submitting thread, which is any thread of the host.
fn needs_worker(d: &Descriptor) -> bool {
    match d.file_type() {
        FileType::Fifo => true,
        FileType::RegularFile => file_size_limited(),
        _ => false,
    }
}

impl FileKind {
    /// The caller's buffer it carries (a `ReadInto`, `WriteFrom`, `ReadFixed` or `WriteFixed`),
    /// to give back with its error (without the room the read made in it).
    fn into_lent(self) -> Option<LentBuf> {
        match self {
            FileKind::Write { data: buf, lent: true, .. } => Some(buf),
            FileKind::Read { mut buf, lent: Some(had), .. } => {
                super::trim_growth(buf.vec_mut(), had);
                Some(buf)
            }
            _ => None,
        }
    }

    /// A registered buffer's pool and index, with where its index in the kernel ring's table
    /// goes once the driver has the pool registered there; `None` for any other request.
    pub(crate) fn fixed(&mut self) -> Option<(&std::sync::Arc<crate::op::Pool>, u16, &mut Option<u16>)> {
        match self {
            FileKind::Read { buf: LentBuf::Fixed(buf), fixed, .. }
            | FileKind::Write { data: LentBuf::Fixed(buf), fixed, .. } => {
                buf.home().map(|(pool, index)| (pool, index, fixed))
            }
            _ => None,
        }
    }

    /// Makes a `READ_FIXED` or `WRITE_FIXED` a plain `READ` or `WRITE` of the same memory:
    /// whether it was one.
    pub(crate) fn unfix(&mut self) -> bool {
        match self {
            FileKind::Read { fixed, .. } | FileKind::Write { fixed, .. } => fixed.take().is_some(),
            _ => false,
        }
    }

    /// The entry for `fd` (the descriptor the request names; the directory an open starts
    /// from), pointing into what `self` owns (the same each time it is built).
    #[inline]
    pub(crate) fn sqe(&mut self, fd: types::Fd) -> squeue::Entry {
        match self {
            FileKind::Nop | FileKind::Read { len: 0, .. } => opcode::Nop::new().build(),
            FileKind::Read { buf, len, offset, fixed, .. } => {
                let room = buf.vec_mut().spare_capacity_mut().as_mut_ptr().cast::<u8>();
                match *fixed {
                    // The room lies within the registered buffer: it never grows or moves.
                    Some(index) => opcode::ReadFixed::new(fd, room, *len, index).offset(*offset).build(),
                    None => opcode::Read::new(fd, room, *len).offset(*offset).build(),
                }
            }
            FileKind::Write { data, start, len, offset, worker, fixed, .. } => {
                let from = data.as_slice()[*start..].as_ptr();
                let sqe = match *fixed {
                    Some(index) => opcode::WriteFixed::new(fd, from, *len, index).offset(*offset).build(),
                    None => opcode::Write::new(fd, from, *len).offset(*offset).build(),
                };
                if *worker { sqe.flags(squeue::Flags::ASYNC) } else { sqe }
            }
            FileKind::Vectored(v) if v.write => {
                let sqe = opcode::Writev::new(fd, v.iovecs.as_ptr(), v.iovecs.len() as u32).offset(v.offset).build();
                if v.worker { sqe.flags(squeue::Flags::ASYNC) } else { sqe }
            }
            FileKind::Vectored(v) => {
                opcode::Readv::new(fd, v.iovecs.as_ptr().cast_mut(), v.iovecs.len() as u32).offset(v.offset).build()
            }
            FileKind::Fsync { data: false } => opcode::Fsync::new(fd).build(),
            FileKind::Fsync { data: true } => opcode::Fsync::new(fd).flags(types::FsyncFlags::DATASYNC).build(),
            FileKind::Ftruncate { len } => opcode::Ftruncate::new(fd, *len).build(),
            FileKind::Fallocate { mode, offset, len } => {
                opcode::Fallocate::new(fd, *len).offset(*offset).mode(*mode as i32).build()
            }
            // `statx` of the descriptor itself: an empty path and `AT_EMPTY_PATH`.
            FileKind::Fstat(st) => opcode::Statx::new(fd, c"".as_ptr(), st.as_mut_ptr().cast::<types::statx>())
                .flags(libc::AT_EMPTY_PATH)
                .mask(super::STATX_MASK.bits())
                .build(),
            FileKind::Open(open) => opcode::OpenAt2::new(fd, open.path.as_ptr(), &open.how).build(),
        }
    }
}

/// The outcome of a file request whose completion's result is `result`.
#[inline]
pub(crate) fn outcome(kind: FileKind, result: i32) -> OpOutcome {
    if result < 0 {
        let e = rustix::io::Errno::from_raw_os_error(-result);
        return Err(match kind {
            FileKind::Open(open) if open.rooted => crate::sandbox::escape_error(&open.name, e),
            FileKind::Open(open) => OpError::new(-result, format!("open {:?}", open.name)),
            kind => OpError::from(e).giving_back(kind.into_lent()),
        });
    }
    let n = result as usize;
    // Every arm takes its variant whole, so nothing of `kind` is left to drop after the match.
    Ok(match kind {
        FileKind::Nop | FileKind::Fsync { .. } | FileKind::Ftruncate { .. } | FileKind::Fallocate { .. } => {
            OpResult::None
        }
        FileKind::Fstat(st) => {
            // SAFETY: a successful STATX wrote the whole `struct statx` into the buffer, which
            // the in-flight table kept (boxed, not moved) until this completion.
            let st = unsafe { st.assume_init() };
            OpResult::Stat(super::file_stat(&st))
        }
        FileKind::Read { mut buf, len, lent, .. } => {
            let n = n.min(len as usize);
            let read = buf.vec_mut();
            // SAFETY: the kernel wrote `n` bytes (at most the `len` it was given, within the
            // spare capacity) at the start of the buffer's spare capacity.
            unsafe { read.set_len(read.len() + n) };
            super::read_result(buf, n, lent)
        }
        FileKind::Vectored(v) if v.write => OpResult::Count(n),
        FileKind::Vectored(v) => {
            let Vectored { mut bufs, iovecs, .. } = *v;
            let mut left = n;
            for (buf, iovec) in bufs.iter_mut().zip(&iovecs) {
                let len = left.min(iovec.iov_len);
                // SAFETY: the kernel wrote `n` bytes into the iovecs in order, each iovec at
                // most the capacity of its buffer, which the in-flight table kept until now:
                // the first `len` bytes of this one are written.
                unsafe { buf.set_len(len) };
                fit(buf);
                left -= len;
            }
            OpResult::Buffers(bufs)
        }
        FileKind::Write { data, lent: true, .. } => data.into_result(n),
        FileKind::Write { data, .. } => {
            drop(data);
            OpResult::Count(n)
        }
        FileKind::Open(open) => {
            // SAFETY: a successful OPENAT2 returns a new descriptor that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(result) };
            OpResult::Fd(open.place.install(opened(fd, open.flags))?)
        }
    })
}
