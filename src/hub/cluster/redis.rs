//! The Redis link of a multi-replica deployment: stream events and control messages between
//! replicas (pub/sub), and rate-limit counters shared by all replicas (GCRA in a Lua script).
//!
//! Redis is an accelerator, never the source of truth. Pub/sub delivers at most once: a
//! message lost while a replica reconnects only delays delivery, because stream followers
//! re-read the stored event log whenever they see a gap or have waited `cluster_poll`, and
//! owners renew their leases (and see cancel requests) from the store. While Redis is away,
//! rate limits fall back to each replica's own counters.
//!
//! Channels: `<prefix>:events` (every persisted stream event, JSON) and `<prefix>:control`
//! (`agents` changed, `cancel` requested). Each message names its origin replica, which
//! ignores its own messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics;
use crate::model::Event;

/// Most messages sent in one pipeline.
const PUBLISH_BATCH: usize = 256;
const TIMEOUT: Duration = Duration::from_secs(2);

/// A message between replicas.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "camelCase")]
pub enum Message {
    /// A stream event that is already persisted.
    Event { e: Event },
    /// The agent registry changed: reload it from the store.
    Agents,
    /// API keys were created or revoked: reload them from the store.
    Keys,
    /// Someone asked to cancel this request: its owner should renew (and see it) now.
    Cancel { id: String },
    /// A replica shut down and released its leftover work: take it over now.
    Released,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    /// Origin replica.
    o: String,
    #[serde(flatten)]
    m: Message,
}

/// GCRA: allow a call if the theoretical arrival time minus the burst tolerance is not in
/// the future (server time, so replicas' clocks do not matter). Returns 0 when allowed, else
/// the milliseconds to wait.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - tolerance - now
if wait > 0 then return math.ceil(wait) end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now) + 1000)
return 0
"#;

pub struct RedisLink {
    client: redis::Client,
    prefix: String,
    origin: String,
    /// The command connection (publish, scripts); `None` until connected.
    conn: tokio::sync::Mutex<Option<ConnectionManager>>,
    out: mpsc::UnboundedSender<Envelope>,
    out_rx: parking_lot::Mutex<Option<mpsc::UnboundedReceiver<Envelope>>>,
    script: redis::Script,
    connected: AtomicBool,
}

impl RedisLink {
    /// Prepares the link (the URL is checked now; connections are made by [`start`]).
    pub fn new(url: &str, prefix: &str, origin: &str) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(url)
            // The URL may hold a password: describe, do not echo.
            .map_err(|e| format!("the Redis URL is not valid ({:?})", e.kind()))?;
        let (out, out_rx) = mpsc::unbounded_channel();
        Ok(Arc::new(Self {
            client,
            prefix: prefix.to_string(),
            origin: origin.to_string(),
            conn: tokio::sync::Mutex::new(None),
            out,
            out_rx: parking_lot::Mutex::new(Some(out_rx)),
            script: redis::Script::new(GCRA),
            connected: AtomicBool::new(false),
        }))
    }

    fn channel(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// True while the subscriber connection is up.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    async fn command_conn(&self) -> Result<ConnectionManager, String> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(2);
        let c = tokio::time::timeout(
            TIMEOUT * 2,
            self.client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| "connecting to Redis timed out".to_string())?
        .map_err(|e| format!("cannot connect to Redis: {e}"))?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Queues a message for the other replicas (never blocks; sent in order, in batches).
    pub fn send(&self, m: Message) {
        let _ = self.out.send(Envelope {
            o: self.origin.clone(),
            m,
        });
    }

    /// Publishes one message now and waits for Redis to take it (bounded); for the last word
    /// of a replica that is shutting down.
    pub async fn send_now(&self, m: Message) -> Result<(), String> {
        let text = serde_json::to_string(&Envelope {
            o: self.origin.clone(),
            m,
        })
        .map_err(|e| e.to_string())?;
        let mut c = self.command_conn().await?;
        tokio::time::timeout(
            TIMEOUT,
            redis::cmd("PUBLISH")
                .arg(self.channel("control"))
                .arg(text)
                .query_async::<()>(&mut c),
        )
        .await
        .map_err(|_| "Redis did not answer in time".to_string())?
        .map_err(|e| e.to_string())
    }

    /// Starts the publisher and the (reconnecting) subscriber; `on` gets every message of
    /// another replica.
    pub fn start(
        self: &Arc<Self>,
        stop: CancellationToken,
        on: impl Fn(Message) + Send + Sync + 'static,
    ) {
        if let Some(rx) = self.out_rx.lock().take() {
            tokio::spawn(self.clone().publisher(rx, stop.clone()));
        }
        tokio::spawn(self.clone().subscriber(stop, Arc::new(on)));
    }

    async fn publisher(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<Envelope>,
        stop: CancellationToken,
    ) {
        let events = self.channel("events");
        let control = self.channel("control");
        loop {
            // Queued messages first: what was sent before the stop still goes out.
            let first = tokio::select! {
                biased;
                m = rx.recv() => match m { Some(m) => m, None => return },
                _ = stop.cancelled() => return,
            };
            let mut batch = vec![first];
            while batch.len() < PUBLISH_BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let mut pipe = redis::pipe();
            for m in &batch {
                let channel = match m.m {
                    Message::Event { .. } => &events,
                    _ => &control,
                };
                match serde_json::to_string(m) {
                    Ok(text) => {
                        pipe.publish(channel, text).ignore();
                    }
                    Err(e) => tracing::error!("cannot encode a relay message: {e}"),
                }
            }
            let sent = match self.command_conn().await {
                Ok(mut c) => pipe
                    .query_async::<()>(&mut c)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            match sent {
                Ok(()) => metrics::CLUSTER_RELAYED
                    .with_label_values(&["sent"])
                    .inc_by(batch.len() as u64),
                Err(e) => {
                    // Followers fall back to the store; nothing is lost, only late.
                    metrics::CLUSTER_RELAYED
                        .with_label_values(&["send_failed"])
                        .inc_by(batch.len() as u64);
                    tracing::warn!("cannot relay {} message(s) through Redis: {e}", batch.len());
                }
            }
        }
    }

    async fn subscriber(
        self: Arc<Self>,
        stop: CancellationToken,
        on: Arc<dyn Fn(Message) + Send + Sync>,
    ) {
        let channels = [self.channel("events"), self.channel("control")];
        let mut backoff = Duration::from_millis(200);
        loop {
            let session = async {
                let mut ps = tokio::time::timeout(TIMEOUT * 2, self.client.get_async_pubsub())
                    .await
                    .map_err(|_| "connecting to Redis timed out".to_string())?
                    .map_err(|e| format!("cannot connect to Redis: {e}"))?;
                ps.subscribe(&channels)
                    .await
                    .map_err(|e| format!("cannot subscribe: {e}"))?;
                tracing::info!(channels = ?channels, "relaying stream events through Redis");
                self.connected.store(true, Ordering::Relaxed);
                metrics::CLUSTER_REDIS_UP.set(1);
                let mut stream = ps.into_on_message();
                while let Some(msg) = stream.next().await {
                    let Ok(payload) = msg.get_payload::<String>() else {
                        continue;
                    };
                    match serde_json::from_str::<Envelope>(&payload) {
                        Ok(env) if env.o != self.origin => {
                            metrics::CLUSTER_RELAYED
                                .with_label_values(&["received"])
                                .inc();
                            on(env.m);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!("ignoring a relay message that does not parse: {e}")
                        }
                    }
                }
                Err::<(), String>("the Redis subscription ended".into())
            };
            let r = tokio::select! {
                _ = stop.cancelled() => return,
                r = session => r,
            };
            self.connected.store(false, Ordering::Relaxed);
            metrics::CLUSTER_REDIS_UP.set(0);
            if let Err(e) = r {
                tracing::warn!(
                    "Redis relay down ({e}); retrying in {backoff:?} (followers read the store meanwhile)"
                );
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
            if self.is_connected() {
                backoff = Duration::from_millis(200);
            }
        }
    }

    /// One GCRA step for `key` (`interval` between calls, `burst` calls at once): `Ok(None)`
    /// if allowed, `Ok(Some(wait))` if not, `Err` when Redis cannot answer.
    pub async fn rate_check(
        &self,
        key: &str,
        interval: Duration,
        burst: u32,
    ) -> Result<Option<Duration>, String> {
        let mut c = self.command_conn().await?;
        let interval_ms = (interval.as_secs_f64() * 1000.0).max(0.001);
        let tolerance_ms = interval_ms * f64::from(burst.max(1));
        let wait: i64 = tokio::time::timeout(
            TIMEOUT,
            self.script
                .key(format!("{}:rl:{key}", self.prefix))
                .arg(interval_ms)
                .arg(tolerance_ms)
                .invoke_async(&mut c),
        )
        .await
        .map_err(|_| "Redis did not answer in time".to_string())?
        .map_err(|e| e.to_string())?;
        Ok((wait > 0).then(|| Duration::from_millis(wait.unsigned_abs())))
    }
}
