//! The bounded queue, concurrency limits, the job pump and restart recovery.
//!
//! Queue: one FIFO per (agent, caller) plus a global ticket, so the oldest runnable request
//! goes first and a saturated agent does not block the others. Limits, all checked under the
//! one queue lock: `MAX_CONCURRENCY` running overall, an agent's `max_concurrency`, and per
//! caller (principal id: an API key, `anonymous`, `local`, `agent:<id>`)
//! `A2A_MAX_INFLIGHT_PER_KEY` running — a caller over it waits in the queue while others'
//! requests run — and `A2A_MAX_QUEUED_PER_KEY` waiting — beyond it its invocations are
//! refused with 429 `rate_limited`, so one caller cannot fill the queue for everyone. Agent
//! callers (process agents calling back) are exempt from the running cap, since their parent
//! request waits for them. Admission reserves a slot before the request is written, so
//! `MAX_QUEUE_SIZE` is never exceeded and a refused request leaves no trace. Dispatch happens
//! inline whenever a request is queued or a job ends; the queue lock and the running-jobs map
//! change together, so a request is always either queued or owned by exactly one pump. With
//! several replicas the per-caller limits hold per replica.
//!
//! The pump of a running job is the only writer of that request's state. It persists chunks
//! in batches (whatever arrived during the previous commit) and publishes them after the
//! commit; it commits the terminal state and terminal event together; on cancel it drops the
//! executor (which kills the request's processes) and the request ends `canceled`, never
//! anything else.

use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Hub;
use super::queue::QueuedJob;
use crate::error::HubResult;
use crate::executor::{ExecContext, ExecError, OutputSink};
use crate::metrics;
use crate::model::{Event, EventKind, RequestRecord, RequestState, now_ms};
use crate::store::{Op, StoreError};

/// Chunks buffered between an executor and its pump.
const SINK_CAPACITY: usize = 256;

/// Control handle of a running job.
pub(super) struct JobControl {
    cancel: CancellationToken,
    /// Multi-replica: the lease is gone; stop without writing (the new owner decides).
    lost: CancellationToken,
    reason: Mutex<Option<String>>,
    done: watch::Sender<Option<RequestRecord>>,
    /// The queue ticket of the job (orders it against a lease renewal).
    pub ticket: u64,
}

impl JobControl {
    fn new(ticket: u64) -> Self {
        Self {
            cancel: CancellationToken::new(),
            lost: CancellationToken::new(),
            reason: Mutex::new(None),
            done: watch::channel(None).0,
            ticket,
        }
    }

    pub fn cancel_requested(&self) -> bool {
        self.cancel.is_cancelled()
    }

    pub fn abandon(&self) {
        self.lost.cancel();
    }

    pub fn request_cancel(&self, reason: String) {
        self.reason.lock().get_or_insert(reason);
        self.cancel.cancel();
    }

    /// Waits for the pump to commit the terminal state; `None` if the pump stopped without one
    /// (server shutdown).
    pub async fn finished(&self) -> Option<RequestRecord> {
        let mut rx = self.done.subscribe();
        loop {
            if let Some(r) = rx.borrow_and_update().clone() {
                return Some(r);
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    }
}

/// How a pump ended.
enum Outcome {
    Done(Value),
    Failed(String),
    Canceled(String),
    /// Server shutdown: leave the request `running` for the interrupt policy.
    Abandoned,
}

/// The `process-reaper` worker: in a hub process that adopts orphans (`serve`, `stdio`), it
/// reaps the exited processes agents left behind (`executor/process/reaper.rs`). It runs
/// until the jobs have drained at shutdown.
pub(super) fn spawn_reaper(hub: &Hub) {
    use crate::executor::process::reaper;
    const NAME: &str = "process-reaper";
    if !reaper::adopting() {
        return;
    }
    hub.worker_update(NAME, |_| {});
    let stop = hub.inner.cluster_stop.clone();
    let h = hub.clone();
    tokio::spawn(async move {
        reaper::run(stop, |pass| {
            h.worker_update(NAME, |w| {
                w.runs += 1;
                w.last_run = Some(crate::model::rfc3339(now_ms()));
                if let Err(e) = pass {
                    w.errors += 1;
                    w.last_error = Some(e);
                }
            })
        })
        .await;
        h.worker_update(NAME, |w| w.state = "stopped");
    });
}

impl Hub {
    /// Puts a recorded request in the queue and dispatches what can run.
    pub(super) fn enqueue(
        &self,
        record: RequestRecord,
        next_seq: u64,
        reserved: bool,
        traceparent: Option<String>,
    ) {
        self.inner
            .sched
            .lock()
            .push(record, next_seq, reserved, traceparent);
        self.dispatch();
    }

    /// Starts every queued job that the limits allow.
    pub(super) fn dispatch(&self) {
        let global = self.inner.cfg.max_concurrency;
        loop {
            let (job, control) = {
                let mut sched = self.inner.sched.lock();
                let registry = &self.inner.registry;
                let Some(job) = sched.pop_runnable(|agent| {
                    registry
                        .get(agent)
                        .map(|a| a.concurrency_limit(global))
                        .unwrap_or(global)
                }) else {
                    metrics::QUEUE_LENGTH.set(sched.queued() as i64);
                    metrics::RUNNING_JOBS.set(sched.running() as i64);
                    return;
                };
                let control = Arc::new(JobControl::new(job.ticket));
                self.inner
                    .jobs
                    .lock()
                    .insert(job.record.id.clone(), control.clone());
                metrics::QUEUE_LENGTH.set(sched.queued() as i64);
                metrics::RUNNING_JOBS.set(sched.running() as i64);
                (job, control)
            };
            let hub = self.clone();
            let span = tracing::info_span!(
                "job",
                request_id = %job.record.id,
                agent = %job.record.agent_id,
                capability = %job.record.capability,
                session = job.record.session_id.as_deref().unwrap_or(""),
            );
            if let Some(tp) = &job.traceparent {
                crate::telemetry::set_parent(&span, tp);
            }
            self.inner.tracker.spawn(
                async move {
                    let agent = job.record.agent_id.clone();
                    let principal = job.record.principal.clone();
                    let id = job.record.id.clone();
                    hub.run_job(job, control.clone()).await;
                    hub.inner.jobs.lock().remove(&id);
                    hub.inner.sched.lock().release(&agent, &principal);
                    hub.dispatch();
                }
                .instrument(span),
            );
        }
    }

    pub(super) fn publish(&self, ev: Event) {
        metrics::STREAM_EVENTS
            .with_label_values(&[ev.kind.type_name()])
            .inc();
        self.relay(&ev);
        self.inner.bus.publish(Arc::new(ev));
    }

    pub(super) fn record_finished(&self, rec: &RequestRecord) {
        metrics::REQUESTS_FINISHED
            .with_label_values(&[&rec.agent_id, rec.state.as_str()])
            .inc();
        if let Some(f) = rec.finished_at {
            metrics::REQUEST_DURATION
                .with_label_values(&[&rec.agent_id, rec.state.as_str()])
                .observe(((f - rec.created_at).max(0) as f64) / 1000.0);
        }
    }

    /// The job pump of one request.
    async fn run_job(&self, job: QueuedJob, control: Arc<JobControl>) {
        let QueuedJob {
            mut record,
            mut next_seq,
            ..
        } = job;
        let id = record.id.clone();

        let Some(agent) = self.inner.registry.get(&record.agent_id) else {
            let reason = format!(
                "agent {:?} was removed before the request could run",
                record.agent_id
            );
            if let Ok(rec) = self
                .finish_unstarted(record, next_seq, RequestState::Error, reason)
                .await
            {
                control.done.send_replace(Some(rec));
            }
            return;
        };

        // queued -> running, with the start event, in one commit.
        let now = now_ms();
        record.state = RequestState::Running;
        record.started_at = Some(now);
        record.attempts += 1;
        let start = Event {
            request_id: id.clone(),
            seq: next_seq,
            ts: now,
            kind: EventKind::Start,
        };
        next_seq += 1;
        if let Err(e) = self
            .inner
            .store
            .write(vec![
                Op::PutRequest(record.clone()),
                Op::AppendEvent(start.clone()),
            ])
            .await
        {
            if matches!(e, StoreError::Conflict(_)) {
                // Several replicas: an idle one took it from this queue in the meantime.
                tracing::info!(request_id = %id, "taken over by another replica before it started; dropping it here");
            } else {
                tracing::error!(request_id = %id, "cannot record the start of a request: {e}; it stays queued for the next start");
            }
            return;
        }
        self.publish(start);

        let input: Value = serde_json::from_str(&record.input).unwrap_or(Value::Null);
        // Process agents get a per-request credential to call back into the hub as themselves.
        let callback = match (&agent.spec.executor, self.inner.cfg.agent_callbacks) {
            (crate::model::ExecutorSpec::Process(_), true) => {
                let url = self.inner.hub_url.read().clone();
                match (url, self.issue_agent_token(&record.agent_id, &id)) {
                    (Some(url), Some(token)) => Some((url, token)),
                    _ => None,
                }
            }
            _ => None,
        };
        let ctx = ExecContext {
            request_id: id.clone(),
            agent_id: record.agent_id.clone(),
            capability: record.capability.clone(),
            session_id: record.session_id.clone(),
            parent_id: record.parent_id.clone(),
            attempt: record.attempts,
            cancel: control.cancel.child_token(),
            callback: callback.clone(),
            traceparent: crate::telemetry::traceparent(&tracing::Span::current()),
        };
        let (sink, mut chunks) = OutputSink::channel(SINK_CAPACITY);
        let exec = agent.executor.clone();
        // A boxed future (async_trait), so `drop(fut)` below really drops the executor.
        let mut fut = exec.run(ctx, input, sink);

        let mut chunks_open = true;
        // Chunks still buffered when the executor finishes are committed together with the
        // terminal event (one commit instead of two for agents that answer at once).
        let mut tail: Vec<Value> = Vec::new();
        let outcome = loop {
            tokio::select! {
                biased;
                _ = self.inner.hard_stop.cancelled() => break Outcome::Abandoned,
                _ = control.lost.cancelled() => break Outcome::Abandoned,
                _ = control.cancel.cancelled() => {
                    let reason = control.reason.lock().clone().unwrap_or_else(|| "canceled".into());
                    break Outcome::Canceled(reason);
                }
                r = &mut fut => {
                    while let Ok(c) = chunks.try_recv() {
                        tail.push(c);
                    }
                    break match r {
                        Ok(v) => Outcome::Done(v),
                        Err(ExecError::Canceled) => Outcome::Canceled(
                            control.reason.lock().clone().unwrap_or_else(|| "canceled by the agent".into()),
                        ),
                        Err(e) => Outcome::Failed(e.to_string()),
                    };
                }
                c = chunks.recv(), if chunks_open => match c {
                    Some(first) => {
                        let mut batch = vec![first];
                        while batch.len() < SINK_CAPACITY {
                            match chunks.try_recv() {
                                Ok(c) => batch.push(c),
                                Err(_) => break,
                            }
                        }
                        if let Err(e) = self.persist_chunks(&id, &mut next_seq, batch).await {
                            break Outcome::Failed(format!("the output could not be stored: {}", e.message));
                        }
                    }
                    None => chunks_open = false,
                },
            }
        };
        // Whatever the outcome, the executor is gone from here on (drop kills processes).
        drop(fut);
        if let Some((_, token)) = &callback {
            self.revoke_agent_token(token);
        }

        let now = now_ms();
        let mut events: Vec<Event> = match outcome {
            Outcome::Done(_) | Outcome::Failed(_) => self.chunk_events(&id, &mut next_seq, tail),
            _ => Vec::new(),
        };
        let kind = match outcome {
            Outcome::Abandoned => {
                if !control.lost.is_cancelled() {
                    tracing::info!(request_id = %id, "left running at shutdown; the interrupt policy applies at the next start");
                }
                return;
            }
            Outcome::Done(v) => {
                let text = v.to_string();
                record.state = RequestState::Done;
                record.result = Some(text.clone());
                EventKind::Final(text)
            }
            Outcome::Failed(m) => {
                record.state = RequestState::Error;
                record.error = Some(m.clone());
                EventKind::Error(m)
            }
            Outcome::Canceled(m) => {
                record.state = RequestState::Canceled;
                record.error = Some(m.clone());
                EventKind::Canceled(m)
            }
        };
        record.finished_at = Some(now);
        events.push(Event {
            request_id: id.clone(),
            seq: next_seq,
            ts: now,
            kind,
        });
        let mut ops: Vec<Op> = events.iter().cloned().map(Op::AppendEvent).collect();
        ops.push(Op::PutRequest(record.clone()));
        // Metrics first: whoever sees the terminal state in the store also finds it counted.
        self.record_finished(&record);
        match self.inner.store.write(ops).await {
            Ok(()) => {
                for ev in events {
                    self.publish(ev);
                }
                control.done.send_replace(Some(record));
            }
            Err(e) => {
                tracing::error!(request_id = %id, "cannot record the end of a request: {e}; the interrupt policy applies at the next start");
            }
        }
    }

    fn chunk_events(&self, id: &str, next_seq: &mut u64, batch: Vec<Value>) -> Vec<Event> {
        let ts = now_ms();
        batch
            .into_iter()
            .map(|c| {
                let ev = Event {
                    request_id: id.to_string(),
                    seq: *next_seq,
                    ts,
                    kind: EventKind::Chunk(c.to_string()),
                };
                *next_seq += 1;
                ev
            })
            .collect()
    }

    async fn persist_chunks(
        &self,
        id: &str,
        next_seq: &mut u64,
        batch: Vec<Value>,
    ) -> HubResult<()> {
        let events = self.chunk_events(id, next_seq, batch);
        self.inner
            .store
            .write(events.iter().cloned().map(Op::AppendEvent).collect())
            .await?;
        for ev in events {
            self.publish(ev);
        }
        Ok(())
    }

    /// Ends a request that never started — canceled while queued, failed at dispatch, or
    /// interrupted by a restart — with its terminal event, in one commit.
    pub(super) async fn finish_unstarted(
        &self,
        mut rec: RequestRecord,
        seq: u64,
        state: RequestState,
        message: String,
    ) -> HubResult<RequestRecord> {
        let now = now_ms();
        rec.state = state;
        rec.finished_at = Some(now);
        rec.error = Some(message.clone());
        let kind = match state {
            RequestState::Canceled => EventKind::Canceled(message),
            _ => EventKind::Error(message),
        };
        let ev = Event {
            request_id: rec.id.clone(),
            seq,
            ts: now,
            kind,
        };
        self.record_finished(&rec);
        self.inner
            .store
            .write(vec![
                Op::AppendEvent(ev.clone()),
                Op::PutRequest(rec.clone()),
            ])
            .await?;
        self.publish(ev);
        Ok(rec)
    }

    /// Restart recovery: queued requests run again; running ones follow their agent's
    /// interrupt policy (`fail` by default, `retry` for agents marked so). On a shared store,
    /// only requests leased to this replica id or whose lease ran out are recovered (the
    /// others belong to live replicas).
    pub(super) async fn recover(&self) -> HubResult<()> {
        let active = match self.cluster() {
            Some(c) => {
                let now = now_ms();
                let until = now + i64::try_from(c.ttl.as_millis()).unwrap_or(i64::MAX);
                self.inner
                    .store
                    .claim_expired(&c.id, true, until, now, self.inner.cfg.max_queue_size)
                    .await?
            }
            None => self.inner.store.active_requests().await?,
        };
        let (requeued, failed) = self.adopt(active, "interrupted by restart").await?;
        if requeued + failed > 0 {
            tracing::info!(
                requeued,
                failed,
                "recovered unfinished requests from the store"
            );
        }
        self.dispatch();
        Ok(())
    }
}
