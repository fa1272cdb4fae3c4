//! Following a request's events: replay from the stored log, then live, with no gaps.
//!
//! Order of operations is what makes this correct: subscribe to the bus first, then read the
//! log; events are persisted before they are published, so anything not in the replay
//! arrives live, and duplicates are dropped by `seq`. A lagging receiver (or a closed channel)
//! sends the stream back to the log. The stream ends after the terminal event.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::{Hub, request_not_found};
use crate::error::{HubError, HubResult};
use crate::model::{Event, Principal};

const REPLAY_PAGE: usize = 512;

/// A replay-then-live stream of one request's events.
pub struct EventStream {
    hub: Hub,
    request_id: String,
    rx: broadcast::Receiver<Arc<Event>>,
    buffer: VecDeque<Arc<Event>>,
    last_seq: u64,
    done: bool,
}

impl Hub {
    /// Events of `request_id` with `seq > after`: stored ones first, then live ones, ending
    /// after the terminal event.
    pub async fn subscribe(
        &self,
        principal: &Principal,
        request_id: &str,
        after: u64,
    ) -> HubResult<EventStream> {
        let rx = self.inner.bus.subscribe(request_id);
        let exists = self.inner.store.get_request(request_id).await;
        match exists {
            Ok(Some(rec)) => {
                if let Err(e) = self.authorize_read(principal, &rec).await {
                    drop(rx);
                    self.inner.bus.release(request_id);
                    return Err(e);
                }
            }
            Ok(None) => {
                drop(rx);
                self.inner.bus.release(request_id);
                return Err(request_not_found(request_id));
            }
            Err(e) => {
                drop(rx);
                self.inner.bus.release(request_id);
                return Err(e.into());
            }
        }
        let mut s = EventStream {
            hub: self.clone(),
            request_id: request_id.to_string(),
            rx,
            buffer: VecDeque::new(),
            last_seq: after,
            done: false,
        };
        s.refill().await?;
        Ok(s)
    }
}

impl EventStream {
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The `seq` of the last event handed out (or the starting point).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    async fn refill(&mut self) -> HubResult<()> {
        let events = self
            .hub
            .inner
            .store
            .events(&self.request_id, self.last_seq, REPLAY_PAGE)
            .await?;
        let mut expect = self.last_seq;
        for ev in events {
            if ev.seq <= expect {
                continue;
            }
            expect = ev.seq;
            self.buffer.push_back(Arc::new(ev));
        }
        Ok(())
    }

    /// The next event; `None` after the terminal event.
    pub async fn next(&mut self) -> Option<Result<Arc<Event>, HubError>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(ev) = self.buffer.pop_front() {
                if ev.seq <= self.last_seq {
                    continue;
                }
                self.last_seq = ev.seq;
                if ev.kind.is_terminal() {
                    self.done = true;
                }
                return Some(Ok(ev));
            }
            // Several replicas: the job may run elsewhere; when nothing arrives for a while,
            // read the store (a relay message may be lost, or there is no relay at all).
            let poll = self.hub.cluster().map(|c| c.poll);
            let got = match poll {
                Some(p) => tokio::time::timeout(p, self.rx.recv()).await.ok(),
                None => Some(self.rx.recv().await),
            };
            let Some(got) = got else {
                if let Err(e) = self.refill().await {
                    return Some(Err(e));
                }
                continue;
            };
            match got {
                Ok(ev) => {
                    if ev.seq <= self.last_seq {
                        continue;
                    }
                    if ev.seq == self.last_seq + 1 {
                        self.buffer.push_back(ev);
                    } else if let Err(e) = self.refill().await {
                        return Some(Err(e));
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    if let Err(e) = self.refill().await {
                        return Some(Err(e));
                    }
                }
                Err(RecvError::Closed) => {
                    // The channel ended with a terminal event we may not have seen yet.
                    if let Err(e) = self.refill().await {
                        return Some(Err(e));
                    }
                    if self.buffer.is_empty() {
                        // Nothing more stored: re-attach to a fresh channel and read again, so
                        // an event published in between is not lost.
                        self.rx = self.hub.inner.bus.subscribe(&self.request_id);
                        if let Err(e) = self.refill().await {
                            return Some(Err(e));
                        }
                        if self.buffer.is_empty() {
                            match self.hub.inner.store.get_request(&self.request_id).await {
                                Ok(Some(r)) if r.state.is_terminal() => {
                                    self.done = true;
                                }
                                Ok(Some(_)) => {}
                                Ok(None) => self.done = true,
                                Err(e) => return Some(Err(e.into())),
                            }
                        }
                    }
                }
            }
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        // Our receiver is dropped after this body runs; release() checks receiver_count, so
        // replace it first with a receiver of a throwaway channel.
        let (_tx, rx) = broadcast::channel(1);
        drop(std::mem::replace(&mut self.rx, rx));
        self.hub.inner.bus.release(&self.request_id);
    }
}
