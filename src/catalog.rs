//! The catalog: agent definitions shipped as TOML files (`data/catalog/*.toml`).
//!
//! Each file holds `[[agents]]` tables in the shape of [`AgentSpec`] (see
//! `data/catalog/echo.toml`). Files are read in name order; an agent id defined twice, an
//! unknown key or an invalid value stops start-up with the file name and the reason.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

use crate::model::AgentSpec;
use crate::policy::AgentPolicy;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    agents: Vec<AgentSpec>,
    #[serde(default)]
    policies: Vec<AgentPolicy>,
}

/// Everything the catalog directory defines.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    pub agents: Vec<AgentSpec>,
    /// Per-agent access lists (`[[policies]]`).
    pub policies: Vec<AgentPolicy>,
}

#[derive(Debug, thiserror::Error)]
#[error("catalog: {0}")]
pub struct CatalogError(pub String);

/// Loads every `*.toml` file of `dir`. A missing directory is an empty catalog.
pub fn load(dir: &Path) -> Result<Catalog, CatalogError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Catalog::default()),
        Err(e) => {
            return Err(CatalogError(format!("cannot read {}: {e}", dir.display())));
        }
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    let mut policies = Vec::new();
    let mut ids = BTreeSet::new();
    for path in files {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| CatalogError(format!("cannot read {}: {e}", path.display())))?;
        let file: CatalogFile = toml::from_str(&text)
            .map_err(|e| CatalogError(format!("{}: {}", path.display(), e.message())))?;
        for spec in file.agents {
            spec.validate()
                .map_err(|e| CatalogError(format!("{}: {}", path.display(), e.message)))?;
            if !ids.insert(spec.id.clone()) {
                return Err(CatalogError(format!(
                    "{}: agent {:?} is defined more than once in the catalog",
                    path.display(),
                    spec.id
                )));
            }
            out.push(spec);
        }
        for policy in file.policies {
            crate::policy::AccessLists::compile(vec![policy.clone()])
                .map_err(|e| CatalogError(format!("{}: {e}", path.display())))?;
            policies.push(policy);
        }
    }
    Ok(Catalog {
        agents: out,
        policies,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn shipped_catalog_loads() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/catalog");
        let catalog = super::load(&dir).unwrap();
        let echo = catalog.agents.iter().find(|a| a.id == "echo").unwrap();
        assert_eq!(echo.capabilities[0].name, "chat");
    }
}
