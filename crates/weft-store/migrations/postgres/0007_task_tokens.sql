-- Task tokens, as in migrations/sqlite/0007_task_tokens.sql: only the SHA-256 of a token is
-- kept; the trigger revokes an attempt's token in the transaction that takes the task out of
-- `running`, and minting and revoking append to the audit trail in that same transaction.
CREATE TABLE task_tokens (
    hash        TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    step_id     TEXT NOT NULL,
    task_id     BIGINT NOT NULL,
    item        BIGINT,
    attempt     BIGINT NOT NULL,
    scopes      TEXT NOT NULL,
    issued_at   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX task_tokens_live ON task_tokens (task_id) WHERE revoked_at IS NULL;

CREATE FUNCTION weft_task_token_minted() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN
    INSERT INTO audit_log (tenant, at, actor, action, object_type, object_id, outcome)
    VALUES (NEW.tenant, NEW.issued_at, 'token:tt_' || substr(NEW.hash, 1, 16), 'token.minted',
            'run', NEW.run_id, 'ok');
    RETURN NULL;
END $$;
CREATE TRIGGER task_tokens_minted AFTER INSERT ON task_tokens
    FOR EACH ROW EXECUTE FUNCTION weft_task_token_minted();

CREATE FUNCTION weft_task_token_revoke() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN
    INSERT INTO audit_log (tenant, at, actor, action, object_type, object_id, outcome)
    SELECT tenant, weft_now_ms(), 'token:tt_' || substr(hash, 1, 16), 'token.revoked', 'run',
           run_id, 'ok: attempt ' || NEW.status
    FROM task_tokens WHERE task_id = OLD.id AND revoked_at IS NULL;
    UPDATE task_tokens SET revoked_at = weft_now_ms()
    WHERE task_id = OLD.id AND revoked_at IS NULL;
    RETURN NULL;
END $$;
CREATE TRIGGER task_tokens_revoke AFTER UPDATE OF status, attempt ON tasks
    FOR EACH ROW WHEN (OLD.status = 'running' AND (NEW.status <> 'running' OR NEW.attempt <> OLD.attempt))
    EXECUTE FUNCTION weft_task_token_revoke();
