-- Which way produced a model annotation (prediction.completed.v1's origin): a trigger,
-- a batch or a pipeline (with its execution and predict node).
ALTER TABLE annotations
    ADD COLUMN origin_way                   text
        CHECK (origin_way IN ('trigger', 'batch', 'pipeline')),
    ADD COLUMN origin_id                    text,
    ADD COLUMN origin_pipeline_execution_id text,
    ADD COLUMN origin_node_id               text;

-- Items a pipeline's task node adds (add_task_item.v1): idempotent on the pipeline
-- execution and node, possibly accepted without review by a confidence edge.
ALTER TABLE task_items
    ADD COLUMN service_id            text,
    ADD COLUMN auto_accepted         boolean NOT NULL DEFAULT false,
    ADD COLUMN pipeline_id           text,
    ADD COLUMN pipeline_execution_id text,
    ADD COLUMN node_id               text;
CREATE UNIQUE INDEX task_items_pipeline_node ON task_items (pipeline_execution_id, node_id)
    WHERE pipeline_execution_id IS NOT NULL;
