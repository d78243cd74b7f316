-- The runs list pages with a (created_at, id) row value; PostgreSQL's runs_by_tenant index has
-- been (tenant, created_at DESC, id DESC) since 0001, so this version only keeps the two
-- backends' migration numbers in step.
CREATE INDEX IF NOT EXISTS runs_by_tenant ON runs (tenant, created_at DESC, id DESC);
