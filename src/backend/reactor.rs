//! [`Readiness`] on async-io's reactor: the blocking and smol backends park socket operations
//! there, so a socket that never becomes ready holds no thread.

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use async_io::Async;
use rustix::io::Errno;

use super::net_ops::{Interest, Readiness};
use crate::op::OpError;
use crate::process::Descriptor;

/// Waits on async-io's global reactor (driven by its own thread when nobody else drives it).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AsyncIo;

impl Readiness for AsyncIo {
    fn retry<T: Send>(
        &self,
        d: &Descriptor,
        interest: Interest,
        mut attempt: impl FnMut() -> Result<T, Errno> + Send,
    ) -> impl Future<Output = Result<T, OpError>> + Send {
        // Sockets are made non-blocking at creation.
        let registered = d.registration(Async::<Arc<OwnedFd>>::new_nonblocking);
        async move {
            let source = registered?;
            let mut attempt = |_: &Arc<OwnedFd>| attempt().map_err(io::Error::from);
            let done = match interest {
                Interest::Read => source.read_with(&mut attempt).await,
                Interest::Write => source.write_with(&mut attempt).await,
            };
            done.map_err(OpError::from)
        }
    }
}
