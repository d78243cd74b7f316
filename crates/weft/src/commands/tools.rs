//! `weft tools list`: every tool this configuration offers, with its description. MCP servers
//! are started to learn their tools (the only command besides `run` and `validate` that does).

use std::process::ExitCode;

use crate::app::App;
use crate::commands::print_json;

#[derive(Debug, clap::Subcommand)]
pub enum ToolsCommand {
    /// List the tools: built-ins, memory, llm.chat, skills, and each MCP server's tools.
    List,
}

pub async fn tools(app: &App, cmd: ToolsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ToolsCommand::List => list(app).await,
    }
}

async fn list(app: &App) -> anyhow::Result<ExitCode> {
    let failed = app.tools.prepare_all().await;
    let tools = app.tools.all();
    if app.global.json {
        print_json(&serde_json::json!({
            "tools": tools.iter().map(|t| serde_json::json!({
                "name": t.name(),
                "description": t.description(),
                "input_schema": t.input_schema(),
            })).collect::<Vec<_>>(),
            "failed": failed.iter().map(|(prefix, e)| serde_json::json!({
                "source": prefix.trim_end_matches('.'),
                "error": e.to_string(),
            })).collect::<Vec<_>>(),
        }))?;
    } else {
        let width = tools.iter().map(|t| t.name().len()).max().unwrap_or(0);
        for tool in &tools {
            let first = tool.description().lines().next().unwrap_or_default();
            println!("{:width$}  {}", tool.name(), first.trim());
        }
    }
    for (prefix, error) in &failed {
        eprintln!("error: {}*: {error}", prefix);
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
