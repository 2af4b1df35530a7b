//! Futures and streams, awaited under the runtime of the crate running the suite.

use std::collections::HashSet;
use std::time::Duration;

use ai_os_kernel::syscalls::{OpResult, SyscallOpType};
use futures::StreamExt;

use super::{entry, held, manager, nop};
use crate::support::MakeBackend;

/// Many futures awaited together all resolve with their own completion.
pub async fn futures_resolve(make: MakeBackend) {
    let m = manager(make);
    let futs: Vec<_> = (0..100).map(|i| m.submit_async(1, entry(1, SyscallOpType::Nop, i)).unwrap()).collect();
    let seqs: Vec<u64> = futs.iter().map(|f| f.seq()).collect();
    let done = futures::future::join_all(futs).await;
    for (i, (d, seq)) in done.iter().zip(seqs).enumerate() {
        assert_eq!((d.seq, d.user_data, &d.result), (seq, i as u64, &OpResult::None));
        assert!(d.status.is_success());
    }
    assert_eq!(m.stats().pending, 0);
}

/// The stream yields every CQ completion once, then ends when the ring is destroyed.
pub async fn stream_delivers_then_ends(make: MakeBackend) {
    let m = manager(make);
    m.create_ring(1, None, None).unwrap();
    let mut stream = m.completions(1).unwrap();
    let seqs: HashSet<u64> = m.submit_batch(1, (0..50).map(|_| nop(1)).collect()).unwrap().into_iter().collect();
    let mut got = HashSet::new();
    while got.len() < 50 {
        let e = stream.next().await.expect("stream ended early");
        assert!(got.insert(e.seq), "seq {} twice", e.seq);
    }
    assert_eq!(got, seqs);
    let detached = m.submit_async(1, nop(1)).unwrap().detach();
    assert_eq!(stream.next().await.unwrap().seq, detached);
    m.destroy_ring(1).unwrap();
    assert!(stream.next().await.is_none());
    assert!(stream.next().await.is_none(), "an ended stream stays ended");
}

/// A future and a stream parked on one thread are woken by the thread that completes the work.
pub async fn woken_from_another_thread(make: MakeBackend) {
    let (m, gate) = held(make, 4);
    let fut = m.submit_async(1, nop(1)).unwrap();
    let mut stream = m.completions(1).unwrap();
    let seq = m.submit(1, nop(1)).unwrap();
    let opener = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        gate.open();
    });
    assert!(fut.await.status.is_success());
    assert_eq!(stream.next().await.unwrap().seq, seq);
    opener.join().unwrap();
}
