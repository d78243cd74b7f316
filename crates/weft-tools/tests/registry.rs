//! Every built-in is registered, described, and has an input schema that accepts what the
//! template language allows and refuses unknown keys.

use serde_json::{Value, json};
use weft_tools::{Registry, ToolsConfig};

const BUILTINS: &[&str] = &[
    "command",
    "geo.cities",
    "http",
    "render",
    "sleep",
    "transform",
];

#[test]
fn register_all_inserts_every_builtin() {
    let registry = Registry::with_builtins(&ToolsConfig::default());
    let names: Vec<&str> = registry.iter().map(|tool| tool.name()).collect();
    assert_eq!(names, BUILTINS);
    for tool in registry.iter() {
        assert!(!tool.description().is_empty(), "{}", tool.name());
    }
    let pure: Vec<&str> = registry
        .iter()
        .filter(|tool| tool.is_pure())
        .map(|tool| tool.name())
        .collect();
    assert_eq!(pure, ["geo.cities", "render", "transform"]);
}

fn check(tool: &str, input: Value, valid: bool) {
    let registry = Registry::with_builtins(&ToolsConfig::default());
    let schema = registry
        .get(tool)
        .and_then(|tool| tool.input_schema())
        .expect("a schema");
    assert_eq!(schema["additionalProperties"], json!(false), "{tool}");
    assert!(schema["required"].is_array(), "{tool}");
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    assert_eq!(validator.is_valid(&input), valid, "{tool}: {input}");
}

#[test]
fn schemas_accept_the_template_language() {
    check(
        "transform",
        json!({"data": [1], "jq": ".[]", "all": true}),
        true,
    );
    check("transform", json!({"data": [1]}), false);
    check(
        "render",
        json!({"template": "hi {{ x }}", "vars": {"x": 1}}),
        true,
    );
    check("render", json!({"template_text": "x"}), false);
    check(
        "http",
        json!({"url": "https://example.com", "method": "POST", "headers": {"a": "b"},
               "query": {"q": 1}, "json": {"a": 1}, "timeout": "10s"}),
        true,
    );
    check(
        "http",
        json!({"url": "https://example.com", "timeout": "soon"}),
        false,
    );
    check("http", json!({"href": "https://example.com"}), false);
    check(
        "command",
        json!({"argv": ["sh", "-c", "true"], "stdin": {"a": 1}, "env": {"A": "1"}, "cwd": "."}),
        true,
    );
    check("command", json!({"argv": []}), false);
    check("sleep", json!({"duration": "50ms"}), true);
    check("sleep", json!({"duration": "1m 30s"}), true);
    check("sleep", json!({"duration": 50}), false);
    check("geo.cities", json!({"state": "Colorado", "limit": 5}), true);
    check("geo.cities", json!({"state": "CO", "limit": 0}), false);
}
