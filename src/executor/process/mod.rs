//! `process` agents: a local program per invocation, contained and confined.
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
//! `A2A_REQUEST_ID`/`A2A_AGENT_ID`/`A2A_CAPABILITY`. What the process may do is set up in
//! `sandbox.rs` (account, rlimits, no capabilities, `no_new_privs`); `contain.rs` keeps its
//! whole process tree together (a cgroup, or /proc tracking) and `reaper.rs` registers it with
//! the hub's orphan reaper.
//!
//! A request ends when the main process exits: whatever it left running is killed then.
//! Cancel, timeout and output overflow first send SIGTERM to every process of the request,
//! then, after a short grace, kill the whole tree (even children that called `setsid`); a
//! dropped future kills it at once.

mod contain;
pub mod reaper;
pub mod sandbox;

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::resource::Resource;
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use super::{ExecContext, ExecError, Executor, ExecutorEnv, OutputSink};
use crate::model::ProcessSpec;
use contain::Containment;
use sandbox::{Confinement, Identity};

const DEFAULT_TIMEOUT_MS: u64 = 300_000;
const DEFAULT_MAX_OUTPUT: u64 = 16 * 1024 * 1024;
const TERM_GRACE: Duration = Duration::from_secs(2);
const MAX_STDERR_LINE: usize = 4096;
/// How often the process tree is walked while a request runs (without a cgroup).
const TRACK_EVERY: Duration = Duration::from_millis(200);

pub struct ProcessExecutor {
    program: PathBuf,
    args: Vec<String>,
    /// The configured working directory; `None`: the default (see [`Self::working_dir`]).
    cwd: Option<PathBuf>,
    work_dir: PathBuf,
    env: Vec<(String, String)>,
    timeout_ms: u64,
    max_output: u64,
    limits: Vec<(Resource, u64)>,
    identity: Option<Identity>,
    cgroup: bool,
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

fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
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
            absolute(env.catalog_dir.join(program))
        } else {
            program
        };
        let cwd = spec.cwd.map(|c| confine(c, env)).transpose()?.map(absolute);
        let identity = sandbox::resolve_identity(spec.user.as_ref(), spec.group.as_ref())?;
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
            work_dir: absolute(env.work_dir.clone()),
            env: vars,
            timeout_ms: spec.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
            max_output: spec.max_output_bytes.unwrap_or(DEFAULT_MAX_OUTPUT),
            limits: sandbox::effective_limits(&env.process_limits, spec.limits.as_ref()),
            identity,
            cgroup: env.process_cgroup,
        })
    }

    /// The working directory of a run, created if missing: the configured one; else, for an
    /// agent with its own account, a private `work/<agent id>/` owned by that account (mode
    /// 0700); else the shared `work/`.
    async fn working_dir(&self, agent_id: &str) -> Result<PathBuf, ExecError> {
        let dir = match (&self.cwd, &self.identity) {
            (Some(c), _) => c.clone(),
            (None, Some(_)) => self.work_dir.join(agent_id),
            (None, None) => self.work_dir.clone(),
        };
        let failed = |e: std::io::Error| {
            ExecError::Failed(format!(
                "cannot create the working directory {}: {e}",
                dir.display()
            ))
        };
        tokio::fs::create_dir_all(&dir).await.map_err(failed)?;
        if let (None, Some(id)) = (&self.cwd, &self.identity) {
            use std::os::unix::fs::PermissionsExt;
            nix::unistd::chown(&dir, Some(id.uid), Some(id.gid)).map_err(|e| failed(e.into()))?;
            tokio::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .await
                .map_err(failed)?;
        }
        Ok(dir)
    }
}

/// The processes of a running request. Dropped (a dropped future, a panic, an early return),
/// it kills them all at once.
struct Contained(Option<Containment>);

impl Contained {
    fn signal_all(&mut self, sig: Signal) {
        if let Some(c) = &mut self.0 {
            c.signal_all(sig);
        }
    }

    fn track(&mut self) {
        if let Some(c) = &mut self.0 {
            c.track();
        }
    }

    fn tracking(&self) -> bool {
        self.0.as_ref().is_some_and(Containment::tracking)
    }

    /// Kills whatever is left of the request and waits until it is gone (off the runtime's
    /// threads: it may wait a few milliseconds for processes to stop).
    async fn finish(&mut self) {
        if let Some(c) = self.0.take() {
            let _ = tokio::task::spawn_blocking(move || drop(c)).await;
        }
    }
}

/// SIGTERM to every process of the request, then, once the main process has exited or the
/// grace period is over, SIGKILL to all that is left.
async fn stop(child: &mut Child, contained: &mut Contained) {
    contained.signal_all(Signal::SIGTERM);
    let _ = tokio::time::timeout(TERM_GRACE, child.wait()).await;
    contained.finish().await;
    let _ = child.wait().await;
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
        let cwd = self.working_dir(&ctx.agent_id).await?;
        let cannot_start = |e: std::io::Error| {
            ExecError::Failed(format!("cannot start {}: {e}", self.program.display()))
        };
        let mut containment = Containment::prepare(&ctx.request_id, ctx.attempt, self.cgroup);
        let spawned = match self.spawn(&ctx, &cwd, containment.cgroup_procs().as_deref()) {
            Err(e) if containment.cgroup_procs().is_some() => {
                // Perhaps no right to move a process into the cgroup: without it, then.
                containment.abandon_cgroup(&e);
                self.spawn(&ctx, &cwd, None)
            }
            other => other,
        };
        let mut child = spawned.map_err(cannot_start)?;
        let pid = child.id().map(|p| p as i32);
        if let Some(pid) = pid {
            containment.started(pid);
        }
        // Declared after `child`, so on a dropped future it is dropped first: the tree is
        // killed while its main process still holds it together (tokio's kill-on-drop of the
        // main process alone would scatter its children).
        let mut contained = Contained(Some(containment));
        let result = self
            .supervise(&ctx, input, &out, &mut child, &mut contained)
            .await;
        // Whatever the outcome, nothing of the request outlives it.
        contained.finish().await;
        if let Some(pid) = pid
            && child.try_wait().ok().flatten().is_some()
        {
            reaper::forget(pid);
        }
        result
    }
}

impl ProcessExecutor {
    /// Starts the main process of a run (registered with the reaper), in `cgroup_procs`'s
    /// cgroup when given: joining it is part of the start, so a started process is in it.
    fn spawn(
        &self,
        ctx: &ExecContext,
        cwd: &std::path::Path,
        cgroup_procs: Option<&std::path::Path>,
    ) -> std::io::Result<Child> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
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
        Confinement::new(
            cgroup_procs,
            cwd,
            self.limits.clone(),
            self.identity.clone(),
        )?
        .apply(&mut cmd);
        reaper::spawn(&mut cmd)
    }

    /// Feeds the request in, streams the output out, and stops the processes on cancel,
    /// timeout and overflow.
    async fn supervise(
        &self,
        ctx: &ExecContext,
        input: Value,
        out: &OutputSink,
        child: &mut Child,
        contained: &mut Contained,
    ) -> Result<Value, ExecError> {
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
        let mut track = tokio::time::interval(TRACK_EVERY);
        track.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let tracking = contained.tracking();
        let mut used: u64 = 0;
        let mut outcome: Option<Outcome> = None;
        let mut exited: Option<ExitStatus> = None;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let budget = self.max_output.saturating_sub(used) + 1;
            let mut limited = (&mut reader).take(budget);
            let read = tokio::select! {
                r = limited.read_until(b'\n', &mut buf) => r,
                _ = ctx.cancel.cancelled() => {
                    stop(child, contained).await;
                    return Err(ExecError::Canceled);
                }
                _ = tokio::time::sleep_until(deadline) => {
                    stop(child, contained).await;
                    return Err(ExecError::Timeout(self.timeout_ms));
                }
                status = child.wait(), if exited.is_none() => {
                    // The main process is done: what it left running goes now, and the rest
                    // of its output is read until the pipe closes.
                    exited = Some(status.unwrap_or_default());
                    contained.finish().await;
                    continue;
                }
                _ = track.tick(), if tracking => {
                    contained.track();
                    continue;
                }
            };
            let n = match read {
                Ok(n) => n,
                Err(e) => {
                    stop(child, contained).await;
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
                stop(child, contained).await;
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
            let chunk = match serde_json::from_str::<Value>(line) {
                Ok(Value::Object(obj)) => match obj.get("type").and_then(Value::as_str) {
                    Some("chunk") => Some(obj.get("content").cloned().unwrap_or(Value::Null)),
                    Some("final") => {
                        outcome = Some(Outcome::Final(
                            obj.get("result").cloned().unwrap_or(Value::Null),
                        ));
                        None
                    }
                    Some("error") => {
                        let msg = obj
                            .get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("the agent reported an error without a message");
                        outcome = Some(Outcome::Error(msg.to_string()));
                        None
                    }
                    _ => Some(Value::String(line.to_string())),
                },
                _ => Some(Value::String(line.to_string())),
            };
            if let Some(content) = chunk
                && !out.chunk(content).await
            {
                stop(child, contained).await;
                return Err(ExecError::Canceled);
            }
        }
        // stdout closed: wait for the exit status within what is left of the deadline.
        let status = match exited {
            Some(s) => Some(s),
            None => tokio::select! {
                s = child.wait() => s.ok(),
                _ = ctx.cancel.cancelled() => {
                    stop(child, contained).await;
                    return Err(ExecError::Canceled);
                }
                _ = tokio::time::sleep_until(deadline) => {
                    stop(child, contained).await;
                    return Err(ExecError::Timeout(self.timeout_ms));
                }
            },
        };
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
