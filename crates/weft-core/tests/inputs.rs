//! Run inputs as a user gives them: `-i key=value` text and JSON objects, checked against the
//! template's declared `inputs:`.

use serde_json::{Map, Value, json};
use weft_core::catalog::NameList;
use weft_core::inputs::{parse_cli_value, resolve_inputs};
use weft_core::load::load_str;
use weft_core::plan::Plan;

fn plan() -> Plan {
    let source = r#"
name: inputs
inputs:
  niche: { type: string, description: "Business category, e.g. HVAC" }
  state: { type: string, enum: us_states }
  count: { type: integer, default: 3 }
  ratio: { type: number, required: false }
  loud:  { type: boolean, default: false, phrases: [shout, in capitals] }
  tags:  { type: array, required: false }
  extra: { type: object, required: false }
  color: { type: string, enum: [red, green], default: red }
steps:
  - id: a
    tool: transform
    with: { data: "{{ input }}", jq: . }
"#;
    load_str(
        source,
        "inputs.yaml",
        None,
        &NameList(vec!["transform".into()]),
    )
    .expect("loads")
}

fn given(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => panic!("an object"),
    }
}

#[test]
fn defaults_fill_in_and_absent_optional_inputs_are_null() {
    let input =
        resolve_inputs(&plan(), &given(json!({"niche": "HVAC", "state": "Texas"}))).expect("valid");
    assert_eq!(
        input,
        json!({
            "niche": "HVAC", "state": "Texas", "count": 3, "ratio": null, "loud": false,
            "tags": null, "extra": null, "color": "red"
        })
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let problems = resolve_inputs(
        &plan(),
        &given(json!({"state": "Texsa", "count": 2.5, "colour": "red", "color": "blue"})),
    )
    .expect_err("invalid");
    assert_eq!(
        problems,
        [
            "unknown input `colour` (did you mean `color`?); `inputs` takes: niche, state, count, ratio, loud, tags, extra, color",
            "input `niche` is required (string): Business category, e.g. HVAC",
            "input `state` is \"Texsa\" which is not an allowed value (did you mean `Texas`?)",
            "input `count` wants an integer, got 2.5",
            "input `color` is \"blue\" which is not an allowed value; one of: \"red\", \"green\"",
        ]
    );
}

#[test]
fn an_integral_number_is_an_integer() {
    let input = resolve_inputs(
        &plan(),
        &given(json!({"niche": "x", "state": "Ohio", "count": 4.0, "ratio": 1})),
    )
    .expect("valid");
    assert_eq!(input["count"], json!(4));
    assert_eq!(input["ratio"], json!(1));
}

#[test]
fn wrong_types_name_the_wanted_type() {
    let problems = resolve_inputs(
        &plan(),
        &given(json!({"niche": 1, "state": "Ohio", "loud": "yes", "tags": {}})),
    )
    .expect_err("invalid");
    assert_eq!(
        problems,
        [
            "input `niche` wants a string, got 1",
            "input `loud` wants true or false, got \"yes\"",
            "input `tags` wants an array, got {}",
        ]
    );
}

#[test]
fn cli_text_becomes_the_declared_type() {
    let plan = plan();
    let parse = |name: &str, raw: &str| parse_cli_value(&plan.inputs[name], name, raw);
    assert_eq!(parse("niche", " 42 "), Ok(json!(" 42 ")));
    assert_eq!(parse("count", "7"), Ok(json!(7)));
    assert_eq!(parse("ratio", "0.5"), Ok(json!(0.5)));
    assert_eq!(parse("ratio", "2"), Ok(json!(2)));
    for (raw, want) in [
        ("true", true),
        ("yes", true),
        ("1", true),
        ("False", false),
        ("no", false),
        ("0", false),
    ] {
        assert_eq!(parse("loud", raw), Ok(json!(want)), "{raw}");
    }
    assert_eq!(parse("tags", r#"["a", "b"]"#), Ok(json!(["a", "b"])));
    assert_eq!(parse("extra", r#"{"k": 1}"#), Ok(json!({"k": 1})));

    assert_eq!(
        parse("count", "abc"),
        Err("input `count` wants an integer, got `abc`".to_owned())
    );
    assert_eq!(
        parse("ratio", "lots"),
        Err("input `ratio` wants a number, got `lots`".to_owned())
    );
    assert_eq!(
        parse("loud", "maybe"),
        Err("input `loud` wants true or false, got `maybe`".to_owned())
    );
    assert_eq!(
        parse("tags", "a,b"),
        Err("input `tags` wants a JSON array like [\"a\", \"b\"], got `a,b`".to_owned())
    );
    assert_eq!(
        parse("extra", "[1]"),
        Err("input `extra` wants a JSON object like {\"key\": \"value\"}, got `[1]`".to_owned())
    );
}

#[test]
fn a_boolean_input_lists_the_phrases_that_switch_it_on() {
    let plan = plan();
    assert_eq!(plan.inputs["loud"].phrases, ["shout", "in capitals"]);
    assert!(plan.inputs["count"].phrases.is_empty());
}

#[test]
fn state_inputs_take_codes_any_case_and_near_misses() {
    for (text, want) in [
        ("CO", "Colorado"),
        ("co", "Colorado"),
        ("new york", "New York"),
        ("Colorodo", "Colorado"),
        ("Pensylvania", "Pennsylvania"),
    ] {
        let input =
            resolve_inputs(&plan(), &given_map(text)).unwrap_or_else(|p| panic!("{text}: {p:?}"));
        assert_eq!(input["state"], want, "{text}");
    }
    // Too far, or too short to guess: still refused, with the suggestion.
    for text in ["XX", "Texsa", "Atlantis"] {
        assert!(
            resolve_inputs(&plan(), &given_map(text)).is_err(),
            "{text} was accepted"
        );
    }
}

fn given_map(state: &str) -> Map<String, Value> {
    given(json!({"niche": "x", "state": state}))
}

#[test]
fn minimum_and_maximum_bound_number_inputs() {
    let source = r#"
name: bounds
inputs:
  limit: { type: integer, default: 15, minimum: 1, maximum: 100 }
  ratio: { type: number, required: false, minimum: 0.5 }
steps:
  - id: a
    tool: transform
    with: { data: "{{ input }}", jq: . }
"#;
    let plan =
        load_str(source, "b.yaml", None, &NameList(vec!["transform".into()])).expect("loads");
    let problems =
        resolve_inputs(&plan, &given(json!({"limit": -3, "ratio": 0.25}))).expect_err("refused");
    assert_eq!(
        problems,
        [
            "input `limit` is -3, which is not between 1 and 100",
            "input `ratio` is 0.25, below its minimum 0.5",
        ]
    );
    assert!(resolve_inputs(&plan, &given(json!({"limit": 100}))).is_ok());

    let bad = r#"
name: bad
inputs:
  a: { type: integer, default: 0, minimum: 1 }
  b: { type: string, maximum: 3 }
  c: { type: integer, minimum: 5, maximum: 2 }
steps:
  - id: a
    tool: transform
    with: { data: 1, jq: . }
"#;
    let diags = load_str(bad, "bad.yaml", None, &NameList(vec!["transform".into()]))
        .expect_err("invalid")
        .to_string();
    assert!(
        diags.contains("the default: input `a` is 0, below its minimum 1"),
        "{diags}"
    );
    assert!(
        diags.contains("`maximum` of input `b` must be absent"),
        "{diags}"
    );
    assert!(
        diags.contains("`minimum` of input `c` is above its `maximum`"),
        "{diags}"
    );
}
