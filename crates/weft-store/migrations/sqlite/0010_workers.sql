-- Worker processes (`weft worker`, `weft serve`, `weft run`): one row per process start,
-- stamped by the store's clock on registration and at every heartbeat. `weft status` and the
-- `weft_workers_alive` gauge count those whose last heartbeat is within two leases.
CREATE TABLE workers (
    id                TEXT PRIMARY KEY,
    host              TEXT NOT NULL,
    pid               INTEGER NOT NULL,
    version           TEXT NOT NULL,
    lease_ms          INTEGER NOT NULL,
    started_at        INTEGER NOT NULL,
    last_heartbeat_at INTEGER NOT NULL
);
CREATE INDEX workers_by_heartbeat ON workers (last_heartbeat_at);
