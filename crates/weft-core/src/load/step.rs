//! Reading one `steps:` entry: its shape, its kind, and the `render` tool's `template_file`.
//!
//! What a step refers to (other steps, inputs, tools) is checked later, once all steps are
//! read; this module only keeps the nodes those checks need.

use std::num::NonZeroU32;

use serde_json::Value;

use super::Files;
use super::read::{Report, describe, get, get_key, has_dynamic, is_dynamic, is_identifier};
use super::settings::{self, Settings};
use super::yaml::{Kind, Node, Pos};
use crate::diag::Code;
use crate::plan::StepKind;

const STEP_KEYS: &[&str] = &[
    "id",
    "tool",
    "approval",
    "workflow",
    "with",
    "needs",
    "if",
    "for_each",
    "as",
    "concurrency",
    "retry",
    "timeout",
    "cache",
    "token",
    "continue_on_error",
    "strategy",
    "post",
];

/// A step as read, before references are resolved.
pub(crate) struct Draft<'a> {
    pub node: &'a Node,
    /// The id; `None` when missing or unusable (already reported).
    pub id: Option<(String, Pos)>,
    pub kind: Option<StepKind>,
    /// The `tool:` value node, for unknown-tool messages.
    pub tool_node: Option<&'a Node>,
    /// `with:` as JSON, `template_file` already replaced by `template`.
    pub with: Value,
    pub with_node: Option<&'a Node>,
    /// Where the text of an included `template_file` came from: its path and value node.
    pub included: Option<(String, &'a Node)>,
    /// `needs:` as written; `None` when absent (the step follows the one before it).
    pub needs: Option<Vec<(String, Pos)>>,
    pub needs_node: Option<&'a Node>,
    pub condition: Option<(String, &'a Node)>,
    pub for_each: Option<&'a Node>,
    pub as_name: String,
    pub concurrency: Option<NonZeroU32>,
    pub settings: Settings,
    /// `post:` hooks run on the tool's output before it is recorded, in order.
    pub post: Vec<String>,
}

/// Reads one step. `files` supplies `template_file` text and collects it into the plan.
pub(crate) fn read<'a>(report: &mut Report, node: &'a Node, files: &mut Files<'_>) -> Draft<'a> {
    let mut draft = Draft {
        node,
        id: None,
        kind: None,
        tool_node: None,
        with: Value::Object(serde_json::Map::new()),
        with_node: None,
        included: None,
        needs: None,
        needs_node: None,
        condition: None,
        for_each: None,
        as_name: "item".to_owned(),
        concurrency: None,
        settings: Settings::default(),
        post: Vec::new(),
    };
    // The id first, so that every later message can name the step.
    let id_node = node.as_map().and_then(|entries| get(entries, "id"));
    if let Some(id) = id_node
        && let Some(text) = report.string(id, "a step's `id`")
    {
        if is_identifier(&text) {
            draft.id = Some((text, id.pos));
        } else {
            report.at(
                id.pos,
                Code::InvalidValue,
                format!(
                    "step id `{text}` must start with a letter or `_` and hold only \
                         letters, digits, `_` and `-`"
                ),
            );
        }
    }
    let label = match &draft.id {
        Some((id, _)) => format!("step `{id}`"),
        None => "a step".to_owned(),
    };
    let Some(entries) = report.mapping(node, STEP_KEYS, &label) else {
        return draft;
    };
    if id_node.is_none() {
        report.at(node.pos, Code::MissingKey, "a step needs an `id`");
    }

    read_kind(report, entries, node, &label, &mut draft);

    if let Some(with) = get(entries, "with") {
        draft.with_node = Some(with);
        draft.with = with.to_json();
        if matches!(draft.kind, Some(StepKind::Tool(ref t)) if t == "render") {
            include_template_file(report, with, files, &mut draft);
        }
    }

    if let Some(needs) = get(entries, "needs") {
        draft.needs_node = Some(needs);
        draft.needs = report.string_list(needs, &format!("`needs` of {label}"));
    }

    if let Some(cond) = get(entries, "if") {
        match &cond.kind {
            Kind::Str(s) => draft.condition = Some((s.clone(), cond)),
            Kind::Bool(b) => draft.condition = Some((b.to_string(), cond)),
            _ => report.at(
                cond.pos,
                Code::InvalidValue,
                format!(
                    "`if` must be an expression like `{{{{ input.flag }}}}`, not {}",
                    describe(cond)
                ),
            ),
        }
    }

    if let Some(items) = get(entries, "for_each") {
        match &items.kind {
            Kind::Seq(_) => draft.for_each = Some(items),
            Kind::Str(s) if is_dynamic(s) => draft.for_each = Some(items),
            _ => report.at(
                items.pos,
                Code::InvalidValue,
                format!(
                    "`for_each` must be a list or an expression like \
                     `{{{{ steps.x.output }}}}`, not {}",
                    describe(items)
                ),
            ),
        }
    }
    for key in ["as", "concurrency"] {
        if let (Some(k), None) = (get_key(entries, key), get(entries, "for_each")) {
            report.at(
                k.pos,
                Code::InvalidValue,
                format!("`{key}` applies only to a step with `for_each`"),
            );
        }
    }
    if let Some(as_node) = get(entries, "as")
        && let Some(name) = report.string(as_node, "`as`")
    {
        let reserved = ["input", "steps", "prev", "run", "item_index"];
        if reserved.contains(&name.as_str()) {
            report.at(
                as_node.pos,
                Code::InvalidValue,
                format!("`as: {name}` would hide `{name}`; choose another name"),
            );
        } else if !is_identifier(&name) || name.contains('-') {
            report.at(
                as_node.pos,
                Code::InvalidValue,
                format!("`as` must be a name of letters, digits and `_`, not `{name}`"),
            );
        } else {
            draft.as_name = name;
        }
    }
    if let Some(n) = get(entries, "concurrency") {
        draft.concurrency = report.positive(n, "`concurrency`");
    }

    draft.settings = Settings::read(report, entries);
    if let (Some((crate::plan::Strategy::Sync, pos)), Some(kind)) =
        (draft.settings.strategy, &draft.kind)
        && !matches!(kind, StepKind::Tool(_))
    {
        report.at(
            pos,
            Code::InvalidValue,
            "`strategy: sync` applies only to tool steps",
        );
    }
    if let Some(post) = get(entries, "post") {
        read_post(report, post, &label, &mut draft);
    }
    debug_assert!(settings::KEYS.iter().all(|k| STEP_KEYS.contains(k)));
    draft
}

/// `post: [artifacts]`: known hook names, each once, on a tool step that runs in the queue.
fn read_post(report: &mut Report, node: &Node, label: &str, draft: &mut Draft<'_>) {
    let Some(names) = report.string_list(node, &format!("`post` of {label}")) else {
        return;
    };
    if draft.kind.is_some() && !matches!(draft.kind, Some(StepKind::Tool(_))) {
        report.at(
            node.pos,
            Code::InvalidValue,
            "`post` applies only to tool steps",
        );
        return;
    }
    if let Some((crate::plan::Strategy::Sync, _)) = draft.settings.strategy
        && !names.is_empty()
    {
        report.at(
            node.pos,
            Code::InvalidValue,
            "`post` hooks run where the tool is called, in the queue; drop `strategy: sync`",
        );
    }
    for (name, pos) in names {
        if !crate::plan::POST_HOOKS.contains(&name.as_str()) {
            report.at(
                pos,
                Code::InvalidValue,
                format!(
                    "no post-processing hook is named `{name}`{}; known hooks: {}",
                    super::suggest::did_you_mean(&name, crate::plan::POST_HOOKS.iter().copied()),
                    crate::plan::POST_HOOKS.join(", ")
                ),
            );
        } else if draft.post.contains(&name) {
            report.at(
                pos,
                Code::InvalidValue,
                format!("`post` lists `{name}` twice"),
            );
        } else {
            draft.post.push(name);
        }
    }
}

/// Exactly one of `tool`, `approval`, `workflow`.
fn read_kind<'a>(
    report: &mut Report,
    entries: &'a [(Node, Node)],
    node: &Node,
    label: &str,
    draft: &mut Draft<'a>,
) {
    let written: Vec<&Node> = ["tool", "approval", "workflow"]
        .iter()
        .filter_map(|k| get_key(entries, k))
        .collect();
    if written.is_empty() {
        report.at(
            node.pos,
            Code::MissingKey,
            format!("{label} needs one of `tool`, `approval` or `workflow`"),
        );
        return;
    }
    if let [first, second, ..] = written.as_slice() {
        report.at(
            second.pos,
            Code::InvalidValue,
            format!(
                "{label} has both `{}` and `{}`; a step is one of `tool`, `approval` or `workflow`",
                first.as_str().unwrap_or_default(),
                second.as_str().unwrap_or_default()
            ),
        );
        return;
    }
    if let Some(tool) = get(entries, "tool") {
        draft.tool_node = Some(tool);
        if let Some(name) = report.string(tool, "`tool`") {
            draft.kind = Some(StepKind::Tool(name));
        }
    } else if let Some(approval) = get(entries, "approval") {
        check_approval(report, approval, label);
        draft.kind = Some(StepKind::Approval(approval.to_json()));
    } else if let Some(workflow) = get(entries, "workflow") {
        check_workflow(report, workflow, label, get_key(entries, "with").is_some());
        draft.kind = Some(StepKind::Workflow(workflow.to_json()));
    }
}

/// `approval: "prompt"` or `{prompt, timeout, on_timeout: approve|reject}`.
fn check_approval(report: &mut Report, node: &Node, label: &str) {
    if node.as_str().is_some() || matches!(node.kind, Kind::Null) {
        return;
    }
    let what = format!("`approval` of {label}");
    let Some(entries) = report.mapping(node, &["prompt", "timeout", "on_timeout"], &what) else {
        return;
    };
    if let Some(t) = get(entries, "timeout")
        && let Some(text) = report.string(t, &format!("`timeout` of {what}"))
        && !is_dynamic(&text)
        && let Err(e) = crate::duration::parse(&text)
    {
        report.at(
            t.pos,
            Code::InvalidValue,
            format!("`timeout` of {what}: {e}"),
        );
    }
    if let Some(o) = get(entries, "on_timeout")
        && let Some(text) = report.string(o, &format!("`on_timeout` of {what}"))
        && text != "approve"
        && text != "reject"
    {
        report.at(
            o.pos,
            Code::InvalidValue,
            format!("`on_timeout` of {what} is `approve` or `reject`, not `{text}`"),
        );
    }
}

/// `workflow: NAME[@VERSION]` or `{template, version, with}`.
fn check_workflow(report: &mut Report, node: &Node, label: &str, step_with: bool) {
    if node.as_str().is_some() {
        return;
    }
    let what = format!("`workflow` of {label}");
    let Some(entries) = report.mapping(node, &["template", "version", "with"], &what) else {
        return;
    };
    match get(entries, "template") {
        Some(t) => {
            report.string(t, &format!("`template` of {what}"));
        }
        None => report.at(
            node.pos,
            Code::MissingKey,
            format!("{what} needs a `template` (the name of the template it runs)"),
        ),
    }
    if let (Some(k), true) = (get_key(entries, "with"), step_with) {
        report.at(
            k.pos,
            Code::InvalidValue,
            format!("{label} gives the child's inputs twice: in `workflow.with` and in `with`"),
        );
    }
}

/// `render` with `template_file: PATH`: reads the file now and writes its text into `with` as
/// `template`, so a run never reads files and a stored plan carries everything it needs.
fn include_template_file<'a>(
    report: &mut Report,
    with: &'a Node,
    files: &mut Files<'_>,
    draft: &mut Draft<'a>,
) {
    let Some(entries) = with.as_map() else {
        return;
    };
    let Some(path_node) = get(entries, "template_file") else {
        return;
    };
    if let Some(k) = get_key(entries, "template") {
        report.at(
            k.pos,
            Code::InvalidValue,
            "`render` takes `template` or `template_file`, not both",
        );
        return;
    }
    let Some(path) = report.string(path_node, "`template_file`") else {
        return;
    };
    if has_dynamic(path_node) {
        report.at(
            path_node.pos,
            Code::InvalidValue,
            "`template_file` must be a literal path, not an expression",
        );
        return;
    }
    match files.read(&path) {
        Ok(text) => {
            if let Value::Object(map) = &mut draft.with {
                let rebuilt = map
                    .iter()
                    .map(|(k, v)| {
                        if k == "template_file" {
                            ("template".to_owned(), Value::String(text.clone()))
                        } else {
                            (k.clone(), v.clone())
                        }
                    })
                    .collect();
                *map = rebuilt;
            }
            draft.included = Some((path, path_node));
        }
        Err(why) => report.at(
            path_node.pos,
            Code::InvalidValue,
            format!("`template_file` {why}"),
        ),
    }
}
