//! A run's input values, checked against the template's declared `inputs:`.
//!
//! The CLI's `-i key=value`, an `--input-file`, and the API all end here, so every caller gets
//! the same defaults, the same type rules and the same messages.

use serde_json::{Map, Value};

use crate::load::suggest::did_you_mean;
use crate::plan::{InputSpec, InputType, Plan};

/// `enum: us_states`: the 50 states and the District of Columbia.
pub const US_STATES: [&str; 51] = [
    "Alabama",
    "Alaska",
    "Arizona",
    "Arkansas",
    "California",
    "Colorado",
    "Connecticut",
    "Delaware",
    "District of Columbia",
    "Florida",
    "Georgia",
    "Hawaii",
    "Idaho",
    "Illinois",
    "Indiana",
    "Iowa",
    "Kansas",
    "Kentucky",
    "Louisiana",
    "Maine",
    "Maryland",
    "Massachusetts",
    "Michigan",
    "Minnesota",
    "Mississippi",
    "Missouri",
    "Montana",
    "Nebraska",
    "Nevada",
    "New Hampshire",
    "New Jersey",
    "New Mexico",
    "New York",
    "North Carolina",
    "North Dakota",
    "Ohio",
    "Oklahoma",
    "Oregon",
    "Pennsylvania",
    "Rhode Island",
    "South Carolina",
    "South Dakota",
    "Tennessee",
    "Texas",
    "Utah",
    "Vermont",
    "Virginia",
    "Washington",
    "West Virginia",
    "Wisconsin",
    "Wyoming",
];

/// The same states with their USPS codes, `("CO", "Colorado")`, for code that reads what people
/// write (the intent matcher) and tools that speak to providers by code.
pub const US_STATE_CODES: [(&str, &str); 51] = [
    ("AL", "Alabama"),
    ("AK", "Alaska"),
    ("AZ", "Arizona"),
    ("AR", "Arkansas"),
    ("CA", "California"),
    ("CO", "Colorado"),
    ("CT", "Connecticut"),
    ("DE", "Delaware"),
    ("DC", "District of Columbia"),
    ("FL", "Florida"),
    ("GA", "Georgia"),
    ("HI", "Hawaii"),
    ("ID", "Idaho"),
    ("IL", "Illinois"),
    ("IN", "Indiana"),
    ("IA", "Iowa"),
    ("KS", "Kansas"),
    ("KY", "Kentucky"),
    ("LA", "Louisiana"),
    ("ME", "Maine"),
    ("MD", "Maryland"),
    ("MA", "Massachusetts"),
    ("MI", "Michigan"),
    ("MN", "Minnesota"),
    ("MS", "Mississippi"),
    ("MO", "Missouri"),
    ("MT", "Montana"),
    ("NE", "Nebraska"),
    ("NV", "Nevada"),
    ("NH", "New Hampshire"),
    ("NJ", "New Jersey"),
    ("NM", "New Mexico"),
    ("NY", "New York"),
    ("NC", "North Carolina"),
    ("ND", "North Dakota"),
    ("OH", "Ohio"),
    ("OK", "Oklahoma"),
    ("OR", "Oregon"),
    ("PA", "Pennsylvania"),
    ("RI", "Rhode Island"),
    ("SC", "South Carolina"),
    ("SD", "South Dakota"),
    ("TN", "Tennessee"),
    ("TX", "Texas"),
    ("UT", "Utah"),
    ("VT", "Vermont"),
    ("VA", "Virginia"),
    ("WA", "Washington"),
    ("WV", "West Virginia"),
    ("WI", "Wisconsin"),
    ("WY", "Wyoming"),
];

/// The run's `input` object: every declared input, given or defaulted; optional inputs nobody
/// gave are `null`. Every problem is returned, one message each.
pub fn resolve_inputs(plan: &Plan, given: &Map<String, Value>) -> Result<Value, Vec<String>> {
    let mut problems = Vec::new();
    for name in given.keys() {
        if !plan.inputs.contains_key(name) {
            let declared = if plan.inputs.is_empty() {
                " (the template declares no inputs)".to_owned()
            } else {
                did_you_mean(name, plan.inputs.keys().map(String::as_str))
            };
            problems.push(format!(
                "unknown input `{name}`{declared}; `{}` takes: {}",
                plan.name,
                plan.inputs
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    for (name, value) in given {
        if let Err(problem) = crate::limits::check_json_depth(value, &format!("input `{name}`")) {
            problems.push(problem);
        }
    }
    let mut out = Map::new();
    for (name, spec) in &plan.inputs {
        let value = match given.get(name) {
            Some(Value::Null) | None => match (&spec.default, spec.required) {
                (Some(default), _) => default.clone(),
                (None, false) => Value::Null,
                (None, true) => {
                    let about = spec
                        .description
                        .as_deref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default();
                    problems.push(format!(
                        "input `{name}` is required ({}){about}",
                        type_name(spec.ty)
                    ));
                    continue;
                }
            },
            Some(v) => match check(spec, name, v) {
                Ok(v) => v,
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            },
        };
        out.insert(name.clone(), value);
    }
    if problems.is_empty() {
        Ok(Value::Object(out))
    } else {
        Err(problems)
    }
}

/// A given value against its declaration: the type (an integral `3.0` counts as the integer 3)
/// and the `enum`.
fn check(spec: &InputSpec, name: &str, value: &Value) -> Result<Value, String> {
    let value = match (spec.ty, value) {
        (InputType::Integer, Value::Number(n)) if n.as_i64().is_none() && n.as_u64().is_none() => {
            match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
                _ => return Err(format!("input `{name}` wants an integer, got {value}")),
            }
        }
        _ => value.clone(),
    };
    if !fits(spec.ty, &value) {
        return Err(format!(
            "input `{name}` wants {}, got {}",
            a_type(spec.ty),
            short(&value)
        ));
    }
    // `CO`, `colorado`, `Colorodo`: the state they mean, as `weft ask` reads them.
    let value = match &value {
        Value::String(text) if spec.is_us_states() => us_state(text)
            .map(|s| Value::String(s.to_owned()))
            .unwrap_or(value),
        _ => value,
    };
    within_bounds(spec, name, &value)?;
    if let Some(allowed) = &spec.allowed
        && !allowed.contains(&value)
    {
        let hint = match &value {
            Value::String(s) => did_you_mean(s, allowed.iter().filter_map(Value::as_str)),
            _ => String::new(),
        };
        let list = if allowed.len() <= 12 {
            format!(
                "; one of: {}",
                allowed.iter().map(short).collect::<Vec<_>>().join(", ")
            )
        } else {
            String::new()
        };
        return Err(format!(
            "input `{name}` is {} which is not an allowed value{hint}{list}",
            short(&value)
        ));
    }
    Ok(value)
}

/// The `minimum:` and `maximum:` of a number input.
pub(crate) fn within_bounds(spec: &InputSpec, name: &str, value: &Value) -> Result<(), String> {
    let Some(n) = value.as_f64() else {
        return Ok(());
    };
    let show = |b: f64| {
        serde_json::Number::from_f64(b).map_or(b.to_string(), |n| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map_or(n.to_string(), |f| (f as i64).to_string())
        })
    };
    match (spec.minimum, spec.maximum) {
        (Some(lo), Some(hi)) if n < lo || n > hi => Err(format!(
            "input `{name}` is {value}, which is not between {} and {}",
            show(lo),
            show(hi)
        )),
        (Some(lo), _) if n < lo => Err(format!(
            "input `{name}` is {value}, below its minimum {}",
            show(lo)
        )),
        (_, Some(hi)) if n > hi => Err(format!(
            "input `{name}` is {value}, above its maximum {}",
            show(hi)
        )),
        _ => Ok(()),
    }
}

/// The state a person means by `text`: a USPS code (`CO`, `co`), a name in any case, or a near
/// miss of a name long enough that a typo cannot make one of an ordinary word (`Colorodo`).
pub fn us_state(text: &str) -> Option<&'static str> {
    let text = text.trim();
    if text.len() == 2 {
        let upper = text.to_ascii_uppercase();
        return US_STATE_CODES
            .iter()
            .find(|(code, _)| *code == upper)
            .map(|(_, name)| *name);
    }
    let lower = text.to_lowercase();
    if let Some(name) = US_STATES.iter().find(|s| s.to_lowercase() == lower) {
        return Some(name);
    }
    if lower.chars().count() < 6 {
        return None;
    }
    let words = lower.split_whitespace().count();
    US_STATES
        .iter()
        .filter(|s| s.len() >= 6 && s.split(' ').count() == words)
        .filter(|s| s.to_lowercase().chars().next() == lower.chars().next())
        .map(|s| {
            (
                crate::load::suggest::distance(&s.to_lowercase(), &lower),
                *s,
            )
        })
        .filter(|(d, s)| (*d as f64) <= 0.2 * s.chars().count().max(lower.chars().count()) as f64)
        .min_by_key(|(d, _)| *d)
        .map(|(_, s)| s)
}

/// `-i KEY=VALUE` texts as values of the inputs' declared types, over `given` (an input file's).
/// A value that does not convert stays text, so that [`resolve_inputs`] reports it with every
/// other problem; an entry without `=` is a problem of its own. All problems, or the values.
pub fn parse_cli_inputs(
    plan: &Plan,
    mut given: Map<String, Value>,
    raws: &[String],
) -> (Map<String, Value>, Vec<String>) {
    let mut problems = Vec::new();
    for raw in raws {
        let Some((key, text)) = raw.split_once('=') else {
            problems.push(format!("`-i {raw}`: inputs are written KEY=VALUE"));
            continue;
        };
        let value = plan
            .inputs
            .get(key)
            .and_then(|spec| parse_cli_value(spec, key, text).ok())
            .unwrap_or_else(|| Value::String(text.to_owned()));
        given.insert(key.to_owned(), value);
    }
    (given, problems)
}

/// [`parse_cli_inputs`] then [`resolve_inputs`]: the run's `input` object, or every problem.
pub fn resolve_cli_inputs(
    plan: &Plan,
    given: Map<String, Value>,
    raws: &[String],
) -> Result<Value, Vec<String>> {
    let (given, mut problems) = parse_cli_inputs(plan, given, raws);
    match resolve_inputs(plan, &given) {
        Ok(v) if problems.is_empty() => Ok(v),
        Ok(_) => Err(problems),
        Err(more) => {
            problems.extend(more);
            Err(problems)
        }
    }
}

/// Converts `-i name=raw` text to the input's declared type.
pub fn parse_cli_value(spec: &InputSpec, name: &str, raw: &str) -> Result<Value, String> {
    let wants = |what: &str| format!("input `{name}` wants {what}, got `{raw}`");
    let text = raw.trim();
    match spec.ty {
        InputType::String => Ok(Value::String(raw.to_owned())),
        InputType::Integer => text
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| wants("an integer")),
        InputType::Number => {
            if let Ok(i) = text.parse::<i64>() {
                return Ok(Value::from(i));
            }
            text.parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| wants("a number"))
        }
        InputType::Boolean => match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(Value::Bool(true)),
            "false" | "no" | "0" => Ok(Value::Bool(false)),
            _ => Err(wants("true or false")),
        },
        InputType::Array => match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Array(_)) => Ok(v),
            _ => Err(wants("a JSON array like [\"a\", \"b\"]")),
        },
        InputType::Object => match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Object(_)) => Ok(v),
            _ => Err(wants("a JSON object like {\"key\": \"value\"}")),
        },
    }
}

/// Whether a JSON value is of a declared type.
pub(crate) fn fits(ty: InputType, value: &Value) -> bool {
    match ty {
        InputType::String => value.is_string(),
        InputType::Integer => value.is_i64() || value.is_u64(),
        InputType::Number => value.is_number(),
        InputType::Boolean => value.is_boolean(),
        InputType::Array => value.is_array(),
        InputType::Object => value.is_object(),
    }
}

fn type_name(ty: InputType) -> &'static str {
    crate::load::type_name(ty)
}

fn a_type(ty: InputType) -> &'static str {
    match ty {
        InputType::String => "a string",
        InputType::Integer => "an integer",
        InputType::Number => "a number",
        InputType::Boolean => "true or false",
        InputType::Array => "an array",
        InputType::Object => "an object",
    }
}

/// A value for a message, cut short.
fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        format!("{}...", text.chars().take(57).collect::<String>())
    } else {
        text
    }
}
