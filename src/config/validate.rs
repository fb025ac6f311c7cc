//! The validator: collects every problem with its key path while the
//! sections are read, and hands back a value only when there is none.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alloy::json_abi::JsonAbi;
use serde::de::DeserializeOwned;

use super::*;

pub(super) struct Validator {
    pub(super) path: PathBuf,
    pub(super) dir: PathBuf,
    pub(super) problems: Vec<Problem>,
    pub(super) abis: HashMap<PathBuf, Option<Arc<JsonAbi>>>,
}

impl Validator {
    pub(super) fn new(path: &Path) -> Self {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Validator {
            path: path.to_path_buf(),
            dir,
            problems: Vec::new(),
            abis: HashMap::new(),
        }
    }

    pub(super) fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    pub(super) fn into_error(self) -> ConfigError {
        ConfigError::Invalid {
            path: self.path,
            problems: self.problems,
        }
    }

    pub(super) fn finish<T>(self, value: Option<T>) -> Result<T, ConfigError> {
        match value {
            Some(v) if self.problems.is_empty() => Ok(v),
            _ => Err(self.into_error()),
        }
    }

    pub(super) fn table(&mut self, text: &str) -> Option<toml::Table> {
        match text.parse::<toml::Table>() {
            Ok(t) => Some(t),
            Err(e) => {
                let key = match e.span() {
                    Some(span) => {
                        let line = text[..span.start].matches('\n').count() + 1;
                        format!("line {line}")
                    }
                    None => "(file)".to_string(),
                };
                self.problem(key, format!("not valid TOML: {}", e.message()));
                None
            }
        }
    }

    /// Deserializes one element, recording a problem with its full key path.
    pub(super) fn element<T: DeserializeOwned>(
        &mut self,
        key: &str,
        value: toml::Value,
    ) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(t) => Some(t),
            Err(e) => {
                let inner = e.path().to_string();
                let full = if inner == "." || inner.is_empty() {
                    key.to_string()
                } else {
                    format!("{key}.{inner}")
                };
                let message = e.into_inner().to_string();
                self.problem(full, message.trim().to_string());
                None
            }
        }
    }

    /// `key.name` must be non-empty and unique among `seen` (its siblings).
    pub(super) fn unique_name(
        &mut self,
        key: &str,
        what: &str,
        name: &str,
        seen: &mut HashSet<String>,
    ) {
        if name.trim().is_empty() {
            self.problem(format!("{key}.name"), "expected a non-empty name");
        }
        if !seen.insert(name.to_string()) {
            self.problem(
                format!("{key}.name"),
                format!("duplicate {what} name `{name}`"),
            );
        }
    }

    pub(super) fn array(&mut self, key: &str, value: Option<toml::Value>) -> Vec<toml::Value> {
        match value {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items,
            Some(other) => {
                self.problem(
                    key,
                    format!(
                        "expected an array of tables ([[{key}]]), found a {}",
                        other.type_str()
                    ),
                );
                Vec::new()
            }
        }
    }

    /// The index of the protocol's contract `name` that `key` (a rule, a
    /// probe) refers to; a problem naming `key.contract` when there is none.
    pub(super) fn contract_index(
        &mut self,
        key: &str,
        name: &str,
        contracts: &[ContractConfig],
    ) -> Option<usize> {
        let found = contracts.iter().position(|c| c.name == name);
        if found.is_none() {
            self.problem(
                format!("{key}.contract"),
                format!("no contract named `{name}` in this protocol (or it has errors above)"),
            );
        }
        found
    }
}
