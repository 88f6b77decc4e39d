"""When an issuer's keys may be fetched again (``ccweb.keys.fetch_wait``, pure): a few seconds after the last
fetch, at most a handful a minute. Fetching itself is exercised against loopback issuers in test_tokens.py and
test_faults.py."""

from __future__ import annotations

from collections import deque

import pytest

from ccweb.keys import KEY_FETCH_SPACING_SECONDS, KEY_FETCHES_PER_MINUTE, fetch_wait

SPACING, PER_MINUTE = KEY_FETCH_SPACING_SECONDS, KEY_FETCHES_PER_MINUTE


def starts(*times: float) -> deque[float]:
    return deque(times, maxlen=PER_MINUTE)


CASES = [  # now, the last fetch's start, the starts of the last few, the wait
    pytest.param(1000.0, -1e18, starts(), 0.0, id="never-fetched"),
    pytest.param(1000.0, 1000.0, starts(1000.0), SPACING, id="just-fetched"),
    pytest.param(1000.0 + SPACING - 1, 1000.0, starts(1000.0), 1.0, id="a-second-short-of-the-spacing"),
    pytest.param(1000.0 + SPACING, 1000.0, starts(1000.0), 0.0, id="spaced"),
    pytest.param(1000.0 + SPACING * PER_MINUTE, 1000.0 + SPACING * (PER_MINUTE - 1),
                 starts(*(1000.0 + SPACING * n for n in range(PER_MINUTE))), 60.0 - SPACING * PER_MINUTE,
                 id="the-minute-s-fetches-spent"),
    pytest.param(1060.0, 1000.0 + SPACING * (PER_MINUTE - 1),
                 starts(*(1000.0 + SPACING * n for n in range(PER_MINUTE))), 0.0, id="a-minute-after-the-oldest"),
    pytest.param(1000.0 + SPACING * (PER_MINUTE - 1), 1000.0 + SPACING * (PER_MINUTE - 2),
                 starts(*(1000.0 + SPACING * n for n in range(PER_MINUTE - 1))), 0.0, id="one-fetch-left"),
    pytest.param(500.0, 1000.0, starts(*(1000.0 for _ in range(PER_MINUTE))), 0.0, id="the-clock-set-back"),
]


@pytest.mark.parametrize(("now", "last", "recent", "wait"), CASES)
def test_fetch_wait(now: float, last: float, recent: deque[float], wait: float) -> None:
    assert fetch_wait(now, last, recent) == pytest.approx(wait)


def test_the_minute_s_budget_binds_before_the_spacing_alone_would() -> None:
    assert 2 <= PER_MINUTE < 60 / SPACING
