//! Where the CLI's runs find the templates their `workflow:` steps and actions start: the
//! `./templates` folder, the folders `weft.toml` lists, then the built-ins (the same order as
//! `weft run NAME`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use weft_core::Plan;
use weft_engine::TemplateSource;
use weft_tools::Registry;

pub struct Folders {
    dirs: Vec<PathBuf>,
    tools: Arc<Registry>,
}

impl Folders {
    pub fn new(configured: &[PathBuf], tools: Arc<Registry>) -> Self {
        let mut dirs = vec![PathBuf::from("templates")];
        dirs.extend(configured.iter().cloned());
        // Absolute paths: a run may be driven from another folder later.
        let dirs = dirs
            .into_iter()
            .map(|d| d.canonicalize().unwrap_or(d))
            .collect();
        Folders { dirs, tools }
    }

    /// The template `name` (a file name without `.yaml`, or a built-in), checked against
    /// `version` when one is asked for: (plan, the folder its runs work in).
    pub fn load(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<(Arc<Plan>, Option<String>), String> {
        let mut found = None;
        for dir in &self.dirs {
            for ext in ["yaml", "yml"] {
                let path = dir.join(format!("{name}.{ext}"));
                if found.is_none() && path.is_file() {
                    let plan = weft_core::load::load_file(&path, &*self.tools)
                        .map_err(|d| format!("template `{name}` does not load: {d}"))?;
                    let base = path
                        .canonicalize()
                        .ok()
                        .and_then(|p| p.parent().map(Path::to_path_buf))
                        .map(|p| p.display().to_string());
                    found = Some((Arc::new(plan), base));
                }
            }
        }
        if found.is_none()
            && let Some((file, source)) = crate::commands::templates::builtin(name)
        {
            let plan = weft_core::load::load_str(source, file, None, &*self.tools)
                .map_err(|d| format!("template `{name}` does not load: {d}"))?;
            found = Some((Arc::new(plan), None));
        }
        let Some((plan, base)) = found else {
            return Err(format!(
                "no template `{name}`: not in ./templates, the configured folders or the built-ins"
            ));
        };
        if let Some(v) = version
            && v != plan.version
        {
            return Err(format!(
                "template `{name}` is at version {} here, not {v}",
                plan.version
            ));
        }
        Ok((plan, base))
    }
}

#[async_trait]
impl TemplateSource for Folders {
    async fn find(
        &self,
        _tenant: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<(Arc<Plan>, Option<String>), String> {
        self.load(name, version)
    }
}

/// For `weft worker`: a tenant's registered templates first (as `weft serve` finds them), then
/// the folders and built-ins, so a child run or an action started in a worker's transaction
/// finds what it would find under `weft serve`.
pub struct Registered {
    store: Arc<dyn weft_store::server::ServerStore>,
    folders: Folders,
}

impl Registered {
    pub fn new(store: Arc<dyn weft_store::server::ServerStore>, folders: Folders) -> Self {
        Registered { store, folders }
    }
}

#[async_trait]
impl TemplateSource for Registered {
    async fn find(
        &self,
        tenant: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<(Arc<Plan>, Option<String>), String> {
        let record =
            weft_store::server::TemplateStore::template(self.store.as_ref(), tenant, name, version)
                .await
                .map_err(|e| format!("cannot read template `{name}`: {e}"))?;
        if let Some(record) = record {
            let plan = weft_core::load::load_str(
                &record.source,
                weft_core::plan::REGISTERED_FILE,
                None,
                &*self.folders.tools,
            )
            .map_err(|d| format!("registered template `{name}` no longer loads: {d}"))?;
            return Ok((Arc::new(plan), None));
        }
        self.folders.load(name, version)
    }
}
