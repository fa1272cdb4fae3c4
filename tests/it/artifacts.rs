//! The operations artifacts, each checked by a real validator and by what no validator knows.
//!
//! - systemd/: `systemd-analyze verify` (silent) and `security --offline=true` (exposure at
//!   most 2.0) on the unit as `make install` lays it out, `systemd-sysusers` on the user entry,
//!   the environment file accepted by the real binary's `check-config`, and a boot of a minimal
//!   Debian root with `systemd-nspawn -b` in which the real unit serves `/healthz`.
//! - Dockerfile: hadolint.
//! - k8s/ and monitoring/: `kubectl kustomize` (base, Postgres overlay, monitoring),
//!   `kubernetes-validate --strict`, checkov (no failed check; every skip justified), and the
//!   project's semantic checks (selectors, probes, ports, sizes, namespace, HPA only in the
//!   overlay) against the real binary's endpoints; the runbook's restore pod
//!   (k8s/restore/) fits the StatefulSet and the binary takes its arguments; the real binary
//!   run with the ConfigMap admits every Service DNS name as a Host.
//! - monitoring/: `promtool check rules`, `promtool test rules` (every alert fires and stays
//!   silent in a unit test), the PrometheusRule equal to the plain rule file, the dashboard's
//!   PromQL checked by promtool, runbook links that resolve, and every metric named by an alert
//!   or a panel present on the live `/metrics` of the real binary, which `promtool check
//!   metrics` accepts.
//! - Supply chain: `cargo deny check licenses bans sources` against deny.toml (licenses
//!   actually present, `bincode` banned, crates.io only), with a negative control.
//! - A negative control: each validator, run the way these tests run it, rejects a known-bad
//!   input, so a silent pass means something.
//!
//! The validators are pinned and installed into .tools/ops/ by scripts/ops-tools.sh (run by
//! `make test` through scripts/test-tools.sh); cargo-deny into .tools/cargo-deny/ by
//! scripts/test-tools.sh.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::harness::*;

// -------------------------------------------------------------------------------------------
// Tools

fn ops_tool(name: &str) -> PathBuf {
    let p = tools_dir().join("ops/bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: run scripts/ops-tools.sh (or `make test`) to install the validators",
        p.display()
    );
    p
}

fn ops_python() -> PathBuf {
    let p = tools_dir().join("ops/venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/ops-tools.sh (or `make test`)",
        p.display()
    );
    p
}

fn repo(path: &str) -> PathBuf {
    repo_dir().join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// YAML (one or more documents) to JSON values, with PyYAML from the validators' venv.
fn yaml_docs(text: &str) -> Vec<Value> {
    let out = run_command(
        Command::new(ops_python()).args([
            "-c",
            "import sys, json, yaml\n\
             docs = [d for d in yaml.safe_load_all(sys.stdin) if d is not None]\n\
             json.dump(docs, sys.stdout)",
        ]),
        Some(text),
    );
    assert!(out.ok(), "YAML does not parse: {out}");
    serde_json::from_str::<Vec<Value>>(&out.stdout).unwrap()
}

fn yaml_file(path: &str) -> Value {
    let mut docs = yaml_docs(&read(path));
    assert_eq!(docs.len(), 1, "{path}: expected one YAML document");
    docs.remove(0)
}

/// `kubectl kustomize DIR`, failing on any error or warning.
fn kustomize(dir: &str) -> String {
    let out = run_command(
        Command::new(ops_tool("kubectl")).args(["kustomize", &repo(dir).display().to_string()]),
        None,
    );
    assert!(
        out.ok() && out.stderr.trim().is_empty(),
        "kubectl kustomize {dir}: {out}"
    );
    assert!(!out.stdout.trim().is_empty(), "{dir} renders nothing");
    out.stdout
}

fn write_temp(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

// -------------------------------------------------------------------------------------------
// systemd

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if kind.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// A file-system root for `systemd-analyze --root`: the system's own units (targets the unit
/// orders itself after), the real binary at the unit's ExecStart path, and the unit.
fn systemd_root(unit_text: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("sysinit.target").exists())
        .expect("the system's systemd units (sysinit.target)");
    copy_tree(units, &root.path().join("usr/lib/systemd/system"));
    let bin_dir = root.path().join("usr/local/bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let bin = bin_dir.join("a2a-mcp");
    if std::fs::hard_link(BIN, &bin).is_err() {
        std::fs::copy(BIN, &bin).unwrap();
    }
    let etc = root.path().join("etc/systemd/system");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("a2a-mcp.service"), unit_text).unwrap();
    root
}

fn systemd_verify(unit_text: &str) -> CmdOut {
    let root = systemd_root(unit_text);
    let unit = root.path().join("etc/systemd/system/a2a-mcp.service");
    run_command(
        Command::new(ops_tool("systemd-analyze"))
            .arg("verify")
            .arg(format!("--root={}", root.path().display()))
            .arg(&unit),
        None,
    )
}

/// `systemd-analyze security --offline=true`: the overall exposure (0.0 best, 10.0 worst).
fn systemd_exposure(unit_text: &str) -> (f64, CmdOut) {
    let dir = tempfile::tempdir().unwrap();
    let unit = write_temp(dir.path(), "a2a-mcp.service", unit_text);
    let out = run_command(
        Command::new(ops_tool("systemd-analyze"))
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&unit),
        None,
    );
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("Overall exposure level for a2a-mcp.service:"))
        .unwrap_or_else(|| panic!("no exposure line: {out}"))
        .to_string();
    let score = line
        .split_once("a2a-mcp.service:")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    (score, out)
}

/// `make install DESTDIR=root` with the test's binary: the layout an operator gets, plus the
/// system's own units for `systemd-analyze --root`.
fn installed_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let out = run_command(
        Command::new("make")
            .current_dir(repo_dir())
            .arg("-s")
            .arg("install")
            .arg(format!("DESTDIR={}", root.path().display()))
            .arg(format!("BIN={BIN}")),
        None,
    );
    assert!(out.ok(), "make install DESTDIR=...: {out}");
    let units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("sysinit.target").exists())
        .expect("the system's systemd units (sysinit.target)");
    copy_tree(units, &root.path().join("usr/lib/systemd/system"));
    root
}

#[test]
fn systemd_unit_installs_and_verifies_without_a_word() {
    let root = installed_root();
    let unit = root.path().join("etc/systemd/system/a2a-mcp.service");
    let out = run_command(
        Command::new(ops_tool("systemd-analyze"))
            .arg("verify")
            .arg(format!("--root={}", root.path().display()))
            .arg(&unit),
        None,
    );
    assert!(
        out.ok() && out.all().trim().is_empty(),
        "systemd-analyze verify must print nothing: {out}"
    );
    // The installed sysusers entry creates the service user the unit runs as.
    let out = run_command(
        Command::new("systemd-sysusers").arg(format!("--root={}", root.path().display())),
        None,
    );
    assert!(out.ok(), "systemd-sysusers: {out}");
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("a2a-mcp:"))
        .unwrap_or_else(|| panic!("no a2a-mcp user in {passwd}"));
    let fields: Vec<&str> = user.split(':').collect();
    let uid: u32 = fields[2].parse().unwrap();
    assert!(uid > 0 && uid < 1000, "a system uid: {user}");
    assert_eq!(fields[5], "/var/lib/a2a-mcp");
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    assert!(unit_text.lines().any(|l| l.trim() == "User=a2a-mcp"));
    // The config and catalog landed where the unit looks for them.
    assert!(root.path().join("etc/a2a-mcp/a2a-mcp.env").exists());
    assert!(root.path().join("etc/a2a-mcp/catalog/echo.toml").exists());
    assert!(root.path().join("usr/local/bin/a2a-mcp").exists());
}

/// Boots a minimal Debian root (scripts/ops-tools.sh builds it) with `systemd-nspawn -b`, the
/// unit, binary, config and user installed by `make install` bind-mounted in, and a probe unit
/// (systemd/boot-test/) that checks the running service from inside: the real systemd applies
/// the whole sandbox (user, namespaces, syscall filter) to the real binary.
#[test]
fn systemd_unit_boots_in_a_container_and_serves_healthz() {
    let root = tools_dir().join("ops/nspawn-root");
    assert!(
        root.join("lib/systemd/systemd").exists(),
        "{} is missing: run scripts/ops-tools.sh",
        root.display()
    );
    let stage = tempfile::tempdir().unwrap();
    let out = run_command(
        Command::new("make")
            .current_dir(repo_dir())
            .arg("-s")
            .arg("install")
            .arg(format!("DESTDIR={}", stage.path().display()))
            .arg(format!("BIN={BIN}")),
        None,
    );
    assert!(out.ok(), "make install: {out}");
    let probe = tempfile::tempdir().unwrap();
    let s = stage.path().display().to_string();
    let binds = [
        format!("--bind-ro={s}/usr/local/bin/a2a-mcp:/usr/local/bin/a2a-mcp"),
        format!(
            "--bind-ro={s}/etc/systemd/system/a2a-mcp.service:/etc/systemd/system/a2a-mcp.service"
        ),
        format!("--bind-ro={s}/usr/lib/sysusers.d/a2a-mcp.conf:/usr/lib/sysusers.d/a2a-mcp.conf"),
        format!("--bind-ro={s}/etc/a2a-mcp:/etc/a2a-mcp"),
        format!(
            "--bind-ro={}:/etc/systemd/system/a2a-probe.service",
            repo("systemd/boot-test/a2a-probe.service").display()
        ),
        format!(
            "--bind-ro={}:/a2a-probe.sh",
            repo("systemd/boot-test/a2a-probe.sh").display()
        ),
        format!("--bind={}:/probe", probe.path().display()),
    ];
    // No systemd on the host to register with; a private network so the container's ports
    // cannot collide with anything; a volatile overlay keeps the root clean.
    let out = run_command(
        Command::new("timeout")
            .arg("120")
            .arg(ops_tool("systemd-nspawn"))
            .args([
                "-q",
                "-b",
                "--register=no",
                "--keep-unit",
                "--private-network",
            ])
            .arg("--volatile=overlay")
            .arg("-D")
            .arg(&root)
            .args(&binds)
            .arg("systemd.wants=a2a-probe.service"),
        None,
    );
    let seen = |name: &str| std::fs::read_to_string(probe.path().join(name)).unwrap_or_default();
    assert!(
        out.ok(),
        "systemd-nspawn -b: {out}\njournal of a2a-mcp:\n{}",
        seen("journal")
    );
    let healthz = seen("healthz");
    assert!(
        healthz.starts_with("HTTP/1.0 200") && healthz.contains("\"ok\":true"),
        "/healthz inside the container: {healthz:?}\njournal:\n{}",
        seen("journal")
    );
    assert_eq!(seen("user").trim(), "a2a-mcp");
    assert!(
        seen("state").contains("SubState=running"),
        "{}",
        seen("state")
    );
    let stop = seen("stop");
    assert!(
        stop.contains("Result=success") && stop.contains("ExecMainStatus=0"),
        "graceful stop: {stop}\n{}",
        seen("journal")
    );
    // The live score, with systemd itself evaluating the running unit.
    let security = seen("security");
    let score: f64 = security
        .lines()
        .find(|l| l.contains("Overall exposure level for a2a-mcp.service:"))
        .and_then(|l| l.split_once("a2a-mcp.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no live exposure: {security}"));
    assert!(score <= 2.0, "live exposure {score}: {security}");
}

#[test]
fn systemd_unit_exposure_is_at_most_2() {
    let (score, out) = systemd_exposure(&read("systemd/a2a-mcp.service"));
    assert!(out.ok(), "{out}");
    assert!(
        score <= 2.0,
        "exposure {score} > 2.0; the unprotected items:\n{}",
        out.stdout
            .lines()
            .filter(|l| l.starts_with('✗'))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn systemd_unit_has_the_required_settings() {
    let unit = read("systemd/a2a-mcp.service");
    let settings: BTreeMap<String, Vec<String>> = unit
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .fold(BTreeMap::new(), |mut m, (k, v)| {
            m.entry(k.trim().to_string())
                .or_default()
                .push(v.trim().to_string());
            m
        });
    let one = |k: &str| -> &str {
        settings
            .get(k)
            .and_then(|v| v.last())
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{k}= missing from the unit"))
    };
    assert_eq!(one("ExecStart"), "/usr/local/bin/a2a-mcp serve");
    assert_eq!(one("StateDirectory"), "a2a-mcp");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("CapabilityBoundingSet"), "");
    assert_eq!(one("Restart"), "on-failure");
    let filters = &settings["SystemCallFilter"];
    assert!(
        filters.iter().any(|f| f == "@system-service"),
        "{filters:?}"
    );
    assert!(
        filters.iter().any(|f| f.starts_with("~@privileged")),
        "{filters:?}"
    );
    assert!(one("LimitNOFILE").parse::<u64>().unwrap() >= 65536);
    assert!(
        settings.contains_key("User") || one("DynamicUser") == "yes",
        "a dedicated user or DynamicUser"
    );
    // The graceful stop: the hub's drain (A2A_SHUTDOWN_GRACE in the env file) fits in
    // TimeoutStopSec, so systemd does not SIGKILL a draining hub.
    let stop = humantime::parse_duration(one("TimeoutStopSec")).unwrap();
    let env = env_file_settings(&read("systemd/a2a-mcp.env"));
    let grace = env
        .active
        .get("A2A_SHUTDOWN_GRACE")
        .map(|v| humantime::parse_duration(v).unwrap())
        .unwrap_or(std::time::Duration::from_secs(10));
    assert!(grace < stop, "A2A_SHUTDOWN_GRACE {grace:?} >= {stop:?}");
}

// -------------------------------------------------------------------------------------------
// Settings named by the artifacts

/// Environment variable names the binary reads today (its settings table), with `<ENV>_FILE`
/// for secrets.
fn known_env_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for s in a2a_mcp::config::SETTINGS {
        for name in s.env {
            names.insert(name.to_string());
            if s.secret {
                names.insert(format!("{name}_FILE"));
            }
        }
    }
    assert!(names.contains("METRICS_PORT"), "{names:?}");
    names
}

/// Settings the artifacts may already name before the binary reads them (issue text: TLS,
/// backends, backups, tracing). Anything else unknown is a typo.
const UPCOMING: &[&str] = &[
    "A2A_TLS_CERT",
    "A2A_TLS_KEY",
    "A2A_BACKUP_DIR",
    "A2A_BACKUP_INTERVAL",
    "A2A_BACKUP_RETENTION_DAYS",
    "POSTGRES_HOST",
    "POSTGRES_PORT",
    "POSTGRES_DB",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_PASSWORD_FILE",
    "REDIS_HOST",
    "REDIS_PORT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

fn assert_known_names<'a>(what: &str, names: impl IntoIterator<Item = &'a String>) {
    let known = known_env_names();
    for name in names {
        assert!(
            known.contains(name) || UPCOMING.contains(&name.as_str()),
            "{what}: {name} is neither a setting of the binary nor an announced one"
        );
    }
}

struct EnvFile {
    active: BTreeMap<String, String>,
    commented: BTreeSet<String>,
}

/// KEY=VALUE lines; `#KEY=VALUE` lines are documented examples.
fn env_file_settings(text: &str) -> EnvFile {
    let mut active = BTreeMap::new();
    let mut commented = BTreeSet::new();
    let is_key = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    };
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix('#') {
            if let Some((k, _)) = rest.split_once('=')
                && is_key(k)
            {
                commented.insert(k.to_string());
            }
        } else if let Some((k, v)) = line.split_once('=') {
            assert!(is_key(k), "not a KEY=VALUE line: {line:?}");
            active.insert(k.to_string(), v.to_string());
        }
    }
    EnvFile { active, commented }
}

/// `a2a-mcp check-config` with exactly `env`: the binary accepts the configuration.
fn check_config(env: &BTreeMap<String, String>) -> String {
    let mut cmd = Command::new(BIN);
    cmd.arg("check-config")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env);
    let out = run_command(&mut cmd, None);
    assert!(out.ok(), "check-config refuses {env:?}: {out}");
    out.stdout
}

#[test]
fn systemd_environment_is_accepted_by_the_binary() {
    let unit = read("systemd/a2a-mcp.service");
    let mut env: BTreeMap<String, String> = unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Environment="))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let file = env_file_settings(&read("systemd/a2a-mcp.env"));
    assert_known_names(
        "systemd/a2a-mcp.env",
        file.active.keys().chain(&file.commented),
    );
    assert_known_names("systemd/a2a-mcp.service", env.keys());
    env.extend(file.active.clone());
    let shown = check_config(&env);
    assert!(
        shown.contains("\"production\"") && shown.contains("/var/lib/a2a-mcp/state"),
        "{shown}"
    );
}

// -------------------------------------------------------------------------------------------
// Dockerfile

#[test]
fn dockerfile_passes_hadolint() {
    let out = run_command(
        Command::new(ops_tool("hadolint"))
            .args(["--no-color", "--failure-threshold", "style"])
            .arg(repo("Dockerfile")),
        None,
    );
    assert!(out.ok() && out.all().trim().is_empty(), "hadolint: {out}");
    let text = read("Dockerfile");
    for needle in [
        "HEALTHCHECK",
        "VOLUME [\"/data\"]",
        "USER 65532:65532",
        "AS build",
    ] {
        assert!(text.contains(needle), "Dockerfile lacks {needle}");
    }
}

// -------------------------------------------------------------------------------------------
// Kubernetes: render, schemas, checkov

const RENDERED: &[&str] = &["k8s/base", "k8s/overlays/postgres", "monitoring"];

#[test]
fn kustomize_renders_base_overlay_and_monitoring() {
    for dir in RENDERED {
        let docs = yaml_docs(&kustomize(dir));
        assert!(docs.len() >= 2, "{dir}: {docs:?}");
    }
}

#[test]
fn kubernetes_validate_strict_accepts_every_object() {
    let tmp = tempfile::tempdir().unwrap();
    for dir in RENDERED {
        let file = write_temp(tmp.path(), "rendered.yaml", &kustomize(dir));
        let out = run_command(
            Command::new(ops_tool("kubernetes-validate"))
                .args(["--strict", "--quiet"])
                .arg(&file),
            None,
        );
        assert!(out.ok(), "kubernetes-validate --strict {dir}: {out}");
        // Only the Prometheus Operator kinds have no bundled schema (their content is checked
        // by promtool and by the tests below); anything else printed is a finding.
        for line in out.all().lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                line.contains("Couldn't find schema for kind PrometheusRule")
                    || line.contains("Couldn't find schema for kind ServiceMonitor"),
                "kubernetes-validate {dir}: {line}"
            );
        }
    }
}

/// checkov on a rendered file: (passed, failed, skipped with their justifications).
fn checkov(framework: &str, file: &Path) -> (u64, u64, Vec<(String, String)>, CmdOut) {
    let out = run_command(
        Command::new(ops_tool("checkov"))
            .args(["--framework", framework, "--skip-download", "--quiet"])
            .args(["--output", "json", "--file"])
            .arg(file)
            .current_dir(file.parent().unwrap())
            .env("BC_SKIP_MAPPING", "TRUE"),
        None,
    );
    let report: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("checkov output is not JSON ({e}): {out}"));
    let summary = &report["summary"];
    assert_eq!(summary["parsing_errors"], 0, "{out}");
    let skipped = report["results"]["skipped_checks"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    (
                        c["check_id"].as_str().unwrap_or("").to_string(),
                        c["check_result"]["suppress_comment"]
                            .as_str()
                            .unwrap_or("")
                            .to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (
        summary["passed"].as_u64().unwrap_or(0),
        summary["failed"].as_u64().unwrap_or(u64::MAX),
        skipped,
        out,
    )
}

#[test]
fn checkov_passes_the_dockerfile() {
    let (passed, failed, skipped, out) = checkov("dockerfile", &repo("Dockerfile"));
    assert_eq!(failed, 0, "checkov Dockerfile: {out}");
    assert!(passed >= 20 && skipped.is_empty(), "{out}");
}

#[test]
fn checkov_finds_no_failed_check_and_every_skip_is_justified() {
    let tmp = tempfile::tempdir().unwrap();
    for dir in ["k8s/base", "k8s/overlays/postgres"] {
        let file = write_temp(tmp.path(), "rendered.yaml", &kustomize(dir));
        let (passed, failed, skipped, out) = checkov("kubernetes", &file);
        let failures: Vec<String> = serde_json::from_str::<Value>(&out.stdout).unwrap()["results"]
            ["failed_checks"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| format!("{} {} ({})", c["check_id"], c["check_name"], c["resource"]))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(failed, 0, "checkov {dir}: {failures:#?}");
        assert!(passed >= 50, "checkov {dir} ran only {passed} checks");
        for (id, why) in &skipped {
            assert!(
                why.len() >= 30,
                "{dir}: skip of {id} without a real reason: {why:?}"
            );
        }
    }
}

// -------------------------------------------------------------------------------------------
// Kubernetes: what no tool checks

fn kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn named<'a>(docs: &'a [Value], kind_: &str, name: &str) -> &'a Value {
    kind(docs, kind_)
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind_} {name}"))
}

/// `sub` ⊆ `labels` (label selectors match).
fn selects(sub: &Value, labels: &Value) -> bool {
    sub.as_object()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| &labels[k] == v))
}

/// A generated object's name starts with `base` and is `base` or `base-<hash>`.
fn generated_name_is(name: &str, base: &str) -> bool {
    name == base
        || name
            .strip_prefix(base)
            .and_then(|r| r.strip_prefix('-'))
            .is_some_and(|h| h.len() == 10 && h.chars().all(|c| c.is_ascii_alphanumeric()))
}

fn config_env(docs: &[Value]) -> BTreeMap<String, String> {
    let cm = kind(docs, "ConfigMap")
        .into_iter()
        .find(|d| generated_name_is(d["metadata"]["name"].as_str().unwrap(), "a2a-mcp-config"))
        .expect("ConfigMap a2a-mcp-config");
    cm["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

fn quantity_bytes(q: &str) -> u64 {
    let (num, unit) = q.split_at(q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len()));
    let n: u64 = num.parse().unwrap();
    n * match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        other => panic!("unit {other} in {q}"),
    }
}

/// Resolves a probe's or service's port (name or number) against the container's ports.
fn container_port(container: &Value, port: &Value) -> u64 {
    match port {
        Value::Number(n) => n.as_u64().unwrap(),
        Value::String(name) => container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name.as_str())
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port named {name}")),
        other => panic!("port {other}"),
    }
}

/// Is `path` on a writable volume of the container (the root file system is read-only)?
fn writable_mount<'a>(container: &'a Value, path: &str) -> &'a Value {
    container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            let at = m["mountPath"].as_str().unwrap();
            (path == at || path.starts_with(&format!("{at}/"))) && m["readOnly"] != true
        })
        .unwrap_or_else(|| panic!("{path} is not on a writable volume"))
}

/// The checks shared by the StatefulSet and the Deployment; returns the ops port's paths.
fn check_workload(docs: &[Value], workload: &Value, what: &str) {
    let spec = &workload["spec"];
    let pod = &spec["template"];
    let labels = &pod["metadata"]["labels"];
    assert!(
        selects(&spec["selector"]["matchLabels"], labels),
        "{what}: selector does not match the pod labels"
    );
    assert!(
        spec["revisionHistoryLimit"].as_u64().unwrap_or(0) >= 2,
        "{what}: keep revisions for `kubectl rollout undo`"
    );
    let pod_spec = &pod["spec"];
    let containers = pod_spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "{what}");
    let c = &containers[0];
    let env = config_env(docs);

    // Resources: the checklist's 500m / 512Mi.
    for side in ["requests", "limits"] {
        assert_eq!(c["resources"][side]["cpu"], "500m", "{what} {side}");
        assert_eq!(c["resources"][side]["memory"], "512Mi", "{what} {side}");
    }

    // Ports: the config's STREAM_PORT / METRICS_PORT are the container ports, on all
    // interfaces (a probe cannot reach 127.0.0.1 inside the pod).
    assert_eq!(env["METRICS_PORT"], "3000");
    assert_eq!(env["STREAM_PORT"], "8787");
    assert_eq!(env["METRICS_HOST"], "0.0.0.0");
    assert_eq!(env["STREAM_HOST"], "0.0.0.0");
    assert_eq!(container_port(c, &Value::from("ops")), 3000);
    assert_eq!(container_port(c, &Value::from("api")), 8787);

    // Probes: liveness /healthz, readiness /readyz, a startup probe; all on the ops port.
    let probe = |name: &str| -> (String, u64) {
        let p = &c[name]["httpGet"];
        assert!(p.is_object(), "{what}: {name} must be an httpGet probe");
        (
            p["path"].as_str().unwrap().to_string(),
            container_port(c, &p["port"]),
        )
    };
    assert_eq!(probe("livenessProbe"), ("/healthz".into(), 3000), "{what}");
    assert_eq!(probe("readinessProbe"), ("/readyz".into(), 3000), "{what}");
    let (startup_path, startup_port) = probe("startupProbe");
    assert!(["/healthz", "/readyz"].contains(&startup_path.as_str()));
    assert_eq!(startup_port, 3000);

    // Graceful termination: the drain fits in the grace period, after the preStop pause.
    let grace = humantime::parse_duration(&env["A2A_SHUTDOWN_GRACE"]).unwrap();
    let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    let period = pod_spec["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace.as_secs() + pre_stop < period,
        "{what}: {grace:?} drain + {pre_stop}s preStop >= {period}s grace period"
    );

    // Security: non-root, read-only root, no privilege escalation, no capabilities, seccomp.
    let sc = &c["securityContext"];
    let psc = &pod_spec["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
    assert_eq!(
        sc["capabilities"]["drop"],
        serde_json::json!(["ALL"]),
        "{what}"
    );
    assert!(
        sc["runAsNonRoot"] == true || psc["runAsNonRoot"] == true,
        "{what}"
    );
    let uid = sc["runAsUser"]
        .as_u64()
        .or(psc["runAsUser"].as_u64())
        .unwrap();
    assert!(uid >= 10000, "{what}: uid {uid}");
    // The image's user (Dockerfile USER) is the pod's user.
    assert!(read("Dockerfile").contains(&format!("USER {uid}:{uid}")));
    assert!(
        sc["seccompProfile"]["type"] == "RuntimeDefault"
            || psc["seccompProfile"]["type"] == "RuntimeDefault",
        "{what}"
    );
    assert_eq!(pod_spec["automountServiceAccountToken"], false, "{what}");

    // Paths of the config live on the right volumes.
    writable_mount(c, &env["A2A_DATA_DIR"]);
    writable_mount(c, &env["A2A_BACKUP_DIR"]);
    writable_mount(c, "/tmp");
    let volumes = pod_spec["volumes"].as_array().unwrap();
    let volume = |mount_path: &str| -> &Value {
        let m = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == mount_path)
            .unwrap_or_else(|| panic!("{what}: nothing mounted at {mount_path}"));
        volumes
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap_or_else(|| panic!("{what}: no volume {}", m["name"]))
    };
    let catalog = volume(&env["A2A_CATALOG_DIR"]);
    let catalog_cm = catalog["configMap"]["name"].as_str().unwrap();
    assert!(generated_name_is(catalog_cm, "a2a-mcp-catalog"));
    named(docs, "ConfigMap", catalog_cm);
    let token_file = Path::new(&env["STREAM_TOKEN_FILE"]);
    let secrets = volume(token_file.parent().unwrap().to_str().unwrap());
    let secret = named(
        docs,
        "Secret",
        secrets["secret"]["secretName"].as_str().unwrap(),
    );
    let key = token_file.file_name().unwrap().to_str().unwrap();
    assert!(
        secret["data"].get(key).is_some() || secret["stringData"].get(key).is_some(),
        "{what}: secret has no key {key}"
    );
    for from in c["envFrom"].as_array().unwrap() {
        named(
            docs,
            "ConfigMap",
            from["configMapRef"]["name"].as_str().unwrap(),
        );
    }

    // Services select these pods and reach real container ports: the API on 8787 through
    // the LoadBalancer, the ops port 3000 on a ClusterIP.
    let services = kind(docs, "Service");
    for s in &services {
        assert!(
            selects(&s["spec"]["selector"], labels),
            "{what}: Service {} selects no pod",
            s["metadata"]["name"]
        );
        for p in s["spec"]["ports"].as_array().unwrap() {
            container_port(c, &p["targetPort"]);
        }
    }
    let api = named(docs, "Service", "a2a-mcp");
    assert_eq!(api["spec"]["type"], "LoadBalancer");
    assert_eq!(
        container_port(c, &api["spec"]["ports"][0]["targetPort"]),
        8787
    );
    assert_eq!(api["spec"]["ports"][0]["port"], 8787);
    let ops = named(docs, "Service", "a2a-mcp-ops");
    assert_eq!(ops["spec"]["type"], "ClusterIP");
    assert_eq!(
        container_port(c, &ops["spec"]["ports"][0]["targetPort"]),
        3000
    );

    // NetworkPolicy: these pods; 8787 open; 3000 only from the monitoring namespace.
    let np = named(docs, "NetworkPolicy", "a2a-mcp");
    assert!(selects(&np["spec"]["podSelector"]["matchLabels"], labels));
    let mut seen_ops = false;
    for rule in np["spec"]["ingress"].as_array().unwrap() {
        for p in rule["ports"].as_array().unwrap() {
            let port = container_port(c, &p["port"]);
            if port == 3000 {
                seen_ops = true;
                let from = rule["from"].as_array().expect("3000 must name its sources");
                assert_eq!(from.len(), 1, "{what}: {from:?}");
                assert_eq!(
                    from[0]["namespaceSelector"]["matchLabels"],
                    serde_json::json!({"kubernetes.io/metadata.name": "monitoring"})
                );
                assert!(from[0].get("podSelector").is_none() && from[0].get("ipBlock").is_none());
            }
        }
    }
    assert!(seen_ops, "{what}: port 3000 has no ingress rule");

    let pdb = named(docs, "PodDisruptionBudget", "a2a-mcp");
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], labels));
}

fn check_namespace(docs: &[Value], what: &str) {
    assert_eq!(kind(docs, "Namespace").len(), 1, "{what}");
    assert_eq!(named(docs, "Namespace", "a2a-mcp")["kind"], "Namespace");
    for d in docs.iter().filter(|d| d["kind"] != "Namespace") {
        assert_eq!(
            d["metadata"]["namespace"], "a2a-mcp",
            "{what}: {} {} outside a2a-mcp",
            d["kind"], d["metadata"]["name"]
        );
    }
}

#[test]
fn k8s_base_is_one_statefulset_on_a_5gi_volume() {
    let docs = yaml_docs(&kustomize("k8s/base"));
    check_namespace(&docs, "base");
    assert!(kind(&docs, "Deployment").is_empty());
    assert!(
        kind(&docs, "HorizontalPodAutoscaler").is_empty(),
        "the embedded store cannot scale out: no HPA in the base"
    );
    let sts = named(&docs, "StatefulSet", "a2a-mcp");
    assert_eq!(sts["spec"]["replicas"], 1);
    check_workload(&docs, sts, "base StatefulSet");
    let headless = named(
        &docs,
        "Service",
        sts["spec"]["serviceName"].as_str().unwrap(),
    );
    assert_eq!(headless["spec"]["clusterIP"], "None");
    let claims = sts["spec"]["volumeClaimTemplates"].as_array().unwrap();
    assert_eq!(claims.len(), 1);
    let claim = &claims[0];
    assert_eq!(
        quantity_bytes(
            claim["spec"]["resources"]["requests"]["storage"]
                .as_str()
                .unwrap()
        ),
        5 << 30
    );
    assert_eq!(
        claim["spec"]["accessModes"],
        serde_json::json!(["ReadWriteOnce"])
    );
    let c = &sts["spec"]["template"]["spec"]["containers"][0];
    let env = config_env(&docs);
    assert_eq!(env["A2A_STORE"], "redb");
    // The store lives on the claim, not on an emptyDir.
    assert_eq!(
        writable_mount(c, &env["A2A_DATA_DIR"])["name"],
        claim["metadata"]["name"]
    );
    assert_eq!(
        named(&docs, "PodDisruptionBudget", "a2a-mcp")["spec"]["maxUnavailable"],
        0
    );
}

#[test]
fn k8s_overlay_is_a_deployment_scaled_2_to_10() {
    let docs = yaml_docs(&kustomize("k8s/overlays/postgres"));
    check_namespace(&docs, "overlay");
    assert!(
        kind(&docs, "StatefulSet").is_empty(),
        "the overlay replaces the StatefulSet"
    );
    let deploy = named(&docs, "Deployment", "a2a-mcp");
    check_workload(&docs, deploy, "overlay Deployment");
    assert!(
        deploy["spec"].get("replicas").is_none(),
        "the HPA owns the replica count"
    );
    let hpas = kind(&docs, "HorizontalPodAutoscaler");
    assert_eq!(hpas.len(), 1);
    let hpa = hpas[0];
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    assert_eq!(hpa["spec"]["maxReplicas"], 10);
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "a2a-mcp");
    let env = config_env(&docs);
    assert_eq!(env["A2A_STORE"], "postgres");
    for k in [
        "POSTGRES_HOST",
        "POSTGRES_PORT",
        "POSTGRES_DB",
        "REDIS_HOST",
        "REDIS_PORT",
    ] {
        assert!(env.contains_key(k), "overlay config lacks {k}");
    }
    assert_eq!(
        named(&docs, "PodDisruptionBudget", "a2a-mcp")["spec"]["maxUnavailable"],
        1
    );
    // No PVC for the store: the state is in Postgres.
    let c = &deploy["spec"]["template"]["spec"]["containers"][0];
    let data = writable_mount(c, &env["A2A_DATA_DIR"]);
    let volumes = deploy["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    let v = volumes.iter().find(|v| v["name"] == data["name"]).unwrap();
    assert!(v["emptyDir"].is_object(), "{v}");
}

#[test]
fn k8s_config_names_only_real_settings_and_the_binary_accepts_it() {
    let base = config_env(&yaml_docs(&kustomize("k8s/base")));
    let overlay = config_env(&yaml_docs(&kustomize("k8s/overlays/postgres")));
    assert_known_names("k8s base ConfigMap", base.keys());
    assert_known_names("k8s overlay ConfigMap", overlay.keys());
    // The base runs on today's binary as is (paths made local: they are the pod's).
    let dir = tempfile::tempdir().unwrap();
    let token = write_temp(dir.path(), "STREAM_TOKEN", "");
    let mut env = base.clone();
    env.insert("STREAM_TOKEN_FILE".into(), token.display().to_string());
    let shown = check_config(&env);
    assert!(
        shown.contains("metrics_port") && shown.contains("3000"),
        "{shown}"
    );
    // The catalog of the ConfigMap loads.
    let out = run_command(
        Command::new(BIN)
            .env_clear()
            .arg("--data-dir")
            .arg(dir.path().join("state"))
            .arg("--catalog-dir")
            .arg(repo("k8s/base/config/catalog"))
            .args(["agents", "list"]),
        None,
    );
    assert!(out.ok() && out.stdout.contains("echo"), "{out}");
}

/// In-cluster clients reach the hub under its Service names: the real binary, run with the
/// base ConfigMap, admits every DNS name of every Service (and the StatefulSet's pod names
/// through the headless one) as a Host, and still refuses a foreign one (421).
#[tokio::test]
async fn k8s_config_admits_the_service_names_as_hosts() {
    let docs = yaml_docs(&kustomize("k8s/base"));
    let env = config_env(&docs);
    let ns = docs
        .iter()
        .find_map(|d| d["metadata"]["namespace"].as_str())
        .expect("a namespace")
        .to_string();
    let sts = named(&docs, "StatefulSet", "a2a-mcp");
    let mut names = Vec::new();
    for svc in kind(&docs, "Service") {
        let svc_name = svc["metadata"]["name"].as_str().unwrap();
        let bases = if svc["spec"]["clusterIP"] == "None" {
            // Headless: clients address the pods, <statefulset>-<ordinal>.<service>.
            let replicas = sts["spec"]["replicas"].as_u64().unwrap_or(1);
            (0..replicas)
                .map(|i| {
                    format!(
                        "{}-{i}.{svc_name}",
                        sts["metadata"]["name"].as_str().unwrap()
                    )
                })
                .collect::<Vec<_>>()
        } else {
            vec![svc_name.to_string()]
        };
        for b in bases {
            names.push(b.clone());
            names.push(format!("{b}.{ns}.svc"));
            names.push(format!("{b}.{ns}.svc.cluster.local"));
        }
    }
    assert!(names.len() >= 9, "{names:?}");
    // The pod's settings, with this machine's paths and ports; a key, as production needs one.
    let dir = tempfile::tempdir().unwrap();
    let out = run_command(
        Command::new(BIN)
            .env_clear()
            .arg("--data-dir")
            .arg(dir.path())
            .args(["keys", "create", "--role", "viewer"]),
        None,
    );
    assert!(out.ok(), "{out}");
    let local_only = [
        "A2A_DATA_DIR",
        "A2A_BACKUP_DIR",
        "A2A_CATALOG_DIR",
        "STREAM_HOST",
        "METRICS_HOST",
        "STREAM_TOKEN_FILE",
    ];
    let pod_env: Vec<(&str, &str)> = env
        .iter()
        .filter(|(k, _)| !local_only.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let b = TestBinary::serve(dir.path(), &pod_env).await;
    for name in &names {
        let host = format!("{name}:{}", b.api.port());
        let (s, v, _) = http("GET", &b.rest("/agents"), None, &[("host", host.as_str())]).await;
        assert_eq!(s, 401, "Host {host}: admitted, then asked for a key: {v}");
        let host = format!("{name}:{}", b.ops.port());
        let (s, v, _) = http(
            "GET",
            &format!("http://{}/healthz", b.ops),
            None,
            &[("host", host.as_str())],
        )
        .await;
        assert_eq!(s, 200, "ops, Host {host}: {v}");
    }
    let (s, _, _) = http("GET", &b.rest("/agents"), None, &[("host", "evil.example")]).await;
    assert_eq!(s, 421);
}

/// The restore pod of the runbook (k8s/restore/restore-pod.yaml, not in any kustomization)
/// fits k8s/base: the StatefulSet's claim, mount, user, namespace, image and paths; no Service
/// or hub NetworkPolicy selects it and its own policy denies all traffic; the validators accept
/// it; and the real binary accepts its arguments.
#[test]
fn k8s_restore_pod_fits_the_statefulset() {
    const FILE: &str = "k8s/restore/restore-pod.yaml";
    let docs = yaml_docs(&read(FILE));
    let base = yaml_docs(&kustomize("k8s/base"));
    let sts = named(&base, "StatefulSet", "a2a-mcp");
    let pod = named(&docs, "Pod", "a2a-mcp-restore");
    assert_eq!(pod["metadata"]["namespace"], sts["metadata"]["namespace"]);
    assert_eq!(pod["spec"]["restartPolicy"], "Never");

    // The volume: the StatefulSet's claim of pod 0, mounted where the hub mounts it.
    let template = &sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"];
    let claim = format!(
        "{}-{}-0",
        template.as_str().unwrap(),
        sts["metadata"]["name"].as_str().unwrap()
    );
    let volume = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["persistentVolumeClaim"]["claimName"] == claim.as_str())
        .unwrap_or_else(|| panic!("{FILE} does not mount the claim {claim}"));
    let hub = &sts["spec"]["template"]["spec"]["containers"][0];
    let container = &pod["spec"]["containers"][0];
    let mount = |c: &Value, volume: &Value| {
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == *volume)
            .map(|m| m["mountPath"].clone())
            .unwrap()
    };
    assert_eq!(
        mount(container, &volume["name"]),
        mount(hub, template),
        "mount path"
    );
    // The same user and image (the runbook swaps the image for the StatefulSet's own).
    for key in ["runAsUser", "runAsGroup", "fsGroup"] {
        assert_eq!(
            pod["spec"]["securityContext"][key],
            sts["spec"]["template"]["spec"]["securityContext"][key],
            "{key}"
        );
    }
    assert_eq!(container["image"], hub["image"]);
    // The store and paths of the base config.
    let config = config_env(&base);
    let env: BTreeMap<String, String> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for key in ["A2A_STORE", "A2A_DATA_DIR", "A2A_BACKUP_DIR"] {
        assert_eq!(env.get(key), config.get(key), "{key}");
    }

    // Traffic: no Service nor the hub's NetworkPolicy selects it; its own denies everything.
    let labels = &pod["metadata"]["labels"];
    for svc in kind(&base, "Service") {
        assert!(
            !selects(&svc["spec"]["selector"], labels),
            "Service {} would send traffic to the restore pod",
            svc["metadata"]["name"]
        );
    }
    for np in kind(&base, "NetworkPolicy") {
        assert!(!selects(&np["spec"]["podSelector"]["matchLabels"], labels));
    }
    let own = named(&docs, "NetworkPolicy", "a2a-mcp-restore");
    assert!(selects(&own["spec"]["podSelector"]["matchLabels"], labels));
    assert_eq!(
        own["spec"]["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    assert!(own["spec"]["ingress"].is_null() && own["spec"]["egress"].is_null());

    // The validators.
    let out = run_command(
        Command::new(ops_tool("kubernetes-validate"))
            .args(["--strict", "--quiet"])
            .arg(repo(FILE)),
        None,
    );
    assert!(
        out.ok() && out.all().trim().is_empty(),
        "kubernetes-validate: {out}"
    );
    let (passed, failed, skipped, out) = checkov("kubernetes", &repo(FILE));
    assert_eq!(failed, 0, "checkov {FILE}: {out}");
    assert!(passed >= 50, "checkov ran only {passed} checks");
    for (id, why) in &skipped {
        assert!(
            why.len() >= 30,
            "skip of {id} without a real reason: {why:?}"
        );
    }

    // The binary takes the arguments: with no snapshot yet it says where it looked (exit 1,
    // not a usage error).
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let out = run_command(
        Command::new(BIN)
            .env_clear()
            .env("A2A_DATA_DIR", dir.path().join("state"))
            .env("A2A_BACKUP_DIR", dir.path().join("backups"))
            .args(&args),
        None,
    );
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("no snapshot in"), "{out}");
}

// -------------------------------------------------------------------------------------------
// Monitoring

fn rules() -> Value {
    yaml_file("monitoring/rules/a2a-mcp.rules.yml")
}

fn alert_rules(doc: &Value) -> Vec<Value> {
    doc["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

fn promtool(args: &[&str], paths: &[&Path]) -> CmdOut {
    run_command(
        Command::new(ops_tool("promtool")).args(args).args(paths),
        None,
    )
}

#[test]
fn promtool_checks_the_rules() {
    let out = promtool(
        &["check", "rules"],
        &[&repo("monitoring/rules/a2a-mcp.rules.yml")],
    );
    assert!(out.ok() && out.stdout.contains("SUCCESS"), "{out}");
    assert!(!out.all().contains("WARNING"), "{out}");
}

#[test]
fn promtool_unit_tests_fire_and_silence_every_alert() {
    let dir = repo("monitoring/tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".test.yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let out = promtool(&["test", "rules"], &refs);
    assert!(out.ok() && out.stdout.contains("SUCCESS"), "{out}");
    assert!(!out.all().contains("FAILED"), "{out}");

    // Coverage: every alert has a case where it fires and one where it must not.
    let (mut fires, mut silent) = (BTreeSet::new(), BTreeSet::new());
    for f in &files {
        let doc = yaml_docs(&std::fs::read_to_string(f).unwrap()).remove(0);
        for t in doc["tests"].as_array().unwrap() {
            for case in t["alert_rule_test"].as_array().into_iter().flatten() {
                let name = case["alertname"].as_str().unwrap().to_string();
                match case["exp_alerts"].as_array() {
                    Some(a) if !a.is_empty() => fires.insert(name),
                    _ => silent.insert(name),
                };
            }
        }
    }
    for rule in alert_rules(&rules()) {
        let name = rule["alert"].as_str().unwrap();
        assert!(fires.contains(name), "no unit test where {name} fires");
        assert!(
            silent.contains(name),
            "no unit test where {name} stays silent"
        );
    }
}

#[test]
fn alert_rules_cover_the_checklist_and_link_runbooks() {
    let doc = rules();
    let alerts = alert_rules(&doc);
    let by_name: BTreeMap<&str, &Value> = alerts
        .iter()
        .map(|r| (r["alert"].as_str().unwrap(), r))
        .collect();
    // The checklist's six alerts, the backup alert of the issue, and their windows.
    for (name, window) in [
        ("A2AHighErrorRate", Some("5m")),
        ("A2AHighLatencyP95", Some("5m")),
        ("A2AMemoryPressure", Some("10m")),
        ("A2APodRestarted", None),
        ("A2AStoreErrors", None),
        ("A2ARateLimitHits", None),
        ("A2ABackupMissing", None),
    ] {
        let rule = by_name
            .get(name)
            .unwrap_or_else(|| panic!("alert {name} is missing"));
        if let Some(w) = window {
            assert_eq!(rule["for"], w, "{name}");
        }
    }
    for (name, needle) in [
        ("A2AHighErrorRate", "> 0.02"),
        ("A2AHighLatencyP95", "> 10"),
        ("A2AMemoryPressure", "> 0.9"),
        ("A2ARateLimitHits", "> 100"),
        ("A2ABackupMissing", "26 * 3600"),
    ] {
        let expr = by_name[name]["expr"].as_str().unwrap();
        assert!(expr.contains(needle), "{name}: {expr}");
    }
    // Runbook links resolve to a heading of a runbook in docs/.
    for rule in &alerts {
        let name = rule["alert"].as_str().unwrap();
        let url = rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no runbook_url"));
        let (file, anchor) = url.split_once('#').unwrap_or_else(|| panic!("{url}"));
        let text = read(file);
        let anchors: BTreeSet<String> = text
            .lines()
            .filter(|l| l.starts_with('#'))
            .map(|l| heading_anchor(l.trim_start_matches('#')))
            .collect();
        assert!(
            anchors.contains(anchor),
            "{name}: {file} has no heading for #{anchor}"
        );
        assert!(
            rule["labels"]["severity"].is_string(),
            "{name} has no severity"
        );
        assert!(rule["annotations"]["summary"].is_string(), "{name}");
    }
}

/// The anchor GitHub (and most Markdown renderers) give a heading.
fn heading_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn prometheus_rule_is_the_rule_file() {
    let crd = yaml_file("monitoring/prometheusrule.yaml");
    assert_eq!(crd["kind"], "PrometheusRule");
    assert_eq!(
        crd["spec"],
        rules(),
        "monitoring/prometheusrule.yaml spec differs from monitoring/rules/a2a-mcp.rules.yml"
    );
}

#[test]
fn service_monitor_scrapes_the_ops_service() {
    let mon = yaml_docs(&kustomize("monitoring"));
    let base = yaml_docs(&kustomize("k8s/base"));
    let sm = named(&mon, "ServiceMonitor", "a2a-mcp");
    assert_eq!(sm["metadata"]["namespace"], "a2a-mcp");
    let ops = named(&base, "Service", "a2a-mcp-ops");
    assert!(selects(
        &sm["spec"]["selector"]["matchLabels"],
        &ops["metadata"]["labels"]
    ));
    // Only that service: the API service must not be scraped.
    let api = named(&base, "Service", "a2a-mcp");
    assert!(!selects(
        &sm["spec"]["selector"]["matchLabels"],
        &api["metadata"]["labels"]
    ));
    let endpoint = &sm["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"], "/metrics");
    assert!(
        ops["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == endpoint["port"] && p["port"] == 3000)
    );
    // job="a2a-mcp" (what the rules select) comes from the service label named by jobLabel.
    let job_label = sm["spec"]["jobLabel"].as_str().unwrap();
    assert_eq!(ops["metadata"]["labels"][job_label], "a2a-mcp");
    assert!(
        rules().to_string().contains(r#"up{job=\"a2a-mcp\"}"#),
        "the rules expect job a2a-mcp"
    );
    let dashboard_cm = named(&mon, "ConfigMap", "a2a-mcp-grafana-dashboard");
    assert_eq!(dashboard_cm["metadata"]["labels"]["grafana_dashboard"], "1");
}

fn dashboard() -> Value {
    serde_json::from_str(&read("monitoring/grafana/a2a-mcp.json")).unwrap()
}

/// Every PromQL expression of the dashboard's panels (rows included).
fn dashboard_exprs(d: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((p["title"].as_str().unwrap_or("").to_string(), e.to_string()));
                }
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&d["panels"], &mut out);
    out
}

/// Grafana's variables become values PromQL accepts (`$__rate_interval` a duration, the
/// dashboard's own variables, which sit in label matchers, a regex).
fn grafana_to_promql(expr: &str) -> String {
    let mut s = expr
        .replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h");
    while let Some(i) = s.find('$') {
        let rest = &s[i + 1..];
        let braced = rest.starts_with('{');
        let body = if braced { &rest[1..] } else { rest };
        let len = body
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(body.len());
        let end = i + 1 + len + if braced { 2 } else { 0 };
        s.replace_range(i..end, ".*");
    }
    s
}

#[test]
fn dashboard_promql_passes_promtool() {
    let d = dashboard();
    assert!(d["uid"].is_string() && d["title"].is_string());
    let exprs = dashboard_exprs(&d);
    assert!(exprs.len() >= 20, "{}", exprs.len());
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, (_, e))| serde_json::json!({"record": format!("dashboard:expr_{i}"), "expr": grafana_to_promql(e)}))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    // JSON is YAML: promtool reads the generated rule file as is.
    let file = write_temp(
        tmp.path(),
        "dashboard.rules.yml",
        &serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string(),
    );
    let out = promtool(&["check", "rules"], &[&file]);
    assert!(out.ok() && out.stdout.contains("SUCCESS"), "{out}");
    // The panels the issue asks for, by the metric each one needs.
    let all: String = exprs
        .iter()
        .map(|(_, e)| e.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    for needle in [
        "a2a_requests_created_total",
        "status=\"error\"",
        "histogram_quantile(0.95, sum by (le) (rate(a2a_request_duration_seconds_bucket",
        "histogram_quantile(0.99",
        "a2a_queue_length",
        "a2a_running_jobs",
        "a2a_websocket_clients",
        "sum by (agent) (rate(a2a_requests_created_total",
        "a2a_rate_limit_hits_total",
        "a2a_backup_last_success_timestamp_seconds",
        "a2a_process_resident_memory_bytes",
        "a2a_process_cpu_seconds",
    ] {
        assert!(all.contains(needle), "no dashboard panel uses {needle}");
    }
}

/// Metric names in PromQL: identifiers outside string literals; `a2a_` ones and the few
/// external ones the rules use.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut in_string = false;
    let mut escaped = false;
    let mut word = String::new();
    let mut flush = |word: &mut String| {
        if word.starts_with("a2a_") || word.starts_with("kube_") || word.as_str() == "up" {
            names.insert(std::mem::take(word));
        }
        word.clear();
    };
    for c in expr.chars() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            flush(&mut word);
            in_string = c == '"';
        }
    }
    flush(&mut word);
    names
}

/// Families on /metrics, with the series names of histograms.
fn exposed_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut it = line.split_whitespace().skip(2);
        let (Some(name), Some(kind)) = (it.next(), it.next()) else {
            continue;
        };
        names.insert(name.to_string());
        if kind == "histogram" || kind == "summary" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

/// A little real traffic, so families whose labels only exist once used (per agent, per tool,
/// per route, per rejection reason) are on /metrics: a REST invocation, a rejected one, an MCP
/// tools/call over Streamable HTTP.
async fn traffic(bin: &TestBinary) {
    let (s, v) = post(
        &bin.rest("/agents/echo/invoke"),
        serde_json::json!({"input": echo_input("hello", 2, 0), "wait": true}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = post(
        &bin.rest("/agents/no-such-agent/invoke"),
        serde_json::json!({"input": echo_input("hello", 1, 0)}),
    )
    .await;
    assert_eq!(s, 404, "{v}");
    let mcp = format!("http://{}/mcp", bin.api);
    let accept = ("accept", "application/json, text/event-stream");
    let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "artifacts-test", "version": "1"}}});
    let (s, _, h) = http("POST", &mcp, Some(init), &[accept]).await;
    assert_eq!(s, 200);
    let sid = h["mcp-session-id"].to_str().unwrap().to_string();
    let session = [
        accept,
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let note = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (s, _, _) = http("POST", &mcp, Some(note), &session).await;
    assert_eq!(s, 202);
    let call = serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "list_agents", "arguments": {}}});
    let (s, body, _) = http("POST", &mcp, Some(call), &session).await;
    assert_eq!(s, 200, "{body}");
}

/// Metric names used by the alert rules, the dashboard's panels and its variables, each with
/// who uses it.
fn used_metric_names() -> (BTreeMap<String, String>, BTreeSet<String>) {
    let mut used: BTreeMap<String, String> = BTreeMap::new();
    let mut by_alerts = BTreeSet::new();
    for rule in alert_rules(&rules()) {
        for n in metric_names(rule["expr"].as_str().unwrap()) {
            by_alerts.insert(n.clone());
            used.insert(n, format!("alert {}", rule["alert"]));
        }
    }
    let d = dashboard();
    for (title, e) in dashboard_exprs(&d) {
        for n in metric_names(&e) {
            used.entry(n).or_insert(format!("panel {title:?}"));
        }
    }
    for v in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]["query"].as_str() {
            for n in metric_names(q) {
                used.entry(n).or_insert(format!("variable {}", v["name"]));
            }
        }
    }
    (used, by_alerts)
}

/// Scrape health and kube-state-metrics come from Prometheus and the cluster.
const EXTERNAL_METRICS: &[&str] = &["up", "kube_pod_container_status_restarts_total"];

#[tokio::test]
async fn live_metrics_have_every_series_the_alerts_and_dashboard_use() {
    let dir = tempfile::tempdir().unwrap();
    let mut bin = TestBinary::serve(dir.path(), &[]).await;
    let metrics_url = format!("http://{}/metrics", bin.ops);
    let (status, first) = get(&metrics_url).await;
    assert_eq!(status, 200);
    let first = first.as_str().unwrap().to_string();
    // The probe paths the manifests use are served by the binary on the ops listener.
    for path in ["/healthz", "/readyz"] {
        let (status, body) = get(&format!("http://{}{path}", bin.ops)).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    traffic(&bin).await;
    let (status, after) = get(&metrics_url).await;
    assert_eq!(status, 200);
    let after = after.as_str().unwrap().to_string();
    assert_eq!(bin.sigterm_and_wait().await.code(), Some(0));

    for (when, text) in [("first scrape", &first), ("after traffic", &after)] {
        let out = run_command(
            Command::new(ops_tool("promtool")).args(["check", "metrics"]),
            Some(text),
        );
        assert!(
            out.ok() && out.all().trim().is_empty(),
            "promtool check metrics ({when}): {out}"
        );
    }

    let (used, by_alerts) = used_metric_names();
    assert!(used.len() >= 25, "{used:?}");
    let (at_start, later) = (exposed_names(&first), exposed_names(&after));
    for (name, user) in &used {
        if EXTERNAL_METRICS.contains(&name.as_str()) {
            continue;
        }
        assert!(
            name.starts_with("a2a_"),
            "{user} uses {name}, neither a2a_ nor a known external metric"
        );
        assert!(
            later.contains(name),
            "{user} uses {name}, which /metrics lacks"
        );
        // Alerts on counters and gauges need the series from the start (increase() needs
        // the zero before the first event); latency buckets appear with the first request.
        if by_alerts.contains(name) && !name.ends_with("_bucket") {
            assert!(
                at_start.contains(name),
                "{user} uses {name}, which the first scrape lacks"
            );
        }
    }
}

// -------------------------------------------------------------------------------------------
// Negative control: the validators, run as above, reject known-bad input.

#[test]
fn validators_reject_known_bad_input() {
    let tmp = tempfile::tempdir().unwrap();

    // systemd: an unknown key is printed (verify), a bare unit scores far above 2.0.
    let unit = read("systemd/a2a-mcp.service").replace("LockPersonality=", "LockPersonalty=");
    let out = systemd_verify(&unit);
    assert!(out.all().contains("LockPersonalty"), "{out}");
    let bare = "[Service]\nExecStart=/usr/local/bin/a2a-mcp serve\n";
    let (score, _) = systemd_exposure(bare);
    assert!(score > 2.0, "a bare unit scored {score}");

    // hadolint: an untagged image and an unpinned, prompting apt-get.
    let df = write_temp(
        tmp.path(),
        "Dockerfile",
        "FROM debian\nRUN apt-get install curl\n",
    );
    let out = run_command(
        Command::new(ops_tool("hadolint"))
            .args(["--no-color", "--failure-threshold", "style"])
            .arg(&df),
        None,
    );
    assert!(!out.ok() && out.stdout.contains("DL3006"), "{out}");

    // kubernetes-validate --strict: an unknown field.
    let bad = kustomize("k8s/base").replace("revisionHistoryLimit:", "revisionHistoryLimt:");
    let file = write_temp(tmp.path(), "bad.yaml", &bad);
    let out = run_command(
        Command::new(ops_tool("kubernetes-validate"))
            .args(["--strict", "--quiet"])
            .arg(&file),
        None,
    );
    assert!(
        !out.ok(),
        "kubernetes-validate accepted an unknown field: {out}"
    );

    // checkov: a privileged pod without limits.
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\n  namespace: a2a-mcp\n\
               spec:\n  containers:\n    - name: c\n      image: busybox\n      \
               securityContext:\n        privileged: true\n";
    let file = write_temp(tmp.path(), "pod.yaml", pod);
    let (_, failed, _, out) = checkov("kubernetes", &file);
    assert!(failed >= 5, "checkov passed a privileged pod: {out}");

    // promtool: a broken expression, and a unit test that expects the wrong alert.
    let file = write_temp(
        tmp.path(),
        "bad.rules.yml",
        "groups:\n  - name: g\n    rules:\n      - alert: X\n        expr: rate(a2a_x[5m] > 1\n",
    );
    assert!(!promtool(&["check", "rules"], &[&file]).ok());
    let rules_file = repo("monitoring/rules/a2a-mcp.rules.yml");
    let test = format!(
        "rule_files: [{}]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    \
         input_series:\n      - series: 'up{{job=\"a2a-mcp\",instance=\"x\"}}'\n        \
         values: '1x10'\n    alert_rule_test:\n      - eval_time: 10m\n        \
         alertname: A2AInstanceDown\n        exp_alerts:\n          - exp_labels: {{severity: critical}}\n",
        rules_file.display()
    );
    let file = write_temp(tmp.path(), "bad.test.yml", &test);
    let out = promtool(&["test", "rules"], &[&file]);
    assert!(!out.ok() && out.all().contains("FAILED"), "{out}");
}

// -------------------------------------------------------------------------------------------
// Runbooks and the metrics reference

const RUNBOOKS: &[&str] = &[
    "docs/INCIDENT_RESPONSE.md",
    "docs/TROUBLESHOOTING.md",
    "docs/PERFORMANCE_TUNING.md",
    "docs/SCALING_GUIDE.md",
    "docs/DEPLOYMENT.md",
    "docs/METRICS.md",
];

#[test]
fn metrics_reference_lists_every_metric() {
    let source = read("src/metrics.rs");
    let doc = read("docs/METRICS.md");
    let mut names = BTreeSet::new();
    for (i, _) in source.match_indices("\"a2a_") {
        let rest = &source[i + 1..];
        let name = &rest[..rest.find('"').unwrap()];
        if !name.ends_with('_')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            names.insert(name.to_string());
        }
    }
    assert!(names.len() >= 30, "{names:?}");
    for name in &names {
        assert!(
            doc.contains(&format!("| `{name}` |")),
            "docs/METRICS.md has no row for {name}"
        );
    }
}

#[test]
fn runbook_links_resolve() {
    for file in RUNBOOKS {
        let text = read(file);
        // [text](TARGET) links to Markdown files in docs/, with or without #anchor.
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = &rest[..end];
            if target.starts_with("http") || !target.contains(".md") && !target.starts_with('#') {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            let linked = if path.is_empty() {
                file.to_string()
            } else {
                format!("docs/{path}")
            };
            let linked_text = std::fs::read_to_string(repo(&linked))
                .unwrap_or_else(|e| panic!("{file}: link to {target}: {e}"));
            if !anchor.is_empty() {
                let anchors: BTreeSet<String> = linked_text
                    .lines()
                    .filter(|l| l.starts_with('#'))
                    .map(|l| heading_anchor(l.trim_start_matches('#')))
                    .collect();
                assert!(
                    anchors.contains(anchor),
                    "{file}: {target}: no such heading in {linked}"
                );
            }
        }
    }
}

// -------------------------------------------------------------------------------------------
// Supply chain: cargo-deny

fn cargo_deny(config: &Path, checks: &[&str]) -> CmdOut {
    let bin = tools_dir().join("cargo-deny/bin/cargo-deny");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/test-tools.sh (or `make test`) to install cargo-deny",
        bin.display()
    );
    run_command(
        Command::new(bin)
            .arg("--manifest-path")
            .arg(repo("Cargo.toml"))
            .args(["--color", "never", "--locked", "--config"])
            .arg(config)
            .arg("check")
            .args(checks),
        None,
    )
}

/// `cargo deny check licenses bans sources` passes on today's dependency tree with deny.toml
/// (advisories need the RustSec database: `make audit`).
#[test]
fn dependencies_pass_cargo_deny_licenses_bans_and_sources() {
    let out = cargo_deny(&repo("deny.toml"), &["licenses", "bans", "sources"]);
    assert!(out.ok(), "cargo deny: {out}");
    assert!(
        out.all().contains("bans ok, licenses ok, sources ok"),
        "{out}"
    );
}

/// The checks bite: the same tree against a ban of a crate it uses, and against a license
/// list without one it needs, fails (so the pass above means something).
#[test]
fn cargo_deny_rejects_a_banned_crate_and_an_unlisted_license() {
    let dir = tempfile::tempdir().unwrap();
    let policy = read("deny.toml");
    let banned = write_temp(
        dir.path(),
        "banned.toml",
        &policy.replace(
            "{ crate = \"bincode\"",
            "{ crate = \"zstd\", reason = \"negative control\" },\n    { crate = \"bincode\"",
        ),
    );
    let out = cargo_deny(&banned, &["bans"]);
    assert!(!out.ok() && out.all().contains("zstd"), "{out}");
    let narrow = write_temp(
        dir.path(),
        "narrow.toml",
        &policy.replace("    \"Zlib\",\n", ""),
    );
    let out = cargo_deny(&narrow, &["licenses"]);
    assert!(!out.ok() && out.all().contains("Zlib"), "{out}");
}
