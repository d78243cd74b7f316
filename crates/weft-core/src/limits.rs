//! Bounds on what weft parses and stores, so no input can exhaust the stack or the memory.
//!
//! A tenant controls templates, inputs and (through jq and Jinja) the values steps produce.
//! Every recursive structure weft reads or writes is therefore bounded here, and each check is
//! iterative: checking a hostile value must not itself overflow the stack.

use serde_json::Value;

/// Deepest nesting of any JSON value weft stores (run inputs, task inputs, outputs).
///
/// serde_json refuses to read past 128 levels, and stored values sit inside wrappers (API
/// answers, a render step's scope) a few levels deep; 100 leaves room for them and is far
/// beyond any real document.
pub const MAX_JSON_DEPTH: usize = 100;

/// Deepest nesting of a template's YAML (mappings and lists).
pub const MAX_YAML_DEPTH: usize = 64;

/// Most nodes a template's YAML may stand for once every alias is expanded. A template is a
/// few hundred nodes; "billion laughs" needs billions.
pub const MAX_YAML_NODES: usize = 100_000;

/// How deep `value` nests: a scalar is 0, `[1]` is 1, `[[1]]` is 2. Stops counting at
/// `limit + 1`, so a hostile value costs no more than the part of it that is checked.
pub fn json_depth(value: &Value, limit: usize) -> usize {
    let mut deepest = 0;
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        let depth = depth + 1;
        deepest = deepest.max(depth);
        if deepest > limit {
            return deepest;
        }
        stack.extend(children.map(|child| (child, depth)));
    }
    deepest
}

/// `Err` with a message for people when `value` nests deeper than [`MAX_JSON_DEPTH`];
/// `what` names the value ("the step's output").
pub fn check_json_depth(value: &Value, what: &str) -> Result<(), String> {
    if json_depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH {
        return Err(format!(
            "{what} nests lists and objects more than {MAX_JSON_DEPTH} levels deep; weft \
             stores at most {MAX_JSON_DEPTH} levels (flatten it, e.g. with jq `flatten`)"
        ));
    }
    Ok(())
}

/// How deep the JSON text `text` nests, read without building it (strings skipped), so a
/// reader can tell a value too deep to parse from a corrupt one.
pub fn json_text_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Parses stored JSON text. A value nested too deep for serde_json (written before weft
/// refused such values) reads as an object saying so, so one such row cannot make a whole list
/// unreadable; anything else that does not parse is an error.
pub fn parse_stored_json(text: &str) -> Result<Value, serde_json::Error> {
    match serde_json::from_str(text) {
        Ok(value) => Ok(value),
        Err(error) => {
            let depth = json_text_depth(text);
            if depth > MAX_JSON_DEPTH {
                return Ok(serde_json::json!({
                    "unreadable": format!(
                        "this value nests {depth} levels deep; weft reads at most \
                         {MAX_JSON_DEPTH}"
                    )
                }));
            }
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn depth_counts_collections_only() {
        assert_eq!(json_depth(&json!(1), 64), 0);
        assert_eq!(json_depth(&json!([1, {"a": [2]}]), 64), 3);
        assert_eq!(json_depth(&json!({}), 64), 1);
    }

    #[test]
    fn a_deep_value_is_refused_and_a_shallow_one_kept() {
        let mut deep = json!(1);
        for _ in 0..MAX_JSON_DEPTH + 1 {
            deep = json!([deep]);
        }
        assert!(check_json_depth(&deep, "the output").is_err());
        let mut ok = json!(1);
        for _ in 0..MAX_JSON_DEPTH {
            ok = json!([ok]);
        }
        assert!(check_json_depth(&ok, "the output").is_ok());
    }

    #[test]
    fn stored_text_too_deep_to_parse_reads_as_a_note() {
        let text = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(json_text_depth(&text), 200);
        assert_eq!(json_text_depth(r#"{"a": "[[[", "b": ["\"]"]}"#), 2);
        let value = parse_stored_json(&text).expect("a note");
        assert!(value["unreadable"].as_str().unwrap().contains("200 levels"));
        assert!(parse_stored_json("{not json").is_err());
    }
}
