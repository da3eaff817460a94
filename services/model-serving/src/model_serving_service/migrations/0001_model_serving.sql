-- model-serving: models (catalog installs and BYOM), model services (deployments),
-- replicas (predict worker processes) and holds on Triton models (reference counts).

CREATE TABLE IF NOT EXISTS models (
    id           text        PRIMARY KEY,
    project_id   text        NOT NULL,
    name         text        NOT NULL,
    version      text        NOT NULL,
    source       text        NOT NULL CHECK (source IN ('catalog', 'byom')),
    catalog_name text,
    -- The model's directory name in Triton's model repository (unique across projects).
    triton_name  text        NOT NULL UNIQUE,
    -- model_serving_service.domain.ModelSpec: input, adapter, labels, label map,
    -- confidence threshold, batch size, timeout.
    spec         jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS models_project_name_version
    ON models (project_id, name, version) WHERE deleted_at IS NULL;

CREATE TABLE IF NOT EXISTS services (
    id            text        PRIMARY KEY,
    project_id    text        NOT NULL,
    model_id      text        NOT NULL REFERENCES models (id),
    name          text        NOT NULL,
    status        text        NOT NULL
        CHECK (status IN ('deploying', 'ready', 'failed', 'undeploying', 'undeployed')),
    error         text,
    -- model_serving_service.domain.Scaling
    scaling       jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    undeployed_at timestamptz
);
CREATE INDEX IF NOT EXISTS services_project ON services (project_id, created_at);
CREATE INDEX IF NOT EXISTS services_model ON services (model_id) WHERE status <> 'undeployed';

CREATE TABLE IF NOT EXISTS replicas (
    id            text        PRIMARY KEY,
    service_id    text        NOT NULL REFERENCES services (id),
    project_id    text        NOT NULL,
    instance_type text        NOT NULL,
    -- starting -> running -> stopped; failed (model did not load); lost (stopped
    -- refreshing its heartbeat: killed without draining).
    state         text        NOT NULL
        CHECK (state IN ('starting', 'running', 'stopping', 'stopped', 'failed', 'lost')),
    host          text,
    pid           integer,
    started_at    timestamptz NOT NULL,
    ready_at      timestamptz,
    seen_at       timestamptz NOT NULL DEFAULT now(),
    stopped_at    timestamptz,
    error         text
);
CREATE INDEX IF NOT EXISTS replicas_service_active
    ON replicas (service_id) WHERE stopped_at IS NULL;

-- Who needs a Triton model loaded right now: replicas, deploy probes, predict-now
-- calls. The model is loaded by the first hold and unloaded when the last goes; both
-- happen under a per-model advisory lock.
CREATE TABLE IF NOT EXISTS model_holds (
    holder_id   text        PRIMARY KEY,
    triton_name text        NOT NULL,
    kind        text        NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    seen_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS model_holds_triton_name ON model_holds (triton_name);
