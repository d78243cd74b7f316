-- Runs, their steps, the task queue, the event log and the step cache (PostgreSQL).
-- Times are milliseconds since the epoch from the database clock (weft_now_ms); JSON is kept
-- as text so object keys keep the order they were written in, as on SQLite.
CREATE FUNCTION weft_now_ms() RETURNS BIGINT LANGUAGE sql VOLATILE AS
$$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT $$;

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
    created_at      BIGINT NOT NULL,
    started_at      BIGINT,
    finished_at     BIGINT,
    updated_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX runs_idempotency ON runs (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_by_tenant ON runs (tenant, created_at DESC, id DESC);
CREATE INDEX runs_running ON runs (status) WHERE status = 'running';

CREATE TABLE steps (
    run_id       TEXT NOT NULL REFERENCES runs (id),
    step_id      TEXT NOT NULL,
    idx          BIGINT NOT NULL,
    tool         TEXT,
    status       TEXT NOT NULL,
    concurrency  BIGINT,
    output       TEXT,
    error        TEXT,
    attempts     BIGINT NOT NULL DEFAULT 0,
    items_total  BIGINT,
    items_done   BIGINT NOT NULL DEFAULT 0,
    items_failed BIGINT NOT NULL DEFAULT 0,
    cache_hits   BIGINT NOT NULL DEFAULT 0,
    started_at   BIGINT,
    finished_at  BIGINT,
    PRIMARY KEY (run_id, step_id)
);
CREATE INDEX steps_running ON steps (status) WHERE status = 'running';

CREATE TABLE tasks (
    id            BIGSERIAL PRIMARY KEY,
    run_id        TEXT NOT NULL REFERENCES runs (id),
    tenant        TEXT NOT NULL,
    step_id       TEXT NOT NULL,
    item          BIGINT,
    tool          TEXT NOT NULL,
    input         TEXT NOT NULL,
    status        TEXT NOT NULL,
    attempt       BIGINT NOT NULL,
    max_attempts  BIGINT NOT NULL,
    not_before    BIGINT NOT NULL,
    lease_owner   TEXT,
    lease_expires BIGINT,
    output        TEXT,
    error         TEXT,
    cache_key     TEXT,
    cache_hit     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT NOT NULL,
    started_at    BIGINT,
    finished_at   BIGINT
);
CREATE INDEX tasks_by_step ON tasks (run_id, step_id, status, item);
CREATE INDEX tasks_running ON tasks (lease_expires) WHERE status = 'running';
CREATE INDEX tasks_by_owner ON tasks (lease_owner) WHERE status = 'running';
CREATE INDEX tasks_queued ON tasks (not_before) WHERE status = 'queued';

CREATE TABLE events (
    seq     BIGSERIAL PRIMARY KEY,
    run_id  TEXT NOT NULL,
    ts      BIGINT NOT NULL,
    kind    TEXT NOT NULL,
    step_id TEXT,
    item    BIGINT,
    attempt BIGINT,
    data    TEXT NOT NULL
);
CREATE INDEX events_by_run ON events (run_id, seq);

CREATE TABLE cache (
    key        TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    output     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
