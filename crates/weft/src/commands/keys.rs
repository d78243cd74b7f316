//! `weft keys create|list|revoke --tenant NAME`: a tenant's API keys. Only hashes are stored;
//! a new key is printed once.

use std::process::ExitCode;

use crate::app::{App, usage};
use crate::commands::print_json;

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Makes a key and prints it on stdout (shown this once only).
    Create {
        #[arg(long)]
        tenant: String,
        /// A note to tell keys apart.
        #[arg(long, default_value = "key")]
        label: String,
    },
    /// Lists a tenant's keys (id, prefix, label, created, revoked).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revokes a key by id; requests with it are refused at once.
    Revoke {
        #[arg(long)]
        tenant: String,
        id: String,
    },
}

pub async fn keys(app: &App, cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    let store = crate::commands::serve::server_store(app).await?;
    let tenant = match &cmd {
        KeysCommand::Create { tenant, .. }
        | KeysCommand::List { tenant }
        | KeysCommand::Revoke { tenant, .. } => tenant.clone(),
    };
    if !store.tenants().await?.iter().any(|t| t.name == tenant) {
        return Err(usage(format!(
            "no tenant `{tenant}`; create it with `weft tenants create {tenant}`"
        )));
    }
    match cmd {
        KeysCommand::Create { label, .. } => {
            let (key, secret) =
                weft_server::auth::create_key(store.as_ref(), &tenant, &label).await?;
            if app.global.json {
                print_json(
                    &serde_json::json!({"tenant": tenant, "key_id": key.id, "key": secret}),
                )?;
            } else {
                println!("{secret}");
                eprintln!(
                    "key {} created for `{tenant}`; it is not shown again",
                    key.id
                );
            }
        }
        KeysCommand::List { .. } => {
            let keys = store.api_keys(&tenant).await?;
            if app.global.json {
                print_json(&keys)?;
            } else {
                println!(
                    "{:<32} {:<12} {:<16} {:<25} REVOKED",
                    "ID", "PREFIX", "LABEL", "CREATED"
                );
                for k in keys {
                    println!(
                        "{:<32} {:<12} {:<16} {:<25} {}",
                        k.id,
                        k.prefix,
                        k.label,
                        weft_store::rfc3339(k.created_at),
                        k.revoked_at
                            .map(weft_store::rfc3339)
                            .unwrap_or_else(|| "-".into())
                    );
                }
            }
        }
        KeysCommand::Revoke { id, .. } => {
            if !store.revoke_api_key(&tenant, &id).await? {
                return Err(usage(format!("tenant `{tenant}` has no live key `{id}`")));
            }
            eprintln!("key {id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}
