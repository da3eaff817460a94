-- libs/common tables present in every service schema.
CREATE TABLE IF NOT EXISTS outbox (
    id            bigserial PRIMARY KEY,
    event_id      text        NOT NULL UNIQUE,
    exchange      text        NOT NULL,
    exchange_type text        NOT NULL DEFAULT 'topic',
    routing_key   text        NOT NULL,
    body          bytea       NOT NULL,
    headers       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Idempotent consumers: one row per (consumer, message id), written in the
-- same transaction as the handler's effect.
CREATE TABLE IF NOT EXISTS processed_messages (
    consumer     text        NOT NULL,
    message_id   text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);
