"""Predict worker: one replica of one model service.

``python -m model_serving_service.worker`` with the service's ``MODEL_SERVING_*``
settings plus ``MODEL_SERVING_WORKER_SERVICE_ID`` (and ``..._WORKER_REPLICA_ID``).

Lifecycle:

1. Read the service and its model from model-serving's tables; record the replica.
2. Hold the model on Triton (loading it when no other replica holds it) while already
   consuming ``predict.<service_id>`` with prefetch = the service's concurrency: requests
   that arrive during a cold start wait for the load, within their timeout.
3. Emit ``replica.started.v1`` once the model is loaded.
4. Micro-batch (:class:`common.consumer.BatchConsumer`, ``intake``): take up to the
   model's batch size within ``batch_delay_ms``; ``pipeline``: fetch the blobs from S3
   concurrently, check each item against the model's input type, call
   Triton over async gRPC once per batch, turn outputs into annotations.
5. Record one outcome per request (``prediction.completed.v1`` or
   ``prediction.failed.v1``) in the outbox, claiming the request key in the same
   transaction (a duplicate request gets no second outcome), and ack after the commit;
   the outbox relay publishes with confirms.
6. On SIGTERM: stop consuming, finish what is held (requeue what is left after the
   service's ``drain_seconds``), release the model (unloaded if this was the last
   holder), emit ``replica.stopped.v1``, exit 0.

Failures: Triton unreachable -> retried with backoff, then the message is requeued; on
its last delivery (``x-delivery-count`` reached the delivery limit) it gets a
``prediction.failed.v1`` (retryable) and goes to the dead-letter queue: never an ack
without an outcome. Wrong type / undecodable / missing blob -> failed at once.
Timeout (the model's ``timeout_seconds`` from receipt, model load included) -> failed
with "timeout". The model fails to load -> the service becomes ``failed`` with
Triton's reason and the worker exits 1; Triton unreachable during the load is an outage,
not a failure: the load is tried again with backoff and the service keeps its status.
The broker or the database unreachable at start-up -> tried again for
``worker_start_wait_seconds``, then exit 3.
"""

from model_serving_service.worker.replica import main

__all__ = ["main"]
