-- Browser-style predict: one request runs a model service on chosen items now.
CREATE TABLE batches (
    id         text PRIMARY KEY,
    project_id text        NOT NULL,
    service_id text        NOT NULL,
    -- What picked the items: {"item_ids": [...]} or {"dataset_id": ..., "filter": {...}}.
    selection  jsonb       NOT NULL,
    item_count integer     NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX batches_project ON batches (project_id, created_at DESC);

-- One execution per item per batch: a repeated id in a request runs once.
CREATE UNIQUE INDEX executions_batch_item ON executions (batch_id, item_id)
    WHERE batch_id IS NOT NULL;
