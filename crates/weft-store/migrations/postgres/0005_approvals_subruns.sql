-- Approvals and child runs, as in migrations/sqlite/0005_approvals_subruns.sql. A task that
-- waits (an approval, a child run) has status 'waiting' and is never leased; for an approval
-- with a timeout `not_before` is when the wait times out.
ALTER TABLE runs ADD COLUMN parent_run_id TEXT;
ALTER TABLE runs ADD COLUMN parent_step_id TEXT;
ALTER TABLE runs ADD COLUMN parent_item BIGINT;
ALTER TABLE runs ADD COLUMN parent_action TEXT;
CREATE INDEX runs_by_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX tasks_waiting ON tasks (not_before) WHERE status = 'waiting';
