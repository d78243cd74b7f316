//! The offline matcher holds its figures on both evaluation sets, against the built-in
//! templates and the two test templates of `eval/templates/` (which the matcher's code knows
//! nothing about).
//!
//! The tuned set (`eval/phrasings.yaml`) is what the matcher was improved against; the
//! held-out set (`eval/heldout.yaml`) was written from the templates alone and never tuned
//! against, so its figures are the honest ones. The thresholds below are what the matcher
//! reaches, not wishes: see README "Asking in a sentence".

use weft_intent::Matcher;
use weft_intent::eval::{
    Report, builtin_cases, eval_template_paths, heldout_cases, heldout2_cases, load_plans, run,
};

fn matcher() -> Matcher {
    let plans = load_plans(&eval_template_paths()).expect("templates load");
    assert!(plans.len() >= 8, "{} templates", plans.len());
    Matcher::new(&plans)
}

fn show(name: &str, report: &Report) {
    eprintln!("{name}: {}", report.summary());
    eprint!("{}", report.calibration());
}

#[test]
fn tuned_set_meets_its_targets() {
    let cases = builtin_cases().expect("eval/phrasings.yaml parses");
    let report = run(&matcher(), &cases);
    for miss in &report.misses {
        eprintln!(
            "miss: {:?} -> {:?} {:?} ({})",
            miss.case.say, miss.template, miss.inputs, miss.confidence
        );
    }
    show("tuned", &report);
    assert!(
        cases.len() >= 247,
        "the tuned set has {} phrasings",
        cases.len()
    );
    assert!(
        report.template_accuracy() >= 0.99,
        "template accuracy {:.3}",
        report.template_accuracy()
    );
    assert!(
        report.inputs_accuracy() >= 0.98,
        "exact inputs {:.3}",
        report.inputs_accuracy()
    );
    assert!(
        report.template_precision() >= 0.99,
        "template precision when running {:.3}",
        report.template_precision()
    );
}

/// Its misses are not printed: the set stays held out from whoever tunes the matcher.
#[test]
fn heldout_set_meets_its_targets() {
    let cases = heldout_cases().expect("eval/heldout.yaml parses");
    let tuned = builtin_cases().expect("eval/phrasings.yaml parses");
    assert!(
        cases.len() >= 60,
        "the held-out set has {} phrasings",
        cases.len()
    );
    assert!(
        cases.len() + tuned.len() >= 200,
        "{} phrasings in all",
        cases.len() + tuned.len()
    );
    let report = run(&matcher(), &cases);
    show("held-out", &report);
    assert!(
        report.template_accuracy() >= HELDOUT_TEMPLATE,
        "template accuracy {:.3}",
        report.template_accuracy()
    );
    assert!(
        report.inputs_accuracy() >= HELDOUT_INPUTS,
        "exact inputs {:.3}",
        report.inputs_accuracy()
    );
    assert!(
        report.template_precision() >= HELDOUT_PRECISION,
        "template precision when running {:.3}",
        report.template_precision()
    );
}

/// Measured held-out figures, rounded down (the goals are 0.95, 0.90 and 0.97).
const HELDOUT_TEMPLATE: f64 = 0.99;
const HELDOUT_INPUTS: f64 = 0.96;
const HELDOUT_PRECISION: f64 = 0.99;

/// The second held-out set (`eval/heldout2.yaml`), written after the matcher was tuned on the
/// first one's classes of misses, by someone who saw no matcher code and no phrasing file: the
/// figures nobody could have tuned against. Measured on 2026-12-06 (94 phrasings): template
/// 96.8%, exact inputs 84.0% (the goal of 90% is missed), template right when it ran without
/// asking 98.5%. The floors below are those figures rounded down; the misses are not printed.
#[test]
fn second_heldout_set_holds_its_measured_figures() {
    let cases = heldout2_cases().expect("eval/heldout2.yaml parses");
    assert!(cases.len() >= 90, "{} phrasings", cases.len());
    let report = run(&matcher(), &cases);
    show("held-out2", &report);
    assert!(
        report.template_accuracy() >= 0.96,
        "template accuracy {:.3}",
        report.template_accuracy()
    );
    assert!(
        report.inputs_accuracy() >= 0.83,
        "exact inputs {:.3}",
        report.inputs_accuracy()
    );
    assert!(
        report.template_precision() >= 0.98,
        "template precision when running {:.3}",
        report.template_precision()
    );
}
