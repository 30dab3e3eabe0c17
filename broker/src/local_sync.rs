//! Single-thread synchronisation for tasks on one shard: an [`Event`] many tasks wait on
//! (appends for fetch long-polls, shutdown), and a [`oneshot`] reply slot (mesh replies).
//!
//! Everything here is `!Send` and lives on one shard; nothing locks.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// A notification many tasks can wait for. A listener created before `notify_all` completes
/// even if it is first polled afterwards, so "create listener, check condition, await" never
/// misses a wake-up. Dropped listeners deregister, so waiting in a loop does not leak.
#[derive(Default)]
pub struct Event {
    generation: Cell<u64>,
    next_key: Cell<u64>,
    waiters: RefCell<HashMap<u64, Waker>>,
}

impl Event {
    /// A new event.
    pub fn new() -> Rc<Event> {
        Rc::new(Event::default())
    }

    /// Wakes every current listener.
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for (_, waker) in waiters {
            waker.wake();
        }
    }

    /// A future that completes at the next `notify_all` after this call.
    pub fn listen(self: &Rc<Self>) -> Listener {
        let key = self.next_key.get();
        self.next_key.set(key.wrapping_add(1));
        Listener {
            event: self.clone(),
            key,
            generation: self.generation.get(),
        }
    }

    /// Number of registered waiters (tests, metrics).
    pub fn waiter_count(&self) -> usize {
        self.waiters.borrow().len()
    }
}

/// Waits for one [`Event::notify_all`].
pub struct Listener {
    event: Rc<Event>,
    key: u64,
    generation: u64,
}

impl Future for Listener {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.event.generation.get() != self.generation {
            return Poll::Ready(());
        }
        self.event
            .waiters
            .borrow_mut()
            .insert(self.key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.event.waiters.borrow_mut().remove(&self.key);
    }
}

/// A latch: once set, stays set; waiters wake when it is set (shutdown, drain barriers).
#[derive(Default)]
pub struct Latch {
    set: Cell<bool>,
    event: Rc<Event>,
}

impl Latch {
    /// A new, unset latch.
    pub fn new() -> Rc<Latch> {
        Rc::new(Latch::default())
    }

    /// Sets the latch and wakes all waiters.
    pub fn set(&self) {
        if !self.set.replace(true) {
            self.event.notify_all();
        }
    }

    /// Whether the latch is set.
    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Completes once the latch is set.
    pub async fn wait(&self) {
        while !self.set.get() {
            let listener = self.event.listen();
            if self.set.get() {
                return;
            }
            listener.await;
        }
    }
}

/// A latch that sets itself after `count` calls to [`Countdown::count_down`] (barriers
/// between shards: every peer has opened its partitions, every peer has drained).
pub struct Countdown {
    left: Cell<usize>,
    done: Rc<Latch>,
}

impl Countdown {
    /// A countdown that is already done when `count` is 0.
    pub fn new(count: usize) -> Countdown {
        let done = Latch::new();
        if count == 0 {
            done.set();
        }
        Countdown {
            left: Cell::new(count),
            done,
        }
    }

    /// Counts one arrival; the last one sets the latch. Extra calls are ignored.
    pub fn count_down(&self) {
        let left = self.left.get().saturating_sub(1);
        self.left.set(left);
        if left == 0 {
            self.done.set();
        }
    }

    /// Completes once every arrival was counted.
    pub async fn wait(&self) {
        self.done.wait().await;
    }
}

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
    sender_gone: bool,
}

/// Sending half of a [`oneshot`].
pub struct OneshotSender<T> {
    slot: Rc<RefCell<Slot<T>>>,
}

/// Receiving half of a [`oneshot`]; resolves to `None` if the sender was dropped unused.
pub struct OneshotReceiver<T> {
    slot: Rc<RefCell<Slot<T>>>,
}

/// A single-value channel between two tasks on one shard.
pub fn oneshot<T>() -> (OneshotSender<T>, OneshotReceiver<T>) {
    let slot = Rc::new(RefCell::new(Slot {
        value: None,
        waker: None,
        sender_gone: false,
    }));
    (
        OneshotSender { slot: slot.clone() },
        OneshotReceiver { slot },
    )
}

impl<T> OneshotSender<T> {
    /// Delivers the value and wakes the receiver.
    pub fn send(self, value: T) {
        let waker = {
            let mut slot = self.slot.borrow_mut();
            slot.value = Some(value);
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Drop for OneshotSender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut slot = self.slot.borrow_mut();
            slot.sender_gone = true;
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Future for OneshotReceiver<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut slot = self.slot.borrow_mut();
        if let Some(value) = slot.value.take() {
            return Poll::Ready(Some(value));
        }
        if slot.sender_gone {
            return Poll::Ready(None);
        }
        slot.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    #[test]
    fn countdown_completes_after_the_last_arrival_only() {
        let countdown = Countdown::new(2);
        let mut wait = Box::pin(countdown.wait());
        assert!(future::block_on(future::poll_once(&mut wait)).is_none());
        countdown.count_down();
        assert!(future::block_on(future::poll_once(&mut wait)).is_none());
        countdown.count_down();
        assert!(future::block_on(future::poll_once(&mut wait)).is_some());
        countdown.count_down();
        future::block_on(countdown.wait());
        future::block_on(Countdown::new(0).wait());
    }

    #[test]
    fn listener_created_before_notify_completes() {
        let event = Event::new();
        let listener = event.listen();
        event.notify_all();
        future::block_on(listener);
        assert_eq!(event.waiter_count(), 0);
    }

    #[test]
    fn dropped_listeners_deregister() {
        let event = Event::new();
        for _ in 0..100 {
            let mut listener = event.listen();
            let polled = future::block_on(future::poll_once(&mut listener));
            assert!(polled.is_none());
        }
        assert_eq!(event.waiter_count(), 0);
    }

    #[test]
    fn oneshot_delivers_or_reports_drop() {
        let (tx, rx) = oneshot();
        tx.send(5);
        assert_eq!(future::block_on(rx), Some(5));
        let (tx, rx) = oneshot::<u8>();
        drop(tx);
        assert_eq!(future::block_on(rx), None);
    }

    #[test]
    fn latch_stays_set() {
        let latch = Latch::new();
        assert!(!latch.is_set());
        latch.set();
        future::block_on(latch.wait());
        assert!(latch.is_set());
    }
}
