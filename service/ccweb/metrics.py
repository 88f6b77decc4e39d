"""Prometheus metrics, on a registry owned by the app (so several apps can live in one process).

Under ``ccweb serve --workers N`` every worker counts in files under ``PROMETHEUS_MULTIPROC_DIR``
(prometheus-client's multiprocess mode; ``multiprocess_directory()`` makes a private one), and ``/metrics``
adds up the files of every worker, so whichever worker answers a scrape reports the whole service. A gauge
added here must name its ``multiprocess_mode`` (how workers' values combine). A single process (tests, the
sandbox) keeps its plain in-memory registry. With ``ccweb serve --metrics-port``, the workers count the same
way but do not serve ``/metrics``: the supervisor does, on a listener of its own (``exposition_app`` over
``directory_exposition``), and the API's port answers 404 for it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "unmatched"
"""The ``route`` label of requests no route matches (the raw path would make the label unbounded)."""


_pid = os.getpid()


def _process_identifier() -> int:
    return _pid


def _forked() -> None:
    global _pid  # noqa: PLW0603 (one value per process, reset in a forked child)
    _pid = os.getpid()


if values.ValueClass is not values.MutexValue:
    # In multiprocess mode every update of a value asks os.getpid(), a system call, to notice a fork (five per
    # request here). Ask once per process instead, and again in a forked child; values are made after this.
    os.register_at_fork(after_in_child=_forked)
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_identifier)  # type: ignore[no-untyped-call]


def multiprocess_dir() -> str | None:
    """The directory workers count in, when prometheus-client was imported in multiprocess mode."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path or values.ValueClass is values.MutexValue:
        return None  # not set, or set after prometheus-client was imported: nothing is counted in files
    return path


@contextlib.contextmanager
def multiprocess_directory() -> Iterator[str]:
    """``PROMETHEUS_MULTIPROC_DIR`` for worker processes started inside: the operator's, else a fresh private
    (0700) temporary directory, removed (and the variable unset) on exit. Set it before workers start."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        yield given
        return
    path = tempfile.mkdtemp(prefix="ccweb-metrics-")
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def directory_exposition(path: str) -> Callable[[], bytes]:
    """The text format of every worker's counts in ``path`` (a ``PROMETHEUS_MULTIPROC_DIR``), read at each call;
    for a process that counts nothing itself (the supervisor)."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return functools.partial(generate_latest, registry)


def exposition_app(exposition: Callable[[], bytes], path: str = "/metrics") -> ASGIApp:
    """The whole app of a metrics listener: ``GET`` (or ``HEAD``) ``path`` answers ``exposition()``; any other
    path 404, any other method 405, all in plain text. Nothing else is served there."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; nothing else reaches a listener
        status, body, content_type = 404, b"Not Found\n", "text/plain; charset=utf-8"
        headers = [(b"cache-control", b"no-store")]
        if scope["path"] == path:
            if scope["method"] in ("GET", "HEAD"):
                status, body, content_type = 200, exposition(), CONTENT_TYPE_LATEST
            else:
                status, body = 405, b"Method Not Allowed\n"
                headers.append((b"allow", b"GET, HEAD"))
        headers += [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    return app


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "ccweb_requests", "HTTP requests by route template and status (refusals before routing included).",
            ["route", "status"], registry=self.registry,
        )
        self.request_latency = Histogram(
            "ccweb_request_duration_seconds", "HTTP request latency by route template, until the response is sent.",
            ["route"], registry=self.registry,
        )
        self.decisions = Counter(
            "ccweb_decisions", "Credential decisions by rule and outcome.", ["rule", "outcome"],
            registry=self.registry,
        )
        self.sts_calls = Counter(
            "ccweb_sts_calls", "AssumeRole calls by result: ok, or the AWS error code.", ["result"],
            registry=self.registry,
        )
        self.sts_latency = Histogram(
            "ccweb_sts_latency_seconds", "AssumeRole latency (successful calls).", registry=self.registry
        )
        self.policy_reloads = Counter(
            "ccweb_policy_reloads", "Policy reloads: reloaded (the policy changed) or refused (invalid file).",
            ["result"], registry=self.registry,
        )
        self.session_cache_hits = Counter(
            "ccweb_session_cache_hits", "Credentials signed from a cached STS session.", registry=self.registry
        )
        self.session_cache_misses = Counter(
            "ccweb_session_cache_misses", "Credential requests that needed an STS call (theirs or one in flight).",
            registry=self.registry,
        )
        self.key_refreshes = Counter(
            "ccweb_key_refreshes", "Fetches of an issuer's key set by issuer and result: ok or error.",
            ["issuer", "result"], registry=self.registry,
        )
        self._decided: dict[tuple[str, str], Counter] = {}
        self._directory = multiprocess_dir()
        self._workers: CollectorRegistry | None = None
        if self._directory is not None:
            self._workers = CollectorRegistry()
            MultiProcessCollector(self._workers, path=self._directory)  # type: ignore[no-untyped-call]

    def decided(self, rule: str, outcome: str) -> None:
        """Count one credential decision (``decisions`` by rule and outcome; the labelled child is kept)."""
        child = self._decided.get((rule, outcome))
        if child is None:
            child = self._decided[rule, outcome] = self.decisions.labels(rule=rule, outcome=outcome)
        child.inc()

    def exposition(self) -> bytes:
        """The text format for ``/metrics``: every worker's counts added up, in multiprocess mode."""
        return generate_latest(self._workers or self.registry)


def route_template(routes: Iterable[BaseRoute], scope: Scope) -> str:
    """The path template of the route ``scope`` is for (``/v1/credentials``), or ``UNMATCHED``."""
    partial: str | None = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "path", UNMATCHED))
        if match is Match.PARTIAL and partial is None:  # the path matched, the method did not (405)
            partial = str(getattr(route, "path", UNMATCHED))
    return partial or UNMATCHED


class RequestMetrics:
    """Count and time every HTTP request by route template and status (a pure ASGI middleware). ``routes`` is
    the app's route list, matched here so that refusals made before routing are labelled too."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, routes: Iterable[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self._children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}  # by route template and status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception escaped to the server error handler

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            matched = scope.get("route")  # set by the router on the very scope it was given
            route = str(getattr(matched, "path", "")) or route_template(self.routes, scope)
            children = self._children.get((route, status))
            if children is None:
                children = self._children[route, status] = (
                    self.metrics.requests.labels(route=route, status=str(status)),
                    self.metrics.request_latency.labels(route=route),
                )
            children[0].inc()
            children[1].observe(time.perf_counter() - started)
