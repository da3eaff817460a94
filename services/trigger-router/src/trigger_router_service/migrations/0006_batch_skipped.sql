-- Browser-style predict skips, by default, the items the model service's model version
-- already predicted successfully; a batch records how many it skipped and whether it was forced.
ALTER TABLE batches ADD COLUMN skipped integer NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN force boolean NOT NULL DEFAULT false;
-- "Already predicted": the successful executions of a project's items.
CREATE INDEX executions_item_success ON executions (project_id, item_id)
    WHERE status = 'success';
