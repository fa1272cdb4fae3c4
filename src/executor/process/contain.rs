//! Keeping every process of a request inside the request, and killing them all at its end.
//!
//! A process agent may start children that leave its process group (`setsid`), double-fork,
//! or outlive it. Two ways to find them all:
//!
//! - **cgroup v2** (`A2A_PROCESS_CGROUP=auto` and the hub may create cgroups: root, or a
//!   systemd unit with `Delegate=yes`): each request gets its own cgroup below
//!   `<hub cgroup>/a2a-mcp.<hub pid>/`, which the child joins before `exec`. Nothing can leave
//!   it; `cgroup.kill` ends every member at once. The hub removes the cgroup afterwards; the
//!   next hub to start removes the empty ones a crashed hub left.
//! - **/proc tracking** otherwise: the agent's main process is a child subreaper (set before
//!   `exec`), so while it lives every descendant stays below it in the process tree, `setsid`
//!   or not. The tree is walked through `/proc/<pid>/task/*/children` (a scan of every
//!   `/proc/<pid>/stat` on kernels without those files) while the request runs
//!   and once more before every kill; killing stops (SIGSTOP) the whole tree first, waits
//!   until every member is stopped (a stopped process cannot fork), then sends SIGKILL, so no
//!   child escapes half-way. After the main process has exited, its leftovers are found among
//!   what the walk remembered and among the hub's adopted children (the hub is a subreaper in
//!   `serve`/`stdio`) that carry this request's `A2A_REQUEST_ID`. Limit: a process that the
//!   agent starts and orphans in the same instant it exits, and that scrubs its environment,
//!   can slip by; cgroups have no such gap.
//!
//! Processes are always named by pid *and* start time, so a recycled pid is never signalled.
//! The cgroup probe happens once per hub process, on first use; when it fails the hub falls
//! back silently (one info line in the log).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::metrics;

// -------------------------------------------------------------------------------------------
// /proc

/// The fields of `/proc/<pid>/stat` this module needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stat {
    /// `R`, `S`, `D`, `T`, `t`, `Z`, `X`, …
    pub state: char,
    pub ppid: i32,
    /// Start time in clock ticks since boot: with the pid, a process's identity.
    pub start: u64,
}

impl Stat {
    pub fn is_gone(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) may hold spaces and parentheses,
/// so fields are counted after its last `)`.
pub(super) fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    // Field 22 (starttime) is the 20th after the command name.
    let start = fields.nth(17)?.parse().ok()?;
    Some(Stat { state, ppid, start })
}

pub(super) fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Whether this kernel lists children in `/proc/<pid>/task/<tid>/children`
/// (`CONFIG_PROC_CHILDREN`); without it, children are found by scanning every process.
fn children_files() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let tid = nix::unistd::gettid();
        Path::new(&format!("/proc/self/task/{tid}/children")).exists()
    })
}

/// Every process's children, from a scan of `/proc/*/stat` (kernels without children files).
fn scan_children() -> HashMap<i32, Vec<i32>> {
    let mut map: HashMap<i32, Vec<i32>> = HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok())
            && let Some(st) = stat(pid)
        {
            map.entry(st.ppid).or_default().push(pid);
        }
    }
    map
}

/// Direct children of a process (of all its threads).
pub(super) fn children(pid: i32) -> Vec<i32> {
    if children_files() {
        children_in(&format!("/proc/{pid}/task"))
    } else {
        scan_children().remove(&pid).unwrap_or_default()
    }
}

/// Direct children of this process.
pub(super) fn own_children() -> Vec<i32> {
    if children_files() {
        children_in("/proc/self/task")
    } else {
        scan_children()
            .remove(&(std::process::id() as i32))
            .unwrap_or_default()
    }
}

fn children_in(task_dir: &str) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(task_dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    out
}

/// Whether a process's initial environment holds `A2A_REQUEST_ID=<id>`.
fn carries_request(pid: i32, request_id: &str) -> bool {
    let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let want = format!("A2A_REQUEST_ID={request_id}");
    env.split(|b| *b == 0).any(|v| v == want.as_bytes())
}

/// A live process: pid and start time.
type Proc = (i32, u64);

fn alive(p: Proc) -> bool {
    stat(p.0).is_some_and(|s| s.start == p.1 && !s.is_gone())
}

/// Every live process in the trees below `roots` (roots included, if alive).
fn walk(roots: impl IntoIterator<Item = Proc>) -> HashMap<i32, u64> {
    let mut scanned = (!children_files()).then(scan_children);
    let mut found = HashMap::new();
    let mut queue: Vec<(i32, Option<u64>)> = roots.into_iter().map(|(p, s)| (p, Some(s))).collect();
    while let Some((pid, want)) = queue.pop() {
        if found.contains_key(&pid) {
            continue;
        }
        let Some(st) = stat(pid) else { continue };
        if want.is_some_and(|w| w != st.start) || st.is_gone() {
            continue;
        }
        found.insert(pid, st.start);
        let kids = match scanned.as_mut() {
            Some(map) => map.remove(&pid).unwrap_or_default(),
            None => children(pid),
        };
        queue.extend(kids.into_iter().map(|c| (c, None)));
    }
    found
}

fn signal(p: Proc, sig: Signal) {
    if alive(p) {
        let _ = kill(Pid::from_raw(p.0), sig);
    }
}

/// Stops every process below `roots` and kills them all, with no chance to fork in between:
/// stop what the walk finds, wait until each is really stopped, walk again for children made
/// in the meantime, and only when a walk finds nothing new send SIGKILL. Returns how many
/// processes were killed. Blocks for a few milliseconds at most in practice (bounded).
fn freeze_and_kill(roots: Vec<Proc>) -> usize {
    let mut stopped: HashMap<i32, u64> = HashMap::new();
    for _ in 0..64 {
        let all = walk(
            roots
                .iter()
                .copied()
                .chain(stopped.iter().map(|(p, s)| (*p, *s))),
        );
        let new: Vec<Proc> = all
            .into_iter()
            .filter(|(p, _)| !stopped.contains_key(p))
            .collect();
        if new.is_empty() {
            break;
        }
        for p in &new {
            signal(*p, Signal::SIGSTOP);
            stopped.insert(p.0, p.1);
        }
        let deadline = Instant::now() + Duration::from_millis(200);
        while Instant::now() < deadline
            && stopped.iter().any(|(p, s)| {
                stat(*p).is_some_and(|st| {
                    st.start == *s && !st.is_gone() && !matches!(st.state, 'T' | 't')
                })
            })
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let mut killed = 0;
    for (p, s) in &stopped {
        if alive((*p, *s)) {
            let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
            killed += 1;
        }
    }
    killed
}

// -------------------------------------------------------------------------------------------
// cgroups

/// `<hub cgroup>/a2a-mcp.<pid>`, once probed; `None` when cgroups cannot be used here.
static CGROUP_BASE: OnceLock<Option<PathBuf>> = OnceLock::new();

fn cgroup_base() -> Option<&'static Path> {
    CGROUP_BASE
        .get_or_init(|| match probe_cgroup() {
            Ok(base) => {
                tracing::info!(cgroup = %base.display(), "process agents: each request runs in its own cgroup");
                Some(base)
            }
            Err(why) => {
                tracing::info!("process agents: no cgroup v2 ({why}); process trees are tracked through /proc");
                None
            }
        })
        .as_deref()
}

/// Finds this process's cgroup v2 directory and makes `a2a-mcp.<pid>` in it.
fn probe_cgroup() -> Result<PathBuf, String> {
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("the process is in no cgroup v2 hierarchy")?
        .trim()
        .to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    let (root, mount_point) = mounts
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let mut f = left.split_whitespace();
            let root = f.nth(3)?;
            let mount_point = f.next()?;
            (fstype == "cgroup2").then(|| (root.to_string(), mount_point.to_string()))
        })
        .ok_or("no cgroup2 file system is mounted")?;
    let relative = own
        .strip_prefix(root.trim_end_matches('/'))
        .ok_or_else(|| format!("this process's cgroup {own} is outside the mounted {root}"))?;
    let dir = Path::new(&mount_point).join(relative.trim_start_matches('/'));
    remove_stale(&dir);
    let base = dir.join(format!("a2a-mcp.{}", std::process::id()));
    match std::fs::create_dir(&base) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", base.display())),
    }
    if !base.join("cgroup.kill").exists() {
        let _ = std::fs::remove_dir(&base);
        return Err("the kernel has no cgroup.kill (Linux 5.14 or later is needed)".into());
    }
    Ok(base)
}

/// Removes the empty `a2a-mcp.<pid>` cgroups of hubs that are gone. Nothing is killed: the
/// pid of another hub may live in another PID namespace, so "gone" is only a guess, and a
/// non-empty cgroup cannot be removed anyway (a live hub re-creates its base when needed).
fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("a2a-mcp."))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() as i32 || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(requests) = std::fs::read_dir(e.path()) {
            for r in requests.flatten().filter(|r| r.path().is_dir()) {
                let _ = std::fs::remove_dir(r.path());
            }
        }
        let _ = std::fs::remove_dir(e.path());
    }
}

fn populated(cgroup: &Path) -> bool {
    std::fs::read_to_string(cgroup.join("cgroup.events"))
        .map(|t| t.lines().any(|l| l.trim() == "populated 1"))
        .unwrap_or(false)
}

/// Removes an emptied cgroup, waiting up to `patience` for its last members to exit.
fn remove_cgroup(cgroup: &Path, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    loop {
        if std::fs::remove_dir(cgroup).is_ok() || !cgroup.exists() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn cgroup_members(cgroup: &Path) -> Vec<i32> {
    std::fs::read_to_string(cgroup.join("cgroup.procs"))
        .map(|t| {
            t.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

// -------------------------------------------------------------------------------------------
// One request

/// The processes of one request. Dropping it kills them all.
pub(super) struct Containment {
    request_id: String,
    cgroup: Option<PathBuf>,
    leader: Option<Proc>,
    /// Every descendant seen so far (tracking mode).
    seen: HashMap<i32, u64>,
    /// `kill_all` has run.
    finished: bool,
}

impl Containment {
    /// Prepares the containment of one run; makes its cgroup when `use_cgroup` and possible.
    pub fn prepare(request_id: &str, attempt: u32, use_cgroup: bool) -> Self {
        let cgroup = use_cgroup.then(cgroup_base).flatten().and_then(|base| {
            let dir = base.join(format!("{request_id}.{attempt}"));
            // `create_dir_all`: another hub may have taken our empty base for a stale one.
            match std::fs::create_dir_all(&dir) {
                Ok(()) => Some(dir),
                Err(e) => {
                    tracing::warn!(
                        request_id,
                        "cannot create the cgroup {}: {e}; tracking the process tree instead",
                        dir.display()
                    );
                    None
                }
            }
        });
        Self {
            request_id: request_id.to_string(),
            cgroup,
            leader: None,
            seen: HashMap::new(),
            finished: false,
        }
    }

    /// The `cgroup.procs` the child joins before `exec`.
    pub fn cgroup_procs(&self) -> Option<PathBuf> {
        self.cgroup.as_ref().map(|c| c.join("cgroup.procs"))
    }

    /// Records the main process once spawned.
    pub fn started(&mut self, pid: i32) {
        self.leader = stat(pid).map(|s| (pid, s.start));
        self.track();
    }

    /// Gives the cgroup up after a start in it failed (e.g. no right to move a process
    /// there): the tree is tracked instead.
    pub fn abandon_cgroup(&mut self, why: &std::io::Error) {
        if let Some(cg) = self.cgroup.take() {
            tracing::warn!(request_id = %self.request_id, "starting the agent in its cgroup {} failed ({why}); starting it without one and tracking its process tree", cg.display());
            remove_cgroup(&cg, Duration::ZERO);
        }
    }

    /// Whether the tree needs walking from time to time (no cgroup).
    pub fn tracking(&self) -> bool {
        self.cgroup.is_none()
    }

    /// Remembers the current descendants (tracking mode), so they are still found after the
    /// main process is gone.
    pub fn track(&mut self) {
        if self.cgroup.is_some() {
            return;
        }
        let roots: Vec<Proc> = self
            .leader
            .into_iter()
            .chain(self.seen.iter().map(|(p, s)| (*p, *s)))
            .collect();
        let now = walk(roots);
        self.seen.retain(|p, s| now.get(p) == Some(s));
        self.seen.extend(now);
    }

    /// Sends `sig` to every process of the request (its group, its cgroup or its tree).
    pub fn signal_all(&mut self, sig: Signal) {
        if let Some(leader) = self.leader
            && alive(leader)
        {
            let _ = killpg(Pid::from_raw(leader.0), sig);
        }
        match &self.cgroup {
            Some(cg) => {
                for pid in cgroup_members(cg) {
                    let _ = kill(Pid::from_raw(pid), sig);
                }
            }
            None => {
                self.track();
                for (p, s) in self.seen.clone() {
                    signal((p, s), sig);
                }
            }
        }
    }

    /// Kills every process of the request and waits (bounded) until they are gone; the
    /// request's cgroup is removed. Blocking: call it from a blocking thread or `Drop`.
    pub fn kill_all(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        match self.cgroup.take() {
            Some(cg) => {
                let before = cgroup_members(&cg);
                let others = before
                    .iter()
                    .filter(|p| Some(**p) != self.leader.map(|l| l.0))
                    .count();
                if !before.is_empty() {
                    let _ = std::fs::write(cg.join("cgroup.kill"), "1");
                }
                metrics::PROCESS_LEFTOVERS_KILLED.inc_by(others as u64);
                if !remove_cgroup(&cg, Duration::from_millis(100)) {
                    // Members still exiting (e.g. in uninterruptible sleep): finish later.
                    std::thread::spawn(move || {
                        if !remove_cgroup(&cg, Duration::from_secs(30)) && populated(&cg) {
                            tracing::warn!(
                                "the cgroup {} still has members after kill; the next start removes it",
                                cg.display()
                            );
                        }
                    });
                }
            }
            None => {
                let mut roots: Vec<Proc> = self.leader.into_iter().collect();
                roots.extend(self.seen.iter().map(|(p, s)| (*p, *s)));
                roots.extend(self.adopted_leftovers());
                let leader_alive = self.leader.is_some_and(alive);
                let killed = freeze_and_kill(roots);
                metrics::PROCESS_LEFTOVERS_KILLED
                    .inc_by(killed.saturating_sub(usize::from(leader_alive)) as u64);
                self.seen.clear();
            }
        }
    }

    /// Children the hub adopted (it is a subreaper in `serve`/`stdio`) that come from this
    /// request: started by it and orphaned when its main process exited.
    fn adopted_leftovers(&self) -> Vec<Proc> {
        let ours: HashSet<i32> = self.seen.keys().copied().collect();
        super::reaper::adopted()
            .into_iter()
            .filter(|(p, _)| !ours.contains(p) && carries_request(*p, &self.request_id))
            .collect()
    }
}

impl Drop for Containment {
    fn drop(&mut self) {
        self.kill_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_the_command_name() {
        let line =
            "4242 (a b) c)) S 17 4242 4242 0 -1 4194560 104 0 0 0 0 0 0 0 20 0 1 0 987654 1000 100";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                ppid: 17,
                start: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        let me = stat(std::process::id() as i32).expect("own stat");
        assert!(!me.is_gone());
    }

    #[test]
    fn a_tree_with_a_setsid_member_is_found_and_killed() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "setsid sleep 100 & sleep 100"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let root = (pid, stat(pid).unwrap().start);
        let mut tree = HashMap::new();
        for _ in 0..500 {
            tree = walk([root]);
            if tree.len() == 3 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            tree.len(),
            3,
            "sh, its sleep and the setsid sleep: {tree:?}"
        );
        assert!(own_children().contains(&pid));
        assert_eq!(freeze_and_kill(vec![root]), 3);
        let _ = child.wait();
        // SIGKILL is delivered when the target next runs: give them a moment (bounded).
        for (p, s) in tree {
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive((p, s)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(!alive((p, s)), "{p} survived");
        }
    }
}
