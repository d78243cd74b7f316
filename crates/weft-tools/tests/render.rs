//! `render`: Jinja text against the step's scope.

use serde_json::json;
use weft_tools::{Context, Error, Registry, Tool, ToolsConfig};

fn render() -> std::sync::Arc<dyn Tool> {
    Registry::with_builtins(&ToolsConfig::default())
        .get("render")
        .expect("render is built in")
        .clone()
}

#[test]
fn renders_markdown_from_scope_and_vars() {
    let tool = render();
    assert!(tool.is_pure() && tool.wants_scope());
    let template = "# Report for {{ input.city }}\n\
                    {% for place in steps.search.output %}- {{ place.name }} ({{ place.rating }})\n{% endfor %}\
                    Total: {{ steps.search.output | length }} by {{ author }}\n";
    let output = tool
        .call_pure(&json!({
            "template": template,
            "vars": {"author": "weft"},
            "scope": {
                "input": {"city": "Denver"},
                "steps": {"search": {"output": [
                    {"name": "Cafe", "rating": 4.5},
                    {"name": "Deli", "rating": 4}
                ]}}
            }
        }))
        .expect("pure")
        .expect("renders");
    assert_eq!(
        output,
        json!("# Report for Denver\n- Cafe (4.5)\n- Deli (4)\nTotal: 2 by weft\n")
    );
}

#[test]
fn vars_shadow_scope_names() {
    let output = render()
        .call_pure(&json!({
            "template": "{{ input }}",
            "vars": {"input": "from vars"},
            "scope": {"input": "from scope"}
        }))
        .expect("pure")
        .expect("renders");
    assert_eq!(output, json!("from vars"));
}

#[test]
fn optional_values_work_in_if_but_typos_fail() {
    let tool = render();
    let output = tool
        .call_pure(&json!({"template": "{% if missing %}yes{% else %}no{% endif %}", "scope": {}}))
        .expect("pure")
        .expect("if on a missing name is fine");
    assert_eq!(output, json!("no"));

    let error = tool
        .call_pure(&json!({
            "template": "line one\n{{ steps.serch.output }}",
            "scope": {"steps": {"search": {"output": 1}}}
        }))
        .expect("pure")
        .expect_err("typo");
    assert!(matches!(error, Error::Permanent(_)), "{error:?}");
    assert!(error.to_string().contains("line 2"), "{error}");
}

#[test]
fn syntax_errors_say_the_line() {
    let error = render()
        .call_pure(&json!({"template": "ok\nok\n{% for x in %}", "scope": {}}))
        .expect("pure")
        .expect_err("syntax error");
    assert!(matches!(error, Error::Permanent(_)), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("line 3") && text.contains("syntax error"),
        "{text}"
    );
}

#[test]
fn runaway_loops_run_out_of_fuel() {
    let error = render()
        .call_pure(&json!({
            "template": "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
            "scope": {}
        }))
        .expect("pure")
        .expect_err("out of fuel");
    assert!(error.to_string().contains("fuel"), "{error}");
}

#[tokio::test]
async fn call_renders_too() {
    let output = render()
        .call(
            json!({"template": "hi {{ name }}", "vars": {"name": "Ada"}}),
            &Context::for_test(),
        )
        .await
        .expect("renders");
    assert_eq!(output, json!("hi Ada"));
}
