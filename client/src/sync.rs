//! Two tiny single-thread primitives the executor-local client needs and glommio lacks: a
//! one-shot slot (a response for one request) and a notification that wakes every waiter.
//! Both are `!Send`: each lives on the executor that created it.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// The sending side and the receiving side share one of these.
struct SlotState<T> {
    value: RefCell<Option<T>>,
    waker: RefCell<Option<Waker>>,
    /// Set when the sender is dropped without a value (the receiver then sees `None`).
    closed: Cell<bool>,
}

/// Fills a [`Receiver`] once.
pub struct Sender<T> {
    state: Rc<SlotState<T>>,
}

/// Resolves to the value sent, or `None` if the sender was dropped first.
pub struct Receiver<T> {
    state: Rc<SlotState<T>>,
}

/// A one-shot channel.
pub fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    let state = Rc::new(SlotState {
        value: RefCell::new(None),
        waker: RefCell::new(None),
        closed: Cell::new(false),
    });
    (
        Sender {
            state: Rc::clone(&state),
        },
        Receiver { state },
    )
}

impl<T> Sender<T> {
    /// Delivers the value (dropped if the receiver is gone).
    pub fn send(self, value: T) {
        *self.state.value.borrow_mut() = Some(value);
        // Drop runs next and wakes the receiver.
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.state.closed.set(true);
        if let Some(waker) = self.state.waker.borrow_mut().take() {
            waker.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if let Some(value) = self.state.value.borrow_mut().take() {
            return Poll::Ready(Some(value));
        }
        if self.state.closed.get() {
            return Poll::Ready(None);
        }
        *self.state.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Wakes every task waiting on it when notified. A waiter that registers after a
/// notification waits for the next one (callers re-check their condition in a loop).
#[derive(Default)]
pub struct Notify {
    generation: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl Notify {
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes every current waiter.
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for waker in wakers {
            waker.wake();
        }
    }

    /// Resolves at the next [`Notify::notify_all`].
    pub fn notified(&self) -> Notified<'_> {
        Notified {
            notify: self,
            generation: self.generation.get(),
        }
    }
}

/// The future of [`Notify::notified`].
pub struct Notified<'a> {
    notify: &'a Notify,
    generation: u64,
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.generation.get() != self.generation {
            return Poll::Ready(());
        }
        let mut wakers = self.notify.wakers.borrow_mut();
        if !wakers.iter().any(|waker| waker.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    #[test]
    fn oneshot_delivers_or_reports_a_dropped_sender() {
        future::block_on(async {
            let (sender, receiver) = oneshot();
            sender.send(7);
            assert_eq!(receiver.await, Some(7));
            let (sender, receiver) = oneshot::<u8>();
            drop(sender);
            assert_eq!(receiver.await, None);
        });
    }

    #[test]
    fn notify_wakes_waiters_registered_before_it() {
        future::block_on(async {
            let notify = Notify::new();
            let waiting = notify.notified();
            notify.notify_all();
            waiting.await;
        });
    }
}
