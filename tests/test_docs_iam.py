"""docs/iam.md says what the code does about chained sessions over an hour: ccweb asks STS again for
``sessions.CHAINED_MAX_SECONDS`` (and from then on), logging the warning the page quotes; nobody gets a 503 for
it. Every duration the section names is that one, and no other page says otherwise."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from ccweb import sessions
from ccweb.sessions import CHAINED_MAX_SECONDS
from test_docs_defaults import section

ROOT = Path(__file__).resolve().parent.parent
IAM = ROOT / "docs" / "iam.md"
HEADING = "## Role chaining caps sessions at one hour"
DURATION = re.compile(
    r"\b(?P<number>\d[\d,]*|one|an|the)[ -](?P<unit>s|seconds?|minutes?|hours?)\b", re.IGNORECASE
)
UNITS = {"s": 1, "second": 1, "minute": 60, "hour": 3600}
WORDS = {"one": 1, "an": 1, "the": 1}


def chaining_section() -> str:
    return section(IAM.read_text(encoding="utf-8"), HEADING)


def durations(text: str) -> list[tuple[str, int]]:
    """(as written, seconds) for every duration ``text`` states: ``3600 s``, ``1 hour``, ``one hour``, ``the hour``."""
    found = []
    for match in DURATION.finditer(text):
        number = match["number"].lower()
        count = WORDS[number] if number in WORDS else int(number.replace(",", ""))
        found.append((match.group(0), count * UNITS[match["unit"].lower().rstrip("s") or "s"]))
    return found


@pytest.mark.parametrize(
    ("text", "expected"),
    [("at most one hour", [3600]), ("3600 s", [3600]), ("the 1 hour limit", [3600]), ("asks for the hour", [3600]),
     ("a 12-hour session", [43200]), ("900 seconds", [900]), ("no duration here", [])],
    ids=str,
)
def test_the_reader_finds_durations(text: str, expected: list[int]) -> None:
    assert [seconds for _, seconds in durations(text)] == expected


def test_the_chaining_section_names_no_503() -> None:
    text = chaining_section()
    assert text.strip(), HEADING
    assert "503" not in text and "upstream_unavailable" not in text, "ccweb asks again; nobody gets a 503"


def test_every_duration_of_the_chaining_section_is_the_code_s_limit() -> None:
    found = durations(chaining_section())
    assert found, "the section states the limit"
    assert [(written, seconds) for written, seconds in found if seconds != CHAINED_MAX_SECONDS] == []


def test_the_warning_the_section_quotes_is_the_one_the_service_logs() -> None:
    quoted = re.findall(r"`(role chaining limits sessions to [^`]+)`", " ".join(chaining_section().split()))
    assert quoted, "the section quotes the warning"
    source = inspect.getsource(sessions.SessionCache)
    logged = re.search(r'"AssumeRole %s: (role chaining limits sessions to %d s; asking for that instead of %d s)',
                       source)
    assert logged, "sessions.SessionCache logs the warning"
    assert quoted[0] == logged.group(1).replace("%d", "…")


@pytest.mark.parametrize("page", [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))],
                         ids=lambda p: p.name)
def test_no_page_says_a_chained_session_over_the_hour_is_refused(page: Path) -> None:
    """Wherever a paragraph (or a table's row) speaks of role chaining, it speaks of no 503."""
    for paragraph in re.split(r"\n\s*\n", page.read_text(encoding="utf-8")):
        rows = paragraph.splitlines() if paragraph.lstrip().startswith("|") else [paragraph]
        for text in rows:
            if "role chaining" in text and "hour" in text:
                assert "503" not in text, text
