//! Executors run one invocation of an agent capability.
//!
//! An executor gets a narrow [`ExecContext`] (ids, a cancellation token, a deadline) and an
//! [`OutputSink`] for chunks; it returns the final result or an error. It never touches the
//! store or the bus: the hub's job pump persists and publishes what the sink receives.
//!
//! Cancellation: the hub cancels `ctx.cancel` and then drops the executor's future. An
//! executor that owns external resources (a child process, a remote task) must release them
//! in both cases — on the token for a clean stop, and in a `Drop` guard for the dropped
//! future. The remote kind (`a2a`, `remote_a2a.rs`) streams the peer's output into the sink
//! and forwards cancellation to the peer. Kinds today: `builtin`, `process`, `a2a`.

pub mod builtin;
pub mod process;
pub mod remote_a2a;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::model::{AgentSpec, ExecutorSpec, ProcessLimits};

/// What an executor may know about the invocation it runs.
#[derive(Clone, Debug)]
pub struct ExecContext {
    pub request_id: String,
    pub agent_id: String,
    pub capability: String,
    pub session_id: Option<String>,
    pub parent_id: Option<String>,
    pub attempt: u32,
    pub cancel: CancellationToken,
    /// Where and how the agent's own process may call back into the hub (URL, token).
    pub callback: Option<(String, String)>,
    /// W3C trace context of this execution, for calls the agent makes.
    pub traceparent: Option<String>,
}

/// Where an executor sends its output chunks (JSON values, usually strings).
#[derive(Clone)]
pub struct OutputSink {
    tx: mpsc::Sender<Value>,
}

impl OutputSink {
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<Value>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self { tx }, rx)
    }

    /// Sends one chunk. Waits when the hub is behind (backpressure); returns false once the
    /// request is over and nobody reads chunks any more.
    pub async fn chunk(&self, content: Value) -> bool {
        self.tx.send(content).await.is_ok()
    }
}

/// Why an execution failed. The message is shown to the caller as the request's error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExecError {
    #[error("{0}")]
    Failed(String),
    #[error("timed out after {0} ms")]
    Timeout(u64),
    #[error("canceled")]
    Canceled,
}

#[async_trait]
pub trait Executor: Send + Sync {
    async fn run(
        &self,
        ctx: ExecContext,
        input: Value,
        out: OutputSink,
    ) -> Result<Value, ExecError>;

    /// Checks an input before the request is accepted, beyond the capability's JSON Schema
    /// (bounds the schema cannot say). The message is shown as `invalid_params`.
    fn check_input(&self, _input: &Value) -> Result<(), String> {
        Ok(())
    }
}

/// Settings executors need from the server configuration.
#[derive(Clone, Debug)]
pub struct ExecutorEnv {
    /// Base for relative program paths (the catalog directory).
    pub catalog_dir: PathBuf,
    /// Default working directory of process agents.
    pub work_dir: PathBuf,
    /// Where remote executors (`a2a`) may send requests (`A2A_EGRESS_ALLOWED_NETWORKS`).
    pub egress: Arc<crate::net::egress::EgressPolicy>,
    /// Offer the builtin `echo` helper (`A2A_BUILTIN_ECHO`).
    pub builtin_echo: bool,
    /// Default rlimits of process agents (`A2A_PROCESS_LIMITS`); an agent's own `limits` win.
    pub process_limits: ProcessLimits,
    /// Put each process request in its own cgroup v2 when one can be made
    /// (`A2A_PROCESS_CGROUP`); otherwise its process tree is tracked through /proc.
    pub process_cgroup: bool,
}

/// Why an agent definition cannot run with this configuration (a switched-off builtin), if
/// it cannot. The catalog skips such agents instead of refusing to start.
pub fn unavailable(spec: &AgentSpec, env: &ExecutorEnv) -> Option<String> {
    match &spec.executor {
        ExecutorSpec::Builtin { name } => builtin::unavailable(name, env),
        _ => None,
    }
}

/// Builds the executor of an agent definition.
pub fn build(spec: &AgentSpec, env: &ExecutorEnv) -> Result<Arc<dyn Executor>, String> {
    match &spec.executor {
        ExecutorSpec::Builtin { name } => builtin::build(name, env),
        ExecutorSpec::Process(p) => Ok(Arc::new(process::ProcessExecutor::new(p.clone(), env)?)),
        ExecutorSpec::A2a(a) => Ok(Arc::new(remote_a2a::A2aExecutor::new(
            a.clone(),
            env.egress.clone(),
        )?)),
    }
}
