-- What a request or command asked for, as a digest: a repeated request id (ingest
-- command id, Idempotency-Key) with different data is refused instead of answered with
-- the earlier item. NULL on rows from before: treated as matching.
ALTER TABLE items ADD COLUMN origin_digest text;

-- Uploads holding a blob they are about to name in an item row. Deleting a blob takes
-- the same per-content advisory lock and leaves it alone while an item names it or a
-- lease younger than the grace period holds it (a crashed upload's lease only delays
-- the deletion; the blob is never removed under a row that names it).
CREATE TABLE blob_leases (
    id        text PRIMARY KEY,
    sha256    text        NOT NULL,
    taken_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX blob_leases_sha256 ON blob_leases (sha256, taken_at);
