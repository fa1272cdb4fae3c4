//! What a process agent is allowed: the account it runs as, its rlimits and capabilities, and
//! the hub-wide hardening that keeps agents away from the hub itself.
//!
//! Everything that can fail for a reason the operator controls (an unknown user, a hub
//! without the privilege to switch users, bad limits) is resolved when the agent is built —
//! at deploy or start-up — so a definition that cannot run is refused there, never at the
//! first invocation. The child side ([`Confinement::apply`]) only replays prepared values
//! between `fork` and `exec`, where nothing may allocate or lock: join the request's cgroup,
//! change directory, become a child subreaper (so the agent's whole tree stays below it),
//! set rlimits, empty the capability bounding set, switch group and user, drop every
//! remaining capability and set `no_new_privs`. This file holds the crate's one audited
//! `unsafe` block (the `pre_exec` hook and the raw `capset`/`prctl` calls it makes).
//!
//! [`harden_hub`] is called by `main` before anything else: the hub becomes non-dumpable, so
//! an agent running as the same user cannot read the hub's `/proc/<pid>/environ` or memory
//! (database URLs, tokens) nor attach to it with ptrace. A root hub's agents lose the
//! capabilities (`CAP_SYS_PTRACE`, `CAP_DAC_OVERRIDE`, …) that would bypass that.

use std::ffi::CString;
use std::path::Path;

use nix::sys::resource::{Resource, getrlimit};
use nix::unistd::{Gid, Group, Uid, User};
use tokio::process::Command;

use crate::model::{AccountRef, ProcessLimits};

/// Makes this process non-dumpable: processes of the same user may not read its
/// `/proc/<pid>/environ`, `mem` or `maps`, nor ptrace it, and it writes no core dumps. The
/// hub still reads its own /proc files (the kernel always allows a process its own).
pub fn harden_hub() -> Result<(), String> {
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("prctl(PR_SET_DUMPABLE, 0): {e}"))
}

/// Parses `A2A_PROCESS_LIMITS`: comma-separated `name=N|off` pairs.
pub fn parse_limits(text: &str) -> Result<ProcessLimits, String> {
    let mut limits = ProcessLimits::default();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not name=value"))?;
        let value = match value.trim() {
            "off" | "unlimited" => None,
            v => match v.parse::<u64>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return Err(format!(
                        "{part:?}: the value must be a whole number above 0 or off"
                    ));
                }
            },
        };
        let slot = match name.trim() {
            "cpu_seconds" => &mut limits.cpu_seconds,
            "memory_mb" => &mut limits.memory_mb,
            "open_files" => &mut limits.open_files,
            "processes" => &mut limits.processes,
            other => return Err(format!("unknown limit {other:?}")),
        };
        *slot = value;
    }
    Ok(limits)
}

/// The rlimits a process agent gets: its own `limits` entries over the defaults (0 lifts
/// one), never above the hub's own hard limit (which an unprivileged hub could not raise).
pub fn effective_limits(
    defaults: &ProcessLimits,
    own: Option<&ProcessLimits>,
) -> Vec<(Resource, u64)> {
    let pick = |own: Option<u64>, default: Option<u64>| match own {
        Some(0) => None,
        Some(n) => Some(n),
        None => default,
    };
    let own = own.cloned().unwrap_or_default();
    let mb = |v: Option<u64>| v.map(|m| m.saturating_mul(1024 * 1024));
    let wanted = [
        (
            Resource::RLIMIT_CPU,
            pick(own.cpu_seconds, defaults.cpu_seconds),
        ),
        (
            Resource::RLIMIT_AS,
            mb(pick(own.memory_mb, defaults.memory_mb)),
        ),
        (
            Resource::RLIMIT_NOFILE,
            pick(own.open_files, defaults.open_files),
        ),
        (
            Resource::RLIMIT_NPROC,
            pick(own.processes, defaults.processes),
        ),
    ];
    wanted
        .into_iter()
        .filter_map(|(r, v)| {
            let v = v?;
            let hard = getrlimit(r).map(|(_, hard)| hard).unwrap_or(v);
            Some((r, v.min(hard)))
        })
        .collect()
}

/// The account a process agent runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: Uid,
    pub gid: Gid,
}

/// Resolves `executor.user` / `executor.group` and checks that this hub may switch to them.
/// `Ok(None)`: run as the hub's own account.
pub fn resolve_identity(
    user: Option<&AccountRef>,
    group: Option<&AccountRef>,
) -> Result<Option<Identity>, String> {
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    /// A numeric id, or a name to look up.
    enum Parsed<'a> {
        Num(u32),
        Name(&'a str),
    }
    fn parsed(r: &AccountRef) -> Parsed<'_> {
        match r {
            AccountRef::Id(n) => Parsed::Num(*n),
            AccountRef::Name(s) => s.parse::<u32>().map_or(Parsed::Name(s), Parsed::Num),
        }
    }
    let (uid, primary_gid) = match user {
        None => (Uid::effective(), None),
        Some(u) => {
            let unreadable =
                |e: nix::Error| format!("executor.user {u}: cannot read the user database: {e}");
            match parsed(u) {
                Parsed::Num(n) => {
                    let uid = Uid::from_raw(n);
                    let entry = User::from_uid(uid).map_err(unreadable)?;
                    (uid, entry.map(|e| e.gid))
                }
                Parsed::Name(name) => {
                    let entry = User::from_name(name).map_err(unreadable)?.ok_or_else(|| {
                        format!(
                            "executor.user {u}: no such user on this host; create it, or name an existing user or a numeric id"
                        )
                    })?;
                    (entry.uid, Some(entry.gid))
                }
            }
        }
    };
    let gid = match group {
        Some(g) => match parsed(g) {
            Parsed::Num(n) => Gid::from_raw(n),
            Parsed::Name(name) => Group::from_name(name)
                .map_err(|e| format!("executor.group {g}: cannot read the group database: {e}"))?
                .ok_or_else(|| {
                    format!(
                        "executor.group {g}: no such group on this host; name an existing group or a numeric id"
                    )
                })?
                .gid,
        },
        None => match (primary_gid, user) {
            (Some(gid), _) => gid,
            (None, Some(u)) => {
                return Err(format!(
                    "executor.user {u} has no entry in the user database, so it has no primary group; set executor.group too"
                ));
            }
            (None, None) => Gid::effective(),
        },
    };
    let identity = Identity { uid, gid };
    if uid != Uid::effective() || gid != Gid::effective() {
        let (may_setuid, may_setgid) = own_switch_capabilities();
        if !(may_setuid && may_setgid) {
            let who = user
                .map(|u| format!("executor.user {u}"))
                .or_else(|| group.map(|g| format!("executor.group {g}")))
                .unwrap_or_default();
            return Err(format!(
                "{who}: the hub runs as uid {} without the privilege to switch accounts (root, or CAP_SETUID and CAP_SETGID); \
                 remove executor.user/executor.group or run the hub with that privilege",
                Uid::effective()
            ));
        }
    }
    Ok(Some(identity))
}

/// Whether this process holds CAP_SETUID and CAP_SETGID (effective), from /proc/self/status.
fn own_switch_capabilities() -> (bool, bool) {
    const CAP_SETGID: u32 = 6;
    const CAP_SETUID: u32 = 7;
    let eff = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    (eff & (1 << CAP_SETUID) != 0, eff & (1 << CAP_SETGID) != 0)
}

/// Everything the child applies to itself before `exec`, prepared in the parent.
pub struct Confinement {
    /// The request cgroup's `cgroup.procs`, joined first (while still the hub's account).
    pub cgroup_procs: Option<CString>,
    /// Working directory, entered before the account switch (so a directory the agent's user
    /// could not reach by path still works as its working directory).
    pub cwd: CString,
    pub limits: Vec<(Resource, u64)>,
    pub identity: Option<Identity>,
}

impl Confinement {
    pub fn new(
        cgroup_procs: Option<&Path>,
        cwd: &Path,
        limits: Vec<(Resource, u64)>,
        identity: Option<Identity>,
    ) -> std::io::Result<Self> {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| {
            CString::new(p.as_os_str().as_bytes()).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{} contains a NUL byte", p.display()),
                )
            })
        };
        Ok(Self {
            cgroup_procs: cgroup_procs.map(c).transpose()?,
            cwd: c(cwd)?,
            limits,
            identity,
        })
    }

    /// Installs the child-side setup on `cmd`.
    pub fn apply(self, cmd: &mut Command) {
        // SAFETY: the closure runs in the forked child before exec. It only makes
        // async-signal-safe system calls (open, write, close, chdir, prctl, setrlimit,
        // setgroups, setresgid, setresuid, capset) on values prepared in the parent and moved
        // in; it does not allocate, lock or touch state shared with other threads.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || self.in_child());
        }
    }

    fn in_child(&self) -> std::io::Result<()> {
        use nix::fcntl::{OFlag, open};
        use nix::sys::stat::Mode;
        let io = std::io::Error::from;
        if let Some(procs) = &self.cgroup_procs {
            // A failure fails the start; the parent then starts it again without a cgroup.
            let fd = open(
                procs.as_c_str(),
                OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(io)?;
            nix::unistd::write(&fd, b"0").map_err(io)?;
        }
        nix::unistd::chdir(self.cwd.as_c_str()).map_err(io)?;
        // Orphans of the agent's own children are re-parented to it, not to the hub or init,
        // so its whole tree stays findable below it while it runs (even after `setsid`).
        nix::sys::prctl::set_child_subreaper(true).map_err(io)?;
        for (resource, value) in &self.limits {
            nix::sys::resource::setrlimit(*resource, *value, *value).map_err(io)?;
        }
        drop_bounding_set();
        if let Some(id) = &self.identity {
            nix::unistd::setgroups(&[id.gid]).map_err(io)?;
            nix::unistd::setresgid(id.gid, id.gid, id.gid).map_err(io)?;
            nix::unistd::setresuid(id.uid, id.uid, id.uid).map_err(io)?;
        }
        drop_capabilities().map_err(io)?;
        nix::sys::prctl::set_no_new_privs().map_err(io)?;
        Ok(())
    }
}

/// Empties the capability bounding set, so no `exec` can grant a capability again (this is
/// what keeps a root agent from regaining root's capabilities). Needs CAP_SETPCAP; without
/// it (an unprivileged hub) the agent has no capabilities to lose and `no_new_privs` blocks
/// setuid and file capabilities anyway.
fn drop_bounding_set() {
    for cap in 0..64 {
        // SAFETY: prctl with integer arguments only.
        #[allow(unsafe_code)]
        let r = unsafe { nix::libc::prctl(nix::libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        if r != 0 && nix::errno::Errno::last() != nix::errno::Errno::EINVAL {
            // EPERM: not ours to drop. EINVAL: past the last capability this kernel has.
            return;
        }
    }
}

/// Clears the ambient set, then sets the effective, permitted and inheritable sets to empty.
fn drop_capabilities() -> nix::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: prctl with integer arguments; capset reads one header and two data structs,
    // laid out as the kernel's `__user_cap_header_struct` and `__user_cap_data_struct`.
    #[allow(unsafe_code)]
    unsafe {
        nix::libc::prctl(
            nix::libc::PR_CAP_AMBIENT,
            nix::libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        let r = nix::libc::syscall(
            nix::libc::SYS_capset,
            &header as *const Header,
            data.as_ptr(),
        );
        nix::errno::Errno::result(r).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_and_merge() {
        let d = parse_limits("cpu_seconds=600, memory_mb=4096,open_files=off").unwrap();
        assert_eq!(d.cpu_seconds, Some(600));
        assert_eq!(d.memory_mb, Some(4096));
        assert_eq!(d.open_files, None);
        assert!(parse_limits("cpu=1").is_err());
        assert!(parse_limits("cpu_seconds=0").is_err());
        assert!(parse_limits("cpu_seconds").is_err());
        let own = ProcessLimits {
            cpu_seconds: Some(0),
            open_files: Some(64),
            ..Default::default()
        };
        let eff = effective_limits(&d, Some(&own));
        assert!(
            !eff.iter().any(|(r, _)| *r == Resource::RLIMIT_CPU),
            "0 lifts"
        );
        assert!(eff.contains(&(Resource::RLIMIT_AS, 4096 * 1024 * 1024)));
        assert!(eff.contains(&(Resource::RLIMIT_NOFILE, 64)));
    }

    #[test]
    fn identity_of_nobody_or_a_clear_error() {
        let nobody = AccountRef::Name("nobody".into());
        match resolve_identity(Some(&nobody), None) {
            Ok(Some(id)) => assert_eq!(id.uid, Uid::from_raw(65534)),
            Ok(None) => panic!("an identity was asked for"),
            Err(e) => assert!(e.contains("privilege"), "{e}"),
        }
        let e =
            resolve_identity(Some(&AccountRef::Name("no-such-user-a2a".into())), None).unwrap_err();
        assert!(e.contains("no such user"), "{e}");
        let e = resolve_identity(Some(&AccountRef::Id(4_000_000)), None).unwrap_err();
        assert!(e.contains("executor.group"), "{e}");
        assert_eq!(resolve_identity(None, None), Ok(None));
    }
}
