//! Without Linux's `openat2` no race-free resolution beneath a root exists, so rooted opens are
//! refused rather than resolved unsafely.

use std::os::fd::OwnedFd;

use crate::op::{OpError, errno};

pub(crate) fn open_beneath(
    _root: &OwnedFd,
    path: &str,
    _flags: u32,
    _mode: u32,
    _umask: u32,
) -> Result<OwnedFd, OpError> {
    Err(OpError::new(
        errno::EACCES,
        format!("open {path:?}: rooted policies need Linux openat2, which this platform lacks"),
    ))
}
