//! A tenant's sockets: [`TcpListener`], [`TcpStream`], [`UdpSocket`], each under its process's
//! network rules.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use super::stream::{Stream, read_write_traits};
use super::{Owned, Tenant};
use crate::op::{OpResult, SyscallOpType as Op, net_flags};
use crate::syscalls::Multishot;
use futures_core::stream::FusedStream;

/// A new socket of type `ty` for `addr`'s family, owned.
async fn socket(tenant: &Tenant, addr: SocketAddr, ty: i32) -> io::Result<Owned> {
    let domain = if addr.is_ipv4() { net_flags::AF_INET } else { net_flags::AF_INET6 };
    Ok(tenant.run_owning(Op::Socket { domain, ty, protocol: 0 }).await?.0)
}

async fn local_addr(owned: &Owned) -> io::Result<SocketAddr> {
    Ok(owned.tenant.run(Op::LocalAddr { sockfd: owned.fd }).await?.try_into()?)
}

/// A listening TCP socket of a tenant's. Dropping it closes it.
#[derive(Debug)]
pub struct TcpListener {
    owned: Owned,
    local: SocketAddr,
}

impl TcpListener {
    pub(super) async fn bind(tenant: &Tenant, addr: SocketAddr) -> io::Result<TcpListener> {
        let owned = socket(tenant, addr, net_flags::SOCK_STREAM).await?;
        tenant.run(Op::Bind { sockfd: owned.fd, addr }).await?;
        tenant.run(Op::Listen { sockfd: owned.fd, backlog: 1024 }).await?;
        let local = local_addr(&owned).await?;
        Ok(TcpListener { owned, local })
    }

    /// The address it listens on (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The socket's descriptor in its process.
    pub fn fd(&self) -> i32 {
        self.owned.fd
    }

    /// Waits for a connection: the stream and its peer's address.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (owned, result) = self.owned.tenant.run_owning(Op::Accept { sockfd: self.owned.fd }).await?;
        accepted(owned, result)
    }

    /// The connections as they come, as a `Stream`: one multishot accept
    /// ([`AcceptMulti`](crate::op::SyscallOpType::AcceptMulti)) takes them all, submitted again
    /// whenever it stops (connections left untaken, an error, which the stream yields).
    ///
    /// Dropping the stream closes the connections it had accepted and not yet handed on (their
    /// clients see a reset): keep one `Incoming` for as long as connections are wanted, rather
    /// than one per connection (for that, [`accept`](Self::accept) leaves the rest queued).
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self, accepts: Rearmed::default() }
    }
}

fn accepted(owned: Owned, result: OpResult) -> io::Result<(TcpStream, SocketAddr)> {
    match result {
        OpResult::Accepted { peer, .. } => Ok((TcpStream { stream: Stream::new(owned, false) }, peer)),
        got => Err(crate::op::UnexpectedResult { expected: "a connection (Accepted)", got }.into()),
    }
}

/// A multishot operation a handle keeps going: submitted (again) whenever the last one
/// completed with nothing to report (it stopped for its results, or the kernel ended it), so
/// that its results run on. Polled, it gives each result, and each completion that reports
/// something (an end, an error), with whether it was the completion.
#[derive(Debug, Default)]
struct Rearmed {
    shots: Option<Multishot>,
}

impl Rearmed {
    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        submit: impl Fn() -> crate::op::Result<Multishot>,
    ) -> Poll<io::Result<(OpResult, bool)>> {
        loop {
            let shots = match &mut self.shots {
                Some(shots) => shots,
                None => self.shots.insert(submit()?),
            };
            let done = ready!(futures_core::Stream::poll_next(Pin::new(&mut *shots), cx));
            let last = shots.is_terminated() || done.is_none();
            if last {
                self.shots = None;
            }
            match done.map(|done| done.into_result()) {
                None | Some(Ok(OpResult::None)) => continue,
                Some(result) => return Poll::Ready(result.map(|result| (result, last))),
            }
        }
    }
}

/// [`TcpListener::incoming`]: each connection as it is accepted; it never ends by itself.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
    accepts: Rearmed,
}

impl futures_core::Stream for Incoming<'_> {
    type Item = io::Result<TcpStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<TcpStream>>> {
        let this = self.get_mut();
        let listener = &this.listener.owned;
        let op = || Op::AcceptMulti { sockfd: listener.fd };
        let stream =
            ready!(this.accepts.poll_next(cx, || listener.tenant.manager.submit_multishot_to(&listener.ring, op())))
                .and_then(|(result, _)| {
                    let fd = result.new_fd().unwrap_or(-1);
                    let owned = Owned { tenant: listener.tenant.clone(), ring: listener.ring.clone(), fd };
                    accepted(owned, result)
                });
        Poll::Ready(Some(stream.map(|(stream, _)| stream)))
    }
}

/// [`TcpStream::chunks`]: what the peer sends, in chunks, until it shuts its side.
#[derive(Debug)]
pub struct Chunks<'a> {
    stream: &'a TcpStream,
    size: usize,
    receives: Rearmed,
    ended: bool,
}

impl FusedStream for Chunks<'_> {
    fn is_terminated(&self) -> bool {
        self.ended
    }
}

impl futures_core::Stream for Chunks<'_> {
    type Item = io::Result<Vec<u8>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<Vec<u8>>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let stream = &this.stream.stream;
        let op = Op::RecvMulti { sockfd: stream.fd(), size: this.size };
        let submit = || stream.tenant().manager.submit_multishot_to(stream.ring(), op.clone());
        // An error ends it (what follows it in the byte stream cannot be trusted to join up): a
        // new `chunks` may go on after one that passes. So does the end of file.
        let chunk = match ready!(this.receives.poll_next(cx, submit)) {
            Ok((OpResult::Bytes(bytes), last)) if !(last && bytes.is_empty()) => return Poll::Ready(Some(Ok(bytes))),
            Ok((OpResult::Bytes(_), _)) => None,
            Ok((got, _)) => Some(Err(crate::op::UnexpectedResult { expected: "received bytes (Bytes)", got }.into())),
            Err(e) => Some(Err(e)),
        };
        this.ended = true;
        Poll::Ready(chunk)
    }
}

/// A TCP connection of a tenant's. [`futures_io::AsyncRead`] and `AsyncWrite` (and tokio's
/// with the `tokio` feature) make it a byte stream for codecs and HTTP servers; the traits'
/// `close` (tokio's `shutdown`) shuts it down for writing, and the peer reads end of file.
/// Dropping it closes it.
#[derive(Debug)]
pub struct TcpStream {
    stream: Stream,
}

impl TcpStream {
    pub(super) async fn connect(tenant: &Tenant, addr: SocketAddr) -> io::Result<TcpStream> {
        let owned = socket(tenant, addr, net_flags::SOCK_STREAM).await?;
        tenant.run(Op::Connect { sockfd: owned.fd, addr }).await?;
        Ok(TcpStream { stream: Stream::new(owned, false) })
    }

    /// The socket's descriptor in its process.
    pub fn fd(&self) -> i32 {
        self.stream.fd()
    }

    fn tenant(&self) -> &Tenant {
        self.stream.tenant()
    }

    /// Sends `buf`: the bytes sent (perhaps fewer), and `buf`.
    pub async fn send<B: AsRef<[u8]>>(&self, buf: B) -> (io::Result<usize>, B) {
        let most = buf.as_ref().len().min(self.stream.cap());
        let op = Op::Send { sockfd: self.fd(), data: buf.as_ref()[..most].to_vec(), flags: 0 };
        (self.tenant().run(op).await.and_then(|r| Ok(r.try_into()?)), buf)
    }

    /// Sends all of `buf`, in as many sends as it takes.
    pub async fn send_all<B: AsRef<[u8]>>(&self, buf: B) -> (io::Result<()>, B) {
        let sent = self.tenant().write_all(self.fd(), None, buf.as_ref(), self.stream.cap()).await;
        (sent, buf)
    }

    /// Receives into `buf`'s spare capacity: the bytes received (0 once the peer shut its side
    /// and everything was read), and `buf` with them appended.
    pub async fn recv(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let size = (buf.capacity() - buf.len()).min(self.stream.cap());
        if size == 0 {
            return (Ok(0), buf);
        }
        // Received into `buf` where it lies: no other buffer, no copy.
        self.tenant().run_lending(Op::ReadInto { fd: self.fd(), offset: None, buf, size }).await
    }

    /// The bytes as they come, as a `Stream` of chunks of at most `size` bytes (and at most the
    /// process's transfer limit, and a [`RECV_SHARES`](crate::op::RECV_SHARES)th of its buffer
    /// budget): one multishot receive
    /// ([`RecvMulti`](crate::op::SyscallOpType::RecvMulti)) takes them, submitted again whenever
    /// it stops. It ends when the peer has shut its side and everything was received, or after
    /// the first error it yields. As
    /// [`recv`](Self::recv), it does not see bytes a read through `AsyncRead` took and has not
    /// handed out yet. Dropping it stops the receive; bytes it had received and not handed on
    /// are lost with it.
    pub fn chunks(&self, size: usize) -> Chunks<'_> {
        let budget = self.stream.ring().process().sandbox().policy().buffered_byte_limit() / crate::op::RECV_SHARES;
        Chunks {
            stream: self,
            size: size.min(self.stream.cap()).min(budget).max(1),
            receives: Rearmed::default(),
            ended: false,
        }
    }

    /// Shuts down reading, writing or both (named so as not to hide the traits' `shutdown`
    /// and `close`, which shut writing down).
    pub async fn shutdown_how(&self, how: Shutdown) -> io::Result<()> {
        let how = match how {
            Shutdown::Read => net_flags::SHUT_RD,
            Shutdown::Write => net_flags::SHUT_WR,
            Shutdown::Both => net_flags::SHUT_RDWR,
        };
        self.tenant().run(Op::Shutdown { sockfd: self.fd(), how }).await.map(drop)
    }

    /// This end's address.
    pub async fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.tenant().run(Op::LocalAddr { sockfd: self.fd() }).await?.try_into()?)
    }

    /// The peer's address.
    pub async fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.tenant().run(Op::PeerAddr { sockfd: self.fd() }).await?.try_into()?)
    }
}

// A connection's close (the traits') shuts it down for writing: the peer reads end of file.
read_write_traits!(TcpStream, poll_shutdown);

/// A UDP socket of a tenant's. Dropping it closes it.
#[derive(Debug)]
pub struct UdpSocket {
    owned: Owned,
}

impl UdpSocket {
    pub(super) async fn bind(tenant: &Tenant, addr: SocketAddr) -> io::Result<UdpSocket> {
        let owned = socket(tenant, addr, net_flags::SOCK_DGRAM).await?;
        tenant.run(Op::Bind { sockfd: owned.fd, addr }).await?;
        Ok(UdpSocket { owned })
    }

    /// The socket's descriptor in its process.
    pub fn fd(&self) -> i32 {
        self.owned.fd
    }

    /// The address it is bound to.
    pub async fn local_addr(&self) -> io::Result<SocketAddr> {
        local_addr(&self.owned).await
    }

    /// Sends `buf` as one datagram to `addr`: the bytes sent, and `buf`.
    pub async fn send_to<B: AsRef<[u8]>>(&self, buf: B, addr: SocketAddr) -> (io::Result<usize>, B) {
        let op = Op::SendTo { sockfd: self.owned.fd, data: buf.as_ref().to_vec(), addr, flags: 0 };
        (self.owned.tenant.run(op).await.and_then(|r| Ok(r.try_into()?)), buf)
    }

    /// Receives one datagram into `buf`'s spare capacity (cut to it): its length and sender,
    /// and `buf` with it appended.
    pub async fn recv_from(&self, mut buf: Vec<u8>) -> (io::Result<(usize, SocketAddr)>, Vec<u8>) {
        let size = buf.capacity() - buf.len();
        match self.owned.tenant.run(Op::RecvFrom { sockfd: self.owned.fd, size, flags: 0 }).await {
            Ok(OpResult::Datagram { data, from }) => {
                buf.extend_from_slice(&data);
                (Ok((data.len(), from)), buf)
            }
            Ok(got) => (Err(crate::op::UnexpectedResult { expected: "a datagram", got }.into()), buf),
            Err(e) => (Err(e), buf),
        }
    }

    /// Closes the socket and waits for the close.
    pub async fn close(self) -> io::Result<()> {
        self.owned.close().await
    }
}
