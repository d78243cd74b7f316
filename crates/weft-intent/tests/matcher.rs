//! The matcher's general mechanisms, each shown on a template written here (one the matcher's
//! code has never seen) rather than on the built-in ones: durations converted to an input's
//! unit, URL lists in the order written, enum values never matched by a near word.

use serde_json::{Value, json};
use weft_intent::eval::plan_from_str;
use weft_intent::{Answer, Matcher};

/// A backup auditor: a host, an age in hours, a report style, and report URLs to compare.
const BACKUPS: &str = r#"
name: backup-audit
description: Audit a server's backups - list snapshots older than a maximum age, verify their checksums, and write a report.
intent: { examples: ["audit the backups of {host}", "check backups on {host} older than {max_age_hours} hours", "write a {report} backup report for {host}"] }
inputs:
  host: { type: string, description: "The server to audit, e.g. db1" }
  max_age_hours: { type: integer, default: 24, description: "Flag snapshots older than this many hours" }
  report:
    type: string
    enum: [full, brief, many]
    default: brief
    description: "full: every snapshot; brief: a short summary; many: one report per disk"
  summary:
    type: string
    enum: [auto, model, plain]
    default: auto
    description: "auto: a model's summary when one answers, else plain text; model: the model's summary or fail; plain: no model"
"#;

/// A page differ: a list of pages, nothing else.
const PAGES: &str = r#"
name: page-diff
description: Fetch several web pages and diff their text.
intent: { examples: ["diff {pages}", "diff the text of {pages}"] }
inputs:
  pages: { type: array, items: { type: string }, description: "The pages to diff" }
"#;

/// A thank-you sender: a person's name and where they are.
const THANKS: &str = r#"
name: thank-you
description: Send a thank-you note to someone.
intent: { examples: ["thank {person}", "send a thank-you note to {person}"] }
inputs:
  person: { type: string, description: "Who to thank" }
  city: { type: string, required: false, description: "Where they live: a US state or city" }
"#;

/// A ticket lister: a team, a count, a priority.
const TICKETS: &str = r#"
name: ticket-list
description: List the newest support tickets of a team.
intent: { examples: ["list tickets for {team}", "show the {count} newest {priority} tickets of {team}"] }
inputs:
  team: { type: string, description: "The team whose tickets to list, e.g. payments" }
  count: { type: integer, default: 10, description: "How many tickets to list" }
  priority: { type: string, enum: [any, low, urgent], default: any, description: "Which priority" }
"#;

/// The one step every test template has: matching reads only the rest.
const STEP: &str = "steps:\n  - { id: step, tool: transform, with: { data: 1, jq: \".\" } }\n";

fn ask(sentence: &str) -> Answer {
    let plans = [BACKUPS, PAGES, THANKS, TICKETS]
        .iter()
        .map(|s| plan_from_str(&format!("{s}{STEP}")).expect("test template loads"))
        .collect::<Vec<_>>();
    Matcher::new(&plans).ask(sentence)
}

/// The answer to a sentence, which must choose `template`.
fn ask_for(template: &str, sentence: &str) -> Answer {
    let answer = ask(sentence);
    assert_eq!(answer.template.as_deref(), Some(template), "{sentence}");
    answer
}

/// The answer to a sentence about db7's backups, which must read as that.
fn ask_backups_of_db7(sentence: &str) -> Answer {
    let answer = ask_for("backup-audit", sentence);
    assert_eq!(
        answer.inputs.get("host"),
        Some(&json!("db7")),
        "{sentence}: {answer:?}"
    );
    answer
}

#[test]
fn durations_fill_the_input_in_its_own_unit() {
    for (sentence, hours) in [
        ("audit the backups of db7 older than 2 days", 48),
        ("check backups on db7 older than a week", 168),
        (
            "audit the backups of db7, flag anything older than a fortnight",
            336,
        ),
        ("audit the backups of db7 older than 90 minutes", -1),
        ("audit the backups of db7 older than 120 minutes", 2),
        ("check backups on db7 older than 36h", 36),
        ("check backups on db7 older than half a day", 12),
    ] {
        let answer = ask_backups_of_db7(sentence);
        let want = (hours >= 0).then(|| json!(hours));
        // 90 minutes is not a whole number of hours: never rounded, asked.
        assert_eq!(
            answer.inputs.get("max_age_hours"),
            want.as_ref(),
            "{sentence}"
        );
        assert_eq!(
            answer.question.is_some(),
            hours < 0,
            "{sentence}: {answer:?}"
        );
    }
}

#[test]
fn url_lists_keep_the_order_written() {
    let answer = ask("diff https://c.example vs https://a.example vs https://b.example");
    assert_eq!(answer.template.as_deref(), Some("page-diff"));
    assert_eq!(
        answer.inputs.get("pages"),
        Some(&json!([
            "https://c.example",
            "https://a.example",
            "https://b.example"
        ]))
    );
    let answer = ask("https://c.example, https://a.example and https://b.example: diff them");
    assert_eq!(
        answer
            .inputs
            .get("pages")
            .and_then(Value::as_array)
            .map(Vec::len),
        Some(3)
    );
    assert_eq!(
        answer.inputs["pages"][0],
        json!("https://c.example"),
        "{answer:?}"
    );
}

#[test]
fn an_enum_value_is_not_read_from_a_word_it_is_one_letter_from() {
    // "many" is a value of `report`; "any" and "man" are not it.
    let answer = ask("write a full backup report for db2");
    assert_eq!(answer.inputs.get("report"), Some(&json!("full")));
    let answer = ask("audit the backups of db2 for any problems");
    assert_eq!(answer.inputs.get("report"), None, "{answer:?}");
}

#[test]
fn enum_values_from_negation_notes_and_the_inputs_name() {
    for (sentence, want) in [
        // "plain: no model": the value whose note says it.
        ("audit the backups of db7 with no model", Some("plain")),
        // Turning the input's own thing off is the value noted "no ...".
        ("audit the backups of db7 without a summary", Some("plain")),
        // A value beside the input's name.
        (
            "audit the backups of db7, model summary please",
            Some("model"),
        ),
        ("audit the backups of db7", None),
    ] {
        let answer = ask_backups_of_db7(sentence);
        assert_eq!(
            answer.inputs.get("summary").and_then(Value::as_str),
            want,
            "{sentence}: {answer:?}"
        );
    }
    // A negated value is not that value, and nothing else either.
    let answer = ask("write a backup report for db7, not full");
    assert_eq!(answer.inputs.get("report"), None, "{answer:?}");
}

#[test]
fn a_name_is_its_capitalized_words_and_stops_at_a_clause() {
    for (sentence, person) in [
        ("thank Priya and tell her she rocks", "Priya"),
        (
            "send a thank-you note to Ana Lopez, she lives in Denver",
            "Ana Lopez",
        ),
        ("thank Bob from Texas", "Bob"),
        // Written without capitals: the words themselves.
        ("thank ada", "ada"),
    ] {
        let answer = ask_for("thank-you", sentence);
        assert_eq!(
            answer.inputs.get("person"),
            Some(&json!(person)),
            "{sentence}: {answer:?}"
        );
    }
}

#[test]
fn counts_from_cues_and_values_from_compound_words() {
    for (sentence, inputs) in [
        (
            "list tickets for payments, top 7",
            json!({"team": "payments", "count": 7}),
        ),
        (
            "list tickets for payments, 12 of them",
            json!({"team": "payments", "count": 12}),
        ),
        // "urgent-only" says urgent; "any" in front of a noun is a word, not the value.
        (
            "list any urgent-only tickets for payments",
            json!({"team": "payments", "priority": "urgent"}),
        ),
    ] {
        let answer = ask_for("ticket-list", sentence);
        assert_eq!(
            Value::Object(answer.inputs.clone()),
            inputs,
            "{sentence}: {answer:?}"
        );
    }
}

#[test]
fn an_action_the_template_does_not_do_is_a_question() {
    // Everything but the verb reads as an audit of db7's backups.
    for sentence in ["delete the backups of db7", "restore the backups of db7"] {
        let answer = ask(sentence);
        assert!(answer.question.is_some(), "{sentence}: {answer:?}");
    }
    assert!(ask("audit the backups of db7").question.is_none());
}
