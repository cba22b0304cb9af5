"""Builders for planner tests: small desired/live/catalog values."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from commsync.model import (
    Audience,
    BroadcastSpec,
    Catalog,
    DefaultEmail,
    DesiredBroadcast,
    DesiredState,
    DesiredSystemEmail,
    EventDef,
    JsonValue,
    LiveBroadcast,
    LiveSnapshot,
    LiveSystemEmail,
    Origin,
    PayloadKey,
    Provenance,
    SendProgress,
    SourceInfo,
    SystemEmailFields,
    Targets,
)
from commsync.plan.diff import PlanOutcome, build_plan
from commsync.plan.model import Action

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
EVERYONE = Targets(all=True)

EVENT = EventDef(
    "order_paid",
    "An order was paid.",
    (
        PayloadKey("customer_name", "string", "Name.", "Ada"),
        PayloadKey("total", "string", "Total.", "$9"),
    ),
    "test",
)


def default(
    slug: str, version: int = 1, critical: bool = False, subject: str | None = None
) -> DefaultEmail:
    fields = SystemEmailFields(
        "order_paid", "customer", subject or f"{slug} v{version}", f"Body of {slug} v{version}"
    )
    return DefaultEmail(slug, fields, critical, version, "test catalog")


CATALOG = Catalog(
    {"order_paid": EVENT},
    {
        "paid_customer": default("paid_customer", 1, critical=True),
        "paid_admin": default("paid_admin", 1),
        "receipt": default("receipt", 2),
    },
)


def notice(
    bid: str, subject: str = "Hello", targets: Targets = EVERYONE, **kw: Any
) -> DesiredBroadcast:
    spec = BroadcastSpec("notice", subject, kw.pop("content", "Body"), targets, **kw)
    return DesiredBroadcast(bid, spec, Origin(f"broadcasts/{bid}.yaml"))


def email(
    bid: str, subject: str = "News", targets: Targets = EVERYONE, **kw: Any
) -> DesiredBroadcast:
    spec = BroadcastSpec("email", subject, kw.pop("content", "Body"), targets, **kw)
    return DesiredBroadcast(bid, spec, Origin(f"broadcasts/{bid}.yaml"))


def live_of(d: DesiredBroadcast, status: str | None = None, **kw: Any) -> LiveBroadcast:
    spec = d.spec
    managed = kw.pop("managed", True)
    if spec.kind == "email":
        progress = kw.pop("progress", SendProgress(total=10, sent=10))
        return LiveBroadcast(
            d.id,
            spec,
            status or "sent",
            spec.spec_hash(),
            managed,
            Provenance(d.origin.path),
            progress,
        )
    return LiveBroadcast(
        d.id, spec, status or "active", spec.spec_hash(), managed, Provenance(d.origin.path)
    )


def drifted(live: LiveBroadcast, **changes: Any) -> LiveBroadcast:
    """The live object after someone edited it in the store (applied hash left as it was)."""
    return replace(live, spec=replace(live.spec, **changes))


def file_email(
    slug: str, custom: SystemEmailFields | None = None, **overrides: JsonValue
) -> DesiredSystemEmail:
    return DesiredSystemEmail(slug, dict(overrides), Origin(f"emails/{slug}.yaml"), custom)


def installed(
    slug: str,
    version: int = 1,
    overrides: Mapping[str, JsonValue] | None = None,
    path: str | None = "default",
    base: DefaultEmail | None = None,
) -> LiveSystemEmail:
    source = base or default(slug, version)
    fields = source.fields.with_values(overrides or {})
    where = f"emails/{slug}.yaml" if path == "default" else path
    return LiveSystemEmail(
        slug,
        fields,
        fields.fields_hash(),
        tuple(sorted(overrides or {})),
        version,
        source.fields,
        provenance=Provenance(where),
    )


def desired(
    broadcasts: Iterable[DesiredBroadcast] = (),
    emails: Iterable[DesiredSystemEmail] = (),
    imports: str = "none",
    prune: bool = False,
) -> DesiredState:
    return DesiredState(tuple(broadcasts), tuple(emails), imports, prune, SourceInfo("test"))


def snapshot(
    broadcasts: Iterable[LiveBroadcast] = (), emails: Iterable[LiveSystemEmail] = ()
) -> LiveSnapshot:
    return LiveSnapshot("store-1", {b.id: b for b in broadcasts}, {e.slug: e for e in emails})


def audience_for(targets: Targets) -> Audience:
    """A deterministic fake count per selection (the store computes real ones)."""
    products = tuple((p, 10 * (i + 1)) for i, p in enumerate(targets.products))
    total = 100 if targets.all else sum(n for _, n in products) + len(targets.customers)
    return Audience(total, targets.all, len(targets.customers), products)


class Audiences(dict[Targets, Audience]):
    def __missing__(self, key: Targets) -> Audience:
        return audience_for(key)

    def get(self, key: Targets, default: Audience | None = None) -> Audience | None:  # type: ignore[override]
        return audience_for(key)


def plan(
    state: DesiredState,
    live: LiveSnapshot | None = None,
    catalog: Catalog = CATALOG,
    now: datetime = NOW,
    sample: Callable[[Action], str | None] | None = None,
) -> PlanOutcome:
    return build_plan(state, catalog, live or snapshot(), Audiences(), now, sample)


def actions(outcome: PlanOutcome) -> list[tuple[str, str]]:
    return [(a.address, a.action) for a in outcome.plan.actions]
