//! The step graph: ids, `needs` (explicit or the implicit previous step), cycles, ancestry.
//!
//! Expression checks ask this graph whether a step may read another's result: only an
//! ancestor's result is sure to exist when a step runs.

use std::collections::HashMap;

use super::read::Report;
use super::step::Draft;
use super::suggest::did_you_mean;
use crate::diag::Code;

pub(crate) struct Graph {
    /// Step id -> index of the first step with that id.
    pub ids: HashMap<String, usize>,
    /// Each step's dependencies, as indices.
    pub needs: Vec<Vec<usize>>,
    /// The step written before each step.
    pub prev: Vec<Option<usize>>,
    /// `ancestors[i][j]`: step `j` finishes before step `i` starts.
    ancestors: Vec<Vec<bool>>,
}

impl Graph {
    pub fn is_ancestor(&self, ancestor: usize, of: usize) -> bool {
        self.ancestors
            .get(of)
            .and_then(|row| row.get(ancestor))
            .copied()
            .unwrap_or(false)
    }

    /// The id of step `i`, for messages.
    pub fn id_of<'d>(&self, steps: &'d [Draft<'_>], i: usize) -> &'d str {
        steps
            .get(i)
            .and_then(|s| s.id.as_ref())
            .map(|(id, _)| id.as_str())
            .unwrap_or("?")
    }
}

pub(crate) fn build(report: &mut Report, steps: &[Draft<'_>]) -> Graph {
    let mut ids: HashMap<String, usize> = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        let Some((id, pos)) = &step.id else { continue };
        match ids.get(id) {
            Some(&first) => {
                let line = steps[first].id.as_ref().map(|(_, p)| p.line).unwrap_or(0);
                report.at(
                    *pos,
                    Code::DuplicateStepId,
                    format!("step id `{id}` is already used by the step on line {line}"),
                );
            }
            None => {
                ids.insert(id.clone(), i);
            }
        }
    }

    let prev: Vec<Option<usize>> = (0..steps.len()).map(|i| i.checked_sub(1)).collect();
    let mut needs = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        let deps = match &step.needs {
            None if step.needs_node.is_some() => Vec::new(), // malformed, already reported
            None => prev[i].into_iter().collect(),
            Some(list) => {
                let mut deps = Vec::new();
                for (name, pos) in list {
                    match ids.get(name) {
                        Some(&j) => {
                            if !deps.contains(&j) {
                                deps.push(j);
                            }
                        }
                        None => report.at(
                            *pos,
                            Code::UnknownStep,
                            format!(
                                "`needs` names no step `{name}`{}",
                                did_you_mean(name, ids.keys().map(String::as_str))
                            ),
                        ),
                    }
                }
                deps
            }
        };
        needs.push(deps);
    }

    let ancestors: Vec<Vec<bool>> = (0..steps.len())
        .map(|i| reachable(&needs, i, steps.len()))
        .collect();
    let graph = Graph {
        ids,
        needs,
        prev,
        ancestors,
    };
    report_cycles(report, steps, &graph);
    graph
}

/// Every step reachable from `start` through `needs` (not `start` itself unless on a cycle).
fn reachable(needs: &[Vec<usize>], start: usize, n: usize) -> Vec<bool> {
    let mut seen = vec![false; n];
    let mut stack: Vec<usize> = needs[start].clone();
    while let Some(j) = stack.pop() {
        if !seen[j] {
            seen[j] = true;
            stack.extend(needs[j].iter().copied());
        }
    }
    seen
}

/// One diagnostic per cycle, at the `needs` of the first step of the cycle that writes `needs`
/// (implicit edges point backwards, so every cycle has one).
fn report_cycles(report: &mut Report, steps: &[Draft<'_>], graph: &Graph) {
    let n = steps.len();
    let mut reported = vec![false; n];
    for start in 0..n {
        if reported[start] || !graph.is_ancestor(start, start) || steps[start].needs.is_none() {
            continue;
        }
        // The cycle's members: the steps that reach `start` and that `start` reaches.
        let members: Vec<usize> = (0..n)
            .filter(|&j| graph.is_ancestor(j, start) && graph.is_ancestor(start, j))
            .collect();
        for &m in &members {
            reported[m] = true;
        }
        let path = cycle_path(graph, start, &members);
        let names: Vec<&str> = path.iter().map(|&i| graph.id_of(steps, i)).collect();
        let pos = steps[start]
            .needs_node
            .map(|node| node.pos)
            .unwrap_or(steps[start].node.pos);
        report.at(
            pos,
            Code::NeedsCycle,
            format!(
                "`needs` forms a cycle: {}; no step of it could ever start",
                names.join(" -> ")
            ),
        );
    }
}

/// A shortest walk `start -> ... -> start` along `needs`, inside the cycle's members.
fn cycle_path(graph: &Graph, start: usize, members: &[usize]) -> Vec<usize> {
    let n = graph.needs.len();
    let mut came_from: Vec<Option<usize>> = vec![None; n];
    let mut queue = std::collections::VecDeque::from([start]);
    let mut end = None;
    'search: while let Some(i) = queue.pop_front() {
        for &j in &graph.needs[i] {
            if j == start {
                end = Some(i);
                break 'search;
            }
            if members.contains(&j) && came_from[j].is_none() {
                came_from[j] = Some(i);
                queue.push_back(j);
            }
        }
    }
    let mut path = vec![start];
    let mut at = end;
    let mut back = Vec::new();
    while let Some(i) = at {
        if i == start {
            break;
        }
        back.push(i);
        at = came_from[i];
    }
    back.reverse();
    path.extend(back);
    path.push(start);
    path
}
