//! a2a-mcp: a production agent hub. See `docs/ARCHITECTURE.md` for a reading order.
//!
//! Modules in one-way dependency order: `model` → `store` → `bus` → `executor` → `hub` →
//! `api` / `server` / `cli`. `a2a` (A2A protocol shapes and HTTP client) depends on `model` only
//! and is used by the `a2a` executor, the hub (card import, push delivery) and `api::a2a`.
//! `redact` (how secrets look in views) depends on `model` only; `files` (private state files)
//! and `egress` (where outgoing requests may go) on nothing of ours.

pub mod a2a;
pub mod api;
pub mod backup;
pub mod bus;
pub mod catalog;
pub mod cli;
#[cfg(feature = "redis")]
pub mod cluster;
pub mod config;
pub mod egress;
pub mod error;
pub mod executor;
pub mod files;
pub mod hub;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod redact;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
