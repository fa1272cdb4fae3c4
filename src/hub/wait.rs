//! Waiting for a request to end: the bounded wait behind `wait: true` on REST `invoke`, MCP
//! `invoke_agent` and A2A blocking sends.
//!
//! It follows the request's event stream (stored events first, then live ones) until the
//! terminal event or the deadline, hands each chunk to the caller (MCP turns them into
//! progress notifications), and then reads the request record once, so the answer is the
//! durable state, never a guess from the stream. The deadline is capped by `A2A_MAX_WAIT`.
//! Authorization is the stream's: whoever may follow the request may wait for it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::Hub;
use crate::error::HubResult;
use crate::model::{Event, EventKind, Principal, RequestRecord};

/// What a wait ended with.
#[derive(Debug, Clone)]
pub struct Waited {
    /// The request as stored when the wait ended.
    pub record: RequestRecord,
    /// Whether the request had ended (`false`: the deadline came first).
    pub finished: bool,
}

impl Hub {
    /// Follows `request_id` until it ends or `timeout` (at most `A2A_MAX_WAIT`) passes,
    /// handing every chunk to `on_chunk`, and returns the stored record.
    pub async fn wait<F, Fut>(
        &self,
        principal: &Principal,
        request_id: &str,
        timeout: Duration,
        mut on_chunk: F,
    ) -> HubResult<Waited>
    where
        F: FnMut(Arc<Event>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let timeout = timeout.min(self.config().max_wait);
        // Bounded by MAX_WAIT and part of one call: takes no subscription slot.
        let mut stream = self.subscribe_unmetered(principal, request_id, 0).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(Ok(ev))) => {
                    if matches!(ev.kind, EventKind::Chunk(_)) {
                        on_chunk(ev).await;
                    }
                }
                Ok(Some(Err(e))) => return Err(e),
                Ok(None) | Err(_) => break,
            }
        }
        drop(stream);
        let record = self.get_status(principal, request_id).await?;
        let finished = record.state.is_terminal();
        Ok(Waited { record, finished })
    }
}
