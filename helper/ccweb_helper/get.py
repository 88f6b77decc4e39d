"""``ccweb-helper get``: answer git with a CodeCommit username and password from the ccweb service."""

from __future__ import annotations

import os

from ccweb_helper import discovery
from ccweb_helper.client import HelperError, Response, ServiceURL, error_sentence, one_line, parse_service_url, request
from ccweb_helper.hosts import parse_codecommit_host, split_host
from ccweb_helper.protocol import Request, format_answer, parse
from ccweb_helper.sources import find_token, service_url, timeout

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import IO

NO_PATH = (
    "git did not send the repository path, and a CodeCommit password is signed for one repository; run "
    "`git config --global credential.useHttpPath true`."
)


def run(stdin: IO[str], stdout: IO[str], stderr: IO[str], env: Mapping[str, str] | None = None) -> int:
    request_ = parse(stdin)
    try:
        answer = get(request_, os.environ if env is None else env, stderr)
        try:
            text = format_answer(answer)
        except ValueError as exc:  # names the key, never the value
            raise HelperError(f"the service sent a credential git cannot use ({exc}).") from None
    except HelperError as exc:
        return _refuse(one_line(exc.message), stdout, stderr)
    except Exception as exc:  # noqa: BLE001 (a last resort: git must not prompt, and no traceback shows a value)
        return _refuse(f"ccweb-helper failed unexpectedly ({type(exc).__name__}); run `ccweb-helper doctor` to "
                       "check the setup, and report it if it persists.", stdout, stderr)
    stdout.write(text)
    stdout.flush()
    return 0


def _refuse(sentence: str, stdout: IO[str], stderr: IO[str]) -> int:
    """Explain on stderr and tell git to stop: no prompt, no stored password tried."""
    stderr.write(f"ccweb: {sentence}\n")
    stdout.write("quit=1\n")
    stdout.flush()
    return 1


def _remote_url(req: Request) -> str:
    path = req.get("path").lstrip("/")
    return f"{req.get('protocol')}://{req.get('host')}/{path}"


def _advertised(service: ServiceURL, host: str, seconds: float, env: Mapping[str, str]) -> bool:
    """Whether ``host`` is one of the service's git endpoints (``GET /.well-known/ccweb``).

    A service that cannot be asked is a failure, not a "no": the helper was configured to speak for this
    host, and falling through would let git prompt or try a stale stored password.
    """
    return host.lower() in discovery.fetch(service, seconds, env).git_endpoints


def get(req: Request, env: Mapping[str, str], stderr: IO[str]) -> list[tuple[str, str]]:
    protocol, host = req.get("protocol").lower(), req.get("host")
    if protocol not in ("http", "https") or not host:
        return []
    try:
        split_host(host)
    except ValueError:
        return []
    configured = service_url(env, _remote_url(req))
    seconds = timeout(env)
    if parse_codecommit_host(host) is None and (
        configured is None or not _advertised(parse_service_url(*configured), host, seconds, env)
    ):
        return []  # not ours: let git ask the next helper
    if configured is None:
        raise HelperError(
            f"no ccweb service is configured for {host}: set CCWEB_URL, or run "
            "`git config --global ccweb.url https://<your ccweb service>`."
        )
    service = parse_service_url(*configured)
    if not req.get("path").strip("/"):
        raise HelperError(NO_PATH)
    token = find_token(env, service, seconds, stderr=stderr, cached_discovery=True).token
    answer = request(
        service, "POST", "/v1/credentials", timeout=seconds, token=token,
        body={"protocol": protocol, "host": host, "path": req.get("path")},
    )
    if answer.status != 200:
        raise HelperError(error_sentence(answer))
    return _credential(answer, service)


def _credential(answer: Response, service: ServiceURL) -> list[tuple[str, str]]:
    username, password, expiry = (answer.body.get(k) for k in ("username", "password", "password_expiry_utc"))
    if not (isinstance(username, str) and username and isinstance(password, str) and password):
        raise HelperError(f"{service.url} answered without a username and password; is it the ccweb service?")
    if isinstance(expiry, bool) or not isinstance(expiry, int):
        raise HelperError(f"{service.url} answered without password_expiry_utc; is it the ccweb service?")
    return [("username", username), ("password", password), ("password_expiry_utc", str(expiry))]
