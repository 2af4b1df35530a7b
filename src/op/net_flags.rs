//! Linux socket constants, so callers need no `libc` to build a
//! [`SyscallOpType::Socket`](super::SyscallOpType::Socket), a `Shutdown` or a `Recv`.

use rustix::net::{AddressFamily, RecvFlags, SocketType};

/// IPv4 (`domain` of a `Socket`).
pub const AF_INET: i32 = AddressFamily::INET.as_raw() as i32;
/// IPv6 (`domain` of a `Socket`): dual-stack, as Linux makes it.
pub const AF_INET6: i32 = AddressFamily::INET6.as_raw() as i32;
/// A stream socket: TCP (`ty` of a `Socket`).
pub const SOCK_STREAM: i32 = SocketType::STREAM.as_raw() as i32;
/// A datagram socket: UDP (`ty` of a `Socket`).
pub const SOCK_DGRAM: i32 = SocketType::DGRAM.as_raw() as i32;
/// `Shutdown`: no more receiving.
pub const SHUT_RD: i32 = 0;
/// `Shutdown`: no more sending (the peer reads end of file).
pub const SHUT_WR: i32 = 1;
/// `Shutdown`: neither.
pub const SHUT_RDWR: i32 = 2;
/// `Recv`: look at the data without taking it.
pub const MSG_PEEK: u32 = RecvFlags::PEEK.bits();
/// `Recv`: wait until all `size` bytes are there (or the peer closed).
pub const MSG_WAITALL: u32 = RecvFlags::WAITALL.bits();

#[cfg(test)]
mod tests {
    #[test]
    fn the_constants_are_linuxs() {
        assert_eq!((super::AF_INET, super::AF_INET6), (libc::AF_INET, libc::AF_INET6));
        assert_eq!((super::SOCK_STREAM, super::SOCK_DGRAM), (libc::SOCK_STREAM, libc::SOCK_DGRAM));
        assert_eq!((super::SHUT_RD, super::SHUT_WR, super::SHUT_RDWR), (libc::SHUT_RD, libc::SHUT_WR, libc::SHUT_RDWR));
        assert_eq!((super::MSG_PEEK, super::MSG_WAITALL), (libc::MSG_PEEK as u32, libc::MSG_WAITALL as u32));
    }
}
