//! Operations that wait on a peer, on non-blocking descriptors: socket calls, and the reads and
//! writes of sockets, FIFOs and character devices ([`runs_on_readiness`]). Each backend supplies
//! the [`Readiness`] that waits for a descriptor to become ready (async-io's reactor, tokio's
//! `AsyncFd`); the system calls are the same for all.
//!
//! The family keeps here how a pool runs its operations (on readiness), and in `uring.rs` how
//! io_uring prepares them (`ACCEPT`, `CONNECT`, `SEND`, `RECV`, `SENDMSG`, `RECVMSG`), builds
//! their entries and reads their completions. What the rest of the crate knows of each of them before it runs (its class, whether
//! it acts with rights, its transfer length) is its row in the operation vocabulary, and the
//! policy's rules for it are the sandbox's (`Policy::check_socket`).

#[cfg(all(feature = "uring", target_os = "linux"))]
pub(crate) mod provided;
#[cfg(all(feature = "uring", target_os = "linux"))]
pub(crate) mod uring;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use rustix::buffer::spare_capacity;
use rustix::io::Errno;
use rustix::net::{AddressFamily, Protocol, RecvFlags, SendFlags, SocketFlags, SocketType};

use super::{OpOutcome, Operation, file_ops};
use crate::op::{LentBuf, OpError, errno};
use crate::op::{OpResult, SyscallOpType};
use crate::process::{Descriptor, DescriptorKind, Process};
use crate::sandbox::Sandbox;

/// Which readiness an attempt waits for after `EAGAIN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Readable (or a connection to accept).
    Read,
    /// Writable (or a connection established).
    Write,
}

/// How a backend waits for a socket.
pub trait Readiness: Send + Sync {
    /// Calls `attempt` until it returns anything but `EAGAIN`, waiting for `interest` on `d`
    /// between tries. Dropping the future stops waiting.
    fn retry<T: Send>(
        &self,
        d: &Descriptor,
        interest: Interest,
        attempt: impl FnMut() -> Result<T, Errno> + Send,
    ) -> impl Future<Output = Result<T, OpError>> + Send;
}

/// Executes a socket operation (see [`SyscallOpType::is_network`]); other operations are
/// refused with `EINVAL`.
pub async fn execute<R: Readiness>(mut op: Operation, ready: &R) -> OpOutcome {
    if let Some(buf) = op.take_buffer() {
        return with_buffer(&op, buf, ready).await;
    }
    let rights = op.needs_rights()?;
    match *op.op() {
        SyscallOpType::AcceptMulti { sockfd } => return accept_many(&op, sockfd, rights.as_deref(), ready).await,
        SyscallOpType::RecvMulti { sockfd, size } => return recv_many(&op, sockfd, size, ready).await,
        _ => {}
    }
    execute_ref(op.op(), op.process(), rights.as_deref(), ready).await
}

/// An `AcceptMulti`: accepts connections as they come, handing each to the operation's stream
/// ([`Operation::more`]) until told to stop, then ends with [`OpResult::None`] (cancelled, if it
/// was). Each connection is accepted as an `Accept`'s is: a place in the descriptor table taken
/// first (at the limit the operation ends with `EMFILE`, the connection left queued), installed
/// and handed on in the poll that accepted it, so that no cancellation comes between. Any error
/// ends the operation, as it ends a multishot accept in the kernel. A flood of connections
/// taken as fast as they come holds its thread for at most [`RESULTS_IN_A_ROW`] at a time.
async fn accept_many<R: Readiness>(op: &Operation, sockfd: i32, rights: Option<&Sandbox>, ready: &R) -> OpOutcome {
    let d = socket(op.process(), sockfd)?;
    let rights = rights.ok_or_else(without_rights)?;
    for taken in 1.. {
        let accepted = accept(op.process(), rights, &d, &FirstAtOnce { ready, first: taken == 1 }).await?;
        if !op.more(Ok(accepted)) {
            break;
        }
        if taken % RESULTS_IN_A_ROW == 0 {
            yield_once().await;
        }
    }
    if op.is_cancelled() { Err(OpError::cancelled()) } else { Ok(OpResult::None) }
}

/// A `RecvMulti`: receives data as it comes, handing each receive (up to `size` bytes) to the
/// operation's stream until told to stop, then ends with [`OpResult::None`] (cancelled, if it
/// was); ends with an empty [`OpResult::Bytes`] when the peer closed. Each receive is handed
/// on in the poll that took it from the socket, so that no cancellation comes between.
async fn recv_many<R: Readiness>(op: &Operation, sockfd: i32, size: usize, ready: &R) -> OpOutcome {
    let d = socket(op.process(), sockfd)?;
    stream_socket(&d)?;
    if size == 0 {
        return Err(OpError::new(errno::EINVAL, "a multishot receive needs room for its results"));
    }
    for taken in 1.. {
        match recv(&d, &FirstAtOnce { ready, first: taken == 1 }, size, 0).await? {
            OpResult::Bytes(data) if data.is_empty() => return Ok(OpResult::Bytes(data)),
            data => {
                if !op.more(Ok(data)) {
                    break;
                }
            }
        }
        if taken % RESULTS_IN_A_ROW == 0 {
            yield_once().await;
        }
    }
    if op.is_cancelled() { Err(OpError::cancelled()) } else { Ok(OpResult::None) }
}

/// `ready`, with the call tried once at once before any wait when `first`: the first call of a
/// multishot operation, which is not tried when it starts as others are (see [`try_now`]). A
/// readiness that waits for an edge first (tokio's) would hold an accept on a socket that does
/// not listen until something arrives, where the call fails at once.
struct FirstAtOnce<'r, R> {
    ready: &'r R,
    first: bool,
}

impl<R: Readiness> Readiness for FirstAtOnce<'_, R> {
    async fn retry<T: Send>(
        &self,
        d: &Descriptor,
        interest: Interest,
        mut attempt: impl FnMut() -> Result<T, Errno> + Send,
    ) -> Result<T, OpError> {
        if self.first {
            match attempt() {
                Err(Errno::AGAIN) => {}
                done => return done.map_err(OpError::from),
            }
        }
        self.ready.retry(d, interest, attempt).await
    }
}

/// How many results (connections, receives) a multishot operation on a pool takes before it
/// lets its thread run other tasks.
const RESULTS_IN_A_ROW: usize = 16;

/// Lets the executor run other tasks once before going on.
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if std::mem::replace(&mut yielded, true) {
            return std::task::Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await
}

/// Waits for a connection on listener `d` and installs it in `process`'s descriptor table (a
/// place taken first: a refused accept leaves the connection queued for a later one).
async fn accept<R: Readiness>(process: &Arc<Process>, rights: &Sandbox, d: &Descriptor, ready: &R) -> OpOutcome {
    // Taken for the whole wait, as an io_uring accept in the kernel must.
    let place = process.reserve_fd(rights)?;
    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    let (fd, peer) = ready.retry(d, Interest::Read, || rustix::net::acceptfrom_with(d, flags)).await?;
    // A connection inherits its listener's timeouts, but every socket the crate holds has them
    // set by the crate itself (a refusal drops, closes, the connection).
    bound_kernel_waits(&fd)?;
    let peer = inet(peer.and_then(|p| p.try_into().ok()))?;
    // The new connection is installed in the same poll that accepted it, so no cancellation can
    // come between and lose it.
    Ok(OpResult::Accepted { fd: place.install(Descriptor::new(fd, DescriptorKind::Socket))?, peer })
}

/// Runs a `ReadInto` or `WriteFrom` of a socket, FIFO or character device with the caller's
/// buffer, taken out of `op`, raced against its cancellation here, where the buffer outlives the
/// race: it comes back in the outcome however the operation ends (the pool's
/// [`run_waiting`](super::run_waiting) lets this run answer a cancellation first).
async fn with_buffer<R: Readiness>(op: &Operation, mut buf: LentBuf, ready: &R) -> OpOutcome {
    let cancel = op.cancel_token();
    let had = buf.vec_mut().capacity();
    let moved = {
        let mut run = std::pin::pin!(moved_with(op.op(), op.process(), &mut buf, ready));
        std::future::poll_fn(|cx| {
            if cancel.poll_cancelled(cx).is_ready() {
                return std::task::Poll::Ready(Err(OpError::cancelled()));
            }
            run.as_mut().poll(cx)
        })
        .await
    };
    file_ops::give_back(moved, buf, had)
}

/// What [`with_buffer`] runs: the count moved.
async fn moved_with<R: Readiness>(
    op: &SyscallOpType,
    process: &Process,
    buf: &mut LentBuf,
    ready: &R,
) -> Result<usize, OpError> {
    match *op {
        SyscallOpType::ReadInto { fd, size, .. } | SyscallOpType::ReadFixed { fd, size, .. } => {
            let size = buf.read_size(size);
            read_peer(&*process.descriptor(fd)?, ready, buf.vec_mut(), size).await
        }
        SyscallOpType::WriteFrom { fd, ref range, .. } | SyscallOpType::WriteFixed { fd, ref range, .. } => {
            write_peer(&*process.descriptor(fd)?, ready, &buf.as_slice()[range.clone()]).await
        }
        _ => Err(OpError::new(errno::EINVAL, format!("{} carries no buffer", op.name()))),
    }
}

/// A read at the position of `d`, a socket (a receive without flags), a FIFO or a character
/// device (at most [`STREAM_CHUNK`]): waits for data, then appends up to `size` bytes to `buf`,
/// grown if it must be by what `d` can fill. The count read.
async fn read_peer<R: Readiness>(d: &Descriptor, ready: &R, buf: &mut Vec<u8>, size: usize) -> Result<usize, OpError> {
    let socket = d.kind() == DescriptorKind::Socket;
    let size = if socket { size } else { size.min(STREAM_CHUNK) };
    let size = file_ops::room_for(d, buf, size, None)?;
    if size == 0 {
        return Ok(0);
    }
    ready
        .retry(d, Interest::Read, || {
            // SAFETY: both reads return the bytes they wrote at the start of `room`.
            unsafe {
                file_ops::fill_spare(buf, size, |room| {
                    if socket {
                        rustix::net::recv(d, room, RecvFlags::empty()).map(|((read, _), _)| read.len())
                    } else {
                        file_ops::read_now(d, room)
                    }
                })
            }
        })
        .await
}

/// A write at the position of `d`, a socket (a send without flags), a FIFO or a character
/// device (at most [`STREAM_CHUNK`]): waits for room, then writes what fits. The count written.
async fn write_peer<R: Readiness>(d: &Descriptor, ready: &R, data: &[u8]) -> Result<usize, OpError> {
    if d.kind() == DescriptorKind::Socket {
        let flags = send_flags(0);
        return ready.retry(d, Interest::Write, || rustix::net::send(d, data, flags)).await;
    }
    let data = &data[..data.len().min(STREAM_CHUNK)];
    ready.retry(d, Interest::Write, || file_ops::write_now(d, data)).await
}

/// Tries an operation that runs on the readiness path ([`runs_on_readiness`]: the caller has
/// checked; anything else completes `EINVAL`) once on the calling thread, without waiting: its
/// outcome if it
/// needed no wait (data already there, room to send, a connection already queued, a socket
/// call that never waits, or an error), `None` if it would have waited. As a readiness loop
/// tries the system call before it waits, this spares a backend the trip to its reactor when the
/// answer is already there. A `Connect` is never tried this way: started here, it could only be
/// finished by a second `connect(2)`, which reports `EALREADY`. `is_cancelled` is asked only of
/// an operation that would be tried: one cancelled before it started takes the normal path,
/// which reports that. `rights` are the operation's own, if it needs them
/// ([`Operation::needs_rights`]).
pub fn try_now(
    op: &SyscallOpType,
    process: &Arc<Process>,
    rights: Option<&Sandbox>,
    is_cancelled: impl FnOnce() -> bool,
) -> Option<OpOutcome> {
    // One that carries the caller's buffer runs where it can give it back (see `with_buffer`).
    if matches!(op, SyscallOpType::Connect { .. }) || op.lends_buffer() || op.is_multishot() || is_cancelled() {
        return None;
    }
    match execute_now(op, process, rights) {
        Err(e) if e.errno() == errno::EAGAIN => None,
        outcome => Some(outcome),
    }
}

/// Whether `op` runs on the readiness path for `process`: a socket call
/// ([`SyscallOpType::is_network`]), or a `Read` or `Write` of a descriptor that waits on a peer
/// ([`Descriptor::waits_on_peer`]: a socket, a FIFO, a character device). A `Read` or `Write` of
/// a socket behaves as a `Recv` or `Send` without flags; one of a FIFO or a character device is
/// a non-blocking read(2) or write(2) retried on readiness. Either waits for data or for room
/// as on a blocking descriptor, holding no thread; a closed peer is `EPIPE`, never SIGPIPE.
pub fn runs_on_readiness(op: &SyscallOpType, process: &Process) -> bool {
    op.is_network() || read_or_write_of_peer(op, |fd| process.descriptor(fd)).is_some()
}

/// Whether `op` may wait on a peer for an unbounded time: [`SyscallOpType::may_wait_on_peer`],
/// or a `Read` or `Write` of a descriptor that waits on a peer.
pub fn may_wait_on_peer(op: &SyscallOpType, process: &Process) -> bool {
    op.may_wait_on_peer() || read_or_write_of_peer(op, |fd| process.descriptor(fd)).is_some()
}

/// The descriptor a `Read` or `Write` (or a `ReadInto`, `WriteFrom`, `ReadFixed` or
/// `WriteFixed` at the position) names, if it waits on a peer (one descriptor lookup, with
/// `lookup`).
pub(crate) fn read_or_write_of_peer(
    op: &SyscallOpType,
    lookup: impl FnOnce(i32) -> Result<Arc<Descriptor>, OpError>,
) -> Option<Arc<Descriptor>> {
    match op {
        SyscallOpType::Read { fd, .. }
        | SyscallOpType::Write { fd, .. }
        | SyscallOpType::ReadInto { fd, offset: None, .. }
        | SyscallOpType::WriteFrom { fd, offset: None, .. }
        | SyscallOpType::ReadFixed { fd, offset: None, .. }
        | SyscallOpType::WriteFixed { fd, offset: None, .. } => lookup(*fd).ok().filter(|d| d.waits_on_peer()),
        _ => None,
    }
}

/// Runs a socket operation once on the calling thread, without waiting: its outcome, `EAGAIN`
/// included. For the calls that never wait (`Socket`, `Bind`, `Listen`, `LocalAddr`, `PeerAddr`,
/// `Shutdown`). `rights`
/// are the operation's own, if it needs them ([`Operation::needs_rights`]).
pub fn execute_now(op: &SyscallOpType, process: &Arc<Process>, rights: Option<&Sandbox>) -> OpOutcome {
    let mut attempt = std::pin::pin!(execute_ref(op, process, rights, &NoWait));
    match attempt.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(outcome) => outcome,
        // `NoWait` never returns a pending future.
        std::task::Poll::Pending => Err(OpError::from(Errno::AGAIN)),
    }
}

/// Readiness that never waits: one attempt, its outcome as it is (`EAGAIN` included).
struct NoWait;

impl Readiness for NoWait {
    fn retry<T: Send>(
        &self,
        _d: &Descriptor,
        _interest: Interest,
        mut attempt: impl FnMut() -> Result<T, Errno> + Send,
    ) -> impl Future<Output = Result<T, OpError>> + Send {
        std::future::ready(attempt().map_err(OpError::from))
    }
}

async fn execute_ref<R: Readiness>(
    op: &SyscallOpType,
    process: &Arc<Process>,
    rights: Option<&Sandbox>,
    ready: &R,
) -> OpOutcome {
    let socket = |fd: i32| socket(process, fd);
    // The descriptor limit is checked (a place taken) before the kernel makes a descriptor.
    let reserve = || process.reserve_fd(rights.ok_or_else(without_rights)?);
    match op {
        SyscallOpType::Socket { domain, ty, protocol } => {
            let place = reserve()?;
            let fd = open_socket(*domain, *ty, *protocol)?;
            Ok(OpResult::Fd(place.install(Descriptor::new(fd, DescriptorKind::Socket))?))
        }
        SyscallOpType::Bind { sockfd, addr } => {
            rustix::net::bind(&*socket(*sockfd)?, addr)?;
            Ok(OpResult::None)
        }
        SyscallOpType::Listen { sockfd, backlog } => {
            let d = socket(*sockfd)?;
            check_implicit_bind(&d, rights, "listen")?;
            rustix::net::listen(&*d, *backlog)?;
            Ok(OpResult::None)
        }
        SyscallOpType::LocalAddr { sockfd } => {
            Ok(OpResult::Addr(inet(rustix::net::getsockname(&*socket(*sockfd)?)?.try_into().ok())?))
        }
        SyscallOpType::PeerAddr { sockfd } => Ok(OpResult::Addr(peer_of(&*socket(*sockfd)?)?)),
        SyscallOpType::Shutdown { sockfd, how } => {
            let how = match how {
                0 => rustix::net::Shutdown::Read,
                1 => rustix::net::Shutdown::Write,
                _ => rustix::net::Shutdown::Both,
            };
            rustix::net::shutdown(&*socket(*sockfd)?, how)?;
            Ok(OpResult::None)
        }
        SyscallOpType::Accept { sockfd } => {
            accept(process, rights.ok_or_else(without_rights)?, &*socket(*sockfd)?, ready).await
        }
        SyscallOpType::Connect { sockfd, addr } => {
            let d = socket(*sockfd)?;
            // Started before the socket is registered with a reactor: registered while still
            // unconnected, tokio would record the hang-up an idle socket reports and keep it
            // for good.
            match rustix::net::connect(&*d, addr) {
                Err(Errno::INPROGRESS) => {}
                other => return Ok(other.map(|()| OpResult::None)?),
            }
            ready
                .retry(&d, Interest::Write, || {
                    // Writable: the handshake ended, one way or the other.
                    rustix::net::sockopt::socket_error(&*d)??;
                    match rustix::net::getpeername(&*d) {
                        Err(Errno::NOTCONN) => Err(Errno::AGAIN),
                        other => other.map(drop),
                    }
                })
                .await?;
            Ok(OpResult::None)
        }
        SyscallOpType::Send { sockfd, data, flags } => send(&*socket(*sockfd)?, ready, data, *flags).await,
        SyscallOpType::Write { fd, data } => {
            Ok(OpResult::Count(write_peer(&*process.descriptor(*fd)?, ready, data).await?))
        }
        SyscallOpType::SendTo { sockfd, data, addr, flags } => {
            let d = socket(*sockfd)?;
            check_implicit_bind(&d, rights, "sendto")?;
            let flags = send_flags(*flags);
            let n = ready.retry(&d, Interest::Write, || rustix::net::sendto(&*d, data, flags, addr)).await?;
            Ok(OpResult::Count(n))
        }
        SyscallOpType::Recv { sockfd, size, flags } => recv(&*socket(*sockfd)?, ready, *size, *flags).await,
        SyscallOpType::Read { fd, size } => {
            let mut buf = Vec::new();
            read_peer(&*process.descriptor(*fd)?, ready, &mut buf, *size).await?;
            file_ops::fit(&mut buf);
            Ok(OpResult::Bytes(buf))
        }
        SyscallOpType::RecvFrom { sockfd, size, flags } => {
            let d = socket(*sockfd)?;
            let flags = recv_flags(*flags);
            // A zero-sized datagram read still needs room to take the datagram off the queue.
            let mut buf = file_ops::read_buffer(recv_capacity(&d, *size).max(1))?;
            let from = ready
                .retry(&d, Interest::Read, || {
                    rustix::net::recvfrom(&*d, spare_capacity(&mut buf), flags).map(|(_, _, from)| from)
                })
                .await?;
            buf.truncate(*size);
            file_ops::fit(&mut buf);
            Ok(OpResult::Datagram { data: buf, from: inet(from.and_then(|f| f.try_into().ok()))? })
        }
        other => Err(OpError::new(errno::EINVAL, format!("{} is not a socket operation", other.name()))),
    }
}

/// `Send` (and `Write` of a socket): waits for room, then sends what fits.
async fn send<R: Readiness>(d: &Descriptor, ready: &R, data: &[u8], flags: u32) -> OpOutcome {
    let flags = send_flags(flags);
    Ok(OpResult::Count(ready.retry(d, Interest::Write, || rustix::net::send(d, data, flags)).await?))
}

/// `Recv` (and `Read` of a socket): waits for data, then takes what is there, up to `size`
/// bytes, in a buffer no larger than the socket can fill.
async fn recv<R: Readiness>(d: &Descriptor, ready: &R, size: usize, flags: u32) -> OpOutcome {
    let flags = recv_flags(flags);
    let mut buf = file_ops::read_buffer(recv_capacity(d, size))?;
    if size > 0 {
        ready.retry(d, Interest::Read, || rustix::net::recv(d, spare_capacity(&mut buf), flags).map(drop)).await?;
    }
    file_ops::fit(&mut buf);
    Ok(OpResult::Bytes(buf))
}

/// The most one `Read` or `Write` of a FIFO or a character device moves (a short count, as
/// read(2) and write(2) may give): such a call may run where an operation is started, on a
/// thread others share (a device that never runs dry, `/dev/urandom`, answers at once), so its
/// cost stays that of a pipe's buffer, not of a 64 MiB request.
pub const STREAM_CHUNK: usize = 64 << 10;

/// The largest datagram: a receive of one never needs more room.
const MAX_DATAGRAM: usize = 1 << 16;

/// The buffer to allocate for a receive of up to `size` bytes on socket `d`: `size` itself up
/// to [`SIZE_CHECKED_ABOVE`](file_ops::SIZE_CHECKED_ABOVE); above it at most one datagram on a
/// datagram socket, and on a stream socket at most its receive buffer (`SO_RCVBUF`: what can be
/// queued, asked each time as the kernel may grow it), never less than `SIZE_CHECKED_ABOVE`.
pub(crate) fn recv_capacity(d: &Descriptor, size: usize) -> usize {
    if size <= file_ops::SIZE_CHECKED_ABOVE {
        return size;
    }
    let most = match rustix::net::sockopt::socket_type(d) {
        Ok(SocketType::DGRAM) => MAX_DATAGRAM,
        _ => rustix::net::sockopt::socket_recv_buffer_size(d).unwrap_or(size),
    };
    file_ops::capped(size, most)
}

/// A non-blocking, close-on-exec IPv4 or IPv6 stream or datagram socket.
fn open_socket(domain: i32, ty: i32, protocol: i32) -> Result<std::os::fd::OwnedFd, OpError> {
    let family = match domain {
        d if d == i32::from(AddressFamily::INET.as_raw()) => AddressFamily::INET,
        d if d == i32::from(AddressFamily::INET6.as_raw()) => AddressFamily::INET6,
        d => {
            return Err(OpError::new(errno::EAFNOSUPPORT, format!("socket: domain {d} is not AF_INET or AF_INET6")));
        }
    };
    // The caller's SOCK_NONBLOCK/SOCK_CLOEXEC bits are ignored: sockets are always both.
    let base = ty & !(SocketFlags::NONBLOCK.bits() as i32 | SocketFlags::CLOEXEC.bits() as i32);
    let kind = match u32::try_from(base) {
        Ok(t) if t == SocketType::STREAM.as_raw() => SocketType::STREAM,
        Ok(t) if t == SocketType::DGRAM.as_raw() => SocketType::DGRAM,
        _ => return Err(OpError::new(errno::EINVAL, format!("socket: type {ty} is not SOCK_STREAM or SOCK_DGRAM"))),
    };
    let protocol = u32::try_from(protocol)
        .map_err(|_| OpError::new(errno::EINVAL, format!("socket: protocol {protocol} is negative")))?;
    let protocol = std::num::NonZeroU32::new(protocol).map(Protocol::from_raw);
    let fd = rustix::net::socket_with(family, kind, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC, protocol)?;
    bound_kernel_waits(&fd)?;
    Ok(fd)
}

/// How long a receive or a send of one of this crate's sockets may wait in the kernel when
/// something runs it blocking: the socket's `SO_RCVTIMEO` and `SO_SNDTIMEO`.
///
/// Only io_uring ever does. Every other path passes `MSG_DONTWAIT`, as the kernel adds it for a
/// file opened `O_NONBLOCK` (`recv(2)`, `send(2)`, `recvfrom(2)`, `sendto(2)`, `read(2)` and
/// `write(2)` of a socket), and a call that may not wait never looks at the timeouts. io_uring's
/// `RECV`, `SEND`, `RECVMSG` and `SENDMSG` ignore the file's `O_NONBLOCK` and pass
/// `MSG_DONTWAIT` only when polling: a request woken too often for data others took (128 times)
/// is no longer polled but run blocking on one of the kernel's few io-wq workers (see
/// `bound_kernel_workers` in the io_uring driver), where, without a timeout, it would hold the
/// worker until data came, and every other tenant's request handed to those workers would wait
/// behind it, for good if none came. With it, the worker's receive ends `EAGAIN` within this
/// time and the driver submits it again, to be polled afresh: a worker is never held longer,
/// and no request is ever sent back in a loop (it is polled again until it is woken another
/// 128 times in vain). (`ACCEPT` and `CONNECT` honour the listener's or socket's `O_NONBLOCK`
/// even on a worker: they never block there.)
///
/// The kernel counts it in whole scheduler ticks, rounded up: this asks for the shortest wait
/// it can keep, one tick (1 ms at `HZ` 1000, 4 ms at 250, 10 ms at 100). Shorter is better
/// here: the wait only delays the worker's next request, and a request that times out loses
/// nothing (it is polled again, and takes its data when it comes).
pub(crate) const KERNEL_WAIT: std::time::Duration = std::time::Duration::from_millis(1);

/// Sets `fd`'s receive and send timeouts to [`KERNEL_WAIT`], so that no receive or send of it
/// run blocking (only io_uring's workers do) holds its thread any longer. Called on every socket
/// the crate makes or accepts, before anything else sees it, on every backend.
pub(crate) fn bound_kernel_waits(fd: impl std::os::fd::AsFd) -> Result<(), OpError> {
    use rustix::net::sockopt::{Timeout, set_socket_timeout};
    set_socket_timeout(&fd, Timeout::Recv, Some(KERNEL_WAIT))?;
    set_socket_timeout(&fd, Timeout::Send, Some(KERNEL_WAIT))?;
    Ok(())
}

/// The descriptor behind `fd`, which must be a socket (`ENOTSOCK` otherwise).
pub(crate) fn socket(process: &Process, fd: i32) -> Result<Arc<Descriptor>, OpError> {
    let d = process.descriptor(fd)?;
    if d.kind() != DescriptorKind::Socket {
        return Err(OpError::new(errno::ENOTSOCK, format!("descriptor {fd} is not a socket")));
    }
    Ok(d)
}

/// The caller's receive flags, less `MSG_TRUNC`: a result never reports more bytes than it holds.
/// and less `MSG_DONTWAIT`: a receive waits for its data on every backend (the sockets are
/// non-blocking anyway; the readiness loop or the kernel does the waiting).
pub(crate) fn recv_flags(flags: u32) -> RecvFlags {
    RecvFlags::from_bits_retain(flags) & !(RecvFlags::TRUNC | RecvFlags::DONTWAIT)
}

/// Never raise SIGPIPE in the host: a closed peer is an `EPIPE` completion. Less `MSG_DONTWAIT`:
/// a send waits for room on every backend.
pub(crate) fn send_flags(flags: u32) -> SendFlags {
    (SendFlags::from_bits_retain(flags) & !SendFlags::DONTWAIT) | SendFlags::NOSIGNAL
}

/// Checks the bind the kernel makes on its own for an unbound socket (a `Listen`, or a `SendTo` of
/// a datagram socket, binds the wildcard address and an ephemeral port): it passes the policy's
/// bind rules like a `Bind` (the ephemeral port checked as port 0), or the operation is refused
/// with `EACCES` before the kernel acts. A socket once seen bound is not asked again.
pub(crate) fn check_implicit_bind(d: &Descriptor, rights: Option<&Sandbox>, what: &str) -> Result<(), OpError> {
    if d.known_bound() {
        return Ok(());
    }
    let local = inet(rustix::net::getsockname(d)?.try_into().ok())?;
    if local.port() != 0 {
        d.seen_bound();
        return Ok(());
    }
    if rights.ok_or_else(without_rights)?.may_bind(&local) {
        return Ok(());
    }
    Err(OpError::new(
        errno::EACCES,
        format!("{what}: the socket is unbound, and the policy does not allow binding {local}"),
    ))
}

/// The refusal of an operation that needs rights and was run without them (a backend bug).
pub(crate) fn without_rights() -> OpError {
    OpError::new(errno::EINVAL, "the operation was run without the rights it was submitted with")
}

/// `EINVAL` unless `d` is a stream socket: a multishot receive ends at an empty receive, which
/// on a datagram socket is an empty datagram, not the peer's close.
pub(crate) fn stream_socket(d: &Descriptor) -> Result<(), OpError> {
    match rustix::net::sockopt::socket_type(d)? {
        SocketType::STREAM => Ok(()),
        _ => Err(OpError::new(errno::EINVAL, "a multishot receive takes a stream socket (RecvFrom takes datagrams)")),
    }
}

/// The address of the peer of connected socket `fd` (IPv4 or IPv6).
pub(crate) fn peer_of(fd: impl std::os::fd::AsFd) -> Result<SocketAddr, OpError> {
    inet(rustix::net::getpeername(fd)?.and_then(|p| p.try_into().ok()))
}

fn inet(addr: Option<SocketAddr>) -> Result<SocketAddr, OpError> {
    addr.ok_or_else(|| OpError::new(errno::EAFNOSUPPORT, "the socket's address is not IPv4 or IPv6"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flags a tenant passes never make a socket call return at once instead of waiting
    /// (`MSG_DONTWAIT`: io_uring would answer `EAGAIN` at every submission, and a request sent
    /// back to wait would spin), never report more than was received (`MSG_TRUNC`), and never
    /// let a send raise SIGPIPE.
    #[test]
    fn tenant_flags_never_make_a_call_spin_or_signal() {
        let all = u32::MAX;
        let recv = recv_flags(all);
        assert!(!recv.contains(RecvFlags::DONTWAIT) && !recv.contains(RecvFlags::TRUNC));
        assert!(recv.contains(RecvFlags::PEEK), "other flags pass: {recv:?}");
        let send = send_flags(SendFlags::DONTWAIT.bits());
        assert!(!send.contains(SendFlags::DONTWAIT) && send.contains(SendFlags::NOSIGNAL));
    }
}
