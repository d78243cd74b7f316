//! Static checks of `{{ }}` expressions: syntax, and every name they read.
//!
//! minijinja parses each expression and lists the variables it reads (`steps.fetch.output`);
//! this module decides whether each is in scope where it is written: a declared input, a step
//! that is an ancestor, `prev` when the step before is an ancestor, the `for_each` item inside
//! its own step.

use std::collections::BTreeSet;

use indexmap::IndexMap;

use super::graph::Graph;
use super::read::{Report, is_dynamic};
use super::step::Draft;
use super::suggest::did_you_mean;
use super::yaml::{Kind, Node, Pos};
use crate::diag::Code;
use crate::plan::InputSpec;

/// Names every expression may use besides the template's own: Jinja's global functions and
/// the loop variable of `{% for %}`.
const BUILTINS: &[&str] = &[
    "range",
    "dict",
    "namespace",
    "debug",
    "loop",
    "cycler",
    "joiner",
    "lipsum",
];

/// What `steps.<id>` and `prev` hold (`result` and `success` are the seeds' spelling of
/// `output` and `ok`).
const STEP_FIELDS: &[&str] = &[
    "output", "status", "ok", "error", "attempts", "result", "success",
];

/// Where an expression is written, which decides what it may read.
#[derive(Clone, Copy)]
pub(crate) enum Site<'s> {
    /// A step's `with` or `if`: everything, including its `for_each` item.
    Step { idx: usize, extra: &'s [String] },
    /// A step's `for_each`: no item yet.
    ForEach { idx: usize },
    /// `output` and `actions`: any step; `prev` is the last step; no item.
    Run,
}

pub(crate) struct Checker<'c, 'a> {
    pub report: &'c mut Report,
    pub source: &'c str,
    pub inputs: &'c IndexMap<String, InputSpec>,
    pub steps: &'c [Draft<'a>],
    pub graph: &'c Graph,
}

impl Checker<'_, '_> {
    /// Checks every string under `node`.
    pub fn node(&mut self, node: &Node, site: Site<'_>) {
        match &node.kind {
            Kind::Str(s) if is_dynamic(s) => self.text(s, 0, node, site, false, None),
            Kind::Seq(items) => items.iter().for_each(|n| self.node(n, site)),
            Kind::Map(entries) => entries.iter().for_each(|(_, v)| self.node(v, site)),
            _ => {}
        }
    }

    /// `if:`: one expression, bare (`prev.ok`) or in one `{{ }}`, as the runtime reads it.
    pub fn condition(&mut self, text: &str, node: &Node, site: Site<'_>) {
        let expr = match crate::expr::single_expression(text) {
            Some(inner) => inner,
            None if is_dynamic(text) => {
                self.report.at(
                    node.pos,
                    Code::ExpressionSyntax,
                    "`if` must be one expression, bare (`prev.ok and input.flag`) or in one \
                     `{{ }}`, not text mixed with `{{ }}`",
                );
                return;
            }
            None => text,
        };
        let base = text.find(expr).unwrap_or(0);
        self.text(expr, base, node, site, true, None);
    }

    /// Text read from an included file, checked as a template; problems point at the
    /// `template_file` value and say where in the file.
    pub fn included(&mut self, text: &str, path: &str, node: &Node, site: Site<'_>) {
        self.text(text, 0, node, site, false, Some(path));
    }

    /// Checks `text`, which starts at byte `base` of the node's value.
    fn text(
        &mut self,
        text: &str,
        base: usize,
        node: &Node,
        site: Site<'_>,
        bare_expression: bool,
        file: Option<&str>,
    ) {
        let full = node.as_str().unwrap_or(text);
        let env = minijinja::Environment::new();
        let names = if bare_expression {
            env.compile_expression(text)
                .map(|e| e.undeclared_variables(true))
        } else {
            env.template_from_str(text)
                .map(|t| t.undeclared_variables(true))
        };
        let names = match names {
            Ok(names) => names,
            Err(e) => {
                let detail = e
                    .detail()
                    .map(str::to_owned)
                    .unwrap_or_else(|| e.to_string());
                let (pos, place) = match (file, e.range()) {
                    (Some(path), _) => (
                        node.pos,
                        format!(
                            " in `{path}`{}",
                            e.line().map(|l| format!(" line {l}")).unwrap_or_default()
                        ),
                    ),
                    (None, Some(range)) => {
                        (self.pos_in(node, full, base + range.start), String::new())
                    }
                    (None, None) => (node.pos, String::new()),
                };
                self.report.at(
                    pos,
                    Code::ExpressionSyntax,
                    format!("expression does not parse{place}: {detail}"),
                );
                return;
            }
        };
        let names: BTreeSet<String> = names.into_iter().collect();
        let place = file.map(|f| format!(" (in `{f}`)")).unwrap_or_default();
        let mut seen = BTreeSet::new();
        for path in &names {
            let parts: Vec<&str> = path.split('.').collect();
            let at = |c: &Self, n: usize| {
                if file.is_some() {
                    node.pos
                } else {
                    c.pos_of_name(node, full, path, n)
                }
            };
            // A step's result field: `steps.a.<field>`, `prev.<field>`.
            let field = match parts.as_slice() {
                ["steps", name, field, ..] => Some((format!("steps.{name}"), *field, 3)),
                ["prev", field, ..] => Some(("prev".to_owned(), *field, 2)),
                _ => None,
            };
            if let Some((base, field, n)) = field
                && seen.insert(format!("field {base}.{field}"))
            {
                let pos = at(self, n);
                self.field(&base, field, pos, &place);
            }
            // `steps.a.output` and `steps.a.ok` are one reference to `a`.
            let reference = parts.iter().take(2).copied().collect::<Vec<_>>().join(".");
            if !seen.insert(reference) {
                continue;
            }
            match parts.as_slice() {
                ["input", name, ..] => {
                    if !self.inputs.contains_key(*name) {
                        let pos = at(self, 2);
                        self.report.at(
                            pos,
                            Code::UndeclaredInput,
                            format!(
                                "`input.{name}` is not declared under `inputs`{}{place}",
                                did_you_mean(name, self.inputs.keys().map(String::as_str))
                            ),
                        );
                    }
                }
                ["steps", name, ..] => {
                    let pos = at(self, 2);
                    self.step_ref(name, pos, site, &place);
                }
                ["prev", ..] => {
                    let pos = at(self, 1);
                    self.prev_ref(pos, site, &place);
                }
                ["input" | "steps" | "run", ..] => {}
                [head, ..] if BUILTINS.contains(head) => {}
                [head, ..] => {
                    let pos = at(self, 1);
                    self.other_name(head, pos, site, &place);
                }
                [] => {}
            }
        }
    }

    fn step_ref(&mut self, name: &str, pos: Pos, site: Site<'_>, place: &str) {
        let Some(&target) = self.graph.ids.get(name) else {
            let hyphen = self
                .graph
                .ids
                .keys()
                .find(|id| id.starts_with(&format!("{name}-")))
                .map(|id| format!(" (a step id with `-` is written `steps[\"{id}\"]`)"));
            let hint = hyphen
                .unwrap_or_else(|| did_you_mean(name, self.graph.ids.keys().map(String::as_str)));
            self.report.at(
                pos,
                Code::UnknownStep,
                format!("`steps.{name}` names no step{hint}{place}"),
            );
            return;
        };
        let idx = match site {
            Site::Step { idx, .. } | Site::ForEach { idx } => idx,
            Site::Run => return,
        };
        let me = self.graph.id_of(self.steps, idx).to_owned();
        if target == idx {
            self.report.at(
                pos,
                Code::NotAncestor,
                format!("step `{me}` reads its own result `steps.{name}`{place}"),
            );
        } else if !self.graph.is_ancestor(target, idx) {
            self.report.at(
                pos,
                Code::NotAncestor,
                format!(
                    "step `{me}` reads `steps.{name}` but does not depend on it, so it may not \
                     have run yet; add `{name}` to its `needs`{place}"
                ),
            );
        }
    }

    /// `steps.a.<field>` and `prev.<field>`: what a step's record holds.
    fn field(&mut self, base: &str, field: &str, pos: Pos, place: &str) {
        if STEP_FIELDS.contains(&field) {
            return;
        }
        self.report.at(
            pos,
            Code::UnknownKey,
            format!(
                "`{base}.{field}`: a step's result has {}{}{place}",
                STEP_FIELDS.join(", "),
                did_you_mean(field, STEP_FIELDS.iter().copied())
            ),
        );
    }

    fn prev_ref(&mut self, pos: Pos, site: Site<'_>, place: &str) {
        let idx = match site {
            Site::Step { idx, .. } | Site::ForEach { idx } => idx,
            // After the run, `prev` is the last step.
            Site::Run => return,
        };
        let me = self.graph.id_of(self.steps, idx).to_owned();
        match self.graph.prev.get(idx).copied().flatten() {
            None => self.report.at(
                pos,
                Code::UnknownStep,
                format!("step `{me}` is the first step, so it has no `prev`{place}"),
            ),
            Some(p) if !self.graph.is_ancestor(p, idx) => {
                let before = self.graph.id_of(self.steps, p).to_owned();
                self.report.at(
                    pos,
                    Code::NotAncestor,
                    format!(
                        "step `{me}` reads `prev` (step `{before}`) but its `needs` leave \
                         `{before}` out, so it may not have run yet{place}"
                    ),
                );
            }
            Some(_) => {}
        }
    }

    fn other_name(&mut self, name: &str, pos: Pos, site: Site<'_>, place: &str) {
        let (mut allowed, extra): (Vec<&str>, &[String]) = match site {
            Site::Step { idx, extra } => {
                let mut names = vec!["input", "steps", "prev", "run"];
                if let Some(step) = self.steps.get(idx).filter(|s| s.for_each.is_some()) {
                    names.push("item_index");
                    names.push(step.as_name.as_str());
                }
                (names, extra)
            }
            Site::ForEach { .. } => (vec!["input", "steps", "prev", "run"], &[]),
            Site::Run => (vec!["input", "steps", "prev", "run"], &[]),
        };
        if allowed.contains(&name) || extra.iter().any(|e| e == name) {
            return;
        }
        allowed.extend(extra.iter().map(String::as_str));
        let hint = if self.inputs.contains_key(name) {
            format!(" (did you mean `input.{name}`?)")
        } else if self.graph.ids.contains_key(name) {
            format!(" (did you mean `steps.{name}.output`?)")
        } else if let Site::ForEach { idx } = site {
            match self.steps.get(idx) {
                Some(step) if step.as_name == name || name == "item_index" => {
                    " (the item exists in `with` and `if`, not in the `for_each` that makes it)"
                        .to_string()
                }
                _ => did_you_mean(name, allowed.iter().copied()),
            }
        } else {
            did_you_mean(name, allowed.iter().copied())
        };
        self.report.at(
            pos,
            Code::UndeclaredInput,
            format!(
                "unknown name `{name}`: expressions can use {}{hint}{place}",
                allowed.join(", ")
            ),
        );
    }

    /// Where the first `n` parts of `path` are first written in the node's value.
    fn pos_of_name(&self, node: &Node, text: &str, path: &str, n: usize) -> Pos {
        let short: String = path.split('.').take(n).collect::<Vec<_>>().join(".");
        match find_word(text, &short) {
            Some(offset) => self.pos_in(node, text, offset),
            None => node.pos,
        }
    }

    /// The position of byte `offset` of `text`, the value of `node`, when the value is written
    /// on one line exactly as it reads (plain or quoted, without escapes before the offset);
    /// otherwise the start of the value.
    fn pos_in(&self, node: &Node, text: &str, offset: usize) -> Pos {
        use saphyr_parser::ScalarStyle;
        let quote = match node.style {
            Some(ScalarStyle::Plain) => 0,
            Some(ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted) => 1,
            _ => return node.pos,
        };
        let Some(before) = text.get(..offset) else {
            return node.pos;
        };
        if before.contains('\n') {
            return node.pos;
        }
        let written: String = self
            .source
            .chars()
            .skip(node.pos.index + quote)
            .take(before.chars().count())
            .collect();
        if written != before {
            return node.pos;
        }
        let n = before.chars().count() + quote;
        Pos {
            line: node.pos.line,
            col: node.pos.col + n,
            index: node.pos.index + n,
        }
    }
}

/// The byte offset of `word` in `text` where it is not part of a longer name.
fn find_word(text: &str, word: &str) -> Option<usize> {
    let is_name = |c: char| c.is_alphanumeric() || c == '_' || c == '.';
    let mut from = 0;
    while let Some(found) = text.get(from..).and_then(|t| t.find(word)) {
        let start = from + found;
        let end = start + word.len();
        let before_ok = text[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !is_name(c));
        let after_ok = text[end..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if before_ok && after_ok {
            return Some(start);
        }
        from = end;
    }
    None
}
