//! The docs name only settings that exist: every `A2A_*` environment variable mentioned in the
//! README, SECURITY.md and docs/ is in the configuration reference (docs/CONFIGURATION.md,
//! itself compared with `a2a-mcp check-config --docs` in `binary.rs`), or is one of the few
//! variables that are not settings, each of which the code really reads or sets.

use std::collections::{BTreeMap, BTreeSet};

use super::harness::repo_dir;

/// Variables that are not hub settings, with where they live (checked below).
const NOT_SETTINGS: &[(&str, &str)] = &[
    // The CLI's credential for a running server (`backup create`, `keys`, `agents`).
    ("A2A_ADMIN_TOKEN", "src/cli"),
    // What a process agent gets to call back into the hub.
    ("A2A_HUB_URL", "src/executor"),
    ("A2A_HUB_TOKEN", "src/executor"),
    // The test and packaging scripts' own settings.
    ("A2A_TOOLS_DIR", "scripts"),
    ("A2A_DEBIAN_MIRROR", "scripts"),
];

fn docs() -> Vec<(String, String)> {
    let root = repo_dir();
    let mut files = vec![root.join("README.md"), root.join("SECURITY.md")];
    for e in std::fs::read_dir(root.join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") && !p.ends_with("CONFIGURATION.md") {
            files.push(p);
        }
    }
    files
        .into_iter()
        .map(|p| {
            let name = p.strip_prefix(&root).unwrap().display().to_string();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// The environment names of the reference's table (second column), and rows without a meaning.
fn reference() -> (BTreeSet<String>, Vec<String>) {
    let text = std::fs::read_to_string(repo_dir().join("docs/CONFIGURATION.md")).unwrap();
    let mut names = BTreeSet::new();
    let mut empty = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let cols: Vec<&str> = line.split(" | ").collect();
        assert!(cols.len() >= 4, "reference row: {line}");
        for n in cols[1].split(", ") {
            names.insert(n.trim_matches('`').to_string());
        }
        if cols[3].trim_end_matches('|').trim().is_empty() {
            empty.push(line.to_string());
        }
    }
    (names, empty)
}

/// `A2A_…` names in a text.
fn a2a_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("A2A_") {
        let start = i + at;
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start + 4;
        while end < bytes.len()
            && (bytes[end].is_ascii_uppercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        let name = text[start..end].trim_end_matches('_');
        if before_ok && name.len() > 4 {
            out.insert(name.to_string());
        }
        i = end;
    }
    out
}

#[test]
fn every_variable_the_docs_name_is_a_setting_or_a_known_non_setting() {
    let (settings, _) = reference();
    assert!(
        settings.len() > 50,
        "the reference lists the settings: {settings:?}"
    );
    let mut unknown: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (file, text) in docs() {
        for name in a2a_names(&text) {
            // `<ENV>_FILE` is the file variant of a secret setting.
            let known = settings.contains(&name)
                || name
                    .strip_suffix("_FILE")
                    .is_some_and(|base| settings.contains(base))
                || NOT_SETTINGS.iter().any(|(n, _)| *n == name)
                || name.starts_with("A2A_TEST_");
            if !known {
                unknown.entry(name).or_default().push(file.clone());
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "the docs name variables that are not settings (add them to the configuration, fix the \
         doc, or list a real non-setting in NOT_SETTINGS): {unknown:?}"
    );
}

#[test]
fn the_non_settings_the_docs_may_name_are_real() {
    for (name, place) in NOT_SETTINGS {
        let dir = repo_dir().join(place);
        let found = walk(&dir)
            .into_iter()
            .any(|p| std::fs::read_to_string(&p).is_ok_and(|t| t.contains(name)));
        assert!(
            found,
            "{name} is not used under {place}: drop it from NOT_SETTINGS"
        );
    }
}

#[test]
fn every_setting_in_the_reference_says_what_it_does() {
    let (_, empty) = reference();
    assert!(empty.is_empty(), "settings without a meaning: {empty:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn the_name_scanner_finds_whole_names_only() {
    let got = a2a_names("set `A2A_STORE`, A2A_POSTGRES_CA_FILE and XA2A_NOPE; A2A_");
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        ["A2A_POSTGRES_CA_FILE", "A2A_STORE"]
    );
}
