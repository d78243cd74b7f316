//! Prints the offline intent matcher's accuracy on `eval/phrasings.yaml` against the built-in
//! templates: template accuracy, exact-inputs accuracy, and each miss.

use std::process::ExitCode;

use weft_intent::Matcher;
use weft_intent::eval::{builtin_cases, builtin_template_paths, load_plans, run};

fn main() -> ExitCode {
    let plans = match load_plans(&builtin_template_paths()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot load the built-in templates: {e}");
            return ExitCode::from(2);
        }
    };
    let cases = match builtin_cases() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot read eval/phrasings.yaml: {e}");
            return ExitCode::from(2);
        }
    };
    let matcher = Matcher::new(&plans);
    let started = std::time::Instant::now();
    let report = run(&matcher, &cases);
    let elapsed = started.elapsed();
    for miss in &report.misses {
        println!(
            "MISS  {:?}\n      want {} {}\n      got  {} {} (confidence {:.2})",
            miss.case.say,
            miss.case.template,
            serde_json::Value::Object(miss.case.inputs.clone()),
            miss.template.as_deref().unwrap_or("-"),
            serde_json::Value::Object(miss.inputs.clone()),
            miss.confidence
        );
    }
    println!(
        "templates: {}  phrasings: {}  template accuracy: {:.1}% ({}/{})  exact inputs: {:.1}% ({}/{})  {:.2} ms per phrasing",
        plans.len(),
        report.cases,
        100.0 * report.template_accuracy(),
        report.template_ok,
        report.cases,
        100.0 * report.inputs_accuracy(),
        report.inputs_ok,
        report.cases,
        elapsed.as_secs_f64() * 1000.0 / report.cases.max(1) as f64
    );
    ExitCode::SUCCESS
}
