//! Reading the template's top level: `name`, `version`, `inputs`, `defaults`, `steps`,
//! `output`, `actions` and the descriptive keys.

use indexmap::IndexMap;
use serde_json::Value;

use super::Files;
use super::read::{Report, describe, get};
use super::settings::{self, Settings};
use super::step::{self, Draft};
use super::yaml::{Kind, Node};
use crate::diag::Code;
use crate::inputs::{US_STATES, fits};
use crate::plan::{Action, Budget, InputSpec, InputType};

const TOP_KEYS: &[&str] = &[
    "name",
    "version",
    "description",
    "intent",
    "inputs",
    "defaults",
    "steps",
    "output",
    "actions",
    "budget",
];
const BUDGET_KEYS: &[&str] = &["max_llm_tokens", "max_cost_usd", "max_tool_calls"];
const INPUT_KEYS: &[&str] = &[
    "type",
    "required",
    "default",
    "enum",
    "description",
    "items",
    "phrases",
    "minimum",
    "maximum",
];
const ACTION_KEYS: &[&str] = &["template", "with", "description"];

/// The template as read, before references are resolved.
pub(crate) struct Template<'a> {
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub intent_examples: Vec<String>,
    pub inputs: IndexMap<String, InputSpec>,
    pub defaults: Settings,
    pub steps: Vec<Draft<'a>>,
    pub output: Option<&'a Node>,
    pub actions: IndexMap<String, Action>,
    /// Each action's `with` node, for expression checks.
    pub action_withs: Vec<&'a Node>,
    pub budget: Budget,
}

pub(crate) fn read<'a>(report: &mut Report, root: &'a Node, files: &mut Files<'_>) -> Template<'a> {
    let mut t = Template {
        name: String::new(),
        version: "0".to_owned(),
        description: None,
        intent_examples: Vec::new(),
        inputs: IndexMap::new(),
        defaults: Settings::default(),
        steps: Vec::new(),
        output: None,
        actions: IndexMap::new(),
        action_withs: Vec::new(),
        budget: Budget::default(),
    };
    if matches!(root.kind, Kind::Null) {
        report.at(
            root.pos,
            Code::MissingKey,
            "the template is empty; it needs at least `name` and `steps`",
        );
        return t;
    }
    let Some(entries) = report.mapping(root, TOP_KEYS, "the template") else {
        return t;
    };

    match get(entries, "name") {
        Some(n) => {
            if let Some(name) = report.string(n, "`name`") {
                if name.trim().is_empty() {
                    report.at(n.pos, Code::InvalidValue, "`name` must not be empty");
                }
                t.name = name;
            }
        }
        None => report.at(root.pos, Code::MissingKey, "the template needs a `name`"),
    }
    if let Some(v) = get(entries, "version")
        && let Some(version) = report.string_or_number(v, "`version`")
    {
        t.version = version;
    }
    if let Some(d) = get(entries, "description") {
        t.description = report.string(d, "`description`");
    }
    if let Some(intent) = get(entries, "intent")
        && let Some(intent) = report.mapping(intent, &["examples"], "`intent`")
        && let Some(examples) = get(intent, "examples")
    {
        t.intent_examples = report
            .string_list(examples, "`intent.examples`")
            .map(|l| l.into_iter().map(|(s, _)| s).collect())
            .unwrap_or_default();
    }
    if let Some(inputs) = get(entries, "inputs") {
        read_inputs(report, inputs, &mut t.inputs);
    }
    if let Some(defaults) = get(entries, "defaults")
        && let Some(d) = report.mapping(defaults, settings::KEYS, "`defaults`")
    {
        t.defaults = Settings::read(report, d);
    }
    match get(entries, "steps") {
        None => report.at(
            root.pos,
            Code::MissingKey,
            "the template needs `steps`, a list of at least one step",
        ),
        Some(steps) => match steps.as_seq() {
            Some([]) => report.at(
                steps.pos,
                Code::InvalidValue,
                "`steps` is empty; a template needs at least one step",
            ),
            Some(list) => {
                t.steps = list.iter().map(|s| step::read(report, s, files)).collect();
            }
            None => report.at(
                steps.pos,
                Code::InvalidValue,
                format!("`steps` must be a list of steps, not {}", describe(steps)),
            ),
        },
    }
    t.output = get(entries, "output");
    if let Some(actions) = get(entries, "actions") {
        read_actions(report, actions, &mut t);
    }
    if let Some(budget) = get(entries, "budget") {
        t.budget = read_budget(report, budget);
    }
    t
}

/// `budget: {max_llm_tokens, max_cost_usd, max_tool_calls}`: whole numbers of at least 1 and
/// a positive dollar amount.
fn read_budget(report: &mut Report, node: &Node) -> Budget {
    let mut budget = Budget::default();
    let Some(entries) = report.mapping(node, BUDGET_KEYS, "`budget`") else {
        return budget;
    };
    let whole = |report: &mut Report, key: &str| {
        let n = get(entries, key)?;
        match &n.kind {
            Kind::Int(i) if *i >= 1 => Some(*i as u64),
            _ => {
                report.at(
                    n.pos,
                    Code::InvalidValue,
                    format!(
                        "`budget.{key}` must be a whole number of at least 1, not {}",
                        describe(n)
                    ),
                );
                None
            }
        }
    };
    budget.max_llm_tokens = whole(report, "max_llm_tokens");
    budget.max_tool_calls = whole(report, "max_tool_calls");
    if let Some(n) = get(entries, "max_cost_usd") {
        match &n.kind {
            Kind::Int(i) if *i > 0 => budget.max_cost_usd = Some(*i as f64),
            Kind::Float(f) if f.is_finite() && *f > 0.0 => budget.max_cost_usd = Some(*f),
            _ => report.at(
                n.pos,
                Code::InvalidValue,
                format!(
                    "`budget.max_cost_usd` must be a positive number of US dollars, not {}",
                    describe(n)
                ),
            ),
        }
    }
    budget
}

fn read_inputs(report: &mut Report, node: &Node, out: &mut IndexMap<String, InputSpec>) {
    let Some(entries) = node.as_map() else {
        report.at(
            node.pos,
            Code::InvalidValue,
            format!(
                "`inputs` must be a mapping of names to inputs, not {}",
                describe(node)
            ),
        );
        return;
    };
    for (key, spec) in entries {
        let name = key.key_text().unwrap_or_default();
        if !super::read::is_identifier(&name) || name.contains('-') {
            report.at(
                key.pos,
                Code::InvalidValue,
                format!(
                    "input name `{name}` must start with a letter or `_` and hold only letters, \
                     digits and `_`"
                ),
            );
            continue;
        }
        if let Some(spec) = read_input(report, &name, spec) {
            out.insert(name, spec);
        }
    }
}

fn read_input(report: &mut Report, name: &str, node: &Node) -> Option<InputSpec> {
    let what = format!("input `{name}`");
    let entries = report.mapping(node, INPUT_KEYS, &what)?;
    let default = get(entries, "default");
    let ty = match get(entries, "type") {
        Some(t) => match t.as_str().and_then(input_type) {
            Some(ty) => ty,
            None => {
                report.at(
                    t.pos,
                    Code::InvalidValue,
                    format!(
                        "the type of {what} must be one of string, integer, number, boolean, \
                         array, object; not {}",
                        describe(t)
                    ),
                );
                return None;
            }
        },
        // Without a type, the default's type, else text.
        None => match default.map(|d| &d.kind) {
            Some(Kind::Bool(_)) => InputType::Boolean,
            Some(Kind::Int(_)) => InputType::Integer,
            Some(Kind::Float(_)) => InputType::Number,
            Some(Kind::Seq(_)) => InputType::Array,
            Some(Kind::Map(_)) => InputType::Object,
            _ => InputType::String,
        },
    };
    let allowed = match get(entries, "enum") {
        None => None,
        Some(e) => match &e.kind {
            Kind::Str(s) if s == "us_states" => Some(
                US_STATES
                    .iter()
                    .map(|s| Value::String((*s).to_owned()))
                    .collect::<Vec<_>>(),
            ),
            Kind::Seq(items) if !items.is_empty() => {
                let mut values = Vec::new();
                for item in items {
                    let v = item.to_json();
                    if !fits(ty, &v) {
                        report.at(
                            item.pos,
                            Code::InvalidValue,
                            format!(
                                "{} in the `enum` of {what} is not of its type {}",
                                describe(item),
                                type_name(ty)
                            ),
                        );
                    }
                    values.push(v);
                }
                Some(values)
            }
            _ => {
                report.at(
                    e.pos,
                    Code::InvalidValue,
                    format!(
                        "the `enum` of {what} must be a non-empty list or `us_states`, not {}",
                        describe(e)
                    ),
                );
                None
            }
        },
    };
    let default = default.and_then(|d| {
        let v = d.to_json();
        if !fits(ty, &v) {
            report.at(
                d.pos,
                Code::InvalidValue,
                format!(
                    "the default of {what} must be of its type {}, not {}",
                    type_name(ty),
                    describe(d)
                ),
            );
            return None;
        }
        if let Some(allowed) = &allowed
            && !allowed.contains(&v)
        {
            report.at(
                d.pos,
                Code::InvalidValue,
                format!("the default of {what} is not one of its `enum` values"),
            );
            return None;
        }
        Some(v)
    });
    let required = match get(entries, "required") {
        Some(r) => report
            .boolean(r, &format!("`required` of {what}"))
            .unwrap_or(true),
        None => get(entries, "default").is_none(),
    };
    let description = get(entries, "description").and_then(|d| report.string(d, "`description`"));
    let phrases = get(entries, "phrases")
        .map(|p| read_phrases(report, &what, ty, p))
        .unwrap_or_default();
    let mut bound = |key: &str| {
        let node = get(entries, key)?;
        let value = match (&node.kind, ty) {
            (Kind::Int(i), InputType::Integer | InputType::Number) => *i as f64,
            (Kind::Float(f), InputType::Number) => *f,
            _ => {
                report.at(
                    node.pos,
                    Code::InvalidValue,
                    format!(
                        "`{key}` of {what} must be {}, not {}",
                        match ty {
                            InputType::Integer => "an integer",
                            InputType::Number => "a number",
                            _ => "absent: only integer and number inputs have bounds",
                        },
                        describe(node)
                    ),
                );
                return None;
            }
        };
        Some(value)
    };
    let minimum = bound("minimum");
    let maximum = bound("maximum");
    if let (Some(lo), Some(hi)) = (minimum, maximum)
        && lo > hi
        && let Some(node) = get(entries, "minimum")
    {
        report.at(
            node.pos,
            Code::InvalidValue,
            format!("the `minimum` of {what} is above its `maximum`"),
        );
    }
    let spec = InputSpec {
        ty,
        required,
        default,
        allowed,
        minimum,
        maximum,
        description,
        phrases,
    };
    if let (Some(d), Some(v)) = (get(entries, "default"), &spec.default)
        && let Err(e) = crate::inputs::within_bounds(&spec, name, v)
    {
        report.at(d.pos, Code::InvalidValue, format!("the default: {e}"));
    }
    Some(spec)
}

/// `phrases: ["online booking", "run ads"]` on a boolean input: what a sentence says to switch
/// it on, for the intent matcher. Only booleans take them; each is a non-empty string.
fn read_phrases(report: &mut Report, what: &str, ty: InputType, node: &Node) -> Vec<String> {
    if ty != InputType::Boolean {
        report.at(
            node.pos,
            Code::InvalidValue,
            format!(
                "`phrases` of {what} switch a boolean input on; {what} is of type {}",
                type_name(ty)
            ),
        );
        return Vec::new();
    }
    let Some(list) = report.string_list(node, &format!("`phrases` of {what}")) else {
        return Vec::new();
    };
    let mut phrases = Vec::new();
    for (phrase, pos) in list {
        if phrase.split_whitespace().next().is_none() {
            report.at(
                pos,
                Code::InvalidValue,
                format!("each of the `phrases` of {what} must have at least one word"),
            );
        } else {
            phrases.push(phrase);
        }
    }
    phrases
}

fn input_type(text: &str) -> Option<InputType> {
    Some(match text {
        "string" => InputType::String,
        "integer" => InputType::Integer,
        "number" => InputType::Number,
        "boolean" => InputType::Boolean,
        "array" => InputType::Array,
        "object" => InputType::Object,
        _ => return None,
    })
}

pub(crate) fn type_name(ty: InputType) -> &'static str {
    match ty {
        InputType::String => "string",
        InputType::Integer => "integer",
        InputType::Number => "number",
        InputType::Boolean => "boolean",
        InputType::Array => "array",
        InputType::Object => "object",
    }
}

fn read_actions<'a>(report: &mut Report, node: &'a Node, t: &mut Template<'a>) {
    let Some(entries) = node.as_map() else {
        report.at(
            node.pos,
            Code::InvalidValue,
            format!(
                "`actions` must be a mapping of names to actions, not {}",
                describe(node)
            ),
        );
        return;
    };
    for (key, value) in entries {
        let name = key.key_text().unwrap_or_default();
        let what = format!("action `{name}`");
        let Some(action) = report.mapping(value, ACTION_KEYS, &what) else {
            continue;
        };
        let template = match get(action, "template") {
            Some(n) => report.string(n, &format!("`template` of {what}")),
            None => {
                report.at(
                    value.pos,
                    Code::MissingKey,
                    format!("{what} needs a `template` (the template it starts)"),
                );
                None
            }
        };
        let with = get(action, "with");
        if let Some(with) = with {
            t.action_withs.push(with);
        }
        let description = get(action, "description")
            .and_then(|d| report.string(d, &format!("`description` of {what}")));
        if let Some(template) = template {
            t.actions.insert(
                name,
                Action {
                    template,
                    with: with.map(Node::to_json).unwrap_or(Value::Null),
                    description,
                },
            );
        }
    }
}
