-- Approvals and child runs. A run started by a `workflow:` step or an action links to its
-- parent; a task that waits (an approval, a child run) has status 'waiting', is never leased,
-- and for an approval with a timeout `not_before` is when the wait times out.
ALTER TABLE runs ADD COLUMN parent_run_id TEXT;
ALTER TABLE runs ADD COLUMN parent_step_id TEXT;
ALTER TABLE runs ADD COLUMN parent_item INTEGER;
ALTER TABLE runs ADD COLUMN parent_action TEXT;
CREATE INDEX runs_by_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX tasks_waiting ON tasks (not_before) WHERE status = 'waiting';
