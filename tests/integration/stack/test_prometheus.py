"""A real Prometheus (Debian's ``prometheus`` binary) scrapes the running services, the
console and Triton, and loads the alerting rules; ``promtool check metrics`` accepts
every ``/metrics``.

Prometheus runs on a free port with a config and a data directory of its own under the
test's tmp path (never the system's :9090 or /var/lib/prometheus), and is stopped after.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from common.testing.servers import free_port
from prelabel_stack import CONSOLE, SERVICES, StackConfig
from prelabel_stack.components.monitoring import PrometheusTools, prometheus, promtool
from tests.integration.stack.proxied import Proxied

REPO = Path(__file__).resolve().parents[3]
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
DEADLINE_S = 60.0


def _tools() -> tuple[str, str]:
    """promtool and prometheus, installed as ``make test`` does when missing."""
    if promtool() is None or prometheus() is None:
        try:
            PrometheusTools(StackConfig.from_env()).ensure()
        except Exception as exc:  # not root, no apt-get: say so
            pytest.skip(f"promtool/prometheus missing and not installable here: {exc}")
    tool, server = promtool(), prometheus()
    assert tool is not None
    assert server is not None
    return tool, server


@dataclass
class Scraper:
    """The running Prometheus."""

    url: str
    jobs: dict[str, str]
    """job -> target (host:port)."""

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        answer.raise_for_status()
        result: list[dict[str, Any]] = answer.json()["data"]["result"]
        return result


def _wait_until_up(scraper: Scraper, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until ``up == 1`` for every job (deadline), or fail naming the ones that are not."""
    deadline = time.monotonic() + DEADLINE_S
    last: dict[str, str] = {}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            rows = scraper.query("up")
        except httpx.HTTPError as exc:
            last = {"prometheus": str(exc)}
        else:
            last = {r["metric"]["job"]: r["value"][1] for r in rows}
            if all(last.get(job) == "1" for job in scraper.jobs):
                return
        time.sleep(0.5)
    targets = httpx.get(f"{scraper.url}/api/v1/targets", timeout=10).json()
    errors = {t["labels"]["job"]: t["lastError"] for t in targets["data"]["activeTargets"]}
    pytest.fail(f"not all targets up within {DEADLINE_S:.0f} s: up={last} errors={errors}")


@pytest.fixture(scope="module")
def scraper(proxied: Proxied, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraper]:
    _, server = _tools()
    root = tmp_path_factory.mktemp("prometheus")
    ports = proxied.config.service_ports
    jobs = {spec.name: f"127.0.0.1:{ports[spec.name]}" for spec in (*SERVICES, CONSOLE)}
    jobs["triton"] = f"127.0.0.1:{proxied.config.triton_metrics_port}"
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in jobs.items()
        ],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = root / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                server,
                f"--config.file={root / 'prometheus.yml'}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        running = Scraper(f"http://127.0.0.1:{port}", jobs)
        _wait_until_up(running, process, log)
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        shutil.rmtree(root / "data", ignore_errors=True)


def test_prometheus_scrapes_every_service_the_console_and_triton(scraper: Scraper) -> None:
    up = {r["metric"]["job"]: r["value"][1] for r in scraper.query("up")}

    assert up == dict.fromkeys(scraper.jobs, "1")


@pytest.mark.parametrize("job", [s.name for s in (*SERVICES, CONSOLE)])
def test_each_service_has_its_prelabel_series_in_prometheus(scraper: Scraper, job: str) -> None:
    prefix = f"prelabel_{job.replace('-', '_')}_"

    def present() -> list[dict[str, Any]]:
        return scraper.query(f'count({{__name__=~"{prefix}.+", job="{job}"}})')

    # One more scrape may be needed after the first request a histogram observes.
    deadline = time.monotonic() + 20
    rows = present()
    while not rows and time.monotonic() < deadline:
        httpx.get(f"http://{scraper.jobs[job]}/healthz", timeout=5)
        time.sleep(1)
        rows = present()
    assert rows, f"no {prefix}* series scraped from {job}"
    assert int(rows[0]["value"][1]) > 0


def test_tritons_series_are_in_prometheus(scraper: Scraper) -> None:
    rows = scraper.query('count({__name__=~"nv_.+", job="triton"})')

    assert rows
    assert int(rows[0]["value"][1]) > 0


def test_prometheus_loads_every_alerting_rule(scraper: Scraper) -> None:
    answer = httpx.get(f"{scraper.url}/api/v1/rules", params={"type": "alert"}, timeout=10)
    loaded = {r["name"] for g in answer.json()["data"]["groups"] for r in g["rules"]}
    declared = {
        r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]
    }

    assert loaded == declared
    # Evaluated against the live series without errors.
    health = {r["name"]: r["health"] for g in answer.json()["data"]["groups"] for r in g["rules"]}
    assert set(health.values()) <= {"ok", "unknown"}, health


def _promtool_check_metrics(scraper: Scraper, job: str) -> subprocess.CompletedProcess[bytes]:
    tool, _ = _tools()
    exposition = httpx.get(f"http://{scraper.jobs[job]}/metrics", timeout=10)
    assert exposition.status_code == 200
    return subprocess.run(
        [tool, "check", "metrics"],
        input=exposition.content,
        capture_output=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("job", [s.name for s in (*SERVICES, CONSOLE)])
def test_promtool_accepts_each_services_metrics(scraper: Scraper, job: str) -> None:
    checked = _promtool_check_metrics(scraper, job)

    # 0: parsed and no lint problem (names, units, suffixes, help texts).
    assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()[-2000:]


def test_promtool_parses_tritons_metrics(scraper: Scraper) -> None:
    checked = _promtool_check_metrics(scraper, "triton")

    # NVIDIA's names break the naming lint (nv_inference_count is a counter without
    # _total ...), which promtool reports with exit 3; a parse error would be 1.
    assert checked.returncode in (0, 3), (checked.stdout + checked.stderr).decode()[-2000:]
    assert b"error while linting" not in checked.stderr
