//! The workflow language and the pure parts of execution.
//!
//! `weft-core` knows what a template means: it loads YAML into a validated [`plan::Plan`],
//! evaluates `{{ }}` expressions in a sandbox ([`expr`]), and decides what a run does next
//! ([`orchestrator`]) from nothing but the plan and the recorded step states. It knows no
//! database, no HTTP and no tool implementation; tools are seen only through
//! [`catalog::ToolCatalog`].

pub mod catalog;
pub mod diag;
pub mod duration;
pub mod expr;
pub mod geo;
pub mod inputs;
pub mod lifecycle;
pub mod limits;
pub mod load;
pub mod orchestrator;
pub mod plan;

pub use diag::{Code, Diagnostic};
pub use plan::Plan;
