-- Per-tenant, namespaced key/value memory for the memory.* tools, as in
-- migrations/sqlite/0003_memory.sql. Values are JSON text (key order kept).
CREATE TABLE memory (
    tenant     TEXT NOT NULL,
    namespace  TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, namespace, key)
);
CREATE INDEX memory_recent ON memory (tenant, updated_at DESC);
