"""Settings shared by the benchmarks (env prefix ``PRELABEL_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

# The repository root, so `.bench/` lands in the same place whatever the cwd.
REPO_ROOT = Path(__file__).resolve().parent.parent


class BenchSettings(BaseSettings):
    """Where the benchmarks find the broker and where they write results."""

    model_config = SettingsConfigDict(env_prefix="PRELABEL_", extra="ignore")

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    """Broker the broker benchmarks run against (``PRELABEL_AMQP_URL``)."""

    bench_dir: Path = REPO_ROOT / ".bench"
    """Folder holding ``results.json`` (``PRELABEL_BENCH_DIR``)."""
