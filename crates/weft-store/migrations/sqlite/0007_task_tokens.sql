-- Task tokens: one per attempt of a queued task, kept only as the SHA-256 of the token.
-- An attempt's token is revoked in the transaction that ends the attempt: the trigger below
-- fires on any status change that takes a task out of `running` (finished, failed, retried,
-- cancelled, taken back after a lost lease), so no code path can forget it. Minting and
-- revoking append to the audit trail in the same transaction, with the token's id
-- (`tt_` + the first 16 hex digits of its hash) as the actor.
CREATE TABLE task_tokens (
    hash        TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    step_id     TEXT NOT NULL,
    task_id     INTEGER NOT NULL,
    item        INTEGER,
    attempt     INTEGER NOT NULL,
    scopes      TEXT NOT NULL,
    issued_at   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX task_tokens_live ON task_tokens (task_id) WHERE revoked_at IS NULL;

CREATE TRIGGER task_tokens_minted AFTER INSERT ON task_tokens
BEGIN
    INSERT INTO audit_log (tenant, at, actor, action, object_type, object_id, outcome)
    VALUES (NEW.tenant, NEW.issued_at, 'token:tt_' || substr(NEW.hash, 1, 16), 'token.minted',
            'run', NEW.run_id, 'ok');
END;

CREATE TRIGGER task_tokens_revoke AFTER UPDATE OF status, attempt ON tasks
WHEN OLD.status = 'running' AND (NEW.status <> 'running' OR NEW.attempt <> OLD.attempt)
BEGIN
    INSERT INTO audit_log (tenant, at, actor, action, object_type, object_id, outcome)
    SELECT tenant, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER),
           'token:tt_' || substr(hash, 1, 16), 'token.revoked', 'run', run_id,
           'ok: attempt ' || NEW.status
    FROM task_tokens WHERE task_id = OLD.id AND revoked_at IS NULL;
    UPDATE task_tokens SET revoked_at = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    WHERE task_id = OLD.id AND revoked_at IS NULL;
END;
