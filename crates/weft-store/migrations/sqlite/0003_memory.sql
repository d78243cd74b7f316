-- Per-tenant, namespaced key/value memory for the memory.* tools. Values are JSON text.
CREATE TABLE memory (
    tenant     TEXT NOT NULL,
    namespace  TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, namespace, key)
);
CREATE INDEX memory_recent ON memory (tenant, updated_at DESC);
