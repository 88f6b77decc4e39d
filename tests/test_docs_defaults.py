"""Every default and limit the documentation states is the one in the code, and is stated once.

- The README's "Defaults and limits" table names, for each value, the code that holds it (a constant, a
  parameter's default as ``module.Class(parameter)``, or what a function returns with an empty environment
  as ``module.function({})``); each value must equal what that code holds.
- The configuration reference's commented-out keys show their model's default, and its ``a..b`` ranges are
  the models' bounds.
- No other page restates a value of that table, and no page but bench/README.md states a measured figure.
- Every module, class or constant docs/architecture.md names exists.
"""

from __future__ import annotations

import importlib
import inspect
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from annotated_types import Ge, Le
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ccweb.cli import parser
from ccweb.config import AwsSettings, Config
from ccweb.explain import DEFAULT_REGION
from ccweb.limits import MAX_BODY_BYTES, MAX_HEAD_BYTES
from ccweb.policytest import Case
from ccweb.reload import RELOAD_INTERVAL_SECONDS
from ccweb.retry import RETRY_BUDGET_SECONDS
from ccweb_helper import cli as helper_cli
from ccweb_helper.sources import DEFAULT_TIMEOUT_SECONDS, timeout
from test_readme_config import models_in, reference_block, uncommented

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, ROOT / "SECURITY.md", *sorted((ROOT / "docs").glob("*.md"))]
"""Where defaults must not be restated and measured figures must not appear (bench/README.md has them)."""

UNITS = {
    "s": 1, "second": 1, "seconds": 1, "minute": 60, "minutes": 60, "hour": 3600, "hours": 3600,
    "KiB": 1024, "MiB": 1024 * 1024, "characters": 1, "": 1,
}
NUMBER = re.compile(r"(?P<number>[0-9][0-9,]*(?:\.[0-9]+)?)(?: (?P<unit>[A-Za-z]+))?")
REFERENCE = re.compile(r"(?P<path>[A-Za-z_][\w.]*)(?:\((?P<argument>[^)]*)\))?")


def section(text: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of any level (a ``#`` inside a code block is not one)."""
    lines: list[str] = []
    fenced = False
    for line in text.split(heading + "\n", 1)[1].splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            break
        lines.append(line)
    return "".join(lines)


def defaults_table() -> list[tuple[str, str, str]]:
    """(what, value, code reference) for each row of the README's Defaults and limits table."""
    rows = []
    for line in section(README.read_text(encoding="utf-8"), "### Defaults and limits").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 3 and cells[2].startswith("`") and cells[2].endswith("`"):
            rows.append((cells[0], cells[1], cells[2].strip("`")))
    return rows


ROWS = defaults_table()


def import_path(path: str) -> Any:
    """The object a dotted path names: the longest importable module prefix, then attributes."""
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        try:
            found: ModuleType | Any = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not f"{name}.".startswith(f"{exc.name}."):
                raise  # a module that exists but fails to import: say so, do not hide it
            continue
        for attribute in parts[end:]:
            found = getattr(found, attribute)
        return found
    raise LookupError(path)


def code_value(reference: str) -> Any:
    match = REFERENCE.fullmatch(reference)
    assert match, f"not a code reference: {reference!r}"
    found = import_path(match["path"])
    argument = match["argument"]
    if argument is None:
        return found
    if argument == "{}":
        return found({})
    default = inspect.signature(found).parameters[argument].default
    assert default is not inspect.Parameter.empty, f"{reference}: no default"
    return default


def doc_value(text: str) -> float | str:
    """``2 s`` → 2, ``15 minutes`` → 900, ``16 KiB`` → 16384, ``10,000`` → 10000; anything else as written."""
    match = NUMBER.fullmatch(text)
    if match is None:
        return text
    unit = match["unit"] or ""
    assert unit in UNITS, f"unknown unit in {text!r}"
    return float(match["number"].replace(",", "")) * UNITS[unit]


def test_the_table_is_there() -> None:
    assert len(ROWS) >= 20
    assert len({code for _, _, code in ROWS}) == len(ROWS), "each code reference once"


@pytest.mark.parametrize(("what", "value", "code"), ROWS, ids=[code for _, _, code in ROWS])
def test_each_stated_default_is_the_code_s(what: str, value: str, code: str) -> None:
    expected = doc_value(value)
    actual = code_value(code)
    if isinstance(expected, str):
        assert actual == expected, f"{what}: the README says {value}, {code} is {actual!r}"
    else:
        assert isinstance(actual, (int, float)), code
        assert float(actual) == expected, f"{what}: the README says {value}, {code} is {actual!r}"


def test_the_command_line_default_is_the_stated_one() -> None:
    """The table names RELOAD_INTERVAL_SECONDS for ``--reload-interval``: the option must use that value."""
    assert parser().parse_args(["serve"]).reload_interval == RELOAD_INTERVAL_SECONDS


def test_a_policy_test_case_s_region_defaults_as_explain_s() -> None:
    """The table names one default region for ``ccweb explain --region`` and a test-policy case's ``region``."""
    assert Case.model_fields["region"].default == DEFAULT_REGION


def test_the_retry_budget_default_is_one_value_and_under_the_helper_s_timeout() -> None:
    """The reference states ``aws.retry_budget_seconds``' default once, and the README says it is under the
    helper's default timeout, so that people see the 503 rather than a timeout."""
    default = AwsSettings.model_fields["retry_budget_seconds"].default
    assert default == RETRY_BUDGET_SECONDS
    assert default < timeout({}) == DEFAULT_TIMEOUT_SECONDS


def test_the_helper_s_help_states_its_timeout_default() -> None:
    assert f"network timeout in seconds (default {DEFAULT_TIMEOUT_SECONDS:g})" in helper_cli.USAGE


def test_the_proxy_example_has_the_service_s_limits() -> None:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"client_max_body_size (\d+)k; large_client_header_buffers \d+ (\d+)k;", text)
    assert match, "the nginx example"
    assert (int(match[1]) * 1024, int(match[2]) * 1024) == (MAX_BODY_BYTES, MAX_HEAD_BYTES)


# The configuration reference: commented-out keys show their defaults.

Key = tuple[str | int, ...]


def fields_shown(model: type[BaseModel], value: Any, at: Key = ()) -> Iterator[tuple[Key, FieldInfo, Any]]:
    """(where, the field, the value shown) for every key of ``value`` that is a field, however nested."""
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        field = model.model_fields.get(key)
        if field is None:
            continue
        yield (*at, key), field, item
        nested = models_in(field.annotation)
        if len(nested) != 1:
            continue
        if isinstance(item, dict):
            yield from fields_shown(nested[0], item, (*at, key))
        elif isinstance(item, list):
            for index, element in enumerate(item):
                yield from fields_shown(nested[0], element, (*at, key, index))


def commented_out() -> list[tuple[str, FieldInfo, Any]]:
    block = reference_block()
    shown = {where for where, _, _ in fields_shown(Config, yaml.safe_load(block))}
    return [
        (".".join(str(part) for part in where), field, value)
        for where, field, value in fields_shown(Config, yaml.safe_load(uncommented(block)))
        if where not in shown
    ]


def test_each_commented_out_key_shows_its_default() -> None:
    checked = []
    for where, field, value in commented_out():
        if field.is_required():
            continue
        default = field.get_default(call_default_factory=True)
        if default is None or isinstance(default, BaseModel):
            continue  # no value to show: the comment says what happens without the key
        assert value == default, f"{where}: the reference shows {value!r}, the default is {default!r}"
        checked.append(where)
    assert {"aws.session_duration", "aws.retry_budget_seconds", "rate_limit.requests_per_minute",
            "rate_limit.burst", "issuers.0.login.scopes"} <= set(checked)


def bounds(field: FieldInfo) -> tuple[object, object]:
    metadata = list(field.metadata)
    for arg in typing.get_args(field.annotation):  # Optional[Annotated[int, Field(ge=…, le=…)]]
        for extra in getattr(arg, "__metadata__", ()):
            metadata += getattr(extra, "metadata", [extra])
    low = next((m.ge for m in metadata if isinstance(m, Ge)), None)
    high = next((m.le for m in metadata if isinstance(m, Le)), None)
    return low, high


def test_each_range_in_the_reference_is_the_model_s() -> None:
    every = list(fields_shown(Config, yaml.safe_load(uncommented(reference_block()))))
    ranges = 0
    for line in uncommented(reference_block()).splitlines():
        match = re.match(r"\s*(?:- )?(?P<key>[a-z_]+):.*#.*?\b(?P<low>\d+)\.\.(?P<high>\d+)\b", line)
        if not match:
            continue
        same_name = [field for where, field, _ in every if where[-1] == match["key"]]
        assert same_name, match["key"]
        for field in same_name:
            assert bounds(field) == (int(match["low"]), int(match["high"])), line
        ranges += 1
    assert ranges >= 3


# Stated once; measured figures only in bench/README.md.


def variants(value: str) -> list[str]:
    """How ``value`` could be restated in prose."""
    match = NUMBER.fullmatch(value)
    if match is None:
        return []
    number, unit = match["number"], match["unit"] or ""
    plain = number.replace(",", "")
    if unit in ("minute", "minutes", "hour", "hours"):
        singular = unit.rstrip("s")
        return [f"{number} {unit}", f"{number}-{singular}", f"{number} {singular}s"]
    if unit in ("KiB", "MiB"):
        return [f"{number} {unit}", f"{number}{unit}", f"{number} {unit[0]}B"]
    if unit == "" and float(plain) >= 1000:
        return [number, plain, plain[:-3] + "_" + plain[-3:]]
    if unit == "s":
        return [f"{number} s ", f"{number} seconds", f"{number}-second"]
    return []


def prose(page: Path) -> str:
    text = page.read_text(encoding="utf-8")
    if page == README:  # the table itself, and the reference whose comments are the policy file's defaults
        text = text.replace(section(text, "### Defaults and limits"), "")
        text = text.replace(reference_block(), "")
    return re.sub(r'"[^"]{1,200}"', '""', text)  # a quotation is another program's words (AWS's errors)


RESTATABLE = [(what, value) for what, value, _ in ROWS if variants(value) and "AWS's limit" not in what]


@pytest.mark.parametrize(("what", "value"), RESTATABLE, ids=[value for _, value in RESTATABLE])
def test_no_page_restates_a_default(what: str, value: str) -> None:
    found = [
        f"{page.relative_to(ROOT)}: …{text[max(0, at - 60):at + 40]}…".replace("\n", " ")
        for page in PAGES
        for text in [prose(page)]
        for variant in variants(value)
        for at in [m.start() for m in re.finditer(r"(?<![\w.,])" + re.escape(variant), text)]
    ]
    assert found == [], f"{what} ({value}) is stated in the README's Defaults and limits; link there instead"


FIGURE = re.compile(
    r"\d\s?(?:ms|µs|req/s|requests/s)\b"  # time and throughput
    r"|\d\s?(?:KiB|MiB|MB|GB)\s(?:per|each|a\b|an\b)"  # memory per something
    r"|\d(?:\.\d+)?\s?\u00d7"  # ratios (a multiplication sign)
)


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_measured_figures_are_only_in_the_bench_readme(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert [m.group(0) for m in FIGURE.finditer(text)] == [], "measured figures belong in bench/README.md"


def test_the_figure_pattern_finds_figures() -> None:
    bench = (ROOT / "bench" / "README.md").read_text(encoding="utf-8")
    assert len(FIGURE.findall(bench)) > 20


# docs/architecture.md names only what exists.

NAMED = re.compile(r"`(?P<path>(?:ccweb|ccweb_helper)\.[\w.]+)")


def architecture_names() -> list[str]:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    return sorted({match["path"].rstrip(".") for match in NAMED.finditer(text)})


@pytest.mark.parametrize("path", architecture_names())
def test_every_name_in_the_architecture_page_exists(path: str) -> None:
    import_path(path)


def test_the_architecture_page_names_the_modules() -> None:
    assert len(architecture_names()) >= 30
