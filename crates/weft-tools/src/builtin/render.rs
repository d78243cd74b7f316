//! `render`: renders inline Jinja text (markdown reports, prompts) against the step's whole
//! expression scope.
//!
//! The engine hands the tool its scope as `input.scope` and leaves `template` unrendered
//! ([`Tool::wants_scope`]), so the template sees `input`, `steps`, `prev`, the `for_each` item
//! and so on. Rendering is sandboxed: no loader, so no files; a fuel limit bounds the work.

use std::sync::LazyLock;

use async_trait::async_trait;
use minijinja::{Environment, UndefinedBehavior};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::parse_input;
use crate::{Context, Error, Result, Tool};

/// Instructions one render may run; enough for reports over thousands of items, and a bound on
/// runaway loops.
const FUEL: u64 = 5_000_000;

/// One environment for every render: configuring it costs more than rendering small text.
static ENVIRONMENT: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // Markdown files end with a newline; keep it. Building this config cannot fail with the
    // default delimiters, and if it did the default config would still be safe.
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(100);
    // A typo in a reference is an error, while `{% if x %}` still works for optional values.
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env
});

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    template: String,
    #[serde(default)]
    vars: Option<Map<String, Value>>,
    #[serde(default)]
    scope: Option<Map<String, Value>>,
}

/// The `render` tool.
#[derive(Default)]
pub struct Render;

impl Render {
    pub fn new() -> Self {
        Render
    }

    /// Renders `template` with `scope` merged with `vars` (a var shadows a scope entry of the
    /// same name).
    pub fn render(
        template: &str,
        scope: Option<Map<String, Value>>,
        vars: Option<Map<String, Value>>,
    ) -> Result<String> {
        let mut context = scope.unwrap_or_default();
        context.extend(vars.unwrap_or_default());
        ENVIRONMENT
            .render_str(template, minijinja::value::Serde(&context))
            .map_err(|error| Error::Permanent(describe(&error, template)))
    }
}

#[async_trait]
impl Tool for Render {
    fn name(&self) -> &str {
        "render"
    }

    fn description(&self) -> &str {
        "Renders inline Jinja text (e.g. a markdown report) with the step's whole expression \
         scope plus optional `vars`; the output is the rendered string."
    }

    fn input_schema(&self) -> Option<Value> {
        Some(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": ["template"],
            "properties": {
                "template": {"type": "string", "description": "Jinja text, rendered with the step's scope."},
                "vars": {"type": "object", "description": "Extra names for the template; they shadow scope names."},
                "scope": {"type": "object", "description": "Filled in by the engine: the step's expression scope."}
            },
            "additionalProperties": false
        }))
    }

    fn is_pure(&self) -> bool {
        true
    }

    fn wants_scope(&self) -> bool {
        true
    }

    fn call_pure(&self, input: &Value) -> Option<Result<Value>> {
        Some(
            parse_input::<Input>("render", input)
                .and_then(|input| Render::render(&input.template, input.scope, input.vars))
                .map(Value::String),
        )
    }

    async fn call(&self, input: Value, _ctx: &Context) -> Result<Value> {
        self.call_pure(&input).unwrap_or(Ok(Value::Null))
    }
}

/// `render: template error at line 3: undefined value (in `{{ steps.serch.output }}`)`.
fn describe(error: &minijinja::Error, template: &str) -> String {
    let mut text = String::from("render: template error");
    let line = error.line();
    if let Some(line) = line {
        text.push_str(&format!(" at line {line}"));
    }
    text.push_str(": ");
    text.push_str(&error.kind().to_string());
    if let Some(detail) = error.detail() {
        text.push_str(": ");
        text.push_str(detail);
    }
    if let Some(source_line) = line.and_then(|line| template.lines().nth(line.saturating_sub(1))) {
        text.push_str(&format!(
            " (in `{}`)",
            super::excerpt(source_line.trim(), 120)
        ));
    }
    text
}
