//! The tool policy at the one place every tool call of every run passes: before the worker
//! calls a tool (`worker.rs`). Whatever path created the run (the API, a schedule, an action,
//! a `workflow:` step, MCP, `weft ask`), a tenant's registered template reaches a tool that
//! starts host processes only when the operator granted that tool to the tenant, read from the
//! store at the call, so taking a grant back holds for runs already queued.
//!
//! A run is the tenant's own when its template was registered through the API
//! ([`weft_core::plan::REGISTERED_FILE`]); the operator's templates (folders, built-ins) may
//! use every tool.
//!
//! The same check decides confinement ([`Confinement`]): a granted tool's processes run in the
//! tenants' sandbox, always (a machine without one refuses them, never runs them
//! unconfined); the operator's run with weft's rights unless `[sandbox]` confines them too.

use std::sync::{Arc, OnceLock};

use weft_store::Run;
use weft_tools::Tool;
use weft_tools::sandbox::Sandbox;

use crate::Engine;

/// The tenants' sandbox, probed (a `bwrap` child) the first time a tenant's template needs it,
/// so a `weft run` of the operator's own templates never pays for the probe.
#[derive(Clone)]
pub struct TenantSandbox {
    probed: Arc<OnceLock<Result<Arc<Sandbox>, String>>>,
    probe: Arc<dyn Fn() -> Result<Sandbox, String> + Send + Sync>,
}

impl TenantSandbox {
    /// A sandbox that `probe` makes on first use (or says why there is none).
    pub fn lazy(probe: impl Fn() -> Result<Sandbox, String> + Send + Sync + 'static) -> Self {
        TenantSandbox {
            probed: Arc::new(OnceLock::new()),
            probe: Arc::new(probe),
        }
    }

    /// No sandbox in this process, for `why`.
    pub fn none(why: &str) -> Self {
        let why = why.to_string();
        TenantSandbox::lazy(move || Err(why.clone()))
    }

    /// The sandbox, or why this machine has none (probed once).
    pub fn get(&self) -> Result<Arc<Sandbox>, String> {
        self.probed
            .get_or_init(|| (self.probe)().map(Arc::new))
            .clone()
    }
}

impl std::fmt::Debug for TenantSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.probed.get() {
            Some(probed) => probed.fmt(f),
            None => f.write_str("TenantSandbox(not probed yet)"),
        }
    }
}

/// How the processes tools start are confined in this process.
#[derive(Debug, Clone)]
pub struct Confinement {
    /// Tenants' templates: the sandbox, or why there is none on this machine.
    pub tenants: TenantSandbox,
    /// The operator's own templates: `None` runs them with weft's rights (the default).
    pub operator: Option<Arc<Sandbox>>,
}

impl Default for Confinement {
    fn default() -> Self {
        Confinement {
            tenants: TenantSandbox::none("this process has no sandbox for tenants' processes"),
            operator: None,
        }
    }
}

impl Engine {
    /// Whether `run` may call `tool`, and in which sandbox its processes run (`None`: with
    /// weft's rights). `Err` says why not, for the step's error.
    pub(crate) async fn admit(
        &self,
        run: &Run,
        tool: &dyn Tool,
    ) -> Result<Option<Arc<Sandbox>>, String> {
        if !tool.starts_processes() {
            return Ok(None);
        }
        let confinement = &self.inner.confinement;
        if run.file != weft_core::plan::REGISTERED_FILE {
            return Ok(confinement.operator.clone());
        }
        let granted = match &self.inner.grants {
            Some(grants) => grants.allowed_tools(&run.tenant).await.map_err(|e| {
                format!(
                    "cannot read the tools granted to tenant `{}`: {e}",
                    run.tenant
                )
            })?,
            None => Vec::new(),
        };
        if let Some(why) = weft_tools::policy::refusal(tool, &run.tenant, &granted) {
            return Err(why);
        }
        confinement.tenants.get().map(Some).map_err(|why| {
            format!(
                "tool `{}` cannot run confined on this machine, and a tenant's template never \
                 runs it unconfined: {why}",
                tool.name()
            )
        })
    }
}
