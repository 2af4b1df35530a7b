//! File operations run synchronously on the calling thread: the blocking pool's workers, or a
//! runtime's `spawn_blocking`/`unblock` threads, call [`execute_sync`].

use rustix::buffer::spare_capacity;
use rustix::fs::SeekFrom;
use rustix::io::Errno;

use super::{OpOutcome, Operation};
use crate::process::DescriptorKind;
use crate::syscalls::iouring::error::{OpError, errno};
use crate::syscalls::iouring::op::{OpResult, SyscallOpType};

/// Executes a file operation (or `Nop`) with blocking system calls. Socket operations are
/// refused with `EINVAL`: they wait on a reactor, see [`net_ops`](super::net_ops).
pub fn execute_sync(op: Operation) -> OpOutcome {
    let process = op.process();
    match op.op() {
        SyscallOpType::Nop => Ok(OpResult::None),
        SyscallOpType::Open { path, flags, mode } => {
            // The place is taken before the kernel acts: an open refused for the limit has
            // created or truncated nothing.
            let rights = op.rights()?;
            let place = process.reserve_fd(&rights)?;
            let fd = rights.open(path, *flags, *mode)?;
            Ok(OpResult::Fd(place.install(fd, DescriptorKind::File)?))
        }
        SyscallOpType::Close { fd } => process.close(*fd).map(|()| OpResult::None),
        SyscallOpType::Read { fd, size } => {
            let d = process.descriptor(*fd)?;
            read_into(*size, |buf| rustix::io::read(&*d, spare_capacity(buf)))
        }
        SyscallOpType::ReadAt { fd, offset, size } => {
            let d = process.descriptor(*fd)?;
            read_into(*size, |buf| rustix::io::pread(&*d, spare_capacity(buf), *offset))
        }
        SyscallOpType::Write { fd, data } => {
            let d = process.descriptor(*fd)?;
            Ok(OpResult::Count(retry(|| rustix::io::write(&*d, data))?))
        }
        SyscallOpType::WriteAt { fd, offset, data } => {
            let d = process.descriptor(*fd)?;
            Ok(OpResult::Count(retry(|| rustix::io::pwrite(&*d, data, *offset))?))
        }
        SyscallOpType::Fsync { fd } => {
            let d = process.descriptor(*fd)?;
            retry(|| rustix::fs::fsync(&*d))?;
            Ok(OpResult::None)
        }
        SyscallOpType::Lseek { fd, offset, whence } => {
            let d = process.descriptor(*fd)?;
            let pos = seek_from(*offset, *whence)?;
            Ok(OpResult::Offset(rustix::fs::seek(&*d, pos)?))
        }
        other => {
            Err(OpError::new(errno::EINVAL, format!("{} is a socket operation, not a file operation", other.name())))
        }
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

/// Reads up to `size` bytes into a fresh buffer, without zeroing it first. A zero-size read
/// returns nothing without a system call (the descriptor was already checked).
fn read_into(size: usize, mut read: impl FnMut(&mut Vec<u8>) -> Result<usize, Errno>) -> OpOutcome {
    let mut buf = Vec::with_capacity(size);
    if size > 0 {
        retry(|| read(&mut buf))?;
    }
    Ok(OpResult::Bytes(buf))
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
