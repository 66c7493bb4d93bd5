"""The tracking plan: event types, their categories, aliases, required props and dedup options.

Loaded and checked once; a broken plan fails at start-up, naming the entry at fault.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

CUSTOM = "custom"
# A tenant whose settings say {"tracking_plan": "strict"} has event types the plan does not
# list rejected (`unknown_event_type`); any other tenant has them kept under `custom`.
STRICT = "strict"
_TYPE_OPTIONS = {"aliases", "required", "dedup"}


class PlanError(ValueError):
    """The tracking plan file is malformed."""


@dataclass(frozen=True)
class EventType:
    name: str
    category: str
    aliases: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    fingerprint_dedup: bool = True


@dataclass(frozen=True)
class TrackingPlan:
    types: dict[str, EventType]
    aliases: dict[str, str] = field(default_factory=dict)
    """alias → canonical name."""

    @property
    def categories(self) -> dict[str, str]:
        return {name: t.category for name, t in self.types.items()}

    def canonical(self, name: str) -> str:
        return self.aliases.get(name, name)

    def category(self, name: str) -> str:
        known = self.types.get(self.canonical(name))
        return known.category if known else CUSTOM


def parse(text: str, origin: str = "tracking_plan.yaml") -> TrackingPlan:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PlanError(f"{origin}: not valid YAML: {error}") from error
    if not isinstance(doc, dict) or not isinstance(doc.get("categories"), dict):
        raise PlanError(f"{origin}: expected a top-level `categories:` mapping of category → event types")
    types: dict[str, EventType] = {}
    aliases: dict[str, str] = {}
    for category, entries in doc["categories"].items():
        if not isinstance(entries, dict):
            raise PlanError(f"{origin}: category {category!r} must map event type names to options")
        for name, options in entries.items():
            where = f"{origin}: {category}.{name}"
            options = options or {}
            if not isinstance(options, dict) or set(options) - _TYPE_OPTIONS:
                raise PlanError(f"{where}: options must be a mapping with keys among {sorted(_TYPE_OPTIONS)}")
            if name in types or name in aliases:
                raise PlanError(f"{where}: defined twice")
            dedup = options.get("dedup", {}) or {}
            event_type = EventType(
                name=name,
                category=category,
                aliases=tuple(_strings(options.get("aliases", []), f"{where}.aliases")),
                required=tuple(_strings(options.get("required", []), f"{where}.required")),
                fingerprint_dedup=bool(dedup.get("fingerprint", True)),
            )
            types[name] = event_type
            for alias in event_type.aliases:
                if alias in aliases or alias in types:
                    raise PlanError(f"{where}: alias {alias!r} is already a type or an alias")
                aliases[alias] = name
    clash = set(aliases) & set(types)
    if clash:
        raise PlanError(f"{origin}: names used both as a type and an alias: {sorted(clash)}")
    return TrackingPlan(types=types, aliases=aliases)


def _strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PlanError(f"{where}: expected a list of names")
    return value


@functools.cache
def load(path: Path | None = None) -> TrackingPlan:
    if path is None:
        text = (resources.files("tributary") / "tracking_plan.yaml").read_text()
        return parse(text)
    return parse(path.read_text(), str(path))
