//! Skills: a folder per skill holding a `skill.yaml` (name, description, input schema, the
//! command) and an executable. Each becomes the tool `skill.NAME`, run exactly like `command`
//! (JSON input on stdin, JSON or text on stdout, the weft run variables in its environment),
//! with the skill's folder as its working directory.
//!
//! ```yaml
//! name: word_count
//! description: Counts the words of `text`.
//! command: ["python3", "main.py"]      # default ["./run"]
//! input_schema: {type: object, required: [text], properties: {text: {type: string}}}
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{Context, Error, Registry, Result, Tool};

/// `[skills]` in `weft.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SkillsConfig {
    /// Folders whose sub-folders are skills.
    pub dirs: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    command: Option<Vec<String>>,
    #[serde(default)]
    input_schema: Option<Value>,
}

/// Registers every skill found; returns each problem (a bad `skill.yaml`, a duplicate name).
pub fn register(
    registry: &mut Registry,
    config: &SkillsConfig,
) -> std::result::Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for dir in &config.dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                problems.push(format!("[skills] {}: {e}", dir.display()));
                continue;
            }
        };
        let mut folders: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("skill.yaml").is_file())
            .collect();
        folders.sort();
        for folder in folders {
            match Skill::load(&folder) {
                Ok(skill) if seen.insert(skill.tool_name.clone()) => {
                    registry.insert(Arc::new(skill));
                }
                Ok(skill) => problems.push(format!(
                    "{}: a second skill named `{}`",
                    folder.display(),
                    skill.skill
                )),
                Err(problem) => problems.push(problem),
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// One skill.
pub struct Skill {
    skill: String,
    tool_name: String,
    description: String,
    argv: Vec<String>,
    dir: PathBuf,
    schema: Option<Value>,
    validator: Option<jsonschema::Validator>,
}

impl Skill {
    pub fn load(folder: &Path) -> std::result::Result<Skill, String> {
        let path = folder.join("skill.yaml");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let manifest: Manifest =
            serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if manifest.name.is_empty()
            || !manifest
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!(
                "{}: `name` uses only letters, digits, `_` and `-`",
                path.display()
            ));
        }
        let dir = folder
            .canonicalize()
            .map_err(|e| format!("{}: {e}", folder.display()))?;
        let mut argv = manifest.command.unwrap_or_else(|| vec!["./run".into()]);
        let Some(program) = argv.first_mut() else {
            return Err(format!("{}: `command` is empty", path.display()));
        };
        // A program given as a path is the skill's own file.
        if program.contains('/') && !Path::new(program.as_str()).is_absolute() {
            *program = dir.join(program.as_str()).display().to_string();
        }
        let validator = match &manifest.input_schema {
            Some(schema) => Some(
                jsonschema::validator_for(schema)
                    .map_err(|e| format!("{}: input_schema: {e}", path.display()))?,
            ),
            None => None,
        };
        Ok(Skill {
            tool_name: format!("skill.{}", manifest.name),
            skill: manifest.name,
            description: manifest.description,
            argv,
            dir,
            schema: manifest.input_schema,
            validator,
        })
    }
}

#[async_trait]
impl Tool for Skill {
    fn name(&self) -> &str {
        &self.tool_name
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn input_schema(&self) -> Option<Value> {
        self.schema.clone()
    }

    fn starts_processes(&self) -> bool {
        true
    }

    async fn call(&self, input: Value, ctx: &Context) -> Result<Value> {
        if let Some(validator) = &self.validator {
            let errors: Vec<String> = validator
                .iter_errors(&input)
                .take(5)
                .map(|e| format!("{e} at `{}`", e.instance_path))
                .collect();
            if !errors.is_empty() {
                return Err(Error::Input(format!(
                    "{}: {}",
                    self.tool_name,
                    errors.join("; ")
                )));
            }
        }
        let call = json!({
            "argv": self.argv,
            "stdin": input,
            "cwd": self.dir.display().to_string(),
        });
        crate::builtin::command::run(call, ctx, Some(&self.dir))
            .await
            .map_err(|e| match e {
                Error::Failed(m) => Error::Failed(format!("{}: {m}", self.tool_name)),
                Error::Permanent(m) => Error::Permanent(format!("{}: {m}", self.tool_name)),
                other => other,
            })
    }
}
