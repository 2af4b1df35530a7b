//! Model-based property test: random sequences of submits, batches, futures (awaited, dropped,
//! detached), cancels, reaps, waits and destroys, on every backend compiled in, checked against
//! a simple model. Invariants: every accepted seq completes exactly once (taken once, or
//! discarded once), a full ring refuses exactly when the model says it is full, stats add up,
//! no wait hangs (each is bounded), and no descriptor leaks.

use std::collections::HashMap;
use std::time::Duration;

use ai_os_kernel::backend;
use ai_os_kernel::sandbox::Policy;
use ai_os_kernel::syscalls::open_flags::*;
use ai_os_kernel::syscalls::{
    CompletionFuture, IoUringError, IoUringManager, SyscallOpType as Op, SyscallSubmissionEntry,
};
use ai_os_kernel_conformance::support::{eventually, kernel_fds_to, within};
use proptest::prelude::*;

const PID: u32 = 1;
const SQ: usize = 8;
const CQ: usize = 16;
const T: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
enum Action {
    Submit(u8),
    Batch(u8, u8),
    Async(u8),
    Await(usize),
    DropFuture(usize),
    Detach(usize),
    Cancel(usize),
    Reap(u8),
    Wait(usize),
    Destroy,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0..3u8).prop_map(Action::Submit),
        2 => (1..6u8, 0..3u8).prop_map(|(n, k)| Action::Batch(n, k)),
        3 => (0..3u8).prop_map(Action::Async),
        2 => any::<usize>().prop_map(Action::Await),
        2 => any::<usize>().prop_map(Action::DropFuture),
        1 => any::<usize>().prop_map(Action::Detach),
        2 => any::<usize>().prop_map(Action::Cancel),
        3 => (0..5u8).prop_map(Action::Reap),
        3 => any::<usize>().prop_map(Action::Wait),
        1 => Just(Action::Destroy),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Queue,
    Future,
    Taken,
    Discarded,
}

struct World {
    m: IoUringManager,
    dir: tempfile::TempDir,
    /// Per ring lifetime ("epoch"), the owner of each seq.
    seqs: HashMap<(u32, u64), Owner>,
    epoch: u32,
    futures: Vec<(u64, CompletionFuture)>,
    accepted: u64,
}

impl World {
    fn new(m: IoUringManager) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"model").unwrap();
        let w = World { m, dir, seqs: HashMap::new(), epoch: 0, futures: Vec::new(), accepted: 0 };
        w.fresh_ring();
        w
    }

    fn fresh_ring(&self) {
        self.m.create_ring(PID, Some(SQ), Some(CQ)).unwrap();
        self.m.set_policy(PID, Policy::rooted(self.dir.path())).unwrap();
    }

    fn op(k: u8) -> Op {
        match k {
            0 => Op::Nop,
            1 => Op::open("f", O_RDONLY),
            _ => Op::ReadAt { fd: 3, offset: 0, size: 5 },
        }
    }

    fn count(&self, f: impl Fn(Owner) -> bool) -> usize {
        self.seqs.iter().filter(|((e, _), o)| *e == self.epoch && f(**o)).count()
    }

    /// Outstanding operations the model knows of for sure (those still owed to the CQ or a
    /// future), and how many more there may be: dropped futures whose operations may not have
    /// finished yet.
    fn outstanding(&self) -> (usize, usize) {
        (self.count(|o| matches!(o, Owner::Queue | Owner::Future)), self.count(|o| o == Owner::Discarded))
    }

    fn accept(&mut self, seq: u64, owner: Owner) {
        assert!(self.outstanding().0 < CQ, "accepted seq {seq} past the CQ's capacity");
        let prev = self.seqs.insert((self.epoch, seq), owner);
        assert!(prev.is_none(), "seq {seq} issued twice");
        self.accepted += 1;
    }

    fn take(&mut self, seq: u64) {
        let o = self.seqs.get_mut(&(self.epoch, seq)).unwrap_or_else(|| panic!("seq {seq} never issued"));
        assert!(matches!(o, Owner::Queue | Owner::Future), "seq {seq} delivered twice (was {o:?})");
        *o = Owner::Taken;
    }

    /// A refusal must be backpressure the model agrees with.
    fn refused(&self, e: IoUringError, n: usize) {
        let (known, maybe) = self.outstanding();
        let most = known + maybe;
        match e {
            IoUringError::CompletionQueueFull { .. } => {
                assert!(most + n > CQ, "CQ full with at most {most} outstanding")
            }
            IoUringError::SubmissionQueueFull { .. } => {
                assert!(most + n > SQ, "SQ full with at most {most} outstanding")
            }
            IoUringError::BatchTooLarge { .. } => assert!(n > SQ),
            other => panic!("unexpected refusal: {other}"),
        }
    }

    fn cq_seqs(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .seqs
            .iter()
            .filter(|((e, _), o)| *e == self.epoch && **o == Owner::Queue)
            .map(|((_, s), _)| *s)
            .collect();
        v.sort();
        v
    }

    fn apply(&mut self, a: Action) {
        let m = self.m.clone();
        match a {
            Action::Submit(k) => match m.submit(PID, SyscallSubmissionEntry::new(PID, Self::op(k), 0)) {
                Ok(seq) => self.accept(seq, Owner::Queue),
                Err(e) => self.refused(e, 1),
            },
            Action::Batch(n, k) => {
                let batch = (0..n).map(|_| SyscallSubmissionEntry::new(PID, Self::op(k), 0)).collect();
                match m.submit_batch(PID, batch) {
                    Ok(seqs) => seqs.into_iter().for_each(|s| self.accept(s, Owner::Queue)),
                    Err(e) => self.refused(e, n as usize),
                }
            }
            Action::Async(k) => match m.submit_async(PID, SyscallSubmissionEntry::new(PID, Self::op(k), 0)) {
                Ok(f) => {
                    self.accept(f.seq(), Owner::Future);
                    self.futures.push((f.seq(), f));
                }
                Err(e) => self.refused(e, 1),
            },
            Action::Await(i) if !self.futures.is_empty() => {
                let (seq, f) = self.futures.remove(i % self.futures.len());
                let done = futures::executor::block_on(f);
                assert_eq!(done.seq, seq);
                self.take(seq);
            }
            Action::DropFuture(i) if !self.futures.is_empty() => {
                let (seq, f) = self.futures.remove(i % self.futures.len());
                drop(f);
                self.seqs.insert((self.epoch, seq), Owner::Discarded);
            }
            Action::Detach(i) if !self.futures.is_empty() => {
                let (seq, f) = self.futures.remove(i % self.futures.len());
                assert_eq!(f.detach(), seq);
                self.seqs.insert((self.epoch, seq), Owner::Queue);
            }
            Action::Cancel(i) => {
                let issued: Vec<u64> = self.seqs.keys().filter(|(e, _)| *e == self.epoch).map(|(_, s)| *s).collect();
                if let Some(&seq) = issued.get(i % issued.len().max(1)) {
                    m.cancel(PID, seq).expect("cancel of an issued seq is Ok");
                }
            }
            Action::Reap(max) => {
                for e in m.reap_completions(PID, Some(max as usize)).unwrap() {
                    assert_eq!(self.seqs.get(&(self.epoch, e.seq)), Some(&Owner::Queue), "reaped seq {}", e.seq);
                    self.take(e.seq);
                }
            }
            Action::Wait(i) => {
                let cq = self.cq_seqs();
                if let Some(&seq) = cq.get(i % cq.len().max(1)) {
                    let done = m.wait_completion_timeout(PID, seq, T).expect("no wait hangs");
                    assert_eq!(done.seq, seq);
                    self.take(seq);
                    assert!(matches!(m.wait_completion(PID, seq), Err(IoUringError::UnknownSeq { .. })));
                }
                for (seq, _) in self.futures.iter().take(1) {
                    assert!(matches!(m.wait_completion(PID, *seq), Err(IoUringError::UnknownSeq { .. })));
                }
            }
            Action::Destroy => {
                m.destroy_ring(PID).unwrap();
                for (seq, f) in std::mem::take(&mut self.futures) {
                    let done = futures::executor::block_on(f);
                    assert_eq!(done.seq, seq);
                    self.take(seq);
                }
                for o in self.seqs.iter_mut().filter(|((e, _), _)| *e == self.epoch).map(|(_, o)| o) {
                    if *o == Owner::Queue {
                        *o = Owner::Discarded;
                    }
                }
                self.epoch += 1;
                self.fresh_ring();
            }
            _ => {}
        }
    }

    /// Takes everything still owed, then checks the books.
    fn finish(mut self) {
        for (seq, f) in std::mem::take(&mut self.futures) {
            assert_eq!(futures::executor::block_on(f).seq, seq);
            self.take(seq);
        }
        for seq in self.cq_seqs() {
            assert_eq!(self.m.wait_completion_timeout(PID, seq, T).expect("no wait hangs").seq, seq);
            self.take(seq);
        }
        eventually(T, "nothing pending", || self.m.stats().pending == 0);
        let st = self.m.stats();
        let discarded = self.seqs.values().filter(|o| **o == Owner::Discarded).count() as u64;
        assert_eq!(st.total_submissions, self.accepted);
        assert_eq!(st.total_completions, st.total_submissions);
        assert_eq!(st.discarded, discarded);
        assert!(self.seqs.values().all(|o| matches!(o, Owner::Taken | Owner::Discarded)));
        self.m.destroy_ring(PID).unwrap();
        // Operations of a destroyed ring may still be finishing in the backend (their
        // completions were already retired): their descriptors close when they do.
        eventually(T, "no descriptor left", || {
            self.m.executor().in_flight() == 0 && kernel_fds_to(&self.dir.path().join("f")) == 0
        });
    }
}

fn check(name: &'static str, actions: Vec<Action>) {
    within(Duration::from_secs(120), name, move || {
        let m = IoUringManager::with_backend(backend::by_name(name).expect("usable backend"));
        let mut w = World::new(m);
        for a in actions {
            w.apply(a);
        }
        w.finish();
    });
}

macro_rules! model {
    ($($name:ident: $backend:literal, $cfg:meta;)*) => {$(
        #[cfg($cfg)]
        proptest! {
            #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]
            #[test]
            fn $name(actions in proptest::collection::vec(action(), 1..60)) {
                if backend::by_name($backend).is_ok() {
                    check($backend, actions);
                }
            }
        }
    )*};
}

model! {
    model_uring: "uring", all(feature = "uring", target_os = "linux");
    model_blocking: "blocking", feature = "blocking";
    model_tokio: "tokio", feature = "tokio";
    model_smol: "smol", feature = "smol";
}
