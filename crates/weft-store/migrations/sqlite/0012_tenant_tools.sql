-- The tools that start host processes (`command`, `skill.*`, stdio `mcp.*`) which the operator
-- grants to a tenant's own registered templates: a JSON array of names or `prefix.*`
-- patterns. Empty by default: a tenant's templates start no process until granted.
ALTER TABLE tenants ADD COLUMN allowed_tools TEXT NOT NULL DEFAULT '[]';
