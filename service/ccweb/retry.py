"""The retry policy of STS calls: jittered exponential backoff inside one total time budget.

When STS throttles, answers 5xx, cannot be reached or hangs, the call is retried inside one total time budget
(``aws.retry_budget_seconds``). Each attempt is one HTTP request, so no lower layer's retries multiply the
budget. A shared retry quota stops a crowd of distinct callers from turning an STS brown-out into a retry
storm. Refusals (AccessDenied, a bad policy) are never retried: which errors are worth another attempt is
decided where they arise (``StsError.retryable``; STS's own codes in ``ccweb.sts.RETRYABLE_CODES``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ccweb.sts import StsError

log = logging.getLogger("ccweb.sessions")  # one logger for the whole STS path, as operators know it
T = TypeVar("T")

RETRY_BUDGET_SECONDS = 8.0
"""Under the helper's default timeout (``ccweb_helper.sources.DEFAULT_TIMEOUT_SECONDS``, checked by
tests/test_docs_defaults.py), so people see the 503, not a timeout."""


def full_jitter(ceiling: float) -> float:
    return random.uniform(0.0, ceiling)  # noqa: S311 (backoff jitter, not a secret)


@dataclass
class RetryPolicy:
    """Retries of retryable ``StsError``s: jittered exponential backoff inside one total budget.

    After failed attempt n (from 0) it sleeps ``jitter(min(cap, base * 2**n))`` (full jitter); it neither
    sleeps past, nor waits for an attempt beyond, ``budget`` seconds from the start, and gives up at once
    when the next sleep would cross it. Retries spend a quota shared by every caller (``retry_cost``, or
    ``timeout_cost`` after a timeout; successes earn it back), so a crowd of callers during an outage
    makes one attempt each instead of a retry storm. An attempt the budget cuts short ends as the
    retryable ``StsError("Timeout")``. ``monotonic``, ``sleep`` and ``jitter`` are injectable for tests.
    """

    budget: float = RETRY_BUDGET_SECONDS
    base: float = 0.25
    cap: float = 4.0
    quota: float = 500.0
    retry_cost: float = 5.0
    timeout_cost: float = 10.0
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    jitter: Callable[[float], float] = full_jitter
    available: float = field(init=False)

    def __post_init__(self) -> None:
        self.available = self.quota

    async def run(self, attempt: Callable[[], Awaitable[T]]) -> T:
        deadline = self.monotonic() + self.budget
        spent = 0.0
        retries = 0
        while True:
            try:
                result = await asyncio.wait_for(attempt(), max(deadline - self.monotonic(), 0.0))
            except TimeoutError:
                raise StsError("Timeout", f"no answer within the {self.budget:g} s budget", retryable=True) from None
            except StsError as exc:
                if not exc.retryable:
                    raise
                delay = self.jitter(min(self.cap, self.base * 2**retries))
                cost = self.timeout_cost if "Timeout" in exc.code else self.retry_cost
                if self.monotonic() + delay >= deadline or self.available < cost:
                    raise
                self.available -= cost
                spent += cost
                retries += 1
                log.info("STS %s; retry %d in %.2fs", exc.code, retries, delay)
                await self.sleep(delay)
                continue
            self.available = min(self.quota, self.available + (spent or 1.0))
            return result
