"""Outbound clients and the broker plumbing the router drives: scaler backends (local
processes, Kubernetes), the HTTP APIs of the dataset and annotation services, and
predict queue statistics."""
