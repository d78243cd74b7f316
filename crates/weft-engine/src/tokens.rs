//! Task tokens: minting one per claimed attempt, and what a task that holds one could read.
//!
//! A token is `wft_tt_` + 32 bytes from the OS RNG in base64url. The worker mints one for every
//! attempt it claims (except a pure tool's whose step has no `token:`: it cannot call back), in
//! the claim's transaction, and the store keeps only its SHA-256; the
//! text goes to the tool through `weft_tools::Context` and nowhere else (no log line, event or
//! record carries it). The store revokes it in the transaction that ends the attempt. Its life
//! and scopes come from the step's `token:` (default 3m, `progress` and `artifacts:write`).

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use weft_core::plan::TokenSpec;
use weft_store::Task;
use weft_store::secrets::SecretStore;
use weft_store::tokens::NewTaskToken;

use crate::scrub::Scrubber;
use crate::secrets::SecretBox;
use crate::{Engine, Result};

pub const TOKEN_PREFIX: &str = "wft_tt_";

/// A fresh token's text.
pub fn new_token() -> String {
    use rand::TryRngCore as _;
    let mut bytes = [0u8; 32];
    if rand::rngs::OsRng.try_fill_bytes(&mut bytes).is_err() {
        // The OS RNG failing is not something to carry on from quietly; fall back to the
        // thread RNG (itself seeded from the OS) rather than mint a predictable token.
        bytes = rand::random();
    }
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// SHA-256 of a token, hex: what the store keeps and looks tokens up by.
pub fn hash_token(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `text` has the shape of a task token (so a malformed one is told apart from an
/// unknown one without a store lookup).
pub fn well_formed(text: &str) -> bool {
    text.strip_prefix(TOKEN_PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// Where the secrets a task may read come from, to scrub them from what it leaves behind.
#[derive(Clone)]
pub(crate) struct SecretAccess {
    pub store: Arc<dyn SecretStore>,
    pub secret_box: SecretBox,
}

impl Engine {
    /// The token settings of a task's step: its `token:`, or the defaults.
    pub(crate) async fn token_spec(&self, task: &Task) -> TokenSpec {
        let spec = async {
            let run = self.run_for_call(&task.tenant, &task.run_id).await.ok()??;
            let plan = self.plan_for(&run).ok()?;
            let idx = plan.step_index(&task.step_id)?;
            plan.steps[idx].token.clone()
        };
        spec.await.unwrap_or_default()
    }

    /// What a claimed attempt's token allows, or `None` when it gets none: a pure tool
    /// (`transform`, `render`, ...) does no I/O and cannot call back, so unless its step asks
    /// for a token with `token:`, minting one would only cost the queue.
    async fn minted_spec(&self, task: &Task) -> Option<TokenSpec> {
        let explicit = async {
            let run = self.run_for_call(&task.tenant, &task.run_id).await.ok()??;
            let plan = self.plan_for(&run).ok()?;
            let idx = plan.step_index(&task.step_id)?;
            plan.steps[idx].token.clone()
        };
        if let Some(spec) = explicit.await {
            return Some(spec);
        }
        let pure = self.tools().get(&task.tool).is_some_and(|t| t.is_pure());
        (!pure).then(TokenSpec::default)
    }

    /// Mints a token for each claimed attempt (but pure tools' without `token:`) and records
    /// their hashes in `tx`. Returns each task's token text by task id.
    pub(crate) async fn mint_tokens(
        &self,
        tx: &mut dyn weft_store::TokenTable,
        claimed: &[Task],
    ) -> Result<HashMap<i64, String>> {
        let mut texts = HashMap::with_capacity(claimed.len());
        if claimed.is_empty() {
            return Ok(texts);
        }
        let mut rows = Vec::with_capacity(claimed.len());
        for task in claimed {
            let Some(spec) = self.minted_spec(task).await else {
                continue;
            };
            let text = new_token();
            rows.push(NewTaskToken {
                hash: hash_token(&text),
                tenant: task.tenant.clone(),
                run_id: task.run_id.clone(),
                step_id: task.step_id.clone(),
                task_id: task.id,
                item: task.item,
                attempt: task.attempt,
                scopes: spec.scopes,
                ttl_ms: crate::millis(spec.ttl),
            });
            texts.insert(task.id, text);
        }
        if !rows.is_empty() {
            tx.insert_task_tokens(&rows).await?;
        }
        Ok(texts)
    }

    /// A scrubber for every secret that a token with these scopes lets its holder read, as
    /// the secrets are now. Empty when the scopes name no secret or secrets are not set up.
    /// An error (a secret that cannot be read or opened) means nothing the task wrote may be
    /// recorded: the caller fails closed.
    pub async fn scrubber_for(
        &self,
        tenant: &str,
        scopes: &[String],
    ) -> std::result::Result<Scrubber, String> {
        let names: Vec<&str> = scopes
            .iter()
            .filter_map(|s| s.strip_prefix("secret:"))
            .collect();
        if names.is_empty() {
            return Ok(Scrubber::default());
        }
        let Some(access) = self.secret_access() else {
            // Without a callback API the task has no way to read a secret through weft; with
            // one, an output that cannot be scrubbed must not be recorded.
            if self.api_url().is_none() {
                return Ok(Scrubber::default());
            }
            return Err(
                "this worker cannot read secrets to scrub the task's output; give it \
                        the secret key (WEFT_SECRET_KEY)"
                    .into(),
            );
        };
        let mut values = Vec::new();
        for name in names {
            let sealed = access
                .store
                .secret_ciphertext(tenant, name)
                .await
                .map_err(|e| format!("cannot read secret `{name}` to scrub the output: {e}"))?;
            if let Some(sealed) = sealed {
                let value = access
                    .secret_box
                    .open(tenant, name, &sealed)
                    .map_err(|e| e.to_string())?;
                values.push(value);
            }
        }
        Ok(Scrubber::new(values))
    }

    /// Scrubs a finished attempt's output or error of every secret its token let it read.
    /// If those secrets cannot be read, the output is not recorded: the attempt fails
    /// (transiently) instead.
    pub(crate) async fn scrub_result(
        &self,
        task: &Task,
        result: &mut std::result::Result<serde_json::Value, crate::completion::Failure>,
    ) {
        let spec = self.token_spec(task).await;
        let scrubber = match self.scrubber_for(&task.tenant, &spec.scopes).await {
            Ok(s) => s,
            Err(message) => {
                *result = Err(crate::completion::Failure {
                    message,
                    transient: true,
                    reason: "error",
                });
                return;
            }
        };
        if scrubber.is_empty() {
            return;
        }
        match result {
            Ok(value) => *value = scrubber.value(std::mem::take(value)),
            Err(failure) => failure.message = scrubber.text(&failure.message).into_owned(),
        }
    }

    /// `progress`, with its messages scrubbed of the secrets the task may read (the same
    /// `Progress` when it may read none).
    pub(crate) async fn scrubbed_progress(
        &self,
        task: &Task,
        progress: weft_tools::Progress,
    ) -> weft_tools::Progress {
        let spec = self.token_spec(task).await;
        if spec.secret_names().next().is_none() {
            return progress;
        }
        // `None`: the secrets could not be read, so messages cannot be made safe.
        let scrubber = self.scrubber_for(&task.tenant, &spec.scopes).await.ok();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<weft_tools::ProgressUpdate>(16);
        // Ends when the call drops its sender.
        tokio::spawn(async move {
            while let Some(mut update) = rx.recv().await {
                // Without a way to scrub, a message is dropped rather than risked.
                update.message = match (&update.message, &scrubber) {
                    (Some(m), Some(scrubber)) => Some(scrubber.text(m).into_owned()),
                    _ => None,
                };
                progress.report(update);
            }
        });
        weft_tools::Progress::new(tx)
    }
}
