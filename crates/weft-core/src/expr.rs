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
    env.set_formatter(bounded_formatter);
    env.add_filter("tojson", bounded_tojson);
    env
});

/// Most items (all levels together) `| tojson` serializes.
const MAX_SERIALIZED_ITEMS: usize = 100_000;

/// minijinja's `tojson`, refusing a value of more than [`MAX_SERIALIZED_ITEMS`] items first: a
/// lazy `(['x'] * 100000000) | tojson` ran for a minute and a half before its fuel ran out.
fn bounded_tojson(
    value: &JValue,
    indent: Option<JValue>,
    args: minijinja::value::Kwargs,
) -> Result<JValue, minijinja::Error> {
    let mut left = MAX_SERIALIZED_ITEMS;
    if !fits(value, &mut left, 0) {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("tojson: the value has more than {MAX_SERIALIZED_ITEMS} items"),
        ));
    }
    minijinja::filters::tojson(value, indent, args)
}

/// Most items (all levels together) a list or map printed into text may hold.
const MAX_PRINTED_ITEMS: usize = 10_000;

/// Prints a value as minijinja does, but refuses a list or map of more than
/// [`MAX_PRINTED_ITEMS`] items: printing an item costs far more time than the fuel it pays, so
/// `n={{ ['x'] * 100000000 }}` kept the store's transaction for over a minute before the text
/// reached its size limit.
fn bounded_formatter(
    out: &mut minijinja::Output<'_>,
    state: &mut minijinja::State,
    value: &JValue,
) -> Result<(), minijinja::Error> {
    let mut left = MAX_PRINTED_ITEMS;
    if !fits(value, &mut left, 0) {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!(
                "cannot print a list or map of more than {MAX_PRINTED_ITEMS} items into text \
                 (use `| length`, or the value alone as `{{{{ expr }}}}`)"
            ),
        ));
    }
    minijinja::escape_formatter(out, state, value)
}

/// Whether `value` holds at most `left` items in all, counting down as it looks; a known
/// length is checked before any item is made.
fn fits(value: &JValue, left: &mut usize, depth: usize) -> bool {
    use minijinja::value::ObjectRepr;
    let Some(object) = value.as_object() else {
        return true;
    };
    if depth > MAX_DEPTH || object.enumerator_len().is_some_and(|n| n > *left) {
        return false;
    }
    let items: Box<dyn Iterator<Item = JValue>> = match object.repr() {
        ObjectRepr::Map => Box::new(
            object
                .try_iter_pairs()
                .into_iter()
                .flatten()
                .map(|(_, value)| value),
        ),
        ObjectRepr::Seq | ObjectRepr::Iterable => Box::new(object.try_iter().into_iter().flatten()),
        _ => return true,
    };
    for item in items {
        if *left == 0 {
            return false;
        }
        *left -= 1;
        if !fits(&item, left, depth + 1) {
            return false;
        }
    }
    true
}

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
    // Written through a bounded buffer: the text stops growing at the limit instead of being
    // measured once it is complete.
    let template = ENV.template_from_str(text).map_err(|e| error(text, e))?;
    let mut out = BoundedText::default();
    if let Err(e) = template.render_captured_to(scope.0.clone(), &mut out) {
        if out.overflowed {
            return Err(error(text, "rendered text is larger than 16 MiB"));
        }
        return Err(error(text, e));
    }
    String::from_utf8(out.text)
        .map(Value::String)
        .map_err(|e| error(text, e))
}

/// Rendered text that refuses to grow past [`MAX_OUTPUT`] bytes.
#[derive(Default)]
struct BoundedText {
    text: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for BoundedText {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.text.len() + buf.len() > MAX_OUTPUT {
            self.overflowed = true;
            return Err(std::io::Error::other("rendered text is larger than 16 MiB"));
        }
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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

/// Converts an expression's value to JSON within [`MAX_OUTPUT`] bytes and [`MAX_DEPTH`] levels.
///
/// Fuel bounds what the expression computes, but a lazy value escapes it: `['x'] * 100000000`
/// is one cheap instruction that yields a sequence of a hundred million items, and only turning
/// it into JSON would allocate them (gigabytes). The conversion counts as it goes and stops at
/// the limit, before the items exist.
fn to_json(value: &JValue) -> Result<Value, serde_json::Error> {
    if value.is_undefined() || value.is_none() {
        return Ok(Value::Null);
    }
    let budget = std::cell::Cell::new(MAX_OUTPUT);
    serde_json::to_value(Bounded {
        value,
        budget: &budget,
        depth: 0,
    })
}

/// Nesting past this is refused while converting (stored values allow less; this only keeps
/// the conversion's recursion short).
const MAX_DEPTH: usize = 128;
/// What one list slot or map entry counts against [`MAX_OUTPUT`], besides its contents.
const SLOT_BYTES: usize = 16;

/// A minijinja value serialized as minijinja does, but charged against a byte budget.
struct Bounded<'a> {
    value: &'a JValue,
    budget: &'a std::cell::Cell<usize>,
    depth: usize,
}

impl Bounded<'_> {
    fn charge<E: serde::ser::Error>(&self, bytes: usize) -> Result<(), E> {
        match self.budget.get().checked_sub(bytes) {
            Some(left) => {
                self.budget.set(left);
                Ok(())
            }
            None => Err(E::custom(format!(
                "the value is larger than {} MiB",
                MAX_OUTPUT / (1024 * 1024)
            ))),
        }
    }

    fn inner<'b>(&'b self, value: &'b JValue) -> Bounded<'b> {
        Bounded {
            value,
            budget: self.budget,
            depth: self.depth + 1,
        }
    }
}

impl serde::Serialize for Bounded<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use minijinja::value::{ObjectRepr, ValueKind};
        use serde::ser::{Error as _, SerializeMap, SerializeSeq};
        if self.depth > MAX_DEPTH {
            return Err(S::Error::custom(format!(
                "the value nests more than {MAX_DEPTH} levels deep"
            )));
        }
        let Some(object) = self.value.as_object() else {
            if self.value.kind() == ValueKind::Invalid {
                return Err(S::Error::custom(format!("invalid value: {}", self.value)));
            }
            self.charge(self.value.as_bytes().map_or(SLOT_BYTES, <[u8]>::len))?;
            return self.value.serialize(serializer);
        };
        match object.repr() {
            ObjectRepr::Seq | ObjectRepr::Iterable => {
                // A known length is charged before a single item is made.
                let len = object.enumerator_len();
                if let Some(n) = len {
                    self.charge(n.saturating_mul(SLOT_BYTES))?;
                }
                let mut seq = serializer.serialize_seq(len)?;
                for item in object.try_iter().into_iter().flatten() {
                    if len.is_none() {
                        self.charge(SLOT_BYTES)?;
                    }
                    seq.serialize_element(&self.inner(&item))?;
                }
                seq.end()
            }
            ObjectRepr::Map => {
                let mut map = serializer.serialize_map(None)?;
                for (key, value) in object.try_iter_pairs().into_iter().flatten() {
                    self.charge(SLOT_BYTES)?;
                    map.serialize_entry(&self.inner(&key), &self.inner(&value))?;
                }
                map.end()
            }
            ObjectRepr::Plain => {
                let text = object.to_string();
                self.charge(text.len())?;
                serializer.serialize_str(&text)
            }
            // A representation added by a later minijinja: as minijinja serializes it.
            _ => self.value.serialize(serializer),
        }
    }
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
    fn a_huge_lazy_value_is_refused_before_it_exists() {
        let s = scope();
        let e = render_str("{{ ['x'] * 100000000 }}", &s).expect_err("refused");
        assert!(e.message.contains("larger than 16 MiB"), "{e}");
        let e = render_str("{{ range(100000) | list * 1000 }}", &s).expect_err("refused");
        assert!(e.message.contains("larger than 16 MiB"), "{e}");
        let e = eval_condition("(['x'] * 100000000) | length > 0", &s);
        assert_eq!(e, Ok(true), "a length needs no items");
    }

    #[test]
    fn huge_text_stops_at_the_limit() {
        let s = scope();
        let e = render_str("n: {{ ['x'] * 100000000 }}", &s).expect_err("refused");
        assert!(e.message.contains("more than 10000 items"), "{e}");
        let e = render_str("{{ (['x'] * 100000000) | tojson }}", &s).expect_err("refused");
        assert!(e.message.contains("more than 100000 items"), "{e}");
        // Within the limit, exactly minijinja's own `tojson`.
        let stock = Environment::new()
            .render_str(
                "x={{ v | tojson }}",
                minijinja::context! { v => vec![1, 2, 3] },
            )
            .expect("stock tojson");
        assert_eq!(
            render_str("x={{ steps.a.output | tojson }}", &s),
            Ok(json!(stock))
        );
        let e = render_str(
            "{% for i in range(100) %}{{ 'y' * 1000000 }}{% endfor %}",
            &s,
        )
        .expect_err("refused");
        assert!(e.message.contains("larger than 16 MiB"), "{e}");
    }

    #[test]
    fn values_within_the_limits_convert_as_before() {
        let s = scope();
        assert_eq!(
            render_str(
                "{{ {'a': [1, 2.5, 'x', none, true], 'b': {'c': steps.a.output} } }}",
                &s
            ),
            Ok(json!({"a": [1, 2.5, "x", null, true], "b": {"c": [1, 2, 3]}}))
        );
        assert_eq!(render_str("{{ [0] * 3 }}", &s), Ok(json!([0, 0, 0])));
        assert_eq!(render_str("{{ range(3) }}", &s), Ok(json!([0, 1, 2])));
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
