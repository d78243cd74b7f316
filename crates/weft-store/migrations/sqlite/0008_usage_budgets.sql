-- Metering, budgets and quotas. A task's LLM usage lives on its row (the attempts' sum, written
-- only for tasks that report usage, in the transaction that records the attempt); a run keeps
-- the budget it was started with; a tenant's quotas live beside, not in, `tenants`.
ALTER TABLE runs ADD COLUMN budget TEXT;
ALTER TABLE tasks ADD COLUMN llm_prompt_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN llm_completion_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0;

CREATE TABLE tenant_quotas (
    tenant            TEXT PRIMARY KEY,
    max_runs_per_hour INTEGER,
    updated_at        INTEGER NOT NULL
);
