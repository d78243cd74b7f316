-- The process-starting tools the operator grants to a tenant's registered templates (a JSON
-- array of names or `prefix.*` patterns), as in migrations/sqlite/0012_tenant_tools.sql.
ALTER TABLE tenants ADD COLUMN allowed_tools TEXT NOT NULL DEFAULT '[]';
