"""Outbound clients and the broker plumbing the router drives: scaler backends (local
processes, Kubernetes), the dataset service's HTTP API, predict queue statistics and
the item-event consumer."""
