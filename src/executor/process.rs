//! `process` agents: a local program per invocation, in its own process group.
//!
//! Protocol (DESIGN.md §4): the request is written to stdin as one JSON line
//! (`{"requestId","agentId","capability","sessionId","parentId","attempt","input"}`) and stdin
//! is closed. The program writes NDJSON events to stdout:
//! `{"type":"chunk","content":…}`, `{"type":"final","result":…}`, `{"type":"error","message":…}`.
//! A stdout line that is not a JSON object with a known `type` is streamed as a text chunk.
//! stderr goes to the server log (target `agent`), line by line.
//!
//! Limits: wall-clock timeout, a cap on stdout bytes, a working directory, and an environment
//! that contains only `PATH`, the allow-listed variables, the agent's own `env` table and
//! `A2A_REQUEST_ID`/`A2A_AGENT_ID`/`A2A_CAPABILITY`. Cancel, timeout and output overflow stop
//! the whole process group: SIGTERM, then SIGKILL after a short grace; a dropped future kills
//! the group at once.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use super::{ExecContext, ExecError, Executor, ExecutorEnv, OutputSink};
use crate::model::{ProcessLimits, ProcessSpec};

const DEFAULT_TIMEOUT_MS: u64 = 300_000;
const DEFAULT_MAX_OUTPUT: u64 = 16 * 1024 * 1024;
const TERM_GRACE: Duration = Duration::from_secs(2);
const MAX_STDERR_LINE: usize = 4096;

pub struct ProcessExecutor {
    program: PathBuf,
    args: Vec<String>,
    cwd: PathBuf,
    env: Vec<(String, String)>,
    timeout_ms: u64,
    max_output: u64,
    limits: Option<ProcessLimits>,
}

/// The working directory must stay inside the catalog or the state directory's `work/`.
fn confine(cwd: PathBuf, env: &ExecutorEnv) -> Result<PathBuf, String> {
    use std::path::Component;
    if cwd.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!(
            "executor.cwd {} must not contain `..`",
            cwd.display()
        ));
    }
    let full = if cwd.is_relative() {
        env.catalog_dir.join(&cwd)
    } else {
        cwd
    };
    let allowed = [&env.catalog_dir, &env.work_dir];
    if allowed.iter().any(|root| full.starts_with(root)) {
        Ok(full)
    } else {
        Err(format!(
            "executor.cwd {} is outside the catalog directory {} and the work directory {}",
            full.display(),
            env.catalog_dir.display(),
            env.work_dir.display()
        ))
    }
}

/// Applies rlimits and `no_new_privs` in the child between fork and exec.
fn restrict(cmd: &mut Command, limits: Option<ProcessLimits>) {
    use nix::sys::resource::{Resource, setrlimit};
    let limits = limits.unwrap_or(ProcessLimits {
        cpu_seconds: None,
        memory_mb: None,
        open_files: None,
        processes: None,
    });
    let to_bytes = |mb: u64| mb.saturating_mul(1024 * 1024);
    let set: [(Resource, Option<u64>); 4] = [
        (Resource::RLIMIT_CPU, limits.cpu_seconds),
        (Resource::RLIMIT_AS, limits.memory_mb.map(to_bytes)),
        (Resource::RLIMIT_NOFILE, limits.open_files),
        (Resource::RLIMIT_NPROC, limits.processes),
    ];
    // SAFETY: the closure runs in the forked child before exec. It only makes the
    // async-signal-safe system calls setrlimit(2) and prctl(2) on values captured by copy; it
    // does not allocate, lock or touch shared state.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            for (resource, value) in set {
                if let Some(v) = value {
                    setrlimit(resource, v, v).map_err(std::io::Error::from)?;
                }
            }
            nix::sys::prctl::set_no_new_privs().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
}

impl ProcessExecutor {
    pub fn new(spec: ProcessSpec, env: &ExecutorEnv) -> Result<Self, String> {
        let mut argv = spec.command.into_iter();
        let program = argv
            .next()
            .filter(|p| !p.is_empty())
            .ok_or("executor.command must name a program")?;
        let program = PathBuf::from(program);
        // `./tool` and `dir/tool` resolve against the catalog; bare names use PATH.
        let program = if program.is_relative() && program.components().count() > 1 {
            env.catalog_dir.join(program)
        } else {
            program
        };
        let cwd = match spec.cwd {
            Some(c) => confine(c, env)?,
            None => env.work_dir.clone(),
        };
        let mut vars = Vec::new();
        if let Ok(path) = std::env::var("PATH") {
            vars.push(("PATH".to_string(), path));
        }
        for name in &spec.env_allow {
            if let Ok(v) = std::env::var(name) {
                vars.push((name.clone(), v));
            }
        }
        vars.extend(spec.env);
        Ok(Self {
            program,
            args: argv.collect(),
            cwd,
            env: vars,
            timeout_ms: spec.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
            max_output: spec.max_output_bytes.unwrap_or(DEFAULT_MAX_OUTPUT),
            limits: spec.limits,
        })
    }
}

/// Kills the process group when dropped (a dropped future, a panic, any early return).
struct GroupGuard {
    pgid: Option<Pid>,
}

impl GroupGuard {
    fn signal(&self, sig: Signal) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(pgid, sig);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}

/// SIGTERM to the group, then SIGKILL if the leader has not exited within the grace period.
async fn stop_group(child: &mut Child, guard: &GroupGuard) {
    guard.signal(Signal::SIGTERM);
    if tokio::time::timeout(TERM_GRACE, child.wait())
        .await
        .is_err()
    {
        guard.signal(Signal::SIGKILL);
        let _ = child.wait().await;
    }
    // Children that ignored SIGTERM but outlived the leader.
    guard.signal(Signal::SIGKILL);
}

enum Outcome {
    Final(Value),
    Error(String),
}

#[async_trait]
impl Executor for ProcessExecutor {
    async fn run(
        &self,
        ctx: ExecContext,
        input: Value,
        out: OutputSink,
    ) -> Result<Value, ExecError> {
        if let Err(e) = tokio::fs::create_dir_all(&self.cwd).await {
            return Err(ExecError::Failed(format!(
                "cannot create the working directory {}: {e}",
                self.cwd.display()
            )));
        }
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .current_dir(&self.cwd)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("A2A_REQUEST_ID", &ctx.request_id)
            .env("A2A_AGENT_ID", &ctx.agent_id)
            .env("A2A_CAPABILITY", &ctx.capability)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some((url, token)) = &ctx.callback {
            cmd.env("A2A_HUB_URL", url).env("A2A_HUB_TOKEN", token);
        }
        if let Some(tp) = &ctx.traceparent {
            cmd.env("TRACEPARENT", tp);
        }
        restrict(&mut cmd, self.limits.clone());
        let mut child = cmd.spawn().map_err(|e| {
            ExecError::Failed(format!("cannot start {}: {e}", self.program.display()))
        })?;
        let guard = GroupGuard {
            pgid: child.id().map(|id| Pid::from_raw(id as i32)),
        };

        let request_line = serde_json::json!({
            "requestId": ctx.request_id,
            "agentId": ctx.agent_id,
            "capability": ctx.capability,
            "sessionId": ctx.session_id,
            "parentId": ctx.parent_id,
            "attempt": ctx.attempt,
            "input": input,
        })
        .to_string();
        if let Some(mut stdin) = child.stdin.take() {
            // A program that does not read stdin must not make us fail; ignore EPIPE.
            tokio::spawn(async move {
                let _ = stdin.write_all(request_line.as_bytes()).await;
                let _ = stdin.write_all(b"\n").await;
                let _ = stdin.shutdown().await;
            });
        }
        if let Some(stderr) = child.stderr.take() {
            let agent = ctx.agent_id.clone();
            let request = ctx.request_id.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(mut line)) = lines.next_line().await {
                    if line.len() > MAX_STDERR_LINE {
                        let mut cut = MAX_STDERR_LINE;
                        while !line.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        line.truncate(cut);
                    }
                    tracing::info!(target: "agent", agent = %agent, request_id = %request, "{line}");
                }
            });
        }
        let Some(stdout) = child.stdout.take() else {
            return Err(ExecError::Failed(
                "stdout of the agent is not available".into(),
            ));
        };
        let mut reader = BufReader::new(stdout);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.timeout_ms);
        let mut used: u64 = 0;
        let mut outcome: Option<Outcome> = None;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let budget = self.max_output.saturating_sub(used) + 1;
            let mut limited = (&mut reader).take(budget);
            let read = tokio::select! {
                r = limited.read_until(b'\n', &mut buf) => r,
                _ = ctx.cancel.cancelled() => {
                    stop_group(&mut child, &guard).await;
                    return Err(ExecError::Canceled);
                }
                _ = tokio::time::sleep_until(deadline) => {
                    stop_group(&mut child, &guard).await;
                    return Err(ExecError::Timeout(self.timeout_ms));
                }
            };
            let n = match read {
                Ok(n) => n,
                Err(e) => {
                    stop_group(&mut child, &guard).await;
                    return Err(ExecError::Failed(format!(
                        "reading the agent's output failed: {e}"
                    )));
                }
            };
            if n == 0 {
                break;
            }
            used += n as u64;
            if used > self.max_output {
                stop_group(&mut child, &guard).await;
                return Err(ExecError::Failed(format!(
                    "the agent wrote more than {} bytes to stdout (max_output_bytes); it was stopped",
                    self.max_output
                )));
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.trim().is_empty() || outcome.is_some() {
                continue;
            }
            match serde_json::from_str::<Value>(line) {
                Ok(Value::Object(obj)) => match obj.get("type").and_then(Value::as_str) {
                    Some("chunk") => {
                        let content = obj.get("content").cloned().unwrap_or(Value::Null);
                        if !out.chunk(content).await {
                            stop_group(&mut child, &guard).await;
                            return Err(ExecError::Canceled);
                        }
                    }
                    Some("final") => {
                        outcome = Some(Outcome::Final(
                            obj.get("result").cloned().unwrap_or(Value::Null),
                        ));
                    }
                    Some("error") => {
                        let msg = obj
                            .get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("the agent reported an error without a message");
                        outcome = Some(Outcome::Error(msg.to_string()));
                    }
                    _ => {
                        if !out.chunk(Value::String(line.to_string())).await {
                            stop_group(&mut child, &guard).await;
                            return Err(ExecError::Canceled);
                        }
                    }
                },
                _ => {
                    if !out.chunk(Value::String(line.to_string())).await {
                        stop_group(&mut child, &guard).await;
                        return Err(ExecError::Canceled);
                    }
                }
            }
        }
        // stdout closed: wait for the exit status within what is left of the deadline.
        let status = tokio::select! {
            s = child.wait() => s.ok(),
            _ = ctx.cancel.cancelled() => {
                stop_group(&mut child, &guard).await;
                return Err(ExecError::Canceled);
            }
            _ = tokio::time::sleep_until(deadline) => {
                stop_group(&mut child, &guard).await;
                return Err(ExecError::Timeout(self.timeout_ms));
            }
        };
        // Leftover members of the group (background children) do not outlive the request.
        guard.signal(Signal::SIGKILL);
        match outcome {
            Some(Outcome::Final(v)) => Ok(v),
            Some(Outcome::Error(m)) => Err(ExecError::Failed(m)),
            None => Err(ExecError::Failed(match status {
                Some(s) => format!("the agent exited ({s}) without a final event"),
                None => "the agent exited without a final event".to_string(),
            })),
        }
    }
}
