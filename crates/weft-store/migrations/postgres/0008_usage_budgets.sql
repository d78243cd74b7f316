-- Metering, budgets and quotas, as in migrations/sqlite/0008_usage_budgets.sql. Adding columns
-- with a constant default does not rewrite `tasks`.
ALTER TABLE runs ADD COLUMN budget TEXT;
ALTER TABLE tasks ADD COLUMN llm_prompt_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN llm_completion_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0;

CREATE TABLE tenant_quotas (
    tenant            TEXT PRIMARY KEY,
    max_runs_per_hour BIGINT,
    updated_at        BIGINT NOT NULL
);
