//! Turning operations into submission entries that own what they point to, and completions back
//! into results.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use io_uring::{opcode, squeue, types};

use rustix::fs::FileType;
use rustix::io::Errno;

use crate::backend::{OpOutcome, Origin, file_ops};
use crate::op::{OpError, errno};
use crate::op::{OpResult, SyscallOpType};
use crate::process::{Descriptor, DescriptorKind, FdSlot, Process};
use crate::sandbox::Sandbox;

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

/// What an in-flight operation owns: the memory its entry points into, and the descriptors it
/// names, kept open until the kernel is done; and what its entry is built from.
///
/// Every pointer an entry holds points into a heap allocation owned here (a buffer, a boxed
/// address or header, a path), never into the `Prepared` itself: it may move (into the in-flight
/// table) after its entry was built, and its entry can be built again, identical, to submit it
/// again.
pub(super) struct Prepared {
    kind: Kind,
    /// The descriptor the request names (the sandbox's root for an open), kept open by `_file`
    /// or `_sandbox`.
    fd: types::Fd,
    _file: Option<Arc<Descriptor>>,
    _sandbox: Option<Arc<Sandbox>>,
}

enum Kind {
    Nop,
    /// `len` bytes into `buf`'s spare capacity (none: the read is answered without the kernel's
    /// file).
    Read {
        buf: Vec<u8>,
        len: u32,
        offset: u64,
    },
    /// `worker`: submitted with `IOSQE_ASYNC`, so that an io-wq worker runs it.
    Write {
        data: Vec<u8>,
        offset: u64,
        worker: bool,
    },
    Fsync,
    /// Boxed: an open owns much more than the other requests, and every in-flight entry is as
    /// large as the largest kind.
    Open(Box<Open>),
    Net(NetKind),
}

/// What an `OPENAT2` request owns.
struct Open {
    path: CString,
    how: types::OpenHow,
    name: String,
    /// The flags as the tenant gave them.
    flags: u32,
    rooted: bool,
    /// The descriptor's place, taken before the kernel opens anything.
    place: FdSlot,
}

/// The "current position" offset for `READ`/`WRITE`.
const CURRENT: u64 = u64::MAX;

/// The descriptors a batch's requests name, looked up once for a run of requests of one process
/// on one descriptor (a batch of reads of one file): each lookup takes the process's descriptor
/// table lock, the dearest step of preparing a read.
#[derive(Default)]
pub(super) struct Descriptors {
    /// The last one looked up: the process (by address, alive for the whole batch: every request
    /// prepared keeps its process), the virtual descriptor, and what it named then.
    last: Option<(*const Process, i32, Arc<Descriptor>)>,
}

impl Descriptors {
    fn get(&mut self, process: &Process, fd: i32) -> Result<Arc<Descriptor>, OpError> {
        if let Some((p, f, d)) = &self.last
            && std::ptr::eq(*p, process)
            && *f == fd
        {
            return Ok(d.clone());
        }
        let d = process.descriptor(fd)?;
        self.last = Some((process, fd, d.clone()));
        Ok(d)
    }
}

/// Resolves what `op` (operation `seq` of `origin`) names and takes ownership of what its entry
/// will point into; the entry itself comes from [`Prepared::sqe`], once the `Prepared` is where
/// it stays. An operation that acts with rights uses those it was submitted with.
pub(super) fn prepare(
    op: SyscallOpType,
    origin: &Origin,
    seq: u64,
    fds: &mut Descriptors,
) -> Result<Prepared, OpError> {
    let process = origin.process();
    let mut file = |fd: i32| fds.get(process, fd);
    let with = |kind, d: Arc<Descriptor>| {
        let fd = types::Fd(d.as_fd().as_raw_fd());
        Prepared { kind, fd, _file: Some(d), _sandbox: None }
    };
    // Sizes were checked against MAX_IO_SIZE, which fits a u32. A `Read` or `Write` of a socket
    // is a `RECV` or `SEND` (flags 0, `MSG_NOSIGNAL`): it waits as read(2) and write(2) of a
    // blocking socket do, and a closed peer is `EPIPE`, not SIGPIPE. `ReadAt` and `WriteAt` of a
    // socket or a pipe are `ESPIPE`, as pread(2) and pwrite(2) say (the kernel's READ and WRITE
    // would ignore the offset).
    let read = |d: Arc<Descriptor>, size: usize, offset: u64| {
        let len = file_ops::read_capacity(&d, size, (offset != CURRENT).then_some(offset));
        let buf = file_ops::read_buffer(len)?;
        let len = len as u32;
        Ok::<_, OpError>(with(Kind::Read { buf, len, offset }, d))
    };
    let write = |d: Arc<Descriptor>, data: Vec<u8>, offset: u64| {
        // A write that may raise a signal (SIGPIPE at a pipe without a reader; SIGXFSZ past the
        // host's file size limit) is run by an io-wq worker, whose signals are all blocked,
        // never inline in the submitting thread, which is any thread of the host.
        let worker = match d.file_type() {
            FileType::Fifo => true,
            FileType::RegularFile => file_ops::file_size_limited(),
            _ => false,
        };
        with(Kind::Write { data, offset, worker }, d)
    };
    let no_offsets = |what: &str| {
        OpError::new(Errno::SPIPE.raw_os_error(), format!("{what}: the descriptor is a socket or a pipe (no offsets)"))
    };
    Ok(match op {
        SyscallOpType::Nop => Prepared { kind: Kind::Nop, fd: types::Fd(-1), _file: None, _sandbox: None },
        SyscallOpType::Read { fd, size } => {
            let d = file(fd)?;
            if d.kind() == DescriptorKind::Socket {
                with(Kind::Net(net::recv(&d, size, 0)?), d)
            } else {
                read(d, size, CURRENT)?
            }
        }
        SyscallOpType::ReadAt { fd, offset, size } => {
            let d = file(fd)?;
            if d.is_stream() {
                return Err(no_offsets("pread"));
            }
            read(d, size, offset)?
        }
        SyscallOpType::Write { fd, data } => {
            let d = file(fd)?;
            if d.kind() == DescriptorKind::Socket {
                with(Kind::Net(net::send(data, 0)), d)
            } else {
                write(d, data, CURRENT)
            }
        }
        SyscallOpType::WriteAt { fd, offset, data } => {
            let d = file(fd)?;
            if d.is_stream() {
                return Err(no_offsets("pwrite"));
            }
            write(d, data, offset)
        }
        SyscallOpType::Fsync { fd } => with(Kind::Fsync, file(fd)?),
        SyscallOpType::Open { path, flags, mode } => {
            let sandbox = origin.rights(seq)?;
            let (dir, target, resolve) = sandbox.open_at(&path)?;
            let c_path = CString::new(target)
                .map_err(|_| OpError::new(errno::EINVAL, format!("open {path:?}: the path holds a NUL byte")))?;
            let (oflags, mode) = sandbox.kernel_flags(flags, mode);
            let how = types::OpenHow::new().flags(oflags.bits() as u64).mode(u64::from(mode.bits())).resolve(resolve);
            let place = process.reserve_fd(&sandbox)?;
            let kind = Kind::Open(Box::new(Open { path: c_path, how, name: path, flags, rooted: resolve != 0, place }));
            Prepared { kind, fd: types::Fd(dir), _file: None, _sandbox: Some(sandbox) }
        }
        other if net::opcode_of(&other).is_some() => {
            let rights = origin.needed_rights(&other, seq)?;
            let (kind, d) = net::prepare(process, rights.as_deref(), other)?;
            with(Kind::Net(kind), d)
        }
        other => {
            return Err(OpError::new(errno::EINVAL, format!("{} is not an io_uring operation here", other.name())));
        }
    })
}

impl Prepared {
    /// Whether the kernel may be given it again to go on waiting for its socket (an accept, a
    /// send or a receive; a connect is started once and never again).
    pub(super) fn may_wait_again(&self) -> bool {
        matches!(&self.kind, Kind::Net(kind) if kind.may_wait_again())
    }

    /// Whether the request waits on a peer: a socket request, a `Read` or `Write` of a socket
    /// included.
    #[inline]
    pub(super) fn waits_on_peer(&self) -> bool {
        matches!(self.kind, Kind::Net(_))
    }

    /// The submission entry, pointing into what `self` owns (the same each time it is built),
    /// with `user_data`.
    #[inline]
    pub(super) fn sqe(&mut self, user_data: u64) -> squeue::Entry {
        let fd = self.fd;
        let sqe = match &mut self.kind {
            Kind::Nop | Kind::Read { len: 0, .. } => opcode::Nop::new().build(),
            Kind::Read { buf, len, offset } => opcode::Read::new(fd, buf.as_mut_ptr(), *len).offset(*offset).build(),
            Kind::Write { data, offset, worker } => {
                let sqe = opcode::Write::new(fd, data.as_ptr(), data.len() as u32).offset(*offset).build();
                if *worker { sqe.flags(squeue::Flags::ASYNC) } else { sqe }
            }
            Kind::Fsync => opcode::Fsync::new(fd).build(),
            Kind::Open(open) => opcode::OpenAt2::new(fd, open.path.as_ptr(), &open.how).build(),
            Kind::Net(kind) => kind.sqe(fd),
        };
        sqe.user_data(user_data)
    }
}

/// The outcome of a completed operation, from its completion's `result`. Takes what the outcome
/// needs from `prepared` where it lies (in the in-flight table), rather than having the whole
/// entry moved out first.
pub(super) fn finish(prepared: &mut Prepared, result: i32) -> OpOutcome {
    let kind = std::mem::replace(&mut prepared.kind, Kind::Nop);
    if result < 0 {
        let e = rustix::io::Errno::from_raw_os_error(-result);
        return Err(match &kind {
            Kind::Open(open) if open.rooted => crate::sandbox::escape_error(&open.name, e),
            Kind::Open(open) => OpError::new(-result, format!("open {:?}", open.name)),
            _ => OpError::from(e),
        });
    }
    let n = result as usize;
    // Every arm takes its variant whole, so nothing of `kind` is left to drop after the match.
    Ok(match kind {
        Kind::Nop | Kind::Fsync => OpResult::None,
        Kind::Read { mut buf, .. } => {
            // SAFETY: the kernel wrote `n` bytes (at most the `len` it was given, within the
            // capacity) at the start of the buffer.
            unsafe { buf.set_len(n.min(buf.capacity())) };
            file_ops::fit(&mut buf);
            OpResult::Bytes(buf)
        }
        Kind::Write { data, .. } => {
            drop(data);
            OpResult::Count(n)
        }
        Kind::Open(open) => {
            // SAFETY: a successful OPENAT2 returns a new descriptor that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(result) };
            OpResult::Fd(open.place.install(file_ops::opened(fd, open.flags))?)
        }
        Kind::Net(kind) => net::finish(kind, result)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscalls::iouring::ring::test_support::ring;

    /// A batch's descriptor lookups, remembered from one request to the next, still name what
    /// each request's own process means by its number.
    #[test]
    fn batch_lookups_name_each_process_own_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        let (ring_a, _) = ring(1, 8, 8);
        let (ring_b, _) = ring(2, 8, 8);
        let (a, b) = (ring_a.process(), ring_b.process());
        let open = |p: &Process, name: &str| {
            let file = std::fs::File::create(dir.path().join(name)).unwrap();
            let kernel_fd = file.as_raw_fd();
            (p.install(OwnedFd::from(file), DescriptorKind::File).unwrap(), kernel_fd)
        };
        // The same virtual numbers name different kernel files in the two processes.
        let (a1, a1k) = open(a, "a1");
        let (a2, a2k) = open(a, "a2");
        let (b1, b1k) = open(b, "b1");
        assert_eq!(a1, b1);
        let read = |fd| SyscallOpType::ReadAt { fd, offset: 0, size: 16 };
        let mut fds = Descriptors::default();
        let kernel_fd = |r: &Origin, fd, fds: &mut Descriptors| prepare(read(fd), r, 0, fds).map(|p| p.fd.0);
        let (ra, rb) = (&Origin::of(&ring_a), &Origin::of(&ring_b));
        for (r, fd, expect) in
            [(ra, a1, a1k), (ra, a1, a1k), (rb, b1, b1k), (ra, a1, a1k), (ra, a2, a2k), (rb, b1, b1k)]
        {
            assert_eq!(kernel_fd(r, fd, &mut fds).unwrap(), expect);
        }
        // A number the other process has and this one does not is EBADF, remembered or not.
        let e = kernel_fd(rb, a2, &mut fds).unwrap_err();
        assert_eq!(e.errno(), errno::EBADF);
        // A closed descriptor is EBADF for the next batch.
        b.close(b1).unwrap();
        let e = kernel_fd(rb, b1, &mut Descriptors::default()).unwrap_err();
        assert_eq!(e.errno(), errno::EBADF);
    }
}
