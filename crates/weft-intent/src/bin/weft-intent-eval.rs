//! Prints the offline intent matcher's figures against the built-in templates and the two of
//! `eval/templates/`: on the tuned set (`eval/phrasings.yaml`, with each miss) and, with
//! `--heldout`, on the held-out set (`eval/heldout.yaml`; its misses only with
//! `--heldout-misses`): template accuracy, exact-inputs accuracy, precision of the answers it
//! would run on, the share of sentences that asked, and a calibration table. `--heldout2` does
//! the same on the second held-out set (`eval/heldout2.yaml`, written later, also frozen), and
//! `--cases FILE` on any file of the same shape, with its misses.

use std::process::ExitCode;

use weft_intent::Matcher;
use weft_intent::eval::{
    Case, Report, builtin_cases, eval_template_paths, heldout_cases, heldout2_cases, load_plans,
    run,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let heldout = args
        .iter()
        .any(|a| a == "--heldout" || a == "--heldout-misses");
    let heldout_misses = args.iter().any(|a| a == "--heldout-misses");
    let plans = match load_plans(&eval_template_paths()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot load the templates: {e}");
            return ExitCode::from(2);
        }
    };
    let matcher = Matcher::new(&plans);
    // `--say "a sentence"`: the matcher's answer to one sentence.
    if let Some(pos) = args.iter().position(|a| a == "--say")
        && let Some(sentence) = args.get(pos + 1)
    {
        let answer = matcher.ask(sentence);
        println!(
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    let tuned = match builtin_cases() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot read eval/phrasings.yaml: {e}");
            return ExitCode::from(2);
        }
    };
    let started = std::time::Instant::now();
    let report = run(&matcher, &tuned);
    let per = started.elapsed().as_secs_f64() * 1000.0 / report.cases.max(1) as f64;
    print_misses(&report);
    println!(
        "templates: {}  ({per:.2} ms per phrasing; runs when confidence >= {} and nothing is missing)",
        plans.len(),
        weft_intent::MIN_CONFIDENCE
    );
    println!("tuned     {}", report.summary());
    print!("{}", report.calibration());
    if heldout {
        let cases = match heldout_cases() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cannot read eval/heldout.yaml: {e}");
                return ExitCode::from(2);
            }
        };
        let report = run(&matcher, &cases);
        if heldout_misses {
            print_misses(&report);
        }
        println!("held-out  {}", report.summary());
        print!("{}", report.calibration());
    }
    let more: Option<(&str, Result<Vec<Case>, String>)> = if args.iter().any(|a| a == "--heldout2")
    {
        Some(("held-out2", heldout2_cases()))
    } else if let Some(pos) = args.iter().position(|a| a == "--cases")
        && let Some(file) = args.get(pos + 1)
    {
        Some((
            "cases",
            std::fs::read_to_string(file)
                .map_err(|e| format!("{file}: {e}"))
                .and_then(|text| {
                    serde_yaml_ng::from_str(&text).map_err(|e| format!("{file}: {e}"))
                }),
        ))
    } else {
        None
    };
    if let Some((label, cases)) = more {
        let cases = match cases {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cannot read the cases: {e}");
                return ExitCode::from(2);
            }
        };
        let report = run(&matcher, &cases);
        print_misses(&report);
        println!("{label} {}", report.summary());
        print!("{}", report.calibration());
    }
    ExitCode::SUCCESS
}

fn print_misses(report: &Report) {
    for miss in &report.misses {
        println!(
            "MISS  {:?}\n      want {} {}\n      got  {} {} (confidence {:.2}){}",
            miss.case.say,
            miss.case.template.as_deref().unwrap_or("(a question)"),
            serde_json::Value::Object(miss.case.inputs.clone()),
            miss.template.as_deref().unwrap_or("-"),
            serde_json::Value::Object(miss.inputs.clone()),
            miss.confidence,
            match &miss.question {
                Some(q) => format!("\n      asked {q:?}"),
                None => String::new(),
            }
        );
    }
}
