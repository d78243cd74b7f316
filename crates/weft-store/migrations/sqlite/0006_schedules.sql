-- Schedules: a template with its inputs, started on a cron. A schedule keeps the template's
-- source as it was added (like a run does), so any worker can fire it without the template's
-- folder. `next_fire_at` is the slot it fires next; a scheduler claims a slot by moving it on
-- with a conditional UPDATE in the same transaction that creates the slot's run, so each slot
-- fires once however many schedulers race for it.
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
    paused        INTEGER NOT NULL DEFAULT 0,
    next_fire_at  INTEGER,
    last_slot     INTEGER,
    last_fired_at INTEGER,
    last_error    TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    UNIQUE (tenant, name)
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE paused = 0;
