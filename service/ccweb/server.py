"""The app as uvicorn's workers build it, and the process supervisor ``ccweb serve --workers N`` runs.

Configuration comes from the environment ``ccweb serve`` sets: ``CCWEB_CONFIG`` (the policy file),
``CCWEB_RELOAD_INTERVAL`` (seconds between checks of that file; 0: on SIGHUP only), ``CCWEB_LOG_LEVEL``,
``CCWEB_LOG_FORMAT``. Every worker reloads the policy by itself, when the file changes or on SIGHUP. Workers
count their metrics in ``PROMETHEUS_MULTIPROC_DIR`` (a private temporary directory unless the operator names
one), so that ``/metrics`` adds up every worker's counts whichever worker answers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from typing import Any

from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from ccweb import limits, logs, metrics
from ccweb.app import create_app
from ccweb.config import load_config
from ccweb.reload import RELOAD_INTERVAL_SECONDS
from ccweb.sessions import BotoSTS

APP = "ccweb.server:app_from_environment"


def app_from_environment() -> FastAPI:
    if threading.current_thread() is threading.main_thread():
        # Until the app's lifespan takes SIGHUP over, one must not stop this worker (its default action).
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    logs.setup(os.environ.get("CCWEB_LOG_LEVEL", "info"), os.environ.get("CCWEB_LOG_FORMAT", "json"))
    path = os.environ["CCWEB_CONFIG"]
    config = load_config(path)
    interval = float(os.environ.get("CCWEB_RELOAD_INTERVAL", RELOAD_INTERVAL_SECONDS))
    return create_app(config, sts=BotoSTS(region=config.aws.region), config_path=path, reload_interval=interval,
                      reload_on_sighup=True)


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


class Supervisor(Multiprocess):
    """uvicorn's worker supervisor, except that SIGHUP goes on to every worker, which reloads the policy in
    place. (uvicorn's own SIGHUP replaces every worker: each would lose its cached STS sessions, and with an
    invalid file the first replacement would fail to start.)"""

    def handle_hup(self) -> None:
        for process in self.processes:
            if process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGHUP)


def run_workers(app: str = APP, **options: Any) -> None:
    """What ``uvicorn.run(app, factory=True, workers=N, …)`` does, with ``Supervisor``, and the workers'
    metrics directory around it (made before they start, removed after they stop). ``app`` names a factory;
    the benchmarks serve their bare reference app through this same path."""
    import uvicorn  # noqa: PLC0415

    config = uvicorn.Config(app, factory=True, **options)
    # uvicorn's socket says protocol 0, and asyncio sets TCP_NODELAY only on sockets that say TCP: recreated
    # from the descriptor, the protocol is read back as TCP, so every worker answers without Nagle's 40 ms wait.
    sock = socket.socket(fileno=config.bind_socket().detach())
    try:
        with metrics.multiprocess_directory():
            Supervisor(config, sockets=[sock]).run()
    finally:
        sock.close()
