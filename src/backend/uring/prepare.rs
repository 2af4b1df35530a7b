//! Turning operations into submission entries that own what they point to, and completions back
//! into results.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use io_uring::{opcode, squeue, types};

use crate::backend::OpOutcome;
use crate::process::{Descriptor, DescriptorKind, Process};
use crate::sandbox::Sandbox;
use crate::syscalls::iouring::error::{OpError, errno};
use crate::syscalls::iouring::op::{OpResult, SyscallOpType};

use super::net::{self, NetKind};

/// The opcodes the crate uses, by name.
pub(super) const OPCODES: &[(&str, u8)] = &[
    ("NOP", opcode::Nop::CODE),
    ("READ", opcode::Read::CODE),
    ("WRITE", opcode::Write::CODE),
    ("FSYNC", opcode::Fsync::CODE),
    ("OPENAT2", opcode::OpenAt2::CODE),
    ("ASYNC_CANCEL", opcode::AsyncCancel::CODE),
    ("ACCEPT", opcode::Accept::CODE),
    ("CONNECT", opcode::Connect::CODE),
    ("SEND", opcode::Send::CODE),
    ("RECV", opcode::Recv::CODE),
    ("SENDMSG", opcode::SendMsg::CODE),
    ("RECVMSG", opcode::RecvMsg::CODE),
];

/// The opcode that runs `op` in the kernel, if any.
pub(super) fn opcode_of(op: &SyscallOpType) -> Option<u8> {
    Some(match op {
        SyscallOpType::Nop => opcode::Nop::CODE,
        SyscallOpType::Read { .. } | SyscallOpType::ReadAt { .. } => opcode::Read::CODE,
        SyscallOpType::Write { .. } | SyscallOpType::WriteAt { .. } => opcode::Write::CODE,
        SyscallOpType::Fsync { .. } => opcode::Fsync::CODE,
        SyscallOpType::Open { .. } => opcode::OpenAt2::CODE,
        other => net::opcode_of(other)?,
    })
}

/// Whether `op` is a socket operation that waits on a peer (those the kernel may run only where
/// it waits on non-blocking sockets itself).
pub(super) fn is_socket_request(op: &SyscallOpType) -> bool {
    net::opcode_of(op).is_some()
}

/// What an in-flight operation owns: the memory its entry points into, and the descriptors it
/// names, kept open until the kernel is done.
pub(super) struct Prepared {
    kind: Kind,
    _file: Option<Arc<Descriptor>>,
    _sandbox: Option<Arc<Sandbox>>,
}

enum Kind {
    Nop,
    Read(Vec<u8>),
    Write { _data: Vec<u8> },
    Fsync,
    Open { _path: CString, _how: Box<types::OpenHow>, name: String, rooted: bool },
    Net(NetKind),
}

/// The "current position" offset for `READ`/`WRITE`.
const CURRENT: u64 = u64::MAX;

pub(super) fn prepare(op: SyscallOpType, process: &Process) -> Result<(Prepared, squeue::Entry), OpError> {
    let file = |fd: i32| process.descriptor(fd);
    let raw = |d: &Arc<Descriptor>| types::Fd(d.as_fd().as_raw_fd());
    let (kind, sqe, file, sandbox) = match op {
        SyscallOpType::Nop => (Kind::Nop, opcode::Nop::new().build(), None, None),
        SyscallOpType::Read { fd, size } | SyscallOpType::ReadAt { fd, size, offset: _ } if size == 0 => {
            file(fd)?;
            (Kind::Read(Vec::new()), opcode::Nop::new().build(), None, None)
        }
        SyscallOpType::Read { fd, size } => read(file(fd)?, size, CURRENT, raw),
        SyscallOpType::ReadAt { fd, offset, size } => read(file(fd)?, size, offset, raw),
        SyscallOpType::Write { fd, data } => write(file(fd)?, data, CURRENT, raw),
        SyscallOpType::WriteAt { fd, offset, data } => write(file(fd)?, data, offset, raw),
        SyscallOpType::Fsync { fd } => {
            let d = file(fd)?;
            (Kind::Fsync, opcode::Fsync::new(raw(&d)).build(), Some(d), None)
        }
        SyscallOpType::Open { path, flags, mode } => {
            let sandbox = process.sandbox();
            let (dir, target, resolve) = sandbox.open_at(&path)?;
            let c_path = CString::new(target)
                .map_err(|_| OpError::new(errno::EINVAL, format!("open {path:?}: the path holds a NUL byte")))?;
            let (oflags, mode) = crate::sandbox::kernel_flags(flags, mode);
            let how = Box::new(
                types::OpenHow::new().flags(oflags.bits() as u64).mode(u64::from(mode.bits())).resolve(resolve),
            );
            let sqe = opcode::OpenAt2::new(types::Fd(dir), c_path.as_ptr(), &*how).build();
            let kind = Kind::Open { _path: c_path, _how: how, name: path, rooted: resolve != 0 };
            (kind, sqe, None, Some(sandbox))
        }
        other if net::opcode_of(&other).is_some() => {
            let (kind, sqe, d) = net::prepare(process, other)?;
            (Kind::Net(kind), sqe, Some(d), None)
        }
        other => {
            return Err(OpError::new(errno::EINVAL, format!("{} is not an io_uring operation here", other.name())));
        }
    };
    Ok((Prepared { kind, _file: file, _sandbox: sandbox }, sqe))
}

type Parts = (Kind, squeue::Entry, Option<Arc<Descriptor>>, Option<Arc<Sandbox>>);

fn read(d: Arc<Descriptor>, size: usize, offset: u64, raw: impl Fn(&Arc<Descriptor>) -> types::Fd) -> Parts {
    let mut buf = Vec::with_capacity(size);
    // The size was checked against MAX_IO_SIZE, which fits a u32.
    let sqe = opcode::Read::new(raw(&d), buf.as_mut_ptr(), size as u32).offset(offset).build();
    (Kind::Read(buf), sqe, Some(d), None)
}

fn write(d: Arc<Descriptor>, data: Vec<u8>, offset: u64, raw: impl Fn(&Arc<Descriptor>) -> types::Fd) -> Parts {
    let sqe = opcode::Write::new(raw(&d), data.as_ptr(), data.len() as u32).offset(offset).build();
    (Kind::Write { _data: data }, sqe, Some(d), None)
}

/// The outcome of a completed operation, from its completion's `result`. Takes what the outcome
/// needs from `prepared` where it lies (in the in-flight table), rather than having the whole
/// entry moved out first.
pub(super) fn finish(prepared: &mut Prepared, process: &Process, result: i32) -> OpOutcome {
    let kind = std::mem::replace(&mut prepared.kind, Kind::Nop);
    if result < 0 {
        let e = rustix::io::Errno::from_raw_os_error(-result);
        return Err(match &kind {
            Kind::Open { name, rooted: true, .. } => crate::sandbox::escape_error(name, e),
            Kind::Open { name, .. } => OpError::new(-result, format!("open {name:?}")),
            _ => OpError::from(e),
        });
    }
    let n = result as usize;
    // Every arm takes its variant whole, so nothing of `kind` is left to drop after the match.
    Ok(match kind {
        Kind::Nop | Kind::Fsync => OpResult::None,
        Kind::Read(mut buf) => {
            // SAFETY: the kernel wrote `n` bytes (at most the capacity it was given) at the start
            // of the buffer.
            unsafe { buf.set_len(n.min(buf.capacity())) };
            OpResult::Bytes(buf)
        }
        Kind::Write { _data } => {
            drop(_data);
            OpResult::Count(n)
        }
        Kind::Open { _path, _how, name, rooted } => {
            drop((_path, _how, name, rooted));
            // SAFETY: a successful OPENAT2 returns a new descriptor that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(result) };
            OpResult::Fd(process.install(fd, DescriptorKind::File)?)
        }
        Kind::Net(kind) => net::finish(kind, process, result)?,
    })
}
