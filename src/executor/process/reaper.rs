//! The hub as a reaper of orphans: registration of the agents it spawns, and the
//! `process-reaper` worker that collects adopted zombies.
//!
//! `serve` and `stdio` call [`adopt_orphans`] at start: the hub becomes a child subreaper, so
//! processes an agent leaves behind are re-parented to the hub (not to init), where the
//! request's cleanup finds and kills them (`contain.rs`). When the hub is PID 1 (a container
//! without an init) every orphan of the container comes to it anyway. Either way the hub
//! must wait for those children, or they stay zombies.
//!
//! It must not wait for the wrong ones: tokio waits for each child it spawned by pid
//! (`waitpid(pid)` after a pidfd or SIGCHLD wake-up), and a blanket `waitpid(-1)` would steal
//! an exit status tokio is about to collect (its `wait()` would then fail). So every agent the
//! executor spawns is registered (pid and start time) under the same lock that the reaper
//! holds while it looks, from before `fork` until tokio has collected it; the reaper only
//! `waitpid`s, by pid, zombie children that are *not* registered — adopted orphans. A process
//! that embeds the hub as a library never calls [`adopt_orphans`], so the reaper never runs
//! there and children spawned elsewhere in that process are never touched.
//!
//! The worker wakes on SIGCHLD (tokio's signal stream, shared with tokio's own child
//! handling) and every few seconds as a safety net.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use parking_lot::Mutex;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::contain;
use crate::metrics;

/// Main processes of running agents, by pid, with their start time.
static LEADERS: Mutex<Option<HashMap<i32, u64>>> = Mutex::new(None);
static ADOPTING: AtomicBool = AtomicBool::new(false);

const SAFETY_NET: Duration = Duration::from_secs(5);

/// Makes this process a child subreaper and turns the reaper on. Only for a process that
/// spawns children through [`spawn`] alone (the `serve` and `stdio` binaries).
pub fn adopt_orphans() -> Result<(), String> {
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| format!("prctl(PR_SET_CHILD_SUBREAPER): {e}"))?;
    ADOPTING.store(true, Ordering::SeqCst);
    Ok(())
}

/// Whether this process adopts orphans (a subreaper, or PID 1) and so must reap them.
pub fn adopting() -> bool {
    ADOPTING.load(Ordering::SeqCst) || std::process::id() == 1
}

/// Spawns an agent's main process, registered so that the reaper leaves it to tokio.
pub(super) fn spawn(cmd: &mut Command) -> std::io::Result<Child> {
    let mut leaders = LEADERS.lock();
    let child = cmd.spawn()?;
    if let Some(pid) = child.id().map(|p| p as i32)
        && let Some(st) = contain::stat(pid)
    {
        leaders
            .get_or_insert_with(HashMap::new)
            .insert(pid, st.start);
    }
    Ok(child)
}

/// Forgets a main process after tokio has collected it.
pub(super) fn forget(pid: i32) {
    if let Some(m) = LEADERS.lock().as_mut() {
        m.remove(&pid);
    }
}

fn registered(leaders: &Option<HashMap<i32, u64>>, pid: i32, start: u64) -> bool {
    leaders
        .as_ref()
        .is_some_and(|m| m.get(&pid) == Some(&start))
}

/// Live children of this process that it did not spawn (orphans it adopted), with their
/// start times. Empty unless [`adopting`].
pub(super) fn adopted() -> Vec<(i32, u64)> {
    if !adopting() {
        return Vec::new();
    }
    let leaders = LEADERS.lock();
    contain::own_children()
        .into_iter()
        .filter_map(|pid| {
            let st = contain::stat(pid)?;
            (!st.is_gone() && !registered(&leaders, pid, st.start)).then_some((pid, st.start))
        })
        .collect()
}

/// Waits for every adopted child that has exited; returns how many.
pub fn reap_once() -> usize {
    let mut leaders = LEADERS.lock();
    let mut reaped = 0;
    for pid in contain::own_children() {
        let Some(st) = contain::stat(pid) else {
            continue;
        };
        if st.state != 'Z' || registered(&leaders, pid, st.start) {
            continue;
        }
        if let Ok(status) = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG))
            && status.pid().is_some()
        {
            reaped += 1;
        }
    }
    // Entries of main processes tokio collected after their executor was dropped.
    if let Some(m) = leaders.as_mut() {
        m.retain(|pid, start| contain::stat(*pid).is_some_and(|s| s.start == *start));
    }
    drop(leaders);
    metrics::PROCESS_REAPED.inc_by(reaped as u64);
    reaped
}

/// Runs the reaper until `stop`; `on_pass` is told the outcome of every pass that reaped
/// something (for the worker status). Does nothing unless [`adopting`].
pub async fn run(stop: CancellationToken, on_pass: impl Fn(Result<usize, String>)) {
    use tokio::signal::unix::{SignalKind, signal};
    if !adopting() {
        return;
    }
    let mut sigchld = match signal(SignalKind::child()) {
        Ok(s) => Some(s),
        Err(e) => {
            on_pass(Err(format!(
                "cannot watch SIGCHLD ({e}); reaping every {SAFETY_NET:?}"
            )));
            None
        }
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = async {
                match sigchld.as_mut() {
                    Some(s) => { s.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
            _ = tokio::time::sleep(SAFETY_NET) => {}
        }
        let n = tokio::task::spawn_blocking(reap_once)
            .await
            .map_err(|e| format!("reaper pass failed: {e}"));
        if !matches!(n, Ok(0)) {
            on_pass(n);
        }
    }
}
