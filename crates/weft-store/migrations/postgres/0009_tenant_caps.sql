-- A tenant's cap on tasks running at once across every worker (NULL: no cap), as in
-- migrations/sqlite/0009_tenant_caps.sql. Claimers lock a capped tenant before counting.
ALTER TABLE tenants ADD COLUMN max_concurrent_tasks BIGINT;
