//! `{{ }}` expressions: Jinja syntax (minijinja), evaluated in a sandbox.
//!
//! A string that is exactly one `{{ expr }}` evaluates to a JSON value of its own type (a list
//! stays a list); any other string containing `{{` or `{%` renders to text. The environment has
//! no loader (no files), no access to the process environment, a fuel limit (bounded time) and
//! a recursion limit, and treats printing an undefined value as an error (`SemiStrict`) while
//! still allowing `x.missing or default` tests.

use std::sync::LazyLock;

use minijinja::value::{Serde, Value as JValue};
use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

/// Instructions one evaluation may use before it is stopped.
const FUEL: u64 = 2_000_000;
/// Largest text one expression may render, in bytes.
const MAX_OUTPUT: usize = 16 * 1024 * 1024;

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(64);
    env
});

/// The shared sandboxed environment, for tools that render whole templates (`render`).
pub fn environment() -> &'static Environment<'static> {
    &ENV
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// The expression text that failed.
    pub expr: String,
    pub message: String,
}

fn error(expr: &str, err: impl std::fmt::Display) -> Error {
    Error {
        expr: expr.to_string(),
        message: format!("in `{expr}`: {err}"),
    }
}

/// The names an expression can see, converted once and shared by every value rendered with
/// it (a fan-out of 100,000 items converts the scope once, not 100,000 times).
#[derive(Debug, Clone)]
pub struct Scope(JValue);

impl Scope {
    pub fn new(scope: &Value) -> Self {
        Scope(JValue::from(Serde(scope)))
    }

    /// A scope built directly as minijinja values (shared, not copied).
    pub fn from_value(value: JValue) -> Self {
        Scope(value)
    }

    /// This scope plus a `for_each` item under `name` and its `item_index`.
    pub fn with_item(&self, name: &str, item: &Value, index: usize) -> Scope {
        let overlay = JValue::from_pairs([
            (name.to_string(), JValue::from(Serde(item))),
            ("item_index".to_string(), JValue::from(index)),
        ]);
        Scope(minijinja::value::merge_maps([overlay, self.0.clone()]))
    }

    /// The scope as a minijinja value, for tools that render with it.
    pub fn as_value(&self) -> &JValue {
        &self.0
    }
}

/// If `text` is exactly one `{{ expr }}`, the expression inside.
pub fn single_expression(text: &str) -> Option<&str> {
    let t = text.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    Some(inner.trim())
}

/// Whether a string has any template syntax in it.
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// Renders every string inside `value` (recursively through lists and objects).
pub fn render(value: &Value, scope: &Scope) -> Result<Value, Error> {
    match value {
        Value::String(s) => render_str(s, scope),
        Value::Array(items) => items
            .iter()
            .map(|v| render(v, scope))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(map) => {
            let mut out = serde_json::Map::with_capacity(map.len());
            for (k, v) in map {
                out.insert(k.clone(), render(v, scope)?);
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

/// Renders one string: a lone `{{ expr }}` keeps its type, anything else becomes text.
pub fn render_str(text: &str, scope: &Scope) -> Result<Value, Error> {
    if let Some(expr) = single_expression(text) {
        return eval(expr, scope);
    }
    if !is_template(text) {
        return Ok(Value::String(text.to_string()));
    }
    let rendered = ENV
        .render_str(text, scope.0.clone())
        .map_err(|e| error(text, e))?;
    if rendered.len() > MAX_OUTPUT {
        return Err(error(text, "rendered text is larger than 16 MiB"));
    }
    Ok(Value::String(rendered))
}

type Compiled = minijinja::Expression<'static, 'static>;

thread_local! {
    /// Compiled expressions by text: a fan-out renders the same few expressions for every
    /// item, and compiling costs far more than evaluating.
    static COMPILED: std::cell::RefCell<std::collections::HashMap<String, std::rc::Rc<Compiled>>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

const MAX_CACHED: usize = 4096;

fn compiled(expr: &str) -> Result<std::rc::Rc<Compiled>, Error> {
    if let Some(hit) = COMPILED.with(|c| c.borrow().get(expr).cloned()) {
        return Ok(hit);
    }
    let compiled = std::rc::Rc::new(
        ENV.compile_expression_owned(expr.to_string())
            .map_err(|e| error(expr, e))?,
    );
    COMPILED.with(|c| {
        let mut cache = c.borrow_mut();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(expr.to_string(), compiled.clone());
    });
    Ok(compiled)
}

/// Evaluates one expression (without braces) to JSON. Undefined becomes `null`.
pub fn eval(expr: &str, scope: &Scope) -> Result<Value, Error> {
    let value = compiled(expr)?
        .eval(scope.0.clone())
        .map_err(|e| error(expr, e))?;
    to_json(&value).map_err(|e| error(expr, e))
}

/// The top-level names a value's expressions read (`input`, `steps`, a `for_each` item's
/// name...), through lists and objects; `None` when an expression does not parse.
pub fn names_read(value: &Value) -> Option<std::collections::HashSet<String>> {
    let mut names = std::collections::HashSet::new();
    fn walk(value: &Value, names: &mut std::collections::HashSet<String>) -> Option<()> {
        match value {
            Value::String(text) if is_template(text) => {
                let found = match single_expression(text) {
                    Some(expr) => ENV
                        .compile_expression(expr)
                        .ok()?
                        .undeclared_variables(false),
                    None => ENV
                        .template_from_str(text)
                        .ok()?
                        .undeclared_variables(false),
                };
                names.extend(found);
            }
            Value::Array(items) => items.iter().try_for_each(|v| walk(v, names))?,
            Value::Object(map) => map.values().try_for_each(|v| walk(v, names))?,
            _ => {}
        }
        Some(())
    }
    walk(value, &mut names)?;
    Some(names)
}

/// The names an `if:` condition (with or without `{{ }}`) reads; `None` when it does not parse.
pub fn condition_names(text: &str) -> Option<std::collections::HashSet<String>> {
    let expr = single_expression(text).unwrap_or(text.trim());
    Some(
        ENV.compile_expression(expr)
            .ok()?
            .undeclared_variables(false),
    )
}

/// Evaluates an `if:` condition, written with or without `{{ }}`.
pub fn eval_condition(text: &str, scope: &Scope) -> Result<bool, Error> {
    let expr = single_expression(text).unwrap_or(text.trim());
    let value = compiled(expr)?
        .eval(scope.0.clone())
        .map_err(|e| error(expr, e))?;
    Ok(value.is_true())
}

fn to_json(value: &JValue) -> Result<Value, serde_json::Error> {
    if value.is_undefined() || value.is_none() {
        return Ok(Value::Null);
    }
    serde_json::to_value(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> Scope {
        Scope::new(&json!({
            "input": {"name": "Ada", "n": 3, "cities": null},
            "steps": {"a": {"output": [1, 2, 3], "ok": true}},
        }))
    }

    #[test]
    fn lone_expression_keeps_type() {
        let s = scope();
        assert_eq!(render_str("{{ steps.a.output }}", &s), Ok(json!([1, 2, 3])));
        assert_eq!(render_str(" {{ input.n + 1 }} ", &s), Ok(json!(4)));
        assert_eq!(render_str("{{ input.cities }}", &s), Ok(Value::Null));
    }

    #[test]
    fn mixed_text_renders_to_string() {
        let s = scope();
        assert_eq!(
            render_str("Hello {{ input.name }}, {{ input.n }}!", &s),
            Ok(json!("Hello Ada, 3!"))
        );
        assert_eq!(render_str("plain", &s), Ok(json!("plain")));
    }

    #[test]
    fn conditions_with_and_without_braces() {
        let s = scope();
        assert_eq!(eval_condition("steps.a.ok", &s), Ok(true));
        assert_eq!(eval_condition("{{ not input.cities }}", &s), Ok(true));
        assert_eq!(eval_condition("{{ input.missing }}", &s), Ok(false));
    }

    #[test]
    fn items_overlay_the_scope() {
        let s = scope().with_item("city", &json!("Denver"), 2);
        assert_eq!(
            render_str("{{ city }} #{{ item_index }} for {{ input.name }}", &s),
            Ok(json!("Denver #2 for Ada"))
        );
    }

    #[test]
    fn printing_undefined_is_an_error() {
        let s = scope();
        assert!(render_str("x {{ input.nope }}", &s).is_err());
    }

    #[test]
    fn runaway_loops_run_out_of_fuel() {
        let s = scope();
        let r = render_str(
            "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}",
            &s,
        );
        assert!(r.is_err());
    }
}
