"""Outbound clients of model-serving: Triton, the predict work queues, Triton model
configurations."""
