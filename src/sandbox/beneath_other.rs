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
    Err(refused("open", path))
}

pub(crate) fn path_beneath(_root: &OwnedFd, op: &str, path: &str, _follow: bool) -> Result<OwnedFd, OpError> {
    Err(refused(op, path))
}

pub(crate) fn parent_beneath<'p>(_root: &OwnedFd, op: &str, path: &'p str) -> Result<(OwnedFd, &'p str), OpError> {
    Err(refused(op, path))
}

fn refused(op: &str, path: &str) -> OpError {
    OpError::new(errno::EACCES, format!("{op} {path:?}: rooted policies need Linux openat2, which this platform lacks"))
}

pub(crate) fn path_cached(_root: &OwnedFd, _op: &str, _path: &str, _follow: bool) -> Option<Result<OwnedFd, OpError>> {
    None
}
