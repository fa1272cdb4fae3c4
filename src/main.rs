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
    let cli = a2a_mcp::cli::Cli::parse();
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
