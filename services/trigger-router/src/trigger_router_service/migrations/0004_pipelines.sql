-- Pipelines: a graph of nodes (dataset -> predict -> task ...) owned by the router, the
-- pipeline executions (one item's way through the graph) and each node's status in them.

CREATE TABLE pipelines (
    id          text PRIMARY KEY,
    project_id  text        NOT NULL,
    name        text        NOT NULL,
    -- A new version on every update; executions record the version they ran.
    version     integer     NOT NULL DEFAULT 1,
    status      text        NOT NULL DEFAULT 'created'
        CHECK (status IN ('created', 'running', 'stopped')),
    -- The definition as the user wrote it: {name, nodes, edges}.
    definition  jsonb       NOT NULL,
    -- The dataset node's dataset (routing reads the running pipelines of a dataset).
    dataset_id  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    stopped_at  timestamptz,
    UNIQUE (project_id, name)
);
CREATE INDEX pipelines_routing ON pipelines (project_id) WHERE status = 'running';

-- Every version's definition: executions in flight keep running the version they entered.
CREATE TABLE pipeline_versions (
    pipeline_id text        NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    version     integer     NOT NULL,
    definition  jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline_id, version)
);

CREATE TABLE pipeline_executions (
    id           text PRIMARY KEY,
    pipeline_id  text        NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    project_id   text        NOT NULL,
    version      integer     NOT NULL,
    item_id      text        NOT NULL,
    dataset_id   text        NOT NULL,
    -- The item event that let the item in (NULL for POST /pipelines/{id}/run).
    event_id     text,
    -- The run request that let it in (NULL for events).
    run_id       text,
    once         boolean     NOT NULL DEFAULT false,
    status       text        NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'success', 'failed')),
    error        text,
    failed_node  text,
    item         jsonb       NOT NULL,
    -- The last prediction on the way: {execution_id, service_id, model, annotations}.
    prediction   jsonb,
    -- Indexes of the edges taken so far.
    taken        integer[]   NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
-- A redelivered event lets an item in once; 'Once' lets an item in once ever.
CREATE UNIQUE INDEX pipeline_executions_event ON pipeline_executions (pipeline_id, event_id);
CREATE UNIQUE INDEX pipeline_executions_once ON pipeline_executions (pipeline_id, item_id)
    WHERE once;
CREATE UNIQUE INDEX pipeline_executions_run ON pipeline_executions (run_id, item_id);
CREATE INDEX pipeline_executions_list ON pipeline_executions (pipeline_id, created_at DESC, id DESC);
CREATE INDEX pipeline_executions_status ON pipeline_executions (pipeline_id, status);

CREATE TABLE pipeline_nodes (
    pipeline_execution_id text        NOT NULL REFERENCES pipeline_executions (id) ON DELETE CASCADE,
    node_id               text        NOT NULL,
    pipeline_id           text        NOT NULL,
    node_type             text        NOT NULL,
    status                text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'success', 'failed', 'skipped')),
    execution_id          text,
    error                 text,
    attempts              integer     NOT NULL DEFAULT 0,
    started_at            timestamptz,
    finished_at           timestamptz,
    PRIMARY KEY (pipeline_execution_id, node_id)
);
-- Counts per node per status, and the execution list filtered by node and status.
CREATE INDEX pipeline_nodes_counts ON pipeline_nodes (pipeline_id, node_id, status);

-- A predict node's execution in the ledger, tagged with its pipeline execution and node.
ALTER TABLE executions ADD COLUMN pipeline_id text;
ALTER TABLE executions ADD COLUMN pipeline_execution_id text;
ALTER TABLE executions ADD COLUMN node_id text;
CREATE UNIQUE INDEX executions_pipeline_node ON executions (pipeline_execution_id, node_id)
    WHERE pipeline_execution_id IS NOT NULL;
