//! `weft tenants create NAME`: a new tenant and its first admin key, printed once;
//! `weft tenants update NAME`: its limits, which every worker's claim honours, and the tools
//! that start host processes its own templates may use (`--allow-tools`).

use std::process::ExitCode;

use weft_store::server::ServerStore;

use crate::app::{App, usage};
use crate::commands::print_json;

#[derive(Debug, clap::Subcommand)]
pub enum TenantsCommand {
    /// Creates a tenant and prints its admin API key on stdout (shown this once only).
    Create {
        /// Lowercase letters, digits, `-` and `_`.
        name: String,
        #[command(flatten)]
        limits: TenantLimits,
    },
    /// Changes a tenant's limits.
    Update {
        name: String,
        #[command(flatten)]
        limits: TenantLimits,
    },
    /// Lists the tenants.
    List,
}

#[derive(Debug, clap::Args)]
pub struct TenantLimits {
    /// Most of the tenant's tasks running at once, across every worker and machine; `none`
    /// lifts the cap.
    #[arg(long, value_name = "N|none", value_parser = parse_cap)]
    max_concurrent_tasks: Option<Cap>,
    /// Most runs the tenant may create in any hour (counted in the store, across processes;
    /// beyond it the API answers 429 with Retry-After); `none` lifts the quota.
    #[arg(long, value_name = "N|none", value_parser = parse_cap)]
    max_runs_per_hour: Option<Cap>,
    /// The tools that start host processes which the tenant's own registered templates may
    /// use, confined: comma-separated names or `prefix.*` patterns (`command,skill.report`,
    /// `mcp.files.*`); `none` takes every grant back. Replaces the list.
    #[arg(long, value_name = "TOOLS|none", value_parser = parse_tools)]
    allow_tools: Option<ToolList>,
}

/// Tool names or patterns (a newtype, so clap takes the list as one value).
#[derive(Debug, Clone)]
struct ToolList(Vec<String>);

/// `command,skill.*` as a list of tool patterns; `none` is the empty list.
fn parse_tools(text: &str) -> Result<ToolList, String> {
    if text.trim() == "none" {
        return Ok(ToolList(Vec::new()));
    }
    let tools: Vec<String> = text
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    for tool in &tools {
        let name = tool.strip_suffix('*').unwrap_or(tool);
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(format!(
                "`{tool}` is not a tool name or a `prefix.*` pattern"
            ));
        }
    }
    if tools.is_empty() {
        return Err("name the tools, e.g. `command,skill.report`, or `none`".into());
    }
    Ok(ToolList(tools))
}

#[derive(Debug, Clone, Copy)]
enum Cap {
    At(u32),
    Unlimited,
}

fn parse_cap(text: &str) -> Result<Cap, String> {
    if text == "none" {
        return Ok(Cap::Unlimited);
    }
    match text.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(Cap::At(n)),
        _ => Err("a whole number of at least 1, or `none`".into()),
    }
}

async fn apply_limits(
    store: &dyn ServerStore,
    name: &str,
    limits: &TenantLimits,
) -> anyhow::Result<()> {
    if let Some(cap) = limits.max_concurrent_tasks {
        let max = match cap {
            Cap::At(n) => Some(n),
            Cap::Unlimited => None,
        };
        if !store.set_tenant_max_concurrent_tasks(name, max).await? {
            return Err(usage(format!("no tenant `{name}`")));
        }
    }
    if let Some(cap) = limits.max_runs_per_hour {
        if !store.tenants().await?.iter().any(|t| t.name == name) {
            return Err(usage(format!("no tenant `{name}`")));
        }
        let quota = weft_store::usage::TenantQuota {
            max_runs_per_hour: match cap {
                Cap::At(n) => Some(n),
                Cap::Unlimited => None,
            },
        };
        store.set_tenant_quota(name, &quota).await?;
    }
    if let Some(ToolList(tools)) = &limits.allow_tools
        && !store.set_tenant_allowed_tools(name, tools).await?
    {
        return Err(usage(format!("no tenant `{name}`")));
    }
    Ok(())
}

pub async fn tenants(app: &App, cmd: TenantsCommand) -> anyhow::Result<ExitCode> {
    let store = crate::commands::serve::server_store(app).await?;
    match cmd {
        TenantsCommand::Create { name, limits } => {
            if !weft_server::auth::valid_tenant_name(&name) {
                return Err(usage(format!(
                    "`{name}`: a tenant name is 1 to 63 of a-z, 0-9, `-` and `_`"
                )));
            }
            if !store.create_tenant(&name).await? {
                return Err(usage(format!("tenant `{name}` already exists")));
            }
            apply_limits(store.as_ref(), &name, &limits).await?;
            let (key, secret) =
                weft_server::auth::create_key(store.as_ref(), &name, "admin").await?;
            if app.global.json {
                print_json(&serde_json::json!({"tenant": name, "key_id": key.id, "key": secret}))?;
            } else {
                println!("{secret}");
                eprintln!("tenant `{name}` created; store its key now, it is not shown again");
            }
        }
        TenantsCommand::Update { name, limits } => {
            if limits.max_concurrent_tasks.is_none()
                && limits.max_runs_per_hour.is_none()
                && limits.allow_tools.is_none()
            {
                return Err(usage(
                    "nothing to change: give --max-concurrent-tasks N|none, --max-runs-per-hour \
                     N|none or --allow-tools TOOLS|none",
                ));
            }
            apply_limits(store.as_ref(), &name, &limits).await?;
            let tenant = store.tenants().await?.into_iter().find(|t| t.name == name);
            if app.global.json {
                let quota = store.tenant_quota(&name).await?;
                print_json(&serde_json::json!({"tenant": tenant, "quota": quota}))?;
            } else {
                eprintln!("tenant `{name}` updated");
            }
        }
        TenantsCommand::List => {
            let tenants = store.tenants().await?;
            if app.global.json {
                print_json(&tenants)?;
            } else {
                for t in tenants {
                    let cap = t
                        .max_concurrent_tasks
                        .map(|n| format!("max {n} tasks"))
                        .unwrap_or_else(|| "no task cap".into());
                    let rate = store
                        .tenant_quota(&t.name)
                        .await?
                        .max_runs_per_hour
                        .map(|n| format!("max {n} runs/hour"))
                        .unwrap_or_else(|| "no run quota".into());
                    let tools = if t.allowed_tools.is_empty() {
                        "no process tools".to_string()
                    } else {
                        format!("tools {}", t.allowed_tools.join(","))
                    };
                    println!(
                        "{}\t{}\t{cap}\t{rate}\t{tools}",
                        t.name,
                        weft_store::rfc3339(t.created_at)
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
