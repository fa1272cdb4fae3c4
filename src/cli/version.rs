//! `a2a-mcp version [--json]`: what this binary is — product version, the git commit it was
//! built from, the cargo features compiled in, the compiler, target and build profile.
//!
//! The commit and compiler are recorded at build time by `build.rs` (with a fallback for
//! source trees without `.git`, such as the vendored archive of `make vendor`). Needs no
//! configuration and touches nothing: the install script of the release bundle
//! (scripts/install.sh) and operators use it to tell builds apart.

use serde::Serialize;

use super::Exit;

/// The identity of this build.
#[derive(Debug, Serialize)]
pub struct BuildInfo {
    pub name: &'static str,
    pub version: &'static str,
    pub commit: &'static str,
    pub features: Vec<&'static str>,
    pub rustc: &'static str,
    pub target: &'static str,
    pub profile: &'static str,
}

/// The build identity compiled into this binary.
pub fn build_info() -> BuildInfo {
    let features = [
        ("otel", cfg!(feature = "otel")),
        ("postgres", cfg!(feature = "postgres")),
        ("redis", cfg!(feature = "redis")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    BuildInfo {
        name: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        commit: env!("A2A_BUILD_COMMIT"),
        features,
        rustc: env!("A2A_BUILD_RUSTC"),
        target: env!("A2A_BUILD_TARGET"),
        profile: env!("A2A_BUILD_PROFILE"),
    }
}

pub fn run(json: bool) -> Exit {
    let info = build_info();
    if json {
        return match serde_json::to_string_pretty(&info) {
            Ok(s) => {
                println!("{s}");
                Exit::Ok
            }
            Err(e) => Exit::Failed(format!("cannot render the build information: {e}")),
        };
    }
    println!("{} {}", info.name, info.version);
    println!("commit:   {}", info.commit);
    println!(
        "features: {}",
        if info.features.is_empty() {
            "(none)".to_string()
        } else {
            info.features.join(" ")
        }
    );
    println!("rustc:    {}", info.rustc);
    println!("target:   {} ({} profile)", info.target, info.profile);
    Exit::Ok
}
