-- A tenant's cap on tasks running at once across every worker (NULL: no cap). The claim
-- honours it in the same transaction that leases tasks.
ALTER TABLE tenants ADD COLUMN max_concurrent_tasks INTEGER;
