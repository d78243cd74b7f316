-- Tenant secrets (ciphertext only: the store never sees a value) and the audit trail, as in
-- migrations/sqlite/0004_secrets_audit.sql. The audit log is append-only: the code has no path
-- to change or remove a record, and the trigger refuses one at the database too.
CREATE TABLE secrets (
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    ciphertext  BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE audit_log (
    seq          BIGSERIAL PRIMARY KEY,
    tenant       TEXT NOT NULL,
    at           BIGINT NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    object_type  TEXT NOT NULL,
    object_id    TEXT NOT NULL,
    outcome      TEXT NOT NULL
);
CREATE INDEX audit_log_tenant_at ON audit_log (tenant, at);
CREATE INDEX audit_log_object ON audit_log (tenant, object_type, object_id);

CREATE FUNCTION weft_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION weft_audit_append_only();
