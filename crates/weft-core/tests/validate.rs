//! Template validation as a user meets it: each bad template under `tests/data/invalid/` gives
//! the diagnostics in its snapshot (FILE:LINE:COL: CODE: message), and each template under
//! `tests/data/valid/` loads with none.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use weft_core::catalog::ToolCatalog;
use weft_core::load::{load_file, load_stored, load_str};
use weft_core::plan::{Backoff, StepKind, Strategy};

/// The built-in tool names, `places.search`, and schemas for `sleep` and `geo.cities`.
struct Catalog;

impl ToolCatalog for Catalog {
    fn contains(&self, name: &str) -> bool {
        self.names().iter().any(|n| n == name)
    }
    fn input_schema(&self, name: &str) -> Option<Value> {
        match name {
            "sleep" => Some(json!({
                "type": "object",
                "properties": { "duration": { "type": "string" } },
                "required": ["duration"],
                "additionalProperties": false
            })),
            "geo.cities" => Some(json!({
                "type": "object",
                "properties": {
                    "state": { "type": "string" },
                    "limit": { "type": "integer", "minimum": 1, "maximum": 100 }
                },
                "required": ["state"]
            })),
            _ => None,
        }
    }
    fn is_pure(&self, name: &str) -> bool {
        name == "transform" || name == "render"
    }
    fn names(&self) -> Vec<String> {
        [
            "transform",
            "render",
            "http",
            "command",
            "sleep",
            "geo.cities",
            "places.search",
        ]
        .map(String::from)
        .to_vec()
    }
}

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(Path::new("tests/data").join(dir))
        .expect("fixture folder")
        .map(|e| e.expect("fixture entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths
}

/// What `weft validate` prints for a template: one diagnostic a line, or `ok`.
fn check(path: &Path) -> String {
    match load_file(path, &Catalog) {
        Ok(_) => "ok".to_owned(),
        Err(diags) => diags.to_string(),
    }
}

#[test]
fn every_invalid_template_reports_its_problems_where_they_are() {
    let paths = fixtures("invalid");
    assert!(paths.len() >= 13, "one bad template per error code");
    for path in paths {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
        let output = check(&path);
        assert_ne!(output, "ok", "{} loaded without a problem", path.display());
        insta::assert_snapshot!(format!("invalid__{stem}"), output);
    }
}

#[test]
fn every_valid_template_loads_without_diagnostics() {
    for path in fixtures("valid") {
        if let Err(diags) = load_file(&path, &Catalog) {
            panic!("{} should load:\n{diags}", path.display());
        }
    }
}

#[test]
fn the_design_example_becomes_this_plan() {
    let plan =
        load_file(Path::new("tests/data/valid/state_discovery.yaml"), &Catalog).expect("loads");
    assert_eq!(plan.name, "state-discovery");
    assert_eq!(plan.version, "3");
    assert_eq!(plan.intent_examples.len(), 2);
    assert_eq!(
        plan.inputs["state"].allowed.as_ref().map(Vec::len),
        Some(51)
    );
    assert!(!plan.inputs["cities"].required);
    assert!(plan.inputs["niche"].required);

    let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["cities", "discover", "businesses", "summary"]);
    // A plain list is a chain.
    assert_eq!(plan.steps[0].needs, Vec::<usize>::new());
    assert_eq!(plan.steps[1].needs, [0]);
    assert_eq!(plan.steps[3].needs, [2]);
    assert_eq!(plan.steps[0].prev, None);
    assert_eq!(plan.steps[3].prev, Some(2));

    let discover = &plan.steps[1];
    let each = discover.for_each.as_ref().expect("for_each");
    assert_eq!(each.as_name, "city");
    assert_eq!(each.concurrency.map(|c| c.get()), Some(3));
    assert_eq!(
        each.items,
        json!("{{ input.cities or steps.cities.output }}")
    );
    // Defaults apply field by field under the step's own settings.
    assert_eq!(discover.retry.max_attempts.get(), 3);
    assert_eq!(discover.timeout, Some(Duration::from_secs(120)));
    let token = discover.token.as_ref().expect("token");
    assert_eq!(token.ttl, Duration::from_secs(180));
    assert_eq!(token.scopes, ["secret:places_api_key"]);
    assert_eq!(discover.cache_ttl, Some(Duration::from_secs(24 * 3600)));
    assert_eq!((discover.line, discover.col), (20, 5));

    // Pure tools run inline unless the template says otherwise.
    assert_eq!(plan.steps[2].strategy, Strategy::Sync);
    assert_eq!(discover.strategy, Strategy::Queue);

    // The included file's text replaces `template_file`, and the plan keeps it.
    let summary = &plan.steps[3];
    let text = std::fs::read_to_string("tests/data/valid/summary.md.j2").expect("fixture");
    assert_eq!(summary.with, json!({ "template": text }));
    assert_eq!(plan.files.get("summary.md.j2"), Some(&text));
    assert_eq!(plan.output, Some(json!("{{ steps.summary.output }}")));
    assert_eq!(
        plan.actions["filter_by_reviews"].template,
        "filter-businesses"
    );
    assert_eq!(plan.digest.len(), 64);
}

#[test]
fn a_stored_plan_reloads_to_the_same_digest_without_the_folder() {
    let plan =
        load_file(Path::new("tests/data/valid/state_discovery.yaml"), &Catalog).expect("loads");
    let again = load_stored(&plan.source, &plan.file, &plan.files, &Catalog).expect("reloads");
    assert_eq!(again.digest, plan.digest);
    assert_eq!(again.steps[3].with, plan.steps[3].with);

    let missing = load_stored(&plan.source, "t.yaml", &BTreeMap::new(), &Catalog)
        .expect_err("the included file is gone");
    assert_eq!(
        missing.to_string(),
        "t.yaml:33:28: WEFT-E003: `template_file` `summary.md.j2` is not among the run's stored files"
    );

    // A changed include is a changed template.
    let mut files = plan.files.clone();
    files.insert("summary.md.j2".into(), "changed".into());
    let changed = load_stored(&plan.source, &plan.file, &files, &Catalog).expect("reloads");
    assert_ne!(changed.digest, plan.digest);
}

#[test]
fn needs_prev_and_settings_shape_the_dag() {
    let plan = load_file(Path::new("tests/data/valid/dag.yaml"), &Catalog).expect("loads");
    let [left, right, join, report, wait, sub, after] = plan.steps.as_slice() else {
        panic!("seven steps");
    };
    assert!(matches!(&sub.kind, StepKind::Workflow(v) if v["template"] == "other"));
    assert!(sub.needs.is_empty());
    assert_eq!(after.needs, [5, 3]);
    assert_eq!(after.prev, Some(5));
    assert_eq!(plan.actions["again"].with["last"], "{{ prev.output }}");
    assert_eq!(
        plan.actions["again"].description.as_deref(),
        Some("Run it again")
    );
    assert!(left.needs.is_empty() && right.needs.is_empty());
    assert_eq!(join.needs, [0, 1]);
    assert_eq!(report.needs, [2]);
    assert_eq!(right.strategy, Strategy::Sync);
    assert_eq!(join.strategy, Strategy::Sync);
    assert_eq!(join.retry.max_attempts.get(), 4);
    assert_eq!(
        join.retry.backoff,
        Backoff::Fixed {
            delay: Duration::from_millis(100),
            jitter: false
        }
    );
    assert_eq!(join.timeout, Some(Duration::from_secs(10)));
    assert!(join.continue_on_error);
    assert_eq!(
        report.condition.as_deref(),
        Some("prev.success and input.count > 0")
    );
    assert_eq!(
        report.for_each.as_ref().map(|f| f.items.clone()),
        Some(json!(["a", "b"]))
    );
    assert_eq!(report.as_name(), "item");
    // Nothing set: one attempt, default backoff, five minutes, no token, queued.
    assert_eq!(left.retry, Default::default());
    assert_eq!(left.timeout, Some(Duration::from_secs(300)));
    assert_eq!(left.token, None);
    assert_eq!(right.with, json!({ "duration": "10ms" }));
    assert!(matches!(&wait.kind, StepKind::Approval(v) if v["prompt"] == "Ship it?"));
    assert_eq!(wait.strategy, Strategy::Queue);
    assert_eq!(plan.version, "0");
    assert_eq!(plan.inputs["count"].default, Some(json!(3)));
    assert!(!plan.inputs["count"].required);
}

trait AsName {
    fn as_name(&self) -> &str;
}

impl AsName for weft_core::plan::Step {
    fn as_name(&self) -> &str {
        self.for_each.as_ref().map_or("", |f| f.as_name.as_str())
    }
}

#[test]
fn template_file_without_a_folder_is_an_error_at_the_path() {
    let source = "name: t\nsteps:\n  - id: r\n    tool: render\n    with: {template_file: x.j2}\n";
    let err = load_str(source, "<api>", None, &Catalog).expect_err("no folder");
    insta::assert_snapshot!(err.to_string(), @"<api>:5:27: WEFT-E003: `template_file` `x.j2` cannot be read: this template has no folder (write `template` inline)");
}

#[test]
fn expression_problems_point_inside_the_string() {
    let source = "name: t\ninputs: {name: {type: string}}\nsteps:\n  - id: a\n    tool: transform\n    with: {data: \"hi {{ input.nmae }}\", jq: .}\n";
    let err = load_str(source, "t.yaml", None, &Catalog).expect_err("typo");
    insta::assert_snapshot!(err.to_string(), @"t.yaml:6:25: WEFT-E009: `input.nmae` is not declared under `inputs` (did you mean `name`?)");
}

#[test]
fn yaml_anchors_and_aliases_are_followed() {
    let source = "name: t\nsteps:\n  - id: a\n    tool: transform\n    with: &w {data: 1, jq: .}\n  - id: b\n    tool: transform\n    with: *w\n";
    let plan = load_str(source, "t.yaml", None, &Catalog).expect("loads");
    assert_eq!(plan.steps[1].with, json!({"data": 1, "jq": "."}));
}

#[test]
fn a_budget_loads_into_the_plan_and_a_request_overrides_it_limit_by_limit() {
    let source = "name: t\nbudget: {max_llm_tokens: 1000, max_cost_usd: 0.5}\nsteps:\n  - id: a\n    tool: sleep\n    with: {duration: 1ms}\n";
    let plan = load_str(source, "t.yaml", None, &Catalog).expect("loads");
    let budget = plan.budget;
    assert_eq!(budget.max_llm_tokens, Some(1000));
    assert_eq!(budget.max_cost_usd, Some(0.5));
    assert_eq!(budget.max_tool_calls, None);
    let request = weft_core::plan::Budget {
        max_tool_calls: Some(3),
        max_llm_tokens: Some(10),
        ..Default::default()
    };
    let run = budget.overridden_by(&request);
    assert_eq!(
        (run.max_llm_tokens, run.max_cost_usd, run.max_tool_calls),
        (Some(10), Some(0.5), Some(3))
    );
    assert_eq!(
        run.exceeded(10, 0.5, 3),
        None,
        "reaching a limit is not crossing it"
    );
    assert_eq!(
        run.exceeded(11, 0.0, 0).as_deref(),
        Some("the run used 11 LLM tokens; its budget allows 10")
    );
    assert!(run.exceeded(0, 0.51, 0).is_some_and(|m| m.contains("$0.5")));
    assert!(
        run.exceeded(0, 0.0, 4)
            .is_some_and(|m| m.contains("4 tool calls"))
    );
    let none = load_str(
        "name: t\nsteps:\n  - id: a\n    tool: sleep\n    with: {duration: 1ms}\n",
        "t.yaml",
        None,
        &Catalog,
    )
    .expect("loads");
    assert!(none.budget.is_empty());
}
