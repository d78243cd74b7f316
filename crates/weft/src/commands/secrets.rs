//! `weft secrets set|list|delete [--tenant NAME]`: a tenant's secrets (`default`, the CLI's
//! own, unless the operator names another). A value is read from stdin,
//! sealed with the deployment's key (`WEFT_SECRET_KEY`, or `secret.key` next to the database,
//! created on first use with mode 0600) and never printed again.

use std::io::Read as _;
use std::process::ExitCode;

use weft_engine::secrets::{SecretBox, valid_name};

use crate::app::{App, usage};
use crate::commands::audit::{record_for, store};
use crate::commands::print_json;

const TENANT: &str = "default";

#[derive(Debug, clap::Subcommand)]
pub enum SecretsCommand {
    /// Stores NAME with the value read from stdin (one trailing newline is dropped).
    Set {
        name: String,
        /// The tenant whose secret it is.
        #[arg(long, default_value = TENANT)]
        tenant: String,
    },
    /// Lists secret names (never values).
    List {
        /// The tenant whose secrets to list.
        #[arg(long, default_value = TENANT)]
        tenant: String,
    },
    /// Deletes NAME.
    Delete {
        name: String,
        /// The tenant whose secret it is.
        #[arg(long, default_value = TENANT)]
        tenant: String,
    },
}

/// The deployment's key: `WEFT_SECRET_KEY`, else the key file beside the SQLite database (or
/// `.weft/secret.key` for PostgreSQL).
pub fn secret_box(app: &App) -> anyhow::Result<SecretBox> {
    let dir = if app.postgres_url().is_some() {
        std::path::PathBuf::from(".weft")
    } else {
        app.db_path()
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default()
    };
    let env = crate::guard::secret_key();
    Ok(SecretBox::load(env.as_deref(), &dir.join("secret.key"))?)
}

fn check_name(name: &str) -> anyhow::Result<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(usage(format!(
            "`{name}` is not a secret name: a letter or `_` first, then letters, digits, `_`, \
             `-` or `.`; 1 to 64 characters"
        )))
    }
}

pub async fn secrets(app: &App, cmd: SecretsCommand) -> anyhow::Result<ExitCode> {
    let store = store(app).await?;
    let (SecretsCommand::Set { tenant, .. }
    | SecretsCommand::List { tenant }
    | SecretsCommand::Delete { tenant, .. }) = &cmd;
    // A typo never files a secret under a tenant that does not exist.
    crate::commands::run::check_tenant(app, tenant).await?;
    match cmd {
        SecretsCommand::Set { name, tenant } => {
            check_name(&name)?;
            let mut value = String::new();
            std::io::stdin().read_to_string(&mut value)?;
            if value.ends_with('\n') {
                value.pop();
                if value.ends_with('\r') {
                    value.pop();
                }
            }
            if value.is_empty() {
                return Err(usage(
                    "no value on stdin; pipe it in: `printf %s VALUE | weft secrets set NAME`",
                ));
            }
            let sealed = secret_box(app)?.seal(&tenant, &name, value.as_bytes())?;
            let created = store.put_secret(&tenant, &name, &sealed).await?;
            record_for(app, &tenant, "secret.set", "secret", &name, "ok").await;
            eprintln!(
                "secret {name} {}",
                if created { "stored" } else { "replaced" }
            );
        }
        SecretsCommand::List { tenant } => {
            let secrets = store.secrets(&tenant).await?;
            if app.global.json {
                print_json(&secrets)?;
            } else {
                for s in secrets {
                    println!("{}", s.name);
                }
            }
        }
        SecretsCommand::Delete { name, tenant } => {
            if !store.delete_secret(&tenant, &name).await? {
                return Err(usage(format!("no secret `{name}`")));
            }
            record_for(app, &tenant, "secret.deleted", "secret", &name, "ok").await;
            eprintln!("secret {name} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}
