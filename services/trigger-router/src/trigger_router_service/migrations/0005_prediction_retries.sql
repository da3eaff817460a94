-- Retryable prediction failures are run again after a backoff: the execution waits
-- 'queued' with its predict request unpublished until retry_at.
ALTER TABLE executions ADD COLUMN retry_at timestamptz;
CREATE INDEX executions_retry_due ON executions (retry_at) WHERE retry_at IS NOT NULL;
