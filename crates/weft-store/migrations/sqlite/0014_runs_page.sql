-- The runs list pages with a (created_at, id) row value: with id in the index, page 2,000 is a
-- seek like page 1, where the index on (tenant, created_at) alone scanned every newer run and
-- sorted the ties. It replaces that index.
CREATE INDEX runs_page ON runs (tenant, created_at DESC, id DESC);
DROP INDEX runs_by_tenant;
