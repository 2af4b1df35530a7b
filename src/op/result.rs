//! What an operation produced.

use std::net::SocketAddr;

#[cfg(doc)]
use super::SyscallOpType;

/// What a successful operation produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[allow(missing_docs)] // each variant's docs describe its fields
pub enum OpResult {
    /// Nothing: `Close`, `Fsync`, `Fdatasync`, `Ftruncate`, `Bind`, `Listen`, `Connect`, `Nop`, and every failed or
    /// cancelled operation.
    #[default]
    None,
    /// A new virtual descriptor: `Open`, `Socket`.
    Fd(i32),
    /// Bytes read: `Read`, `ReadAt`, `Recv`. Empty at end of file or when the peer closed.
    Bytes(Vec<u8>),
    /// Bytes written: `Write`, `WriteAt`, `Send`, `SendTo`. May be less than asked (short write).
    Count(usize),
    /// The new position: `Lseek`.
    Offset(u64),
    /// A new connection: `Accept`.
    Accepted { fd: i32, peer: SocketAddr },
    /// One datagram and its sender: `RecvFrom`.
    Datagram { data: Vec<u8>, from: SocketAddr },
    /// A socket address: `LocalAddr`.
    Addr(SocketAddr),
}

impl OpResult {
    /// The new descriptor this result hands to its owner, if any (closed for it when the result is
    /// discarded, so a dropped future leaks nothing).
    pub(crate) fn new_fd(&self) -> Option<i32> {
        match *self {
            OpResult::Fd(fd) | OpResult::Accepted { fd, .. } => Some(fd),
            _ => None,
        }
    }

    /// The memory its data holds: the buffer's capacity, which may exceed the bytes read by
    /// a little (results are shrunk only when that would save more than a few KiB). What it
    /// counts against its process's buffer budget until taken.
    pub(crate) fn held_bytes(&self) -> usize {
        match self {
            OpResult::Bytes(data) | OpResult::Datagram { data, .. } => data.capacity(),
            _ => 0,
        }
    }
}
