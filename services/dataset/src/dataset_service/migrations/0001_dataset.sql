CREATE TABLE projects (
    id         text PRIMARY KEY,
    name       text        NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Keys are random 256-bit secrets: a SHA-256 of the key is a safe, indexable hash.
CREATE TABLE api_keys (
    id         text PRIMARY KEY,
    project_id text        NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name       text        NOT NULL,
    key_hash   text        NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE datasets (
    id          text PRIMARY KEY,
    project_id  text        NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name        text        NOT NULL,
    description text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, name)
);

CREATE TABLE items (
    id         text PRIMARY KEY,
    project_id text        NOT NULL,
    dataset_id text        NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    name       text        NOT NULL,
    filename   text        NOT NULL,
    dir        text        NOT NULL,
    type       text        NOT NULL DEFAULT 'file' CHECK (type IN ('file', 'dir')),
    hidden     boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    metadata   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- id of the ingest command or upload request that created the item (idempotency)
    origin_id  text UNIQUE
);

-- One item per path in a dataset.
CREATE UNIQUE INDEX items_dataset_filename ON items (dataset_id, filename);
-- DQL: columns users filter and sort on (COLLATE "C" matches the compiler's ordering
-- and lets anchored regexes such as dir globs use the index).
CREATE INDEX items_dataset_dir ON items (dataset_id, dir COLLATE "C");
CREATE INDEX items_dataset_name ON items (dataset_id, name COLLATE "C");
CREATE INDEX items_dataset_created ON items (dataset_id, created_at);
-- DQL metadata equality / $in compile to containment, served by this index.
CREATE INDEX items_metadata ON items USING gin (metadata jsonb_path_ops);
-- Upload dedup (same content in the same dir) and blob reference counting.
CREATE INDEX items_sha256 ON items ((metadata #>> '{system,sha256}'));
