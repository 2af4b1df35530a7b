//! Socket operations as io_uring requests: `ACCEPT`, `CONNECT`, `SEND`, `RECV`, and `SENDMSG` /
//! `RECVMSG` for datagrams with an address. The kernel waits for the socket itself (it polls
//! internally), so a parked accept or receive costs an entry in the in-flight table, no thread.
//!
//! Every address, header and buffer an entry points into is boxed here and owned by the
//! in-flight table until the completion arrives, as for files.

use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;

use io_uring::{opcode, squeue, types};
use rustix::net::SocketAddrAny;
use rustix::net::addr::{SocketAddrLen, SocketAddrStorage};

use crate::backend::file_ops;
use crate::backend::net_ops::provided::Provided;
use crate::backend::net_ops::{self, socket};
use crate::op::{LentBuf, OpError, errno};
use crate::op::{OpResult, SyscallOpType};
use crate::process::{Descriptor, DescriptorKind, FdSlot, Process};
use crate::sandbox::Sandbox;

/// What a socket request owns while the kernel holds it, and its flags.
pub(crate) enum NetKind {
    /// Room for the peer's address, and the new descriptor's place (taken before the kernel
    /// accepts anything).
    Accept(Box<AddrOut>, FdSlot),
    /// A multishot accept (`AcceptMulti`): its results are taken with [`NetKind::shot`], its
    /// completion with [`NetKind::ended`].
    AcceptMulti(Box<Many>),
    /// A multishot receive (`RecvMulti`) into its own ring of provided buffers, and, once it
    /// was asked to stop, what its completion reports then (as [`Many::stopping`]).
    RecvMulti {
        provided: Box<Provided>,
        stopping: Option<Result<(), OpError>>,
    },
    Connect {
        addr: Box<SocketAddrAny>,
    },
    /// `data[start..start + len]`; `lent`: `data` is the caller's (a `WriteFrom`), given back.
    Send {
        data: LentBuf,
        start: usize,
        len: u32,
        flags: i32,
        lent: bool,
    },
    /// `size` bytes into `buf`'s spare capacity, after its bytes (none: answered at once, as the
    /// other backends do); `lent`: `buf` is the caller's (a `ReadInto`), given back, with the
    /// capacity it came with.
    Recv {
        buf: LentBuf,
        size: u32,
        flags: i32,
        lent: Option<usize>,
    },
    SendTo {
        msg: Box<MsgOut>,
        _data: Vec<u8>,
        flags: u32,
    },
    RecvFrom {
        msg: Box<MsgIn>,
        buf: Vec<u8>,
        size: usize,
        flags: u32,
    },
}

/// What a multishot accept keeps while the kernel accepts for it.
pub(crate) struct Many {
    process: Arc<Process>,
    rights: Arc<Sandbox>,
    /// The place the next connection is installed in, taken before the kernel may accept it
    /// (`None` once none could be).
    place: Option<FdSlot>,
    /// Set once it was asked to stop: what its completion reports then (nothing, the stream
    /// asking no more, or the error that stopped it).
    stopping: Option<Result<(), OpError>>,
    /// The most connections the kernel may accept for it at once: all its listener can queue.
    burst: usize,
}

/// The most connections listener `d` can queue (its backlog, as the kernel keeps it: one more
/// than `listen(2)`'s), all of which a multishot accept takes in one wake-up; `None` for a
/// socket that does not say (not a listening TCP socket).
fn accept_burst(d: &Descriptor) -> Option<usize> {
    // SAFETY: all-zero is a valid `tcp_info` (plain integers).
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `d` is an open descriptor, and `info` is writable for `len` bytes.
    let got = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(d)),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    // A listening socket reports its backlog where a connected one reports SACKed segments.
    // `TCP_LISTEN` in the kernel's `tcp_states.h`.
    const TCP_LISTEN: u8 = 10;
    let listening = info.tcpi_state == TCP_LISTEN;
    (got == 0 && listening).then(|| info.tcpi_sacked as usize + 1)
}

/// Whether the kernel may accept for a multishot accept on listener `d` of `process`: only
/// while the process has a descriptor place (under `rights`) for every connection the kernel
/// could accept in one wake-up, and one taken ahead, so that none it accepts is closed for want
/// of a place. Otherwise the accepts run one at a time, each place taken first, where a
/// connection the process has no room for stays queued.
pub(crate) fn kernel_may_accept_all(process: &Process, rights: &Sandbox, d: &Descriptor) -> bool {
    accept_burst(d).is_some_and(|burst| process.fd_room(rights) > burst)
}

/// Room for the address the kernel writes (accept's peer).
pub(crate) struct AddrOut {
    storage: MaybeUninit<SocketAddrStorage>,
    len: SocketAddrLen,
}

/// A `sendmsg` header with its destination and one buffer.
pub(crate) struct MsgOut {
    addr: SocketAddrAny,
    iov: libc::iovec,
    hdr: libc::msghdr,
}

/// A `recvmsg` header with room for the sender's address and one buffer.
pub(crate) struct MsgIn {
    addr: AddrOut,
    iov: libc::iovec,
    hdr: libc::msghdr,
}

// SAFETY: the raw pointers inside `MsgOut`/`MsgIn` point only into the same box (the address, the
// iovec) or into the buffer owned beside it in `NetKind`; Rust code never reads or writes through
// them, only the kernel does, so moving the owner to another thread is sound.
unsafe impl Send for MsgOut {}
// SAFETY: as above.
unsafe impl Send for MsgIn {}

impl AddrOut {
    fn new() -> Box<Self> {
        Box::new(AddrOut { storage: MaybeUninit::uninit(), len: size_of::<SocketAddrStorage>() as SocketAddrLen })
    }

    /// The address the kernel wrote, if it is IPv4 or IPv6.
    fn get(&self) -> Result<SocketAddr, OpError> {
        let unsupported = || OpError::new(errno::EAFNOSUPPORT, "the peer's address is not IPv4 or IPv6");
        // `SocketAddrAny::new` panics below the family header or past the storage.
        if (self.len as usize) < size_of::<libc::sa_family_t>() || self.len as usize > size_of::<SocketAddrStorage>() {
            return Err(unsupported());
        }
        // SAFETY: the kernel initialised `len` bytes of `storage` with a socket address, and `len`
        // was just checked to lie within the bounds `new` requires.
        let any = unsafe { SocketAddrAny::new(self.storage, self.len) };
        any.try_into().map_err(|_| unsupported())
    }
}

/// The opcodes socket requests use, by name.
pub(crate) const OPCODES: &[(&str, u8)] = &[
    ("ACCEPT", opcode::Accept::CODE),
    ("CONNECT", opcode::Connect::CODE),
    ("SEND", opcode::Send::CODE),
    ("RECV", opcode::Recv::CODE),
    ("SENDMSG", opcode::SendMsg::CODE),
    ("RECVMSG", opcode::RecvMsg::CODE),
];

/// The opcode that runs a socket operation in the kernel, if any (`Socket`, `Bind`, `Listen` and
/// `LocalAddr` never wait: they run inline).
pub(crate) fn opcode_of(op: &SyscallOpType) -> Option<u8> {
    Some(match op {
        SyscallOpType::Accept { .. } | SyscallOpType::AcceptMulti { .. } => opcode::Accept::CODE,
        SyscallOpType::Connect { .. } => opcode::Connect::CODE,
        SyscallOpType::Send { .. } => opcode::Send::CODE,
        SyscallOpType::Recv { .. } | SyscallOpType::RecvMulti { .. } => opcode::Recv::CODE,
        SyscallOpType::SendTo { .. } => opcode::SendMsg::CODE,
        SyscallOpType::RecvFrom { .. } => opcode::RecvMsg::CODE,
        _ => None?,
    })
}

fn recv_flags(flags: u32) -> i32 {
    net_ops::recv_flags(flags).bits() as i32
}

/// Takes ownership of what a socket operation's entry will point into; the descriptor is
/// returned to be kept open. `rights` are the operation's own, if it needs them.
pub(crate) fn prepare(
    process: &Arc<Process>,
    rights: Option<Arc<Sandbox>>,
    op: SyscallOpType,
) -> Result<(NetKind, Arc<Descriptor>), OpError> {
    if let SyscallOpType::AcceptMulti { sockfd } = op {
        let d = socket(process, sockfd)?;
        let rights = rights.ok_or_else(net_ops::without_rights)?;
        let burst = accept_burst(&d).unwrap_or(usize::MAX);
        let place = Some(process.reserve_fd(&rights)?);
        let many = Many { process: process.clone(), rights, place, stopping: None, burst };
        return Ok((NetKind::AcceptMulti(Box::new(many)), d));
    }
    if let SyscallOpType::RecvMulti { sockfd, size } = op {
        let d = socket(process, sockfd)?;
        if size == 0 {
            return Err(OpError::new(errno::EINVAL, "a multishot receive needs room for its results"));
        }
        // Sizes were checked against the policy's limit, which fits a u32.
        net_ops::stream_socket(&d)?;
        let provided = Provided::new(net_ops::recv_capacity(&d, size))?;
        return Ok((NetKind::RecvMulti { provided, stopping: None }, d));
    }
    let rights = rights.as_deref();
    // Sizes were checked against the policy's limit, which fits a u32.
    Ok(match op {
        SyscallOpType::Accept { sockfd } => {
            let d = socket(process, sockfd)?;
            let rights = rights.ok_or_else(net_ops::without_rights)?;
            (NetKind::Accept(AddrOut::new(), process.reserve_fd(rights)?), d)
        }
        SyscallOpType::Connect { sockfd, addr } => {
            (NetKind::Connect { addr: Box::new(SocketAddrAny::from(addr)) }, socket(process, sockfd)?)
        }
        SyscallOpType::Send { sockfd, data, flags } => (send(data, flags), socket(process, sockfd)?),
        SyscallOpType::Recv { sockfd, size, flags } => {
            let d = socket(process, sockfd)?;
            (recv(&d, size, flags)?, d)
        }
        SyscallOpType::SendTo { sockfd, data, addr, flags } => {
            let d = socket(process, sockfd)?;
            net_ops::check_implicit_bind(&d, rights, "sendto")?;
            // SAFETY: `msghdr` and `iovec` are plain C structs for which all-zero is valid.
            let mut msg = Box::new(MsgOut {
                addr: SocketAddrAny::from(addr),
                iov: unsafe { std::mem::zeroed() },
                hdr: unsafe { std::mem::zeroed() },
            });
            msg.iov = libc::iovec { iov_base: data.as_ptr().cast_mut().cast(), iov_len: data.len() };
            msg.hdr.msg_name = msg.addr.as_ptr().cast_mut().cast();
            msg.hdr.msg_namelen = msg.addr.addr_len();
            msg.hdr.msg_iov = &mut msg.iov;
            msg.hdr.msg_iovlen = 1;
            (NetKind::SendTo { msg, _data: data, flags: net_ops::send_flags(flags).bits() }, d)
        }
        SyscallOpType::RecvFrom { sockfd, size, flags } => {
            let d = socket(process, sockfd)?;
            // A zero-sized datagram read still needs room to take the datagram off the queue.
            let mut buf = file_ops::read_buffer(net_ops::recv_capacity(&d, size).max(1))?;
            // SAFETY: as above.
            let mut msg = Box::new(MsgIn {
                addr: *AddrOut::new(),
                iov: unsafe { std::mem::zeroed() },
                hdr: unsafe { std::mem::zeroed() },
            });
            msg.iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.capacity() };
            msg.hdr.msg_name = msg.addr.storage.as_mut_ptr().cast();
            msg.hdr.msg_namelen = msg.addr.len;
            msg.hdr.msg_iov = &mut msg.iov;
            msg.hdr.msg_iovlen = 1;
            (NetKind::RecvFrom { msg, buf, size, flags: recv_flags(flags) as u32 }, d)
        }
        other => return Err(OpError::new(errno::EINVAL, format!("{} is not a socket request", other.name()))),
    })
}

/// A `SEND` of `data` (a `Send`, or a `Write` of a socket: `flags` 0), never raising SIGPIPE.
pub(crate) fn send(data: Vec<u8>, flags: u32) -> NetKind {
    // The length was checked against the policy's limit, which fits a u32.
    NetKind::Send {
        len: data.len() as u32,
        data: LentBuf::Vec(data),
        start: 0,
        flags: net_ops::send_flags(flags).bits() as i32,
        lent: false,
    }
}

/// A `SEND` of the caller's `buf[range]` (a `WriteFrom` of a socket), given back with the
/// outcome.
pub(crate) fn send_from(buf: LentBuf, range: std::ops::Range<usize>) -> NetKind {
    let flags = net_ops::send_flags(0).bits() as i32;
    NetKind::Send { data: buf, start: range.start, len: range.len() as u32, flags, lent: true }
}

/// A `RECV` of up to `size` bytes from socket `d` into the caller's `buf`, after its bytes (a
/// `ReadInto` of a socket): the buffer comes back with an error if it cannot grow.
pub(crate) fn recv_into(d: &Descriptor, mut buf: LentBuf, size: usize) -> Result<NetKind, OpError> {
    let had = buf.vec_mut().capacity();
    let size = buf.read_size(size);
    match file_ops::room_for(d, buf.vec_mut(), size, None) {
        Ok(size) => Ok(NetKind::Recv { buf, size: size as u32, flags: 0, lent: Some(had) }),
        Err(e) => Err(e.giving_back(Some(buf))),
    }
}

/// A `RECV` of up to `size` bytes from socket `d` (a `Recv`, or a `Read` of a socket: `flags`
/// 0), into a buffer no larger than the socket can fill; `ENOMEM` if it cannot be had.
pub(crate) fn recv(d: &Descriptor, size: usize, flags: u32) -> Result<NetKind, OpError> {
    let len = net_ops::recv_capacity(d, size);
    // Sizes were checked against the policy's limit, which fits a u32.
    let buf = LentBuf::Vec(file_ops::read_buffer(len)?);
    Ok(NetKind::Recv { buf, size: len as u32, flags: recv_flags(flags), lent: None })
}

impl NetKind {
    /// Whether the kernel may be given the request again to go on waiting for its socket.
    pub(crate) fn may_wait_again(&self) -> bool {
        !matches!(self, NetKind::Connect { .. })
    }

    /// The entry for socket `fd`, pointing into the boxes and buffers `self` owns.
    pub(crate) fn sqe(&mut self, fd: types::Fd) -> squeue::Entry {
        match self {
            NetKind::Accept(out, _) => {
                let flags = (rustix::net::SocketFlags::NONBLOCK | rustix::net::SocketFlags::CLOEXEC).bits() as i32;
                opcode::Accept::new(fd, out.storage.as_mut_ptr().cast(), &mut out.len).flags(flags).build()
            }
            // The peer's address is asked for each connection: one kernel-written address would
            // be overwritten by the next accept before it is read.
            NetKind::AcceptMulti(_) => {
                let flags = (rustix::net::SocketFlags::NONBLOCK | rustix::net::SocketFlags::CLOEXEC).bits() as i32;
                opcode::AcceptMulti::new(fd).flags(flags).build()
            }
            // Registered before it is submitted (see `uring::driver`).
            NetKind::RecvMulti { provided, .. } => {
                opcode::RecvMulti::new(fd, provided.group.unwrap_or_default()).flags(recv_flags(0)).build()
            }
            NetKind::Connect { addr } => opcode::Connect::new(fd, addr.as_ptr().cast(), addr.addr_len()).build(),
            NetKind::Send { data, start, len, flags, .. } => {
                opcode::Send::new(fd, data.as_slice()[*start..].as_ptr(), *len).flags(*flags).build()
            }
            // Nothing to wait for.
            NetKind::Recv { size: 0, .. } => opcode::Nop::new().build(),
            NetKind::Recv { buf, size, flags, .. } => {
                let room = buf.vec_mut().spare_capacity_mut().as_mut_ptr().cast::<u8>();
                opcode::Recv::new(fd, room, *size).flags(*flags).build()
            }
            NetKind::SendTo { msg, flags, .. } => opcode::SendMsg::new(fd, &msg.hdr).flags(*flags).build(),
            NetKind::RecvFrom { msg, flags, .. } => opcode::RecvMsg::new(fd, &mut msg.hdr).flags(*flags).build(),
        }
    }
}

impl NetKind {
    /// Whether it gives many results before its completion (a multishot accept or receive).
    pub(crate) fn is_multishot(&self) -> bool {
        matches!(self, NetKind::AcceptMulti(_) | NetKind::RecvMulti { .. })
    }

    /// Hands the buffer a completion's `flags` name back to a multishot receive's kernel ring.
    pub(crate) fn give_back(&mut self, flags: u32) {
        if let (NetKind::RecvMulti { provided, .. }, Some(bid)) = (self, io_uring::cqueue::buffer_select(flags)) {
            provided.give_back(bid);
        }
    }

    /// A multishot receive's buffers, to register and unregister.
    pub(crate) fn provided(&mut self) -> Option<&mut Provided> {
        match self {
            NetKind::RecvMulti { provided, .. } => Some(provided),
            _ => None,
        }
    }

    /// Where a multishot request keeps why it is being stopped.
    fn stopping_mut(&mut self) -> Option<&mut Option<Result<(), OpError>>> {
        match self {
            NetKind::AcceptMulti(many) => Some(&mut many.stopping),
            NetKind::RecvMulti { stopping, .. } => Some(stopping),
            _ => None,
        }
    }

    /// A multishot request's result from a completion with a non-negative `result` and
    /// `flags`: a connection (see [`shot`](Self::shot)) or received bytes (copied out of the
    /// buffer the kernel chose; none at end of file). With whether the request must be stopped.
    /// The buffer is handed back with [`give_back`](Self::give_back) only if the request goes
    /// on: one being stopped runs out of buffers, so the kernel fills at most the ones it had.
    pub(crate) fn result(&mut self, result: i32, flags: u32) -> (Option<OpResult>, bool) {
        let NetKind::RecvMulti { provided, stopping } = self else { return self.shot(result) };
        if result == 0 {
            return (None, false);
        }
        let taken = io_uring::cqueue::buffer_select(flags).and_then(|bid| provided.copy_out(bid, result as usize));
        // Bytes that cannot be handed on are lost: that error is the completion's, over a stop.
        let mut lost = |e: OpError| {
            if !matches!(stopping, Some(Err(_))) {
                *stopping = Some(Err(e));
            }
            (None, true)
        };
        match taken {
            Some(Ok(bytes)) => (Some(OpResult::Bytes(bytes)), stopping.is_some()),
            Some(Err(e)) => lost(e),
            None => lost(OpError::new(errno::EIO, "the kernel named no buffer of the ring")),
        }
    }

    /// A multishot accept's connection `fd` (a completion's non-negative result): installed in
    /// the place taken for it, the next place taken, as an [`OpResult::Accepted`] for its
    /// stream; `None` when it cannot be handed on (no place was left for it, or it cannot be
    /// set up: it is closed, and the request stops with that error). With whether the request
    /// must be stopped: no place is left for the next one. A connection its client reset before
    /// it could be set up is closed alone.
    pub(crate) fn shot(&mut self, fd: i32) -> (Option<OpResult>, bool) {
        // SAFETY: a successful ACCEPT returns a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let NetKind::AcceptMulti(many) = self else { return (None, false) };
        // No place taken ahead (it is being stopped): one is taken now if there is room.
        let Some(place) = many.place.take().or_else(|| many.process.reserve_fd(&many.rights).ok()) else {
            return (None, true);
        };
        // A connection its client reset before it was set up (`getpeername` then fails, where
        // accept(2) still returned it) is closed alone: the place stays for the next one.
        let Ok(peer) = net_ops::bound_kernel_waits(&fd).and_then(|()| net_ops::peer_of(&fd)) else {
            many.place = Some(place);
            return (None, false);
        };
        let installed = match place.install(Descriptor::new(fd, DescriptorKind::Socket)) {
            Ok(fd) => OpResult::Accepted { fd, peer },
            Err(e) => {
                many.stopping = Some(Err(e));
                return (None, true);
            }
        };
        match many.process.reserve_fd(&many.rights) {
            Ok(next) if many.stopping.is_none() => many.place = Some(next),
            Ok(_) => {}
            Err(e) => {
                many.stopping.get_or_insert(Err(e));
            }
        }
        // Too little room left for what the kernel could accept next: it stops (and completes
        // `None`), to be submitted again where the accepts take their places one at a time.
        if many.stopping.is_none() && many.process.fd_room(&many.rights) < many.burst {
            many.stopping = Some(Ok(()));
        }
        (Some(installed), many.stopping.is_some())
    }

    /// Records that a multishot accept is being stopped because its stream asks no more (unless
    /// an error stopped it first).
    pub(crate) fn stop(&mut self) {
        if let Some(stopping) = self.stopping_mut() {
            stopping.get_or_insert(Ok(()));
        }
    }

    /// Whether a multishot accept is being stopped by this crate (not cancelled by the kernel on
    /// its own): its `ECANCELED` is its completion, not a reason to submit it again.
    pub(crate) fn stopping(&self) -> bool {
        match self {
            NetKind::AcceptMulti(many) => many.stopping.is_some(),
            NetKind::RecvMulti { stopping, .. } => stopping.is_some(),
            _ => false,
        }
    }

    /// Forgets why a multishot accept was being stopped: its cancellation was asked for, which
    /// its completion reports instead.
    pub(crate) fn cancelled(&mut self) {
        if let Some(stopping) = self.stopping_mut() {
            *stopping = None;
        }
    }

    /// A multishot accept's completion, from its last completion's `result`: an error, or,
    /// stopped by this crate, [`OpResult::None`] (or the error that stopped it); ended by the
    /// kernel after a connection (handed on as a result), `None` too.
    pub(crate) fn ended(self, result: i32) -> Result<OpResult, OpError> {
        let (stopping, receives) = match self {
            NetKind::AcceptMulti(many) => (many.stopping, false),
            NetKind::RecvMulti { stopping, .. } => (stopping, true),
            _ => (None, false),
        };
        let cancelled = -rustix::io::Errno::CANCELED.raw_os_error();
        match stopping {
            // Received bytes were lost: never reported as an end of file or a stop.
            Some(Err(e)) if receives => Err(e),
            // The peer closed (a receive's end of file is its last completion).
            _ if receives && result == 0 => Ok(OpResult::Bytes(Vec::new())),
            // A receive being stopped that a kernel worker ran until its socket's timeout.
            Some(Ok(())) if result == -rustix::io::Errno::AGAIN.raw_os_error() => Ok(OpResult::None),
            // Out of buffers (the kernel outran this side's handing them back): stopped.
            _ if receives && result == -rustix::io::Errno::NOBUFS.raw_os_error() => Ok(OpResult::None),
            // The kernel's own error wins over a stop for room.
            Some(Ok(())) if result < 0 && result != cancelled => Err(errno_of(result)),
            Some(how) => how.map(|()| OpResult::None),
            None if result < 0 => Err(errno_of(result)),
            None => Ok(OpResult::None),
        }
    }

    /// The caller's buffer it carries (a `ReadInto` or `WriteFrom` of a socket), to give back
    /// with its error (without the room the receive made in it).
    pub(crate) fn into_lent(self) -> Option<LentBuf> {
        match self {
            NetKind::Send { data: buf, lent: true, .. } => Some(buf),
            NetKind::Recv { mut buf, lent: Some(had), .. } => {
                file_ops::trim_growth(buf.vec_mut(), had);
                Some(buf)
            }
            _ => None,
        }
    }
}

/// The error a completion's negative `result` names.
pub(crate) fn errno_of(result: i32) -> OpError {
    OpError::from(rustix::io::Errno::from_raw_os_error(-result))
}

/// The outcome of a socket request that completed with `n` (not an error).
pub(crate) fn outcome(kind: NetKind, n: i32) -> Result<OpResult, OpError> {
    let len = n as usize;
    Ok(match kind {
        kind @ (NetKind::AcceptMulti(_) | NetKind::RecvMulti { .. }) => return kind.ended(n),
        NetKind::Accept(out, place) => {
            // SAFETY: a successful ACCEPT returns a new descriptor that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(n) };
            // As every socket the crate holds (see `net_ops::bound_kernel_waits`); a refusal
            // drops (closes) the new connection.
            net_ops::bound_kernel_waits(&fd)?;
            // An address that cannot be reported drops (closes) the new connection.
            let peer = out.get()?;
            OpResult::Accepted { fd: place.install(Descriptor::new(fd, DescriptorKind::Socket))?, peer }
        }
        NetKind::Connect { .. } => OpResult::None,
        NetKind::Send { data, lent: true, .. } => data.into_result(len),
        NetKind::Send { .. } | NetKind::SendTo { .. } => OpResult::Count(len),
        NetKind::Recv { mut buf, size, lent, .. } => {
            let len = len.min(size as usize);
            let read = buf.vec_mut();
            // SAFETY: the kernel wrote `len` bytes (at most the `size` it was given, within the
            // spare capacity) at the start of the buffer's spare capacity.
            unsafe { read.set_len(read.len() + len) };
            file_ops::read_result(buf, len, lent)
        }
        NetKind::RecvFrom { msg, mut buf, size, .. } => {
            // SAFETY: as for `Recv`; the datagram's bytes past the buffer were discarded by the
            // kernel.
            unsafe { buf.set_len(len.min(buf.capacity())) };
            buf.truncate(size);
            file_ops::fit(&mut buf);
            let from = AddrOut { storage: msg.addr.storage, len: msg.hdr.msg_namelen }.get()?;
            OpResult::Datagram { data: buf, from }
        }
    })
}
