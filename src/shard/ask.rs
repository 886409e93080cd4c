//! Typed asks: a task of this shard that sends requests to other shards opens an `Ask<T>`,
//! quotes its id in the requests, and awaits the answers, each of type `T`, with a deadline.
//! One table per answer type, so an answer can only reach a waiter of its own type.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use crate::limits::ANSWER_TIMEOUT_MS;

/// Waiters for answers of type `T`, by request id.
pub struct Asks<T> {
    waiting: RefCell<HashMap<u64, LocalSender<T>>>,
    next: Cell<u64>,
}

impl<T> Default for Asks<T> {
    fn default() -> Self {
        Asks {
            waiting: RefCell::new(HashMap::new()),
            next: Cell::new(0),
        }
    }
}

/// One open request: its id and where its answers arrive.
pub struct Ask<T> {
    pub id: u64,
    receiver: LocalReceiver<T>,
    /// Answers expected.
    expected: usize,
}

impl<T> Ask<T> {
    pub fn expected(&self) -> usize {
        self.expected
    }
}

impl<T> Asks<T> {
    /// Opens a request expecting `answers` answers.
    pub fn open(&self, answers: usize) -> Ask<T> {
        let id = self.next.get();
        self.next.set(id + 1);
        // Room for every answer: delivering one never waits.
        let (sender, receiver) = local_channel::new_bounded(answers.max(1));
        if answers > 0 {
            self.waiting.borrow_mut().insert(id, sender);
        }
        Ask {
            id,
            receiver,
            expected: answers,
        }
    }

    /// Hands an answer to its waiter. A missing waiter gave up (deadline): dropping the
    /// answer is right.
    pub fn answer(&self, id: u64, value: T) {
        if let Some(sender) = self.waiting.borrow().get(&id) {
            let _ = sender.try_send(value);
        }
    }

    /// The next answer, or `None` once the deadline passed (the request is then closed).
    pub async fn next(&self, ask: &Ask<T>) -> Option<T> {
        let deadline = Duration::from_millis(ANSWER_TIMEOUT_MS);
        let answer = glommio::timer::timeout(deadline, async { Ok(ask.receiver.recv().await) })
            .await
            .ok()
            .flatten();
        if answer.is_none() {
            self.close(ask);
        }
        answer
    }

    /// Forgets the request: later answers are dropped.
    pub fn close(&self, ask: &Ask<T>) {
        self.waiting.borrow_mut().remove(&ask.id);
    }
}
