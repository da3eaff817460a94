-- Cost per accepted label: which model version (and replica) made each prediction, and
-- the latest decision on each task item whose annotations a model made.
ALTER TABLE predictions
    ADD COLUMN replica_id    text,
    ADD COLUMN model_name    text,
    ADD COLUMN model_id      text,
    ADD COLUMN model_version text,
    ADD COLUMN finished_at   timestamptz;
CREATE INDEX predictions_project_replica ON predictions (project_id, replica_id);
CREATE INDEX predictions_project_finished ON predictions (project_id, finished_at);

-- One row per task item: a later review replaces the earlier decision (by event time,
-- then event id), an older one arriving late changes nothing.
CREATE TABLE reviews (
    project_id         text        NOT NULL,
    task_id            text        NOT NULL,
    item_id            text        NOT NULL,
    event_id           text        NOT NULL,
    reviewed_at        timestamptz NOT NULL,
    status             text        NOT NULL,
    execution_id       text,
    service_id         text,
    model_name         text,
    model_id           text,
    model_version      text,
    accepted_unchanged boolean     NOT NULL,
    auto_accepted      boolean     NOT NULL,
    PRIMARY KEY (project_id, task_id, item_id)
);
CREATE INDEX reviews_project_reviewed ON reviews (project_id, reviewed_at);
