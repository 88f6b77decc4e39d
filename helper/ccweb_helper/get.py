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
    from collections.abc import Iterator, Mapping
    from typing import IO

NOT_TEXT = (
    "git sent a repository path that is not UTF-8 text (is there a byte such as %FF in the remote's URL?); a "
    "repository path ccweb can sign for is text: check the remote's URL."
)
NO_PATH = (
    "git did not send the repository path, and a CodeCommit password is signed for one repository; run "
    "`git config --global credential.useHttpPath true`."
)


def run(stdin: IO[str], stdout: IO[str], stderr: IO[str], env: Mapping[str, str] | None = None) -> int:
    """Answer git: the credential, or one sentence on stderr and ``quit=1``, whatever happens from reading
    git's input to writing the answer (git must not go on to prompt, nor show a traceback)."""
    try:
        request_ = parse(_lines(stdin))
        answer = get(request_, os.environ if env is None else env, stderr)
        try:
            text = format_answer(answer)
        except ValueError as exc:  # names the key, never the value
            raise HelperError(f"the service sent a credential git cannot use ({exc}).") from None
        _write(stdout, text.encode("ascii"))  # every value is printable ASCII (``_credential``)
        return 0
    except HelperError as exc:
        return _refuse(one_line(exc.message), stdout, stderr)
    except Exception as exc:  # noqa: BLE001 (a last resort: git must not prompt, and no traceback shows a value)
        return _refuse(f"ccweb-helper failed unexpectedly ({type(exc).__name__}); run `ccweb-helper doctor` to "
                       "check the setup, and report it if it persists.", stdout, stderr)


def _refuse(sentence: str, stdout: IO[str], stderr: IO[str]) -> int:
    """Tell git to stop (no prompt, no stored password tried), and explain on stderr."""
    _write(stdout, b"quit=1\n")
    stderr.write(f"ccweb: {sentence}\n")
    stderr.flush()
    return 1


def _lines(stdin: IO[str]) -> Iterator[str]:
    """git's input line by line, read as bytes and decoded as UTF-8 whatever the locale (a strict one would
    end in a traceback): a byte that is not UTF-8 (git percent-decodes ``%ff`` in a remote's URL) is kept as
    a surrogate (``surrogateescape``), so a host that is not ours is still left to the next helper, and one
    that is refuses it (``NOT_TEXT``)."""
    raw = getattr(stdin, "buffer", None)
    if raw is None:  # already text (a test's StringIO)
        yield from stdin
        return
    for line in raw:
        yield line.decode("utf-8", "surrogateescape")


def _write(stream: IO[str], data: bytes) -> None:
    """``data`` (ASCII) to git in one write, to the bytes under ``stream`` where it has them: no encoding of
    the console or locale (cp1252, a strict one) can fail in the middle of an answer."""
    raw = getattr(stream, "buffer", None)
    if raw is None:
        stream.write(data.decode("ascii"))
    else:
        stream.flush()
        raw.write(data)
        raw.flush()
    stream.flush()


def _text(value: str) -> bool:
    """Whether ``value`` is text: none of the bytes ``_lines`` kept because they are not UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
    service = None if configured is None else parse_service_url(*configured)
    seconds = timeout(env)
    if parse_codecommit_host(host) is None and (service is None or not _advertised(service, host, seconds, env)):
        return []  # not ours: let git ask the next helper
    if service is None:
        raise HelperError(
            f"no ccweb service is configured for {host}: set CCWEB_URL, or run "
            "`git config --global ccweb.url https://<your ccweb service>`."
        )
    if not req.get("path").strip("/"):
        raise HelperError(NO_PATH)
    if not _text(req.get("path")):
        raise HelperError(NOT_TEXT)
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
    for key, value in (("username", username), ("password", password)):
        if not (value.isascii() and value.isprintable()):  # all of a CodeCommit credential is; nothing else is sent
            raise HelperError(f"{service.url} sent a credential git cannot use (its {key} is not printable ASCII); "
                              "is it the ccweb service?")
    return [("username", username), ("password", password), ("password_expiry_utc", str(expiry))]
