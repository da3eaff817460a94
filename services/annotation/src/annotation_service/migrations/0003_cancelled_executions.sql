-- Executions the trigger-router cancelled (execution.cancelled.v1): a prediction of one of
-- them, up to the cancelled attempt, stores no annotations. Rows older than
-- ANNOTATION_CANCEL_RETENTION_SECONDS are deleted as new cancels arrive.
CREATE TABLE cancelled_executions (
    execution_id text        PRIMARY KEY,
    project_id   text        NOT NULL,
    attempt      integer     NOT NULL,
    cancelled_at timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cancelled_executions_recorded ON cancelled_executions (recorded_at);

-- The attempt of the prediction that stored a model annotation (NULL: unknown, from an
-- older worker or a pipeline's command): a cancel removes only its attempt's rows.
ALTER TABLE annotations ADD COLUMN attempt integer;
-- The model annotations and task items of one execution, for a cancel.
CREATE INDEX task_items_execution ON task_items (execution_id) WHERE execution_id IS NOT NULL;
