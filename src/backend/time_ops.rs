//! The timers family: a `Timeout` waits on the host's timer thread, holding no thread of a
//! pool and no place in the executor's window, and completes when its time comes or when it is
//! cancelled, whichever is first (exactly once: whichever takes the completer).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::{Completer, Submission};
use crate::op::{OpError, OpResult, SyscallOpType, errno};
use crate::timer::timer;

/// Starts `Timeout` submission `sub` on the timer (anything else is `EINVAL`).
pub(crate) fn start(mut sub: Submission) {
    let &SyscallOpType::Timeout { duration } = sub.op() else {
        let name = sub.op().name();
        return sub.complete(Err(OpError::new(errno::EINVAL, format!("{name} is not a timer operation"))));
    };
    let Some(at) = Instant::now().checked_add(duration) else {
        return sub
            .complete(Err(OpError::new(errno::EINVAL, format!("timeout: {duration:?} is past the clock's end"))));
    };
    sub.leave_window();
    let token = sub.cancel_token();
    let completer = Arc::new(Mutex::new(Some(sub.into_completer())));
    let fire = completer.clone();
    let key = match timer().at(at, move || finish(&fire, Ok(OpResult::None))) {
        Ok(key) => key,
        Err(e) => {
            let e = OpError::new(errno::EAGAIN, format!("timeout: the timer thread could not be made: {e}"));
            return finish(&completer, Err(e));
        }
    };
    // Taken back before it ran: the cancellation completes it; otherwise the timer did.
    token.on_cancel(move || {
        if timer().cancel(key) {
            finish(&completer, Err(OpError::cancelled()));
        }
    });
}

/// Completes the operation unless it already was.
fn finish(completer: &Mutex<Option<Completer>>, outcome: super::OpOutcome) {
    let taken = completer.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(completer) = taken {
        completer.complete(outcome);
    }
}
