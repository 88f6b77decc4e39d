"""``ccweb-helper login``, ``status`` and ``logout``: the interactive login, for people.

``login [--device | --browser] [--issuer NAME]`` signs in again even when a login is cached; ``status`` says
who you are, until when, and what the service's ``GET /v1/whoami`` says you may reach (exit 1 when not
signed in); ``logout`` revokes the refresh tokens where the issuers allow it and removes the cache.

A login belongs to one ccweb service (``audience.service_key``): ``login`` and ``status`` are for the
service git uses for CodeCommit (``CCWEB_URL``, else git config), or the one ``--url`` names;
``logout --url URL`` forgets only the logins made for that service. ``get`` never signs in for a service whose
identity provider the person signed in to for another one; ``login`` does, on purpose: it first says that the
service will receive a token the other one accepts, and has the identity provider ask again (``prompt=login``)
even when its session is live.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

from ccweb_helper import audience, discovery, login, login_flows, login_idp, login_tokens
from ccweb_helper.cache import Cache, cache_dir
from ccweb_helper.client import HelperError, ServiceURL, error_sentence, one_line, parse_service_url, request
from ccweb_helper.discovery import LoginIssuer
from ccweb_helper.hosts import HOST_FORMS
from ccweb_helper.sources import service_url, timeout

# git config may name the service per URL; a CodeCommit URL picks the usual one.
REMOTE = f"https://{HOST_FORMS[0].sample}/"


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"ccweb-helper {command}", description={
        "login": "Sign in with your company's single sign-on; git then gets CodeCommit passwords without prompts.",
        "status": "Who you are signed in as, until when, and what the ccweb service lets you reach.",
        "logout": "Forget the login (and revoke it at the identity provider where possible).",
    }[command])
    if command == "login":
        how = parser.add_mutually_exclusive_group()
        how.add_argument("--device", action="store_true",
                         help="sign in on another device with a code (no browser needed here)")
        how.add_argument("--browser", action="store_true", help="sign in with a browser on this computer")
        parser.add_argument("--issuer", metavar="NAME", help="the identity provider to use, when there are several")
    parser.add_argument("--url", metavar="URL", help={
        "login": "the ccweb service to sign in for (default: CCWEB_URL, else git config ccweb.url)",
        "status": "the ccweb service whose login to show (default: CCWEB_URL, else git config ccweb.url)",
        "logout": "forget only the logins made for this ccweb service (default: every login)",
    }[command])
    return parser


def main(command: str, args: list[str], env: Mapping[str, str] | None = None,
         stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> int:
    options = _parser(command).parse_args(args)
    environ = os.environ if env is None else env
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    try:
        if command == "login":
            return _login(options, environ, out, err)
        if command == "status":
            return _status(_service(environ, options.url), bool(options.url), environ, out, err)
        return _logout(options.url, environ, out, err)
    except HelperError as exc:
        err.write(f"ccweb: {one_line(exc.message)}\n")
        return 1
    except (ValueError, OverflowError, OSError) as exc:  # a last resort: never a traceback for a person
        err.write(f"ccweb: {command} failed ({_reason(exc)}).\n")
        return 1
    except KeyboardInterrupt:
        err.write("ccweb: cancelled.\n")
        return 130


def _reason(exc: BaseException) -> str:
    """What went wrong, without the values involved (a message of a decoding error may quote a token)."""
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if isinstance(exc.filename, str) else ""
        return one_line(f"{exc.strerror or type(exc).__name__}{where}", 300)
    return type(exc).__name__


def _service(env: Mapping[str, str], url: str | None = None) -> ServiceURL:
    if url:
        return parse_service_url(url, "--url")
    configured = service_url(env, REMOTE)
    if configured is None:
        raise HelperError(
            "no ccweb service is configured: set CCWEB_URL, or run "
            "`git config --global ccweb.url https://<your ccweb service>`."
        )
    return parse_service_url(*configured)


def _issuers(service: ServiceURL, seconds: float) -> tuple[LoginIssuer, ...]:
    issuers = discovery.fetch(service, seconds).login
    if not issuers:
        raise HelperError(
            f"the ccweb service at {service.url} offers no interactive login; use CCWEB_TOKEN or CCWEB_TOKEN_FILE, "
            "or ask its operators to add `login:` to an issuer."
        )
    return issuers


def _login(options: argparse.Namespace, env: Mapping[str, str], out: IO[str], err: IO[str]) -> int:
    service = _service(env, options.url)
    seconds = timeout(env)
    issuers = _issuers(service, seconds)
    chosen = issuers[0]
    if options.issuer:
        named = [i for i in issuers if i.name == options.issuer]
        if not named:
            names = ", ".join(i.name for i in issuers)
            raise HelperError(f"the ccweb service has no login issuer {options.issuer!r}; choose one of: {names}.")
        chosen = named[0]
    mode = "device" if options.device else "browser" if options.browser else "auto"
    store = Cache(cache_dir(env), stderr=err)
    store.read()
    if store.refused is not None:  # explained just now
        raise HelperError("no sign-in was started: it could not be kept.")
    key = audience.service_key(service)
    with login.locked(store, err):
        others = login_tokens.others(login_tokens.logins(store.read()), [chosen], key)
        if others:
            err.write(f"ccweb: {_shared_sign_in(key, others)}\n")
            err.flush()
        entry = {**login_flows.sign_in(chosen, env, seconds, stderr=err, mode=mode, reauthenticate=bool(others)),
                 "service": key}
        entries = login_tokens.logins(store.read())
        entries[login_tokens.entry_key(chosen, key)] = entry
        login.save(store, entries)
    try:
        until = f" until {_when(entry['expires_at'])}"
    except ValueError:
        until = ""
    out.write(f"Signed in to {chosen.name}{until}"
              f"{' (renewed automatically)' if 'refresh_token' in entry else ''}.\n")
    return 0


def _shared_sign_in(service: str, others: list[str]) -> str:
    """What signing in for ``service`` with the identity provider of logins made for ``others`` means."""
    named = [one_line(o, 200) if o else "the service of a login kept by an older ccweb-helper" for o in others]
    other = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
    accepts = "accepts" if len(named) == 1 else "accept"
    return (f"you are signing in to {service} with the identity provider you use for {other}: {service} will "
            f"receive a token that {other} {accepts} too, so sign in only if you trust {service} with it.")


def _when(epoch: object) -> str:
    """A point in time for people; ValueError when ``epoch`` is not one a calendar can show."""
    seconds = login_tokens.epoch(epoch)
    if seconds is None:
        raise ValueError("not a time")
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))
    except (OverflowError, OSError) as exc:  # beyond this platform's calendar (Windows stops at 3000)
        raise ValueError("not a time") from exc


def _status(service: ServiceURL, named: bool, env: Mapping[str, str], out: IO[str], err: IO[str]) -> int:
    """The login for ``service`` (``named`` by ``--url``, else the one git uses for CodeCommit)."""
    seconds = timeout(env)
    issuers = _issuers(service, seconds)
    id_token = login.token(service, env, seconds, stderr=err, interactive=False)
    key = audience.service_key(service)
    if id_token is None:
        err.write(f"ccweb: not signed in for the ccweb service at {key}; run `ccweb-helper login --url {key}`.\n"
                  if named else "ccweb: not signed in; run `ccweb-helper login`.\n")
        return 1
    store = Cache(cache_dir(env), stderr=err)
    entries = login_tokens.logins(store.read())
    entry: dict[str, Any] = next(
        (e for i in issuers for e in [entries.get(login_tokens.entry_key(i, key))] if isinstance(e, dict)
         and e.get("id_token") == id_token), {},
    )
    try:
        claims = login_tokens.id_token_claims(id_token)
        until = _when(claims.get("exp"))
    except ValueError:  # a hand-edited or damaged cache: decoding, JSON or the expiry
        raise HelperError(
            f"the login cached in {store.path} is damaged; run `ccweb-helper login` to sign in again."
        ) from None
    who = claims.get("email") or claims.get("sub")
    lines = [
        f"Signed in as {one_line(str(who), 200)} (subject {one_line(str(claims.get('sub')), 200)})",
        f"  issuer   {one_line(str(entry.get('name', '?')), 200)} ({one_line(str(claims.get('iss')), 300)})",
        f"  until    {until}"
        + ("; renewed automatically" if "refresh_token" in entry else "; then run `ccweb-helper login`"),
        f"  cache    {store.path}",
        f"  service  {service.url}",
    ]
    for name in ("CCWEB_TOKEN", "CCWEB_TOKEN_FILE"):
        if env.get(name, "").strip():
            lines.append(f"  note     {name} is set: git uses that token, not this login")
    answer = request(service, "GET", "/v1/whoami", timeout=seconds, token=id_token)
    if answer.status != 200:
        out.write("\n".join(lines) + "\n")
        raise HelperError(f"the ccweb service did not accept the login: {error_sentence(answer)}")
    rules = answer.body.get("rules")
    identity = answer.body.get("identity")
    if isinstance(identity, str) and identity:
        lines.append(f"  identity {one_line(identity, 200)} (as AWS sees you)")
    refused = answer.body.get("refused")
    if isinstance(refused, str) and refused:
        lines.append(f"Refused everywhere: {one_line(refused, 600)}")
    else:
        lines.append("You may reach:" if rules else "No ccweb rule grants you any repository.")
    for rule in rules if isinstance(rules, list) else []:
        if isinstance(rule, dict):
            lines.append(_rule_line(rule))
    out.write("\n".join(lines) + "\n")
    return 0


def _rule_line(rule: Mapping[str, Any]) -> str:
    """One rule of ``/v1/whoami``: what it grants, and the SourceIdentity CloudTrail will show for it with the
    session tags it carries (or why a request the rule decides is refused: the service's sentence, or, from a
    service that gives none, the claim the SourceIdentity comes from that the token lacks)."""
    repositories = rule.get("repositories")
    names = ", ".join(str(r) for r in repositories) if isinstance(repositories, list) else "?"
    line = f"rule {rule.get('rule')}: {rule.get('access')} access to {names} as {rule.get('role_arn')}"
    name, claim = rule.get("source_identity"), rule.get("source_identity_claim")
    refused, tags = rule.get("refused"), rule.get("session_tags")
    if isinstance(refused, str) and refused:
        line += f"; refused: {refused}"
    elif isinstance(name, str) and name:
        line += f", SourceIdentity {name}"
        if isinstance(tags, dict) and tags:
            line += ", session tags " + ", ".join(f"{key}={value}" for key, value in tags.items())
    elif isinstance(claim, str) and claim:
        line += f"; refused: it takes the SourceIdentity from the claim {claim!r}, which your token lacks"
    return "  " + one_line(line, 600)


def _logout(url: str | None, env: Mapping[str, str], out: IO[str], err: IO[str]) -> int:
    """Every login (the cache file removed), or with ``url`` those made for that service only."""
    service = None if not url else audience.service_key(_service(env, url))
    store = Cache(cache_dir(env), stderr=err)
    if not os.path.lexists(store.path):
        out.write("Not signed in; nothing to forget.\n")
        return 0
    seconds = timeout(env)
    with login.locked(store, err):
        entries = login_tokens.logins(store.read())
        if store.refused is not None:  # explained just now
            raise HelperError("nothing was forgotten: the login cache is not used.")
        gone = {k: e for k, e in entries.items()
                if service is None or (isinstance(e, dict) and e.get("service") == service)}
        if service is not None and not gone:
            out.write(f"Not signed in for {service}; nothing to forget.\n")
            return 0
        revoked = sum(login_idp.revoke(entry, seconds) for entry in gone.values() if isinstance(entry, dict))
        try:
            if service is None:
                store.remove()
            else:
                login.save(store, {k: e for k, e in entries.items() if k not in gone})
        except OSError as exc:
            raise HelperError(
                f"cannot remove the login cache {store.path} ({exc.strerror or type(exc).__name__}); remove it "
                "yourself to sign out."
            ) from None
    what = f"Signed out: removed {store.path}" if service is None else f"Signed out of {service}"
    out.write(what + (f" and revoked {revoked} login{'s' if revoked != 1 else ''} at the identity provider"
                      if revoked else "") + ".\n")
    return 0
