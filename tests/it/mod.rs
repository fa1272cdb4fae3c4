pub mod bad_input;
pub mod binary;
pub mod harness;
pub mod hub_core;
pub mod mcp;
pub mod process_agent;
pub mod store_conformance;
pub mod streams;
