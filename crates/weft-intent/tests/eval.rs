//! The offline matcher holds its accuracy targets on the shipped evaluation set.

use weft_intent::Matcher;
use weft_intent::eval::{builtin_cases, builtin_template_paths, load_plans, run};

#[test]
fn offline_matcher_meets_accuracy_targets() {
    let plans = load_plans(&builtin_template_paths()).expect("built-in templates load");
    let cases = builtin_cases().expect("eval set parses");
    assert!(
        cases.len() >= 60,
        "the eval set has {} phrasings",
        cases.len()
    );
    let report = run(&Matcher::new(&plans), &cases);
    for miss in &report.misses {
        eprintln!(
            "miss: {:?} -> {:?} {:?}",
            miss.case.say, miss.template, miss.inputs
        );
    }
    assert!(
        report.template_accuracy() >= 0.90,
        "template accuracy {:.3}",
        report.template_accuracy()
    );
    assert!(
        report.inputs_accuracy() >= 0.85,
        "exact inputs accuracy {:.3}",
        report.inputs_accuracy()
    );
}
