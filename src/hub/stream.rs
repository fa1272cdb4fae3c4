//! Following a request's events: replay from the stored log, then live, with no gaps.
//!
//! Order of operations is what makes this correct: subscribe to the bus first, then read the
//! log; events are persisted before they are published, so anything not in the replay
//! arrives live, and duplicates are dropped by `seq`. The log is read in pages and every page
//! is read before the stream waits for live events, so the replay of a finished request, however
//! long, reaches its terminal event. A lagging receiver (or a closed channel) sends the stream
//! back to the log. The stream ends after the terminal event.
//!
//! A stream opened with an API key ends with an `unauthenticated` error as soon as that key is
//! revoked or expires ([`super::KeyGuard`]; checked between events, and waited on while idle).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::{Hub, KeyGuard, request_not_found};
use crate::error::{ErrorCode, HubError, HubResult};
use crate::model::{Event, Principal, PrincipalKind};

/// Open subscriptions per request (`MAX_SUBS_PER_REQUEST`) and per caller
/// (`A2A_MAX_STREAMS_PER_KEY`), across every transport. Each [`EventStream`] holds its slot
/// and gives it back when dropped, so no front door has to remember to take one.
#[derive(Default)]
pub(crate) struct Subscribers {
    per_request: Mutex<HashMap<String, usize>>,
    per_caller: Mutex<HashMap<String, usize>>,
}

/// A slot taken in [`Subscribers`]; given back when dropped (with its [`EventStream`]).
struct Slot {
    hub: Hub,
    request_id: String,
    /// `None`: the caller is not counted (anonymous and local callers share one identity).
    caller: Option<String>,
}

fn give_back(map: &Mutex<HashMap<String, usize>>, key: &str) {
    let mut m = map.lock();
    if let Some(n) = m.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            m.remove(key);
        }
    }
}

impl Hub {
    /// Takes a subscription slot for `caller` on a request, or says why not (429).
    fn take_slot(&self, request_id: &str, caller: &Principal) -> HubResult<Slot> {
        let subs = &self.inner.subscribers;
        let per_caller = !matches!(caller.kind, PrincipalKind::Anonymous | PrincipalKind::Local);
        if per_caller {
            let mut m = subs.per_caller.lock();
            let n = m.entry(caller.id.clone()).or_insert(0);
            if *n >= self.inner.cfg.max_streams_per_key {
                return Err(HubError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "{} already holds {} stream subscriptions (A2A_MAX_STREAMS_PER_KEY); close some first",
                        caller.id, *n
                    ),
                ));
            }
            *n += 1;
        }
        let mut m = subs.per_request.lock();
        let n = m.entry(request_id.to_string()).or_insert(0);
        if *n >= self.inner.cfg.max_subs_per_request {
            drop(m);
            if per_caller {
                give_back(&subs.per_caller, &caller.id);
            }
            return Err(HubError::new(
                ErrorCode::RateLimited,
                format!(
                    "request {request_id:?} already has {} stream subscribers (MAX_SUBS_PER_REQUEST)",
                    self.inner.cfg.max_subs_per_request
                ),
            ));
        }
        *n += 1;
        Ok(Slot {
            hub: self.clone(),
            request_id: request_id.to_string(),
            caller: per_caller.then(|| caller.id.clone()),
        })
    }
}

/// Events read from the log per store read.
const REPLAY_PAGE: usize = 512;

/// A replay-then-live stream of one request's events.
pub struct EventStream {
    hub: Hub,
    request_id: String,
    rx: broadcast::Receiver<Arc<Event>>,
    buffer: VecDeque<Arc<Event>>,
    last_seq: u64,
    /// The last log read filled a whole page: more may be stored after it.
    more_stored: bool,
    /// The key the stream was opened with (`None`: no key to watch).
    guard: Option<KeyGuard>,
    done: bool,
    /// The subscription slot (`None` for the hub's own followers); given back on drop.
    _slot: Option<Slot>,
}

/// What woke a stream waiting for live events.
enum Woke {
    Live(Option<Result<Arc<Event>, RecvError>>),
    KeyLapsed(HubError),
}

impl Hub {
    /// Events of `request_id` with `seq > after`: stored ones first, then live ones, ending
    /// after the terminal event (or with an error once the caller's API key stops being valid).
    ///
    /// The stream holds one of the caller's subscription slots (per request and per caller,
    /// see [`Subscribers`]) until it is dropped; beyond the caps this answers `rate_limited`.
    pub async fn subscribe(
        &self,
        principal: &Principal,
        request_id: &str,
        after: u64,
    ) -> HubResult<EventStream> {
        let slot = self.take_slot(request_id, principal)?;
        let mut s = self.open_stream(principal, request_id, after).await?;
        s._slot = Some(slot);
        Ok(s)
    }

    /// A stream that takes no subscription slot: for the hub's own followers (push delivery)
    /// and for blocking waits bounded by `MAX_WAIT` (REST `wait`, MCP invocations that wait,
    /// a blocking A2A `SendMessage`). A wait is part of one call whose request was already
    /// accepted; refusing it for quota would leave work running that the caller was told
    /// failed. Open-ended streams use [`Hub::subscribe`].
    pub async fn subscribe_unmetered(
        &self,
        principal: &Principal,
        request_id: &str,
        after: u64,
    ) -> HubResult<EventStream> {
        self.open_stream(principal, request_id, after).await
    }

    async fn open_stream(
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
            more_stored: false,
            guard: self.key_guard(principal),
            done: false,
            _slot: None,
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

    /// Reads the next page of the log after the last event handed out.
    async fn refill(&mut self) -> HubResult<()> {
        let events = self
            .hub
            .inner
            .store
            .events(&self.request_id, self.last_seq, REPLAY_PAGE)
            .await?;
        self.more_stored = events.len() >= REPLAY_PAGE;
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

    /// Takes every event stored right now (after the starting point), in order, without
    /// waiting for live ones; the stream then goes on after the last of them. A stream whose
    /// catch-up reached the terminal event has nothing more to give.
    pub async fn catch_up(&mut self) -> HubResult<Vec<Arc<Event>>> {
        let mut out = Vec::new();
        loop {
            while let Some(ev) = self.buffer.pop_front() {
                if ev.seq <= self.last_seq || self.done {
                    continue;
                }
                self.last_seq = ev.seq;
                if ev.kind.is_terminal() {
                    self.done = true;
                }
                out.push(ev);
            }
            if self.done {
                return Ok(out);
            }
            self.refill().await?;
            if self.buffer.is_empty() {
                return Ok(out);
            }
        }
    }

    /// The next event; `None` after the terminal event (or after an error).
    pub async fn next(&mut self) -> Option<Result<Arc<Event>, HubError>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(g) = &mut self.guard
                && let Err(e) = g.check()
            {
                self.done = true;
                return Some(Err(e));
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
            if self.more_stored {
                // The replay is not over: read on before waiting for anything live.
                if let Err(e) = self.refill().await {
                    return Some(Err(e));
                }
                continue;
            }
            // Several replicas: the job may run elsewhere; when nothing arrives for a while,
            // read the store (a relay message may be lost, or there is no relay at all).
            let poll = self.hub.cluster().map(|c| c.poll);
            let woke = {
                let rx = &mut self.rx;
                let live = async move {
                    match poll {
                        Some(p) => tokio::time::timeout(p, rx.recv()).await.ok(),
                        None => Some(rx.recv().await),
                    }
                };
                match &mut self.guard {
                    Some(g) => tokio::select! {
                        e = g.lapsed() => Woke::KeyLapsed(e),
                        got = live => Woke::Live(got),
                    },
                    None => Woke::Live(live.await),
                }
            };
            let got = match woke {
                Woke::KeyLapsed(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Woke::Live(got) => got,
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

impl Drop for Slot {
    fn drop(&mut self) {
        let subs = &self.hub.inner.subscribers;
        give_back(&subs.per_request, &self.request_id);
        if let Some(c) = &self.caller {
            give_back(&subs.per_caller, c);
        }
    }
}
