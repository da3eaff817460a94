"""A stand-in replica process for testing the local scaler backend's process
supervision (start, SIGTERM drain, restart after a crash) without a model.

It does no work: it runs until SIGTERM, then exits 0. The end-to-end tests use the
real model-serving worker instead.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

if __name__ == "__main__":
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    replica = os.environ.get("MODEL_SERVING_WORKER_REPLICA_ID", "")
    ready_dir = os.environ.get("IDLE_WORKER_READY_DIR")
    if ready_dir:
        # Tells a test the SIGTERM handler is in place (before it, SIGTERM kills).
        with open(os.path.join(ready_dir, replica), "w"):
            pass
    sys.stdout.write(
        f"idle worker {os.environ.get('MODEL_SERVING_WORKER_REPLICA_ID')} "
        f"for {os.environ.get('MODEL_SERVING_WORKER_SERVICE_ID')}\n"
    )
    sys.stdout.flush()
    stop.wait()
    sys.exit(0)
