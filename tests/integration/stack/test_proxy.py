"""One URL: the real nginx in front of the five services and the web console, as
``make up`` wires them.

The five services and the console run as processes (``python -m <pkg>``) with the
environment :class:`prelabel_stack.Service` derives from their ``Settings`` classes, on
free ports, each service with its own schema and one topology prefix; nginx runs with
the config the stack renders from ``deploy/nginx/templates/prelabel.conf.template``.
Clients reach everything through ``PRELABEL_URL`` alone: the APIs under
``/api/<service>/``, the console's pages at ``/``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from dataset_service.api.upload import FORM_OVERHEAD_BYTES as DATASET_FORM_OVERHEAD
from prelabel_client import NotFoundError, SyncPrelabel
from prelabel_stack import CONSOLE, SERVICES, Service
from prelabel_stack.components.proxy import TEMPLATE, site_values
from prelabel_stack.components.services import spec_of
from tests.integration.stack.proxied import PNG, UPLOAD_LIMIT, Proxied


def _raw(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes to the proxy and read its whole answer (it closes or says how long)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(lines[0].split()[1]), headers, body


def test_upload_and_listing_go_through_prelabel_url(
    proxied: Proxied, client_env: SyncPrelabel
) -> None:
    dataset = client_env.datasets.create(f"px-{uuid.uuid4().hex[:8]}")

    item = client_env.items.upload(dataset.id, PNG, "dot.png", remote_dir="/proxy")
    page = client_env.items.query(dataset.id, {"dir": "/proxy"})

    assert [i.id for i in page.items] == [item.id]
    assert client_env.items.download(item.id) == PNG
    access = (proxied.config.logs_dir / "nginx-access.log").read_text()
    assert f"POST /api/dataset/datasets/{dataset.id}/items" in access


def test_another_services_route_answers_through_the_proxy(client_env: SyncPrelabel) -> None:
    # Model-serving, the router, annotation and billing under their own prefixes.
    assert client_env.models.catalog()
    assert client_env.triggers.list() == []
    assert client_env.tasks.list() == []
    assert client_env.billing.budget() is not None


def test_body_over_the_proxy_limit_is_refused_before_it_is_read(proxied: Proxied) -> None:
    limit = int(site_values(proxied.config)["PRELABEL_DATASET_MAX_BODY"])
    request = (
        f"POST /api/dataset/datasets/ds_x/items HTTP/1.1\r\nHost: test\r\n"
        f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {limit + 1}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()

    status, headers, body = _raw(proxied.url, request)

    assert status == 413
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["detail"] == (
        f"request body too large: dataset accepts at most {limit} bytes through the proxy"
    )


def test_a_json_service_refuses_a_body_over_its_smaller_limit(proxied: Proxied) -> None:
    limit = int(site_values(proxied.config)["PRELABEL_JSON_MAX_BODY"])
    request = (
        f"POST /api/trigger-router/triggers HTTP/1.1\r\nHost: test\r\n"
        f"Content-Type: application/json\r\nContent-Length: {limit + 1}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()

    status, _, body = _raw(proxied.url, request)

    assert status == 413
    assert "trigger-router accepts at most" in json.loads(body)["detail"]


@pytest.mark.parametrize("path", ["/api/nope/things", "/api/"])
def test_unknown_api_paths_answer_404_with_a_message(proxied: Proxied, path: str) -> None:
    answer = httpx.get(f"{proxied.url}{path}")

    assert answer.status_code == 404
    assert "/api/" in answer.json()["detail"]


def test_unknown_route_of_a_service_is_the_services_own_404(
    proxied: Proxied, client_env: SyncPrelabel
) -> None:
    with pytest.raises(NotFoundError):
        client_env.datasets.get("ds_does_not_exist")


@pytest.mark.parametrize("service", [s.name for s in SERVICES])
def test_openapi_and_docs_through_the_proxy_name_its_prefix(proxied: Proxied, service: str) -> None:
    base = f"{proxied.url}/api/{service}"

    document = httpx.get(f"{base}/openapi.json")
    docs = httpx.get(f"{base}/docs")

    assert document.status_code == 200
    assert document.json()["servers"] == [{"url": f"/api/{service}"}]
    assert document.json()["paths"]
    assert docs.status_code == 200
    assert f"/api/{service}/openapi.json" in docs.text
    # Every route the document names is served under the prefix (not the proxy's 404).
    health = httpx.get(f"{base}/healthz")
    assert health.status_code == 200


def test_stack_config_is_what_nginx_serves(proxied: Proxied) -> None:
    rendered = (proxied.nginx.directory / "prelabel.conf").read_text()

    for spec in SERVICES:
        assert f"server 127.0.0.1:{proxied.config.service_ports[spec.name]};" in rendered
        assert f"location {spec.proxy_path}/ {{" in rendered
    assert "proxy_request_buffering off;" in rendered
    assert f"server 127.0.0.1:{proxied.config.service_ports[CONSOLE.name]};" in rendered
    assert "location / {\n        proxy_pass http://prelabel_console;" in rendered


def test_the_cli_works_through_prelabel_url_alone(
    proxied: Proxied, project_key: str, tmp_path: Path
) -> None:
    """`prelabel`, as a user runs it, configured by PRELABEL_URL and a key: no per-service
    URL, no config file."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("PRELABEL_") and k.endswith("_URL"))
    }
    env |= {
        "PRELABEL_URL": proxied.url,
        "PRELABEL_API_KEY": project_key,
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    cli = str(Path(sys.executable).with_name("prelabel"))
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "dot.png").write_bytes(PNG)
    name = f"cli-{uuid.uuid4().hex[:8]}"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [cli, *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    created = run("datasets", "create", name, "-o", "json")
    uploaded = run("upload", str(tmp_path / "files"), "-d", name, "--dir", "/cli")
    listed = run("items", "list", "-d", name, "-o", "json")

    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["name"] == name
    assert uploaded.returncode == 0, uploaded.stderr
    assert listed.returncode == 0, listed.stderr
    items = json.loads(listed.stdout)
    rows = items["items"] if isinstance(items, dict) else items
    assert [r["name"] for r in rows] == ["dot.png"]
    access = (proxied.config.logs_dir / "nginx-access.log").read_text()
    assert "POST /api/dataset/datasets " in access  # the dataset was made through nginx


# --- Every route of the five OpenAPI documents, through the proxy --------------------

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
EXCLUDED_ROUTES: dict[tuple[str, str, str], str] = {
    (spec.name, "get", "/metrics"): (
        "for the scraper on the internal network: refused (404) to requests that came "
        "through a proxy, so its answer through nginx is by design not the direct one; "
        "test_metrics_are_refused_through_the_proxy checks that instead"
    )
    for spec in SERVICES
}
"""(service, method, path) left out of the route sweep, with the reason; every other
route each document names is requested."""


def _nginx_answers() -> list[re.Pattern[str]]:
    """The bodies nginx answers itself (the template's ``return``s, its variables as
    wildcards), and its built-in error pages."""
    patterns = [re.compile(r"<center>nginx</center>")]
    for body in re.findall(r"return \d{3} '(.*)';", TEMPLATE.read_text()):
        parts = re.split(r"\$[a-z_]+", body)
        patterns.append(re.compile("^" + ".*".join(re.escape(p) for p in parts) + "$"))
    return patterns


NGINX_ANSWERS = _nginx_answers()


def _is_nginx_answer(answer: httpx.Response) -> bool:
    # A service's own 503 (readyz) passes through: nginx intercepts no upstream errors.
    return any(p.search(answer.text) for p in NGINX_ANSWERS)


def _same_answer(path: str, through: httpx.Response, direct: httpx.Response) -> bool:
    """Whether the answer through the proxy is the one the service gives directly."""
    if path == "/readyz":
        # Readiness follows Triton's and the broker's moment (200 or 503 from one request
        # to the next on a loaded machine); either is the service's own, with its checks.
        return {through.status_code, direct.status_code} <= {200, 503} and "checks" in (
            through.json()
        )
    return (through.status_code, through.content) == (direct.status_code, direct.content)


def _dummy(parameter: dict[str, Any]) -> str:
    """A value for a path parameter that names nothing: the service's 404/422 is the point."""
    schema = parameter.get("schema", {})
    if schema.get("type") == "integer" or any(
        s.get("type") == "integer" for s in schema.get("anyOf", [])
    ):
        return "987654321"
    return f"x_proxy_dummy_{parameter['name']}"


def _routes(proxied: Proxied) -> list[tuple[str, str, str]]:
    """(service, method, path with dummy ids) of every route in every document, each
    document fetched through the proxy."""
    routes = []
    excluded: set[tuple[str, str, str]] = set()
    for spec in SERVICES:
        answer = httpx.get(f"{proxied.url}{spec.proxy_path}/openapi.json", timeout=30)
        assert answer.status_code == 200, (spec.name, answer.text)
        for path, item in answer.json()["paths"].items():
            shared = item.get("parameters", [])
            for method in METHODS:
                operation = item.get(method)
                if operation is None:
                    continue
                if (spec.name, method, path) in EXCLUDED_ROUTES:
                    excluded.add((spec.name, method, path))
                    continue
                concrete = path
                for parameter in [*shared, *operation.get("parameters", [])]:
                    if parameter.get("in") == "path":
                        concrete = concrete.replace(f"{{{parameter['name']}}}", _dummy(parameter))
                assert "{" not in concrete, (spec.name, method, path)
                routes.append((spec.name, method, concrete))
    # An exclusion names a route that exists (a renamed route cannot hide behind it).
    assert excluded == set(EXCLUDED_ROUTES)
    return routes


def test_every_route_of_the_five_openapi_documents_is_reachable_through_the_proxy(
    proxied: Proxied,
) -> None:
    routes = _routes(proxied)
    # Each service has more than its health and docs routes.
    assert {service for service, _, _ in routes} == {s.name for s in SERVICES}
    assert len(routes) > 5 * 4
    ports = proxied.config.service_ports
    wrong = []
    with httpx.Client(timeout=30) as http:
        for service, method, path in routes:
            prefix = spec_of(service).proxy_path
            # No key and no body: the service answers (401, 404, 422 ...) and changes nothing.
            through = http.request(method.upper(), f"{proxied.url}{prefix}{path}")
            direct = http.request(method.upper(), f"http://127.0.0.1:{ports[service]}{path}")
            if (
                _is_nginx_answer(through)
                or through.status_code == 500
                or not _same_answer(path, through, direct)
            ):
                wrong.append(
                    f"{method.upper()} {prefix}{path}: {through.status_code} {through.text[:160]}"
                    f" (straight to the service: {direct.status_code})"
                )
    assert not wrong, "\n".join(wrong)


def test_the_route_sweep_tells_nginxs_answers_from_the_services(proxied: Proxied) -> None:
    """The check above can fail: nginx's own 404 and 413 and a service's 404 told apart."""
    unrouted = httpx.get(f"{proxied.url}/api/datasets/x")  # no such service prefix
    own = httpx.get(f"{proxied.url}/api/dataset/no/such/route")

    assert _is_nginx_answer(unrouted)
    assert own.status_code == 404
    assert not _is_nginx_answer(own)


# --- Upload size: the service's limit, through the proxy -----------------------------


def _upload(proxied: Proxied, key: str, dataset_id: str, size: int) -> httpx.Response:
    return httpx.post(
        f"{proxied.url}/api/dataset/datasets/{dataset_id}/items",
        headers={"Authorization": f"Bearer {key}"},
        files={"file": ("limit.txt", b"a" * size, "text/plain")},
        data={"dir": "/limit"},
        timeout=60,
    )


def test_the_proxys_upload_limit_follows_the_dataset_services_settings(
    proxied: Proxied,
) -> None:
    service = Service(proxied.config, spec_of("dataset")).settings()
    proxy_limit = int(site_values(proxied.config)["PRELABEL_DATASET_MAX_BODY"])
    rendered = (proxied.nginx.directory / "prelabel.conf").read_text()

    assert service.max_upload_bytes == UPLOAD_LIMIT
    assert f"client_max_body_size {proxy_limit};" in rendered
    # Whatever body the service would take (the file at its limit plus the form's room),
    # the proxy passes on: the service's own check and message decide near the limit.
    assert proxy_limit >= UPLOAD_LIMIT + DATASET_FORM_OVERHEAD
    # ...and not much more: a body far beyond it is refused before it is read.
    assert proxy_limit <= 2 * (UPLOAD_LIMIT + DATASET_FORM_OVERHEAD)


def test_an_upload_at_the_limit_passes_the_proxy_and_one_byte_over_is_413(
    client_env: SyncPrelabel, project_key: str, proxied: Proxied
) -> None:
    dataset = client_env.datasets.create(f"px-limit-{uuid.uuid4().hex[:8]}")

    at_limit = _upload(proxied, project_key, dataset.id, UPLOAD_LIMIT)
    over = _upload(proxied, project_key, dataset.id, UPLOAD_LIMIT + 1)

    assert at_limit.status_code == 201, at_limit.text
    assert at_limit.json()["metadata"]["system"]["size"] == UPLOAD_LIMIT
    assert over.status_code == 413, over.text
    assert over.json()["detail"] == f"file is larger than the limit of {UPLOAD_LIMIT} bytes"
    page = client_env.items.query(dataset.id, {"dir": "/limit"})
    assert [i.id for i in page.items] == [at_limit.json()["id"]]


def test_a_body_at_the_proxys_limit_reaches_the_service_and_one_byte_more_does_not(
    proxied: Proxied, project_key: str
) -> None:
    """At the proxy's limit the dataset service itself answers (its 413, its message);
    one byte more and nginx refuses it before it is read."""
    limit = int(site_values(proxied.config)["PRELABEL_DATASET_MAX_BODY"])

    def announce(length: int) -> tuple[int, bytes]:
        status, _, body = _raw(
            proxied.url,
            (
                f"POST /api/dataset/datasets/ds_x/items HTTP/1.1\r\nHost: test\r\n"
                f"Authorization: Bearer {project_key}\r\n"
                f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {length}\r\n"
                "Connection: close\r\n\r\n"
            ).encode(),
        )
        return status, body

    at_limit, over = announce(limit), announce(limit + 1)

    assert at_limit[0] == 413
    assert json.loads(at_limit[1])["detail"].startswith(f"the request body is {limit} bytes;")
    assert over[0] == 413
    assert "through the proxy" in json.loads(over[1])["detail"]


def test_a_json_body_larger_than_nginxs_memory_buffer_reaches_the_service(
    proxied: Proxied, project_key: str
) -> None:
    """A JSON body over nginx's default 16 KB in-memory buffer (a batch of 20,000 item ids)
    reaches the service, which answers it: nginx, as root, wrote such bodies to a temp
    folder its workers could not open and answered 500."""
    ids = [f"itm_{n:020d}" for n in range(20_000)]
    answer = httpx.post(
        f"{proxied.url}/api/trigger-router/services/svc_nope/predict",
        json={"item_ids": ids},
        headers={"Authorization": f"Bearer {project_key}"},
        timeout=30,
    )
    assert len(json.dumps({"item_ids": ids})) > 500_000
    assert answer.status_code == 404, answer.text
    assert answer.json()["detail"] == "model service svc_nope does not exist in this project"


@pytest.mark.parametrize("service", [s.name for s in SERVICES])
def test_metrics_are_refused_through_the_proxy(proxied: Proxied, service: str) -> None:
    """METRICS_DESCRIPTION: labels name every project's routes and model service ids, so
    a request that came through a proxy gets the service's 404."""
    through = httpx.get(f"{proxied.url}/api/{service}/metrics")
    direct = httpx.get(f"http://127.0.0.1:{proxied.config.service_ports[service]}/metrics")

    assert direct.status_code == 200
    assert through.status_code == 404
    assert through.json() == {"detail": "Not Found"}


# --- The web console at / ---------------------------------------------------------------

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def _console(proxied: Proxied) -> httpx.Client:
    """A browser-like client of the console through the proxy: keeps its cookies, follows
    no redirect by itself (each one is checked)."""
    return httpx.Client(base_url=proxied.url, timeout=30, follow_redirects=False)


def _csrf_of(page: httpx.Response) -> str:
    found = CSRF_INPUT.search(page.text)
    assert found, f"no CSRF field in {page.request.url}: {page.text[:300]}"
    return found.group(1)


def _cookie_attributes(answer: httpx.Response) -> list[str]:
    [cookie] = [
        c for c in answer.headers.get_list("set-cookie") if c.startswith("prelabel_console=")
    ]
    return [part.strip() for part in cookie.split(";")[1:]]


def test_the_console_sign_in_page_loads_at_the_root(proxied: Proxied) -> None:
    with _console(proxied) as browser:
        root = browser.get("/")
        login = browser.get(root.headers["location"])

    # Nobody signed in: / sends to the sign-in page, on this URL (a relative redirect).
    assert root.status_code == 303
    assert root.headers["location"] == "/login"
    assert login.status_code == 200
    assert login.headers["content-type"].startswith("text/html")
    assert 'action="/login"' in login.text
    assert _csrf_of(login)
    # The session cookie as the console sets it, unchanged by the proxy: the whole site,
    # not readable by scripts, never sent from another site; not Secure over plain HTTP.
    attributes = _cookie_attributes(root)
    assert "Path=/" in attributes
    assert "HttpOnly" in attributes
    assert "SameSite=Strict" in attributes
    assert "Secure" not in attributes
    access = (proxied.config.logs_dir / "nginx-access.log").read_text()
    assert '"GET /login HTTP/1.1" 200' in access


def test_the_consoles_static_assets_load_through_the_proxy(proxied: Proxied) -> None:
    with _console(proxied) as browser:
        page = browser.get("/login")
        assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text)
        answers = {path: browser.get(path) for path in assets}

    assert {Path(a).suffix for a in assets} >= {".css", ".js"}
    for path, answer in answers.items():
        assert answer.status_code == 200, path
        assert answer.content, path
        kind = answer.headers["content-type"]
        assert ("css" in kind) if path.endswith(".css") else ("javascript" in kind), (path, kind)


def test_signing_in_with_a_real_key_through_the_proxy_opens_the_pages(
    proxied: Proxied, project_key: str, client_env: SyncPrelabel
) -> None:
    name = f"console-px-{uuid.uuid4().hex[:8]}"
    client_env.datasets.create(name)

    with _console(proxied) as browser:
        token = _csrf_of(browser.get("/login?next=/datasets"))
        signed_in = browser.post(
            "/login", data={"api_key": project_key, "csrf_token": token, "next": "/datasets"}
        )
        datasets = browser.get(signed_in.headers["location"])
        home = browser.get("/")

    assert signed_in.status_code == 303, signed_in.text[:300]
    assert signed_in.headers["location"] == "/datasets"
    # A new session cookie (the key sealed in it), with the same attributes.
    assert {"Path=/", "HttpOnly", "SameSite=Strict"} <= set(_cookie_attributes(signed_in))
    assert project_key not in signed_in.headers["set-cookie"]
    assert datasets.status_code == 200, datasets.text[:300]
    assert name in datasets.text  # the page read the dataset service with the key
    assert project_key not in datasets.text
    assert home.status_code == 303
    assert home.headers["location"] == "/datasets"


def test_a_wrong_key_is_refused_on_the_sign_in_page(proxied: Proxied) -> None:
    with _console(proxied) as browser:
        token = _csrf_of(browser.get("/login"))
        refused = browser.post("/login", data={"api_key": "pk_not_a_key", "csrf_token": token})
        after = browser.get("/datasets")

    assert refused.status_code == 401
    assert "not a valid project API key" in refused.text
    assert after.status_code == 303
    assert after.headers["location"] == "/login?next=/datasets"


def test_a_console_form_post_without_its_csrf_token_is_refused(
    proxied: Proxied, project_key: str
) -> None:
    with _console(proxied) as browser:
        token = _csrf_of(browser.get("/login"))
        without = browser.post("/login", data={"api_key": project_key})
        wrong = browser.post("/login", data={"api_key": project_key, "csrf_token": "x" + token})
        still_out = browser.get("/datasets")
        signed_in = browser.post("/login", data={"api_key": project_key, "csrf_token": token})
        page = browser.get("/datasets")
        logout_without = browser.post("/logout", data={})
        still_in = browser.get("/datasets")

    assert without.status_code == 403
    assert "CSRF" in without.text
    assert wrong.status_code == 403
    assert still_out.status_code == 303  # neither post signed anybody in
    assert signed_in.status_code == 303
    assert page.status_code == 200
    assert logout_without.status_code == 403
    assert still_in.status_code == 200  # nor signed anybody out


def test_the_consoles_metrics_are_refused_through_the_proxy(proxied: Proxied) -> None:
    through = httpx.get(f"{proxied.url}/metrics")
    direct = httpx.get(f"http://127.0.0.1:{proxied.config.service_ports[CONSOLE.name]}/metrics")

    assert direct.status_code == 200
    assert "prelabel_console_" in direct.text
    assert through.status_code == 404
    assert through.json() == {"detail": "Not Found"}


def test_an_unknown_console_path_is_the_consoles_own_404(proxied: Proxied) -> None:
    answer = httpx.get(f"{proxied.url}/no/such/page")

    assert answer.status_code == 404
    assert not _is_nginx_answer(answer)
    assert answer.headers.get("content-security-policy")  # the console's own headers
