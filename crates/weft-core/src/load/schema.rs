//! A tool step's literal `with:` fields against the JSON Schema the tool publishes.
//!
//! Fields holding `{{ }}` are only known at run time, so they are left out of the instance and
//! out of the schema's top-level `required`; everything written literally is checked now.

use serde_json::Value;

use super::read::{Report, is_dynamic};
use super::step::Draft;
use crate::catalog::ToolCatalog;
use crate::diag::Code;

pub(crate) fn check(report: &mut Report, step: &Draft<'_>, tool: &str, schema: &Value) {
    let mut instance = step.with.clone();
    if json_dynamic(&instance) && !instance.is_object() {
        return;
    }
    let mut schema = schema.clone();
    if let Value::Object(fields) = &mut instance {
        let dynamic: Vec<String> = fields
            .iter()
            .filter(|(_, v)| json_dynamic(v))
            .map(|(k, _)| k.clone())
            .collect();
        for name in &dynamic {
            fields.remove(name);
        }
        if let Some(Value::Array(required)) = schema.get_mut("required") {
            required.retain(|r| !r.as_str().is_some_and(|r| dynamic.iter().any(|d| d == r)));
        }
    }
    // A tool whose schema does not compile is the tool's problem, not the template's.
    // Draft 7 rules cover what tool schemas use (types, properties, required, enums) and its
    // meta-schema compiles in microseconds, where 2020-12's costs ~15 ms per process: that
    // was most of a `weft run`'s start-up.
    let Ok(validator) = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .build(&schema)
    else {
        return;
    };
    let label = step
        .id
        .as_ref()
        .map(|(id, _)| format!("step `{id}`"))
        .unwrap_or_else(|| "a step".to_owned());
    for error in validator.iter_errors(&instance) {
        let pointer = error.instance_path.as_str().to_owned();
        let pos = match step.with_node {
            Some(node) => node.at_pointer(&pointer).pos,
            None => step.node.pos,
        };
        let place = if pointer.is_empty() {
            String::new()
        } else {
            format!(" at `{pointer}`")
        };
        let message = match &error.kind {
            // A pattern is for machines: say what the field wants in the tool's own words.
            jsonschema::error::ValidationErrorKind::Pattern { .. } => {
                let field = error.schema_path.as_str();
                let wants = schema
                    .pointer(field.strip_suffix("/pattern").unwrap_or(field))
                    .and_then(|f| f.get("description"))
                    .and_then(Value::as_str)
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default();
                format!(
                    "{} is not in the form this field takes{wants}",
                    error.instance
                )
            }
            _ => error.to_string(),
        };
        report.at(
            pos,
            Code::ToolInputSchema,
            format!("`with` of {label} does not fit tool `{tool}`{place}: {message}"),
        );
    }
}

/// The tool's own checks of the literal fields (`ToolCatalog::check_input`): a jq program
/// that does not compile is a `WEFT-E010` now, not a failed run later.
pub(crate) fn tool_checks(
    report: &mut Report,
    step: &Draft<'_>,
    tool: &str,
    tools: &dyn ToolCatalog,
) {
    let mut instance = step.with.clone();
    if json_dynamic(&instance) && !instance.is_object() {
        return;
    }
    if let Value::Object(fields) = &mut instance {
        fields.retain(|_, v| !json_dynamic(v));
    }
    let label = step
        .id
        .as_ref()
        .map(|(id, _)| format!("step `{id}`"))
        .unwrap_or_else(|| "a step".to_owned());
    for (pointer, problem) in tools.check_input(tool, &instance) {
        let pos = match step.with_node {
            Some(node) => node.at_pointer(&pointer).pos,
            None => step.node.pos,
        };
        report.at(
            pos,
            Code::ExpressionSyntax,
            format!("`with` of {label} at `{pointer}`: {problem}"),
        );
    }
}

/// Whether a value holds an expression anywhere.
fn json_dynamic(value: &Value) -> bool {
    match value {
        Value::String(s) => is_dynamic(s),
        Value::Array(items) => items.iter().any(json_dynamic),
        Value::Object(fields) => fields.values().any(json_dynamic),
        _ => false,
    }
}
