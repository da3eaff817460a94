-- Executions the trigger-router cancelled (execution.cancelled.v1): a predict worker skips
-- a request of one of these, up to its cancelled attempt, instead of predicting it. Rows
-- older than MODEL_SERVING_CANCEL_RETENTION_SECONDS are deleted as new cancels arrive.
CREATE TABLE IF NOT EXISTS cancelled_executions (
    execution_id text        PRIMARY KEY,
    project_id   text        NOT NULL,
    service_id   text        NOT NULL,
    attempt      integer     NOT NULL,
    cancelled_at timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS cancelled_executions_recorded ON cancelled_executions (recorded_at);
