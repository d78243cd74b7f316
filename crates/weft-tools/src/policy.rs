//! The tool policy for tenants' own templates: a tool that starts host processes
//! ([`Tool::starts_processes`]: `command`, skills, stdio MCP servers) is available to a
//! template a tenant registered only when the operator granted it to that tenant
//! (`weft tenants update NAME --allow-tools command,skill.report`). The operator's own
//! templates (folders, built-ins) may use every tool.
//!
//! Registration checks a template against [`Granted`], a view of the registry that refuses
//! what the tenant was not granted (a `WEFT-E015` at the step's `tool:`); the engine checks
//! again before every call ([`refusal`]), so a grant taken back holds for runs already queued.

use serde_json::Value;
use weft_core::catalog::ToolCatalog;

use crate::{Registry, Tool, name_matches};

/// Whether `granted` (names or `prefix.*` patterns) covers the tool `name`.
pub fn is_granted(granted: &[String], name: &str) -> bool {
    granted.iter().any(|pattern| name_matches(pattern, name))
}

/// Why `tenant`'s own template may not call `tool`, or `None` when it may.
pub fn refusal(tool: &dyn Tool, tenant: &str, granted: &[String]) -> Option<String> {
    refusal_of(tool.name(), tool.starts_processes(), tenant, granted)
}

fn refusal_of(
    name: &str,
    starts_processes: bool,
    tenant: &str,
    granted: &[String],
) -> Option<String> {
    if !starts_processes || is_granted(granted, name) {
        return None;
    }
    Some(format!(
        "tool `{name}` starts processes on the server's host and is not granted to tenant \
         `{tenant}`; the operator grants it with `weft tenants update {tenant} --allow-tools {name}`"
    ))
}

/// The registry as a tenant's template sees it: every tool is known, but those that start
/// processes are refused unless granted.
pub struct Granted<'a> {
    pub registry: &'a Registry,
    pub tenant: &'a str,
    pub granted: &'a [String],
}

impl ToolCatalog for Granted<'_> {
    fn contains(&self, name: &str) -> bool {
        self.registry.contains(name)
    }
    fn input_schema(&self, name: &str) -> Option<Value> {
        ToolCatalog::input_schema(self.registry, name)
    }
    fn is_pure(&self, name: &str) -> bool {
        ToolCatalog::is_pure(self.registry, name)
    }
    fn wants_scope(&self, name: &str) -> bool {
        ToolCatalog::wants_scope(self.registry, name)
    }
    fn check_input(&self, name: &str, literal: &Value) -> Vec<(String, String)> {
        ToolCatalog::check_input(self.registry, name, literal)
    }
    fn refusal(&self, name: &str) -> Option<String> {
        let tool = self.registry.get(name)?;
        refusal(&*tool, self.tenant, self.granted)
    }
    fn names(&self) -> Vec<String> {
        ToolCatalog::names(self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_grant_names_and_prefixes() {
        let granted = vec!["command".to_string(), "skill.*".to_string()];
        assert!(is_granted(&granted, "command"));
        assert!(is_granted(&granted, "skill.report"));
        assert!(!is_granted(&granted, "mcp.files.read"));
        assert!(!is_granted(&[], "command"));
        assert!(refusal_of("transform", false, "acme", &[]).is_none());
        let why = refusal_of("command", true, "acme", &[]).expect("refused");
        assert!(
            why.contains("weft tenants update acme --allow-tools command"),
            "{why}"
        );
    }
}
