"""Compile the request-shaping parts of a bundle: a provider's preset (its base URL default and
quirks) and its `body` table, and a rule's `set_body`. Each body override is checked here
against what the upstream family needs (core/body_override.py), so an override that can only
produce an invalid body is a located bundle error. (docs/providers.md)"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..core.body_override import BodyPatch, problems
from ..core.family import family_of
from ..core.presets import PRESETS, Preset
from .load import Loc
from .types import BodyOverride, OpenAICompatibleProvider, Provider

Report = Callable[..., None]  # Compiler.error(loc, message, *sub)
# A rule's set_body may reach any upstream: it is checked against every family.
ALL_FAMILIES = ("openai", "anthropic", "gemini")


def preset_of(spec: Provider) -> Preset | None:
    if isinstance(spec, OpenAICompatibleProvider) and spec.preset is not None:
        return PRESETS[spec.preset]
    return None


def check_preset(preset: Preset, spec: Provider, loc: Loc, error: Report) -> None:
    if preset.needs_key and not spec.api_keys:
        error(loc, f'preset "{preset.name}" is a hosted API: it needs at least one api_keys entry',
              "api_keys")


def compile_body(override: BodyOverride | None, kind: str, loc: Loc, error: Report) -> BodyPatch | None:
    """A provider's `body` table, checked against its kind's family; None when it changes nothing."""
    if override is None or not (override.set or override.remove):
        return None
    return _checked(BodyPatch.build(override.set, override.remove), (family_of(kind),), loc, error, "body")


def compile_set_body(fields: dict[str, Any] | None, rule_id: str, loc: Loc,
                     error: Report) -> BodyPatch | None:
    if not fields:
        return None
    return _checked(BodyPatch.build(fields), ALL_FAMILIES, loc, error, "set_body", rule=rule_id)


def _checked(patch: BodyPatch, families: Iterable[str], loc: Loc, error: Report, field: str,
             rule: str | None = None) -> BodyPatch | None:
    found = problems(patch, families)
    for problem in found:
        prefix = f"rule {rule!r}: " if rule else ""
        error(loc, f"{prefix}{field}: {problem}", field)
    for path in patch.remove:
        if not all(path):
            error(loc, f"{field}: remove path {'.'.join(path)!r} has an empty part", field, "remove")
            return None
    return None if found else patch
