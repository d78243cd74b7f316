//! Template problems, each with a place (FILE:LINE:COL) and a stable code.

use std::fmt;

/// The stable codes of template problems. The numbers never change meaning; new problems get
/// new numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Code {
    /// The file is not valid YAML.
    YamlSyntax,
    /// A key the template language does not know.
    UnknownKey,
    /// A value of the wrong type or shape (a string where a list belongs, a bad duration...).
    InvalidValue,
    /// A required key is missing.
    MissingKey,
    /// Two steps share one id.
    DuplicateStepId,
    /// `needs` forms a cycle.
    NeedsCycle,
    /// A reference to a step that does not exist.
    UnknownStep,
    /// A reference to a step that exists but is not an ancestor, so its result is not ready.
    NotAncestor,
    /// `input.X` where no input X is declared.
    UndeclaredInput,
    /// An expression that does not parse.
    ExpressionSyntax,
    /// A tool that no registry knows.
    UnknownTool,
    /// A literal `with:` value that breaks the tool's JSON Schema.
    ToolInputSchema,
    /// A step feature whose behaviour is not built yet. No longer emitted (approvals,
    /// sub-workflows and task tokens all run now); the code stays reserved.
    Unsupported,
    /// An input value given to a run that does not fit the declared input.
    InputValue,
    /// A tool that exists but that this template's owner may not use: a tool that starts
    /// host processes in a tenant's template, without the operator's grant.
    ToolNotAllowed,
}

impl Code {
    /// The code as printed: `WEFT-E001`...
    pub fn as_str(self) -> &'static str {
        match self {
            Code::YamlSyntax => "WEFT-E001",
            Code::UnknownKey => "WEFT-E002",
            Code::InvalidValue => "WEFT-E003",
            Code::MissingKey => "WEFT-E004",
            Code::DuplicateStepId => "WEFT-E005",
            Code::NeedsCycle => "WEFT-E006",
            Code::UnknownStep => "WEFT-E007",
            Code::NotAncestor => "WEFT-E008",
            Code::UndeclaredInput => "WEFT-E009",
            Code::ExpressionSyntax => "WEFT-E010",
            Code::UnknownTool => "WEFT-E011",
            Code::ToolInputSchema => "WEFT-E012",
            Code::Unsupported => "WEFT-E013",
            Code::InputValue => "WEFT-E014",
            Code::ToolNotAllowed => "WEFT-E015",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem in one template, at one place. Lines and columns count from 1.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub code: Code,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.col, self.code, self.message
        )
    }
}

/// All problems found in one load, in file order.
#[derive(Debug, Clone, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}
