-- Schedules, as in migrations/sqlite/0006_schedules.sql: a slot is claimed by a conditional
-- UPDATE of next_fire_at in the transaction that creates its run (a racing claimer's UPDATE
-- waits for the row, re-reads it and matches nothing).
CREATE TABLE schedules (
    id            TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    name          TEXT NOT NULL,
    cron          TEXT NOT NULL,
    timezone      TEXT NOT NULL,
    template      TEXT NOT NULL,
    version       TEXT NOT NULL,
    digest        TEXT NOT NULL,
    source        TEXT NOT NULL,
    file          TEXT NOT NULL,
    files         TEXT NOT NULL,
    base_dir      TEXT,
    inputs        TEXT NOT NULL,
    paused        BOOLEAN NOT NULL DEFAULT FALSE,
    next_fire_at  BIGINT,
    last_slot     BIGINT,
    last_fired_at BIGINT,
    last_error    TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (tenant, name)
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE NOT paused;
