//! `weft tenants create NAME`: a new tenant and its first admin key, printed once.

use std::process::ExitCode;

use weft_store::server::AuthStore;

use crate::app::{App, usage};
use crate::commands::print_json;

#[derive(Debug, clap::Subcommand)]
pub enum TenantsCommand {
    /// Creates a tenant and prints its admin API key on stdout (shown this once only).
    Create {
        /// Lowercase letters, digits, `-` and `_`.
        name: String,
    },
    /// Lists the tenants.
    List,
}

pub async fn tenants(app: &App, cmd: TenantsCommand) -> anyhow::Result<ExitCode> {
    let store = crate::commands::serve::server_store(app).await?;
    match cmd {
        TenantsCommand::Create { name } => {
            if !weft_server::auth::valid_tenant_name(&name) {
                return Err(usage(format!(
                    "`{name}`: a tenant name is 1 to 63 of a-z, 0-9, `-` and `_`"
                )));
            }
            if !store.create_tenant(&name).await? {
                return Err(usage(format!("tenant `{name}` already exists")));
            }
            let (key, secret) =
                weft_server::auth::create_key(store.as_ref(), &name, "admin").await?;
            if app.global.json {
                print_json(&serde_json::json!({"tenant": name, "key_id": key.id, "key": secret}))?;
            } else {
                println!("{secret}");
                eprintln!("tenant `{name}` created; store its key now, it is not shown again");
            }
        }
        TenantsCommand::List => {
            let tenants = store.tenants().await?;
            if app.global.json {
                print_json(&tenants)?;
            } else {
                for t in tenants {
                    println!("{}\t{}", t.name, weft_store::rfc3339(t.created_at));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
