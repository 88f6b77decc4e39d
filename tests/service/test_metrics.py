"""/metrics: requests by route template, and counts that add up across `ccweb serve --workers 2`; the Grafana
dashboard asks only for metrics the service exports."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Mount

from ccweb.app import create_app
from ccweb.config import parse_config
from ccweb.sandbox.issuer import DevIssuer
from ccweb.sandbox.sts import DevSTSStore, create_sts_app
from support import RecordingSTS, clean_env, serve, serve_issuer, wait_until_healthy

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "ccweb.json"
ROLE = "arn:aws:iam::111122223333:role/ccweb"
BODY = {"protocol": "https", "host": "git-codecommit.us-east-1.amazonaws.com", "path": "v1/repos/demo"}


def policy(issuer_url: str) -> dict[str, Any]:
    return {
        "issuers": [{"name": "corp", "issuer": issuer_url, "audiences": ["ccweb"]}],
        "rules": [{"name": "everyone", "issuer": "corp", "role_arn": ROLE, "repositories": ["*"]}],
    }


def total(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


@pytest.fixture(scope="module")
def issuer() -> Iterator[DevIssuer]:
    with serve_issuer() as issuer:
        yield issuer


ROUTES = {
    # name: (method, path, headers, body, route label, status)
    "matched": ("GET", "/healthz", {}, None, "/healthz", "200"),
    "refused-before-routing": ("POST", "/v1/credentials", {"Content-Type": "text/plain"}, b"x", "/v1/credentials",
                               "415"),
    "wrong-method": ("DELETE", "/v1/credentials", {}, None, "/v1/credentials", "405"),
    "unknown-path": ("GET", "/v1/repos/some-secret-name", {}, None, "unmatched", "404"),
}


@pytest.mark.parametrize("case", ROUTES)
def test_requests_are_labelled_by_route_template_never_by_raw_path(issuer: DevIssuer, case: str) -> None:
    method, path, headers, body, route, status = ROUTES[case]
    app = create_app(parse_config(policy(issuer.issuer_url)), sts=RecordingSTS())
    with serve(app) as url:
        assert httpx.request(method, url + path, headers=headers, content=body).status_code == int(status)
        text = httpx.get(f"{url}/metrics").text
    assert total(text, "ccweb_requests_total", route=route, status=status) == 1
    assert total(text, "ccweb_request_duration_seconds_count", route=route) == 1
    assert "some-secret-name" not in text


def _names(text: str) -> tuple[set[str], set[str]]:
    """Every series name the exposition ``text`` declares (``_total``, ``_bucket``, …), and every label name."""
    names: set[str] = set()
    labels: set[str] = set()
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""],
                "summary": ["", "_sum", "_count"]}
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in suffixes.get(family.type, [""]))
        for sample in family.samples:
            labels.update(sample.labels)
    return names, labels


def _expressions(node: Any) -> Iterator[str]:
    """Every PromQL expression of a Grafana dashboard: panel targets and template variable queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, dict) and isinstance(value.get("query"), str):
                yield value["query"]
            else:
                yield from _expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from _expressions(item)


def test_the_dashboard_asks_only_for_what_the_service_exports(issuer: DevIssuer) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = list(_expressions(dashboard))
    assert len(exprs) >= 10
    app = create_app(parse_config(policy(issuer.issuer_url)), sts=RecordingSTS())
    with serve(app) as url:
        token = issuer.mint({"sub": "u-1", "email": "dana@example.com"})
        issued = httpx.post(f"{url}/v1/credentials", json=BODY, headers={"Authorization": f"Bearer {token}"})
        assert issued.status_code == 200  # now every labelled metric but the policy reloads has a sample
        exported, labels = _names(httpx.get(f"{url}/metrics").text)
    labels |= {"le", "job", "instance"}  # histogram buckets, and what Prometheus adds to every series
    asked: set[str] = set()
    for expr in exprs:
        asked |= set(re.findall(r"\bccweb_[a-zA-Z0-9_]+", expr))
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
            unknown = {label.strip() for label in group.split(",") if label.strip()} - labels
            assert not unknown, f"{expr}: no such label {unknown}"
        for selector in re.findall(r"\{([^}]*)\}", expr):
            unknown = set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", selector)) - labels
            assert not unknown, f"{expr}: no such label {unknown}"
    assert asked, "the dashboard names no ccweb metric"
    assert asked <= exported, f"not exported: {sorted(asked - exported)}"
    wanted = {"ccweb_requests_total", "ccweb_request_duration_seconds_bucket", "ccweb_decisions_total",
              "ccweb_sts_calls_total", "ccweb_sts_latency_seconds_bucket", "ccweb_session_cache_hits_total",
              "ccweb_session_cache_misses_total", "ccweb_key_refreshes_total", "ccweb_policy_reloads_total"}
    assert wanted <= asked, f"no panel for {sorted(wanted - asked)}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _metrics_dirs(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("ccweb-metrics-*"))


@pytest.mark.parametrize("own_port", [False, True], ids=["on the API port", "on --metrics-port"])
def test_two_workers_report_the_sum_of_their_counts_and_clean_up(
    issuer: DevIssuer, tmp_path: Path, own_port: bool
) -> None:
    """Whichever worker answers, or the supervisor on a port of its own, a scrape counts every worker's requests;
    with --metrics-port the API's port has no /metrics (a 404 like any unknown path)."""
    config = tmp_path / "policy.yaml"
    config.write_text(json.dumps(policy(issuer.issuer_url)))  # YAML is a superset of JSON
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    metrics_port = _free_port() if own_port else port
    scrape = f"http://127.0.0.1:{metrics_port}/metrics"
    extra = ["--metrics-port", str(metrics_port)] if own_port else []
    with serve(Starlette(routes=[Mount("/", app=create_sts_app(DevSTSStore()))])) as sts_url:
        env = clean_env(
            "PROMETHEUS_", "AWS_",
            PYTHONPATH=os.pathsep.join([str(ROOT / "service"), str(ROOT / "helper")]), TMPDIR=str(tmp),
            AWS_ACCESS_KEY_ID="AKIAEXAMPLE", AWS_SECRET_ACCESS_KEY="example", AWS_REGION="us-east-1",
            AWS_ENDPOINT_URL_STS=sts_url,
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "ccweb", "serve", "--config", str(config), "--port", str(port), "--workers", "2",
             "--log-level", "warning", *extra],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            wait_until_healthy(server, url)
            [directory] = _metrics_dirs(tmp)
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700
            token = issuer.mint({"sub": "u-1", "email": "dana@example.com"})
            sent = _until_both_workers_served(url, scrape, token)
            if own_port:
                public = httpx.get(f"{url}/metrics")
                assert public.status_code == 404 and public.json()["error"] == "not_found"
                assert "/metrics" not in httpx.get(f"{url}/openapi.json").json()["paths"]
                assert httpx.get(f"http://127.0.0.1:{metrics_port}/v1/whoami").status_code == 404  # nothing else
            for _ in range(4):  # whichever worker answers the scrape (a fresh connection each time)
                text = _settled(scrape, sent)
                assert total(text, "ccweb_requests_total", route="/v1/credentials", status="200") == sent
                assert total(text, "ccweb_request_duration_seconds_count", route="/v1/credentials") == sent
                assert total(text, "ccweb_decisions_total", rule="everyone", outcome="issued") == sent
                hits = total(text, "ccweb_session_cache_hits_total")
                misses = total(text, "ccweb_session_cache_misses_total")
                assert hits + misses == sent
                assert total(text, "ccweb_sts_calls_total", result="ok") == 2 <= misses  # one session per worker
                assert total(text, "ccweb_key_refreshes_total", issuer="corp", result="ok") == 2
                assert total(text, "ccweb_requests_total", route="unmatched", status="404") == int(own_port)
        finally:
            server.terminate()
            _, stderr = server.communicate(timeout=30)
    assert "Traceback" not in stderr, stderr
    assert _metrics_dirs(tmp) == []



BOUND = 60.0
"""Seconds a request to ``ccweb serve`` may take, or its counts to settle: a bound against a hang, not a
measurement (a worker that starts late on a busy machine holds the connections the kernel gave it until then)."""


def _until_both_workers_served(url: str, scrape: str, token: str) -> int:
    """Send credential requests, each on a fresh connection, until both workers have verified a token (each
    fetches the issuer's keys once, which ``scrape`` counts); return how many were sent."""
    def issue(_: int) -> None:
        response = httpx.post(f"{url}/v1/credentials", json=BODY, headers={"Authorization": f"Bearer {token}"},
                              timeout=BOUND)
        assert response.status_code == 200, response.text

    sent = 0
    with ThreadPoolExecutor(8) as pool:
        while sent < 400:
            list(pool.map(issue, range(40)))
            sent += 40
            if total(httpx.get(scrape, timeout=BOUND).text, "ccweb_key_refreshes_total", result="ok") == 2:
                return sent
    pytest.fail(f"one worker served all {sent} requests")


def _settled(scrape: str, sent: int) -> str:
    """A scrape, once the last responses are counted (a worker counts just after it sends); never more."""
    deadline = time.monotonic() + BOUND
    while True:
        text = httpx.get(scrape, timeout=BOUND).text
        counted = total(text, "ccweb_requests_total", route="/v1/credentials")
        assert counted <= sent
        if counted == sent or time.monotonic() > deadline:
            return text
        time.sleep(0.05)
