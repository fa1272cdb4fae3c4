//! Build identity for `a2a-mcp version --json` (src/cli/version.rs): the git commit and the
//! rustc that built the binary, passed to the crate as `A2A_BUILD_COMMIT` and
//! `A2A_BUILD_RUSTC` (plus the target triple and the profile: `debug`, `release`, `dist`).
//!
//! The commit comes from, in order: the `A2A_GIT_COMMIT` environment variable, `git rev-parse
//! HEAD` in the source tree, or a `GIT_COMMIT` file at its root (the vendored source archive
//! of `make vendor` ships one, as it has no `.git`); otherwise `unknown`. Only the commit and
//! the compiler re-run this script, never an edit of a source file.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    println!("cargo:rerun-if-env-changed=A2A_GIT_COMMIT");
    // Only files that exist: a missing one would make cargo run this script on every build.
    watch(&root.join("GIT_COMMIT"));
    let commit = std::env::var("A2A_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git_commit(&root))
        .or_else(|| {
            std::fs::read_to_string(root.join("GIT_COMMIT"))
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=A2A_BUILD_COMMIT={}", commit.trim());

    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version = Command::new(rustc)
        .arg("-V")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=A2A_BUILD_RUSTC={version}");
    println!(
        "cargo:rustc-env=A2A_BUILD_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
    println!("cargo:rustc-env=A2A_BUILD_PROFILE={}", profile());
}

/// The cargo profile's output directory name (`debug`, `release`, `dist`): OUT_DIR is
/// `<target>/<profile>/build/<pkg>-<hash>/out`. Cargo's PROFILE says only debug or release.
fn profile() -> String {
    std::env::var_os("OUT_DIR")
        .map(PathBuf::from)
        .and_then(|out| {
            out.ancestors()
                .nth(3)
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
        })
        .or_else(|| std::env::var("PROFILE").ok())
        .unwrap_or_default()
}

/// `git rev-parse HEAD`, and the files whose change means a new commit (HEAD, the branch ref,
/// packed refs) registered so the script runs again after a commit or checkout.
fn git_commit(root: &Path) -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"])?;
    let abs = |p: String| {
        let p = PathBuf::from(p);
        if p.is_absolute() { p } else { root.join(p) }
    };
    if let Some(dir) = git(&["rev-parse", "--git-dir"]).map(abs) {
        watch(&dir.join("HEAD"));
    }
    if let Some(common) = git(&["rev-parse", "--git-common-dir"]).map(abs) {
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch(&common.join(head_ref));
        }
        watch(&common.join("packed-refs"));
    }
    Some(commit)
}

fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
