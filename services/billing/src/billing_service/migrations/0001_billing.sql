-- One row per replica, merged from replica.started.v1 / replica.stopped.v1 in any
-- order (see domain.py): earliest start, latest stop.
CREATE TABLE replicas (
    replica_id      text PRIMARY KEY,
    project_id      text        NOT NULL,
    service_id      text        NOT NULL,
    instance_type   text        NOT NULL,
    type_from_start boolean     NOT NULL DEFAULT false,
    -- price per replica-second, from settings when the replica's last event arrived
    rate            numeric     NOT NULL CHECK (rate >= 0),
    started_at      timestamptz,
    started_hint    timestamptz,
    stopped_at      timestamptz,
    -- cost of the whole interval once both ends are known (NULL while running)
    closed_cost     numeric,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX replicas_project ON replicas (project_id, started_at);
CREATE INDEX replicas_running ON replicas (project_id) WHERE stopped_at IS NULL;

-- Predictions per service and day, idempotent on the execution.
CREATE TABLE predictions (
    execution_id text PRIMARY KEY,
    project_id   text NOT NULL,
    service_id   text NOT NULL,
    day          date NOT NULL
);
CREATE INDEX predictions_project_day ON predictions (project_id, day, service_id);

CREATE TABLE budgets (
    project_id   text PRIMARY KEY,
    budget       numeric CHECK (budget IS NULL OR budget >= 0),  -- NULL: unlimited
    spent        numeric     NOT NULL DEFAULT 0,
    charged_at   timestamptz,
    exhausted    boolean     NOT NULL DEFAULT false,
    exhausted_at timestamptz,
    restored_at  timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Who changed a budget, when, by how much.
CREATE TABLE budget_changes (
    id           bigserial PRIMARY KEY,
    project_id   text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('set', 'top-up')),
    amount       numeric,
    budget_after numeric,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX budget_changes_project ON budget_changes (project_id, at);
