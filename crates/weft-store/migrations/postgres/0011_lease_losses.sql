-- How many times a task's worker was lost while it held the task (its lease lapsed or its
-- process died). A lost lease is not an attempt of the step: it does not count against the
-- step's `retry.max_attempts`; the engine fails the task only after too many of them.
ALTER TABLE tasks ADD COLUMN lease_losses BIGINT NOT NULL DEFAULT 0;
