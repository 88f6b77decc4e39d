"""The app as uvicorn's workers build it, and the process supervisor ``ccweb serve --workers N`` runs.

``ccweb serve`` makes one ``ServeSettings`` from its command line (and ``CCWEB_CONFIG``); every worker gets a
copy of it (pickled into the worker process with the rest of uvicorn's configuration) and builds its app from
it. Every worker reloads the policy by itself, when the file changes or on SIGHUP. Workers count their metrics
in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's own variable: a private temporary directory unless the
operator names one), so that ``/metrics`` adds up every worker's counts whichever worker answers.

With ``--metrics-port`` (``metrics`` below) the API's port has no ``/metrics``: the supervisor serves it on a
listener of its own (``MetricsListener``), from the same files, so that a scrape never waits for a busy
worker and the port can be closed to everyone but the monitoring system. One worker is then run under the
supervisor too.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from fastapi import FastAPI
from uvicorn.config import Config
from uvicorn.supervisors import Multiprocess

from ccweb import limits, logs, metrics
from ccweb.app import create_app
from ccweb.config import Config as PolicyConfig
from ccweb.config import load_config
from ccweb.sts import BotoSTS
from ccweb.webconfig import MIN_SESSION_SECRET_BYTES, read_secret

log = logging.getLogger("ccweb.server")


@dataclass(frozen=True)
class ServeSettings:
    """What every worker of ``ccweb serve`` builds its app from."""

    config_path: str  # absolute: the policy file, loaded at start and reloaded when it changes
    reload_interval: float  # seconds between checks of that file; 0: on SIGHUP only
    log_level: Literal["debug", "info", "warning", "error"]
    log_format: Literal["json", "text"]
    public_metrics: bool = True  # /metrics on the API's port; False with --metrics-port (the supervisor serves it)


def web_secrets(config: PolicyConfig) -> bytes | None:
    """The web page's session secret when ``web:`` configures sign-in (None without), after checking that its
    client secret, if any, can be read too; ConfigError (one sentence naming the key, never the value) else."""
    web = config.web
    if not web.sign_in or web.session_secret is None:
        return None
    if web.client_secret is not None:
        read_secret(web.client_secret, "web.client_secret")
    return read_secret(web.session_secret, "web.session_secret", minimum=MIN_SESSION_SECRET_BYTES)


def build_app(settings: ServeSettings) -> FastAPI:
    """The app of one worker (uvicorn calls this in the worker, through ``app_factory``)."""
    if threading.current_thread() is threading.main_thread():
        # Until the app's lifespan takes SIGHUP over, one must not stop this worker (its default action).
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    logs.setup(settings.log_level, settings.log_format)
    config = load_config(settings.config_path)
    return create_app(config, sts=BotoSTS(region=config.aws.region), config_path=settings.config_path,
                      reload_interval=settings.reload_interval, reload_on_sighup=True,
                      metrics_route=settings.public_metrics, web_session_secret=web_secrets(config))


def app_factory(settings: ServeSettings) -> Callable[[], FastAPI]:
    """uvicorn's app factory for ``settings``: a module-level function and a frozen dataclass, so that it pickles
    into every worker process."""
    return functools.partial(build_app, settings)


def uvicorn_options(host: str, port: int, workers: int) -> dict[str, Any]:
    """uvicorn's settings for ``ccweb serve``."""
    return {
        "host": host,
        "port": port,
        "workers": workers,
        "log_config": None,
        "access_log": False,
        "proxy_headers": True,
        "server_header": False,
        "http": "h11",  # the parser whose head limit limits.SERVER_OPTIONS raises (httptools has none)
        **limits.SERVER_OPTIONS,
    }


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def listening_socket(host: str, port: int, backlog: int, *, share_port: bool = False) -> socket.socket:
    """A TCP listening socket, inheritable by the workers. It says IPPROTO_TCP, not 0 as uvicorn's does:
    asyncio sets TCP_NODELAY only on sockets that say TCP, and without it every keep-alive request behind a
    load balancer waits about 40 ms for a delayed ACK (Nagle). ``share_port``: SO_REUSEPORT, so that every
    worker can listen on the same port with a socket of its own."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if share_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def _cannot_listen(host: str, port: int, exc: OSError) -> NoReturn:
    """Exit 1 with one sentence and no traceback (called while handling ``exc``)."""
    log.error("cannot listen on %s port %d: %s", host, port, exc.strerror or exc)
    raise SystemExit(1) from None


def _listen(host: str, port: int, backlog: int, *, share_port: bool = False) -> socket.socket:
    """``listening_socket``, or exit 1 with one sentence (an address in use, a host not of this machine)."""
    try:
        return listening_socket(host, port, backlog, share_port=share_port)
    except OSError as exc:
        _cannot_listen(host, port, exc)


def _free_port(host: str, port: int) -> int:
    """``port`` (or, for 0, one the system picks) after checking that no server is on it: SO_REUSEPORT would
    let the workers' binds join another server already on the port (an old ccweb left running) and share its
    connections, so bind once without it first, as a plain bind would fail on a port in use."""
    try:
        with socket.socket(_family(host)) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            return int(probe.getsockname()[1])
    except OSError as exc:
        _cannot_listen(host, port, exc)


class MetricsListener:
    """``/metrics`` on a listener of its own, served by the supervisor from the files every worker counts in
    (``metrics.directory_exposition``): a uvicorn server on ``sock`` in a thread of this process, answering
    ``/metrics`` and nothing else."""

    def __init__(self, sock: socket.socket, directory: str) -> None:
        import uvicorn  # noqa: PLC0415

        app = metrics.exposition_app(metrics.directory_exposition(directory))
        config = uvicorn.Config(app, log_config=None, access_log=False, server_header=False, lifespan="off",
                                http="h11", proxy_headers=False)
        self._server = uvicorn.Server(config)
        self._sock = sock
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="ccweb-metrics", daemon=True)

    def __enter__(self) -> MetricsListener:
        self._thread.start()
        host, port = self._sock.getsockname()[:2]
        log.info("metrics on http://%s/metrics", f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


class Supervisor(Multiprocess):
    """uvicorn's worker supervisor, except that:

    - SIGHUP goes on to every worker, which reloads the policy in place. (uvicorn's own SIGHUP replaces every
      worker: each would lose its cached STS sessions, and with an invalid file the first replacement would
      fail to start.)
    - With ``port`` (Linux), every worker gets a listening socket of its own on that port (SO_REUSEPORT), and
      the kernel spreads new connections evenly across them. With one shared socket, the worker that wakes
      first takes every connection waiting (asyncio accepts up to the backlog at once): a burst of clients, or
      a load balancer opening its pool of keep-alive connections, can land on a single worker while the
      others idle. This process hands each socket to one worker and closes its own copy, so no socket is left
      that nobody accepts on; a worker's socket closes with it, and its replacement gets a new one.
    """

    def __init__(self, config: Config, sockets: list[socket.socket], *, port: int | None = None) -> None:
        super().__init__(config, sockets)
        self._port = port
        self._handed: list[socket.socket] = []

    @property
    def sockets(self) -> list[socket.socket]:
        """What the next worker started listens on (uvicorn reads this for every worker it starts)."""
        if self._port is None:
            return self._shared
        sock = self._shared.pop() if self._shared else listening_socket(
            self.config.host, self._port, self.config.backlog, share_port=True
        )
        self._handed.append(sock)
        return [sock]

    @sockets.setter
    def sockets(self, value: list[socket.socket]) -> None:
        self._shared = list(value)

    def _close_handed(self) -> None:
        # A started worker holds its own descriptor (spawn passes it at exec): this process's copy can go.
        while self._handed:
            self._handed.pop().close()

    def init_processes(self) -> None:
        super().init_processes()
        self._close_handed()

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        self._close_handed()

    def handle_signals(self) -> None:
        super().handle_signals()  # SIGTTIN starts one more worker
        self._close_handed()

    def handle_hup(self) -> None:
        for process in self.processes:
            if process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGHUP)


def run_workers(app: str | Callable[[], Any], *, metrics_address: tuple[str, int] | None = None,
                **options: Any) -> None:
    """What ``uvicorn.run(app, factory=True, workers=N, …)`` does, with ``Supervisor``, and the workers'
    metrics directory around it (made before they start, removed after they stop); with ``metrics_address``
    (host, port), the ``MetricsListener`` there. ``app`` is a factory that pickles, or the import string of one;
    the benchmarks serve their bare reference app through this same path."""
    import uvicorn  # noqa: PLC0415

    config = uvicorn.Config(app, factory=True, **options)
    per_worker = sys.platform == "linux"  # elsewhere SO_REUSEPORT does not spread connections: one shared socket
    port = _free_port(config.host, config.port) if per_worker else config.port
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(_listen(config.host, port, config.backlog, share_port=per_worker))
        listener = None if metrics_address is None else stack.enter_context(_listen(*metrics_address, config.backlog))
        directory = stack.enter_context(metrics.multiprocess_directory())
        if listener is not None:
            stack.enter_context(MetricsListener(listener, directory))
        Supervisor(config, sockets=[sock], port=port if per_worker else None).run()


def serve(settings: ServeSettings, host: str, port: int, workers: int,
          metrics_address: tuple[str, int] | None = None) -> None:
    """Run the API until stopped: one process, or ``workers`` of them under ``Supervisor``; with
    ``metrics_address`` (host, port), ``/metrics`` there (and not on the API's port), one worker included."""
    options = uvicorn_options(host, port, workers)
    if workers > 1 or metrics_address is not None:
        # SIGHUP to this process reaches every worker
        run_workers(app_factory(settings), metrics_address=metrics_address, **options)
    else:
        import uvicorn  # noqa: PLC0415

        uvicorn.run(app_factory(settings), factory=True, **options)
