-- Worker processes (`weft worker`, `weft serve`, `weft run`): one row per process start,
-- stamped by the database clock (weft_now_ms) on registration and at every heartbeat.
-- `weft status` and the `weft_workers_alive` gauge count those whose last heartbeat is
-- within two leases.
CREATE TABLE workers (
    id                TEXT PRIMARY KEY,
    host              TEXT NOT NULL,
    pid               BIGINT NOT NULL,
    version           TEXT NOT NULL,
    lease_ms          BIGINT NOT NULL,
    started_at        BIGINT NOT NULL,
    last_heartbeat_at BIGINT NOT NULL
);
CREATE INDEX workers_by_heartbeat ON workers (last_heartbeat_at);
