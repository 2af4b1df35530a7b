//! Turning operations into submission entries that own what they point to, and completions back
//! into results: what is common to every request (the descriptors they name, the in-flight
//! entry), and the dispatch to the families, which prepare their own requests, build their
//! entries and read their completions (`file_ops::uring`, `net_ops::uring`).

use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;

use io_uring::{opcode, squeue, types};

use crate::backend::file_ops::uring::{self as files, FileKind, Names};
use crate::backend::net_ops::uring::{self as net, NetKind};
use crate::backend::{OpOutcome, Origin};
use crate::op::SyscallOpType;
use crate::op::{LentBuf, OpError};
use crate::process::{Descriptor, DescriptorKind, Process};
use crate::sandbox::Sandbox;

/// The opcodes the crate uses, by name: the files', cancellation, the sockets'.
pub(super) const OPCODES: &[(&str, u8)] = &{
    const CANCEL: (&str, u8) = ("ASYNC_CANCEL", opcode::AsyncCancel::CODE);
    let mut all = [CANCEL; files::OPCODES.len() + 1 + net::OPCODES.len()];
    let mut i = 0;
    while i < files::OPCODES.len() {
        all[i] = files::OPCODES[i];
        i += 1;
    }
    let mut j = 0;
    while j < net::OPCODES.len() {
        all[i + 1 + j] = net::OPCODES[j];
        j += 1;
    }
    all
};

/// The opcode that runs `op` in the kernel, if any.
pub(super) fn opcode_of(op: &SyscallOpType) -> Option<u8> {
    files::opcode_of(op).or_else(|| net::opcode_of(op))
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

/// A request of one family or the other, as that family prepared it.
enum Kind {
    File(FileKind),
    Net(NetKind),
}

/// The descriptors a batch's requests name, looked up once for a run of requests of one process
/// on one descriptor (a batch of reads of one file), by routing and preparing alike: each lookup
/// takes the process's descriptor table lock, the dearest step of preparing a read. Lives for
/// one `submit` of one batch and keeps only the last lookup: a request prepared right after it
/// was routed (most batches hold one) acts on what its descriptor named then; the others look
/// theirs up again.
#[derive(Default)]
pub(super) struct Descriptors {
    /// The last one looked up: the process (by address, alive for the whole batch: every request
    /// prepared keeps its process), the virtual descriptor, and what it named then.
    last: Option<(*const Process, i32, Arc<Descriptor>)>,
}

impl Descriptors {
    pub(super) fn get(&mut self, process: &Process, fd: i32) -> Result<Arc<Descriptor>, OpError> {
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
    // A `Read` or `Write` of a socket is a `RECV` or `SEND` (flags 0, `MSG_NOSIGNAL`): it waits
    // as read(2) and write(2) of a blocking socket do, and a closed peer is `EPIPE`, not SIGPIPE.
    // Of anything else, it is a file's `READ` or `WRITE`.
    Ok(match op {
        SyscallOpType::Read { fd, size } => {
            let d = file(fd)?;
            if d.kind() == DescriptorKind::Socket {
                with(Kind::Net(net::recv(&d, size, 0)?), d)
            } else {
                with(Kind::File(files::read(&d, size)?), d)
            }
        }
        SyscallOpType::Write { fd, data } => {
            let d = file(fd)?;
            if d.kind() == DescriptorKind::Socket {
                with(Kind::Net(net::send(data, 0)), d)
            } else {
                with(Kind::File(files::write(&d, data)), d)
            }
        }
        SyscallOpType::ReadInto { fd, offset, buf, size } => read_into(file(fd), LentBuf::Vec(buf), offset, size)?,
        SyscallOpType::ReadFixed { fd, offset, buf, size } => read_into(file(fd), LentBuf::Fixed(buf), offset, size)?,
        SyscallOpType::WriteFrom { fd, offset, buf, range } => write_from(file(fd), LentBuf::Vec(buf), offset, range)?,
        SyscallOpType::WriteFixed { fd, offset, buf, range } => {
            write_from(file(fd), LentBuf::Fixed(buf), offset, range)?
        }
        other if net::opcode_of(&other).is_some() => {
            let rights = origin.needed_rights(&other, seq)?;
            let (kind, d) = net::prepare(process, rights, other)?;
            with(Kind::Net(kind), d)
        }
        other => {
            let (kind, names) = files::prepare(other, origin, seq, &mut file)?;
            let kind = Kind::File(kind);
            match names {
                Names::Nothing => Prepared { kind, fd: types::Fd(-1), _file: None, _sandbox: None },
                Names::File(d) => with(kind, d),
                Names::Dir(dir, sandbox) => Prepared { kind, fd: types::Fd(dir), _file: None, _sandbox: Some(sandbox) },
            }
        }
    })
}

/// A request with the descriptor it names, kept open while the kernel holds it.
fn with(kind: Kind, d: Arc<Descriptor>) -> Prepared {
    let fd = types::Fd(d.as_fd().as_raw_fd());
    Prepared { kind, fd, _file: Some(d), _sandbox: None }
}

/// A `ReadInto` or `ReadFixed` of descriptor `d` (as looked up): a socket's `RECV` at the
/// position, a file's `READ` (`READ_FIXED` once the driver has a registered buffer's pool
/// registered). The buffer comes back with any error.
fn read_into(
    d: Result<Arc<Descriptor>, OpError>,
    buf: LentBuf,
    offset: Option<u64>,
    size: usize,
) -> Result<Prepared, OpError> {
    let d = match d {
        Ok(d) => d,
        Err(e) => return Err(e.giving_back(Some(buf))),
    };
    Ok(match offset {
        None if d.kind() == DescriptorKind::Socket => with(Kind::Net(net::recv_into(&d, buf, size)?), d),
        Some(_) if d.is_stream() => return Err(files::no_offsets("pread").giving_back(Some(buf))),
        _ => with(Kind::File(files::read_into(&d, buf, size, offset.unwrap_or(files::CURRENT))?), d),
    })
}

/// A `WriteFrom` or `WriteFixed` of `buf[range]` to descriptor `d` (as looked up): as
/// [`read_into`], a `SEND` or a `WRITE` (`WRITE_FIXED`).
fn write_from(
    d: Result<Arc<Descriptor>, OpError>,
    buf: LentBuf,
    offset: Option<u64>,
    range: std::ops::Range<usize>,
) -> Result<Prepared, OpError> {
    let d = match d {
        Ok(d) => d,
        Err(e) => return Err(e.giving_back(Some(buf))),
    };
    Ok(match offset {
        None if d.kind() == DescriptorKind::Socket => with(Kind::Net(net::send_from(buf, range)), d),
        Some(_) if d.is_stream() => return Err(files::no_offsets("pwrite").giving_back(Some(buf))),
        _ => with(Kind::File(files::write_from(&d, buf, range, offset.unwrap_or(files::CURRENT))), d),
    })
}

impl Prepared {
    /// A registered buffer's pool and index, with where its index in the kernel ring's table
    /// goes once the driver has the pool registered there (see [`FileKind::fixed`]).
    #[inline]
    pub(super) fn fixed(&mut self) -> Option<(&Arc<crate::op::Pool>, u16, &mut Option<u16>)> {
        match &mut self.kind {
            Kind::File(kind) => kind.fixed(),
            Kind::Net(_) => None,
        }
    }

    /// Makes a request with a registered buffer's index a plain one of the same memory (see
    /// [`FileKind::unfix`]): whether it had an index.
    pub(super) fn unfix(&mut self) -> bool {
        match &mut self.kind {
            Kind::File(kind) => kind.unfix(),
            Kind::Net(_) => false,
        }
    }

    /// Whether the kernel may be given it again to go on waiting for its socket (an accept, a
    /// send or a receive; a connect is started once and never again).
    pub(super) fn may_wait_again(&self) -> bool {
        matches!(&self.kind, Kind::Net(kind) if kind.may_wait_again())
    }

    /// A multishot receive's buffers, to register before it is submitted and to unregister once
    /// the kernel is done with it.
    #[inline]
    pub(super) fn provided(&mut self) -> Option<&mut crate::backend::net_ops::provided::Provided> {
        match &mut self.kind {
            Kind::Net(kind) => kind.provided(),
            Kind::File(_) => None,
        }
    }

    /// The request, if it gives many results before its completion (a multishot accept or
    /// receive).
    #[inline]
    pub(super) fn multishot(&mut self) -> Option<&mut NetKind> {
        match &mut self.kind {
            Kind::Net(kind) if kind.is_multishot() => Some(kind),
            _ => None,
        }
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
            Kind::File(kind) => kind.sqe(fd),
            Kind::Net(kind) => kind.sqe(fd),
        };
        sqe.user_data(user_data)
    }
}

/// The outcome of a completed operation, from its completion's `result`. Takes what the outcome
/// needs from `prepared` where it lies (in the in-flight table), rather than having the whole
/// entry moved out first.
pub(super) fn outcome(prepared: &mut Prepared, result: i32) -> OpOutcome {
    match std::mem::replace(&mut prepared.kind, Kind::File(FileKind::Nop)) {
        Kind::File(kind) => files::outcome(kind, result),
        Kind::Net(kind) if kind.is_multishot() => kind.ended(result),
        Kind::Net(kind) if result < 0 => Err(net::errno_of(result).giving_back(kind.into_lent())),
        Kind::Net(kind) => net::outcome(kind, result),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::errno;
    use crate::syscalls::iouring::ring::test_support::ring;
    use std::os::fd::OwnedFd;

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
