//! `weft usage [--by day|template|run] [--since WHEN]`: the `default` tenant's metering —
//! runs, tool calls, cache hits, LLM tokens and estimated cost — grouped by the UTC day a run
//! was created, by template or by run.

use std::process::ExitCode;

use weft_store::usage::{UsageGroup, UsageQuery, parse_since};

use crate::app::{App, usage};
use crate::commands::print_json;

#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    /// How to group: by the day a run was created (UTC), by template, or one row per run.
    #[arg(long = "by", value_name = "day|template|run", default_value = "day", value_parser = parse_group)]
    group_by: UsageGroup,
    /// Only runs created at or after this: an RFC 3339 time, a date (2026-11-25) or a span
    /// back from now (24h, 7d).
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Most rows.
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

fn parse_group(text: &str) -> Result<UsageGroup, String> {
    UsageGroup::parse(text).ok_or_else(|| "one of day, template, run".into())
}

pub async fn usage_report(app: &App, args: UsageArgs) -> anyhow::Result<ExitCode> {
    let engine = app.engine().await?;
    let store = engine.store();
    let since = match &args.since {
        Some(text) => Some(parse_since(text, store.now().await?).map_err(usage)?),
        None => None,
    };
    let rows = store
        .usage(&UsageQuery {
            tenant: "default".into(),
            group_by: args.group_by,
            since,
            limit: args.limit.clamp(1, 10_000),
        })
        .await?;
    if app.global.json {
        print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    let key = match args.group_by {
        UsageGroup::Day => "DAY",
        UsageGroup::Template => "TEMPLATE",
        UsageGroup::Run => "RUN",
    };
    println!(
        "{key:<32} {:>6} {:>10} {:>10} {:>12} {:>12} {:>12}",
        "RUNS", "TOOL CALLS", "CACHE HITS", "PROMPT TOK", "COMPL TOK", "COST USD"
    );
    for r in &rows {
        println!(
            "{:<32} {:>6} {:>10} {:>10} {:>12} {:>12} {:>12.6}",
            r.key,
            r.runs,
            r.usage.tool_calls,
            r.usage.cache_hits,
            r.usage.llm_prompt_tokens,
            r.usage.llm_completion_tokens,
            r.usage.cost_usd
        );
    }
    if rows.is_empty() {
        eprintln!("no runs in this period");
    }
    Ok(ExitCode::SUCCESS)
}
