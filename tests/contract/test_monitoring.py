"""Prometheus scrape config and the Grafana dashboard agree with the code.

The dashboard may only query metrics the services define (common.observability)
or the ones listed in PLANNED_METRICS below, which later issues add; the PromQL
and the Prometheus config are checked with promtool where it is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase

from common.service import service_metrics
from tests.contract.support import REPO, SERVICE_IDS, SERVICES, Service, load_yaml

pytestmark = pytest.mark.contract

PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "prelabel.json"
DATASOURCES = REPO / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = REPO / "deploy" / "grafana" / "provisioning" / "dashboards" / "prelabel.yml"
COMPOSE = REPO / "docker-compose.yml"

# Panels for metrics the trigger-router and billing will export. When one lands,
# it must carry exactly this name (or change the dashboard and this list with it).
PLANNED_METRICS = {
    "prelabel_trigger_router_queue_depth": "gauge {service_id}: ready + unacked predict messages",
    "prelabel_trigger_router_replicas_desired": "gauge {service_id}: replicas asked for",
    "prelabel_trigger_router_replicas_actual": "gauge {service_id}: replicas running",
    "prelabel_trigger_router_executions_total": "counter {status}: executions reaching a status",
    "prelabel_billing_budget_spent": "gauge {project_id}: budget spent, currency units",
}
# Triton's own metrics (served on :8002).
TRITON_METRICS = {"nv_inference_request_success", "nv_inference_request_failure"}

# Grafana variables replaced by sample values so promtool can parse the queries.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$job": ".*"}


def exposed_names(service: Service) -> set[str]:
    """Sample names a service's common metrics expose (``_total``, ``_bucket`` ...)."""
    metrics = service_metrics(service.name)
    names: set[str] = set()
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        for family in metric.describe():
            if isinstance(metric, Counter):
                names.add(f"{family.name}_total")
            elif isinstance(metric, Histogram):
                names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count")}
            else:
                names.add(family.name)
    return names


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def queries(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


# --------------------------------------------------------------------------- Prometheus


def scrape_targets() -> dict[str, list[str]]:
    config = load_yaml(PROMETHEUS_CONFIG)
    return {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }


@pytest.mark.parametrize("service", SERVICES, ids=SERVICE_IDS)
def test_prometheus_scrapes_each_service_on_its_port(service: Service) -> None:
    assert scrape_targets()[service.name] == [f"{service.name}:{service.port}"]


def test_prometheus_scrapes_triton_metrics() -> None:
    assert scrape_targets()["triton"] == ["triton:8002"]


def test_scrape_targets_are_compose_services() -> None:
    services = set(load_yaml(COMPOSE)["services"])
    hosts = {t.split(":")[0] for targets in scrape_targets().values() for t in targets}
    assert hosts - {"127.0.0.1"} <= services


def test_promtool_accepts_the_prometheus_config() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    checked = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --------------------------------------------------------------------------- Grafana


def test_dashboard_uses_the_provisioned_datasource(dashboard: dict[str, Any]) -> None:
    [datasource] = load_yaml(DATASOURCES)["datasources"]
    used = {
        json.dumps(p["datasource"], sort_keys=True)
        for p in dashboard["panels"]
        if p["type"] != "row"
    }
    assert used == {json.dumps({"type": "prometheus", "uid": datasource["uid"]}, sort_keys=True)}
    assert datasource["url"] == "http://prometheus:9090"


def test_dashboard_provider_reads_the_mounted_directory() -> None:
    [provider] = load_yaml(DASHBOARD_PROVIDERS)["providers"]
    grafana = load_yaml(COMPOSE)["services"]["grafana"]
    mounts = dict(v.rsplit(":", 2)[:2] for v in grafana["volumes"] if v.startswith("./"))
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


def test_dashboard_is_well_formed(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"]
    assert dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]
        if panel["type"] != "row":
            assert refs, f"{panel['title']} has no query"


def test_dashboard_has_the_agreed_panels(dashboard: dict[str, Any]) -> None:
    text = "\n".join(queries(dashboard))
    for needle in (
        "messages_handled_total",
        "handler_duration_seconds_bucket",
        "http_request_duration_seconds_bucket",
        *PLANNED_METRICS,
    ):
        assert needle in text, f"no panel queries {needle}"


def test_dashboard_queries_only_metrics_that_exist_or_are_planned(
    dashboard: dict[str, Any],
) -> None:
    exposed = set().union(*(exposed_names(s) for s in SERVICES))
    matchers = []
    for expr in queries(dashboard):
        matchers += re.findall(r'__name__=~"([^"]+)"', expr)
        literal = re.sub(r'__name__=~"[^"]+"', "", expr)
        for name in re.findall(r"\b(prelabel_\w+|nv_\w+)", literal):
            assert name in exposed | set(PLANNED_METRICS) | TRITON_METRICS, name
    # A name regex must match that metric of every service, and nothing unrelated.
    for pattern in matchers:
        matched = {n for n in exposed if re.fullmatch(pattern, n)}
        assert matched, f"{pattern} matches no metric the services define"
        suffixes = {n.split("_", 2)[2] for n in matched}
        for service in SERVICES:
            for suffix in suffixes:
                name = f"prelabel_{service.name.replace('-', '_')}_{suffix}"
                if name in exposed_names(service):
                    assert name in matched, f"{pattern} misses {name}"


def test_planned_metric_names_follow_the_conventions() -> None:
    services = {s.name.replace("-", "_") for s in SERVICES}
    for name, description in PLANNED_METRICS.items():
        assert re.fullmatch(r"prelabel_[a-z_]+", name)
        assert any(name.startswith(f"prelabel_{s}_") for s in services), name
        assert name.endswith("_total") == description.startswith("counter"), name


def test_promtool_parses_every_dashboard_query(dashboard: dict[str, Any], tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    rules = []
    for i, expr in enumerate(queries(dashboard)):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"unknown Grafana variable in {expr}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
