-- Items as the dataset service announced them (item.* events): COCO needs
-- file names and image sizes, and this service never reads dataset's tables.
CREATE TABLE items (
    id         text PRIMARY KEY,
    project_id text        NOT NULL,
    dataset_id text        NOT NULL,
    filename   text        NOT NULL,
    width      integer,
    height     integer,
    mimetype   text,
    -- the snapshot's updated_at: an older event never overwrites a newer one
    version_at timestamptz NOT NULL,
    deleted    boolean     NOT NULL DEFAULT false
);
CREATE INDEX items_dataset ON items (dataset_id);

CREATE TABLE annotations (
    id            text PRIMARY KEY,
    project_id    text        NOT NULL,
    dataset_id    text        NOT NULL,
    item_id       text        NOT NULL,
    type          text        NOT NULL,
    label         text        NOT NULL,
    coordinates   jsonb,
    confidence    double precision,
    text          text,
    source        text        NOT NULL CHECK (source IN ('model', 'human')),
    execution_id  text,
    idx           integer,
    service_id    text,
    model_name    text,
    model_id      text,
    model_version text,
    -- what the model said, copied here by the first edit (NULL while unedited, and
    -- for human annotations): ingestion writes each row once, edits keep the original
    original      jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text,
    modified_at   timestamptz,
    modified_by   text,
    -- deletions are soft so the model's original stays comparable
    deleted_at    timestamptz,
    deleted_by    text
);
-- Idempotency of model annotations: one row per (execution, index).
CREATE UNIQUE INDEX annotations_execution_idx ON annotations (execution_id, idx)
    WHERE execution_id IS NOT NULL;
CREATE INDEX annotations_item ON annotations (item_id);
CREATE INDEX annotations_dataset ON annotations (project_id, dataset_id);

CREATE TABLE tasks (
    id                     text PRIMARY KEY,
    project_id             text        NOT NULL,
    dataset_id             text        NOT NULL,
    pipeline_id            text,
    name                   text        NOT NULL,
    auto_add               boolean     NOT NULL DEFAULT false,
    auto_add_from_services text[]      NOT NULL DEFAULT '{}',
    created_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tasks_dataset ON tasks (project_id, dataset_id);

CREATE TABLE task_items (
    task_id       text        NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    item_id       text        NOT NULL,
    project_id    text        NOT NULL,
    status        text        NOT NULL DEFAULT 'pending-review'
        CHECK (status IN ('pending-review', 'approved', 'corrected', 'discarded')),
    added_at      timestamptz NOT NULL DEFAULT now(),
    added_by      text        NOT NULL,
    -- model version that pre-labelled the item (acceptance rate is per version)
    model_name    text,
    model_id      text,
    model_version text,
    execution_id  text,
    reviewer      text,
    reviewed_at   timestamptz,
    PRIMARY KEY (task_id, item_id)
);
CREATE INDEX task_items_status ON task_items (task_id, status, added_at);
