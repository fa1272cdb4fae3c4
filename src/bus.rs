//! The in-process event bus: live delivery of stream events to subscribers.
//!
//! The bus is only the *live* half of a stream. The stored event log is the source of truth:
//! the hub appends an event to the store and only then publishes it here, and a subscriber
//! first subscribes, then replays the log, then follows live, dropping anything it already
//! replayed (by `seq`). A subscriber that falls behind (broadcast lag) goes back to the log.
//! So a late or reconnecting client never misses an event.
//!
//! One broadcast channel per request with live interest, created on demand and removed when
//! the request ends and nobody listens any more.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::model::Event;

/// Events buffered per request channel before a slow subscriber lags (then it re-reads the log).
const CHANNEL_CAPACITY: usize = 256;

#[derive(Default)]
pub struct Bus {
    channels: Mutex<HashMap<String, broadcast::Sender<Arc<Event>>>>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes an event that is already persisted. A terminal event closes the channel
    /// once delivered (subscribers see `Closed` after draining it).
    pub fn publish(&self, event: Arc<Event>) {
        let terminal = event.kind.is_terminal();
        let mut map = self.channels.lock();
        if let Some(tx) = map.get(&event.request_id) {
            let _ = tx.send(event.clone());
            if terminal {
                map.remove(&event.request_id);
            }
        }
    }

    /// Live events of one request from now on.
    pub fn subscribe(&self, request_id: &str) -> broadcast::Receiver<Arc<Event>> {
        let mut map = self.channels.lock();
        map.entry(request_id.to_string())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    }

    /// Drops the channel of a request if nobody listens (called by subscribers as they leave).
    pub fn release(&self, request_id: &str) {
        let mut map = self.channels.lock();
        if map
            .get(request_id)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            map.remove(request_id);
        }
    }

    /// Number of requests with a live channel (for metrics and status).
    pub fn channels(&self) -> usize {
        self.channels.lock().len()
    }
}
