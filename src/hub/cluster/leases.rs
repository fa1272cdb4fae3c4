//! Leases and ownership across replicas, as `Hub` methods: the heartbeat worker (renewals,
//! lost work, takeovers), work stealing between replicas, claiming and releasing this
//! replica's id, leaderships for periodic duties, and the relay of events and control
//! messages (see the module above for the whole picture).

use std::collections::HashSet;
#[cfg(feature = "redis")]
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::Hub;
use super::{ClusterState, TAKEOVER_BATCH, identity_lease, ms};
use crate::error::{ErrorCode, HubError, HubResult};
use crate::metrics;
use crate::model::{InterruptPolicy, RequestRecord, RequestState, now_ms};
use crate::store::Op;

impl Hub {
    pub(crate) fn cluster(&self) -> Option<&ClusterState> {
        self.inner.cluster.as_ref()
    }

    /// This replica's id in a multi-replica deployment.
    pub fn replica_id(&self) -> Option<&str> {
        self.cluster().map(|c| c.id.as_str())
    }

    /// Whether this replica holds (or now takes) the leadership `name` for `hold`. Always true
    /// on an embedded store. Periodic duties ask at each run with `hold` a little shorter than
    /// their interval, so about one replica per interval does the work, and another one takes
    /// over when that replica is gone.
    pub(crate) async fn lead(&self, name: &str, hold: Duration) -> bool {
        let Some(c) = self.cluster() else {
            return true;
        };
        let now = now_ms();
        match self
            .inner
            .store
            .try_lead(name, &c.id, now + ms(hold.max(Duration::from_secs(1))), now)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(leadership = name, "cannot check the leader lease: {e}");
                false
            }
        }
    }

    /// Takes this replica's id for this process, before any of its leases are touched. Two
    /// processes with one id would each renew, recover and run the other's work, so an id
    /// another live process holds (renewed within the lease time) is refused. A crashed
    /// predecessor's hold runs out within one lease time, which is how long this waits.
    pub(in crate::hub) async fn claim_identity(&self) -> HubResult<()> {
        let Some(c) = self.cluster() else {
            return Ok(());
        };
        let name = identity_lease(&c.id);
        let deadline = Instant::now() + c.ttl + Duration::from_millis(500);
        let mut waiting = false;
        loop {
            let now = now_ms();
            if self
                .inner
                .store
                .try_lead(&name, &c.instance, now + ms(c.ttl), now)
                .await?
            {
                if waiting {
                    tracing::info!(replica = %c.id, "the replica id is free again");
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(HubError::new(
                    ErrorCode::InvalidParams,
                    format!(
                        "replica id {:?} is in use by another running a2a-mcp on this database (it renewed its hold within the last {:?}); give every replica its own A2A_REPLICA_ID (or POD_NAME), or stop the other process",
                        c.id, c.ttl
                    ),
                ));
            }
            if !waiting {
                tracing::warn!(replica = %c.id, "the replica id is held by another process; waiting up to {:?} for the hold of a stopped one to run out", c.ttl);
                waiting = true;
            }
            tokio::time::sleep((c.ttl / 5).min(Duration::from_secs(1))).await;
        }
    }

    /// Keeps this process's hold on its replica id (each heartbeat). Losing it means another
    /// process took the id while this one did not renew (paused longer than the lease time).
    async fn renew_identity(&self, c: &ClusterState) {
        let now = now_ms();
        match self
            .inner
            .store
            .try_lead(&identity_lease(&c.id), &c.instance, now + ms(c.ttl), now)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::error!(
                replica = %c.id,
                "another process now holds this replica id (this one did not renew it within the lease time); two processes share the id: stop one of them"
            ),
            Err(e) => tracing::warn!("cannot renew the replica id: {e}"),
        }
    }

    /// Shutdown: hands leftover work to the other replicas (leases expire now, and Redis wakes
    /// them).
    pub(in crate::hub) async fn release_work(&self) {
        let Some(c) = self.cluster() else { return };
        match self.inner.store.release_leases(&c.id).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(
                    requests = n,
                    "released unfinished work to the other replicas"
                );
                #[cfg(feature = "redis")]
                if let Some(r) = &c.redis
                    && let Err(e) = r.send_now(super::redis::Message::Released).await
                {
                    tracing::warn!(
                        "cannot tell the other replicas through Redis ({e}); they take the work at their next heartbeat"
                    );
                }
            }
            Err(e) => tracing::warn!(
                "cannot release leases ({e}); other replicas take the work over when they expire"
            ),
        }
        // The id is free for the next process at once (a restart does not wait for it).
        let _ = self
            .inner
            .store
            .try_lead(&identity_lease(&c.id), &c.instance, 0, now_ms())
            .await;
    }

    /// Tells the other replicas that the agent registry changed.
    pub(crate) fn announce_agents_changed(&self) {
        #[cfg(feature = "redis")]
        if let Some(r) = self.cluster().and_then(|c| c.redis.as_ref()) {
            r.send(super::redis::Message::Agents);
        }
    }

    /// Tells the other replicas that API keys changed (a revoked key stops working there at
    /// once, not at their next key refresh).
    pub(crate) fn announce_keys_changed(&self) {
        #[cfg(feature = "redis")]
        if let Some(r) = self.cluster().and_then(|c| c.redis.as_ref()) {
            r.send(super::redis::Message::Keys);
        }
    }

    /// Relays a persisted event to the other replicas.
    pub(crate) fn relay(&self, _ev: &crate::model::Event) {
        #[cfg(feature = "redis")]
        if let Some(r) = self.cluster().and_then(|c| c.redis.as_ref()) {
            r.send(super::redis::Message::Event { e: _ev.clone() });
        }
    }

    /// Starts the Redis link (if configured) and the heartbeat worker.
    pub(in crate::hub) fn spawn_cluster_workers(&self) {
        let Some(c) = self.cluster() else { return };
        #[cfg(feature = "redis")]
        if let Some(r) = &c.redis {
            let hub = self.clone();
            r.start(self.inner.cluster_stop.clone(), move |m| hub.on_relay(m));
        }
        let hub = self.clone();
        let renew = (c.ttl / 3).max(Duration::from_millis(100));
        let sync_every = c.poll * 5;
        self.worker_update("cluster-heartbeat", |_| {});
        // Not in the job tracker: it runs until the jobs have drained at shutdown.
        // Between heartbeats, every poll interval, an idle replica looks for work waiting on
        // busy ones.
        let tick = renew.min(c.poll);
        tokio::spawn(async move {
            let mut last_sync = Instant::now();
            let mut last_beat = Instant::now();
            loop {
                let Some(c) = hub.cluster() else { return };
                let mut beat = false;
                tokio::select! {
                    _ = hub.inner.cluster_stop.cancelled() => break,
                    _ = tokio::time::sleep(tick) => {}
                    _ = c.wake.notified() => beat = true,
                    _ = c.agents_changed.notified() => {
                        last_sync = Instant::now() - sync_every;
                        beat = true;
                    }
                }
                if !beat && last_beat.elapsed() < renew {
                    if let Err(e) = hub.steal().await {
                        tracing::warn!("cannot look for waiting work: {}", e.message);
                    }
                    continue;
                }
                last_beat = Instant::now();
                let r = hub.heartbeat().await;
                if last_sync.elapsed() >= sync_every {
                    last_sync = Instant::now();
                    if let Err(e) = hub.sync_registry().await {
                        tracing::warn!("cannot reload the agent registry: {}", e.message);
                    }
                }
                hub.worker_update("cluster-heartbeat", |w| {
                    w.runs += 1;
                    w.last_run = Some(crate::model::rfc3339(now_ms()));
                    if let Err(e) = &r {
                        w.errors += 1;
                        w.last_error = Some(e.message.clone());
                    }
                });
            }
            hub.worker_update("cluster-heartbeat", |w| w.state = "stopped");
        });
    }

    #[cfg(feature = "redis")]
    fn on_relay(&self, m: super::redis::Message) {
        use super::redis::Message;
        match m {
            // Already persisted by its owner: deliver to local followers only.
            Message::Event { e } => self.inner.bus.publish(Arc::new(e)),
            Message::Agents => {
                if let Some(c) = self.cluster() {
                    c.agents_changed.notify_one();
                }
            }
            Message::Keys => {
                let hub = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = hub.refresh_keys().await {
                        tracing::warn!("cannot reload the API keys: {}", e.message);
                    }
                });
            }
            Message::Released => {
                if let Some(c) = self.cluster() {
                    c.wake.notify_one();
                }
            }
            Message::Cancel { id } => {
                let ours = self.inner.jobs.lock().contains_key(&id)
                    || self.inner.sched.lock().is_queued(&id);
                if ours && let Some(c) = self.cluster() {
                    c.wake.notify_one();
                }
            }
        }
    }

    /// One heartbeat: renew, honour cancel requests, drop lost work, take over orphans.
    async fn heartbeat(&self) -> HubResult<()> {
        let Some(c) = self.cluster() else {
            return Ok(());
        };
        self.renew_identity(c).await;
        // Work enqueued after this point may not be visible to the renewal below.
        let horizon = self.inner.sched.lock().ticket();
        let now = now_ms();
        let owned = self
            .inner
            .store
            .renew_leases(&c.id, now + ms(c.ttl))
            .await?;
        metrics::CLUSTER_LEASES.set(owned.len() as i64);
        let owned_ids: HashSet<&str> = owned.iter().map(|(id, _)| id.as_str()).collect();
        for (id, reason) in &owned {
            let Some(reason) = reason else { continue };
            let running = self.inner.jobs.lock().get(id).cloned();
            match running {
                // Already asked: the pump is stopping it.
                Some(j) if j.cancel_requested() => {}
                Some(j) => j.request_cancel(reason.clone()),
                None => {
                    if let Some(Err(e)) = self.cancel_local(id, reason.clone()).await {
                        tracing::warn!(request_id = %id, "cannot cancel as asked by another replica: {}", e.message);
                    }
                }
            }
        }
        self.drop_lost(horizon, &owned_ids);
        self.take_over().await
    }

    /// Local work whose lease is gone (another replica owns it now) stops here, without
    /// writing anything: the new owner's view wins.
    fn drop_lost(&self, horizon: u64, owned: &HashSet<&str>) {
        let lost_queued = self
            .inner
            .sched
            .lock()
            .drain_queued_where(|id, ticket| ticket <= horizon && !owned.contains(id));
        for id in lost_queued {
            tracing::warn!(request_id = %id, "lease lost while queued (another replica took the request over); dropping it here");
        }
        let jobs: Vec<_> = self
            .inner
            .jobs
            .lock()
            .iter()
            .filter(|(id, j)| j.ticket <= horizon && !owned.contains(id.as_str()))
            .map(|(id, j)| (id.clone(), j.clone()))
            .collect();
        for (id, job) in jobs {
            tracing::warn!(request_id = %id, "lease lost while running (another replica took the request over); stopping it here");
            job.abandon();
        }
    }

    /// Takes over requests whose replica stopped renewing its leases.
    async fn take_over(&self) -> HubResult<()> {
        let Some(c) = self.cluster() else {
            return Ok(());
        };
        let room = self.inner.sched.lock().room();
        if room == 0 {
            return Ok(());
        }
        let now = now_ms();
        let claimed = self
            .inner
            .store
            .claim_expired(&c.id, false, now + ms(c.ttl), now, room.min(TAKEOVER_BATCH))
            .await?;
        if claimed.is_empty() {
            return Ok(());
        }
        tracing::info!(
            count = claimed.len(),
            "taking over requests whose replica stopped renewing its leases"
        );
        let (requeued, failed) = self
            .adopt(
                claimed,
                "interrupted: the replica running it stopped renewing its lease",
            )
            .await?;
        metrics::CLUSTER_TAKEOVERS
            .with_label_values(&["requeued"])
            .inc_by(requeued as u64);
        metrics::CLUSTER_TAKEOVERS
            .with_label_values(&["failed"])
            .inc_by(failed as u64);
        self.dispatch();
        Ok(())
    }

    /// Whether a request is leased to another replica (several replicas only).
    pub(in crate::hub) async fn leased_elsewhere(&self, id: &str) -> bool {
        let Some(c) = self.cluster() else {
            return false;
        };
        matches!(self.inner.store.lease_of(id).await, Ok(Some((owner, _))) if owner != c.id)
    }

    /// An idle replica (nothing queued, a free slot) takes queued requests that have waited
    /// longer than one poll interval on other replicas, as many as it has free slots.
    async fn steal(&self) -> HubResult<()> {
        let Some(c) = self.cluster() else {
            return Ok(());
        };
        let free = {
            let sched = self.inner.sched.lock();
            if sched.queued() > 0 {
                return Ok(());
            }
            self.inner
                .cfg
                .max_concurrency
                .saturating_sub(sched.running())
                .min(sched.room())
        };
        if free == 0 {
            return Ok(());
        }
        // Only work for agents this replica knows (one deployed elsewhere a moment ago may
        // not have reached this registry yet).
        let agents: Vec<String> = self
            .inner
            .registry
            .all()
            .iter()
            .map(|a| a.spec.id.clone())
            .collect();
        let now = now_ms();
        let stolen = self
            .inner
            .store
            .steal_queued(
                &c.id,
                &agents,
                now + ms(c.ttl),
                now - ms(c.poll),
                free.min(TAKEOVER_BATCH),
            )
            .await?;
        if stolen.is_empty() {
            return Ok(());
        }
        tracing::info!(
            count = stolen.len(),
            "taking queued requests from busier replicas"
        );
        let (requeued, _) = self.adopt(stolen, "").await?;
        metrics::CLUSTER_TAKEOVERS
            .with_label_values(&["stolen"])
            .inc_by(requeued as u64);
        self.dispatch();
        Ok(())
    }

    /// Requests now owned by this replica that were left unfinished elsewhere (or before a
    /// restart): queued ones run again; running ones follow the interrupt policy (`fail` ends
    /// them with the error `why`). Returns (requeued, failed).
    pub(in crate::hub) async fn adopt(
        &self,
        records: Vec<RequestRecord>,
        why: &str,
    ) -> HubResult<(usize, usize)> {
        let (mut requeued, mut failed) = (0usize, 0usize);
        for mut rec in records {
            let next_seq = self.inner.store.last_seq(&rec.id).await? + 1;
            match rec.state {
                RequestState::Queued => {
                    // (A claim already leased it to this replica.)
                    self.inner.sched.lock().push_recovered(rec, next_seq);
                    requeued += 1;
                }
                RequestState::Running => {
                    let policy = self
                        .inner
                        .registry
                        .get(&rec.agent_id)
                        .map(|a| a.spec.interrupt)
                        .unwrap_or_default();
                    match policy {
                        InterruptPolicy::Retry => {
                            rec.state = RequestState::Queued;
                            self.inner
                                .store
                                .write(vec![Op::PutRequest(rec.clone())])
                                .await?;
                            self.inner.sched.lock().push_recovered(rec, next_seq);
                            requeued += 1;
                        }
                        InterruptPolicy::Fail => {
                            self.finish_unstarted(
                                rec,
                                next_seq,
                                RequestState::Error,
                                why.to_string(),
                            )
                            .await?;
                            failed += 1;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok((requeued, failed))
    }

    /// Cluster part of `cancel`: the request is active but not ours. Take it over if its
    /// owner is gone; otherwise ask the owner and wait for the end.
    pub(in crate::hub) async fn cancel_remote(
        &self,
        rec: RequestRecord,
        reason: String,
    ) -> HubResult<RequestRecord> {
        let Some(c) = self.cluster() else {
            return self.load_request(&rec.id).await;
        };
        let now = now_ms();
        if let Some(orphan) = self
            .inner
            .store
            .claim_request(&rec.id, &c.id, now + ms(c.ttl), now)
            .await?
        {
            let next_seq = self.inner.store.last_seq(&orphan.id).await? + 1;
            return self
                .finish_unstarted(orphan, next_seq, RequestState::Canceled, reason)
                .await;
        }
        if !self.inner.store.request_cancel(&rec.id, &reason).await? {
            // It ended meanwhile.
            return self.load_request(&rec.id).await;
        }
        #[cfg(feature = "redis")]
        if let Some(r) = &c.redis {
            r.send(super::redis::Message::Cancel { id: rec.id.clone() });
        }
        // The owner sees it at its next renewal (at once with Redis); wait for the end.
        let deadline = Instant::now() + c.ttl + Duration::from_secs(5);
        let mut delay = Duration::from_millis(20);
        loop {
            let now = self.load_request(&rec.id).await?;
            if now.state.is_terminal() || Instant::now() >= deadline {
                return Ok(now);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(c.poll.min(Duration::from_millis(500)));
        }
    }

    /// Brings the in-memory registry in line with the store (another replica deployed,
    /// changed or removed agents).
    pub(in crate::hub) async fn sync_registry(&self) -> HubResult<()> {
        let _guard = self.inner.registry_lock.lock().await;
        let stored = self.inner.store.list_agents().await?;
        let mut seen = HashSet::new();
        let mut changed = false;
        for rec in stored {
            let id = rec.spec.id.clone();
            if rec.removed {
                if self.inner.registry.remove(&id).is_some() {
                    changed = true;
                }
                continue;
            }
            seen.insert(id.clone());
            let current = self.inner.registry.get(&id);
            if current.is_some_and(|a| a.spec == rec.spec && a.source == rec.source) {
                continue;
            }
            match crate::hub::registry::AgentEntry::build(
                rec.spec,
                rec.source,
                &self.inner.cfg.executor_env,
            ) {
                Ok(entry) => {
                    self.inner.registry.insert(entry);
                    changed = true;
                }
                Err(e) => {
                    tracing::error!(agent = %id, "agent changed by another replica does not build here: {}", e.message);
                }
            }
        }
        for a in self.inner.registry.all() {
            if !seen.contains(&a.spec.id) {
                self.inner.registry.remove(&a.spec.id);
                changed = true;
            }
        }
        if changed {
            tracing::info!("agent registry reloaded (changed by another replica)");
            self.refresh_agent_metrics();
            self.dispatch();
        }
        Ok(())
    }
}
