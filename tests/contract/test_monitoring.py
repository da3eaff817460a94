"""Prometheus scrape config and the Grafana dashboard agree with the code.

The dashboard may only query metrics some service defines (common.observability and
each service's metrics module), Triton or RabbitMQ export; the PromQL and the
Prometheus config are checked with promtool where it is installed.
"""

from __future__ import annotations

import importlib
import json
import re
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
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = REPO / "deploy" / "prometheus" / "tests" / "alerts.test.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "prelabel.json"
DATASOURCES = REPO / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = REPO / "deploy" / "grafana" / "provisioning" / "dashboards" / "prelabel.yml"
COMPOSE = REPO / "docker-compose.yml"

# Metrics the dashboard must show, each exported by a service's metrics module.
REQUIRED_PANEL_METRICS = {
    "prelabel_trigger_router_queue_depth",
    "prelabel_trigger_router_replicas_desired",
    "prelabel_trigger_router_replicas_actual",
    "prelabel_trigger_router_executions_total",
    "prelabel_trigger_router_cold_start_seconds_bucket",
    "prelabel_model_serving_predictions_total",
    "prelabel_model_serving_triton_infer_duration_seconds_bucket",
    "prelabel_billing_budget_spent",
}
SERVICE_METRIC_MODULES = [
    "dataset_service",
    "trigger_router_service.metrics",
    "model_serving_service.metrics",
    "annotation_service.metrics",
    "billing_service.metrics",
]
# Triton's own metrics (served on :8002).
TRITON_METRICS = {
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_request_duration_us",
    "nv_inference_count",
}
# RabbitMQ's own (the rabbitmq_prometheus plugin, :15692), aggregated per node.
RABBITMQ_METRICS = {
    "rabbitmq_queue_messages_ready",
    "rabbitmq_queue_messages_unacked",
    "rabbitmq_connections",
    "rabbitmq_consumers",
}

# Grafana variables replaced by sample values so promtool can parse the queries.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$job": ".*"}


def _sample_names(metric: MetricWrapperBase) -> set[str]:
    names: set[str] = set()
    for family in metric.describe():
        if isinstance(metric, Counter):
            names.add(f"{family.name}_total")
        elif isinstance(metric, Histogram):
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count")}
        else:
            names.add(family.name)
    return names


def own_metric_names() -> set[str]:
    """Sample names of the metrics each service's metrics module defines: module-level
    objects, and the cached factories (``@cache def x() -> Counter``) called once."""
    names: set[str] = set()
    for module_name in SERVICE_METRIC_MODULES:
        module = importlib.import_module(module_name)
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                names |= _sample_names(value)
            elif callable(value) and hasattr(value, "cache_info"):
                made = value()
                if isinstance(made, MetricWrapperBase):
                    names |= _sample_names(made)
    return names


def exposed_names(service: Service) -> set[str]:
    """Sample names a service's common metrics expose (``_total``, ``_bucket`` ...)."""
    metrics = service_metrics(service.name)
    names: set[str] = set()
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            names |= _sample_names(metric)
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
        if "static_configs" in job
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


def promtool_binary() -> str:
    """promtool: installed by ``make test`` (the stack's ``up --test-tools``), else here the
    same way; skipped only where it cannot be installed (not root, no apt-get)."""
    from prelabel_stack.components.monitoring import PrometheusTools, promtool
    from prelabel_stack.config import StackConfig

    found = promtool()
    if found is None:
        try:
            PrometheusTools(StackConfig.from_env()).ensure()
        except Exception as exc:
            pytest.skip(f"promtool is not installed and cannot be installed here: {exc}")
        found = promtool()
    assert found is not None
    return found


def test_promtool_accepts_the_prometheus_config() -> None:
    promtool = promtool_binary()
    checked = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --------------------------------------------------------------------------- Grafana


def test_dashboard_picks_its_datasource_by_variable(dashboard: dict[str, Any]) -> None:
    # A fixed uid only fits compose's provisioning; Kubernetes' Grafana names its own.
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    variable = {"type": "prometheus", "uid": "${datasource}"}
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == variable, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", variable) == variable, panel["title"]
    assert variables["job"]["datasource"] == variable
    [datasource] = load_yaml(DATASOURCES)["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    assert datasource["type"] == "prometheus"


def test_job_variable_reads_whatever_job_labels_the_scrape_gives(
    dashboard: dict[str, Any],
) -> None:
    # Compose names jobs after services; Kubernetes' pod scraping names them otherwise:
    # the values come from the metrics themselves, not from a list of compose names.
    job = next(v for v in dashboard["templating"]["list"] if v["name"] == "job")
    query = job["query"]["query"]
    assert query.startswith("label_values(")
    assert query.endswith(", job)")
    assert "dataset|" not in query
    assert job["includeAll"] is True
    assert job["allValue"] == ".*"


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
        *REQUIRED_PANEL_METRICS,
        "nv_inference_request_duration_us",
        "rabbitmq_queue_messages_ready",
    ):
        assert needle in text, f"no panel queries {needle}"


def test_dashboard_queries_only_exported_metrics(dashboard: dict[str, Any]) -> None:
    exposed = set().union(*(exposed_names(s) for s in SERVICES)) | own_metric_names()
    matchers = []
    for expr in queries(dashboard):
        matchers += re.findall(r'__name__=~"([^"]+)"', expr)
        literal = re.sub(r'__name__=~"[^"]+"', "", expr)
        for name in re.findall(r"\b(prelabel_\w+|nv_\w+)", literal):
            assert name in exposed | TRITON_METRICS, name
        for name in re.findall(r"\b(rabbitmq_\w+)", literal):
            assert name in RABBITMQ_METRICS, name
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


def test_required_panel_metrics_are_exported() -> None:
    assert sorted(REQUIRED_PANEL_METRICS - own_metric_names()) == []


def test_prometheus_finds_the_worker_containers() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "model-serving-worker"]
    [dns] = job["dns_sd_configs"]
    from trigger_router_service.adapters.containers import WORKER_ALIAS

    assert dns["names"] == [WORKER_ALIAS]
    env = json.loads(
        load_yaml(COMPOSE)["services"]["trigger-router"]["environment"][
            "TRIGGER_ROUTER_MODEL_SERVING_ENV"
        ]
    )
    assert int(env["MODEL_SERVING_WORKER_METRICS_PORT"]) == dns["port"]


def test_promtool_parses_every_dashboard_query(dashboard: dict[str, Any], tmp_path: Path) -> None:
    promtool = promtool_binary()
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


# --------------------------------------------------------------------------- alerts


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in load_yaml(ALERTS)["groups"] for r in g["rules"] if "alert" in r]


def test_prometheus_loads_the_alerting_rules() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    assert config["rule_files"] == [ALERTS.name]
    prometheus = load_yaml(COMPOSE)["services"]["prometheus"]
    assert (
        f"./deploy/prometheus/{ALERTS.name}:/etc/prometheus/{ALERTS.name}:ro"
        in (prometheus["volumes"])
    )
    assert load_yaml(ALERT_TESTS)["rule_files"] == [f"../{ALERTS.name}"]


def test_the_agreed_alerts_exist() -> None:
    names = {r["alert"] for r in alert_rules()}
    assert {
        "PrelabelTargetDown",
        "PrelabelDeadLettersArriving",
        "PrelabelDeadLettersGrowing",
        "PrelabelBudgetNearlySpent",
        "PrelabelBudgetExhausted",
        "PrelabelBacklogAtZeroReplicas",
        "PrelabelQueueGrowingWithoutConsumer",
        "PrelabelScaleFromZeroSlow",
        "PrelabelExecutionsFailing",
    } <= names
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_alerts_query_only_exported_metrics() -> None:
    exposed = set().union(*(exposed_names(s) for s in SERVICES)) | own_metric_names()
    for rule in alert_rules():
        expr = rule["expr"]
        patterns = re.findall(r'__name__=~"([^"]+)"', expr)
        literal = re.sub(r'__name__=~"[^"]+"', "", expr)
        for name in re.findall(r"\b(prelabel_\w+)", literal):
            assert name in exposed, f"{rule['alert']}: {name} is not exported"
        for pattern in patterns:
            assert {n for n in exposed if re.fullmatch(pattern, n)}, (rule["alert"], pattern)


def test_every_alert_has_unit_tests_that_fire_and_stay_quiet() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(ALERT_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert sorted(names - fired) == [], "alerts no test sees firing"
    assert sorted(names - quiet) == [], "alerts no test sees quiet"


def test_promtool_checks_the_alerting_rules() -> None:
    checked = subprocess.run(
        [promtool_binary(), "check", "rules", str(ALERTS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    checked = subprocess.run(
        [promtool_binary(), "test", "rules", str(ALERT_TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ALERT_TESTS.parent,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
