"""The trigger-router's own Prometheus metrics (besides common.observability's).

Created once per process (the Prometheus registry is global). Names follow
``prelabel_trigger_router_<what>_<unit>``; the Grafana dashboard in deploy/ reads
``queue_depth``, ``replicas_desired``, ``replicas_actual`` and ``executions_total``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from common.observability import metric_name

SERVICE = "trigger-router"

EVENTS_ROUTED = Counter(
    metric_name(SERVICE, "events_routed_total"),
    "Item events routed, by action and outcome (matched, unmatched, duplicate).",
    ["action", "outcome"],
)
PREDICT_REQUESTS = Counter(
    metric_name(SERVICE, "predict_requests_total"),
    "Predict requests written to the outbox (first attempts, reruns and budget releases).",
    ["reason"],
)
EXECUTIONS = Counter(
    metric_name(SERVICE, "executions_total"),
    "Executions reaching a status.",
    ["status"],
)
FILTER_MISMATCHES = Counter(
    metric_name(SERVICE, "filter_type_mismatches_total"),
    "Filter conditions that could not compare with an item's value (no match, not an error).",
)
TRIGGERS_FAILED = Counter(
    metric_name(SERVICE, "triggers_failed_total"),
    "Triggers marked failed because their model service went away.",
)
ROUTING_LATENCY = Histogram(
    metric_name(SERVICE, "routing_latency_seconds"),
    "From an item event's time to its executions and predict requests being committed.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
COLD_START = Histogram(
    metric_name(SERVICE, "cold_start_seconds"),
    "From asking a service at 0 replicas to scale up until its first prediction completed.",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
)
REPLICA_START = Histogram(
    metric_name(SERVICE, "replica_start_seconds"),
    "From asking a service at 0 replicas to scale up until a replica had its model loaded.",
    buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120),
)
WAKE_LATENCY = Histogram(
    metric_name(SERVICE, "wake_latency_seconds"),
    "From a wake notification to the backend having been asked for replicas.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
QUEUE_DEPTH = Gauge(
    metric_name(SERVICE, "queue_depth"),
    "Load of a model service's predict queue: ready + unacknowledged messages.",
    ["service_id"],
)
QUEUE_READY = Gauge(
    metric_name(SERVICE, "queue_ready_messages"),
    "Ready messages in a model service's predict queue (passive declare).",
    ["service_id"],
)
QUEUE_CONSUMERS = Gauge(
    metric_name(SERVICE, "queue_consumers"),
    "Consumers on a model service's predict queue (passive declare).",
    ["service_id"],
)
REPLICAS_DESIRED = Gauge(
    metric_name(SERVICE, "replicas_desired"),
    "Replicas the autoscaler asks for, per model service.",
    ["service_id"],
)
REPLICAS_ACTUAL = Gauge(
    metric_name(SERVICE, "replicas_actual"),
    "Replicas the scaler backend reports running, per model service.",
    ["service_id"],
)
SCALE_EVENTS = Counter(
    metric_name(SERVICE, "scale_events_total"),
    "Replica count changes, by reason.",
    ["reason"],
)
SCALER_ERRORS = Counter(
    metric_name(SERVICE, "scaler_errors_total"),
    "Backend calls that failed (retried on the next reconcile).",
    ["backend"],
)
RECONCILE_ERRORS = Counter(
    metric_name(SERVICE, "reconcile_errors_total"),
    "Autoscaler passes that failed (broker, database or backend trouble; retried).",
)
LEADER = Gauge(
    metric_name(SERVICE, "autoscaler_leader"),
    "1 while this replica holds the autoscaler's leadership.",
)
PIPELINE_EXECUTIONS = Counter(
    metric_name(SERVICE, "pipeline_executions_total"),
    "Pipeline executions reaching a status (running on entry and on a rerun).",
    ["status"],
)
PIPELINE_NODE_LATENCY = Histogram(
    metric_name(SERVICE, "pipeline_node_latency_seconds"),
    "From a pipeline node starting to it succeeding or failing, by node type and outcome.",
    ["node_type", "status"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)


LEADER_GAUGES = (QUEUE_DEPTH, QUEUE_READY, QUEUE_CONSUMERS, REPLICAS_DESIRED, REPLICAS_ACTUAL)
"""Per-service gauges only the autoscaler's leader sets."""


def clear_leader_gauges() -> None:
    """Drop every per-service value the leader set (on losing the leadership)."""
    for gauge in LEADER_GAUGES:
        gauge.clear()
