-- What `weft serve` adds, as in migrations/sqlite/0002_server.sql: tenants, their API keys,
-- registered templates and stream tickets. Secrets (API keys, tickets) are stored only as
-- SHA-256 hashes.
CREATE TABLE tenants (
    name       TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL REFERENCES tenants (name),
    label      TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    prefix     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant, created_at);

-- `seq` orders versions registered in the same millisecond (SQLite uses its rowid).
CREATE TABLE templates (
    seq         BIGSERIAL UNIQUE,
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    digest      TEXT NOT NULL,
    source      TEXT NOT NULL,
    description TEXT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant, name, version)
);

CREATE TABLE stream_tickets (
    hash       TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX stream_tickets_expiry ON stream_tickets (expires_at);
