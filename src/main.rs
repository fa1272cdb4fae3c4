//! The `a2a-mcp` binary: parse arguments, run, map the outcome to an exit code.

use clap::Parser;

/// mimalloc: measurably less CPU than glibc malloc on the invoke path (docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // No transparent huge pages: the allocator's arena would otherwise be backed in 2 MiB
    // units, which costs an idle server several MiB of memory and buys nothing measurable at
    // this heap size (docs/PERFORMANCE.md). Best effort: older kernels may refuse.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
    // Process-wide hardening before any secret is read (SECURITY.md, "Running commands"):
    // non-dumpable, so agents running as the same user cannot read this process's environment
    // or memory through /proc, nor ptrace it.
    if let Err(e) = a2a_mcp::executor::process::sandbox::harden_hub() {
        eprintln!("warning: {e}; process agents of the same user could read this process's memory");
    }
    let cli = a2a_mcp::cli::Cli::parse();
    // A hub adopts what its agents leave behind (a child subreaper), so it can kill those
    // leftovers and reap them (also what PID 1 in a container must do).
    if cli.runs_agents()
        && let Err(e) = a2a_mcp::executor::process::reaper::adopt_orphans()
    {
        eprintln!("warning: {e}; processes left behind by agents go to init");
    }
    let code = match a2a_mcp::cli::run(cli) {
        a2a_mcp::cli::Exit::Ok => 0,
        a2a_mcp::cli::Exit::Failed(msg) => {
            if !msg.is_empty() {
                eprintln!("error: {msg}");
            }
            1
        }
        a2a_mcp::cli::Exit::Usage(msg) => {
            eprintln!("error: {msg}");
            2
        }
    };
    #[allow(clippy::disallowed_methods)]
    std::process::exit(code);
}
