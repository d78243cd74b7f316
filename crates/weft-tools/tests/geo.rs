//! `geo.cities`: the bundled gazetteer.

use serde_json::{Value, json};
use weft_tools::builtin::us_states;
use weft_tools::{Context, Error, Registry, ToolsConfig};

fn cities(input: Value) -> Result<Value, Error> {
    Registry::with_builtins(&ToolsConfig::default())
        .get("geo.cities")
        .expect("geo.cities is built in")
        .call_pure(&input)
        .expect("pure")
}

#[test]
fn colorado_starts_with_denver_by_name_or_code() {
    for state in ["Colorado", "co", "CO", " colorado "] {
        let output = cities(json!({"state": state})).expect("a state");
        let names = output.as_array().expect("a list");
        assert_eq!(names.len(), 15, "default limit for {state:?}");
        assert_eq!(names[0], json!("Denver"), "{state:?}");
        assert_eq!(names[1], json!("Colorado Springs"), "{state:?}");
    }
}

#[test]
fn limit_and_other_states() {
    assert_eq!(
        cities(json!({"state": "texas", "limit": 3})).expect("texas"),
        json!(["Houston", "San Antonio", "Dallas"])
    );
    assert_eq!(
        cities(json!({"state": "IL", "limit": 1})).expect("illinois"),
        json!(["Chicago"])
    );
    let many = cities(json!({"state": "California", "limit": 1000})).expect("california");
    assert_eq!(many.as_array().map(Vec::len), Some(50));
}

#[test]
fn every_state_has_cities() {
    assert_eq!(us_states().len(), 51);
    assert!(us_states().contains(&("CO", "Colorado")));
    for (code, name) in us_states() {
        let output = cities(json!({"state": name, "limit": 1})).expect("a state");
        assert_eq!(output.as_array().map(Vec::len), Some(1), "{code} {name}");
    }
}

#[tokio::test]
async fn unknown_states_are_input_errors() {
    let tool = Registry::with_builtins(&ToolsConfig::default())
        .get("geo.cities")
        .expect("built in")
        .clone();
    let error = tool
        .call(json!({"state": "Atlantis"}), &Context::for_test())
        .await
        .expect_err("not a state");
    assert!(matches!(error, Error::Input(_)), "{error:?}");
    assert!(error.to_string().contains("two-letter code"), "{error}");
}
