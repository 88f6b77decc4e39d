"""`ccweb serve` as an operator runs it: refuses a bad file at start-up, serves a good one."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from support import wait_until_healthy

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "service"), str(ROOT / "helper")]),
       "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "example", "AWS_REGION": "us-east-1"}

GOOD = """
issuers:
  - name: corp
    issuer: http://127.0.0.1:9/
    audiences: [ccweb]
rules:
  - name: everyone
    issuer: corp
    role_arn: arn:aws:iam::111122223333:role/ccweb
    repositories: ['*']
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])



def test_serve_refuses_an_invalid_file_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "policy.yaml"
    config.write_text(GOOD.replace("arn:aws:iam::111122223333:role/ccweb", "arn:aws:iam::1:role/x"))
    result = subprocess.run([sys.executable, "-m", "ccweb", "serve", "--config", str(config), "--port", "0"],
                            env=ENV, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "rules[0].role_arn: not an IAM role ARN" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_without_a_config_says_how_to_name_one() -> None:
    env = {k: v for k, v in ENV.items() if k != "CCWEB_CONFIG"}
    result = subprocess.run([sys.executable, "-m", "ccweb", "serve"], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2
    assert "--config" in result.stderr and "CCWEB_CONFIG" in result.stderr


def test_serve_runs_two_workers_from_the_environment_config(tmp_path: Path) -> None:
    config = tmp_path / "policy.yaml"
    config.write_text(GOOD)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "ccweb", "serve", "--port", str(port), "--workers", "2"],
        env={**ENV, "CCWEB_CONFIG": str(config)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.communicate()[1]
                assert time.monotonic() < deadline, "the service did not start"
                time.sleep(0.2)
        assert health.json() == {"status": "ok"}
        # the other worker may still be starting: a bound for its connection to wait in, not a measurement
        denied = httpx.post(f"http://127.0.0.1:{port}/v1/credentials", json={}, timeout=60)
        assert denied.status_code == 401
        assert denied.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        if sys.platform == "linux":
            # 64 clients connecting at once (CI jobs starting together, a load balancer filling its pool) are
            # spread over both workers, not all taken by whichever woke first.
            clients = []
            for _ in range(64):  # all connecting at once, as wrk or a crowd of jobs do
                client = socket.socket()
                client.setblocking(False)
                client.connect_ex(("127.0.0.1", port))
                clients.append(client)
            try:
                held = _connections_by_worker(server.pid, port, expected=64)
            finally:
                for client in clients:
                    client.close()
            assert len(held) == 2 and min(held.values()) >= 8, held
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert "Traceback" not in stderr


CHANGED = GOOD.replace("audiences: [ccweb]", "audiences: [ccweb, other]") + "ci_audience: other\n"
RELOADED = re.compile(r"\S+ \S+ INFO +ccweb\.reload: policy reloaded \(SIGHUP\): ")  # a text line, not JSON


@pytest.mark.parametrize("workers", [1, 2])
def test_every_worker_takes_its_settings_from_the_command_line(tmp_path: Path, workers: int) -> None:
    """The policy file, the reload interval (0: on SIGHUP only) and the log format given on the command line
    reach every worker; the environment's CCWEB_CONFIG, naming another file, does not."""
    config = tmp_path / "policy.yaml"
    config.write_text(GOOD)
    port = free_port()
    log = tmp_path / "serve.log"

    def audiences() -> set[str]:  # a new connection each: the kernel spreads them over the workers
        return {httpx.get(f"http://127.0.0.1:{port}/.well-known/ccweb", timeout=5).json()["audience"]
                for _ in range(8)}

    with log.open("w") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "ccweb", "serve", "--config", "policy.yaml", "--port", str(port),
             "--workers", str(workers), "--reload-interval", "0", "--log-format", "text"],
            cwd=tmp_path, env={**ENV, "CCWEB_CONFIG": str(tmp_path / "absent.yaml")},
            stdout=subprocess.DEVNULL, stderr=stderr, text=True,
        )
    try:
        wait_until_healthy(server, f"http://127.0.0.1:{port}")
        wait_for_startups(server, log, workers)  # a SIGHUP before a worker's own handler is set would end it
        assert audiences() == {"ccweb"}
        config.write_text(CHANGED)
        time.sleep(3)  # longer than the default interval (2 s), after which every worker would have reloaded
        assert audiences() == {"ccweb"}
        server.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while len(RELOADED.findall(log.read_text())) < workers:
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert audiences() == {"other"}
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = log.read_text()
    assert len(RELOADED.findall(text)) == workers, text
    assert "Traceback" not in text


def wait_for_startups(server: subprocess.Popen[str], log: Path, workers: int) -> None:
    """Until each of ``workers`` has said in ``log`` that its startup is complete (by then it handles SIGHUP
    itself); a bound of 60 s against a hang, not a measurement."""
    deadline = time.monotonic() + 60
    while log.read_text().count("Application startup complete.") < workers:
        assert server.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def _connections_by_worker(master: int, port: int, expected: int) -> dict[int, int]:
    """How many established connections to ``port`` each worker (child of ``master``) holds, once ``expected``
    are accepted (or after 60 s: a worker may start seconds after the other on a busy machine)."""
    deadline = time.monotonic() + 60
    while True:
        established = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as lines:
                for line in list(lines)[1:]:
                    fields = line.split()
                    if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                        established.add(fields[9])  # the socket's inode
        held: dict[int, int] = {}
        for child in Path("/proc").iterdir():
            if not child.name.isdigit():
                continue
            try:
                if int((child / "stat").read_text().rsplit(")", 1)[1].split()[1]) != master:
                    continue
                inodes = {os.readlink(fd).removeprefix("socket:[").rstrip("]") for fd in (child / "fd").iterdir()}
            except OSError:
                continue
            count = len(inodes & established)
            if count:
                held[int(child.name)] = count
        if sum(held.values()) >= expected or time.monotonic() > deadline:
            return held
        time.sleep(0.1)


def test_workers_listen_on_sockets_that_say_tcp(monkeypatch: pytest.MonkeyPatch) -> None:
    """asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets whose protocol says TCP; without it
    every keep-alive request behind a load balancer waited about 40 ms for a delayed ACK."""
    from ccweb import server

    seen: list[socket.socket] = []

    class Recorder:
        def __init__(self, _: object, sockets: list[socket.socket], port: int | None) -> None:
            seen.extend(sockets)
            self.port = port

        def run(self) -> None:
            assert seen[0].proto == socket.IPPROTO_TCP
            assert seen[0].type == socket.SOCK_STREAM
            if sys.platform == "linux":  # every worker listens on a socket of its own, on the same port
                assert seen[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
                assert self.port == seen[0].getsockname()[1] != 0

    monkeypatch.setattr(server, "Supervisor", Recorder)
    settings = server.ServeSettings(config_path="/nonexistent.yaml", reload_interval=0, log_level="info",
                                    log_format="json")
    server.run_workers(server.app_factory(settings), host="127.0.0.1", port=0, workers=2)
    assert len(seen) == 1 and seen[0].fileno() == -1  # closed after the supervisor returned


@pytest.mark.skipif(sys.platform != "linux", reason="per-worker sockets are Linux's")
def test_serve_refuses_a_port_another_server_shares_out(tmp_path: Path) -> None:
    """Each worker's socket says SO_REUSEPORT; that must not let a second service join one already listening
    (an old one left running) and take a share of its connections."""
    config = tmp_path / "policy.yaml"
    config.write_text(GOOD)
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "ccweb", "serve", "--config", str(config), "--port", str(port), "--workers", "2"],
            env=ENV, capture_output=True, text=True, timeout=60, check=False,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1 port {port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_one_worker_serves_metrics_on_a_port_and_host_of_its_own(tmp_path: Path) -> None:
    """With --metrics-port the API's port has no /metrics; the listener binds --metrics-host (default --host), and
    the requests the worker served are counted there; SIGHUP still reaches the worker."""
    config = tmp_path / "policy.yaml"
    config.write_text(GOOD)
    port, metrics_port = free_port(), free_port()
    url, scrape = f"http://127.0.0.1:{port}", f"http://127.0.0.2:{metrics_port}/metrics"
    log = tmp_path / "serve.log"
    with log.open("w") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "ccweb", "serve", "--config", str(config), "--port", str(port),
             "--metrics-port", str(metrics_port), "--metrics-host", "127.0.0.2", "--reload-interval", "0",
             "--log-format", "text"],
            env=ENV, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
        )
    try:
        wait_until_healthy(server, url)
        assert httpx.post(f"{url}/v1/credentials", json={}).status_code == 401
        assert httpx.get(f"{url}/metrics").status_code == 404
        metrics = httpx.get(scrape)
        assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain; version=")
        assert 'ccweb_requests_total{route="/v1/credentials",status="401"} 1.0' in metrics.text
        assert 'ccweb_requests_total{route="unmatched",status="404"} 1.0' in metrics.text
        assert httpx.head(scrape).status_code == 200 and httpx.post(scrape).status_code == 405
        assert httpx.get(f"http://127.0.0.2:{metrics_port}/").status_code == 404
        with pytest.raises(httpx.ConnectError):  # bound to --metrics-host only
            httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
        config.write_text(CHANGED)
        server.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while not RELOADED.search(log.read_text()):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert httpx.get(f"{url}/.well-known/ccweb").json()["audience"] == "other"
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = log.read_text()
    assert f"metrics on http://127.0.0.2:{metrics_port}/metrics" in text
    assert "Traceback" not in text


METRICS_REFUSALS = {
    # name: (extra arguments, exit status, what stderr says); {port} is the API's port, {busy} one in use
    "the API's own port": (["--metrics-port", "{port}"], 2, "--metrics-port {port} is the API's --port"),
    "a host without a port": (["--metrics-host", "127.0.0.1"], 2, "--metrics-host needs --metrics-port"),
    "not a port": (["--metrics-port", "70000"], 2, "'70000' is not a port number from 0 to 65535"),
    "a port in use": (["--metrics-port", "{busy}"], 1,
                      "cannot listen on 127.0.0.1 port {busy}: Address already in use"),
}


@pytest.mark.parametrize("case", METRICS_REFUSALS)
def test_serve_refuses_a_metrics_listener_it_cannot_have(tmp_path: Path, case: str) -> None:
    config = tmp_path / "policy.yaml"
    config.write_text(GOOD)
    extra, status, said = METRICS_REFUSALS[case]
    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        values = {"port": port, "busy": busy.getsockname()[1]}
        result = subprocess.run(
            [sys.executable, "-m", "ccweb", "serve", "--config", str(config), "--port", str(port),
             *(arg.format(**values) for arg in extra)],
            env=ENV, capture_output=True, text=True, timeout=60, check=False,
        )
    assert result.returncode == status, result.stderr
    assert said.format(**values) in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_help_names_the_metrics_listener() -> None:
    result = subprocess.run([sys.executable, "-m", "ccweb", "serve", "--help"], env=ENV, capture_output=True,
                            text=True, timeout=60, check=True)
    assert "--metrics-port PORT" in result.stdout and "--metrics-host HOST" in result.stdout
