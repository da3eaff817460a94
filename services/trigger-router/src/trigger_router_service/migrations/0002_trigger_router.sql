-- trigger-router: its copy of model services and budgets (from events), triggers,
-- the executions ledger, replicas and the autoscaler's state.

-- Model services as model-serving announced them (service.deployed.v1 /
-- service.undeployed.v1). Last writer by event time: event_time only moves forward.
CREATE TABLE model_services (
    service_id        text PRIMARY KEY,
    project_id        text             NOT NULL,
    model_id          text             NOT NULL DEFAULT '',
    status            text             NOT NULL
        CHECK (status IN ('deploying', 'ready', 'failed', 'undeployed')),
    min_replicas      integer          NOT NULL DEFAULT 0,
    max_replicas      integer          NOT NULL DEFAULT 1,
    queue_per_replica integer          NOT NULL DEFAULT 10,
    cooldown_seconds  double precision NOT NULL DEFAULT 60,
    concurrency       integer          NOT NULL DEFAULT 4,
    instance_type     text             NOT NULL DEFAULT 'cpu-small',
    error             text,
    event_time        timestamptz      NOT NULL,
    updated_at        timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX model_services_project ON model_services (project_id);

-- Budget state per project (budget.exhausted.v1 / budget.restored.v1), last writer by event time.
CREATE TABLE project_budgets (
    project_id text PRIMARY KEY,
    exhausted  boolean     NOT NULL,
    event_time timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE triggers (
    id             text PRIMARY KEY,
    project_id     text        NOT NULL,
    name           text        NOT NULL,
    active         boolean     NOT NULL DEFAULT true,
    -- 'failed' when its service went away; status_reason says why.
    status         text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'failed')),
    status_reason  text,
    resource       text        NOT NULL,
    actions        text[]      NOT NULL,
    execution_mode text        NOT NULL CHECK (execution_mode IN ('Once', 'Always')),
    filter         jsonb       NOT NULL,
    operation_type text        NOT NULL DEFAULT 'predict',
    service_id     text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, name)
);
-- Routing reads the active triggers of the projects in a batch of item events.
CREATE INDEX triggers_routing ON triggers (project_id) WHERE active AND status = 'active';
CREATE INDEX triggers_service ON triggers (service_id);

CREATE TABLE executions (
    id          text PRIMARY KEY,
    project_id  text        NOT NULL,
    service_id  text        NOT NULL,
    trigger_id  text,
    batch_id    text,
    item_id     text        NOT NULL,
    dataset_id  text        NOT NULL,
    -- The item event that created it (NULL for reruns of nothing / batch requests).
    event_id    text,
    action      text,
    once        boolean     NOT NULL DEFAULT false,
    status      text        NOT NULL CHECK (status IN (
        'created', 'queued', 'in-progress', 'success', 'failed', 'waiting-for-budget', 'cancelled')),
    attempts    integer     NOT NULL DEFAULT 1,
    -- Whether the current attempt's predict request went to the outbox (a request held
    -- for budget is not published until budget.restored.v1).
    published   boolean     NOT NULL DEFAULT false,
    cold_start  boolean     NOT NULL DEFAULT false,
    replica_id  text,
    error       text,
    item        jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    queued_at   timestamptz,
    started_at  timestamptz,
    finished_at timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- A redelivered item event never creates a second execution for a trigger.
CREATE UNIQUE INDEX executions_trigger_event ON executions (trigger_id, event_id);
-- 'Once' fires at most once per (trigger, item), ever.
CREATE UNIQUE INDEX executions_once ON executions (trigger_id, item_id) WHERE once;
CREATE INDEX executions_project_created ON executions (project_id, created_at DESC, id DESC);
CREATE INDEX executions_project_item ON executions (project_id, item_id);
CREATE INDEX executions_project_trigger ON executions (project_id, trigger_id);
CREATE INDEX executions_project_service ON executions (project_id, service_id, status);
-- The autoscaler counts published, unfinished work per service every second.
CREATE INDEX executions_outstanding ON executions (service_id, queued_at)
    WHERE status IN ('queued', 'in-progress');
CREATE INDEX executions_waiting ON executions (project_id)
    WHERE status = 'waiting-for-budget';

-- Replicas as model-serving reported them (replica.started.v1 / replica.stopped.v1).
CREATE TABLE replicas (
    replica_id text PRIMARY KEY,
    service_id text        NOT NULL,
    project_id text        NOT NULL,
    state      text        NOT NULL CHECK (state IN ('running', 'stopped')),
    started_at timestamptz,
    stopped_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX replicas_service ON replicas (service_id) WHERE state = 'running';

-- The autoscaler's state per service, kept here (not in memory) so that a new
-- leader continues where the last one stopped and every replica can read it.
CREATE TABLE scaling_state (
    service_id          text PRIMARY KEY,
    project_id          text        NOT NULL,
    desired_replicas    integer     NOT NULL DEFAULT 0,
    actual_replicas     integer     NOT NULL DEFAULT 0,
    last_active_at      timestamptz,
    -- Set when the service is asked to scale up from 0, cleared by its first prediction.
    cold_start_began_at timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
