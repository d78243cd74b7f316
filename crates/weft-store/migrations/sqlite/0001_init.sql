-- Runs, their steps, the task queue, the event log and the step cache.
CREATE TABLE runs (
    id              TEXT PRIMARY KEY,
    tenant          TEXT NOT NULL,
    template        TEXT NOT NULL,
    version         TEXT NOT NULL,
    digest          TEXT NOT NULL,
    source          TEXT NOT NULL,
    files           TEXT NOT NULL,
    file            TEXT NOT NULL,
    base_dir        TEXT,
    inputs          TEXT NOT NULL,
    status          TEXT NOT NULL,
    output          TEXT,
    error           TEXT,
    idempotency_key TEXT,
    request_digest  TEXT,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    updated_at      INTEGER NOT NULL
);
CREATE UNIQUE INDEX runs_idempotency ON runs (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_by_tenant ON runs (tenant, created_at DESC);

CREATE TABLE steps (
    run_id       TEXT NOT NULL REFERENCES runs (id),
    step_id      TEXT NOT NULL,
    idx          INTEGER NOT NULL,
    tool         TEXT,
    status       TEXT NOT NULL,
    concurrency  INTEGER,
    output       TEXT,
    error        TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    items_total  INTEGER,
    items_done   INTEGER NOT NULL DEFAULT 0,
    items_failed INTEGER NOT NULL DEFAULT 0,
    cache_hits   INTEGER NOT NULL DEFAULT 0,
    started_at   INTEGER,
    finished_at  INTEGER,
    PRIMARY KEY (run_id, step_id)
);
CREATE INDEX steps_running ON steps (status) WHERE status = 'running';

CREATE TABLE tasks (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id        TEXT NOT NULL REFERENCES runs (id),
    tenant        TEXT NOT NULL,
    step_id       TEXT NOT NULL,
    item          INTEGER,
    tool          TEXT NOT NULL,
    input         TEXT NOT NULL,
    status        TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    max_attempts  INTEGER NOT NULL,
    not_before    INTEGER NOT NULL,
    lease_owner   TEXT,
    lease_expires INTEGER,
    output        TEXT,
    error         TEXT,
    cache_key     TEXT,
    cache_hit     INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER
);
CREATE INDEX tasks_by_step ON tasks (run_id, step_id, status, item);
CREATE INDEX tasks_running ON tasks (lease_expires) WHERE status = 'running';
CREATE INDEX tasks_queued ON tasks (not_before) WHERE status = 'queued';

CREATE TABLE events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id  TEXT NOT NULL,
    ts      INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    step_id TEXT,
    item    INTEGER,
    attempt INTEGER,
    data    TEXT NOT NULL
);
CREATE INDEX events_by_run ON events (run_id, seq);

CREATE TABLE cache (
    key        TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    output     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
