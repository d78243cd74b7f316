//! From a sentence to a template and checked inputs, for `weft ask`, `POST /v1/ask` and the
//! MCP `ask` tool alike.
//!
//! Two matchers: the offline one (`weft-intent`, always there) and, when an `llm` provider is
//! configured (an `[llm.NAME]` in `weft.toml`; the caller says so with `use_llm`, since
//! `llm.chat` is registered even without a provider), a model that is shown every template's name,
//! description and input schema and must answer a schema-validated `{template, inputs,
//! confidence}` (structured output). The model's answer is never trusted as such: the template
//! must be one of the candidates and the inputs must pass the template's own checks, or the
//! offline matcher decides instead. Whatever decides, a value the template refuses or a missing
//! input turns into a clarifying question: nothing runs on a guess.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value, json};
use weft_core::Plan;
use weft_core::plan::{InputSpec, InputType};
use weft_intent::{Alternative, Answer, Matcher};
use weft_tools::{Context, Registry};

/// A template a sentence may mean, with the folder its files resolve against.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub plan: Arc<Plan>,
    pub base_dir: Option<String>,
}

/// The matcher's answer with the inputs checked against the chosen template.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    #[serde(flatten)]
    pub answer: Answer,
    /// `offline` or `llm`.
    pub matcher: String,
    /// Why the model's answer was not used, when a model was asked and the offline matcher
    /// decided instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm_fallback: Option<String>,
    /// The chosen candidate's index, when a run may start.
    #[serde(skip)]
    pub chosen: Option<usize>,
    /// The inputs as the run gets them (defaults filled), when a run may start.
    #[serde(skip)]
    pub resolved: Option<Value>,
}

impl Decision {
    /// Whether a run may start on this decision without asking.
    pub fn is_confident(&self) -> bool {
        self.chosen.is_some() && self.resolved.is_some() && self.answer.question.is_none()
    }
}

/// The name of the tool the LLM matcher calls.
pub const LLM_TOOL: &str = "llm.chat";

/// Matches `sentence` against `candidates`: with the model when `use_llm` (a provider is
/// configured) and `llm.chat` is registered, else (or when the model's answer does not check out) offline.
pub async fn decide(
    tools: &Registry,
    candidates: &[Candidate],
    sentence: &str,
    use_llm: bool,
) -> Decision {
    let offline = Matcher::new(candidates.iter().map(|c| c.plan.as_ref())).ask(sentence);
    let mut llm_fallback = None;
    if use_llm && let Some(tool) = tools.get(LLM_TOOL) {
        match llm_answer(tool.as_ref(), candidates, sentence, &offline).await {
            Ok(answer) => return check(candidates, answer, "llm", None),
            Err(reason) => {
                tracing::warn!(%reason, "The LLM matcher's answer was not used; matching offline.");
                llm_fallback = Some(reason);
            }
        }
    }
    check(candidates, offline, "offline", llm_fallback)
}

/// The decision with inputs a person corrected or added (`weft ask -i NAME=VALUE`, the UI's
/// form): they replace what the matcher read, the missing inputs and their question are worked
/// out again, and everything is checked as before. An unsure choice of template stays a
/// question: correcting inputs does not say the template is the right one.
pub fn correct(
    candidates: &[Candidate],
    decision: Decision,
    corrections: Map<String, Value>,
) -> Decision {
    let Decision {
        mut answer,
        matcher,
        llm_fallback,
        ..
    } = decision;
    let plan = answer
        .template
        .as_deref()
        .and_then(|name| candidates.iter().find(|c| c.plan.name == name))
        .map(|c| c.plan.clone());
    if let Some(plan) = plan {
        let threshold = if matcher == "llm" {
            LLM_MIN_CONFIDENCE
        } else {
            weft_intent::MIN_CONFIDENCE
        };
        answer.inputs.extend(corrections);
        answer.missing = weft_intent::missing_inputs(&plan, &answer.inputs);
        if answer.confidence >= threshold {
            answer.question = (!answer.missing.is_empty())
                .then(|| weft_intent::missing_question(&plan, &answer.missing));
        }
    }
    check(candidates, answer, &matcher, llm_fallback)
}

/// Checks the answer's inputs as `weft run` would; a refused value becomes the question.
fn check(
    candidates: &[Candidate],
    mut answer: Answer,
    matcher: &str,
    llm_fallback: Option<String>,
) -> Decision {
    let chosen = answer
        .template
        .as_deref()
        .and_then(|name| candidates.iter().position(|c| c.plan.name == name));
    let mut resolved = None;
    if let Some(idx) = chosen {
        match weft_core::inputs::resolve_inputs(&candidates[idx].plan, &answer.inputs) {
            Ok(inputs) => resolved = Some(inputs),
            Err(problems) if answer.question.is_none() => {
                answer.question = Some(format!(
                    "The sentence gave inputs `{}` does not take: {}",
                    candidates[idx].plan.name,
                    problems.join("; ")
                ));
            }
            Err(_) => {}
        }
    }
    Decision {
        answer,
        matcher: matcher.into(),
        llm_fallback,
        chosen,
        resolved,
    }
}

/// Below this confidence (the model's own) the LLM matcher asks rather than guesses.
const LLM_MIN_CONFIDENCE: f64 = 0.5;

/// Asks the model. An answer naming no candidate, or inputs the template refuses, is an error
/// (the caller falls back to the offline matcher); a missing required input is a question.
async fn llm_answer(
    tool: &dyn weft_tools::Tool,
    candidates: &[Candidate],
    sentence: &str,
    offline: &Answer,
) -> Result<Answer, String> {
    if candidates.is_empty() {
        return Err("there are no templates to choose from".into());
    }
    let names: Vec<&str> = candidates.iter().map(|c| c.plan.name.as_str()).collect();
    let catalog: Vec<Value> = candidates
        .iter()
        .map(|c| {
            json!({
                "template": c.plan.name,
                "description": c.plan.description,
                "inputs": inputs_schema(&c.plan),
                "examples": c.plan.intent_examples,
            })
        })
        .collect();
    let schema = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["template", "inputs", "confidence"],
        "properties": {
            "template": {"type": "string", "enum": names},
            "inputs": {"type": "object"},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1}
        }
    });
    let system = format!(
        "You pick the workflow template a user's sentence asks for and fill its inputs from the \
         sentence. Use only the templates listed below, only inputs their schema names, and \
         only values the sentence gives (leave an input out when the sentence does not say it). \
         Answer with JSON: {{\"template\": NAME, \"inputs\": {{...}}, \"confidence\": 0..1}}.\n\n\
         Templates:\n{}",
        serde_json::to_string_pretty(&catalog).unwrap_or_default()
    );
    let input = json!({"system": system, "prompt": sentence, "schema": schema, "temperature": 0});
    let output = tool
        .call(input, &Context::for_test())
        .await
        .map_err(|e| format!("the model could not be asked: {e}"))?;
    let reply = output
        .get("content")
        .cloned()
        .ok_or_else(|| "the model's reply carried no JSON".to_string())?;
    let template = reply
        .get("template")
        .and_then(Value::as_str)
        .ok_or_else(|| "the model named no template".to_string())?;
    let Some(candidate) = candidates.iter().find(|c| c.plan.name == template) else {
        return Err(format!(
            "the model chose `{template}`, which is not a known template"
        ));
    };
    let inputs: Map<String, Value> = match reply.get("inputs") {
        Some(Value::Object(map)) => map.clone(),
        _ => return Err("the model's inputs are not an object".into()),
    };
    if let Some(unknown) = inputs
        .keys()
        .find(|k| !candidate.plan.inputs.contains_key(*k))
    {
        return Err(format!(
            "the model gave `{template}` an input it does not take: `{unknown}`"
        ));
    }
    let confidence = reply
        .get("confidence")
        .and_then(Value::as_f64)
        .unwrap_or(0.0)
        .clamp(0.0, 1.0);
    let missing: Vec<String> = candidate
        .plan
        .inputs
        .iter()
        .filter(|(name, spec)| {
            spec.required && spec.default.is_none() && !inputs.contains_key(*name)
        })
        .map(|(name, _)| name.clone())
        .collect();
    // Values of a wrong type or outside an enum are the model's mistake, not the user's.
    if missing.is_empty()
        && let Err(problems) = weft_core::inputs::resolve_inputs(&candidate.plan, &inputs)
    {
        return Err(format!(
            "the model's inputs for `{template}` do not check out: {}",
            problems.join("; ")
        ));
    }
    let alternatives: Vec<Alternative> = std::iter::once(offline)
        .filter_map(|a| {
            a.template.as_ref().map(|t| Alternative {
                template: t.clone(),
                confidence: a.confidence,
                description: None,
            })
        })
        .chain(offline.alternatives.iter().cloned())
        .filter(|a| a.template != template)
        .take(3)
        .collect();
    let question = if confidence < LLM_MIN_CONFIDENCE {
        let mut names = vec![template.to_string()];
        names.extend(alternatives.iter().map(|a| a.template.clone()));
        Some(format!(
            "I am not sure what you mean. Did you want one of these: {}? Try rephrasing, or name the template.",
            names.join(", ")
        ))
    } else if !missing.is_empty() {
        Some(format!(
            "To run `{template}` I also need: {}. Which {}?",
            missing
                .iter()
                .map(|m| {
                    match candidate
                        .plan
                        .inputs
                        .get(m)
                        .and_then(|s| s.description.as_deref())
                    {
                        Some(d) => format!("{m} ({d})"),
                        None => m.clone(),
                    }
                })
                .collect::<Vec<_>>()
                .join("; "),
            missing.join(" and ")
        ))
    } else {
        None
    };
    Ok(Answer {
        template: Some(template.to_string()),
        inputs,
        confidence: (confidence * 1000.0).round() / 1000.0,
        alternatives,
        missing,
        question,
    })
}

/// A template's inputs as a JSON Schema object (what an MCP tool or a model is shown).
pub fn inputs_schema(plan: &Plan) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (name, spec) in &plan.inputs {
        properties.insert(name.clone(), input_schema(spec));
        if spec.required && spec.default.is_none() {
            required.push(Value::String(name.clone()));
        }
    }
    json!({"type": "object", "properties": properties, "required": required,
           "additionalProperties": false})
}

fn input_schema(spec: &InputSpec) -> Value {
    let ty = match spec.ty {
        InputType::String => "string",
        InputType::Integer => "integer",
        InputType::Number => "number",
        InputType::Boolean => "boolean",
        InputType::Array => "array",
        InputType::Object => "object",
    };
    let mut schema = Map::new();
    schema.insert("type".into(), json!(ty));
    if let Some(d) = &spec.description {
        schema.insert("description".into(), json!(d));
    }
    if let Some(allowed) = &spec.allowed {
        schema.insert("enum".into(), Value::Array(allowed.clone()));
    }
    if let Some(default) = &spec.default {
        schema.insert("default".into(), default.clone());
    }
    Value::Object(schema)
}
