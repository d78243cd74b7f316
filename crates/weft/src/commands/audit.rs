//! `weft audit [--run RUN] [--since RFC3339]`: the `default` tenant's audit trail, and the
//! helper other commands record what they did with (actor `cli`).

use std::process::ExitCode;
use std::sync::Arc;

use weft_store::secrets::{AuditQuery, AuditRecord, SecretsAudit};

use crate::app::{App, usage};
use crate::commands::print_json;

const TENANT: &str = "default";

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only records about this run.
    #[arg(long)]
    run: Option<String>,
    /// Only records at or after this time (RFC 3339, e.g. 2025-01-31T00:00:00Z).
    #[arg(long)]
    since: Option<String>,
}

/// The store as secrets and the audit trail see it: SQLite or PostgreSQL.
pub async fn store(app: &App) -> anyhow::Result<Arc<dyn SecretsAudit>> {
    Ok(app.sql_store().await?)
}

/// Appends a record by the CLI; a failure to record is said on stderr, not hidden.
pub async fn record(app: &App, action: &str, object_type: &str, object_id: &str, outcome: &str) {
    record_for(app, TENANT, action, object_type, object_id, outcome).await
}

/// [`record`] on the trail of `tenant` (the operator acting with `--tenant`).
pub async fn record_for(
    app: &App,
    tenant: &str,
    action: &str,
    object_type: &str,
    object_id: &str,
    outcome: &str,
) {
    let record = AuditRecord {
        seq: 0,
        tenant: tenant.into(),
        at: 0,
        actor: "cli".into(),
        action: action.into(),
        object_type: object_type.into(),
        object_id: object_id.into(),
        outcome: outcome.into(),
    };
    let done = match store(app).await {
        Ok(store) => store
            .append_audit(&record)
            .await
            .map_err(anyhow::Error::new),
        Err(e) => Err(e),
    };
    if let Err(error) = done {
        eprintln!("warning: could not record `{action}` in the audit trail: {error:#}");
    }
}

pub async fn audit(app: &App, args: AuditArgs) -> anyhow::Result<ExitCode> {
    let since = match &args.since {
        Some(text) => Some(
            chrono::DateTime::parse_from_rfc3339(text)
                .map_err(|e| usage(format!("--since `{text}` is not an RFC 3339 time: {e}")))?
                .timestamp_millis(),
        ),
        None => None,
    };
    let store = store(app).await?;
    let records = store
        .audit(&AuditQuery {
            tenant: TENANT.into(),
            run: args.run,
            since,
            limit: 0,
        })
        .await?;
    if app.global.json {
        return print_json(&records).map(|_| ExitCode::SUCCESS);
    }
    println!(
        "{:<25} {:<32} {:<20} {:<40} OUTCOME",
        "AT", "ACTOR", "ACTION", "OBJECT"
    );
    for r in records {
        println!(
            "{:<25} {:<32} {:<20} {:<40} {}",
            weft_store::rfc3339(r.at),
            r.actor,
            r.action,
            format!("{}:{}", r.object_type, r.object_id),
            r.outcome
        );
    }
    Ok(ExitCode::SUCCESS)
}
