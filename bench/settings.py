"""Settings shared by the benchmarks (env prefix ``PRELABEL_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from model_serving_service.settings import Settings as ModelServingSettings

# The repository root, so `.bench/` lands in the same place whatever the cwd.
REPO_ROOT = Path(__file__).resolve().parent.parent


class BenchSettings(BaseSettings):
    """Where the benchmarks find the stack ``make bench`` started (``PRELABEL_*``, the
    names ``scripts/stack.py`` uses) and where they write results."""

    model_config = SettingsConfigDict(env_prefix="PRELABEL_", extra="ignore")

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    """Broker the benchmarks run against (``PRELABEL_AMQP_URL``)."""

    test_database_url: str = "postgresql://postgres@127.0.0.1:5432/prelabel_test"
    """Database the benchmarks create their ``bench_<id>`` schemas in."""

    s3_endpoint_url: str = "http://127.0.0.1:8333"
    s3_access_key: str = "prelabel"
    s3_secret_key: str = "prelabel-secret"
    s3_region: str = "us-east-1"
    triton_http_url: str = "127.0.0.1:8000"
    triton_grpc_url: str = "127.0.0.1:8001"
    triton_model_repository: Path = REPO_ROOT / ".stack" / "triton" / "models"

    bench_dir: Path = REPO_ROOT / ".bench"
    """Folder holding ``results.json`` (``PRELABEL_BENCH_DIR``)."""

    def model_serving(self, *, schema: str, prefix: str, bucket: str) -> ModelServingSettings:
        """Model-serving's settings on this stack, in ``schema``, ``prefix`` and ``bucket``
        (the outbox polled every 50 ms)."""
        return ModelServingSettings(
            amqp_url=self.amqp_url,
            database_url=self.test_database_url,
            db_schema=schema,
            topology_prefix=prefix,
            s3_endpoint_url=self.s3_endpoint_url,
            s3_access_key=self.s3_access_key,
            s3_secret_key=self.s3_secret_key,
            s3_bucket=bucket,
            triton_http_url=self.triton_http_url,
            triton_grpc_url=self.triton_grpc_url,
            model_repository=self.triton_model_repository,
            outbox_poll_seconds=0.05,
        )
