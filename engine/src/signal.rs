//! A single-threaded, generation-counting notification: tasks read the generation, check their
//! condition, and wait until the generation moves. No notification is lost between the check
//! and the wait because both happen on the same thread without an await in between.

use std::{
    cell::{Cell, RefCell},
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
};

/// Wakes every waiting task when notified. Owned by one shard.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Signal {
    pub(crate) fn new() -> Signal {
        Signal::default()
    }

    /// The current generation; pass it to [`wait`](Self::wait).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Advances the generation and wakes every waiter.
    pub(crate) fn notify_all(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waker in waiters {
            waker.wake();
        }
    }

    /// Completes once the generation differs from `seen`.
    pub(crate) fn wait(&self, seen: u64) -> SignalWait<'_> {
        SignalWait { signal: self, seen }
    }
}

/// Future returned by [`Signal::wait`].
pub(crate) struct SignalWait<'a> {
    signal: &'a Signal,
    seen: u64,
}

impl Future for SignalWait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.signal.generation.get() != self.seen {
            return Poll::Ready(());
        }
        let mut waiters = self.signal.waiters.borrow_mut();
        if !waiters.iter().any(|waker| waker.will_wake(context.waker())) {
            waiters.push(context.waker().clone());
        }
        Poll::Pending
    }
}
