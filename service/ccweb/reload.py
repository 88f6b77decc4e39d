"""The running policy and its hot reload: on SIGHUP, when the file changes, or on ``reload()``.

``Snapshot`` is one loaded configuration, compiled (``ccweb.policy.Policy``), with what is built from it (the
token verifier, the rate limiter). A request reads ``RunningPolicy.current`` once and keeps that
snapshot to the end (but for its decision: one reloaded while STS answers decides it again, see
``ccweb.credentials``); a reload validates the new file completely, builds a new state and replaces the
reference in one assignment on the event loop, so no request ever sees half of two files.

A file that does not validate is refused: one error log line names every problem (the lines
``ccweb check-config`` prints), the running policy stays, and ``/readyz`` names the keys at fault
(``refused_keys``: never the problems, which may quote the file's values) until a good file is loaded.
What a successful reload carries over and what it drops:

- issuer key sets: kept for issuers whose ``issuer`` and ``jwks_uri`` did not change; others start afresh;
- rate-limit buckets: kept unless ``rate_limit`` changed;
- cached STS sessions: each rule's sessions are cached under its name and a fingerprint of the rule, of
  its issuer entry and of its session duration; a rule whose fingerprint changed (or that went away)
  has its sessions dropped, and a session still being fetched for the old rule can never be served for
  the new one.

The file is polled (inode, size and modification time, every ``interval`` seconds: stdlib only, and it
follows a Kubernetes ConfigMap's symlink swap); a comment-only edit reloads nothing. Each process polls
and reloads by itself, which is what makes ``--workers N`` and several replicas converge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ccweb.config import Config, ConfigError, load_config
from ccweb.metrics import Metrics
from ccweb.policy import Policy, compile_policy
from ccweb.ratelimit import RateLimiter
from ccweb.sessions import SessionCache
from ccweb.tokens import TokenVerifier

log = logging.getLogger("ccweb.reload")

RELOAD_INTERVAL_SECONDS = 2.0
_UNSEEN = object()

_KEY = re.compile(r"\(top level\)|[A-Za-z_][A-Za-z0-9_]*(?:\[[0-9]+\]|\.[A-Za-z0-9_:./~-]+)*")
"""A key as ``ccweb.config`` names it in a problem (``rules[2].role_arn``, ``rules[0].claims./realm/roles``)."""
_FILE_PLACE = re.compile(r" \((line [0-9]+, column [0-9]+)\): ")
UNNAMED = "(the file)"
"""What ``refused_keys`` says for a problem of the whole file (unreadable, not UTF-8) or of no key it can name."""


def refused_keys(problems: list[str], path: Path | None) -> list[str]:
    """The keys ``problems`` (``ConfigError`` lines, ``key: problem``) are about, without the problems: those may
    quote the file's values (``'…' is not a repository glob``), which ``/readyz`` must not show to anyone who
    asks. YAML errors, which start with the file's path, give their line and column instead."""
    keys: list[str] = []
    for line in problems:
        key = UNNAMED
        if path is not None and line.startswith(str(path)):
            place = _FILE_PLACE.match(line, len(str(path)))
            key = place.group(1) if place else UNNAMED
        else:
            name, sep, _ = line.partition(": ")
            if sep and len(name) <= 300 and _KEY.fullmatch(name):
                key = name
        if key not in keys:
            keys.append(key)
    return keys


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One loaded policy and what is built from it; a request reads it once (``RunningPolicy.current``)."""

    policy: Policy
    verifier: TokenVerifier
    limiter: RateLimiter
    loaded_at: float

    @property
    def config(self) -> Config:
        return self.policy.config


@dataclass(frozen=True, slots=True)
class Refusal:
    """A policy file refused: the keys at fault (``refused_keys``) and when; the problems are in the log only."""

    keys: list[str]
    at: float


def _carry_keys(old: TokenVerifier, new: TokenVerifier) -> None:
    """Hand the fetched key sets of unchanged issuers (same URL, same key-set URL) to the new verifier."""
    previous = {(k.issuer.issuer, k.issuer.jwks_uri): k for k in old.issuer_keys()}
    for keys in new.issuer_keys():
        kept = previous.get((keys.issuer.issuer, keys.issuer.jwks_uri))
        if kept is not None:
            keys.keys, keys.fetched_at = kept.keys, kept.fetched_at
            keys.attempted_at, keys.last_error = kept.attempted_at, kept.last_error
            keys.recent = kept.recent  # the fetches of the last minute count across a reload


def _signature(path: Path) -> tuple[int, ...] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class RunningPolicy:
    """Holds the current ``Snapshot``; reloads it from ``path`` (if any)."""

    def __init__(
        self,
        config: Config,
        *,
        http: httpx.AsyncClient,
        sessions: SessionCache,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        path: str | Path | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._http = http
        self._sessions = sessions
        self._clock = clock
        self._monotonic = monotonic
        self._metrics = metrics
        self.path = Path(path) if path is not None else None
        self.reloads = 0
        """Reloads that changed the policy."""
        self.refused: Refusal | None = None
        """The last file refused, until a good one is loaded."""
        self._lock: asyncio.Lock | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.current = self._build(compile_policy(config), None)

    def _build(self, policy: Policy, previous: Snapshot | None) -> Snapshot:
        config = policy.config
        verifier = TokenVerifier(config, self._http, clock=self._clock, metrics=self._metrics)
        limits = config.rate_limit
        if previous is not None:
            _carry_keys(previous.verifier, verifier)
        if previous is not None and previous.config.rate_limit == limits:
            limiter = previous.limiter
        else:
            limiter = RateLimiter(limits.requests_per_minute, limits.burst, clock=self._monotonic)
        return Snapshot(policy=policy, verifier=verifier, limiter=limiter, loaded_at=self._clock())

    def apply(self, config: Config, *, trigger: str = "reload") -> bool:
        """Make ``config`` the running policy (on the event loop); False when nothing changed."""
        old = self.current
        policy = compile_policy(config)
        if policy.digest == old.policy.digest:
            self.refused = None
            return False
        new = self._build(policy, old)
        self.current = new  # the swap: requests that started before keep their snapshot
        self._sessions.retry.budget = config.aws.retry_budget_seconds
        self.reloads += 1
        self.refused = None
        old_keys, new_keys = old.policy.session_keys, new.policy.session_keys
        changed = sorted(name for name, key in old_keys.items() if new_keys.get(name) != key)
        before = len(self._sessions)
        for name in changed:
            self._sessions.drop_rule(old_keys[name])
        added = sorted(set(new_keys) - set(old_keys))
        log.info(
            "policy reloaded (%s): %s; rules changed or removed: %s; rules added: %s; %d cached session(s) dropped",
            trigger, new.policy.digest[:12], ", ".join(changed) or "none", ", ".join(added) or "none",
            before - len(self._sessions),
        )
        if self._metrics is not None:
            self._metrics.policy_reloads.labels(result="reloaded").inc()
        return True

    async def reload(self, trigger: str = "reload") -> bool:
        """Load the file again; refuse it (log, keep the running policy) if it is invalid."""
        if self.path is None:
            return False
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            try:
                config = await asyncio.to_thread(load_config, self.path)
            except ConfigError as exc:
                log.error(  # noqa: TRY400 (the problems are the message; a traceback would say nothing more)
                    "policy %s refused (%s); the running policy stays: %s",
                    self.path, trigger, "; ".join(exc.messages), extra={"fields": {"problems": exc.messages}},
                )
                self.refused = Refusal(keys=refused_keys(exc.messages, self.path), at=self._clock())
                if self._metrics is not None:
                    self._metrics.policy_reloads.labels(result="refused").inc()
                return False
            return self.apply(config, trigger=trigger)

    async def watch(self, interval: float = RELOAD_INTERVAL_SECONDS) -> None:
        """Poll the file every ``interval`` seconds; reload when it changed. Runs until cancelled."""
        if self.path is None:
            return
        seen: object = _UNSEEN  # check once at start too, in case the file changed since it was loaded
        while True:
            current = _signature(self.path)
            if current != seen:
                seen = current
                try:
                    await self.reload("file changed")
                except Exception:  # a reload that fails unexpectedly must not stop the watching
                    log.exception("policy reload failed unexpectedly; the running policy stays")
            await asyncio.sleep(interval)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @contextlib.asynccontextmanager
    async def running(self, *, interval: float, sighup: bool) -> AsyncIterator[None]:
        """For the app's lifespan: watch the file (``interval`` > 0) and reload on SIGHUP (``sighup``, only
        possible in the main thread)."""
        loop = asyncio.get_running_loop()
        handled = False
        if self.path is not None and interval > 0:
            self._spawn(self.watch(interval))
        if self.path is not None and sighup and threading.current_thread() is threading.main_thread():
            loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload("SIGHUP")))
            handled = True
        try:
            yield
        finally:
            if handled:
                loop.remove_signal_handler(signal.SIGHUP)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a late SIGHUP must not kill a stopping worker
            for task in list(self._tasks):
                task.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
