//! The bounded queue: one FIFO per (agent, caller) ordered by a global ticket, admission
//! (`MAX_QUEUE_SIZE`, `A2A_MAX_QUEUED_PER_KEY`) and the running limits checked when a job is
//! taken (`MAX_CONCURRENCY`, an agent's `max_concurrency`, `A2A_MAX_INFLIGHT_PER_KEY`). Pure
//! data under the hub's one queue lock; the pump that runs jobs is `scheduler.rs`.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::error::{ErrorCode, HubError, HubResult};

use crate::model::RequestRecord;

pub(super) struct QueuedJob {
    pub record: RequestRecord,
    /// The `seq` of the next event of this request.
    pub next_seq: u64,
    pub(super) ticket: u64,
    /// W3C trace context of the invocation (in memory only; not kept across restarts).
    pub(super) traceparent: Option<String>,
}

/// Load of one caller (principal id): what it has waiting and running.
#[derive(Default, Debug)]
struct KeyLoad {
    queued: usize,
    reserved: usize,
    running: usize,
}

/// Agent principals (process agents calling back while they run a request) are exempt from
/// the per-caller running cap: their parent request waits for them, so capping them could
/// make a chain of nested calls wait on itself. The queue cap still applies to them.
fn running_capped(principal: &str) -> bool {
    !principal.starts_with("agent:")
}

/// Jobs of one agent from one caller, oldest first.
type LaneKey = (String, String);

pub(super) struct Sched {
    max_concurrency: usize,
    max_queue: usize,
    max_inflight_per_key: usize,
    max_queued_per_key: usize,
    lanes: HashMap<LaneKey, VecDeque<QueuedJob>>,
    /// The ticket of every non-empty lane's oldest job: dispatch walks it in ticket order and
    /// skips only lanes whose agent or caller is at its limit, so its cost grows with the
    /// number of blocked lanes, not with the number of queued jobs.
    heads: BTreeMap<u64, LaneKey>,
    queued: usize,
    queued_per_agent: HashMap<String, usize>,
    reserved: usize,
    running: usize,
    running_per_agent: HashMap<String, usize>,
    keys: HashMap<String, KeyLoad>,
    next_ticket: u64,
    accepting: bool,
}

impl Sched {
    pub fn new(
        max_concurrency: usize,
        max_queue: usize,
        max_inflight_per_key: usize,
        max_queued_per_key: usize,
    ) -> Self {
        Self {
            max_concurrency,
            max_queue,
            max_inflight_per_key,
            max_queued_per_key,
            lanes: HashMap::new(),
            heads: BTreeMap::new(),
            queued: 0,
            queued_per_agent: HashMap::new(),
            reserved: 0,
            running: 0,
            running_per_agent: HashMap::new(),
            keys: HashMap::new(),
            next_ticket: 0,
            accepting: true,
        }
    }

    fn key(&mut self, principal: &str) -> &mut KeyLoad {
        self.keys.entry(principal.to_string()).or_default()
    }

    /// Drops a caller's entry once it has nothing waiting or running.
    fn tidy_key(&mut self, principal: &str) {
        if self
            .keys
            .get(principal)
            .is_some_and(|k| k.queued == 0 && k.reserved == 0 && k.running == 0)
        {
            self.keys.remove(principal);
        }
    }

    /// Takes a queue slot for a request of `principal` about to be written.
    pub fn reserve(&mut self, principal: &str) -> HubResult<()> {
        if !self.accepting {
            return Err(HubError::new(
                ErrorCode::ShuttingDown,
                "the server is shutting down and accepts no new requests; retry against another instance or after the restart",
            ));
        }
        if self.queued + self.reserved >= self.max_queue {
            return Err(HubError::new(
                ErrorCode::QueueFull,
                format!(
                    "the queue is full ({} requests waiting, MAX_QUEUE_SIZE={}); retry later",
                    self.queued + self.reserved,
                    self.max_queue
                ),
            ));
        }
        let max = self.max_queued_per_key;
        let load = self.key(principal);
        if load.queued + load.reserved >= max {
            let (waiting, running) = (load.queued + load.reserved, load.running);
            return Err(HubError::new(
                ErrorCode::RateLimited,
                format!(
                    "{principal} already has {waiting} requests waiting (and {running} running); \
                     one caller may have at most {max} waiting (A2A_MAX_QUEUED_PER_KEY): \
                     retry when some have started"
                ),
            ));
        }
        load.reserved += 1;
        self.reserved += 1;
        Ok(())
    }

    pub fn unreserve(&mut self, principal: &str) {
        self.reserved = self.reserved.saturating_sub(1);
        let load = self.key(principal);
        load.reserved = load.reserved.saturating_sub(1);
        self.tidy_key(principal);
    }

    pub fn stop_accepting(&mut self) {
        self.accepting = false;
    }

    pub fn queued(&self) -> usize {
        self.queued
    }

    pub fn running(&self) -> usize {
        self.running
    }

    pub fn queues(&self) -> impl Iterator<Item = (&String, usize)> {
        self.queued_per_agent
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(a, n)| (a, *n))
    }

    pub fn running_per_agent(&self) -> impl Iterator<Item = (&String, usize)> {
        self.running_per_agent
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(a, n)| (a, *n))
    }

    pub(super) fn push(
        &mut self,
        record: RequestRecord,
        next_seq: u64,
        reserved: bool,
        traceparent: Option<String>,
    ) {
        let principal = record.principal.clone();
        if reserved {
            self.reserved = self.reserved.saturating_sub(1);
            let load = self.key(&principal);
            load.reserved = load.reserved.saturating_sub(1);
        }
        self.key(&principal).queued += 1;
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        let lane = (record.agent_id.clone(), principal);
        *self
            .queued_per_agent
            .entry(record.agent_id.clone())
            .or_insert(0) += 1;
        let jobs = self.lanes.entry(lane.clone()).or_default();
        if jobs.is_empty() {
            self.heads.insert(ticket, lane);
        }
        jobs.push_back(QueuedJob {
            record,
            next_seq,
            ticket,
            traceparent,
        });
        self.queued += 1;
    }

    /// Bookkeeping for a job that left the queue (started or removed).
    fn left_queue(&mut self, job: &QueuedJob) {
        self.queued -= 1;
        if let Some(n) = self.queued_per_agent.get_mut(&job.record.agent_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.queued_per_agent.remove(&job.record.agent_id);
            }
        }
        let load = self.key(&job.record.principal);
        load.queued = load.queued.saturating_sub(1);
    }

    /// Re-indexes a lane after jobs left it.
    fn refresh_lane(&mut self, lane: &LaneKey, old_head: Option<u64>) {
        if let Some(t) = old_head {
            self.heads.remove(&t);
        }
        match self.lanes.get(lane).and_then(|q| q.front()) {
            Some(front) => {
                self.heads.insert(front.ticket, lane.clone());
            }
            None => {
                self.lanes.remove(lane);
            }
        }
    }

    /// The ticket of the newest queued job so far.
    pub fn ticket(&self) -> u64 {
        self.next_ticket
    }

    /// Free places in the queue.
    pub fn room(&self) -> usize {
        if !self.accepting {
            return 0;
        }
        self.max_queue.saturating_sub(self.queued + self.reserved)
    }

    #[cfg(feature = "redis")]
    pub fn is_queued(&self, id: &str) -> bool {
        self.lanes
            .values()
            .any(|q| q.iter().any(|j| j.record.id == id))
    }

    /// Takes out (and returns the ids of) every queued job that `pred(id, ticket)` selects.
    pub fn drain_queued_where(&mut self, pred: impl Fn(&str, u64) -> bool) -> Vec<String> {
        let mut taken = Vec::new();
        for q in self.lanes.values_mut() {
            let mut kept = VecDeque::with_capacity(q.len());
            for j in q.drain(..) {
                if pred(&j.record.id, j.ticket) {
                    taken.push(j);
                } else {
                    kept.push_back(j);
                }
            }
            *q = kept;
        }
        for j in &taken {
            self.left_queue(j);
            self.tidy_key(&j.record.principal);
        }
        self.rebuild_heads();
        taken.into_iter().map(|j| j.record.id).collect()
    }

    fn rebuild_heads(&mut self) {
        self.lanes.retain(|_, q| !q.is_empty());
        self.heads = self
            .lanes
            .iter()
            .filter_map(|(lane, q)| q.front().map(|f| (f.ticket, lane.clone())))
            .collect();
    }

    /// Queues a request recovered from the store (restart or takeover).
    pub fn push_recovered(&mut self, record: RequestRecord, next_seq: u64) {
        self.push(record, next_seq, false, None);
    }

    pub fn remove_queued(&mut self, id: &str) -> Option<QueuedJob> {
        let (lane, pos, head) = self.lanes.iter().find_map(|(lane, q)| {
            let pos = q.iter().position(|j| j.record.id == id)?;
            Some((lane.clone(), pos, q.front().map(|f| f.ticket)))
        })?;
        let job = self.lanes.get_mut(&lane)?.remove(pos)?;
        self.refresh_lane(&lane, head);
        self.left_queue(&job);
        self.tidy_key(&job.record.principal);
        Some(job)
    }

    /// The oldest queued job whose agent has a free slot and whose caller is under its
    /// running cap, if the global limit allows.
    pub(super) fn pop_runnable(&mut self, limit_of: impl Fn(&str) -> usize) -> Option<QueuedJob> {
        if !self.accepting || self.running >= self.max_concurrency {
            return None;
        }
        let (ticket, lane) = self.heads.iter().find_map(|(ticket, lane)| {
            let (agent, principal) = lane;
            let agent_running = self.running_per_agent.get(agent).copied().unwrap_or(0);
            let key_running = self.keys.get(principal).map_or(0, |k| k.running);
            let free = agent_running < limit_of(agent)
                && (!running_capped(principal) || key_running < self.max_inflight_per_key);
            free.then(|| (*ticket, lane.clone()))
        })?;
        let job = self.lanes.get_mut(&lane)?.pop_front()?;
        self.refresh_lane(&lane, Some(ticket));
        self.left_queue(&job);
        self.running += 1;
        *self
            .running_per_agent
            .entry(job.record.agent_id.clone())
            .or_insert(0) += 1;
        self.key(&job.record.principal).running += 1;
        Some(job)
    }

    pub(super) fn release(&mut self, agent: &str, principal: &str) {
        self.running = self.running.saturating_sub(1);
        if let Some(n) = self.running_per_agent.get_mut(agent) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.running_per_agent.remove(agent);
            }
        }
        let load = self.key(principal);
        load.running = load.running.saturating_sub(1);
        self.tidy_key(principal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RequestState;

    fn record(id: &str, agent: &str, principal: &str) -> RequestRecord {
        RequestRecord {
            id: id.into(),
            agent_id: agent.into(),
            capability: "run".into(),
            input: "{}".into(),
            session_id: None,
            parent_id: None,
            idempotency_key: None,
            principal: principal.into(),
            state: RequestState::Queued,
            created_at: 0,
            started_at: None,
            finished_at: None,
            result: None,
            error: None,
            attempts: 0,
        }
    }

    fn admit(s: &mut Sched, id: &str, agent: &str, principal: &str) -> HubResult<()> {
        s.reserve(principal)?;
        s.push(record(id, agent, principal), 1, true, None);
        Ok(())
    }

    #[test]
    fn a_busy_caller_waits_while_others_run_and_cannot_fill_the_queue() {
        let mut s = Sched::new(10, 100, 1, 2);
        admit(&mut s, "a1", "echo", "key:a").unwrap();
        admit(&mut s, "a2", "echo", "key:a").unwrap();
        admit(&mut s, "b1", "echo", "key:b").unwrap();
        let unlimited = |_: &str| 10;
        assert_eq!(s.pop_runnable(unlimited).unwrap().record.id, "a1");
        // a2 is older than b1, but key:a is at its running cap.
        assert_eq!(s.pop_runnable(unlimited).unwrap().record.id, "b1");
        assert!(s.pop_runnable(unlimited).is_none());
        admit(&mut s, "a3", "echo", "key:a").unwrap();
        let e = admit(&mut s, "a4", "echo", "key:a").unwrap_err();
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert!(e.message.contains("A2A_MAX_QUEUED_PER_KEY"), "{e}");
        admit(&mut s, "b2", "other", "key:b").unwrap();
        s.release("echo", "key:a");
        assert_eq!(s.pop_runnable(unlimited).unwrap().record.id, "a2");
        assert_eq!(s.remove_queued("a3").unwrap().record.id, "a3");
        // Agent callers are not held to the running cap.
        admit(&mut s, "n1", "echo", "agent:x").unwrap();
        admit(&mut s, "n2", "echo", "agent:x").unwrap();
        s.release("echo", "key:b");
        let started: Vec<String> = std::iter::from_fn(|| s.pop_runnable(unlimited))
            .map(|j| j.record.id)
            .collect();
        assert_eq!(started, ["b2", "n1", "n2"]);
        assert_eq!(s.queued(), 0);
        assert_eq!(s.queues().count(), 0);
    }
}
