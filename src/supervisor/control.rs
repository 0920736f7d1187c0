//! The queue of operator and watchdog commands to one run. Every idle agent keeps one for its
//! whole life, so it is a mutex-guarded queue and a wake-up (about 100 bytes) rather than
//! tokio's unbounded channel, which allocates its first block of 32 slots up front (415 bytes
//! a run in heaptrack at 2,000 idle agents). Commands are rare and few.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::Control;

struct Shared {
    queue: Mutex<VecDeque<Control>>,
    wake: Notify,
    /// The run has ended: its receiver is gone, commands are refused.
    closed: AtomicBool,
}

/// Sends commands to a run (the supervisor's handle, the watchdog's, the run's own).
#[derive(Clone)]
pub(crate) struct ControlTx(Arc<Shared>);

/// The run's end of the queue.
pub(crate) struct ControlRx(Arc<Shared>);

/// A new queue.
pub(crate) fn channel() -> (ControlTx, ControlRx) {
    let s = Arc::new(Shared {
        queue: Mutex::new(VecDeque::new()),
        wake: Notify::new(),
        closed: AtomicBool::new(false),
    });
    (ControlTx(s.clone()), ControlRx(s))
}

impl ControlTx {
    /// Queues `c`; `Err` (with it) once the run has ended.
    pub fn send(&self, c: Control) -> Result<(), Control> {
        let mut q = self.0.queue.lock().unwrap_or_else(|e| e.into_inner());
        if self.0.closed.load(Ordering::SeqCst) {
            return Err(c);
        }
        q.push_back(c);
        drop(q);
        // A permit is kept when the run is not waiting yet: the command is never missed.
        self.0.wake.notify_one();
        Ok(())
    }
}

impl ControlRx {
    /// The next command, waiting for one. Cancel-safe: a command stays queued until it is
    /// returned, and a wake-up taken by a dropped wait passes on to the next.
    pub async fn recv(&mut self) -> Option<Control> {
        loop {
            if let Some(c) = self
                .0
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front()
            {
                return Some(c);
            }
            self.0.wake.notified().await;
        }
    }
}

impl Drop for ControlRx {
    fn drop(&mut self) {
        let mut q = self.0.queue.lock().unwrap_or_else(|e| e.into_inner());
        self.0.closed.store(true, Ordering::SeqCst);
        q.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::Control;

    #[tokio::test]
    async fn commands_arrive_in_order_even_when_the_wait_is_dropped_and_none_after_the_end() {
        let (tx, mut rx) = channel();
        // Sent before anyone waits.
        tx.send(Control::Pause).unwrap();
        assert!(matches!(rx.recv().await, Some(Control::Pause)));
        // A wait dropped unfinished (as a select! does) loses nothing.
        {
            let w = rx.recv();
            tokio::pin!(w);
            assert!(futures_poll_once(w.as_mut()).await.is_none());
        }
        tx.send(Control::Resume).unwrap();
        tx.send(Control::Pause).unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(1), rx.recv()).await;
        assert!(matches!(got, Ok(Some(Control::Resume))));
        let got = tokio::time::timeout(std::time::Duration::from_secs(1), rx.recv()).await;
        assert!(matches!(got, Ok(Some(Control::Pause))));
        // Woken from another task.
        let tx2 = tx.clone();
        let h = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            tx2.send(Control::Resume).unwrap();
        });
        let got = tokio::time::timeout(std::time::Duration::from_secs(1), rx.recv()).await;
        assert!(matches!(got, Ok(Some(Control::Resume))));
        h.await.unwrap();
        drop(rx);
        assert!(tx.send(Control::Pause).is_err());
    }

    /// Polls `f` once: its output if it was ready.
    async fn futures_poll_once<F: std::future::Future + Unpin>(mut f: F) -> Option<F::Output> {
        std::future::poll_fn(|cx| match std::pin::Pin::new(&mut f).poll(cx) {
            std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
            std::task::Poll::Pending => std::task::Poll::Ready(None),
        })
        .await
    }
}
