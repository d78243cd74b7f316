//! `transform`: runs a jq program on JSON data with jaq, in process.
//!
//! Workflows use it on hot paths (reshaping every item of a fan-out), so compiled programs are
//! cached by their text; compiling a program costs far more than running it on small data.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Ctx, Vars, data, unwrap_valr};
use jaq_json::{Num, Val};
use serde::Deserialize;
use serde_json::{Value, json};

use super::parse_input;
use crate::{Context, Error, Result, Tool};

type Filter = jaq_core::Filter<data::JustLut<Val>>;

/// Programs kept compiled; past this the cache starts over (templates hold few programs).
const CACHE_CAPACITY: usize = 1024;
/// Most values collected with `all: true`, so a runaway generator fails instead of eating memory.
const MAX_RESULTS: usize = 1_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    #[serde(default)]
    data: Value,
    jq: String,
    #[serde(default)]
    all: bool,
}

/// The `transform` tool.
#[derive(Default)]
pub struct Transform {
    cache: Mutex<HashMap<String, Arc<Filter>>>,
}

impl Transform {
    pub fn new() -> Self {
        Transform::default()
    }

    /// Runs `program` on `data`: one result is the output, none is `null`, several are an
    /// error unless `all` (then a list).
    pub fn run(&self, program: &str, data: &Value, all: bool) -> Result<Value> {
        let filter = self.compiled(program)?;
        let input = Val::deserialize(data)
            .map_err(|error| Error::Input(format!("transform: data: {error}")))?;
        let ctx = Ctx::<data::JustLut<Val>>::new(&filter.lut, Vars::new([]));
        let mut outputs = filter.id.run((ctx, input)).map(unwrap_valr);
        let mut next = || -> Result<Option<Value>> {
            match outputs.next() {
                None => Ok(None),
                Some(Ok(value)) => stored(value).map(Some),
                Some(Err(error)) => Err(Error::Permanent(format!("transform: jq error: {error}"))),
            }
        };
        if all {
            let mut values = Vec::new();
            while let Some(value) = next()? {
                if values.len() == MAX_RESULTS {
                    return Err(Error::Permanent(format!(
                        "transform: the program yields more than {MAX_RESULTS} values"
                    )));
                }
                values.push(value);
            }
            return Ok(Value::Array(values));
        }
        let Some(first) = next()? else {
            return Ok(Value::Null);
        };
        if next()?.is_some() {
            return Err(Error::Permanent(
                "transform: the jq program yields several values; collect them with `[ ... ]` \
                 or set `all: true` to get a list"
                    .into(),
            ));
        }
        Ok(first)
    }

    fn compiled(&self, program: &str) -> Result<Arc<Filter>> {
        if let Some(filter) = self.lock().get(program) {
            return Ok(filter.clone());
        }
        // Compile outside the lock: other steps keep running their cached programs meanwhile.
        let filter = Arc::new(compile(program)?);
        let mut cache = self.lock();
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(program.to_string(), filter.clone());
        Ok(filter)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Filter>>> {
        // The cache holds no invariant a panic could break, so a poisoned lock is still usable.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Tool for Transform {
    fn name(&self) -> &str {
        "transform"
    }

    fn description(&self) -> &str {
        "Runs a jq program on `data` (jaq). One result is the output, none is null; several are \
         an error unless `all: true`, which returns them as a list."
    }

    fn input_schema(&self) -> Option<Value> {
        Some(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": ["jq"],
            "properties": {
                "data": {"description": "The JSON value the program reads as `.`."},
                "jq": {"type": "string", "minLength": 1, "description": "A jq program, e.g. `[.[] | .name]`."},
                "all": {"type": "boolean", "default": false, "description": "Return every result as a list."}
            },
            "additionalProperties": false
        }))
    }

    fn is_pure(&self) -> bool {
        true
    }

    fn call_pure(&self, input: &Value) -> Option<Result<Value>> {
        Some(
            parse_input::<Input>("transform", input)
                .and_then(|input| self.run(&input.jq, &input.data, input.all)),
        )
    }

    async fn call(&self, input: Value, _ctx: &Context) -> Result<Value> {
        self.call_pure(&input).unwrap_or(Ok(Value::Null))
    }

    /// A literal program is compiled at validation, so a syntax error is found before a run.
    fn check_input(&self, literal: &Value) -> Vec<(String, String)> {
        match literal.get("jq").and_then(Value::as_str) {
            Some(program) => match self.compiled(program) {
                Ok(_) => Vec::new(),
                Err(e) => vec![("/jq".to_owned(), e.to_string())],
            },
            None => Vec::new(),
        }
    }
}

/// Parses and compiles a jq program with the standard library, reporting every problem with
/// its line and column.
fn compile(program: &str) -> Result<Filter> {
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let arena = Arena::default();
    let file = File {
        code: program,
        path: (),
    };
    let fail = |problems: Vec<String>| {
        Error::Permanent(format!(
            "transform: the jq program does not compile: {}",
            problems.join("; ")
        ))
    };
    let modules = Loader::new(defs).load(&arena, file).map_err(|errors| {
        let mut problems = Vec::new();
        for (file, error) in errors {
            let at = |part: &str| position(file.code, part);
            match error {
                jaq_core::load::Error::Io(items) => {
                    for (path, message) in items {
                        problems.push(format!("cannot load module {path:?}: {message}"));
                    }
                }
                jaq_core::load::Error::Lex(items) => {
                    for (expected, part) in items {
                        problems.push(format!("{}: expected {}", at(part), expected.as_str()));
                    }
                }
                jaq_core::load::Error::Parse(items) => {
                    for (expected, found) in items {
                        let found_text = if found.is_empty() {
                            "end of program".to_string()
                        } else {
                            format!("{found:?}")
                        };
                        problems.push(format!(
                            "{}: expected {}, found {found_text}",
                            at(found),
                            expected.as_str()
                        ));
                    }
                }
            }
        }
        fail(problems)
    })?;
    jaq_core::Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|errors| {
            let mut problems = Vec::new();
            for (file, items) in errors {
                for (name, undefined) in items {
                    problems.push(format!(
                        "{}: undefined {} `{name}`",
                        position(file.code, name),
                        undefined.as_str()
                    ));
                }
            }
            fail(problems)
        })
}

/// `line L, column C` of `part` inside `code` (both 1-based); `part` must be a slice of `code`.
fn position(code: &str, part: &str) -> String {
    let start = part.as_ptr() as usize;
    let base = code.as_ptr() as usize;
    if start < base || start > base + code.len() {
        return "in a module".into();
    }
    let before = &code[..start - base];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}")
}

/// A result as JSON, refused when it nests deeper than weft stores (converting it would recurse
/// as deep as it nests). A refused value is leaked, not dropped: dropping a value nested
/// 100,000 deep recurses too, and the evaluator child that normally holds it exits after a
/// failed call anyway.
fn stored(value: Val) -> Result<Value> {
    let limit = weft_core::limits::MAX_JSON_DEPTH;
    if nests_deeper(&value, limit) {
        std::mem::forget(value);
        return Err(Error::Permanent(format!(
            "transform: the result nests lists and objects more than {limit} levels deep; \
             weft stores at most {limit} levels"
        )));
    }
    Ok(to_json(&value))
}

/// Whether `value` nests deeper than `limit`, walked without recursion.
fn nests_deeper(value: &Val, limit: usize) -> bool {
    let mut stack = vec![(value, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        let children: Vec<&Val> = match v {
            Val::Arr(items) => items.iter().collect(),
            Val::Obj(map) => map.values().collect(),
            _ => continue,
        };
        if depth + 1 > limit {
            return true;
        }
        stack.extend(children.into_iter().map(|c| (c, depth + 1)));
    }
    false
}

/// Converts a jaq value back to JSON. jaq's extensions (byte strings, non-string keys) become
/// strings; non-finite numbers become `null`, as in JSON output of jq.
fn to_json(value: &Val) -> Value {
    match value {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => num_to_json(n),
        Val::TStr(bytes) | Val::BStr(bytes) => {
            Value::String(String::from_utf8_lossy(bytes).into_owned())
        }
        Val::Arr(items) => Value::Array(items.iter().map(to_json).collect()),
        Val::Obj(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let key = match key {
                        Val::TStr(bytes) | Val::BStr(bytes) => {
                            String::from_utf8_lossy(bytes).into_owned()
                        }
                        other => other.to_string(),
                    };
                    (key, to_json(value))
                })
                .collect(),
        ),
    }
}

fn num_to_json(n: &Num) -> Value {
    match n {
        Num::Int(i) => Value::from(*i as i64),
        Num::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        // Big integers and decimal literals: let serde_json pick the closest number it holds.
        other => serde_json::from_str::<Value>(&other.to_string())
            .ok()
            .filter(Value::is_number)
            .unwrap_or(Value::Null),
    }
}
