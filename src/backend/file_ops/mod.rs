//! The files family. File operations run synchronously on the calling thread: the blocking
//! pool's workers, or a runtime's `spawn_blocking`/`unblock` threads, call [`execute_sync`].
//!
//! The family keeps here how a pool runs its operations, and in `uring.rs` how io_uring prepares
//! them (`NOP`, `READ`, `WRITE`, `FSYNC`, `OPENAT2`), builds their entries and reads their
//! completions. What the rest of the crate knows of each of them before it runs (its class, whether
//! it acts with rights, its transfer length) is its row in the operation vocabulary, and the
//! policy's rules for it are the sandbox's (`Policy::check_file`).

mod paths;
pub(crate) use paths::stat_now;
#[cfg(all(feature = "uring", target_os = "linux"))]
pub(crate) mod uring;
pub(crate) mod vectored;

use rustix::fs::{FileType, SeekFrom};
use rustix::io::Errno;

use super::{OpOutcome, Operation, net_ops};
use crate::op::{LentBuf, OpError, errno};
use crate::op::{OpResult, SyscallOpType};
use crate::process::{Descriptor, DescriptorKind};

/// Executes a file operation (or `Nop`) with blocking system calls. Socket operations are
/// refused with `EINVAL`: they wait on a reactor, see [`net_ops`].
pub fn execute_sync(mut op: Operation) -> OpOutcome {
    if let Some(buf) = op.take_buffer() {
        return with_buffer(op.op(), op.process(), buf);
    }
    let process = op.process();
    match op.op() {
        SyscallOpType::Nop => Ok(OpResult::None),
        SyscallOpType::Open { path, flags, mode } => {
            // The place is taken before the kernel acts: an open refused for the limit has
            // created or truncated nothing.
            let rights = op.rights()?;
            let place = process.reserve_fd(&rights)?;
            let fd = rights.open(path, *flags, *mode)?;
            Ok(OpResult::Fd(place.install(opened(fd, *flags))?))
        }
        SyscallOpType::Close { fd } => process.close(*fd).map(|()| OpResult::None),
        SyscallOpType::Read { fd, size } => read_fresh(&*process.descriptor(*fd)?, *size, None),
        SyscallOpType::ReadAt { fd, offset, size } => {
            let d = process.descriptor(*fd)?;
            let read = read_fresh(&d, *size, Some(*offset));
            // On a pool thread, which may wait on the file system: whether the next reads of
            // it may be answered at submission ([`read_at_now`]).
            #[cfg(target_os = "linux")]
            d.learn_cached_reads();
            read
        }
        SyscallOpType::Write { fd, data } => {
            let d = process.descriptor(*fd)?;
            Ok(OpResult::Count(write(&d, data, None)?))
        }
        SyscallOpType::WriteAt { fd, offset, data } => {
            let d = process.descriptor(*fd)?;
            Ok(OpResult::Count(write(&d, data, Some(*offset))?))
        }
        SyscallOpType::Readv { fd, sizes } => vectored::read(&*process.descriptor(*fd)?, sizes, None),
        SyscallOpType::ReadvAt { fd, offset, sizes } => {
            vectored::read(&*process.descriptor(*fd)?, sizes, Some(*offset))
        }
        SyscallOpType::Writev { fd, bufs } => vectored::write(&*process.descriptor(*fd)?, bufs, None),
        SyscallOpType::WritevAt { fd, offset, bufs } => {
            vectored::write(&*process.descriptor(*fd)?, bufs, Some(*offset))
        }
        SyscallOpType::CopyRange { fd_in, offset_in, fd_out, offset_out, len } => {
            let (src, dst) = (process.descriptor(*fd_in)?, process.descriptor(*fd_out)?);
            vectored::copy(&src, *offset_in, &dst, *offset_out, *len)
        }
        SyscallOpType::Fsync { fd } => {
            let d = process.descriptor(*fd)?;
            retry(|| rustix::fs::fsync(&*d))?;
            Ok(OpResult::None)
        }
        SyscallOpType::Fdatasync { fd } => {
            let d = process.descriptor(*fd)?;
            retry(|| rustix::fs::fdatasync(&*d))?;
            Ok(OpResult::None)
        }
        SyscallOpType::Ftruncate { fd, len } => {
            let d = process.descriptor(*fd)?;
            retry(|| truncate(&d, *len))?;
            Ok(OpResult::None)
        }
        SyscallOpType::Fallocate { fd, mode, offset, len } => {
            let d = process.descriptor(*fd)?;
            let mode = rustix::fs::FallocateFlags::from_bits_retain(*mode);
            retry(|| without_file_size_signal(|| rustix::fs::fallocate(&*d, mode, *offset, *len)))?;
            Ok(OpResult::None)
        }
        SyscallOpType::Fstat { fd } => {
            let d = process.descriptor(*fd)?;
            let st = retry(|| rustix::fs::statx(&*d, c"", rustix::fs::AtFlags::EMPTY_PATH, STATX_MASK))?;
            Ok(OpResult::Stat(file_stat(&st)))
        }
        SyscallOpType::Lseek { fd, offset, whence } => {
            let d = process.descriptor(*fd)?;
            let pos = seek_from(*offset, *whence)?;
            Ok(OpResult::Offset(rustix::fs::seek(&*d, pos)?))
        }
        other if !other.is_network() => {
            let rights = op.rights()?;
            paths::execute(other, &rights)
        }
        other => {
            Err(OpError::new(errno::EINVAL, format!("{} is a socket operation, not a file operation", other.name())))
        }
    }
}

/// What an `Open` (made non-blocking, see [`Sandbox::open`](crate::sandbox::Sandbox::open))
/// opened, made ready for use: its file type found with one `fstat`; a FIFO or a character
/// device stays non-blocking, its reads and writes waiting for readiness like a socket's
/// ([`Descriptor::waits_on_peer`]); anything else is made blocking again (a tenant's
/// `O_NONBLOCK` included: no read or write of a file ever reports `EAGAIN`), with the other
/// status flags it was opened with (`flags`, as the tenant gave them). It never fails: the open
/// has acted (created, truncated), so it is not turned into an error after the fact; a file
/// whose type cannot be read is taken as a file, and one whose flags cannot be set (an
/// append-only inode read without `O_APPEND` refuses F_SETFL) stays non-blocking, which reads
/// and writes of a file ignore.
pub(crate) fn opened(fd: std::os::fd::OwnedFd, flags: u32) -> Descriptor {
    use rustix::fs::OFlags;
    let file_type = rustix::fs::fstat(&fd).map_or(FileType::Unknown, |st| FileType::from_raw_mode(st.st_mode));
    if !matches!(file_type, FileType::Fifo | FileType::CharacterDevice) {
        // Of the status flags F_SETFL sets, those the open applied, less O_NONBLOCK.
        let kept = OFlags::APPEND | OFlags::DIRECT | OFlags::NOATIME;
        let _ = rustix::fs::fcntl_setfl(&fd, OFlags::from_bits_retain(flags) & kept);
    }
    Descriptor::of_file(fd, file_type)
}

/// What `Fstat` asks `statx` for: the basic fields and the creation time.
pub(crate) const STATX_MASK: rustix::fs::StatxFlags =
    rustix::fs::StatxFlags::BASIC_STATS.union(rustix::fs::StatxFlags::BTIME);

/// A file's metadata as [`OpResult::Stat`] reports it, from what `statx` filled in.
pub(crate) fn file_stat(st: &rustix::fs::Statx) -> crate::op::FileStat {
    use rustix::fs::StatxFlags;
    use std::time::{Duration, UNIX_EPOCH};
    let time = |t: &rustix::fs::StatxTimestamp| {
        let seconds = Duration::from_secs(t.tv_sec.unsigned_abs());
        let whole = if t.tv_sec >= 0 { UNIX_EPOCH + seconds } else { UNIX_EPOCH - seconds };
        whole + Duration::from_nanos(u64::from(t.tv_nsec))
    };
    let kind = entry_kind(FileType::from_raw_mode(rustix::fs::RawMode::from(st.stx_mode)));
    let created = StatxFlags::from_bits_retain(st.stx_mask).contains(StatxFlags::BTIME).then(|| time(&st.stx_btime));
    crate::op::FileStat {
        size: st.stx_size,
        kind,
        mode: u32::from(st.stx_mode) & 0o7777,
        links: u64::from(st.stx_nlink),
        accessed: time(&st.stx_atime),
        modified: time(&st.stx_mtime),
        changed: time(&st.stx_ctime),
        created,
    }
}

/// What a file of type `t` is, as results report it.
pub(crate) fn entry_kind(t: FileType) -> crate::op::EntryKind {
    use crate::op::EntryKind;
    match t {
        FileType::RegularFile => EntryKind::File,
        FileType::Directory => EntryKind::Dir,
        FileType::Symlink => EntryKind::Symlink,
        FileType::Fifo => EntryKind::Fifo,
        FileType::Socket => EntryKind::Socket,
        FileType::CharacterDevice => EntryKind::CharDevice,
        FileType::BlockDevice => EntryKind::BlockDevice,
        _ => EntryKind::Unknown,
    }
}

/// `lseek`'s `whence` as rustix spells it.
pub fn seek_from(offset: i64, whence: i32) -> Result<SeekFrom, OpError> {
    let negative = || OpError::new(errno::EINVAL, format!("lseek: offset {offset} is negative"));
    match whence {
        0 => u64::try_from(offset).map(SeekFrom::Start).map_err(|_| negative()),
        1 => Ok(SeekFrom::Current(offset)),
        2 => Ok(SeekFrom::End(offset)),
        #[cfg(target_os = "linux")]
        3 => u64::try_from(offset).map(SeekFrom::Data).map_err(|_| negative()),
        #[cfg(target_os = "linux")]
        4 => u64::try_from(offset).map(SeekFrom::Hole).map_err(|_| negative()),
        _ => Err(OpError::new(errno::EINVAL, format!("lseek: whence {whence} is not supported"))),
    }
}

/// Runs a `ReadInto`, `WriteFrom`, `ReadFixed` or `WriteFixed` of a file with the caller's
/// buffer, taken out of `op`: it comes back in the outcome however the operation ends
/// ([`give_back`]).
fn with_buffer(op: &SyscallOpType, process: &crate::process::Process, mut buf: LentBuf) -> OpOutcome {
    let had = buf.vec_mut().capacity();
    let moved = match *op {
        SyscallOpType::ReadInto { fd, offset, size, .. } | SyscallOpType::ReadFixed { fd, offset, size, .. } => {
            let size = buf.read_size(size);
            process.descriptor(fd).and_then(|d| read_file(&d, buf.vec_mut(), size, offset))
        }
        SyscallOpType::WriteFrom { fd, offset, ref range, .. }
        | SyscallOpType::WriteFixed { fd, offset, ref range, .. } => {
            process.descriptor(fd).and_then(|d| write(&d, &buf.as_slice()[range.clone()], offset))
        }
        _ => Err(OpError::new(errno::EINVAL, format!("{} carries no buffer", op.name()))),
    };
    give_back(moved, buf, had)
}

/// Reads up to `size` bytes of `d` at `offset` (`None`: at its position) into `buf`, after its
/// bytes, grown if it must be by what `d` can fill ([`room_for`]); no system call for none. The
/// count read.
fn read_file(d: &Descriptor, buf: &mut Vec<u8>, size: usize, offset: Option<u64>) -> Result<usize, OpError> {
    let size = room_for(d, buf, size, offset)?;
    if size == 0 {
        return Ok(0);
    }
    retry(|| {
        // SAFETY: both calls return the bytes they wrote at the start of `room`.
        unsafe {
            fill_spare(buf, size, |room| match offset {
                Some(offset) => rustix::io::pread(d, room, offset).map(|(read, _)| read.len()),
                None => rustix::io::read(d, room).map(|(read, _)| read.len()),
            })
        }
    })
}

/// The outcome of an operation that carried the caller's buffer (which came with `had` bytes of
/// capacity): the buffer, without the room a read made in it and left empty
/// ([`trim_growth`]), with the count the operation moved or with its error.
pub(crate) fn give_back(moved: Result<usize, OpError>, mut buf: LentBuf, had: usize) -> OpOutcome {
    trim_growth(buf.vec_mut(), had);
    match moved {
        Ok(count) => Ok(buf.into_result(count)),
        Err(e) => Err(e.giving_back(Some(buf))),
    }
}

/// Makes room in the caller's `buf` for a read of up to `size` bytes of `d` at `offset`
/// (`None`: at its position), and returns how many to read: `size` if it has that much spare
/// capacity (nothing allocated); otherwise it grows by what `d` can fill
/// ([`read_capacity`]), or fails `ENOMEM` if it cannot.
pub(crate) fn room_for(d: &Descriptor, buf: &mut Vec<u8>, size: usize, offset: Option<u64>) -> Result<usize, OpError> {
    if buf.capacity() - buf.len() >= size {
        return Ok(size);
    }
    let size = read_capacity(d, size, offset);
    buf.try_reserve_exact(size)
        .map_err(|_| OpError::new(Errno::NOMEM.raw_os_error(), format!("cannot grow a read buffer by {size} bytes")))?;
    Ok(size)
}

/// One read of up to `size` bytes into `buf`'s spare capacity (room for them was made,
/// [`room_for`]), appended to its bytes: the count `read` reports.
///
/// # Safety
///
/// `read` must return the number of bytes it initialised at the start of the room it is given
/// (what rustix's reads into a `MaybeUninit` slice report).
pub(crate) unsafe fn fill_spare(
    buf: &mut Vec<u8>,
    size: usize,
    read: impl FnOnce(&mut [std::mem::MaybeUninit<u8>]) -> Result<usize, Errno>,
) -> Result<usize, Errno> {
    let len = buf.len();
    let room = &mut buf.spare_capacity_mut()[..size];
    let n = read(room)?.min(size);
    // SAFETY: the caller's `read` initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(len + n) };
    Ok(n)
}

/// [`read_file`] into a fresh buffer, fitted to what it holds: the result of a `Read` or a
/// `ReadAt`.
fn read_fresh(d: &Descriptor, size: usize, offset: Option<u64>) -> OpOutcome {
    let mut buf = Vec::new();
    read_file(d, &mut buf, size, offset)?;
    fit(&mut buf);
    Ok(OpResult::Bytes(buf))
}

/// Reads that ask for more than this first find out how much there is to read (one `fstat`, or
/// `getsockopt`s for a socket), so that a huge request of a small file allocates what the file
/// can fill; smaller ones allocate their size as it is, with no system call more.
pub(crate) const SIZE_CHECKED_ABOVE: usize = 64 << 10;

/// Spare room above which a read's result is reallocated to its length.
const SHRINK_ABOVE: usize = 4 << 10;

/// The buffer to allocate for a read of up to `size` bytes of `d` at `offset` (`None`: at its
/// position). `size` itself up to [`SIZE_CHECKED_ABOVE`]; above it, for a regular file, at most
/// what lies past `offset` (past the start, for a read at the position), for a pipe or FIFO at
/// most what the pipe holds, for a socket what [`net_ops::recv_capacity`] allows; never less
/// than `SIZE_CHECKED_ABOVE`, as some files (procfs) report a size of 0 and are not empty. A
/// read may return less than asked anyway: this only makes it so for bytes that are not there.
pub(crate) fn read_capacity(d: &Descriptor, size: usize, offset: Option<u64>) -> usize {
    if size <= SIZE_CHECKED_ABOVE {
        return size;
    }
    if d.kind() == DescriptorKind::Socket {
        return net_ops::recv_capacity(d, size);
    }
    let most = match rustix::fs::fstat(d) {
        Ok(st) => match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {
                let past = u64::try_from(st.st_size).unwrap_or(0).saturating_sub(offset.unwrap_or(0));
                usize::try_from(past).unwrap_or(usize::MAX)
            }
            #[cfg(target_os = "linux")]
            FileType::Fifo => rustix::pipe::fcntl_getpipe_size(d).unwrap_or(size),
            _ => size,
        },
        Err(_) => size,
    };
    capped(size, most)
}

/// `size`, but no more than `most` of it unless `most` is below [`SIZE_CHECKED_ABOVE`]: what a
/// read checked for what can be read allocates.
pub(crate) fn capped(size: usize, most: usize) -> usize {
    size.min(most.max(SIZE_CHECKED_ABOVE))
}

/// An empty buffer with room for exactly `size` bytes, or `ENOMEM` if the allocation fails: a
/// tenant's request never aborts the host.
pub(crate) fn read_buffer(size: usize) -> Result<Vec<u8>, OpError> {
    let mut buf = Vec::new();
    buf.try_reserve_exact(size).map_err(|_| {
        OpError::new(Errno::NOMEM.raw_os_error(), format!("cannot allocate a read buffer of {size} bytes"))
    })?;
    Ok(buf)
}

/// Gives back what a read grew the caller's buffer by (from `had` bytes of capacity) and did not
/// fill, when that is worth a reallocation: the crate's speculative room (what a file or socket
/// might have held) does not stay with the caller, whose own capacity does.
pub(crate) fn trim_growth(buf: &mut Vec<u8>, had: usize) {
    if buf.capacity() - had.max(buf.len()) > SHRINK_ABOVE {
        buf.shrink_to(had.max(buf.len()));
    }
}

/// The result of a read that appended `n` bytes to `buf`: the caller's buffer back, with the
/// count (`lent`: the capacity it came with, see [`trim_growth`]), or a buffer of the crate's
/// fitted to what it holds.
#[cfg(all(feature = "uring", target_os = "linux"))]
pub(crate) fn read_result(buf: LentBuf, n: usize, lent: Option<usize>) -> OpResult {
    match (lent, buf) {
        (None, LentBuf::Vec(mut own)) => {
            fit(&mut own);
            OpResult::Bytes(own)
        }
        (had, mut buf) => {
            let had = had.unwrap_or(buf.vec_mut().capacity());
            trim_growth(buf.vec_mut(), had);
            buf.into_result(n)
        }
    }
}

/// Gives back a read buffer's spare room when it is worth a reallocation, so that a result
/// keeps about what it holds.
pub(crate) fn fit(buf: &mut Vec<u8>) {
    if buf.capacity() - buf.len() > SHRINK_ABOVE {
        buf.shrink_to_fit();
    }
}

/// Writes `data` to `d`, at `offset` or at its position, raising no signal in the host: a socket
/// is sent to with `MSG_NOSIGNAL` (a closed peer is `EPIPE`); a write to a pipe whose reader is
/// gone (`EPIPE`, or a short count), or past the host's file size limit (`EFBIG`), takes back
/// the signal the kernel raises with it ([`without_signal`]). Regular files pay that only
/// where the host has a file size limit at all.
fn write(d: &Descriptor, data: &[u8], offset: Option<u64>) -> Result<usize, OpError> {
    retry(|| write_once(d, data, offset))
}

/// Sets `d`'s length to `len`, raising no signal in the host: past the host's file size limit
/// it is `EFBIG`, and the SIGXFSZ the kernel raises with it is taken back ([`without_signal`]).
fn truncate(d: &Descriptor, len: u64) -> Result<(), Errno> {
    without_file_size_signal(|| rustix::fs::ftruncate(d, len))
}

/// Runs `call`, which may grow a file, taking back the SIGXFSZ the kernel raises with an `EFBIG`
/// past the host's file size limit (paid only where there is one).
fn without_file_size_signal<T>(call: impl FnOnce() -> Result<T, Errno>) -> Result<T, Errno> {
    if file_size_limited() { without_signal(libc::SIGXFSZ, call) } else { call() }
}

/// One attempt of [`write`] (`EINTR` included). A terminal's write (a character device) cannot
/// stop the host either: SIGTTOU is blocked for the call ([`without_job_control`]).
fn write_once(d: &Descriptor, data: &[u8], offset: Option<u64>) -> Result<usize, Errno> {
    let call = || match offset {
        Some(offset) => rustix::io::pwrite(d, data, offset),
        None => rustix::io::write(d, data),
    };
    match d.file_type() {
        FileType::Socket if offset.is_none() => rustix::net::send(d, data, net_ops::send_flags(0)),
        FileType::Fifo => without_signal(libc::SIGPIPE, call),
        FileType::RegularFile => without_file_size_signal(call),
        FileType::CharacterDevice => without_job_control(call),
        _ => call(),
    }
}

/// The largest `ReadAt` [`read_at_now`] tries: what it copies on the thread that starts it.
pub(crate) const READ_NOW_MAX: usize = SIZE_CHECKED_ABOVE;

/// A `ReadAt` of at most [`READ_NOW_MAX`] bytes, answered from the page cache on the calling
/// thread (`preadv2` with `RWF_NOWAIT`) if its descriptor allows it
/// ([`Descriptor::cached_reads`], learned by an earlier read on a pool thread) and all of it is
/// there, to the end of the file or `size`, as a pool thread would answer it. `None` when it
/// must run on a pool thread: it is not such a read, the descriptor does not allow it (or not
/// now: the read would update the access time), part of it is not cached (what was copied is
/// dropped, and the pool thread reads it all), or the read fails (the pool thread reports the
/// error as it always does).
#[cfg(target_os = "linux")]
pub(crate) fn read_at_now(op: &SyscallOpType, process: &crate::process::Process) -> Option<OpOutcome> {
    use crate::process::CachedReads;
    use rustix::io::{IoSliceMut, ReadWriteFlags};
    let SyscallOpType::ReadAt { fd, offset, size } = *op else { return None };
    // `preadv2` takes an offset of `u64::MAX` for "at the file position": none that large here.
    if size > READ_NOW_MAX || i64::try_from(offset).is_err() {
        return None;
    }
    let d = process.descriptor(fd).ok()?;
    match d.cached_reads() {
        CachedReads::Always => {}
        CachedReads::IfAtimeFresh if atime_fresh(&d) => {}
        _ => return None,
    }
    let mut buf = read_buffer(size).ok()?;
    buf.resize(size, 0);
    let mut got = 0;
    while got < size {
        let at = offset.checked_add(got as u64).filter(|&at| i64::try_from(at).is_ok())?;
        match rustix::io::preadv2(&*d, &mut [IoSliceMut::new(&mut buf[got..])], at, ReadWriteFlags::NOWAIT) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::OPNOTSUPP) => {
                d.reads_wait();
                return None;
            }
            Err(_) => return None,
        }
    }
    buf.truncate(got);
    fit(&mut buf);
    Some(Ok(OpResult::Bytes(buf)))
}

/// Whether a read of `d` now leaves its access time as it is on a `relatime` mount: the access
/// time is later than the last change of the data and of the inode, and less than a day old
/// (a minute of margin). One `fstat` (of a local file system's file).
#[cfg(target_os = "linux")]
// The widths of `stat`'s time fields differ between architectures.
#[allow(clippy::unnecessary_cast)]
fn atime_fresh(d: &Descriptor) -> bool {
    let Ok(st) = rustix::fs::fstat(d) else { return false };
    let time = |sec, nsec| (sec as i64, nsec as i64);
    let atime = time(st.st_atime, st.st_atime_nsec);
    let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) else { return false };
    atime > time(st.st_mtime, st.st_mtime_nsec)
        && atime > time(st.st_ctime, st.st_ctime_nsec)
        && i64::try_from(now.as_secs()).is_ok_and(|now| now.saturating_sub(atime.0) < 24 * 3600 - 60)
}

/// Elsewhere no read is tried without waiting.
#[cfg(not(target_os = "linux"))]
pub(crate) fn read_at_now(_op: &SyscallOpType, _process: &crate::process::Process) -> Option<OpOutcome> {
    None
}

/// One non-blocking read of `d`, a FIFO or a character device ([`Descriptor::waits_on_peer`]),
/// into `room` (the count read, at its start), for a readiness loop: `EAGAIN` while there is nothing to read. A FIFO
/// that reads as end of file before any writer came (it was opened without waiting for one, see
/// [`opened`]) is `EAGAIN` too: it reads as end of file only once a writer came and went (poll
/// reports a hang-up), as after a blocking open that waited for the writer.
pub(crate) fn read_now(d: &Descriptor, room: &mut [std::mem::MaybeUninit<u8>]) -> Result<usize, Errno> {
    use rustix::event::{PollFd, PollFlags};
    loop {
        let n = match d.file_type() {
            FileType::CharacterDevice => without_job_control(|| rustix::io::read(d, &mut *room).map(|(r, _)| r.len())),
            _ => rustix::io::read(d, &mut *room).map(|(r, _)| r.len()),
        };
        match n {
            Err(Errno::INTR) => continue,
            Ok(0) if !room.is_empty() && d.file_type() == FileType::Fifo => {
                let mut fds = [PollFd::new(d, PollFlags::IN)];
                rustix::event::poll(&mut fds, Some(&rustix::time::Timespec::default()))?;
                let seen = fds[0].revents();
                if seen.contains(PollFlags::HUP) && !seen.contains(PollFlags::IN) {
                    return Ok(0);
                }
                if !seen.contains(PollFlags::IN) {
                    return Err(Errno::AGAIN);
                }
                // Data came after the read: read again.
            }
            other => return other,
        }
    }
}

/// One non-blocking write of `data` to `d`, a FIFO or a character device, for a readiness loop:
/// what fits, or `EAGAIN` while nothing does. Raises no signal in the host (see [`write`]).
pub(crate) fn write_now(d: &Descriptor, data: &[u8]) -> Result<usize, Errno> {
    loop {
        match write_once(d, data, None) {
            Err(Errno::INTR) => continue,
            other => return other,
        }
    }
}

/// Whether the host has a finite file size limit (`RLIMIT_FSIZE`) now: only then can a write to
/// a regular file raise SIGXFSZ. Read at every write (one `prlimit64`), as the host may set it
/// at any time (`setrlimit`, or `prlimit --pid` from outside); a limit set between this call
/// and the write it guards is the one case left unguarded.
pub(crate) fn file_size_limited() -> bool {
    rustix::process::getrlimit(rustix::process::Resource::Fsize).current.is_some()
}

/// Runs `call` with `signal` blocked in the calling thread, so that a `signal` the kernel
/// raises at this thread during the call (SIGPIPE with `EPIPE`, or with a short count when a
/// pipe's reader goes away in the middle of a write; SIGXFSZ with `EFBIG`) stays pending instead
/// of killing the host; it is then taken (a `sigtimedwait` that does not wait), unless one was
/// pending already before the call, and the thread's mask is restored. The signal's
/// disposition, which is the host's, is never changed.
fn without_signal<T>(signal: libc::c_int, call: impl FnOnce() -> Result<T, Errno>) -> Result<T, Errno> {
    // SAFETY: an all-zero `sigset_t` is plain data, and `sigemptyset` initialises it anyway.
    let mut only: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut before: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: both sets are valid, initialised `sigset_t`s owned by this frame; `signal` is a
    // valid signal number; `pthread_sigmask` changes only the calling thread's mask.
    let blocked_before = unsafe {
        libc::sigemptyset(&mut only);
        libc::sigaddset(&mut only, signal);
        libc::pthread_sigmask(libc::SIG_BLOCK, &only, &mut before);
        libc::sigismember(&before, signal) == 1
    };
    // Only a thread that already blocked the signal can have one pending: otherwise it would
    // have been delivered.
    let pending_before = blocked_before && {
        // SAFETY: as above.
        let mut pending: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `pending` is a valid `sigset_t` owned by this frame.
        unsafe { libc::sigpending(&mut pending) == 0 && libc::sigismember(&pending, signal) == 1 }
    };
    let result = call();
    if !pending_before {
        let now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `only` is a valid set, a null info pointer is allowed, and `now` lives for
        // the call. With a zero timeout it never waits: it takes the signal the call raised
        // (still blocked, hence pending), or fails with EAGAIN if the kernel raised none.
        unsafe { libc::sigtimedwait(&only, std::ptr::null_mut(), &now) };
    }
    // SAFETY: `before` is the mask `pthread_sigmask` returned above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut()) };
    result
}

/// Runs `call` with SIGTTIN and SIGTTOU blocked in the calling thread: a read of the host's
/// terminal from the background is then `EIO`, and a write goes through, instead of the kernel
/// stopping the whole host with the signal (it sends none to a thread that blocks it).
fn without_job_control<T>(call: impl FnOnce() -> Result<T, Errno>) -> Result<T, Errno> {
    // SAFETY: all-zero `sigset_t`s are plain data, initialised by `sigemptyset`; both sets are
    // owned by this frame; `pthread_sigmask` changes only the calling thread's mask.
    let mut stops: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut before: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe {
        libc::sigemptyset(&mut stops);
        libc::sigaddset(&mut stops, libc::SIGTTIN);
        libc::sigaddset(&mut stops, libc::SIGTTOU);
        libc::pthread_sigmask(libc::SIG_BLOCK, &stops, &mut before);
    }
    let result = call();
    // SAFETY: `before` is the mask `pthread_sigmask` returned above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut()) };
    result
}

/// Repeats a call interrupted by a signal, as the caller of a blocking syscall would.
fn retry<T>(mut f: impl FnMut() -> Result<T, Errno>) -> Result<T, OpError> {
    loop {
        match f() {
            Err(Errno::INTR) => continue,
            other => return other.map_err(OpError::from),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A process with a file (written with `data`) installed, its descriptor number, the file
    /// and its directory. The file's access time is made later than its change (a read after a
    /// pause past the clock's tick), and the descriptor's [`Descriptor::cached_reads`] learned,
    /// as after a first read on a pool thread.
    #[cfg(target_os = "linux")]
    fn with_file(data: &[u8]) -> (std::sync::Arc<crate::process::Process>, i32, std::fs::File, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, data).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
        std::fs::read(&path).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let process = crate::process::ProcessTable::new().get_or_create(1);
        let fd = process.install(file.try_clone().unwrap().into(), DescriptorKind::File).unwrap();
        process.descriptor(fd).unwrap().learn_cached_reads();
        (process, fd, file, dir)
    }

    /// Whether reads of `fd` may be answered in place here at all: not on a file system this
    /// crate does not know to offer `RWF_NOWAIT` (the tests then check nothing more).
    #[cfg(target_os = "linux")]
    fn in_place_here(process: &crate::process::Process, fd: i32) -> bool {
        use crate::process::CachedReads;
        let how = process.descriptor(fd).unwrap().cached_reads();
        assert_ne!(how, CachedReads::Unknown, "learned");
        if how == CachedReads::Never {
            eprintln!("this file system's reads are never answered in place: nothing to check");
        }
        how != CachedReads::Never
    }

    /// A `ReadAt` of a cached regular file is answered in place with what a pool thread would
    /// read: the bytes asked for, fewer at the end of the file, none past it; what it does not
    /// take (a `Read`, a read too large, a descriptor not open) is left to the pool.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_cached_read_is_answered_in_place() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let (process, fd, _file, _dir) = with_file(&data);
        if !in_place_here(&process, fd) {
            return;
        }
        let read = |offset: u64, size: usize| read_at_now(&SyscallOpType::ReadAt { fd, offset, size }, &process);
        for (offset, size) in
            [(0, 4096), (4096, 1), (19_000, 4096), (20_000, 10), (30_000, 10), (0, 0), (5, READ_NOW_MAX)]
        {
            let Some(Ok(OpResult::Bytes(got))) = read(offset, size) else { panic!("{offset}, {size}: not answered") };
            let from = (offset as usize).min(data.len());
            assert!(got == data[from..(from + size).min(data.len())], "{offset}, {size}: other bytes");
        }
        assert!(read(0, READ_NOW_MAX + 1).is_none(), "too large: the pool's");
        assert!(read(u64::MAX, 1).is_none(), "preadv2's own offset: the pool's (EINVAL)");
        assert!(
            read_at_now(&SyscallOpType::ReadAt { fd: 99, offset: 0, size: 1 }, &process).is_none(),
            "EBADF: the pool's"
        );
        assert!(
            read_at_now(&SyscallOpType::Read { fd, size: 1 }, &process).is_none(),
            "a read at the position: the pool's"
        );
    }

    /// On a `relatime` mount, a read that would update the file's access time (not later than
    /// its last change: the journal may make that wait) is left to the pool; once a read on a
    /// pool thread has updated it, the next are answered in place.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_read_that_would_update_the_access_time_is_left_to_the_pool() {
        use crate::process::CachedReads;
        let (process, fd, _file, dir) = with_file(&[3u8; 8192]);
        if process.descriptor(fd).unwrap().cached_reads() != CachedReads::IfAtimeFresh {
            eprintln!("not a relatime mount: nothing to check");
            return;
        }
        let read = || read_at_now(&SyscallOpType::ReadAt { fd, offset: 0, size: 4096 }, &process);
        assert!(read().is_some(), "the access time is fresh");
        std::thread::sleep(std::time::Duration::from_millis(30));
        std::fs::write(dir.path().join("f"), [4u8; 8192]).unwrap();
        assert!(read().is_none(), "changed since its last read: this read would update the access time");
        std::thread::sleep(std::time::Duration::from_millis(30));
        // A pool thread's read (as `execute_sync` runs it) updates the access time.
        let d = process.descriptor(fd).unwrap();
        let Ok(OpResult::Bytes(b)) = read_fresh(&d, 4096, Some(0)) else { panic!("the pool's read") };
        assert_eq!(b, [4u8; 4096]);
        let Some(Ok(OpResult::Bytes(b))) = read() else { panic!("fresh again after the pool's read") };
        assert_eq!(b, [4u8; 4096]);
    }

    /// A `ReadAt` of what is not in the page cache is not answered in place: it would wait for
    /// the disk on a thread that starts other tenants' work. The file's clean pages are dropped
    /// (`POSIX_FADV_DONTNEED` after `fsync`), which a file system that keeps them elsewhere
    /// (ext4, xfs, btrfs; not tmpfs, whose pages are its store) does, though not always at the
    /// first try (pages still in a CPU's batch are skipped): the read must be left to the pool
    /// once they are gone.
    #[cfg(target_os = "linux")]
    #[test]
    fn an_uncached_read_is_left_to_the_pool() {
        let data = vec![7u8; 256 << 10];
        let (process, fd, file, _dir) = with_file(&data);
        if !in_place_here(&process, fd) {
            return;
        }
        let magic = rustix::fs::fstatfs(&file).unwrap().f_type as i64;
        const EXT4: i64 = 0xEF53;
        const XFS: i64 = 0x5846_5342;
        const BTRFS: i64 = 0x9123_683E;
        let mut answered = 0;
        for _ in 0..50 {
            file.sync_all().unwrap();
            rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
            match read_at_now(&SyscallOpType::ReadAt { fd, offset: 128 << 10, size: 4096 }, &process) {
                None => return,
                Some(Ok(OpResult::Bytes(b))) => assert!(b == vec![7u8; 4096], "answered, then rightly"),
                Some(other) => panic!("{other:?}"),
            }
            answered += 1;
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(![EXT4, XFS, BTRFS].contains(&magic), "read in place {answered} times from a dropped cache");
    }

    /// A descriptor opened with `O_DIRECT` is never read in place (a direct read waits for the
    /// device even when asked not to), nor one whose reads were not learned yet.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_direct_descriptor_is_never_read_in_place() {
        use crate::process::CachedReads;
        use std::os::unix::fs::OpenOptionsExt;
        let (process, _, _file, dir) = with_file(&[1u8; 8192]);
        let direct = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(dir.path().join("f"));
        // A file system without direct I/O refuses the open: nothing to check there.
        let Ok(direct) = direct else { return };
        let fd = process.install(direct.into(), DescriptorKind::File).unwrap();
        let d = process.descriptor(fd).unwrap();
        assert_eq!(d.cached_reads(), CachedReads::Unknown);
        assert!(read_at_now(&SyscallOpType::ReadAt { fd, offset: 0, size: 4096 }, &process).is_none(), "not learned");
        d.learn_cached_reads();
        assert_eq!(d.cached_reads(), CachedReads::Never);
        assert!(read_at_now(&SyscallOpType::ReadAt { fd, offset: 0, size: 4096 }, &process).is_none());
    }

    /// The variable that tells a re-run of the test binary it is the child of [`in_child`].
    const CHILD: &str = "AI_OS_KERNEL_TEST_CHILD";

    /// Runs `check` in a child process (this test binary again, running only the test
    /// `test_name`, the calling test's full path), and fails unless the child exits successfully
    /// having run that test: nothing of this process (other tests' threads, signals, limits)
    /// reaches the child, and nothing the child does reaches this process. The child's output is
    /// passed on as this test's own. The calling test must call this first thing.
    pub(crate) fn in_child(test_name: &str, check: impl FnOnce()) {
        if std::env::var_os(CHILD).is_some() {
            return check();
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([test_name, "--exact", "--test-threads=1", "--nocapture"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        eprint!("{said}");
        assert!(out.status.success(), "the child running {test_name} (its output above): {}", out.status);
        assert!(said.contains("1 passed"), "the child ran no test (its output above)");
    }

    /// Runs `check` [`in_child`] whose file size limit is 4 KiB: a SIGXFSZ raised in the child
    /// kills it (its default action) instead of this process. The calling test must call this
    /// first thing.
    pub(crate) fn with_file_size_limit(test_name: &str, check: impl FnOnce()) {
        in_child(test_name, || {
            let limit = rustix::process::Rlimit { current: Some(4096), maximum: None };
            rustix::process::setrlimit(rustix::process::Resource::Fsize, limit).unwrap();
            check()
        })
    }

    /// A write (or truncate) past the host's file size limit is `EFBIG`, and the SIGXFSZ it
    /// raises (whose default action is to kill the process) is taken back.
    #[test]
    fn a_write_past_the_file_size_limit_leaves_no_signal() {
        with_file_size_limit("backend::file_ops::tests::a_write_past_the_file_size_limit_leaves_no_signal", || {
            assert!(file_size_limited());
            let file = tempfile::tempfile().unwrap();
            let d = Descriptor::new(file.into(), DescriptorKind::File);
            assert_eq!(write(&d, b"fits", Some(0)).unwrap(), 4);
            assert_eq!(write(&d, b"past", Some(8192)).unwrap_err().errno(), Errno::FBIG.raw_os_error());
            assert_eq!(truncate(&d, 8192).unwrap_err(), Errno::FBIG, "a truncate past it too");
            let allocate = || rustix::fs::fallocate(&d, rustix::fs::FallocateFlags::empty(), 0, 8192);
            assert_eq!(without_file_size_signal(allocate).unwrap_err(), Errno::FBIG, "an allocation too");
            let vectored = vectored::write(&d, &[b"pa".to_vec(), b"st".to_vec()], Some(8192));
            assert_eq!(vectored.unwrap_err().errno(), Errno::FBIG.raw_os_error(), "a vectored write too");
            let copied = vectored::copy(&d, 0, &d, 8192, 4);
            assert_eq!(copied.unwrap_err().errno(), Errno::FBIG.raw_os_error(), "a copy too");
            truncate(&d, 2).unwrap();
        });
    }

    /// A file size limit the host sets after writes were made under none is honoured too: the
    /// limit is read at every write, not once.
    #[test]
    fn a_file_size_limit_set_later_leaves_no_signal() {
        with_file_size_limit("backend::file_ops::tests::a_file_size_limit_set_later_leaves_no_signal", || {
            let set = |current| {
                let limit = rustix::process::Rlimit { current, maximum: None };
                rustix::process::setrlimit(rustix::process::Resource::Fsize, limit).unwrap();
            };
            set(None);
            let file = tempfile::tempfile().unwrap();
            let d = Descriptor::new(file.into(), DescriptorKind::File);
            assert_eq!(write(&d, b"unlimited", Some(0)).unwrap(), 9);
            set(Some(4096));
            assert_eq!(write(&d, b"past", Some(8192)).unwrap_err().errno(), Errno::FBIG.raw_os_error());
        });
    }

    /// What an open made non-blocking is made blocking again unless it is a FIFO or a character
    /// device, keeping the status flags the open applied.
    #[test]
    fn opened_files_are_blocking_again_with_their_flags() {
        use rustix::fs::{Mode, OFlags};
        let dir = tempfile::tempdir().unwrap();
        let asked = OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND;
        let fd = rustix::fs::open(dir.path().join("f"), asked | OFlags::NONBLOCK, Mode::RUSR | Mode::WUSR).unwrap();
        let d = opened(fd, asked.bits());
        let now = rustix::fs::fcntl_getfl(&d).unwrap();
        assert!(now.contains(OFlags::APPEND), "{now:?}");
        assert!(!now.contains(OFlags::NONBLOCK), "{now:?}");
        assert!(!d.waits_on_peer());
        let fd = rustix::fs::open("/dev/null", OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty()).unwrap();
        let d = opened(fd, 0);
        assert!(rustix::fs::fcntl_getfl(&d).unwrap().contains(OFlags::NONBLOCK));
        assert!(d.waits_on_peer(), "a character device stays non-blocking and waits for readiness");
    }

    /// A buffer that cannot be had is `ENOMEM`, not an abort.
    #[test]
    fn an_impossible_read_buffer_is_enomem() {
        let e = read_buffer(isize::MAX as usize).unwrap_err();
        assert_eq!(e.errno(), Errno::NOMEM.raw_os_error());
        assert_eq!(read_buffer(5).unwrap().capacity(), 5);
    }

    /// A pipe without a reader gives `EPIPE`; the SIGPIPE it raised is taken, the thread's mask
    /// is as it was, and a SIGPIPE pending before is left pending.
    #[test]
    fn a_write_to_a_readerless_pipe_leaves_no_signal() {
        let mask = || {
            // SAFETY: a zeroed set is filled by `pthread_sigmask`, which only reads the mask.
            let mut now: libc::sigset_t = unsafe { std::mem::zeroed() };
            unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut now) };
            // SAFETY: as above.
            unsafe { libc::sigismember(&now, libc::SIGPIPE) == 1 }
        };
        let pending = || {
            // SAFETY: as above.
            let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
            unsafe { libc::sigpending(&mut set) == 0 && libc::sigismember(&set, libc::SIGPIPE) == 1 }
        };
        // Close-on-exec: a child another test spawns meanwhile must not keep a reader open.
        let (reader, writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        drop(reader);
        let before = mask();
        let write = || without_signal(libc::SIGPIPE, || rustix::io::write(&writer, b"x"));
        assert_eq!(write(), Err(Errno::PIPE));
        assert_eq!(mask(), before);
        assert!(!pending(), "the write's SIGPIPE was taken");
        // With SIGPIPE blocked and one already pending, the write's own is not the one taken.
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: a set with SIGPIPE only, blocked in this thread alone.
                let mut only: libc::sigset_t = unsafe { std::mem::zeroed() };
                unsafe {
                    libc::sigemptyset(&mut only);
                    libc::sigaddset(&mut only, libc::SIGPIPE);
                    libc::pthread_sigmask(libc::SIG_BLOCK, &only, std::ptr::null_mut());
                }
                assert_eq!(rustix::io::write(&writer, b"x"), Err(Errno::PIPE));
                assert!(pending());
                assert_eq!(write(), Err(Errno::PIPE));
                assert!(pending(), "the SIGPIPE pending before is still pending");
                let now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
                // SAFETY: takes the pending signals without waiting.
                while unsafe { libc::sigtimedwait(&only, std::ptr::null_mut(), &now) } == libc::SIGPIPE {}
                assert!(!pending());
            });
        });
    }
}
