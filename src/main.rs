//! The `a2a-mcp` binary: parse arguments, run, map the outcome to an exit code.

use clap::Parser;

/// mimalloc: measurably less CPU than glibc malloc on the invoke path (docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
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
