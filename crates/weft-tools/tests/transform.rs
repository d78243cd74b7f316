//! `transform`: jq programs as a template author writes them.

use serde_json::{Value, json};
use weft_tools::{Context, Error, Registry, Tool, ToolsConfig};

fn transform() -> std::sync::Arc<dyn Tool> {
    Registry::with_builtins(&ToolsConfig::default())
        .get("transform")
        .expect("transform is built in")
        .clone()
}

fn check(data: Value, jq: &str, expect: Value) {
    let output = transform()
        .call_pure(&json!({"data": data, "jq": jq}))
        .expect("transform is pure");
    assert_eq!(output.expect("program runs"), expect, "program: {jq}");
}

#[test]
fn programs_give_their_single_result() {
    check(json!({"a": 1}), ".a", json!(1));
    check(json!({"a": {"b": "x"}}), ".a.b", json!("x"));
    check(json!([1, 2, 3]), "map(. * 2)", json!([2, 4, 6]));
    check(json!([3, 1, 2]), "sort | first", json!(1));
    check(json!({"a": 1, "b": 2}), "keys", json!(["a", "b"]));
    check(json!([1, 2, 3]), "add / length", json!(2.0));
    check(
        json!({"name": "Ada"}),
        "\"Hello, \\(.name)!\"",
        json!("Hello, Ada!"),
    );
    check(
        json!(null),
        "{x: 1, y: [true, null]}",
        json!({"x": 1, "y": [true, null]}),
    );
    check(
        json!([{"n": 2}, {"n": 1}]),
        "sort_by(.n) | map(.n)",
        json!([1, 2]),
    );
    check(json!("a,b"), "split(\",\")", json!(["a", "b"]));
    check(
        json!(12345678901234_i64),
        ". + 1",
        json!(12345678901235_i64),
    );
}

#[test]
fn dedupe_across_pages_by_place_id() {
    let pages = json!([
        [{"place_id": "p1", "name": "Cafe"}, {"place_id": "p2", "name": "Bar"}],
        [{"place_id": "p2", "name": "Bar"}, {"place_id": "p3", "name": "Deli"}],
        []
    ]);
    check(
        pages,
        "[.[][]] | unique_by(.place_id)",
        json!([
            {"place_id": "p1", "name": "Cafe"},
            {"place_id": "p2", "name": "Bar"},
            {"place_id": "p3", "name": "Deli"}
        ]),
    );
}

#[test]
fn no_result_is_null() {
    check(json!([1, 2]), ".[] | select(. > 5)", Value::Null);
    check(json!({}), "empty", Value::Null);
}

#[test]
fn several_results_need_all() {
    let tool = transform();
    let error = tool
        .call_pure(&json!({"data": [1, 2], "jq": ".[]"}))
        .expect("pure")
        .expect_err("two results without all");
    assert!(matches!(error, Error::Permanent(_)), "{error:?}");
    assert!(error.to_string().contains("all: true"), "{error}");

    let all = tool
        .call_pure(&json!({"data": [1, 2], "jq": ".[]", "all": true}))
        .expect("pure")
        .expect("all collects");
    assert_eq!(all, json!([1, 2]));
}

#[test]
fn compile_errors_are_permanent_and_say_where() {
    let tool = transform();
    let error = tool
        .call_pure(&json!({"data": {}, "jq": ".a |"}))
        .expect("pure")
        .expect_err("syntax error");
    assert!(matches!(error, Error::Permanent(_)), "{error:?}");
    assert!(error.to_string().contains("does not compile"), "{error}");

    let error = tool
        .call_pure(&json!({"data": {}, "jq": "[1] |\n no_such_filter"}))
        .expect("pure")
        .expect_err("undefined filter");
    let text = error.to_string();
    assert!(
        text.contains("no_such_filter") && text.contains("line 2"),
        "{text}"
    );
}

#[test]
fn runtime_errors_are_permanent() {
    let error = transform()
        .call_pure(&json!({"data": {"a": "x"}, "jq": ".a + 1"}))
        .expect("pure")
        .expect_err("string plus number");
    assert!(matches!(error, Error::Permanent(_)), "{error:?}");
    assert!(error.to_string().contains("jq error"), "{error}");
}

#[test]
fn bad_input_is_an_input_error() {
    let error = transform()
        .call_pure(&json!({"data": 1}))
        .expect("pure")
        .expect_err("no jq");
    assert!(matches!(error, Error::Input(_)), "{error:?}");
}

#[tokio::test]
async fn call_matches_call_pure_and_the_cache() {
    let tool = transform();
    assert!(tool.is_pure());
    for n in 0..3 {
        let output = tool
            .call(
                json!({"data": {"n": n}, "jq": ".n * 10"}),
                &Context::for_test(),
            )
            .await
            .expect("runs");
        assert_eq!(output, json!(n * 10));
    }
}
