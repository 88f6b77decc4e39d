"""What the POSIX sh helper answers git (``get``, ``store``, ``erase``), under dash, bash and BusyBox sh, against a
loopback stand-in of a ccweb service's plain-text API: nothing for hosts that are not ours, the credential lines
for those that are, one ``ccweb:`` sentence and ``quit=1`` for every failure, TLS always verified."""

from __future__ import annotations

import contextlib
import http.server
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccweb.shell_dist import helper_script
from ccweb_helper.hosts import parse_codecommit_host
from shell.hostsample import sample, zone_elsewhere
from shell.shells import CREDENTIAL, Answer, ShellHelper, TextService, jwt
from support import self_signed, serve_http

TOKEN = jwt({"aud": "ccweb", "sub": "job"})
GIT_INPUT_AFTER_FETCH = ("protocol=https\nhost=git-codecommit.us-east-1.amazonaws.com\npath=v1/repos/demo\n"
                         "username=u\npassword=p\npassword_expiry_utc=1796638500\n\n")


def test_store_and_erase_print_nothing_and_ask_no_one(shell_helper: ShellHelper, tmp_path: Path) -> None:
    service = TextService()
    with service.serving() as url:
        env = shell_helper.env(tmp_path / "home", CCWEB_URL=url, CCWEB_TOKEN=TOKEN)
        for operation in ("store", "erase"):
            result = shell_helper.run([operation], env, GIT_INPUT_AFTER_FETCH)
            assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert service.asked == []
    assert shell_helper.command_lines() == ""  # not even a tool was started


@pytest.mark.parametrize(("protocol", "host"), [
    ("https", "github.com"),
    ("https", "gitlab.example.com:8443"),
    ("https", "git-codecommit.us-east-1.amazonaws.com.evil.example"),
    ("https", "evil-git-codecommit.us-east-1.amazonaws.com"),
    ("https", "git-codecommit.us-east-1.amazonaws.com:8443"),
    ("ssh", "git-codecommit.us-east-1.amazonaws.com"),
    ("https", "git-codecommit.s3.amazonaws.com"),
    ("https", "git-codecommit.x.amazonaws.com.cn"),
    ("https", "evil.git-codecommit.us-east-1.vpce.amazonaws.com"),
    ("https", "vpce-0123456789abcdef0-abcdefgh-us-west-2a.git-codecommit.us-east-1.vpce.amazonaws.com"),
], ids=["github", "other-port", "suffix", "prefix", "codecommit-other-port", "ssh", "not-a-region", "not-china",
        "not-an-endpoint-id", "zone-elsewhere"])
def test_a_host_neither_codecommit_nor_the_service_s_is_left_to_the_next_helper(
    shell_helper: ShellHelper, tmp_path: Path, protocol: str, host: str,
) -> None:
    service = TextService(discovery="audience=ccweb\ngit_endpoint=git.internal.example:8443\n")
    with service.serving() as url:
        env = shell_helper.env(tmp_path / "home", CCWEB_URL=url, CCWEB_TOKEN=TOKEN)
        result = shell_helper.get(env, host, protocol=protocol)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert "POST /v1/git-credential" not in service.paths()


def host_test(script: str) -> str:
    """The served script's own CodeCommit host test (``codecommit_host`` and what it uses) as a program that prints
    every line of its input the test accepts."""
    settings = [re.search(rf"^{name}=.*$", script, re.MULTILINE) for name in ("CODECOMMIT_HOSTS", "CR")]
    functions = [re.search(rf"^{name}\(\) \{{\n.*?^\}}$", script, re.MULTILINE | re.DOTALL)
                 for name in ("matches", "codecommit_host")]
    parts = [match[0] for match in settings + functions if match is not None]
    assert len(parts) == 4
    return "\n".join(["NL='\n'", *parts, 'while IFS= read -r host; do codecommit_host "$host" && echo "$host"; done'])


def test_the_script_and_the_python_parser_agree_on_endpoints_and_lookalikes(shell_helper: ShellHelper,
                                                                            tmp_path: Path) -> None:
    """Hosts and lookalikes (a label that is no region, an endpoint id too short, a zone in another region, another
    port...): the script answers for exactly those the Python helper answers for. The sample's VPC endpoint names
    that are CodeCommit hosts or would be but for their zone (the ERE alone cannot tell those: the script compares
    zone and region itself; tests/service/test_shell_dist.py compares the ERE on the whole sample), and 250 more."""
    everything = sample(5000)
    zonal = [h for h in everything if h.startswith("vpce-") and (parse_codecommit_host(h) or zone_elsewhere(h))]
    hosts = zonal + [host for host in everything if host not in zonal][:250]
    assert len(zonal) > 200 and sum(map(zone_elsewhere, zonal)) > 20
    env = shell_helper.env(tmp_path / "home", PATH=str(shell_helper.bin.parent / "real"))  # no recording: quicker
    found = subprocess.run([*shell_helper.command[:-1], "-c", host_test(helper_script().decode())], env=env,
                           input="".join(f"{host}\n" for host in hosts), capture_output=True, text=True, timeout=300,
                           check=False)
    assert found.stderr == ""
    assert found.stdout.splitlines() == [host for host in hosts if parse_codecommit_host(host) is not None]


def test_without_a_service_configured_another_host_costs_no_request(shell_helper: ShellHelper, tmp_path: Path) -> None:
    result = shell_helper.get(shell_helper.env(tmp_path / "home"), "github.com", "acme/app.git")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert "curl" not in shell_helper.command_lines()


def test_a_codecommit_host_gets_the_credential_without_asking_discovery(shell_helper: ShellHelper,
                                                                        tmp_path: Path) -> None:
    service = TextService()
    with service.serving() as url:
        env = shell_helper.env(tmp_path / "home", CCWEB_URL=url + "/", CCWEB_TOKEN=f"  {TOKEN}\n")
        result = shell_helper.get(env, "GIT-CODECOMMIT.us-east-2.amazonaws.com", "/v1/repos/app")
    assert (result.returncode, result.stdout, result.stderr) == (0, CREDENTIAL, "")
    assert service.paths() == ["POST /v1/git-credential"]
    asked = service.asked[0]
    assert asked.headers["Authorization"] == f"Bearer {TOKEN}"
    assert asked.body == b"protocol=https\nhost=GIT-CODECOMMIT.us-east-2.amazonaws.com\npath=/v1/repos/app\n"


def test_a_git_endpoint_the_service_names_is_answered_for(shell_helper: ShellHelper, tmp_path: Path) -> None:
    service = TextService(discovery="audience=ccweb\ngit_endpoint=git.internal.example:8443\n")
    with service.serving() as url:
        env = shell_helper.env(tmp_path / "home", CCWEB_TOKEN=TOKEN)
        (tmp_path / "home" / ".gitconfig").write_text(f"[ccweb]\n\turl = {url}\n")  # no CCWEB_URL: git config
        result = shell_helper.get(env, "Git.Internal.Example:8443")
    assert (result.returncode, result.stdout, result.stderr) == (0, CREDENTIAL, "")
    assert service.paths() == ["GET /.well-known/ccweb.txt", "POST /v1/git-credential"]


@pytest.mark.parametrize(("answer", "sentence"), [
    (Answer(403, b"error=access_denied\ndetail=No ccweb rule grants job access to 'demo'.\n"),
     "No ccweb rule grants job access to 'demo'."),
    (Answer(429, b"error=rate_limited\ndetail=Too many requests from you\x1b[2J.\n", (("Retry-After", "7"),)),
     "Too many requests from you?[2J (retry after 7 s)."),
    (Answer(404, b"Not Found"), "has no /v1/git-credential (HTTP 404): upgrade it"),
    (Answer(200, b"username=u\npassword=p\x1b[31m\npassword_expiry_utc=1\n"), "sent a credential git cannot use"),
    (Answer(200, b"username=u\npassword=p\n"), "answered without password_expiry_utc"),
    (Answer(200, b"<html>hello</html>"), "answered without a username and password"),
], ids=["denied", "rate-limited", "old-service", "control-character", "no-expiry", "not-ccweb"])
def test_every_failure_is_one_sentence_and_quit(shell_helper: ShellHelper, tmp_path: Path, answer: Answer,
                                                sentence: str) -> None:
    service = TextService(answer=answer)
    with service.serving() as url:
        result = shell_helper.get(shell_helper.env(tmp_path / "home", CCWEB_URL=url, CCWEB_TOKEN=TOKEN),
                                  "git-codecommit.us-east-1.amazonaws.com")
    assert (result.returncode, result.stdout) == (1, "quit=1\n")
    assert result.stderr.startswith("ccweb: ") and result.stderr.count("\n") == 1
    assert sentence in result.stderr
    assert "\x1b" not in result.stderr


@pytest.mark.parametrize(("settings", "sentence"), [
    ({"CCWEB_URL": "https://user:hunter2@ccweb.example.com"}, "CCWEB_URL must be an https:// URL of the ccweb "
     "service without a user name or password (not shown here)"),
    ({"CCWEB_URL": "http://ccweb.example.com"}, "CCWEB_URL is a plain http:// address"),
    ({"CCWEB_URL": "https://ccweb.example.com?x=1"}, "without a query (?) or fragment (#)"),
    ({"CCWEB_TIMEOUT": "soon"}, "CCWEB_TIMEOUT must be a number of seconds between 0 and 600, not 'soon'."),
    ({"CCWEB_TOKEN": "not a token"}, "CCWEB_TOKEN does not hold a single OIDC token"),
    ({"CCWEB_TOKEN_FILE": "/nonexistent/token"}, "cannot read the token file /nonexistent/token named by "
     "CCWEB_TOKEN_FILE (no such file)."),
    ({"CI": "true"}, "no OIDC token found: set CCWEB_TOKEN to a token of your identity provider, or CCWEB_TOKEN_FILE "
     "to a file that holds one; CI=true, so no interactive login is started"),
    ({"GITLAB_CI": "true"}, "GitLab CI gives jobs an OIDC token only when asked: add `id_tokens:"),
], ids=["userinfo", "plain-http", "query", "timeout", "token", "token-file", "no-token", "gitlab"])
def test_settings_that_cannot_work_are_named(shell_helper: ShellHelper, tmp_path: Path, settings: dict[str, str],
                                             sentence: str) -> None:
    env = shell_helper.env(tmp_path / "home", **{"CCWEB_URL": "https://ccweb.example.com", **settings})
    result = shell_helper.get(env, "git-codecommit.us-east-1.amazonaws.com")
    assert (result.returncode, result.stdout) == (1, "quit=1\n")
    assert sentence in result.stderr, result.stderr
    assert "hunter2" not in result.stderr
    assert "curl" not in shell_helper.command_lines()  # refused before any request


def test_an_unreachable_service_is_named_with_what_to_check(shell_helper: ShellHelper, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"https://127.0.0.1:{probe.getsockname()[1]}"
    env = shell_helper.env(tmp_path / "home", CCWEB_URL=dead, CCWEB_TOKEN=TOKEN, HTTPS_PROXY="http://127.0.0.1:9")
    result = shell_helper.get(env, "git-codecommit.us-east-1.amazonaws.com")
    assert (result.returncode, result.stdout) == (1, "quit=1\n")
    # loopback is never proxied: the sentence is about the service itself, not the (dead) proxy
    assert result.stderr.startswith(f"ccweb: cannot reach the ccweb service at {dead} (curl: ")


def test_tls_is_always_verified_against_ssl_cert_file_or_curl_ca_bundle(shell_helper: ShellHelper,
                                                                        tmp_path: Path) -> None:
    certificate, context = self_signed(tmp_path)
    service = TextService()
    with service.serving(context) as url:
        env = shell_helper.env(tmp_path / "home", CCWEB_URL=url, CCWEB_TOKEN=TOKEN)
        (tmp_path / "home" / ".curlrc").write_text("insecure\n")  # a person's curl settings are not read
        untrusted = shell_helper.get(env, "git-codecommit.us-east-1.amazonaws.com")
        by_file = shell_helper.get({**env, "SSL_CERT_FILE": str(certificate)}, "git-codecommit.us-east-1.amazonaws.com")
        by_bundle = shell_helper.get({**env, "CURL_CA_BUNDLE": str(certificate)},
                                     "git-codecommit.us-east-1.amazonaws.com")
    assert url.startswith("https://")
    assert untrusted.stdout == "quit=1\n"
    assert f"ccweb: the TLS certificate of the ccweb service at {url} could not be verified (curl: " in untrusted.stderr
    assert "point SSL_CERT_FILE at its bundle" in untrusted.stderr
    assert (by_file.returncode, by_file.stdout) == (0, CREDENTIAL), by_file.stderr
    assert (by_bundle.returncode, by_bundle.stdout) == (0, CREDENTIAL), by_bundle.stderr
    assert service.paths() == ["POST /v1/git-credential"] * 2  # the untrusted one sent nothing


@contextlib.contextmanager
def refusing_proxy(status: int) -> Iterator[str]:
    """An http proxy on loopback that answers every ``CONNECT`` with ``status``; yields its host:port."""
    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_CONNECT(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    with serve_http(Proxy) as url:
        yield url.removeprefix("http://")


PROXY_USER = "PLANTED-proxy-user"
PROXY_PASSWORD = "PLANTED-proxy-password"


@pytest.mark.parametrize(("variable", "proxy", "sentence"), [
    ("HTTPS_PROXY", "unreadable", "the proxy set by HTTPS_PROXY cannot be used: curl cannot read its URL or resolve "
     "its host name (the value is not shown here: it may hold a password); check HTTPS_PROXY, or add "
     "ccweb.example.com to NO_PROXY if it is reachable directly."),
    ("https_proxy", "closed", "cannot reach the proxy set by https_proxy (curl could not connect to it); check "
     "https_proxy, or add ccweb.example.com to NO_PROXY"),
    ("HTTPS_PROXY", "407", "the proxy set by HTTPS_PROXY refused to connect to ccweb.example.com:443 (HTTP 407, "
     "proxy authentication required); check the user name and password in HTTPS_PROXY."),
    ("ALL_PROXY", "403", "the proxy set by ALL_PROXY refused to connect to ccweb.example.com:443 (HTTP 403); check "
     "ALL_PROXY, or add ccweb.example.com to NO_PROXY"),
], ids=["unreadable", "closed", "407", "403"])
def test_a_failing_proxy_is_named_by_its_variable_and_never_quoted(shell_helper: ShellHelper, tmp_path: Path,
                                                                   variable: str, proxy: str, sentence: str) -> None:
    """curl's own message may quote the proxy's URL, user name and password included ("Unsupported proxy syntax in
    'http://user:password#x@host'"): through a proxy, the helper says what failed in its own words."""
    userinfo = f"{PROXY_USER}:{PROXY_PASSWORD}"
    with contextlib.ExitStack() as stack:
        if proxy == "unreadable":
            value = f"http://{userinfo}#x@proxy.invalid"  # the # makes it unreadable to curl
        elif proxy == "closed":
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                value = f"http://{userinfo}@127.0.0.1:{probe.getsockname()[1]}"
        else:
            value = f"http://{userinfo}@{stack.enter_context(refusing_proxy(int(proxy)))}"
        env = shell_helper.env(tmp_path / "home", CCWEB_URL="https://ccweb.example.com", CCWEB_TOKEN=TOKEN,
                               **{variable: value})
        result = shell_helper.get(env, "git-codecommit.us-east-1.amazonaws.com")
    assert (result.returncode, result.stdout) == (1, "quit=1\n")
    assert result.stderr.startswith("ccweb: ") and result.stderr.count("\n") == 1
    assert sentence in result.stderr, result.stderr
    assert "PLANTED" not in result.stderr and "curl:" not in result.stderr
