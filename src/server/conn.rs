//! Connections: the accept loop of a listener, its connection budget and the timeouts of each
//! connection.
//!
//! Budget: each listener has its own (`A2A_MAX_CONNECTIONS`), so a flood on the API port
//! cannot starve the ops port's probes and scrapes. At the cap the loop stops accepting and
//! further clients wait in the kernel backlog. One client address may hold at most
//! `A2A_MAX_CONNECTIONS_PER_IP` connections of a listener; a further one is closed at once
//! (every address counts on its own, loopback ones too). A connection's slot lives in its
//! socket wrapper, so a connection upgraded to a WebSocket keeps holding it.
//!
//! Timeouts, all counted by a watchdog per connection:
//! - the first complete request head must arrive within `A2A_HEADER_TIMEOUT` of accept —
//!   TLS handshake and HTTP/1-vs-2 detection included — or the connection is dropped, so an
//!   idle socket frees its slot within that time;
//! - later HTTP/1.1 request heads have the same time (hyper's header read timeout, which
//!   also ends a kept-alive connection waiting that long for its next request);
//! - a connection with no request in flight for `A2A_IDLE_TIMEOUT` is shut down gracefully
//!   (HTTP/2: GOAWAY); a request is in flight until its response body has been sent, so
//!   SSE and MCP streams keep their connection;
//! - HTTP/2 peers are pinged every `A2A_KEEPALIVE_INTERVAL` and dropped when they do not
//!   answer within the same time.
//!
//! Stopping the listener stops accepting at once and asks every connection to finish
//! gracefully; the caller bounds the wait.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{BoxError, Resp, Shared};
use crate::metrics;

/// The open connections of one listener: the global budget and the count per address.
struct Budget {
    listener: &'static str,
    slots: Arc<Semaphore>,
    per_ip: parking_lot::Mutex<HashMap<IpAddr, usize>>,
    per_ip_max: usize,
}

/// One connection's share of the budget, released when the socket is dropped.
struct Slot {
    budget: Arc<Budget>,
    ip: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Budget {
    /// Counts a new connection from `ip`, or `None` when that address is at its cap.
    fn admit(self: &Arc<Self>, ip: IpAddr, permit: OwnedSemaphorePermit) -> Option<Slot> {
        let ip = ip.to_canonical();
        {
            let mut m = self.per_ip.lock();
            let n = m.entry(ip).or_insert(0);
            if *n >= self.per_ip_max {
                return None;
            }
            *n += 1;
        }
        metrics::CONNECTIONS_OPEN
            .with_label_values(&[self.listener])
            .inc();
        Some(Slot {
            budget: self.clone(),
            ip,
            _permit: permit,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.budget.per_ip.lock();
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
        metrics::CONNECTIONS_OPEN
            .with_label_values(&[self.budget.listener])
            .dec();
    }
}

/// A socket that carries its budget slot (through TLS and WebSocket upgrades).
struct Counted<S> {
    inner: S,
    _slot: Slot,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// What the watchdog of a connection knows about its requests.
#[derive(Clone, Copy)]
struct Activity {
    /// A complete request head has arrived (the service was called).
    started: bool,
    /// Requests whose response has not been sent completely.
    in_flight: usize,
    /// Since when nothing is in flight.
    idle_since: Instant,
}

/// Marks one request in flight until dropped (with its response body).
struct InFlight(watch::Sender<Activity>);

impl InFlight {
    fn begin(tx: &watch::Sender<Activity>) -> Self {
        tx.send_modify(|a| {
            a.started = true;
            a.in_flight += 1;
        });
        InFlight(tx.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|a| {
            a.in_flight = a.in_flight.saturating_sub(1);
            if a.in_flight == 0 {
                a.idle_since = Instant::now();
            }
        });
    }
}

/// A response body that keeps its request in flight until it is sent (or dropped).
struct TrackedBody {
    inner: http_body_util::combinators::BoxBody<Bytes, BoxError>,
    _in_flight: InFlight,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Accepts connections until `stop`, then waits for the open ones to finish.
pub(super) async fn accept_loop(
    listener: TcpListener,
    stop: CancellationToken,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
) {
    let cfg = shared.ctx.config.clone();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(cfg.keepalive_interval)
        .keep_alive_timeout(cfg.keepalive_interval);
    let budget = Arc::new(Budget {
        listener: shared.kind.name(),
        slots: Arc::new(Semaphore::new(cfg.max_connections)),
        per_ip: parking_lot::Mutex::new(HashMap::new()),
        per_ip_max: cfg.max_connections_per_ip,
    });
    let connections = TaskTracker::new();
    loop {
        // At the connection cap, stop accepting: further clients wait in the kernel backlog.
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            p = budget.slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let accepted = Instant::now();
        let Some(slot) = budget.admit(peer.ip(), permit) else {
            metrics::CONNECTIONS_CLOSED
                .with_label_values(&[budget.listener, "per_ip_cap"])
                .inc();
            tracing::debug!(%peer, "connection refused: this address holds A2A_MAX_CONNECTIONS_PER_IP connections");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = Counted {
            inner: stream,
            _slot: slot,
        };
        let conn = Conn {
            shared: shared.clone(),
            builder: builder.clone(),
            peer,
            head_deadline: accepted + cfg.header_timeout,
            idle_timeout: cfg.idle_timeout,
            stop: stop.clone(),
        };
        match &tls {
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                connections.spawn(async move {
                    let handshake =
                        tokio::time::timeout_at(conn.head_deadline, acceptor.accept(io)).await;
                    match handshake {
                        Ok(Ok(tls_stream)) => conn.serve(tls_stream).await,
                        Ok(Err(e)) => {
                            conn.closed("tls_handshake");
                            tracing::debug!(%peer, "TLS handshake failed: {e}");
                        }
                        Err(_) => {
                            conn.closed("head_timeout");
                            tracing::debug!(%peer, "TLS handshake timed out");
                        }
                    }
                });
            }
            None => {
                connections.spawn(conn.serve(io));
            }
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// One accepted connection.
struct Conn {
    shared: Arc<Shared>,
    builder: Builder<TokioExecutor>,
    peer: SocketAddr,
    head_deadline: Instant,
    idle_timeout: Duration,
    stop: CancellationToken,
}

impl Conn {
    fn closed(&self, reason: &'static str) {
        metrics::CONNECTIONS_CLOSED
            .with_label_values(&[self.shared.kind.name(), reason])
            .inc();
    }

    /// Serves HTTP on `io` under the watchdog.
    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (activity, mut watch_rx) = watch::channel(Activity {
            started: false,
            in_flight: 0,
            idle_since: Instant::now(),
        });
        let shared = self.shared.clone();
        let peer = self.peer;
        let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let shared = shared.clone();
            let in_flight = InFlight::begin(&activity);
            async move {
                let resp: Resp = super::handle(&shared, req, peer).await;
                Ok::<_, Infallible>(resp.map(|inner| TrackedBody {
                    inner,
                    _in_flight: in_flight,
                }))
            }
        });
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), svc);
        tokio::pin!(conn);
        let mut closing = false;
        let mut watching = true;
        loop {
            let state = *watch_rx.borrow_and_update();
            // When the watchdog acts next: the head deadline until a request has started,
            // the idle deadline while nothing is in flight, never while something is.
            let wake = if !state.started {
                Some(self.head_deadline)
            } else if state.in_flight == 0 {
                Some(state.idle_since + self.idle_timeout)
            } else {
                None
            };
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                    return;
                }
                changed = watch_rx.changed(), if watching => {
                    // The senders live in the service and its responses; once they are all
                    // gone nothing changes any more.
                    watching = changed.is_ok();
                }
                _ = sleep_until_some(wake), if !closing => {
                    if !state.started {
                        self.closed("head_timeout");
                        tracing::debug!(%peer, "no complete request within A2A_HEADER_TIMEOUT; closing");
                        return;
                    }
                    self.closed("idle");
                    tracing::debug!(%peer, "idle for A2A_IDLE_TIMEOUT; closing");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                _ = self.stop.cancelled(), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
