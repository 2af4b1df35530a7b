//! The descriptor table and the process table: numbering, limits, closing.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use super::fd::FdTable;
use super::{Descriptor, DescriptorKind, FIRST_FD, ProcessTable};
use crate::op::errno;
use crate::sandbox::Policy;

fn null() -> OwnedFd {
    std::fs::File::open("/dev/null").unwrap().into()
}

fn desc() -> Descriptor {
    Descriptor::new(null(), DescriptorKind::File)
}

/// A file no other test opens, and how many of this process's kernel descriptors point at it.
struct Unique(tempfile::TempPath);

impl Unique {
    fn new() -> Self {
        // The path only: the temp file's own descriptor is closed.
        Unique(tempfile::NamedTempFile::new().unwrap().into_temp_path())
    }

    fn open(&self) -> OwnedFd {
        std::fs::File::open(&self.0).unwrap().into()
    }

    fn kernel_fds(&self) -> usize {
        let real = std::fs::canonicalize(&self.0).unwrap();
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| *target == real)
            .count()
    }
}

#[test]
fn numbers_start_at_3_and_reuse_the_lowest_free() {
    let mut t = FdTable::default();
    let fds: Vec<i32> = (0..5).map(|_| t.insert(desc(), usize::MAX).unwrap()).collect();
    assert_eq!(fds, [3, 4, 5, 6, 7]);
    assert_eq!(FIRST_FD, 3);
    assert_eq!(t.len(), 5);
    // Two holes: the lower one first, then the other, then past the end.
    t.remove(6).unwrap();
    t.remove(4).unwrap();
    assert_eq!(t.len(), 3);
    assert_eq!(t.insert(desc(), usize::MAX).unwrap(), 4);
    assert_eq!(t.insert(desc(), usize::MAX).unwrap(), 6);
    assert_eq!(t.insert(desc(), usize::MAX).unwrap(), 8);
    // A hole below the last insert is found again.
    t.remove(3).unwrap();
    assert_eq!(t.insert(desc(), usize::MAX).unwrap(), 3);
    assert_eq!(t.len(), 6);
}

#[test]
fn trailing_free_numbers_are_given_back() {
    let mut t = FdTable::default();
    for _ in 0..4 {
        t.insert(desc(), usize::MAX).unwrap();
    }
    // Closing the top numbers shrinks the table, so the next number is the lowest free again.
    t.remove(6).unwrap();
    t.remove(5).unwrap();
    assert_eq!(t.insert(desc(), usize::MAX).unwrap(), 5);
    t.remove(5).unwrap();
    t.remove(4).unwrap();
    t.remove(3).unwrap();
    assert_eq!(t.len(), 0);
    assert_eq!(t.insert(desc(), usize::MAX).unwrap(), 3);
}

#[test]
fn bad_numbers_are_ebadf() {
    let mut t = FdTable::default();
    let fd = t.insert(desc(), usize::MAX).unwrap();
    for bad in [-1, 0, 1, 2, fd + 1, i32::MAX, i32::MIN] {
        assert_eq!(t.get(bad).unwrap_err().errno(), errno::EBADF, "get {bad}");
        assert_eq!(t.remove(bad).unwrap_err().errno(), errno::EBADF, "remove {bad}");
    }
    assert_eq!(t.len(), 1);
    let d = t.get(fd).unwrap();
    assert_eq!(d.kind(), DescriptorKind::File);
    let shown = format!("{d:?}");
    assert!(shown.starts_with("Descriptor") && shown.contains("kind: File"), "{shown}");
    t.remove(fd).unwrap();
    assert_eq!(t.get(fd).unwrap_err().errno(), errno::EBADF, "closed");
    assert_eq!(t.remove(fd).unwrap_err().errno(), errno::EBADF, "closed twice");
    assert_eq!(t.len(), 0);
}

#[test]
fn the_limit_is_exact_and_a_refused_descriptor_is_closed() {
    let mut t = FdTable::default();
    assert_eq!(t.insert(desc(), 2).unwrap(), 3);
    assert_eq!(t.insert(desc(), 2).unwrap(), 4);
    let file = Unique::new();
    let extra = file.open();
    assert_eq!(file.kernel_fds(), 1);
    let refused = t.insert(Descriptor::new(extra, DescriptorKind::File), 2).unwrap_err();
    assert_eq!(refused.errno(), errno::EMFILE);
    assert_eq!(file.kernel_fds(), 0, "the refused descriptor was closed");
    assert_eq!(t.len(), 2);
    // Closing one makes room for exactly one.
    t.remove(3).unwrap();
    assert_eq!(t.insert(desc(), 2).unwrap(), 3);
    assert_eq!(t.insert(desc(), 2).unwrap_err().errno(), errno::EMFILE);
    assert_eq!(t.insert(desc(), 0).unwrap_err().errno(), errno::EMFILE);
}

#[test]
fn a_descriptor_closes_when_the_last_holder_lets_go() {
    let mut t = FdTable::default();
    let file = Unique::new();
    let fd = t.insert(Descriptor::new(file.open(), DescriptorKind::File), usize::MAX).unwrap();
    let running = t.get(fd).unwrap();
    drop(t.remove(fd).unwrap());
    assert_eq!(t.get(fd).unwrap_err().errno(), errno::EBADF, "the number is gone at once");
    assert_eq!(file.kernel_fds(), 1, "still open while an operation holds it");
    assert!(rustix::fs::fstat(running.as_fd()).is_ok());
    drop(running);
    assert_eq!(file.kernel_fds(), 0, "closed once nobody holds it");
    // The same for close_all.
    let fd = t.insert(Descriptor::new(file.open(), DescriptorKind::File), usize::MAX).unwrap();
    let running = t.get(fd).unwrap();
    assert_eq!(t.close_all(), 1);
    assert_eq!(file.kernel_fds(), 1);
    drop(running);
    assert_eq!(file.kernel_fds(), 0);
}

#[test]
fn close_all_counts_closes_and_refuses_new_descriptors() {
    let mut t = FdTable::default();
    for _ in 0..3 {
        t.insert(desc(), usize::MAX).unwrap();
    }
    t.remove(4).unwrap();
    assert_eq!(t.close_all(), 2, "what was open");
    assert_eq!(t.len(), 0);
    for fd in [3, 4, 5] {
        assert_eq!(t.get(fd).unwrap_err().errno(), errno::EBADF);
    }
    assert_eq!(t.insert(desc(), usize::MAX).unwrap_err().errno(), errno::EBADF, "a closed table takes nothing");
    assert_eq!(t.close_all(), 0);
}

#[test]
fn registration_is_made_once_and_checked_by_type() {
    let d = desc();
    let mut calls = 0;
    assert_eq!(*d.registration(|_| Ok::<_, std::io::Error>(7u32)).unwrap(), 7);
    assert_eq!(
        *d.registration(|_| {
            calls += 1;
            Ok::<_, std::io::Error>(8u32)
        })
        .unwrap(),
        7
    );
    assert_eq!(calls, 0, "made once");
    assert_eq!(d.registration(|_| Ok::<_, std::io::Error>("other")).unwrap_err().errno(), errno::EINVAL);
    let failed = desc();
    let e = failed.registration(|_| Err::<u32, _>(std::io::Error::from_raw_os_error(errno::EACCES))).unwrap_err();
    assert_eq!(e.errno(), errno::EACCES);
    assert_eq!(failed.registration(|_| Ok::<_, std::io::Error>(1u32)).unwrap_err().errno(), errno::EACCES);
}

#[test]
fn process_table_creates_once_sets_policies_and_removes_with_descriptors() {
    let table = ProcessTable::new();
    assert!(table.get(7).is_none());
    let p = table.get_or_create(7);
    assert_eq!(p.pid(), 7);
    assert!(Arc::ptr_eq(&p, &table.get_or_create(7)), "created once");
    assert!(Arc::ptr_eq(&p, &table.get(7).unwrap()));
    assert_eq!(*p.sandbox().policy(), Policy::default(), "a new process may do nothing");
    table.set_policy(7, Policy::unrestricted().max_open_fds(1)).unwrap();
    assert_eq!(p.sandbox().policy().open_fd_limit(), 1, "the same process sees its new policy");
    let fd = p.install(null(), DescriptorKind::Socket).unwrap();
    assert_eq!(fd, 3);
    assert_eq!(p.descriptor(fd).unwrap().kind(), DescriptorKind::Socket);
    assert_eq!(p.install(null(), DescriptorKind::File).unwrap_err().errno(), errno::EMFILE);
    assert_eq!(p.open_descriptors(), 1);
    p.close(fd).unwrap();
    assert_eq!(p.close(fd).unwrap_err().errno(), errno::EBADF);
    p.install(null(), DescriptorKind::File).unwrap();
    // A policy set for an unknown pid creates it; a bad root is an error.
    table.set_policy(8, Policy::default()).unwrap();
    assert_eq!(table.get(8).unwrap().pid(), 8);
    assert!(table.set_policy(9, Policy::rooted("/definitely/not/here")).is_err());
    let removed = table.remove(7).unwrap();
    assert!(Arc::ptr_eq(&removed, &p));
    assert_eq!(p.open_descriptors(), 0, "removing a process closes its descriptors");
    assert_eq!(p.install(null(), DescriptorKind::File).unwrap_err().errno(), errno::EBADF);
    assert!(table.get(7).is_none());
    assert!(table.remove(7).is_none());
    assert!(!Arc::ptr_eq(&table.get_or_create(7), &p), "a new process for the pid, not the old one");
}

/// A FIFO or terminal waits for readiness only when non-blocking, as every one a tenant opens
/// is: a blocking pipe the host installs is read on a pool thread as the host made it, never
/// with a blocking call where operations are started (a thread others share).
#[test]
fn only_non_blocking_pipes_wait_for_readiness() {
    use rustix::pipe::{PipeFlags, pipe_with};
    let (blocking, _w) = pipe_with(PipeFlags::CLOEXEC).unwrap();
    let (nonblocking, _w2) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).unwrap();
    assert!(!Descriptor::new(blocking, DescriptorKind::File).waits_on_peer());
    assert!(Descriptor::new(nonblocking, DescriptorKind::File).waits_on_peer());
    // /dev/null, opened blocking by `std`: a character device, but blocking.
    assert!(!desc().waits_on_peer());
}
