//! Outbound networking: the process's HTTP client ([`http_client`]), the egress guard that
//! decides where outgoing requests may go ([`egress`]), and calls to A2A peers
//! ([`a2a_peer`]: Agent Cards and JSON-RPC). The server side lives in `server` and `api`.

pub mod a2a_peer;
pub mod egress;
pub mod http_client;
