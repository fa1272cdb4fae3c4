//! Offline and edge installs (issue 17): the release bundle of `make dist` (scripts/dist.sh),
//! its install script (scripts/install.sh) and the vendored source archive of `make vendor`
//! (scripts/vendor.sh), each exercised for real.
//!
//! - `a2a-mcp version --json` names the version, the commit this tree is at, the features and
//!   the compiler.
//! - The bundle's SHA256SUMS cover every shipped file and match them; `install.sh --check`
//!   refuses a changed or an added file; the SBOM (cargo-cyclonedx) lists exactly the crates
//!   the binary is built from — as `cargo metadata` resolves them for its target and features —
//!   with Cargo.lock's checksums.
//! - In a Debian root booted with `systemd-nspawn -b` and no network (the root of the unit's
//!   boot test, scripts/ops-tools.sh): first install, an invocation, an upgrade that keeps
//!   config and state, a broken release rolled back by itself with nothing lost, and
//!   `--rollback` back to the first release and its pre-upgrade snapshot.
//! - The vendored source archive passes `cargo check --offline --locked` inside `unshare -n`
//!   with an empty CARGO_HOME (every crate resolved from vendor/, build scripts and
//!   proc-macros built and run), while the same sources without vendor/ fail there for want
//!   of a network.
//!
//! CI budget: the bundles package the debug binary the suite already built (scripts/dist.sh
//! `--bin`), not a second fat-LTO build (`make dist` builds that). The offline check cannot
//! reuse the suite's compiled dependencies (cargo keys them by source path, and vendor/ is
//! another path): from scratch it costs about 4 CPU-minutes (measured: 3 m 24 s user + 32 s
//! system; 10.6 min wall on a machine loaded 5-fold). It unpacks into a fixed directory under
//! target/, so a second run on the same checkout checks only what changed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::harness::*;

/// A command run to completion with no input.
fn run(cmd: &mut Command) -> CmdOut {
    run_command(cmd, None)
}

fn sha256_file(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    hex::encode(Sha256::digest(&bytes))
}

fn build_info() -> Value {
    let out = run(Command::new(BIN).args(["version", "--json"]));
    assert!(out.ok(), "a2a-mcp version --json: {out}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// scripts/dist.sh on `bin` with a bundle version `label`; the archive's path.
fn make_bundle(bin: &Path, label: Option<&str>, out_dir: &Path) -> PathBuf {
    let mut cmd = Command::new(repo_dir().join("scripts/dist.sh"));
    cmd.arg("--bin").arg(bin).arg("--out").arg(out_dir);
    if let Some(l) = label {
        cmd.args(["--label", l]);
    }
    let out = run(&mut cmd);
    assert!(out.ok(), "scripts/dist.sh: {out}");
    let archive = PathBuf::from(out.stdout.trim());
    assert!(
        archive.is_file(),
        "no archive at {}: {out}",
        archive.display()
    );
    archive
}

/// Unpacks an archive into `into` and returns the one directory it holds.
fn unpack(archive: &Path, into: &Path) -> PathBuf {
    std::fs::create_dir_all(into).unwrap();
    let out = run(Command::new("tar")
        .arg("-C")
        .arg(into)
        .arg("-xzf")
        .arg(archive));
    assert!(out.ok(), "tar: {out}");
    let dirs: Vec<PathBuf> = std::fs::read_dir(into)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "one top directory: {dirs:?}");
    dirs.into_iter().next().unwrap()
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> BTreeSet<String> {
    fn walk(base: &Path, dir: &Path, acc: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, acc);
            } else {
                acc.insert(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut acc = BTreeSet::new();
    walk(dir, dir, &mut acc);
    acc
}

#[test]
fn version_json_names_the_build() {
    let v = build_info();
    assert_eq!(v["name"], "a2a-mcp");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    // The default features of Cargo.toml, which the tests are built with.
    assert_eq!(
        v["features"],
        serde_json::json!(["otel", "postgres", "redis"])
    );
    let rustc = run(Command::new("rustc").arg("-V"));
    assert!(rustc.ok(), "{rustc}");
    assert_eq!(v["rustc"], rustc.stdout.trim(), "{v}");
    assert!(v["target"].as_str().unwrap().contains("linux"), "{v}");
    let head = run(Command::new("git")
        .arg("-C")
        .arg(repo_dir())
        .args(["rev-parse", "HEAD"]));
    if head.ok() {
        assert_eq!(v["commit"], head.stdout.trim(), "{v}");
    } else {
        assert!(v["commit"].as_str().unwrap().len() >= 7, "{v}");
    }
    // The plain form says the same.
    let text = run(Command::new(BIN).arg("version"));
    assert!(text.ok(), "{text}");
    assert!(
        text.stdout.contains(v["commit"].as_str().unwrap()),
        "{text}"
    );
}

#[test]
fn bundle_checksums_and_sbom_match_the_shipped_files() {
    let work = tempfile::tempdir().unwrap();
    let info = build_info();
    let version = info["version"].as_str().unwrap();
    let archive = make_bundle(Path::new(BIN), None, &work.path().join("out"));
    let name = format!("a2a-mcp-{version}-x86_64-linux");
    assert_eq!(
        archive.file_name().unwrap().to_str().unwrap(),
        format!("{name}.tar.gz")
    );
    let sidecar = std::fs::read_to_string(archive.with_extension("gz.sha256")).unwrap();
    assert_eq!(
        sidecar,
        format!("{}  {name}.tar.gz\n", sha256_file(&archive))
    );

    let dir = unpack(&archive, &work.path().join("root"));
    assert_eq!(dir.file_name().unwrap().to_str().unwrap(), name);
    let shipped = files_under(&dir);
    for f in [
        "bin/a2a-mcp",
        "install.sh",
        "systemd/a2a-mcp.service",
        "systemd/a2a-mcp.sysusers",
        "systemd/a2a-mcp.env",
        "catalog/echo.toml",
        "doc/DEPLOYMENT.md",
        "doc/README.md",
        "BUILD.json",
        "VERSION",
        "sbom.cdx.json",
        "SHA256SUMS",
    ] {
        assert!(
            shipped.contains(f),
            "{f} missing from the bundle: {shipped:?}"
        );
    }
    // SHA256SUMS: every other file exactly once, each with its real digest.
    let sums: BTreeMap<String, String> = std::fs::read_to_string(dir.join("SHA256SUMS"))
        .unwrap()
        .lines()
        .map(|l| {
            let (sum, file) = l.split_once("  ").unwrap_or_else(|| panic!("{l:?}"));
            (file.to_string(), sum.to_string())
        })
        .collect();
    let expected: BTreeSet<String> = shipped
        .iter()
        .filter(|f| *f != "SHA256SUMS")
        .cloned()
        .collect();
    assert_eq!(sums.keys().cloned().collect::<BTreeSet<_>>(), expected);
    for (file, sum) in &sums {
        assert_eq!(sha256_file(&dir.join(file)), *sum, "{file}");
    }
    // The shipped binary is the one built, and says what BUILD.json says.
    assert_eq!(
        sha256_file(&dir.join("bin/a2a-mcp")),
        sha256_file(Path::new(BIN))
    );
    let build: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("BUILD.json")).unwrap()).unwrap();
    assert_eq!(build, info);
    for (shipped, source) in [
        ("systemd/a2a-mcp.service", "systemd/a2a-mcp.service"),
        ("catalog/echo.toml", "data/catalog/echo.toml"),
        ("install.sh", "scripts/install.sh"),
    ] {
        assert_eq!(
            sha256_file(&dir.join(shipped)),
            sha256_file(&repo_dir().join(source)),
            "{shipped}"
        );
    }

    // install.sh --check accepts the bundle, and refuses a changed and an added file.
    let check = |d: &Path| run(Command::new(d.join("install.sh")).arg("--check"));
    let out = check(&dir);
    assert!(out.ok(), "install.sh --check: {out}");
    let catalog = dir.join("catalog/echo.toml");
    let original = std::fs::read_to_string(&catalog).unwrap();
    std::fs::write(&catalog, original.replace("Echo", "Ekho")).unwrap();
    let out = check(&dir);
    assert!(
        !out.ok() && out.stderr.contains("catalog/echo.toml"),
        "a changed file: {out}"
    );
    std::fs::write(&catalog, &original).unwrap();
    std::fs::write(dir.join("catalog/extra.toml"), "[[agents]]\n").unwrap();
    let out = check(&dir);
    assert!(
        !out.ok() && out.stderr.contains("catalog/extra.toml"),
        "an added file: {out}"
    );
    std::fs::remove_file(dir.join("catalog/extra.toml")).unwrap();
    assert!(check(&dir).ok());

    sbom_matches_the_binary(&dir.join("sbom.cdx.json"), &build);
}

/// The SBOM names this product at the binary's version and lists exactly the crates cargo
/// resolves for the binary's target and features (normal and build dependencies, no
/// dev-dependencies), each with the checksum Cargo.lock pins.
fn sbom_matches_the_binary(sbom: &Path, build: &Value) {
    let sbom: Value = serde_json::from_str(&std::fs::read_to_string(sbom).unwrap()).unwrap();
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    assert_eq!(sbom["specVersion"], "1.5");
    assert_eq!(sbom["metadata"]["component"]["name"], "a2a-mcp");
    assert_eq!(sbom["metadata"]["component"]["version"], build["version"]);
    let listed: BTreeMap<String, Option<String>> = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let sha = c["hashes"].as_array().and_then(|h| {
                h.iter()
                    .find(|h| h["alg"] == "SHA-256")
                    .and_then(|h| h["content"].as_str().map(str::to_string))
            });
            (
                format!(
                    "{}@{}",
                    c["name"].as_str().unwrap(),
                    c["version"].as_str().unwrap()
                ),
                sha,
            )
        })
        .collect();

    let features: Vec<&str> = build["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let out = run(Command::new("cargo")
        .current_dir(repo_dir())
        .args(["metadata", "--format-version", "1", "--locked"])
        .arg("--filter-platform")
        .arg(build["target"].as_str().unwrap())
        .arg("--no-default-features")
        .arg("--features")
        .arg(features.join(",")));
    assert!(out.ok(), "cargo metadata: {out}");
    let meta: Value = serde_json::from_str(&out.stdout).unwrap();
    let root = meta["resolve"]["root"].as_str().unwrap().to_string();
    let nodes: BTreeMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let mut seen = BTreeSet::new();
    let mut todo = vec![root.as_str()];
    while let Some(id) = todo.pop() {
        for dep in nodes[id]["deps"].as_array().unwrap() {
            // Only what the binary links or builds with: no dev-dependencies.
            let wanted = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null() || k["kind"] == "build");
            let pkg = dep["pkg"].as_str().unwrap();
            if wanted && seen.insert(pkg) {
                todo.push(pkg);
            }
        }
    }
    let packages: BTreeMap<&str, &Value> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p))
        .collect();
    let resolved: BTreeSet<String> = seen
        .iter()
        .map(|id| {
            let p = packages[id];
            format!(
                "{}@{}",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap()
            )
        })
        .collect();
    let in_sbom: BTreeSet<String> = listed.keys().cloned().collect();
    assert_eq!(
        in_sbom.difference(&resolved).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "in the SBOM but not in the binary"
    );
    assert_eq!(
        resolved.difference(&in_sbom).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "in the binary but not in the SBOM"
    );
    assert!(in_sbom.iter().any(|c| c.starts_with("redb@")));
    assert!(
        !in_sbom.iter().any(|c| c.starts_with("rcgen@")),
        "a dev-dependency"
    );

    let lock: toml::Value =
        toml::from_str(&std::fs::read_to_string(repo_dir().join("Cargo.lock")).unwrap()).unwrap();
    let checksums: BTreeMap<String, String> = lock["package"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| {
            let sum = p.get("checksum")?.as_str()?.to_string();
            Some((
                format!(
                    "{}@{}",
                    p["name"].as_str().unwrap(),
                    p["version"].as_str().unwrap()
                ),
                sum,
            ))
        })
        .collect();
    for (component, sha) in &listed {
        assert_eq!(
            sha.as_ref(),
            checksums.get(component),
            "{component}: SBOM hash and Cargo.lock checksum"
        );
    }
}

// -------------------------------------------------------------------------------------------
// Install, upgrade and rollback in a booted container

/// A release whose binary runs (`version`, `migrate`) but never serves: its service exits 1
/// at every start, so it never becomes ready.
fn broken_binary(dir: &Path, info: &Value) -> PathBuf {
    let path = dir.join("a2a-mcp-broken");
    let script = format!(
        "#!/bin/sh\n# Deliberately broken build for the rollback test (tests/it/offline.rs).\n\
         case \"$1\" in\n  version) cat <<'JSON'\n{}\nJSON\n    ;;\n  migrate) echo 'nothing to migrate' ;;\n\
         *) echo 'broken build: cannot serve' >&2; exit 1 ;;\nesac\n",
        serde_json::to_string_pretty(info).unwrap()
    );
    std::fs::write(&path, script).unwrap();
    let out = run(Command::new("chmod").arg("0755").arg(&path));
    assert!(out.ok(), "{out}");
    path
}

fn ops_tool(name: &str) -> PathBuf {
    let p = tools_dir().join("ops/bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: run scripts/ops-tools.sh (or `make test`)",
        p.display()
    );
    p
}

/// Three bundles (a first release, a second one, a broken one) unpacked into a scratch root and
/// handed to a Debian root booted with `systemd-nspawn -b` and no network; the probe unit
/// (systemd/boot-test/offline-probe.sh) installs, invokes, upgrades and rolls back with each
/// bundle's install.sh. The second release is the same binary as the first under another
/// bundle version: the install script tells releases apart by bundle version and binary digest.
#[test]
fn bundle_installs_upgrades_and_rolls_back_in_a_booted_container() {
    let root = tools_dir().join("ops/nspawn-root");
    assert!(
        root.join("lib/systemd/systemd").exists(),
        "{} is missing: run scripts/ops-tools.sh",
        root.display()
    );
    let work = tempfile::tempdir().unwrap();
    let info = build_info();
    let version = info["version"].as_str().unwrap();
    let archives = work.path().join("archives");
    let bundles = work.path().join("bundles");
    let broken = broken_binary(work.path(), &info);
    for (slot, bin, label) in [
        ("first", Path::new(BIN), version.to_string()),
        ("second", Path::new(BIN), format!("{version}-second")),
        ("broken", broken.as_path(), format!("{version}-broken")),
    ] {
        let archive = make_bundle(bin, Some(&label), &archives);
        let dir = unpack(&archive, &work.path().join("unpack").join(slot));
        std::fs::create_dir_all(&bundles).unwrap();
        std::fs::rename(&dir, bundles.join(slot)).unwrap();
    }
    let probe = work.path().join("probe");
    std::fs::create_dir_all(&probe).unwrap();
    let boot = repo_dir().join("systemd/boot-test");
    let machine = format!("a2a-offline-{}", std::process::id());
    let out = run(Command::new("timeout")
        .arg("300")
        .arg(ops_tool("systemd-nspawn"))
        .args([
            "-q",
            "-b",
            "--register=no",
            "--keep-unit",
            "--private-network",
        ])
        .arg(format!("--machine={machine}"))
        .arg("--volatile=overlay")
        .arg("-D")
        .arg(&root)
        .arg(format!("--bind-ro={}:/bundles", bundles.display()))
        .arg(format!(
            "--bind-ro={}:/etc/systemd/system/offline-probe.service",
            boot.join("offline-probe.service").display()
        ))
        .arg(format!(
            "--bind-ro={}:/offline-probe.sh",
            boot.join("offline-probe.sh").display()
        ))
        .arg(format!("--bind={}:/probe", probe.display()))
        .arg("systemd.wants=offline-probe.service"));
    let seen = |name: &str| std::fs::read_to_string(probe.join(name)).unwrap_or_default();
    let context = || {
        let mut s = String::new();
        for f in ["install", "reinstall", "upgrade", "broken", "rollback"] {
            s.push_str(&format!(
                "--- {f} (exit {})\n{}\n",
                seen(&format!("{f}.rc")).trim(),
                seen(&format!("{f}.log"))
            ));
        }
        s.push_str(&format!("--- journal\n{}", seen("journal")));
        s
    };
    assert!(
        out.ok() && probe.join("done").exists(),
        "systemd-nspawn -b: {out}\n{}",
        context()
    );
    let rc = |step: &str| seen(&format!("{step}.rc")).trim().to_string();

    // First install: user, directories, env file, enabled unit, ready, the right binary.
    assert_eq!(rc("install"), "0", "{}", context());
    assert_eq!(seen("env-mode").trim(), "640 root a2a-mcp");
    for line in seen("dir-modes").lines() {
        assert!(line.ends_with(" 700 a2a-mcp"), "{line}");
    }
    assert_eq!(seen("dir-modes").lines().count(), 3);
    assert_eq!(seen("enabled").trim(), "enabled");
    assert!(
        seen("readyz").starts_with("HTTP/1.0 200"),
        "{}",
        seen("readyz")
    );
    let reported: Value = serde_json::from_str(&seen("version.json")).unwrap();
    assert_eq!(reported, info);
    // Idempotent: the same bundle again changes nothing.
    assert_eq!(rc("reinstall"), "0", "{}", context());
    assert!(
        seen("reinstall.log").contains("already installed"),
        "{}",
        context()
    );

    // An invocation through the installed service.
    assert_eq!(seen("ready-after-restart.rc").trim(), "0", "{}", context());
    let invoke = seen("invoke");
    assert!(invoke.contains("\"status\":\"done\""), "{invoke}");
    let id1 = seen("id1").trim().to_string();
    assert!(!id1.is_empty(), "{invoke}");

    // Upgrade: the second release runs, with the config and the state kept.
    assert_eq!(rc("upgrade"), "0", "{}", context());
    let second_link = seen("link-after-upgrade").trim().to_string();
    assert!(
        second_link.contains(&format!("/releases/{version}-second-")),
        "{second_link}"
    );
    assert!(
        seen("id1-after-upgrade").contains(&id1),
        "{}",
        seen("id1-after-upgrade")
    );
    assert!(seen("id1-after-upgrade").starts_with("HTTP/1.0 200"));
    assert_eq!(seen("config-after-upgrade").trim(), "1");
    let id2 = seen("id2").trim().to_string();
    assert!(!id2.is_empty(), "{}", seen("invoke2"));
    assert!(seen("status-after-upgrade").contains(&format!("rollback to: {version}-")));

    // The broken release: rolled back by itself (exit 3) to the second, nothing lost.
    assert_eq!(rc("broken"), "3", "{}", context());
    assert!(
        seen("broken.log").contains("rolled back to"),
        "{}",
        context()
    );
    assert_eq!(seen("link-after-broken").trim(), second_link);
    assert_eq!(seen("active-after-broken").trim(), "active");
    for (name, id) in [("id1-after-broken", &id1), ("id2-after-broken", &id2)] {
        let answer = seen(name);
        assert!(
            answer.starts_with("HTTP/1.0 200") && answer.contains(id.as_str()),
            "{name}: {answer}"
        );
    }

    // --rollback: back to the first release and the store as it was before the upgrade.
    assert_eq!(rc("rollback"), "0", "{}", context());
    let first_link = seen("link-after-rollback").trim().to_string();
    assert!(
        first_link.contains(&format!("/releases/{version}-")) && !first_link.contains("second"),
        "{first_link}"
    );
    assert!(seen("id1-after-rollback").starts_with("HTTP/1.0 200"));
    assert!(
        seen("id2-after-rollback").starts_with("HTTP/1.0 404"),
        "written after the upgrade, so not in the pre-upgrade snapshot: {}",
        seen("id2-after-rollback")
    );
    // Nothing further back to go to.
    assert_eq!(rc("rollback-again"), "1", "{}", seen("rollback-again.log"));
    assert!(seen("rollback-again.log").contains("nothing to roll back to"));
}

// -------------------------------------------------------------------------------------------
// The vendored source archive, built with no network

/// `cargo` as the suite was started with (nextest and cargo set CARGO), else from PATH.
fn cargo_program() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Where the offline check unpacks the archive and keeps its build: fixed paths under the
/// suite's target directory, so a later run on the same checkout finds the dependencies it
/// already checked (cargo keys them by source path) and checks only what changed.
fn vendored_check_dir() -> PathBuf {
    let target = Path::new(BIN).parent().unwrap().parent().unwrap();
    target.join("offline-vendored")
}

#[test]
fn vendored_source_archive_builds_offline_in_a_namespace_without_network() {
    let work = tempfile::tempdir().unwrap();
    let out = run(Command::new(repo_dir().join("scripts/vendor.sh"))
        .arg("--out")
        .arg(work.path().join("out")));
    assert!(out.ok(), "scripts/vendor.sh: {out}");
    let archive = PathBuf::from(out.stdout.trim());
    let stable = vendored_check_dir();
    let _ = std::fs::remove_dir_all(stable.join("src"));
    let src = unpack(&archive, &stable.join("src"));
    assert!(src.join("vendor").is_dir() && src.join(".cargo/config.toml").is_file());
    assert!(!src.join(".git").exists());
    let commit = std::fs::read_to_string(src.join("GIT_COMMIT")).unwrap();
    // tar gives every file the commit's time; the crate's own files get the present, so a
    // check kept from an earlier run cannot take changed sources for checked ones.
    let now = std::time::SystemTime::now();
    for f in files_under(&src) {
        if !f.starts_with("vendor/") {
            let file = std::fs::File::options()
                .append(true)
                .open(src.join(&f))
                .unwrap();
            file.set_modified(now).unwrap();
        }
    }

    // The namespace has no network: the same sources without vendor/ cannot be fetched there.
    let bare = work.path().join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    let copy = run(Command::new("cp")
        .arg("-a")
        .args(["Cargo.toml", "Cargo.lock", "build.rs", "src", "tests"].map(|f| src.join(f)))
        .arg(&bare));
    assert!(copy.ok(), "{copy}");
    let empty_home = |name: &str| {
        let home = work.path().join(name);
        std::fs::create_dir_all(&home).unwrap();
        home
    };
    let fetch = run(Command::new("unshare")
        .arg("-n")
        .arg(cargo_program())
        .args(["fetch", "--locked"])
        .current_dir(&bare)
        .env("CARGO_HOME", empty_home("home-bare"))
        .env("CARGO_NET_RETRY", "0"));
    assert!(
        !fetch.ok(),
        "a fetch from crates.io succeeded with no network: {fetch}"
    );
    assert!(
        fetch.stderr.contains("index.crates.io") || fetch.stderr.contains("crates-io"),
        "fails for want of the registry: {fetch}"
    );

    // The vendored tree builds there (`cargo check`: every crate resolved from vendor/, build
    // scripts and proc-macros compiled and run, every crate type-checked), with an empty
    // CARGO_HOME, so no registry cache can stand in for vendor/.
    let check = run(Command::new("unshare")
        .arg("-n")
        .arg(cargo_program())
        .args(["check", "--offline", "--locked", "--bin", "a2a-mcp"])
        .current_dir(&src)
        .env("CARGO_HOME", empty_home("home-vendored"))
        .env("CARGO_TARGET_DIR", stable.join("target"))
        .env_remove("RUSTC_WRAPPER"));
    assert!(
        check.ok(),
        "cargo check --offline --locked in unshare -n: {check}"
    );
    let checked = check
        .stderr
        .lines()
        .filter(|l| {
            l.trim_start().starts_with("Checking") || l.trim_start().starts_with("Compiling")
        })
        .count();
    eprintln!("offline check: {checked} crates checked or compiled");
    let head = run(Command::new("git")
        .arg("-C")
        .arg(repo_dir())
        .args(["rev-parse", "HEAD"]));
    if head.ok() {
        assert_eq!(
            commit.trim(),
            head.stdout.trim(),
            "GIT_COMMIT of the archive"
        );
    }
}
