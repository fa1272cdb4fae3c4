//! a2a-mcp: a production agent hub. See `docs/ARCHITECTURE.md` for a reading order.
//!
//! Modules in one-way dependency order: `model` → `store` → `bus` → `executor` → `hub` →
//! `api` / `server` / `cli`. `protocol` (the A2A vocabulary: versions, methods, states, error
//! codes, 0.3 conversion) is pure data and depends on nothing of ours; `net` (the outgoing HTTP
//! client, the egress guard, calls to A2A peers) depends on `protocol` and `model`, and is used
//! by the `a2a` executor, the hub (card import, push delivery) and the CLI. `redact` (how
//! secrets look in views) depends on `model` only; `files` (private state files) on nothing of
//! ours.

pub mod api;
pub mod backup;
pub mod bus;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod error;
pub mod executor;
pub mod files;
pub mod hub;
pub mod metrics;
pub mod model;
pub mod net;
pub mod policy;
pub mod protocol;
pub mod redact;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
