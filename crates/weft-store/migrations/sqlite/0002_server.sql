-- What `weft serve` adds: tenants, their API keys, registered templates and stream tickets.
-- Secrets (API keys, tickets) are stored only as SHA-256 hashes.
CREATE TABLE tenants (
    name       TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL REFERENCES tenants (name),
    label      TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    prefix     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant, created_at);

CREATE TABLE templates (
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    digest      TEXT NOT NULL,
    source      TEXT NOT NULL,
    description TEXT,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, name, version)
);

CREATE TABLE stream_tickets (
    hash       TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
