"""The registered defaults and events a catalog provides."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from commsync.model.values import JsonObject, JsonValue, SystemEmailFields
from commsync.model.vocab import PayloadType


@dataclass(frozen=True, slots=True)
class PayloadKey:
    name: str
    type: PayloadType
    description: str
    example: JsonValue
    format: str | None = None  # "email" or "line": what a string value must be


@dataclass(frozen=True, slots=True)
class EventDef:
    slug: str
    description: str
    keys: tuple[PayloadKey, ...]
    source: str

    @property
    def key_names(self) -> frozenset[str]:
        return frozenset(k.name for k in self.keys)

    def mock_payload(self) -> JsonObject:
        return {k.name: k.example for k in self.keys}


@dataclass(frozen=True, slots=True)
class DefaultEmail:
    slug: str
    fields: SystemEmailFields
    critical: bool
    version: int
    source: str


@dataclass(frozen=True, slots=True)
class Catalog:
    events: Mapping[str, EventDef]
    defaults: Mapping[str, DefaultEmail]
