//! What validation needs to know about tools, without depending on their implementations.
//!
//! `weft-tools` implements this for its registry; tests implement it with a fixed list.

use serde_json::Value;

/// A read-only view of the tools a template may call.
pub trait ToolCatalog: Send + Sync {
    /// Whether a tool with this name exists.
    fn contains(&self, name: &str) -> bool;

    /// The tool's JSON Schema for its `with:` input, when it publishes one.
    fn input_schema(&self, name: &str) -> Option<Value>;

    /// Whether the tool is pure and cheap (no I/O), so the orchestrator may run it inline
    /// (`strategy: sync`) instead of queueing it.
    fn is_pure(&self, _name: &str) -> bool {
        false
    }

    /// Whether the tool takes the whole expression scope as `input.scope`, with its `template`
    /// key left unrendered (the `render` tool).
    fn wants_scope(&self, _name: &str) -> bool {
        false
    }

    /// The tool's own checks of a step's literal `with:` fields (those without `{{ }}`), beyond
    /// its schema: a program that does not compile, say. Each problem as (JSON pointer into
    /// `with`, message). None by default.
    fn check_input(&self, _name: &str, _literal: &Value) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Why the template being loaded may not use this tool, when it may not (a tool that
    /// starts host processes in a tenant's template the operator did not grant it). `None`:
    /// allowed. Every tool is allowed by default.
    fn refusal(&self, _name: &str) -> Option<String> {
        None
    }

    /// Every tool name, for "did you mean" suggestions on an unknown tool. None by default.
    fn names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A catalog that knows a fixed set of tool names and nothing else; for tests.
#[derive(Debug, Default, Clone)]
pub struct NameList(pub Vec<String>);

impl ToolCatalog for NameList {
    fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|n| n == name)
    }
    fn input_schema(&self, _name: &str) -> Option<Value> {
        None
    }
    fn names(&self) -> Vec<String> {
        self.0.clone()
    }
}
