"""The README's configuration reference is kept in step with the models that validate the policy file.

The reference block, with its commented-out optional keys uncommented, must be a valid policy; every field
of every model reachable from ``Config`` must appear in it, and every key in it must be a field. So adding a
field without documenting it fails here, and so does documenting a key that does not exist.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from ccweb.config import Config, parse_config

README = Path(__file__).resolve().parent.parent / "README.md"
COMMENTED_KEY = re.compile(r"^(?P<indent>\s*)#(?P<pad> +)(?P<rest>(?:- )?[a-z_]+:(?: .*)?)$")


def reference_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Configuration reference", 1)[1]
    match = re.search(r"^```yaml\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert match, "the Configuration reference section has no ```yaml block"
    return match.group(1)


def uncommented(block: str) -> str:
    """The block with ``# key: value`` lines turned into ``key: value``, nested as the spaces after ``#`` show."""
    return "\n".join(
        f"{m.group('indent')}{m.group('pad')[1:]}{m.group('rest')}" if (m := COMMENTED_KEY.match(line)) else line
        for line in block.splitlines()
    )


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold, however deeply nested (lists, dicts, unions, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in models_in(arg)]


def all_fields(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> set[str]:
    seen = set() if seen is None else seen
    seen.add(model)
    found = {f"{model.__name__}.{name}" for name in model.model_fields}
    for field in model.model_fields.values():
        for nested in models_in(field.annotation):
            if nested not in seen:
                found |= all_fields(nested, seen)
    return found


def documented(annotation: Any, value: Any) -> set[str]:
    """``Model.field`` for every key of ``value`` where the annotation holds a model; unknown keys as well."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return documented(typing.get_args(annotation)[0], value)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if not isinstance(value, dict):
            return set()
        found = {f"{annotation.__name__}.{key}" for key in value}
        for key, item in value.items():
            if key in annotation.model_fields:
                found |= documented(annotation.model_fields[key].annotation, item)
        return found
    if origin is list and isinstance(value, list):
        (item_type,) = typing.get_args(annotation)
        return {k for item in value for k in documented(item_type, item)}
    if origin is dict and isinstance(value, dict):
        value_type = typing.get_args(annotation)[1]
        return {k for item in value.values() for k in documented(value_type, item)}
    if origin in (typing.Union, types.UnionType):
        models = models_in(annotation)
        if isinstance(value, dict) and models:
            return documented(models[0], value) if len(models) == 1 else set()
    return set()


def test_the_reference_with_its_optional_keys_is_a_valid_policy() -> None:
    parse_config(yaml.safe_load(uncommented(reference_block())))


def test_the_reference_as_shown_is_a_valid_policy() -> None:
    parse_config(yaml.safe_load(reference_block()))


def test_every_field_is_documented_and_every_documented_key_is_a_field() -> None:
    shown = documented(Config, yaml.safe_load(uncommented(reference_block())))
    fields = all_fields(Config)
    assert sorted(fields - shown) == [], "fields missing from the README's configuration reference"
    assert sorted(shown - fields) == [], "keys in the README's configuration reference that are not fields"


def test_the_walk_sees_every_model() -> None:
    names = {field.split(".")[0] for field in all_fields(Config)}
    assert {"Config", "Issuer", "LoginSettings", "Rule", "Pattern", "GitEndpoint", "AwsSettings", "DenyEntry",
            "RateLimit"} <= names


def test_a_missing_key_is_noticed() -> None:
    block = "\n".join(line for line in uncommented(reference_block()).splitlines() if "retry_budget" not in line)
    assert "AwsSettings.retry_budget_seconds" in all_fields(Config) - documented(Config, yaml.safe_load(block))
